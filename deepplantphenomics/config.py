"""Training runs described in a file (TOML, or YAML when PyYAML is installed), for ``dpp train CONFIG``.

A config holds the same choices as a Python script written against the API, in four sections, so a run can be
versioned next to its results and repeated exactly:

.. code-block:: toml

    [model]       # SemanticSegmentationModel(...) arguments
    debug = true
    save_dir = "runs/unet"

    [settings]    # one key per setter, applied in file order: set_batch_size(4), set_image_dimensions(...)
    batch_size = 4
    image_dimensions = [256, 256, 3]
    resize_images = true
    random_seed = 7
    augmentation_crop = { augment = true, crop_ratio = 0.8 }

    [data]        # load_dataset_from_directory_with_segmentation_masks(images, masks, mask_suffix)
    images = "data/images"
    masks = "data/masks"      # may be the images folder when masks carry a suffix (a_mask.png)
    # mask_suffix = "-m"      # only for a suffix other than _mask, _masks, _fg, _label(s), _seg, _gt, _annotation

    [network]     # use_predefined_model("u-net"), or a list of layers:
    predefined = "u-net"
    # layers = [ { type = "input" },
    #            { type = "convolutional", filter_dimension = [3, 3, 3, 16], stride_length = 1,
    #              activation_function = "relu" },
    #            { type = "output" } ]

A setting's value is passed as the setter's single argument; a list is spread over a setter that takes several
(``image_dimensions = [h, w, d]`` is ``set_image_dimensions(h, w, d)``); a table is passed by keyword
(``augmentation_rotation = { augment = true, crop_borders = true }``). Relative paths are resolved against the
folder of the config file, so a run does not depend on the folder it is started from.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepplantphenomics.layers import GENERIC_CONFIG_TYPE, config_layer_types
from deepplantphenomics.model import SemanticSegmentationModel

__all__ = [
    "CONSTRUCTOR_KEYS",
    "DATA_KEYS",
    "LAYER_TYPES",
    "NETWORK_KEYS",
    "SECTIONS",
    "SETTING_KEYS",
    "TrainingConfig",
    "layer_types",
    "load_config",
]

SECTIONS = ("model", "settings", "data", "network")

# [model]: constructor arguments; those naming folders are resolved against the config's folder.
CONSTRUCTOR_KEYS: tuple[str, ...] = (
    "debug",
    "load_from_saved",
    "save_checkpoints",
    "initialize",
    "tensorboard_dir",
    "report_rate",
    "save_dir",
)
_PATH_KEYS = ("load_from_saved", "tensorboard_dir", "save_dir")

# [settings]: config key -> SemanticSegmentationModel method. Keys are the setter names without `set_`.
SETTING_KEYS: dict[str, str] = {
    "batch_size": "set_batch_size",
    "image_dimensions": "set_image_dimensions",
    "resize_images": "set_resize_images",
    "crop_or_pad_images": "set_crop_or_pad_images",
    "test_split": "set_test_split",
    "validation_split": "set_validation_split",
    "force_split_shuffle": "force_split_shuffle",
    "random_seed": "set_random_seed",
    "learning_rate": "set_learning_rate",
    "optimizer": "set_optimizer",
    "learning_rate_decay": "set_learning_rate_decay",
    "learning_rate_schedule": "set_learning_rate_schedule",
    "input_normalization": "set_input_normalization",
    "regularization_coefficient": "set_regularization_coefficient",
    "weight_initializer": "set_weight_initializer",
    "maximum_training_epochs": "set_maximum_training_epochs",
    "loss_function": "set_loss_function",
    "num_segmentation_classes": "set_num_segmentation_classes",
    "class_weights": "set_class_weights",
    "number_of_threads": "set_number_of_threads",
    "number_of_gpus": "set_number_of_gpus",
    "patch_size": "set_patch_size",
    "gen_data_overwrite": "set_gen_data_overwrite",
    "precision": "set_precision",
    "augmentation_brightness_and_contrast": "set_augmentation_brightness_and_contrast",
    "augmentation_flip_horizontal": "set_augmentation_flip_horizontal",
    "augmentation_flip_vertical": "set_augmentation_flip_vertical",
    "augmentation_rotation": "set_augmentation_rotation",
    "augmentation_crop": "set_augmentation_crop",
}

DATA_KEYS = ("images", "masks", "mask_suffix")
# The [data] keys every config needs (mask_suffix is optional).
REQUIRED_DATA_KEYS = ("images", "masks")
NETWORK_KEYS = ("predefined", "layers")


# [network] layers: `type` -> the builder method; the layer's other keys are that method's arguments. The types
# come from the layer kinds' records (layers.LayerKind.config_type); this is the built-in set, and a kind
# registered later adds its own type (see `layer_types`). `type = "layer"` is add_layer(kind, ...) for any kind.
def layer_types() -> dict[str, str]:
    """Every layer ``type`` a config accepts now -> the facade method it calls (registered kinds included)."""
    types = {name: method for name, (method, _) in config_layer_types().items()}
    types[GENERIC_CONFIG_TYPE] = "add_layer"
    return types


LAYER_TYPES: dict[str, str] = layer_types()


def _unknown(what: str, name: str, allowed: tuple[str, ...], where: str, scope: str) -> ValueError:
    """``Unknown key `settings.x` ... allowed keys in [settings]: ...``, with the closest match suggested."""
    close = difflib.get_close_matches(name.rsplit(".", 1)[-1], allowed, n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return ValueError(
        f"Unknown {what} `{name}` in config {where}{hint}; allowed {scope}: {', '.join(sorted(allowed))}."
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise RuntimeError(
                f"Reading the TOML config '{path}' needs Python 3.11 or the 'tomli' package (pip install tomli)."
            ) from None
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"Config '{path}' is not valid TOML: {exc}.") from None


def _read_yaml(path: Path) -> Any:
    try:
        import yaml
    except ModuleNotFoundError:
        raise RuntimeError(
            f"Reading the YAML config '{path}' needs PyYAML (pip install pyyaml), or write it as TOML."
        ) from None
    try:
        with path.open("r", encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise ValueError(f"Config '{path}' is not valid YAML: {' '.join(str(exc).split())}.") from None


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a config file into a plain dict (no validation; see ``TrainingConfig``).

    Args:
        path: a ``.toml`` file, or ``.yaml`` / ``.yml`` (needs PyYAML).

    Returns:
        The parsed mapping, sections as nested dicts.

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: the file does not exist.
        ValueError: another extension, a syntax error, or a top level that is not a mapping.
        RuntimeError: the parser for the format is not installed.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Invalid value for argument `path`: expected a file path, received {path!r}.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: '{path}'.")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data = _read_toml(path)
    elif suffix in (".yaml", ".yml"):
        data = _read_yaml(path)
    else:
        raise ValueError(
            f"Invalid value for argument `path`: expected a .toml, .yaml or .yml config, received '{path}'."
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"Config '{path}' must hold sections (a mapping), found {type(data).__name__}.")
    return data


def _call(target: Any, method_name: str, value: Any, key: str, source: str) -> None:
    """Call ``target.method_name`` with ``value`` as a config states it; errors are prefixed with ``key``."""
    method = getattr(target, method_name)
    signature = inspect.signature(method)
    if isinstance(value, Mapping):
        args, kwargs = (), dict(value)
    elif isinstance(value, (list, tuple)) and len(signature.parameters) > 1:
        args, kwargs = tuple(value), {}
    else:
        args, kwargs = (value,), {}
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        params = ", ".join(str(p) for p in signature.parameters.values())
        raise TypeError(
            f"Invalid value for `{key}` in config {source}: {method_name}({params}) cannot take {value!r}."
        ) from None
    try:
        method(*args, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise type(exc)(f"`{key}` in config {source}: {exc}") from None


def _sections(mapping: Any, where: str) -> dict[str, dict[str, Any]]:
    """The config's sections as dicts, after checking every section and key name (unknown ones are named)."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"Config {where} must be a mapping of sections, received {type(mapping).__name__}.")
    allowed_keys: dict[str, tuple[str, ...]] = {
        "model": CONSTRUCTOR_KEYS,
        "settings": tuple(SETTING_KEYS),
        "data": DATA_KEYS,
        "network": NETWORK_KEYS,
    }
    sections: dict[str, dict[str, Any]] = {}
    for name, section in mapping.items():
        if name not in SECTIONS:
            raise _unknown("section", str(name), SECTIONS, where, "sections")
        if not isinstance(section, Mapping):
            raise TypeError(
                f"Section `{name}` in config {where} must be a table of keys, received {section!r}."
            )
        for key in section:
            if key not in allowed_keys[name]:
                raise _unknown("key", f"{name}.{key}", allowed_keys[name], where, f"keys in [{name}]")
        sections[name] = dict(section)
    return sections


