"""Assembles layer specs into one ``nn.Module`` and tracks shapes while layers are added.

A plain layer is whatever its ``layers.LayerKind`` record says (shape, module); this module wires the graph:
the input and output layers and the skip and copy connections.

The builder is the single place that knows the order rules (input first, output last, a 'load' needs a
'save', a residual needs matching sizes), so the model facade and ``load_model`` share them.

Skip connections follow DPP's graph loop (``SKIP_SEMANTICS_DPP``): the first ``add_skip_connection`` only marks
the residual source; each later one adds that source to the current activation (through a bias-free 1x1
projection when the channels differ, with stride 2 when ``downsampled=True``) and the sum becomes the next
source. States saved before this package adopted DPP's rule (``SKIP_SEMANTICS_LEGACY``: the input layer was
the first source, every skip added, projections had a bias) record no ``skip_semantics`` and are rebuilt with
their own rule, so they keep computing what they computed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepplantphenomics.layers import SameConv2d, Shape, layer_kind, layer_name

SKIP_SEMANTICS_DPP = "dpp"
SKIP_SEMANTICS_LEGACY = "input-source"
SKIP_SEMANTICS = (SKIP_SEMANTICS_DPP, SKIP_SEMANTICS_LEGACY)


class SkipProjection(SameConv2d):
    """DPP's residual projection: a 1x1 convolution without bias, always Xavier-initialised (``layers.py`` of
    DPP builds it with ``initializer='xavier'`` whatever ``set_weight_initializer`` says)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__(in_channels, out_channels, (1, 1), stride, bias=False)


def check_skip_semantics(value: Any) -> str:
    """Return ``value`` if it names a skip-connection rule (see the module docstring).

    Raises:
        ValueError: an unknown rule (a state written by a newer version of this package).
    """
    if value not in SKIP_SEMANTICS:
        raise ValueError(
            f"Unknown skip connection rule {value!r}: expected one of {list(SKIP_SEMANTICS)}. The state was "
            "probably written by a newer version of deepplantphenomics; upgrade to load it."
        )
    return value


def layer_label(index: int, spec: dict[str, Any]) -> str:
    """Human name of a layer, e.g. 'layer 2 (convolutional layer)'."""
    return f"layer {index} ({layer_name(spec['kind'])})"


class NetworkBuilder:
    """Validates layer order and tracks the (C, H, W) shape after each layer.

    Args:
        input_shape: (channels, height, width) the network is fed (the patch size when patching).
        skip_semantics: how skip connections compute, ``SKIP_SEMANTICS_DPP`` or ``SKIP_SEMANTICS_LEGACY``.
    """

    def __init__(self, input_shape: Shape, skip_semantics: str = SKIP_SEMANTICS_DPP):
        self.input_shape = input_shape
        self.skip_semantics = check_skip_semantics(skip_semantics)
        self.specs: list[dict[str, Any]] = []
        self.shapes: list[Shape] = []
        self._saved: list[Shape] = []
        self._skip_source: Shape | None = None

    @property
    def skip_source(self) -> Shape | None:
        """Shape of the pending residual source; None until the first skip connection (DPP's rule) marks one."""
        return self._skip_source

    @property
    def current_shape(self) -> Shape:
        return self.shapes[-1] if self.shapes else self.input_shape

    @property
    def finished(self) -> bool:
        return bool(self.specs) and self.specs[-1]["kind"] == "output"

    def check_order(self, kind: str) -> None:
        """Raise if a layer of ``kind`` may not come next, before its arguments are looked at (as DPP did).

        Raises:
            RuntimeError: after the output layer, before the input layer, or a second input layer.
        """
        name = layer_name(kind)
        if self.finished:
            raise RuntimeError(f"Cannot add a {name} after the output layer: the network is complete.")
        if kind == "input":
            if self.specs:
                raise RuntimeError("The input layer must be the first layer and can only be added once.")
        elif not self.specs:
            raise RuntimeError(f"Cannot add a {name} before the input layer: call add_input_layer() first.")

    def add(self, spec: dict[str, Any]) -> Shape:
        """Append a layer after checking it may go here; returns its output shape.

        Raises:
            RuntimeError: the layer is out of order (before the input layer, after the output layer, a second
                input layer, a copy 'load' with no 'save' before it).
            ValueError: the layer does not fit the current shape (a residual or copy connection whose
                sizes differ, a layer that shrinks the image to nothing).
        """
        kind = spec["kind"]
        record = layer_kind(kind)  # an unknown kind (an unregistered custom one) fails here, named
        name = record.name
        self.check_order(kind)
        shape = self.current_shape
        if kind == "input":
            new = shape
            if self.skip_semantics == SKIP_SEMANTICS_LEGACY:
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
            if self._skip_source is not None:
                _check_residual(self._skip_source, shape, bool(spec.get("downsampled")))
            new = shape  # the sum has the current activation's shape (DPP's log printed it halved)
            self._skip_source = shape
        elif kind == "output":
            # The network resizes its output to the input size (pooling not undone), so report that size.
            new = (shape[0], self.input_shape[1], self.input_shape[2])
        else:
            new = record.output_shape(spec, shape)
        if new[1] < 1 or new[2] < 1:
            raise ValueError(f"The {name} shrinks the image to {new[1]}x{new[2]}; use a larger image size.")
        self.specs.append(spec)
        self.shapes.append(new)
        return new


