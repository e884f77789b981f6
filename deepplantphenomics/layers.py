"""Layer specs (plain, JSON-serialisable) and the torch modules they turn into.

A spec is ``{"kind": ..., **params}``. Each kind is one ``LayerKind`` record (the end of this module): how its
arguments are checked, what it does to a (C, H, W) shape (so the builder can track shapes as layers are added and
print them, as DPP did), the torch module it becomes, the defaults older saved specs lack, its stride for ONNX
export and its TOML config type. ``register_layer_kind`` adds a kind.
TensorFlow's 'SAME' padding is reproduced exactly (asymmetric when needed): every layer keeps
``ceil(size / stride)``. DPP's poolings were 'SAME'; its convolutions padded ``k // 2`` on every side, which is the
same for odd kernels at stride 1 (docs/migrating.md lists where it differs).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepplantphenomics.settings import check_activation
from deepplantphenomics.validation import check_bool, check_choice, check_dims, check_float, check_int

Shape = tuple[int, int, int]  # (channels, height, width)

# Batch norm as specs without "epsilon"/"decay" (saved before DPP's options were accepted) ran it: Keras' epsilon
# and torch's default momentum 0.1 (decay 0.9). New specs record DPP's defaults (1e-5, 0.9) explicitly.
LEGACY_BN_EPSILON = 1e-3
DEFAULT_BN_DECAY = 0.9
_CONV_BN_DEFAULTS = {"epsilon": LEGACY_BN_EPSILON, "decay": DEFAULT_BN_DECAY}

# Keys that only change how a layer trains, not what a trained network computes.
TRAINING_ONLY_KEYS = ("decay", "regularization_coefficient")


def batch_norm(channels: int, spec: dict[str, Any]) -> nn.BatchNorm2d:
    """BatchNorm2d with the spec's epsilon and DPP's moving-average ``decay`` (torch momentum = 1 - decay)."""
    epsilon = float(spec.get("epsilon", LEGACY_BN_EPSILON))
    decay = float(spec.get("decay", DEFAULT_BN_DECAY))
    return nn.BatchNorm2d(channels, eps=epsilon, momentum=1.0 - decay)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    if name == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)  # TF's leaky_relu default slope, as DPP used it
    if name == "selu":
        return nn.SELU(inplace=True)
    return nn.Identity()


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding for any kernel/stride and any input size.

    Stride 1 with odd kernels uses the built-in symmetric padding (the fast path); otherwise the
    (possibly asymmetric) padding is computed per input size, so tiles of any size work at inference.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: tuple[int, int], stride: int, bias: bool = True
    ):
        kernel = tuple(kernel)
        # A strided 1x1 convolution is a 1x1 convolution of every stride-th pixel. Written that way it gives
        # the same result, and it avoids a oneDNN fault in torch 2.13 (heap corruption, "free(): invalid next
        # size") in the backward pass of strided 1x1 convolutions on odd sizes in channels-last memory.
        self._subsample = stride if kernel == (1, 1) and stride > 1 else 1
        if self._subsample > 1:
            stride = 1
        symmetric = stride == 1 and kernel[0] % 2 == 1 and kernel[1] % 2 == 1
        padding = (kernel[0] // 2, kernel[1] // 2) if symmetric else 0
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=bias)
        self._dynamic = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._subsample > 1:
            x = x[..., :: self._subsample, :: self._subsample]
        if self._dynamic:
            top, bottom = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class SamePool2d(nn.Module):
    """Max or average pooling with TensorFlow 'SAME' padding (padding never enters a max or an average)."""

    def __init__(self, kernel: int, stride: int, kind: str):
        super().__init__()
        self.kernel, self.stride, self.kind = kernel, stride, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(x.shape[-2], self.kernel, self.stride)
        left, right = _same_pad(x.shape[-1], self.kernel, self.stride)
        if self.kind == "max":
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
            return F.max_pool2d(x, self.kernel, self.stride)
        padded = F.pad(x, (left, right, top, bottom))
        summed = F.avg_pool2d(padded, self.kernel, self.stride)
        if not (top or bottom or left or right):
            return summed
        # TF excludes padding from the average: divide by the count of real pixels in each window.
        ones = F.pad(torch.ones_like(x[:1, :1]), (left, right, top, bottom))
        return summed / F.avg_pool2d(ones, self.kernel, self.stride)


class ConvBlock(nn.Sequential):
    """Convolution (with or without bias), optional batch norm, activation."""

    def __init__(self, in_ch: int, spec: dict[str, Any]):
        kh, kw, _, out = spec["filter_dimension"]
        padding = spec.get("padding")
        bias = bool(spec.get("use_bias", True))
        if padding is None or padding == "same":
            conv: nn.Module = SameConv2d(in_ch, out, (kh, kw), spec["stride_length"], bias=bias)
        else:
            pad = 0 if padding == "valid" else int(padding)
            conv = nn.Conv2d(in_ch, out, (kh, kw), stride=spec["stride_length"], padding=pad, bias=bias)
        layers = [conv]
        if spec.get("batch_norm"):
            layers.append(batch_norm(out, spec))
        layers.append(_activation(spec.get("activation_function", "linear")))
        super().__init__(*layers)


class Upsample(nn.Sequential):
    """Transposed convolution that multiplies height and width by exactly ``upscale_factor``."""

    def __init__(self, in_ch: int, spec: dict[str, Any]):
        k, s = spec["filter_size"], spec["upscale_factor"]
        pad = max(math.ceil((k - s) / 2), 0)
        out_pad = s - k + 2 * pad  # makes out = in * s for every k
        conv = nn.ConvTranspose2d(
            in_ch,
            spec["num_filters"],
            k,
            stride=s,
            padding=pad,
            output_padding=out_pad,
            bias=bool(spec.get("use_bias", True)),
        )
        super().__init__(conv, _activation(spec.get("activation_function", "linear")))


class ParallelConv(nn.Module):
    """Two 'SAME' convolutions of the same input, outputs concatenated along channels (relu)."""

    def __init__(self, in_ch: int, spec: dict[str, Any]):
        super().__init__()
        d1, d2 = spec["filter_dimension_1"], spec["filter_dimension_2"]
        self.a = ConvBlock(in_ch, {"filter_dimension": d1, "stride_length": 1, "activation_function": "relu"})
        self.b = ConvBlock(in_ch, {"filter_dimension": d2, "stride_length": 1, "activation_function": "relu"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], dim=1)


# ====================================================================== one record per layer kind
def _same_shape(spec: dict[str, Any], shape: Shape) -> Shape:
    return shape


def _no_stride(spec: dict[str, Any]) -> int:
    return 1


def _stride_length(spec: dict[str, Any]) -> int:
    return int(spec.get("stride_length", 1))


def _no_inert_keys(spec: dict[str, Any]) -> tuple[str, ...]:
    return ()


_KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class LayerKind:
    """Everything the package knows about one kind of layer: the one place a kind is defined.

    The facade (``SemanticSegmentationModel.add_layer`` and DPP's ``add_*`` methods), the network builder
    (``network.py``), the saved-state comparison (``state.py``), ONNX export (``export.py``) and TOML configs
    (``config.py``) all read these records. A new kind is one record given to :func:`register_layer_kind`
    (docs/architecture.md, "How to add a layer kind").

    Attributes:
        kind: the spec's ``"kind"``, saved in ``architecture.json`` (lower case, digits, underscores).
        name: how messages and the ``debug=True`` log name a layer of this kind, e.g. 'convolutional layer'.
        build: ``build(in_shape, **arguments) -> dict``: checks the arguments the user gave (errors name the
            argument, what was received and what is expected) and returns the spec's parameters. ``in_shape`` is
            the (channels, height, width) the layer receives. Its keyword names are the spec's keys, so
            ``add_layer(**spec)`` declares the same layer again.
        make_module: ``make_module(spec, in_shape) -> nn.Module`` with one input and one output tensor. None for
            the connections the builder wires itself (output, skip and copy connections, in ``network.py``).
        output_shape: ``output_shape(spec, in_shape) -> (C, H, W)``; by default the shape is kept.
        defaults: values of optional keys that specs saved before the key existed lack (they ran with these), or
            a function of the spec returning them; states saved earlier then compare equal and load.
        inert_keys: ``inert_keys(spec)``: keys that do nothing in this spec (left out of the comparison between
            a saved and a declared layer).
        stride: ``stride(spec)``: the factor the layer divides height and width by; ONNX export multiplies them
            into the size multiple the exported graph needs (its 'SAME' padding is traced for one parity).
        config_type: the layer's ``type`` in a TOML config's ``[network] layers``; None: reachable there only as
            ``{ type = "layer", kind = "...", ... }``.
        add_method: the facade method a config calls for ``config_type`` (DPP's ``add_*`` method; by default
            ``add_layer``, given the kind).
        wired: True for the built-in kinds whose place in the graph ``network.py`` handles (input, output, skip
            and copy connections); a registered kind is a plain layer, False.
    """

    kind: str
    name: str
    build: Callable[..., dict[str, Any]]
    make_module: Callable[[dict[str, Any], Shape], nn.Module] | None = None
    output_shape: Callable[[dict[str, Any], Shape], Shape] = _same_shape
    defaults: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]] = field(default_factory=dict)
    inert_keys: Callable[[dict[str, Any]], tuple[str, ...]] = _no_inert_keys
    stride: Callable[[dict[str, Any]], int] = _no_stride
    config_type: str | None = None
    add_method: str = "add_layer"
    wired: bool = False

    def make_spec(self, in_shape: Shape, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The checked spec ``{"kind": ..., **params}`` for a layer declared with ``arguments``.

        Raises:
            TypeError: ``arguments`` do not fit ``build`` (a missing or unknown argument), or a wrong type.
            ValueError: a value out of range.
        """
        signature = inspect.signature(self.build)
        try:
            signature.bind(in_shape, **arguments)
        except TypeError:
            accepted = list(signature.parameters.values())[1:]
            raise TypeError(
                f"A {self.name} ('{self.kind}') takes the arguments ({', '.join(str(p) for p in accepted)}), "
                f"received {dict(arguments)!r}."
            ) from None
        return {"kind": self.kind, **self.build(in_shape, **arguments)}

    def with_defaults(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``spec`` with every optional key present (missing ones take the value older states ran with)."""
        defaults = self.defaults(spec) if callable(self.defaults) else self.defaults
        return {**defaults, **spec}


# ---------------------------------------------------------------------- the built-in kinds' build functions
def _build_conv(
    in_shape: Shape,
    filter_dimension: list[int],
    stride_length: int,
    activation_function: str | None,
    padding: int | str | None = None,
    batch_norm: bool = False,
    use_bias: bool = True,
    epsilon: float = 1e-5,
    decay: float = 0.9,
) -> dict[str, Any]:
    dims = check_dims("filter_dimension", filter_dimension, 4)
    stride = check_int("stride_length", stride_length)
    activation = check_activation("activation_function", activation_function)
    if padding is not None and padding not in ("same", "valid"):
        padding = check_int("padding", padding, minimum=0)
    check_bool("batch_norm", batch_norm)
    check_bool("use_bias", use_bias)
    epsilon = check_float("epsilon", epsilon, 0.0, None)
    decay = check_float("decay", decay, 0.0, 1.0)
    dims[2] = in_shape[0]  # DPP's convention: the input channels follow the previous layer
    spec: dict[str, Any] = {
        "filter_dimension": dims,
        "stride_length": stride,
        "activation_function": activation,
        "padding": padding,
        "batch_norm": batch_norm,
        "use_bias": use_bias,
    }
    if batch_norm:  # DPP ignores epsilon and decay without batch norm; so do the saved specs
        spec.update(epsilon=epsilon, decay=decay)
    return spec


def _conv_shape(spec: dict[str, Any], shape: Shape) -> Shape:
    _, h, w = shape
    kh, kw, _, out = spec["filter_dimension"]
    s = spec["stride_length"]
    padding = spec.get("padding")
    if padding is None or padding == "same":
        return out, math.ceil(h / s), math.ceil(w / s)
    pad = 0 if padding == "valid" else int(padding)
    return out, (h + 2 * pad - kh) // s + 1, (w + 2 * pad - kw) // s + 1


def _conv_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {"padding": None, "batch_norm": False, "use_bias": True}
    if spec.get("batch_norm"):
        defaults.update(_CONV_BN_DEFAULTS)
    return defaults


def _conv_inert_keys(spec: dict[str, Any]) -> tuple[str, ...]:
    # Batch norm options of a convolution without batch norm do nothing.
    return () if spec.get("batch_norm") else ("epsilon",)


def _build_pool(
    in_shape: Shape, kernel_size: int, stride_length: int, pooling_type: str = "max"
) -> dict[str, Any]:
    return {
        "kernel_size": check_int("kernel_size", kernel_size),
        "stride_length": check_int("stride_length", stride_length),
        "pooling_type": check_choice("pooling_type", pooling_type, ("max", "avg")),
    }


def _pool_shape(spec: dict[str, Any], shape: Shape) -> Shape:
    c, h, w = shape
    s = spec["stride_length"]
    return c, math.ceil(h / s), math.ceil(w / s)


def _regularization(value: float | None) -> dict[str, Any]:
    """The spec entry for a layer's own L2 coefficient (absent when None, so older specs compare equal)."""
    if value is None:
        return {}
    return {"regularization_coefficient": check_float("regularization_coefficient", value, 0.0, None)}


def _build_upsample(
    in_shape: Shape,
    filter_size: int,
    num_filters: int,
    upscale_factor: int = 2,
    activation_function: str | None = None,
    use_bias: bool = True,
    regularization_coefficient: float | None = None,
) -> dict[str, Any]:
    return {
        "filter_size": check_int("filter_size", filter_size),
        "num_filters": check_int("num_filters", num_filters),
        "upscale_factor": check_int("upscale_factor", upscale_factor),
        "activation_function": check_activation("activation_function", activation_function),
        "use_bias": check_bool("use_bias", use_bias),
        **_regularization(regularization_coefficient),
    }


def _upsample_shape(spec: dict[str, Any], shape: Shape) -> Shape:
    f = spec["upscale_factor"]
    return spec["num_filters"], shape[1] * f, shape[2] * f


def _build_batchnorm(in_shape: Shape, epsilon: float = 1e-5, decay: float = 0.9) -> dict[str, Any]:
    # DPP's epsilon and moving-average decay; add_batch_norm_layer() takes no arguments and records these.
    return {
        "epsilon": check_float("epsilon", epsilon, 0.0, None),
        "decay": check_float("decay", decay, 0.0, 1.0),
    }


def _build_dropout(in_shape: Shape, p: float) -> dict[str, Any]:
    return {"p": check_float("p", p, 0.0, 1.0, low_inclusive=False)}


def _dropout_module(spec: dict[str, Any], shape: Shape) -> nn.Module:
    # DPP's argument is the keep probability; torch's is the drop probability.
    return nn.Dropout(1.0 - spec["p"])


def _lrn_module(spec: dict[str, Any], shape: Shape) -> nn.Module:
    # tf.nn.lrn defaults: depth_radius=5, bias=1, alpha=1, beta=0.5; torch divides alpha by the window size.
    return nn.LocalResponseNorm(size=11, alpha=11.0, beta=0.5, k=1.0)


def _build_nothing(in_shape: Shape) -> dict[str, Any]:
    return {}


def _build_skip(in_shape: Shape, downsampled: bool = False) -> dict[str, Any]:
    return {"downsampled": check_bool("downsampled", downsampled)}


def _build_paral_conv(
    in_shape: Shape, filter_dimension_1: list[int], filter_dimension_2: list[int]
) -> dict[str, Any]:
    d1 = check_dims("filter_dimension_1", filter_dimension_1, 4)
    d2 = check_dims("filter_dimension_2", filter_dimension_2, 4)
    d1[2] = d2[2] = in_shape[0]
    return {"filter_dimension_1": d1, "filter_dimension_2": d2}


def _paral_conv_shape(spec: dict[str, Any], shape: Shape) -> Shape:
    return spec["filter_dimension_1"][3] + spec["filter_dimension_2"][3], shape[1], shape[2]


def _build_output(
    in_shape: Shape, regularization_coefficient: float | None = None, output_size: int | None = None
) -> dict[str, Any]:
    if output_size is not None:
        raise ValueError(
            "Invalid value for argument `output_size`: expected None (the output channels follow "
            f"set_num_segmentation_classes), received {output_size!r}."
        )
    return _regularization(regularization_coefficient)


BUILTIN_KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "input",
        "input layer",
        _build_nothing,
        make_module=lambda spec, shape: nn.Identity(),
        config_type="input",
        add_method="add_input_layer",
        wired=True,
    ),
    LayerKind(
        "conv",
        "convolutional layer",
        _build_conv,
        make_module=lambda spec, shape: ConvBlock(shape[0], spec),
        output_shape=_conv_shape,
        defaults=_conv_defaults,
        inert_keys=_conv_inert_keys,
        stride=_stride_length,
        config_type="convolutional",
        add_method="add_convolutional_layer",
    ),
    LayerKind(
        "pool",
        "pooling layer",
        _build_pool,
        make_module=lambda spec, shape: SamePool2d(
            spec["kernel_size"], spec["stride_length"], spec["pooling_type"]
        ),
        output_shape=_pool_shape,
        stride=_stride_length,
        config_type="pooling",
        add_method="add_pooling_layer",
    ),
    LayerKind(
        "upsample",
        "upsampling layer",
        _build_upsample,
        make_module=lambda spec, shape: Upsample(shape[0], spec),
        output_shape=_upsample_shape,
        defaults={"use_bias": True, "regularization_coefficient": None},
        config_type="upsampling",
        add_method="add_upsampling_layer",
    ),
    LayerKind(
        "batchnorm",
        "batch norm layer",
        _build_batchnorm,
        make_module=lambda spec, shape: batch_norm(shape[0], spec),
        defaults={"epsilon": LEGACY_BN_EPSILON, "decay": DEFAULT_BN_DECAY},
        config_type="batch_norm",
        add_method="add_batch_norm_layer",
    ),
    LayerKind(
        "dropout",
        "dropout layer",
        _build_dropout,
        make_module=_dropout_module,
        config_type="dropout",
        add_method="add_dropout_layer",
    ),
    LayerKind(
        "lrn",
        "normalization layer",
        _build_nothing,
        make_module=_lrn_module,
        config_type="normalization",
        add_method="add_normalization_layer",
    ),
    LayerKind(
        "skip",
        "skip connection",
        _build_skip,
        config_type="skip_connection",
        add_method="add_skip_connection",
        wired=True,
    ),
    # One config type for both copy kinds: add_copy_connection(mode) picks the kind.
    LayerKind(
        "copy_save",
        "copy connection (save)",
        _build_nothing,
        config_type="copy_connection",
        add_method="add_copy_connection",
        wired=True,
    ),
    LayerKind("copy_load", "copy connection (load)", _build_nothing, wired=True),
    LayerKind(
        "paral_conv",
        "parallel convolution block",
        _build_paral_conv,
        make_module=lambda spec, shape: ParallelConv(shape[0], spec),
        output_shape=_paral_conv_shape,
        config_type="paral_conv_block",
        add_method="add_paral_conv_block",
    ),
    LayerKind(
        "output",
        "output layer",
        _build_output,
        defaults={"regularization_coefficient": None},
        config_type="output",
        add_method="add_output_layer",
        wired=True,
    ),
)

