"""Layer specs (plain, JSON-serialisable) and the torch modules they turn into.

A spec is ``{"kind": ..., **params}``. ``output_shape`` tells what a spec does to a (C, H, W) shape so the builder
can track shapes as layers are added (and print them, as DPP did); ``make_module`` builds the torch module.
TensorFlow's 'SAME' padding is reproduced exactly (asymmetric when needed): every layer keeps
``ceil(size / stride)``. DPP's poolings were 'SAME'; its convolutions padded ``k // 2`` on every side, which is the
same for odd kernels at stride 1 (docs/migrating.md lists where it differs).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, int, int]  # (channels, height, width)

LAYER_NAMES = {
    "input": "input layer",
    "conv": "convolutional layer",
    "pool": "pooling layer",
    "upsample": "upsampling layer",
    "batchnorm": "batch norm layer",
    "dropout": "dropout layer",
    "lrn": "normalization layer",
    "skip": "skip connection",
    "copy_save": "copy connection (save)",
    "copy_load": "copy connection (load)",
    "paral_conv": "parallel convolution block",
    "output": "output layer",
}

# Batch norm as specs without "epsilon"/"decay" (saved before DPP's options were accepted) ran it: Keras' epsilon
# and torch's default momentum 0.1 (decay 0.9). New specs record DPP's defaults (1e-5, 0.9) explicitly.
LEGACY_BN_EPSILON = 1e-3
DEFAULT_BN_DECAY = 0.9

# Values a spec key takes when it is missing, so older architecture.json files load and compare unchanged.
SPEC_DEFAULTS: dict[str, dict[str, Any]] = {
    "conv": {"padding": None, "batch_norm": False, "use_bias": True},
    "upsample": {"use_bias": True, "regularization_coefficient": None},
    "batchnorm": {"epsilon": LEGACY_BN_EPSILON, "decay": DEFAULT_BN_DECAY},
    "output": {"regularization_coefficient": None},
}
_CONV_BN_DEFAULTS = {"epsilon": LEGACY_BN_EPSILON, "decay": DEFAULT_BN_DECAY}

# Keys that only change how a layer trains, not what a trained network computes.
TRAINING_ONLY_KEYS = ("decay", "regularization_coefficient")


def spec_with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with every optional key present (missing ones take the value older states ran with)."""
    full = dict(SPEC_DEFAULTS.get(spec["kind"], {}))
    if spec["kind"] == "conv" and spec.get("batch_norm"):
        full.update(_CONV_BN_DEFAULTS)
    full.update(spec)
    return full


def comparable_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What must match between a saved and a declared layer for the saved weights to mean the same network."""
    full = spec_with_defaults(spec)
    if full["kind"] == "conv" and not full.get("batch_norm"):
        full.pop("epsilon", None)  # batch norm options of a convolution without batch norm do nothing
    return {k: v for k, v in full.items() if k not in TRAINING_ONLY_KEYS}


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


def output_shape(spec: dict[str, Any], shape: Shape) -> Shape:
    """Shape after ``spec`` for a (C, H, W) input (connections are resolved by the builder)."""
    c, h, w = shape
    kind = spec["kind"]
    if kind == "conv":
        kh, kw, _, out = spec["filter_dimension"]
        s = spec["stride_length"]
        padding = spec.get("padding")
        if padding is None or padding == "same":
            return out, math.ceil(h / s), math.ceil(w / s)
        pad = 0 if padding == "valid" else int(padding)
        return out, (h + 2 * pad - kh) // s + 1, (w + 2 * pad - kw) // s + 1
    if kind == "pool":
        s = spec["stride_length"]
        return c, math.ceil(h / s), math.ceil(w / s)
    if kind == "upsample":
        f = spec["upscale_factor"]
        return spec["num_filters"], h * f, w * f
    if kind == "paral_conv":
        return spec["filter_dimension_1"][3] + spec["filter_dimension_2"][3], h, w
    return shape  # batchnorm, dropout, lrn, input, copy_save keep the shape


def make_module(spec: dict[str, Any], shape: Shape) -> nn.Module:
    """The torch module for a shape-preserving or shape-changing layer (not connections or output)."""
    kind = spec["kind"]
    c = shape[0]
    if kind == "conv":
        return ConvBlock(c, spec)
    if kind == "pool":
        return SamePool2d(spec["kernel_size"], spec["stride_length"], spec["pooling_type"])
    if kind == "upsample":
        return Upsample(c, spec)
    if kind == "batchnorm":
        return batch_norm(c, spec)
    if kind == "dropout":
        # DPP's argument is the keep probability; torch's is the drop probability.
        return nn.Dropout(1.0 - spec["p"])
    if kind == "lrn":
        # tf.nn.lrn defaults: depth_radius=5, bias=1, alpha=1, beta=0.5; torch divides alpha by the window size.
        return nn.LocalResponseNorm(size=11, alpha=11.0, beta=0.5, k=1.0)
    if kind == "paral_conv":
        return ParallelConv(c, spec)
    if kind == "input":
        return nn.Identity()
    raise ValueError(f"Unknown layer kind {kind!r}.")
