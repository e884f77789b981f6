"""ONNX export of a segmentation network, preprocessing and output activation included.

The exported graph is what a deployment needs and nothing more: it takes images as float32 N x C x H x W in
[0, 1] (pixel / 255 for 8-bit files, / 65535 for 16-bit), applies the model's input normalisation itself
(DPP's per-image standardisation by default), runs the network and returns probabilities (sigmoid of the one
logit for binary models, softmax over the classes otherwise), exactly as
``SemanticSegmentationModel.forward_pass_with_file_inputs`` computes them for images of the network size.
Batch, height and width are dynamic. What the graph expects and returns is also written into the ONNX
model's ``metadata_props``, so a deployed file documents itself.

Needs the optional 'onnx' extra (``pip install 'deepplantphenomics[onnx]'``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepplantphenomics._version import __version__
from deepplantphenomics.data.dataset import NORMALIZATIONS
from deepplantphenomics.layers import layer_kind
from deepplantphenomics.settings import Settings
from deepplantphenomics.state import atomic_write_bytes

__all__ = ["DEFAULT_OPSET", "ExportWrapper", "export_onnx", "size_multiple"]

DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
LOGITS_NAME = "logits"
_EXTRA_HINT = "pip install 'deepplantphenomics[onnx]'"


class ExportWrapper(nn.Module):
    """[0, 1] images -> normalised network input -> network -> probabilities (or logits).

    The normalisation is the library's ``data.dataset.normalize`` written with tensor operations only, so the
    tracer records it for any batch, height and width.

    Args:
        network: the segmentation network, in eval mode.
        normalization: 'per_image_standardization' or 'none' (``Settings.input_normalization``).
        probabilities: end with sigmoid (one output channel) or softmax over channels; else return logits.
    """

    def __init__(self, network: nn.Module, normalization: str, probabilities: bool = True):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"Invalid value for argument `normalization`: expected one of {', '.join(NORMALIZATIONS)}, "
                f"received {normalization!r}."
            )
        self.network = network
        self.standardize = normalization == "per_image_standardization"
        self.probabilities = probabilities

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float in [0, 1] -> (N, K, H, W) probabilities or logits (K = 1 for binary)."""
        x = images
        if self.standardize:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            centred = x - mean
            std = centred.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            # TF's floor 1/sqrt(values per image), computed from the input so it follows its size.
            count = torch.ones_like(x).sum(dim=(1, 2, 3), keepdim=True)
            x = centred / torch.maximum(std, count.rsqrt())
        logits = self.network(x)
        if not self.probabilities:
            return logits
        if logits.shape[1] == 1:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)


def size_multiple(specs: list[dict[str, Any]]) -> int:
    """The number height and width must be multiples of for the exported graph: the product of all strides.

    'SAME' padding of a strided layer depends on whether its input size is even; the tracer records the
    padding of the example it runs, so the graph is exact for every size whose strided layers all see sizes
    divisible by their stride, as the example's do.
    """
    factor = 1
    for spec in specs:
        # Each kind's record gives its stride (layers.LayerKind.stride). A downsampled skip connection's 1x1
        # projection pads nothing and runs beside a strided layer already counted, so it adds nothing here.
        factor *= layer_kind(spec["kind"]).stride(spec)
    return factor


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence exactly what the legacy exporter says about a trace that is known to be fine.

    'SAME' padding reads tensor sizes in Python (TracerWarning, see ``size_multiple``), and torch announces
    that the TorchScript-based exporter is deprecated. Any other warning still reaches the caller.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings(
            "ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore",
            message=r"The feature will be removed",
            category=DeprecationWarning,
            module=r"torch\.onnx",
        )
        yield


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(f"ONNX export needs the optional 'onnx' extra: {_EXTRA_HINT}.") from None
    return onnx