_REGISTRY: dict[str, LayerKind] = {record.kind: record for record in BUILTIN_KINDS}
GENERIC_CONFIG_TYPE = "layer"  # `{ type = "layer", kind = "...", ... }` in a config: add_layer(kind, ...)


def register_layer_kind(record: LayerKind) -> LayerKind:
    """Make a new kind of layer available to ``add_layer``, saved states, ``load_model``, configs and export.

    Register it before declaring or loading a network that uses it (at import of the module defining it).

    Args:
        record: the kind's ``LayerKind``, with a ``make_module`` (connections are the builder's own).

    Returns:
        ``record``.

    Raises:
        TypeError: ``record`` is not a ``LayerKind``, or ``build`` / ``make_module`` is not callable.
        ValueError: the kind or its config type is taken, or the kind is not lower case, digits and underscores.
    """
    if not isinstance(record, LayerKind):
        raise TypeError(f"register_layer_kind expects a LayerKind record, received {record!r}.")
    if not isinstance(record.kind, str) or not _KIND_PATTERN.match(record.kind):
        raise ValueError(
            f"Invalid layer kind {record.kind!r}: expected lower-case letters, digits and underscores, starting "
            "with a letter (it is saved in architecture.json)."
        )
    if record.kind in _REGISTRY:
        raise ValueError(f"The layer kind {record.kind!r} is already registered; choose another name.")
    if record.wired:
        raise ValueError(
            f"Layer kind {record.kind!r} is marked wired: only the built-in connections are wired by the network "
            "builder; a registered kind is a plain layer (wired=False) with a make_module."
        )
    if not callable(record.build) or not callable(record.make_module):
        raise TypeError(
            f"Layer kind {record.kind!r} needs a callable `build` and `make_module`, received "
            f"{record.build!r} and {record.make_module!r}."
        )
    taken = {r.config_type for r in _REGISTRY.values()} | {GENERIC_CONFIG_TYPE}
    if record.config_type is not None and record.config_type in taken:
        raise ValueError(
            f"The config type {record.config_type!r} of layer kind {record.kind!r} is already used; choose another."
        )
    _REGISTRY[record.kind] = record
    return record