def _check_residual(source: Shape, shape: Shape, downsampled: bool) -> None:
    """Raise ValueError unless a residual of shape ``source`` can be added to an activation of ``shape``.

    The 1x1 projection keeps the size (stride 1) or takes every second pixel (``downsampled``: ceil(size / 2)).
    """
    expected = tuple((n + 1) // 2 for n in source[1:]) if downsampled else source[1:]
    if expected == shape[1:]:
        return
    if not downsampled:
        hint = "use add_skip_connection(downsampled=True) after one stride-2 layer"
    elif source[1:] == shape[1:]:
        hint = (
            "downsampled=True expects exactly one halving since the last skip connection, and there was none "
            "(DPP accepted this declaration but its graph could not add the two)"
        )
    else:
        hint = "downsampled=True expects exactly one halving since the last skip connection"
    raise ValueError(
        f"add_skip_connection: the residual source is {source[1]}x{source[2]} but the current "
        f"activation is {shape[1]}x{shape[2]}; {hint}."
    )


class SegmentationNetwork(nn.Module):
    """The network described by a list of layer specs.

    Args:
        specs: layer specs, starting with an input layer and ending with an output layer.
        input_shape: (channels, height, width) used to size the layers.
        out_channels: 1 for binary segmentation (one logit), n for n classes.
        skip_semantics: how skip connections compute (``SKIP_SEMANTICS_DPP``, or ``SKIP_SEMANTICS_LEGACY`` for
            states saved before DPP's rule was adopted).
        complete: False allows a network without output layer (``forward_pass`` on a partial network returns the
            last layer's activations, unresized).

    Input (N, C, H, W) float; output (N, out_channels, H, W) logits at the input's height and width (an output
    smaller than the input, after pooling that was not undone, is resized bilinearly).
    """

    def __init__(
        self,
        specs: list[dict[str, Any]],
        input_shape: Shape,
        out_channels: int,
        skip_semantics: str = SKIP_SEMANTICS_DPP,
        complete: bool = True,
    ):
        super().__init__()
        builder = NetworkBuilder(input_shape, skip_semantics)
        self.skip_semantics = builder.skip_semantics
        self.kinds: list[str] = []  # "skip_mark" for a skip connection that only marks the residual source
        modules: list[nn.Module] = []
        for spec in specs:
            before = builder.current_shape
            skip_source = builder.skip_source
            builder.add(spec)
            kind = spec["kind"]
            self.kinds.append("skip_mark" if kind == "skip" and skip_source is None else kind)
            if kind == "output":
                modules.append(nn.Conv2d(before[0], out_channels, kernel_size=1))
            elif kind == "skip" and skip_source is not None:
                modules.append(self._residual_module(skip_source, before, bool(spec.get("downsampled"))))
            elif kind in ("skip", "copy_save", "copy_load"):
                modules.append(nn.Identity())
            else:
                modules.append(layer_kind(kind).make_module(spec, before))
        if complete and not builder.finished:
            raise RuntimeError("The network has no output layer: call add_output_layer() last.")
        self.complete = builder.finished
        self.layers = nn.ModuleList(modules)
        self.shapes = builder.shapes
        self.specs = [dict(spec) for spec in specs]  # one per entry of self.layers (per-layer options)

    def _residual_module(self, source: Shape, current: Shape, downsampled: bool) -> nn.Module:
        """Identity, or the 1x1 projection that brings the residual to the current channels (and size)."""
        if not downsampled and source[0] == current[0]:
            return nn.Identity()
        stride = 2 if downsampled else 1
        if self.skip_semantics == SKIP_SEMANTICS_LEGACY:
            return SameConv2d(
                source[0], current[0], (1, 1), stride
            )  # with a bias, as those states were saved
        return SkipProjection(source[0], current[0], stride)

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
            elif kind == "skip_mark":
                skip_source = x
            elif kind == "skip":
                x = x + module(skip_source)
                skip_source = x
            else:
                x = module(x)
                if kind == "input":
                    skip_source = (
                        x  # only read under SKIP_SEMANTICS_LEGACY, where the input is the first source
                    )
        if self.complete and x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


def initialize_weights(
    network: nn.Module, initializer: str, generator: torch.Generator | None = None
) -> None:
    """DPP's initialisers: 'xavier' (Glorot uniform) or 'normal' (truncated normal, std 0.05); biases 0.1.

    Skip connection projections are always Xavier, as in DPP. Batch norm keeps torch's defaults (scale 1, shift 0).
    """
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if initializer == "xavier" or isinstance(module, SkipProjection):
                nn.init.xavier_uniform_(module.weight, generator=generator)
            else:
                nn.init.trunc_normal_(module.weight, std=0.05, a=-0.1, b=0.1, generator=generator)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.1)
