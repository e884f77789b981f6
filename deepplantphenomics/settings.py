"""Hyperparameters as one dataclass (the checks every setter uses are in validation.py).

Each check raises the Keras-style error users see: what argument, what was expected, what was received.
Validation happens when a setting is set, so a typo fails on the line that made it, not an hour into training.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The checks live in validation.py; they are re-exported here because setters and other modules import them
# from settings.
from deepplantphenomics.validation import (  # noqa: F401
    check_bool,
    check_choice,
    check_dims,
    check_float,
    check_int,
    check_mask_threshold,
    check_num_classes,
    check_sequence,
)

OPTIMIZERS = ("adam", "adamw", "sgd", "sgd_momentum", "adadelta", "adagrad")
# Learning-rate schedules besides the step decay of set_learning_rate_decay (None: that decay, or none).
LR_SCHEDULES = ("cosine",)
INITIALIZERS = ("xavier", "normal")
ACTIVATIONS = ("relu", "tanh", "lrelu", "selu", "linear")
PRECISIONS = ("fp32", "bf16")
# Written into settings.json beside the settings (not a setting): the digest of the architecture.json saved
# with them, which ties the two files together (see state.save_state_files).
ARCHITECTURE_DIGEST = "architecture_sha256"


def check_activation(argument: str, value: Any) -> str:
    """Activation names as DPP accepted them; None means linear."""
    if value is None:
        return "linear"
    return check_choice(argument, value, ACTIVATIONS)


def check_class_weights(argument: str, value: Any) -> list[float] | None:
    """None, or a list of positive floats (one per class)."""
    if value is None:
        return None
    items = check_sequence(argument, value, "a list of floats")
    return [check_float(argument, w, 0.0, None, low_inclusive=False) for w in items]


def _loss_name(argument: str, value: Any) -> str:
    from deepplantphenomics.losses import canonical_loss_name  # torch-heavy: only when a loss is checked

    return canonical_loss_name(value, argument)


def _normalization(argument: str, value: Any) -> str:
    from deepplantphenomics.data.dataset import NORMALIZATIONS  # imported late: data imports this module

    return check_choice(argument, value, NORMALIZATIONS)


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda argument, value: None if value is None else check(argument, value)


def _int_at_least(minimum: int) -> Callable[[str, Any], int]:
    return lambda argument, value: check_int(argument, value, minimum)


def _fraction(argument: str, value: Any) -> float:
    return check_float(argument, value, 0.0, 1.0, high_inclusive=False)


def _positive_float(argument: str, value: Any) -> float:
    return check_float(argument, value, 0.0, None, low_inclusive=False)


def _unit_interval(argument: str, value: Any) -> float:
    """A float in (0, 1]."""
    return check_float(argument, value, 0.0, 1.0, low_inclusive=False)


# The check of every setting: the setters call these (through check_setting), and so does loading a saved
# settings.json, so a hand-edited file is held to the same rules as a script.
SETTING_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "batch_size": _int_at_least(1),
    "image_height": _optional(_int_at_least(1)),
    "image_width": _optional(_int_at_least(1)),
    "image_depth": _optional(_int_at_least(1)),
    "resize_images": check_bool,
    "crop_or_pad_images": check_bool,
    "test_split": _fraction,
    "validation_split": _fraction,
    "force_split_shuffle": check_bool,
    "random_seed": _optional(_int_at_least(0)),
    "learning_rate": _positive_float,
    "optimizer": lambda argument, value: check_choice(argument, value, OPTIMIZERS),
    "lr_decay_factor": _optional(_unit_interval),
    "epochs_per_decay": _optional(_int_at_least(1)),
    "lr_schedule": _optional(lambda argument, value: check_choice(argument, value, LR_SCHEDULES)),
    "warmup_batches": _int_at_least(0),
    "regularization_coefficient": lambda argument, value: check_float(argument, value, 0.0, None),
    "weight_initializer": lambda argument, value: check_choice(argument, value, INITIALIZERS),
    "maximum_training_epochs": _int_at_least(1),
    "loss_function": _loss_name,
    "num_classes": check_num_classes,
    "class_weights": check_class_weights,
    "num_threads": _optional(_int_at_least(1)),
    "num_gpus": _optional(_int_at_least(0)),
    "patch_height": _optional(_int_at_least(1)),
    "patch_width": _optional(_int_at_least(1)),
    "gen_data_overwrite": check_bool,
    "augmentation_brightness_contrast": check_bool,
    "augmentation_flip_horizontal": check_bool,
    "augmentation_flip_vertical": check_bool,
    "augmentation_rotation": check_bool,
    "augmentation_rotation_crop_borders": check_bool,
    "augmentation_crop": check_bool,
    "augmentation_crop_ratio": _unit_interval,
    "precision": lambda argument, value: check_choice(argument, value, PRECISIONS),
    "input_normalization": _normalization,
}


def check_setting(key: str, value: Any, argument: str | None = None) -> Any:
    """``value`` checked (and made canonical) by the rule of setting ``key``; errors name ``argument`` (or ``key``).

    Raises:
        TypeError, ValueError: as the setter of ``key`` would.
    """
    return SETTING_CHECKS[key](argument or key, value)


@dataclass
class Settings:
    """Every hyperparameter of a model; serialised to ``settings.json`` beside the weights."""

    batch_size: int = 1
    image_height: int | None = None
    image_width: int | None = None
    image_depth: int | None = None
    resize_images: bool = False
    crop_or_pad_images: bool = False
    test_split: float = 0.10
    validation_split: float = 0.10
    force_split_shuffle: bool = False
    random_seed: int | None = None
    learning_rate: float = 0.001
    optimizer: str = "adam"
    lr_decay_factor: float | None = None
    epochs_per_decay: int | None = None
    # set_learning_rate_schedule('cosine', warmup_batches=n): linear warm-up over n batches, then cosine decay to
    # 0 over the run, stepped every batch. States saved before these settings existed used neither.
    lr_schedule: str | None = None
    warmup_batches: int = 0
    regularization_coefficient: float = 0.0
    weight_initializer: str = "xavier"
    maximum_training_epochs: int = 100
    loss_function: str = "sigmoid cross entropy"
    num_classes: int = 2
    class_weights: list[float] | None = None
    num_threads: int | None = None
    num_gpus: int | None = None
    patch_height: int | None = None
    patch_width: int | None = None
    gen_data_overwrite: bool = False
    augmentation_brightness_contrast: bool = False
    augmentation_flip_horizontal: bool = False
    augmentation_flip_vertical: bool = False
    augmentation_rotation: bool = False
    augmentation_rotation_crop_borders: bool = False
    augmentation_crop: bool = False
    augmentation_crop_ratio: float = 0.75
    precision: str = "fp32"
    # DPP standardised every image (tf.image.per_image_standardization); states saved before this setting
    # existed used 'none' (see SemanticSegmentationModel.from_saved_state).
    input_normalization: str = "per_image_standardization"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # However a Settings is made (the model, from_dict, Settings(...) in a script), its values obey the
        # setters' rules, made canonical as the setters make them (a loss name's spelling, an int as a float).
        for name in SETTING_CHECKS:
            setattr(self, name, check_setting(name, getattr(self, name)))
        if not isinstance(self.extra, dict):
            raise TypeError(f"Invalid value for argument `extra`: expected a dict, received {self.extra!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | os.PathLike | None = None) -> Settings:
        """Rebuild from ``to_dict`` output; unknown keys (from a newer version) are kept in ``extra``.

        Every value is checked as its setter checks it (a hand-edited file is held to the same rules as a script).

        Args:
            data: the mapping, e.g. a saved ``settings.json``.
            source: the file ``data`` came from, named in errors.

        Raises:
            TypeError, ValueError: ``data`` is not a mapping, or a value the setter would refuse (the message
                names the key, and the file when ``source`` is given).
        """
        where = f"Saved settings '{source}'" if source is not None else "Settings"
        if not isinstance(data, dict):
            raise TypeError(f"{where} hold {type(data).__name__}, not a JSON object of settings.")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: _checked_value(k, v, where, source) for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names and k != ARCHITECTURE_DIGEST}
        settings = cls(**known)
        settings.extra.update(unknown)
        return settings

    @property
    def patching(self) -> bool:
        return self.patch_height is not None

    @property
    def binary(self) -> bool:
        return self.num_classes == 2


def _checked_value(key: str, value: Any, where: str, source: str | os.PathLike | None) -> Any:
    """A value read from a settings mapping, checked by its setter's rule; errors name the key (and file)."""
    if key == "extra":
        if not isinstance(value, dict):
            raise TypeError(f"{where}: key `extra` must be a JSON object, received {value!r}.")
        return value
    try:
        return check_setting(key, value)
    except (TypeError, ValueError) as exc:
        fix = (
            f"Correct the key `{key}` in that file (or save the state again from the script that trained it)."
            if source is not None
            else f"Correct the key `{key}`."
        )
        raise type(exc)(f"{where} are not valid: {exc} {fix}") from None