def _resolve(key: str, value: Any, base: Path, where: str) -> Path:
    """``value`` as a path, relative ones against ``base`` (the config's folder)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"Invalid value for `{key}` in config {where}: expected a path, received {value!r}.")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_network(network: dict[str, Any], where: str) -> None:
    """Exactly one of ``predefined`` and ``layers``; each layer a table with a known ``type``."""
    if ("predefined" in network) == ("layers" in network):
        raise ValueError(
            f'Config {where} needs exactly one of `network.predefined` (e.g. "u-net") and `network.layers` '
            f"(a list of layers)."
        )
    layers = network.get("layers")
    if layers is None:
        return
    if not isinstance(layers, list) or not layers:
        raise TypeError(
            f"Invalid value for `network.layers` in config {where}: expected a list of layer tables, "
            f"received {layers!r}."
        )
    types = layer_types()
    for index, layer in enumerate(layers):
        if not isinstance(layer, Mapping) or "type" not in layer:
            raise ValueError(
                f"Layer {index} of `network.layers` in config {where} needs a `type` "
                f"({', '.join(types)}), received {layer!r}."
            )
        if layer["type"] not in types:
            raise _unknown(f"layer type (layer {index})", str(layer["type"]), tuple(types), where, "types")


def _layer_call(layer: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The facade method and keyword arguments that declare one ``[network] layers`` entry."""
    arguments = {k: v for k, v in layer.items() if k != "type"}
    if layer["type"] == GENERIC_CONFIG_TYPE:
        return "add_layer", arguments
    method, kind = config_layer_types()[layer["type"]]
    if method == "add_layer":  # a registered kind's own type: add_layer(kind, ...)
        arguments = {"kind": kind, **arguments}
    return method, arguments


