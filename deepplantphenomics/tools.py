"""Pretrained tools that need no training: plant (vegetation) masks for photos of plants.

DPP's most used tool was ``tools.segment_vegetation(files)``. Here it runs a small U-Net-like network shipped
inside the package (``deepplantphenomics/weights/vegetation``: an ordinary saved state that
``dpp.load_model`` also reads, plus ``model_card.json`` with its training data, their terms and the measured
scores), and, for comparison, the classical colour-index baselines Excess Green and CIVE cut with Otsu's
threshold (``deepplantphenomics.indices``). See docs/vegetation.md.

The network was trained on CWFID, whose terms allow non-commercial research use only; see the model card.

Example:
    >>> from deepplantphenomics import tools
    >>> masks = tools.segment_vegetation(["plot_01.jpg", "plot_02.png"])   # float32 (H, W) of 0.0 / 1.0
    >>> card = tools.model_card()                                        # scores, data, terms
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepplantphenomics.data.io import pixel_scale, read_image
from deepplantphenomics.indices import INDEX_METHODS, index_mask, index_plant
from deepplantphenomics.inference import check_files
from deepplantphenomics.inference_scheme import InferenceScheme
from deepplantphenomics.mask_quality import VegetationQualityWarning, describe, mask_quality, quality_label
from deepplantphenomics.postprocess import threshold_otsu
from deepplantphenomics.settings import check_bool, check_choice, check_int

__all__ = [
    "FAST_INFERENCE",
    "METHODS",
    "NETWORK_BATCH_PIXELS",
    "WEIGHTS_DIR",
    "Segmentation",
    "InferenceScheme",
    "VegetationQualityWarning",
    "inference_scheme",
    "model_card",
    "quality_flags",
    "segment_image",
    "segment_images",
    "segment_vegetation",
    "segment_with_quality",
    "vegetation_probabilities",
]

METHODS = ("network", "network-fast", *INDEX_METHODS)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "vegetation"
MODEL_CARD = "model_card.json"

# A card that predates a setting gets InferenceScheme's default: half resolution, 0.5 on the probability, sizes
# padded to 16, no mirror.
# method='network-fast': one view of at most 0.2 MP, no mirror, cut at 0.5 (the card's candidate "resize to at
# most 0.2 MP"; the tool's scheme before test-time averaging). 4.5x fewer network pixels per 1296x966 photo
# (0.026 against 0.108 s on a quiet 2-core EPYC); held-out Dice 0.9474 / 0.7574 / 0.8592 on CWFID / EWS / peanut
# against 0.9542 / 0.7606 / 0.8627 (docs/vegetation.md). The card's scheme with these replaced
# (InferenceScheme.replace).
FAST_INFERENCE = {"mode": "resize", "scale": None, "max_pixels": 200_000, "flip": False, "threshold": 0.5}
# Photos read and predicted together hold at most this many pixels (full size) besides the first one: eight
# 1296x966 photos (10 MP) as before, one 50 MP photo at a time (each costs about 20 bytes per pixel while its
# views are made and its probabilities resized back), so memory follows the pixels, not the photo count.
NETWORK_BATCH_PIXELS = 10_000_000


# ------------------------------------------------------------------------------------------- the network
def fold_batch_norm(network: nn.Module) -> nn.Module:
    """Fold every inference-time BatchNorm2d that directly follows a Conv2d into that convolution.

    ``layers.ConvBlock`` is ``Sequential(conv, batchnorm, activation)``; in eval mode the batch norm is a fixed
    per-channel affine map, so ``conv`` can absorb it and the block skips one full pass over its output
    (about a tenth of the CPU time of the vegetation network). Numerics change only by float rounding.

    Args:
        network: A module in eval mode; modified in place.

    Returns:
        ``network``.
    """
    for module in network.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for index in range(len(children) - 1):
            conv, bn = children[index], children[index + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            with torch.no_grad():
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
                new_bias = (bias - bn.running_mean) * scale + bn.bias.detach()
                if conv.bias is None:
                    conv.bias = nn.Parameter(new_bias)
                else:
                    conv.bias.copy_(new_bias)
            module[index + 1] = nn.Identity()
    return network


@functools.lru_cache(maxsize=4)
def _load_network(directory: str) -> tuple[nn.Module, InferenceScheme]:
    """The shipped network (eval mode, batch norm folded, channels-last) and its card's inference scheme.

    Cached per directory: the first call reads the weights (about 10 ms), later calls reuse them.
    """
    from deepplantphenomics.model import load_model
    from deepplantphenomics.runtime import prepare_module, tune_allocator

    path = Path(directory)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"The pretrained vegetation weights are missing: '{path / 'model.safetensors'}'. Reinstall the "
            "package, or retrain them with `python -m deepplantphenomics.train_vegetation` (docs/vegetation.md)."
        )
    model = load_model(path)
    network = model.build_network()  # the facade's network: loaded from the state, nothing re-initialised
    tune_allocator()
    network = prepare_module(fold_batch_norm(network.eval()), torch.device("cpu"))
    return network, card_scheme(_read_card(path), path / MODEL_CARD)


def _read_card(directory: Path) -> dict[str, Any]:
    path = directory / MODEL_CARD
    if not path.is_file():
        raise FileNotFoundError(f"The vegetation model card is missing: '{path}'.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"The vegetation model card '{path}' is corrupt: {exc}") from None


def card_scheme(card: Mapping[str, Any], source: str | os.PathLike | None = None) -> InferenceScheme:
    """The card's ``inference`` section as an :class:`InferenceScheme` (missing keys take their defaults).

    Raises:
        TypeError, ValueError: an unknown key or a wrong value in the section, named with the card ``source``.
    """
    return InferenceScheme.from_dict(card.get("inference", {}), source)


def working_size(height: int, width: int, settings: InferenceScheme | Mapping[str, Any]) -> tuple[int, int]:
    """Size (h, w) at which the network sees an image of (height, width).

    The scheme's ``scale`` resizes by a fixed factor; otherwise its ``max_pixels`` (one number) shrinks
    images with more pixels than that (keeping the aspect ratio) and leaves smaller ones at full size. Either
    way an image is never enlarged, nor made smaller than one network tile of ``multiple`` pixels. For an
    ensemble (``max_pixels`` a list) see :func:`working_sizes`. ``settings`` may be a mapping of the scheme's
    keys (:meth:`InferenceScheme.from_dict`).
    """
    scheme = InferenceScheme.of(settings)
    scale = scheme.scale
    if scale is None:
        max_pixels = scheme.max_pixels
        scale = 1.0 if not max_pixels else min(1.0, math.sqrt(max_pixels / float(height * width)))
    scale = min(float(scale), 1.0)
    floor = scheme.multiple
    return max(floor, min(height, round(height * scale))), max(floor, min(width, round(width * scale)))


def working_sizes(
    height: int, width: int, settings: InferenceScheme | Mapping[str, Any]
) -> list[tuple[int, int]]:
    """The distinct sizes (h, w) at which the network sees an image of (height, width).

    One size, unless the scheme's ``max_pixels`` is a list (a multi-scale ensemble): then one size per entry,
    duplicates removed (a small image that stays at full size under several entries is predicted once;
    averaging identical predictions would change nothing).
    """
    scheme = InferenceScheme.of(settings)
    limits = scheme.max_pixels
    if scheme.scale is not None or not isinstance(limits, tuple):
        return [working_size(height, width, scheme)]
    sizes: list[tuple[int, int]] = []
    for limit in limits:
        size = working_size(height, width, scheme.replace(max_pixels=limit))
        if size not in sizes:
            sizes.append(size)
    return sizes


def _pad_to_multiple(batch: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom/right to multiples of ``multiple``: every pooling halves evenly."""
    height, width = batch.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_w:
        batch = F.pad(batch, (0, pad_w, 0, 0), mode="reflect" if pad_w < width else "replicate")
    if pad_h:
        batch = F.pad(batch, (0, 0, 0, pad_h), mode="reflect" if pad_h < height else "replicate")
    return batch