def export_onnx(
    network: nn.Module,
    settings: Settings,
    specs: list[dict[str, Any]],
    path: str | os.PathLike,
    probabilities: bool = True,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``network`` with its preprocessing as an ONNX file.

    Args:
        network: the trained segmentation network (not modified: a CPU copy in eval mode is exported).
        settings: the model's settings (input channels, normalisation, classes, training image size).
        specs: the network's layer specs (for the size multiple recorded in the metadata).
        path: the .onnx file to write (its folder is created).
        probabilities: output probabilities (sigmoid / softmax); False outputs the raw logits.
        opset: ONNX opset version.
        metadata: extra ``metadata_props`` entries (str -> str).

    Returns:
        The path written. Graph input ``images``: float32 (N, C, H, W) in [0, 1]; output ``probabilities``
        (or ``logits``): float32 (N, K, H, W), K = 1 for binary models, else the number of classes. H and W
        must be multiples of the ``size_multiple`` metadata entry.

    Raises:
        ImportError: the 'onnx' extra is not installed (the message gives the pip command).
        TypeError: ``path`` is not a path, or ``probabilities`` not a bool.
        ValueError: ``opset`` is not an int in 11..25.
    """
    _check_arguments(path, probabilities, opset)
    onnx = _import_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    # A plain CPU copy: training may have moved the network to a GPU or to channels-last memory.
    net = copy.deepcopy(network).to("cpu", memory_format=torch.contiguous_format).float().eval()
    wrapper = ExportWrapper(net, settings.input_normalization, probabilities).eval()
    multiple = size_multiple(specs)
    channels = settings.image_depth or 3
    output_name = OUTPUT_NAME if probabilities else LOGITS_NAME
    proto = onnx.load_model_from_string(_trace(wrapper, channels, multiple, output_name, opset))
    props = _metadata(settings, channels, multiple, output_name, probabilities)
    props.update({str(k): str(v) for k, v in (metadata or {}).items()})
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return atomic_write_bytes(path, proto.SerializeToString())


def _check_arguments(path: Any, probabilities: Any, opset: Any) -> None:
    """Raise TypeError / ValueError for ``export_onnx`` arguments of the wrong type or out of range."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Invalid value for argument `path`: expected a file path, received {path!r}.")
    if not isinstance(probabilities, bool):
        raise TypeError(
            f"Invalid value for argument `probabilities`: expected a bool, received {probabilities!r}."
        )
    if not isinstance(opset, int) or isinstance(opset, bool) or not 11 <= opset <= 25:
        raise ValueError(
            f"Invalid value for argument `opset`: expected an int in 11..25, received {opset!r}."
        )


def _trace(wrapper: ExportWrapper, channels: int, multiple: int, output_name: str, opset: int) -> bytes:
    """The ONNX bytes of ``wrapper``, traced on one small example, batch/height/width dynamic."""
    # An example whose every strided layer sees an even size (see size_multiple); small, so tracing is quick.
    side = multiple * max(1, math.ceil(32 / multiple))
    example = torch.rand(1, channels, side, side, generator=torch.Generator().manual_seed(0))
    dynamic = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with _quiet_tracing(), torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes={INPUT_NAME: dynamic, output_name: dynamic},
            opset_version=opset,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
        )
    return buffer.getvalue()


def _metadata(
    settings: Settings, channels: int, multiple: int, output_name: str, probabilities: bool
) -> dict[str, str]:
    """The ``metadata_props`` that say what the graph expects and returns (a deployed file documents itself)."""
    binary = settings.num_classes == 2
    if probabilities:
        meaning = "sigmoid foreground probability" if binary else "softmax class probabilities"
    else:
        meaning = "one foreground logit (apply sigmoid)" if binary else "class logits (apply softmax)"
    normalization = settings.input_normalization
    return {
        "producer": "deepplantphenomics",
        "library_version": __version__,
        "input": (
            f"{INPUT_NAME}: float32 (N, {channels}, H, W), pixel values in [0, 1] "
            "(8-bit / 255, 16-bit / 65535), RGB channel order for colour images"
        ),
        "input_normalization": normalization
        + (" (applied inside the graph)" if normalization != "none" else ""),
        "output": f"{output_name}: float32 (N, {1 if binary else settings.num_classes}, H, W), {meaning}",
        "num_classes": str(settings.num_classes),
        "size_multiple": str(multiple),
        "training_image_size": json.dumps([settings.image_height, settings.image_width]),
        "resize_images": json.dumps(settings.resize_images),
        "crop_or_pad_images": json.dumps(settings.crop_or_pad_images),
        "patch_size": json.dumps(
            [settings.patch_height, settings.patch_width] if settings.patching else None
        ),
    }