def unregister_layer_kind(kind: str) -> None:
    """Remove a kind added with :func:`register_layer_kind` (states using it no longer load).

    Raises:
        ValueError: ``kind`` is built in or not registered.
    """
    if kind in {record.kind for record in BUILTIN_KINDS}:
        raise ValueError(f"The layer kind {kind!r} is built in and cannot be removed.")
    if kind not in _REGISTRY:
        raise ValueError(f"The layer kind {kind!r} is not registered.")
    del _REGISTRY[kind]


def layer_kind(kind: str) -> LayerKind:
    """The record of ``kind``.

    Raises:
        ValueError: an unknown kind (a custom kind must be registered before a network using it is declared
            or loaded).
    """
    record = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if record is None:
        raise ValueError(
            f"Unknown layer kind {kind!r}: expected one of {sorted(_REGISTRY)}. A kind added with "
            "deepplantphenomics.layers.register_layer_kind must be registered (import the module that registers "
            "it) before a network that uses it is declared or loaded."
        )
    return record


def layer_kinds() -> tuple[LayerKind, ...]:
    """Every registered kind, the built-in ones first."""
    return tuple(_REGISTRY.values())


def layer_name(kind: str) -> str:
    """How messages name a layer of ``kind`` ('convolutional layer'); an unknown kind is named as is."""
    record = _REGISTRY.get(kind)
    return record.name if record is not None else str(kind)