@torch.inference_mode()
def network_probabilities(
    network: nn.Module, images: Sequence[torch.Tensor], settings: InferenceScheme | Mapping[str, Any]
) -> list[torch.Tensor]:
    """Plant probabilities of images of the same size, batched, at their own size.

    Each image is resized to :func:`working_size` (bilinear, antialiased), padded to a multiple of 16, run
    through the network, and its logits are cropped and resized back (bilinear) before the sigmoid. With
    the scheme's ``max_pixels`` a list, the image is predicted at each of those sizes (:func:`working_sizes`)
    and with ``flip`` also mirrored left-right; the logits of all these views, resized back, are averaged
    before the sigmoid (test-time augmentation: edges and small plants agree across scales, errors do not).
    ``mode='tiled'`` instead predicts at full resolution tile by tile (``data.patches.predict_tiled``, tiles
    of ``tile`` pixels).

    Args:
        network: The vegetation network in eval mode (binary: one logit channel).
        images: (3, H, W) float32 tensors in [0, 1], all of the same H and W.
        settings: The inference scheme (the card's: :func:`card_scheme`), or a mapping of its keys.

    Returns:
        One float32 (H, W) tensor of probabilities in [0, 1] per image.
    """
    scheme = InferenceScheme.of(settings)
    height, width = images[0].shape[-2:]
    if scheme.mode == "tiled":
        return [_tiled_probabilities(network, image, scheme) for image in images]
    sizes = working_sizes(height, width, scheme)
    return _views_probabilities(network, [_views(image, sizes) for image in images], (height, width), scheme)