@dataclass
class TrainingConfig:
    """A validated training config: which model, settings, data and network, and where paths start from.

    Build one with ``from_file`` (or ``from_dict``), then ``build_model()`` or ``train()``. Unknown sections
    and keys are rejected up front, before any data is read; the values themselves are checked by the
    setters, with the config key in the message.

    Attributes:
        model: [model] constructor arguments, folder paths already resolved.
        settings: [settings] in file order.
        data: [data] ``images`` and ``masks`` folders, resolved, and the optional ``mask_suffix`` (a str).
        network: [network] ``predefined`` name or ``layers`` list.
        base_dir: folder that relative paths were resolved against.
        source: the config file, when read from one (for messages).
    """

    model: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path)
    source: Path | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TrainingConfig:
        """Read and validate a config file; relative paths resolve against the file's folder.

        Raises:
            FileNotFoundError, ValueError, TypeError, RuntimeError: see ``load_config`` and ``from_dict``.
        """
        path = Path(path)
        return cls.from_dict(load_config(path), base_dir=path.parent, source=path)

    @classmethod
    def from_dict(
        cls,
        mapping: Mapping[str, Any],
        base_dir: str | os.PathLike = ".",
        source: str | os.PathLike | None = None,
    ) -> TrainingConfig:
        """Validate a config mapping (as parsed from a file).

        Args:
            mapping: sections ``model``, ``settings``, ``data``, ``network`` (only ``data`` and ``network`` are
                required).
            base_dir: folder relative paths are resolved against.
            source: the file the mapping came from, named in error messages.

        Returns:
            The config.

        Raises:
            ValueError: an unknown section or key (named, with the allowed ones), a missing required key,
                both or neither of ``network.predefined`` / ``network.layers``, a layer without a known ``type``.
            TypeError: a section that is not a table, a path that is not a string.
        """
        where = f"'{source}'" if source is not None else "(mapping)"
        base = Path(base_dir)
        sections = _sections(mapping, where)
        model = sections.get("model", {})
        for key in _PATH_KEYS:
            # load_from_saved = false is the constructor's own "no" value, not a path.
            if key in model and model[key] is not None and model[key] is not False:
                model[key] = _resolve(f"model.{key}", model[key], base, where)
        data = sections.get("data", {})
        for key in REQUIRED_DATA_KEYS:
            if key not in data:
                raise ValueError(f"Config {where} needs `data.{key}` (the folder of training {key}).")
            data[key] = _resolve(f"data.{key}", data[key], base, where)
        network = sections.get("network", {})
        _check_network(network, where)
        return cls(
            model=model,
            settings=sections.get("settings", {}),
            data=data,
            network=network,
            base_dir=base,
            source=Path(source) if source is not None else None,
        )

    # ------------------------------------------------------------------ use
    @property
    def save_dir(self) -> Path:
        """Where the trained state goes: ``model.save_dir``, else the API default ``./saved_state``."""
        return Path(self.model.get("save_dir") or "saved_state")

    def build_model(self) -> SemanticSegmentationModel:
        """The model a script would build: constructor, setters in file order, data, then the network.

        Returns:
            A model ready for ``begin_training()``.

        Raises:
            TypeError, ValueError, RuntimeError, FileNotFoundError: from the model, prefixed with the config key.
        """
        where = f"'{self.source}'" if self.source is not None else "(mapping)"
        try:
            model = SemanticSegmentationModel(**self.model)
        except (TypeError, ValueError, FileNotFoundError) as exc:
            raise type(exc)(f"[model] in config {where}: {exc}") from None
        for key, value in self.settings.items():
            _call(model, SETTING_KEYS[key], value, f"settings.{key}", where)
        model.load_image_mask_folders(
            self.data["images"],
            self.data["masks"],
            ("data.images", "data.masks", "data.mask_suffix"),
            self.data.get("mask_suffix"),
        )
        if "predefined" in self.network:
            _call(model, "use_predefined_model", self.network["predefined"], "network.predefined", where)
        else:
            for index, layer in enumerate(self.network["layers"]):
                method, arguments = _layer_call(layer)
                _call(model, method, arguments, f"network.layers[{index}]", where)
        return model

    def train(self, resume: bool = False) -> SemanticSegmentationModel:
        """Build the model and run ``begin_training(resume=resume)``.

        Args:
            resume: continue from the checkpoint in ``save_dir``.

        Returns:
            The trained model (its state is in ``save_dir``).
        """
        model = self.build_model()
        model.begin_training(resume=resume)
        return model