def config_layer_types() -> dict[str, tuple[str, str]]:
    """Config ``type`` -> (facade method, kind) for every registered kind with a config type."""
    return {r.config_type: (r.add_method, r.kind) for r in _REGISTRY.values() if r.config_type is not None}


# ---------------------------------------------------------------------- what other modules call
def spec_with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with every optional key present (missing ones take the value older states ran with).

    An unknown kind is copied as is (loading it fails later with the registry's message).
    """
    record = _REGISTRY.get(spec["kind"])
    return record.with_defaults(spec) if record is not None else dict(spec)


def comparable_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What must match between a saved and a declared layer for the saved weights to mean the same network."""
    full = spec_with_defaults(spec)
    record = _REGISTRY.get(spec["kind"])
    inert = record.inert_keys(full) if record is not None else ()
    return {k: v for k, v in full.items() if k not in TRAINING_ONLY_KEYS and k not in inert}


def output_shape(spec: dict[str, Any], shape: Shape) -> Shape:
    """Shape after ``spec`` for a (C, H, W) input (connections are resolved by the builder)."""
    return layer_kind(spec["kind"]).output_shape(spec, shape)


def make_module(spec: dict[str, Any], shape: Shape) -> nn.Module:
    """The torch module of a layer that is not wired by the builder (not a connection, input or output).

    Raises:
        ValueError: an unknown kind, or one the builder wires itself.
    """
    record = layer_kind(spec["kind"])
    if record.make_module is None:
        raise ValueError(f"The {record.name} is wired by the network builder and has no module of its own.")
    return record.make_module(spec, shape)