def _tiled_probabilities(network: nn.Module, image: torch.Tensor, scheme: InferenceScheme) -> torch.Tensor:
    from deepplantphenomics.data.patches import predict_tiled
    from deepplantphenomics.runtime import prepare_input

    device = next(network.parameters()).device
    tile = scheme.tile

    def predict(tiles: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(network(prepare_input(tiles, device)).float())

    return predict_tiled(predict, image, tile, tile, batch_size=4)[0]


def _views(image: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """The image at each working size (bilinear, antialiased): all the network needs of a full-size image."""
    views = []
    for small_h, small_w in sizes:
        if (small_h, small_w) == tuple(image.shape[-2:]):
            views.append(image)
        else:
            small = F.interpolate(
                image[None], size=(small_h, small_w), mode="bilinear", align_corners=False, antialias=True
            )
            views.append(small[0])
    return views


# Rows of a photo made float at once while its views are made: about 12 MiB of float32 per band.
_VIEW_BAND_PIXELS = 1 << 20


@torch.inference_mode()
def _views_of_array(image: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """:func:`_views` of an (H, W, 3) uint8/uint16 photo without its full-size float copy (12 bytes per pixel).

    The antialiased resize is separable and PyTorch does it width first: the width is resized band of rows by
    band of rows (each band made float on its own), then the height of the narrow result. Bit for bit the
    same as resizing the whole float image at once (``tests/test_segment_outputs.py`` checks it).
    """
    height, width = image.shape[:2]
    if any(size == (height, width) for size in sizes):
        return _views(_to_tensor(image), sizes)  # a view at full size needs the float image anyway
    rows = max(1, _VIEW_BAND_PIXELS // width)
    narrow: list[list[torch.Tensor]] = [[] for _ in sizes]
    for top in range(0, height, rows):
        band = _to_tensor(image[top : top + rows])[None]
        for parts, (_, small_w) in zip(narrow, sizes):
            parts.append(
                F.interpolate(
                    band, size=(band.shape[2], small_w), mode="bilinear", align_corners=False, antialias=True
                )
            )
    views = []
    for parts, (small_h, small_w) in zip(narrow, sizes):
        wide = torch.cat(parts, dim=2)
        parts.clear()
        views.append(
            F.interpolate(
                wide, size=(small_h, small_w), mode="bilinear", align_corners=False, antialias=True
            )[0]
        )
    return views


@torch.inference_mode()
def _views_probabilities(
    network: nn.Module,
    views: Sequence[Sequence[torch.Tensor]],
    size: tuple[int, int],
    scheme: InferenceScheme,
    mapped: bool = False,
) -> list[torch.Tensor]:
    """Probabilities at full ``size`` of images given by their views (one list of views per image).

    Each view size is one network call for all the images; the logits are resized back and averaged one image
    at a time, so only one image's full-size maps exist at once (``mapped``: in memory that goes back to the
    system when freed, ``runtime.mapped_allocations``).
    """
    import contextlib

    from deepplantphenomics.runtime import mapped_allocations, prepare_input

    height, width = size
    device = next(network.parameters()).device
    flip, multiple = scheme.flip, scheme.multiple
    count = len(views[0])
    small_logits = []
    for k in range(count):
        batch = torch.stack([image_views[k] for image_views in views])
        small_h, small_w = batch.shape[-2:]
        padded = _pad_to_multiple(batch, multiple)
        logits = network(prepare_input(padded, device)).float()[:, :, :small_h, :small_w]
        if flip:
            # The mirrored view is padded on its own right-hand side, so it is cropped before un-mirroring.
            mirrored = network(prepare_input(_pad_to_multiple(batch.flip(-1), multiple), device))
            logits = (logits + mirrored.float()[:, :, :small_h, :small_w].flip(-1)) * 0.5
        small_logits.append(logits)
    out = []
    for i in range(len(views)):
        with mapped_allocations() if mapped else contextlib.nullcontext():
            out.append(_full_size(small_logits, i, count, (height, width)))
    return out


def _full_size(
    small_logits: Sequence[torch.Tensor], i: int, count: int, size: tuple[int, int]
) -> torch.Tensor:
    """Image ``i``'s probabilities at full size: its views' logits resized back, averaged, sigmoid."""
    height, width = size
    total: torch.Tensor | None = None  # sum of the views' logits at full size, (1, 1, H, W)
    for logits in small_logits:
        one = logits[i : i + 1]
        if tuple(one.shape[-2:]) != (height, width):
            one = F.interpolate(one, size=(height, width), mode="bilinear", align_corners=False)
        total = one if total is None else total.add_(one)
    assert total is not None  # every image has at least one view
    if count > 1:
        total.div_(count)
    return torch.sigmoid_(total[0, 0]).contiguous()


# Otsu's cut of a probability map is kept inside this band. On a map with two populations (plants and
# background) it falls inside anyway (0.30-0.40 on CWFID); on a map with one population (bare soil, a grey
# card) Otsu splits that population in two, and the band stops it from calling half the image plant.
OTSU_BAND = (0.25, 0.75)


def cut_probabilities(probabilities: np.ndarray, rule: float | str) -> float:
    """The cut for a plant-probability map: ``rule`` itself, or Otsu's threshold clamped to ``OTSU_BAND``."""
    if rule == "otsu":
        return min(max(threshold_otsu(probabilities), OTSU_BAND[0]), OTSU_BAND[1])
    return float(rule)


def _threshold(probabilities: np.ndarray, rule: float | str) -> np.ndarray:
    return (probabilities > cut_probabilities(probabilities, rule)).astype(np.float32)


# ------------------------------------------------------------------------------------------- validation
def _check_method(method: Any) -> str:
    return check_choice("method", method, METHODS)


def _as_rgb(image: Any, argument: str = "image") -> np.ndarray:
    """An (H, W, 3) uint8/uint16 image from (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) input."""
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"Invalid value for argument `{argument}`: expected a numpy array of shape (H, W, 3), received "
            f"{type(image).__name__}."
        )
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(
            f"Invalid value for argument `{argument}`: expected a uint8 or uint16 array, received dtype "
            f"{image.dtype}."
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(
            f"Invalid value for argument `{argument}`: expected an RGB image of shape (H, W, 3), received "
            f"shape {image.shape}."
        )
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1], contiguous: the antialiased resize of a planar image is about 3x faster
    than of an interleaved one. One float copy of the photo (divided in place), not two."""
    array = np.empty((image.shape[2], image.shape[0], image.shape[1]), dtype=np.float32)
    np.copyto(array, image.transpose(2, 0, 1), casting="unsafe")
    array /= np.float32(pixel_scale(image.dtype))
    return torch.from_numpy(array)


# ------------------------------------------------------------------------------------------- public API
def model_card() -> dict[str, Any]:
    """The shipped network's model card: architecture, inference settings, training data and their terms,
    held-out file names and measured scores (network and both baselines), timing.

    Returns:
        A fresh dict (changing it does not change the tool).

    Raises:
        FileNotFoundError: the card is missing from the installation.
    """
    return copy.deepcopy(_read_card(WEIGHTS_DIR))


def vegetation_probabilities(image: np.ndarray) -> np.ndarray:
    """Plant probability of every pixel of one image, from the shipped network.

    Args:
        image: (H, W, 3) uint8 or uint16 RGB array (grey (H, W) / (H, W, 1) is repeated to RGB; an alpha
            channel is dropped).

    Returns:
        float32 (H, W) in [0, 1], at the image's own size.

    Raises:
        TypeError: ``image`` is not a uint8/uint16 numpy array.
        ValueError: ``image`` has another shape.
        FileNotFoundError: the shipped weights are missing.
    """
    rgb = _as_rgb(image)
    network, scheme = _network("network")
    return network_probabilities(network, [_to_tensor(rgb)], scheme)[0].numpy()


def inference_scheme(method: str = "network") -> InferenceScheme:
    """How a network method runs the shipped network: the model card's scheme, for 'network-fast' with
    :data:`FAST_INFERENCE` in place of its settings.

    Args:
        method: 'network' or 'network-fast' (case-insensitive).

    Returns:
        The frozen scheme (sizes, mirroring, threshold...).

    Raises:
        ValueError: ``method`` is not a network method, or the card's ``inference`` section is invalid.
        FileNotFoundError: the shipped weights or card are missing.
    """
    method = check_choice("method", method, ("network", "network-fast"))
    return _network(method)[1]


def _network(method: str) -> tuple[nn.Module, InferenceScheme]:
    """The shipped network and the inference scheme of a network method ('network' or 'network-fast')."""
    network, scheme = _load_network(str(WEIGHTS_DIR))
    if method == "network-fast":
        scheme = scheme.replace(**FAST_INFERENCE)
    return network, scheme


def segment_image(image: np.ndarray, method: str = "network") -> np.ndarray:
    """Plant mask of one in-memory image.

    Args:
        image: (H, W, 3) uint8 or uint16 RGB array (grey is repeated to RGB, alpha dropped).
        method: 'network' (the shipped network, thresholded as its model card says), 'network-fast' (the same
            network on one smaller view, :data:`FAST_INFERENCE`), 'exg' (Excess Green + Otsu) or 'cive' (CIVE +
            Otsu); case-insensitive.

    Returns:
        float32 (H, W) with 1.0 on plant pixels and 0.0 elsewhere.

    Raises:
        TypeError: ``image`` is not a uint8/uint16 numpy array, or ``method`` is not a str.
        ValueError: ``image`` has another shape, or ``method`` is unknown.
    """
    method = _check_method(method)
    rgb = _as_rgb(image)
    if method in INDEX_METHODS:
        return index_mask(rgb, method)
    network, scheme = _network(method)
    probabilities = network_probabilities(network, [_to_tensor(rgb)], scheme)[0].numpy()
    return _threshold(probabilities, scheme.threshold)


@dataclass
class Segmentation:
    """One photo's result from :func:`segment_images`.

    Attributes:
        path: the image file.
        image: the photo as read (``data.io.read_image``: (H, W, C) uint8 or uint16, upright), or None when
            it failed.
        mask: bool (H, W), True on plant pixels, or None when it failed.
        error: why the file failed (with ``errors='return'``), else None.
    """

    path: Path
    image: np.ndarray | None
    mask: np.ndarray | None
    error: Exception | None = None


# What a file can fail with (read, decode, too small...): anything else is a bug and propagates.
_FILE_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


def segment_images(
    files: Sequence[str | os.PathLike] | str | os.PathLike,
    batch_size: int = 8,
    method: str = "network",
    recursive: bool = False,
    errors: str = "raise",
) -> Iterator[Segmentation]:
    """Plant masks of image files, one at a time, each with the photo as read (what ``dpp segment`` uses).

    Files are read a few at a time: up to ``batch_size`` photos, and no more than
    :data:`NETWORK_BATCH_PIXELS` pixels together (a 50 MP photo is read and predicted on its own), so memory
    follows the pixels being worked on, not the number of photos. Each file is read once; its result is
    yielded as soon as its batch is done, and nothing of it is kept afterwards.

    Args:
        files: image file paths, or one path; a folder stands for its image files, sorted.
        batch_size: at most this many photos are predicted together.
        method: as :func:`segment_vegetation`.
        recursive: folders also give the image files of their sub-folders.
        errors: 'raise' (the first file that cannot be read or segmented raises, naming it) or 'return' (it
            comes back as a :class:`Segmentation` with ``error`` set, and the others are still processed).

    Yields:
        One :class:`Segmentation` per file, in input order.

    Raises:
        TypeError, ValueError, FileNotFoundError: as :func:`segment_vegetation` (checked before any work).
    """
    paths = check_files(files, "files", recursive)
    batch_size = check_int("batch_size", batch_size)
    method = _check_method(method)
    errors = check_choice("errors", errors, ("raise", "return"))
    return _segmentations(paths, batch_size, method, errors)  # arguments checked now, not at the first next()


def _segmentations(paths: list[Path], batch_size: int, method: str, errors: str) -> Iterator[Segmentation]:
    index = method in INDEX_METHODS
    for chunk in _pixel_batches(paths, 1 if index else batch_size, errors):  # an index needs no batch
        if not index:
            _network_results(chunk, method, errors)
        while chunk:
            # Yielded and forgotten here (no local name keeps it): the caller holds the only reference.
            yield _index_result(chunk.pop(0), method, errors) if index else chunk.pop(0)


def _pixel_batches(paths: list[Path], batch_size: int, errors: str) -> Iterator[list[Segmentation]]:
    """Files read into batches of at most ``batch_size`` photos and ``NETWORK_BATCH_PIXELS`` pixels."""
    from deepplantphenomics.runtime import mapped_allocations

    chunk: list[Segmentation] = []
    pixels = 0
    for path in paths:
        try:
            with mapped_allocations():  # a photo-sized buffer goes back to the system when dropped
                item = Segmentation(path, read_image(path), None)
            _as_rgb(item.image, "files")  # refused now (naming the file's shape), before any work on it
        except _FILE_ERRORS as exc:
            if errors == "raise":
                raise
            item = Segmentation(path, None, None, exc)
        size = 0 if item.image is None else item.image.shape[0] * item.image.shape[1]
        if chunk and (len(chunk) >= batch_size or pixels + size > NETWORK_BATCH_PIXELS):
            yield chunk
            chunk, pixels = [], 0
        chunk.append(item)
        item = None  # no reference of this frame keeps a photo alive once the caller is done with it
        pixels += size
    if chunk:
        yield chunk


def _index_result(item: Segmentation, method: str, errors: str) -> Segmentation:
    if item.error is None:
        try:
            item.mask = index_plant(_as_rgb(item.image, "files"), method)
        except _FILE_ERRORS as exc:
            if errors == "raise":
                raise
            item.image, item.error = None, exc
    return item


def _network_results(chunk: list[Segmentation], method: str, errors: str) -> None:
    """Masks of a batch: photos of one size share the network calls; each photo's views are made at once,
    so its full-size float copy lives only while they are."""
    network, scheme = _network(method)
    by_size: dict[tuple[int, int], list[Segmentation]] = {}
    for item in chunk:
        if item.error is None:
            by_size.setdefault(tuple(item.image.shape[:2]), []).append(item)
    for size, items in by_size.items():
        try:
            _segment_same_size(network, scheme, size, items)
        except _FILE_ERRORS as exc:
            if errors == "raise" or len(items) == 1:
                if errors == "raise":
                    raise
                items[0].image, items[0].error = None, exc
                continue
            for item in items:  # find the photo at fault by predicting one at a time
                try:
                    _segment_same_size(network, scheme, size, [item])
                except _FILE_ERRORS as single:
                    item.image, item.error = None, single


def _segment_same_size(
    network: nn.Module, scheme: InferenceScheme, size: tuple[int, int], items: list[Segmentation]
) -> None:
    from deepplantphenomics.runtime import mapped_allocations

    rule = scheme.threshold
    if scheme.mode == "tiled":
        probabilities = [
            _tiled_probabilities(network, _to_tensor(_as_rgb(item.image)), scheme) for item in items
        ]
    else:
        sizes = working_sizes(size[0], size[1], scheme)
        with mapped_allocations():  # photo-sized work buffers go back to the system when freed
            views = [_views_of_array(_as_rgb(item.image), sizes) for item in items]
        probabilities = _views_probabilities(network, views, size, scheme, mapped=True)
    for item in items:
        values = probabilities.pop(0).numpy()
        with mapped_allocations():
            item.mask = values > cut_probabilities(values, rule)
        del values


def segment_vegetation(
    files: Sequence[str | os.PathLike] | str | os.PathLike,
    batch_size: int = 8,
    method: str = "network",
    recursive: bool = False,
    check_quality: bool = True,
) -> list[np.ndarray]:
    """Plant masks of image files, each at its file's own size (files of different sizes may be mixed).

    Each photo's mask is checked (:func:`quality_flags`, docs/vegetation.md): a grey-scale photo, a photo with
    no plant, a plant a colour index sees but the mask leaves out, a mostly non-green mask or colours unlike
    the training photos' raise a :class:`VegetationQualityWarning` naming the file and the flags.
    :func:`segment_with_quality` returns the flags instead.

    Args:
        files: image file paths (PNG, JPEG, TIFF, BMP; grey, RGB or RGBA; 8 or 16 bit), or one path; a folder
            stands for its image files, sorted (as ``dpp segment`` lists them).
        batch_size: at most this many images are read and predicted together, and no more than
            :data:`NETWORK_BATCH_PIXELS` pixels (big photos go one at a time); images of the same size share
            one network call.
        method: 'network' (default, the shipped network), 'network-fast' (the same network on one smaller view:
            about 4.5x less work, 0.003-0.005 lower held-out Dice; :data:`FAST_INFERENCE`), 'exg' (Excess Green +
            Otsu) or 'cive' (CIVE + Otsu).
        recursive: folders also give the image files of their sub-folders.
        check_quality: check each network mask and warn about flagged photos (on the photo already read:
            about 6 ms of checks for a 1296x966 photo); False skips the check. Index methods are not checked.

    Returns:
        One float32 (H, W) array per file, in input order, 1.0 on plant pixels and 0.0 elsewhere.

    Warns:
        VegetationQualityWarning: per flagged photo (``check_quality``).

    Raises:
        TypeError: ``files`` is not a path or a list of paths, ``batch_size`` is not an int, ``method`` is not
            a str, ``recursive`` is not a bool.
        ValueError: ``batch_size`` < 1, an unknown ``method``, an empty ``files``, a folder without images, or
            a file that cannot be decoded as an image (named in the message).
        FileNotFoundError: "No such file or folder" (named in the message); checked before any work is done.
    """
    method = _check_method(method)
    check_quality = check_bool("check_quality", check_quality) and method not in INDEX_METHODS
    masks = []
    # The flags compare the mask with colour indices: for method='exg' / 'cive' that is the mask itself.
    for result in segment_images(files, batch_size, method, recursive):
        masks.append(result.mask.astype(np.float32))
        flags = quality_flags(result.image, masks[-1]) if check_quality else []
        if flags:
            warnings.warn(
                f"The vegetation mask of '{result.path}' may not be trustworthy: {quality_label(flags)} "
                f"({describe(flags)}). See docs/vegetation.md, 'Quality flags'.",
                VegetationQualityWarning,
                stacklevel=2,
            )
    return masks


def quality_flags(image: np.ndarray, mask: np.ndarray) -> list[str]:
    """Quality flags of a photo's plant mask against the shipped network's training photos.

    ``deepplantphenomics.mask_quality.mask_quality`` with the model card's ``quality.colour_ranges``: a list
    drawn from ``'greyscale'``, ``'no_plant'``, ``'missed_green'``, ``'non_green_mask'`` and
    ``'unfamiliar_colours'`` (meanings in docs/vegetation.md); ``[]`` when nothing is wrong.

    Args:
        image: The photo as read ((H, W) grey or (H, W, 3/4), uint8, uint16 or float in [0, 1]).
        mask: Its plant mask (H, W), plant > 0.

    Returns:
        The flags raised, in the order above.
    """
    ranges = _read_card(WEIGHTS_DIR).get("quality", {}).get("colour_ranges")
    return mask_quality(image, mask, ranges)


def segment_with_quality(
    files: Sequence[str | os.PathLike] | str | os.PathLike,
    batch_size: int = 8,
    method: str = "network",
    recursive: bool = False,
) -> list[tuple[np.ndarray, list[str]]]:
    """Plant masks of image files with each mask's quality flags (:func:`quality_flags`), without warnings.

    Arguments and errors as :func:`segment_vegetation`.

    Returns:
        One ``(mask, flags)`` per file, in input order: the float32 0/1 mask and a list of flags (``[]``: ok).
    """
    out = []
    for result in segment_images(files, batch_size, method, recursive):
        mask = result.mask.astype(np.float32)
        out.append((mask, quality_flags(result.image, mask)))
    return out
