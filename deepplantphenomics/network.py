"""Assembles layer specs into one ``nn.Module`` and tracks shapes while layers are added.

The builder is the single place that knows the order rules (input first, output last, a 'load' needs a
'save', a residual needs matching sizes), so the model facade and ``load_model`` share them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepplantphenomics.layers import LAYER_NAMES, SameConv2d, Shape, make_module, output_shape


def layer_label(index: int, spec: dict[str, Any]) -> str:
    """Human name of a layer, e.g. 'layer 2 (convolutional layer)'."""
    return f"layer {index} ({LAYER_NAMES.get(spec['kind'], spec['kind'])})"


class NetworkBuilder:
    """Validates layer order and tracks the (C, H, W) shape after each layer.

    Args:
        input_shape: (channels, height, width) the network is fed (the patch size when patching).
    """

    def __init__(self, input_shape: Shape):
        self.input_shape = input_shape
        self.specs: list[dict[str, Any]] = []
        self.shapes: list[Shape] = []
        self._saved: list[Shape] = []
        self._skip_source: Shape | None = None

    @property
    def current_shape(self) -> Shape:
        return self.shapes[-1] if self.shapes else self.input_shape

    @property
    def finished(self) -> bool:
        return bool(self.specs) and self.specs[-1]["kind"] == "output"

    def add(self, spec: dict[str, Any]) -> Shape:
        """Append a layer after checking it may go here; returns its output shape.

        Raises:
            RuntimeError: the layer is out of order (before the input layer, after the output layer, a second
                input layer, a copy 'load' with no 'save' before it).
            ValueError: the layer does not fit the current shape (a residual or copy connection whose
                sizes differ, a layer that shrinks the image to nothing).
        """
        kind = spec["kind"]
        name = LAYER_NAMES.get(kind, kind)
        if self.finished:
            raise RuntimeError(f"Cannot add a {name} after the output layer: the network is complete.")
        if kind == "input":
            if self.specs:
                raise RuntimeError("The input layer must be the first layer and can only be added once.")
        elif not self.specs:
            raise RuntimeError(f"Cannot add a {name} before the input layer: call add_input_layer() first.")
        shape = self.current_shape
        if kind == "input":
            new = shape
            self._skip_source = shape
        elif kind == "copy_save":
            self._saved.append(shape)
            new = shape
        elif kind == "copy_load":
            if not self._saved:
                raise RuntimeError(
                    "add_copy_connection('load') needs an earlier add_copy_connection('save'); none is pending."
                )
            saved = self._saved.pop()
            if saved[1:] != shape[1:]:
                raise ValueError(
                    f"add_copy_connection('load') concatenates a saved activation of size {saved[1]}x{saved[2]} "
                    f"with the current one of size {shape[1]}x{shape[2]}; they must match (add upsampling "
                    "layers to undo the pooling since the 'save')."
                )
            new = (shape[0] + saved[0], shape[1], shape[2])
        elif kind == "skip":
            source = self._skip_source
            expected = (source[1] + 1) // 2 if spec.get("downsampled") else source[1]
            expected_w = (source[2] + 1) // 2 if spec.get("downsampled") else source[2]
            if (expected, expected_w) != shape[1:]:
                hint = (
                    "use add_skip_connection(downsampled=True) after one stride-2 layer"
                    if not spec.get("downsampled")
                    else "downsampled=True expects exactly one halving since the last skip connection"
                )
                raise ValueError(
                    f"add_skip_connection: the residual source is {source[1]}x{source[2]} but the current "
                    f"activation is {shape[1]}x{shape[2]}; {hint}."
                )
            new = shape
            self._skip_source = shape
        elif kind == "output":
            # The network resizes its output to the input size (pooling not undone), so report that size.
            new = (shape[0], self.input_shape[1], self.input_shape[2])
        else:
            new = output_shape(spec, shape)
        if new[1] < 1 or new[2] < 1:
            raise ValueError(f"The {name} shrinks the image to {new[1]}x{new[2]}; use a larger image size.")
        self.specs.append(spec)
        self.shapes.append(new)
        return new


class SegmentationNetwork(nn.Module):
    """The network described by a list of layer specs.

    Args:
        specs: layer specs, starting with an input layer and ending with an output layer.
        input_shape: (channels, height, width) used to size the layers.
        out_channels: 1 for binary segmentation (one logit), n for n classes.

    Input (N, C, H, W) float; output (N, out_channels, H, W) logits at the input's height and width (an output
    smaller than the input, after pooling that was not undone, is resized bilinearly).
    """

    def __init__(self, specs: list[dict[str, Any]], input_shape: Shape, out_channels: int):
        super().__init__()
        builder = NetworkBuilder(input_shape)
        self.kinds: list[str] = []
        modules: list[nn.Module] = []
        for spec in specs:
            before = builder.current_shape
            skip_source = builder._skip_source
            builder.add(spec)
            kind = spec["kind"]
            self.kinds.append(kind)
            if kind == "output":
                modules.append(nn.Conv2d(before[0], out_channels, kernel_size=1))
            elif kind == "skip":
                downsampled = bool(spec.get("downsampled"))
                if downsampled or skip_source[0] != before[0]:
                    # A 1x1 projection makes the residual's channels (and stride) match, as in ResNet.
                    modules.append(SameConv2d(skip_source[0], before[0], (1, 1), 2 if downsampled else 1))
                else:
                    modules.append(nn.Identity())
            elif kind in ("copy_save", "copy_load"):
                modules.append(nn.Identity())
            else:
                modules.append(make_module(spec, before))
        if not builder.finished:
            raise RuntimeError("The network has no output layer: call add_output_layer() last.")
        self.layers = nn.ModuleList(modules)
        self.shapes = builder.shapes
        self.specs = [dict(spec) for spec in specs]  # one per entry of self.layers (per-layer options)

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: layers with their own ``regularization_coefficient`` (DPP's per-layer L2
        coefficient, which overrides ``set_regularization_coefficient``) get it as weight decay; the rest
        ``weight_decay``. Groups without parameters are left out.
        """
        own: list[dict[str, Any]] = []
        taken: set[int] = set()
        for module, spec in zip(self.layers, self.specs):
            coefficient = spec.get("regularization_coefficient")
            params = list(module.parameters())
            if coefficient is None or not params:
                continue
            own.append({"params": params, "weight_decay": float(coefficient)})
            taken.update(id(p) for p in params)
        rest = [p for p in self.parameters() if id(p) not in taken]
        return ([{"params": rest, "weight_decay": weight_decay}] if rest else []) + own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        saved: list[torch.Tensor] = []
        skip_source = x
        for kind, module in zip(self.kinds, self.layers):
            if kind == "copy_save":
                saved.append(x)
            elif kind == "copy_load":
                x = torch.cat([x, saved.pop()], dim=1)
            elif kind == "skip":
                x = x + module(skip_source)
                skip_source = x
            else:
                x = module(x)
                if kind == "input":
                    skip_source = x
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


def initialize_weights(
    network: nn.Module, initializer: str, generator: torch.Generator | None = None
) -> None:
    """DPP's initialisers: 'xavier' (Glorot uniform) or 'normal' (truncated normal, std 0.05); biases 0.1.

    Batch norm keeps torch's defaults (scale 1, shift 0).
    """
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if initializer == "xavier":
                nn.init.xavier_uniform_(module.weight, generator=generator)
            else:
                nn.init.trunc_normal_(module.weight, std=0.05, a=-0.1, b=0.1, generator=generator)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.1)
