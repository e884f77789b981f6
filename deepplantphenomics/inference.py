"""Batched and tiled prediction on image files.

Without a patch size, every image is brought to the network size (as in training) and predicted in batches;
with one, each image is predicted at full resolution tile by tile and stitched without seams.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepplantphenomics.data.dataset import (
    fit_to_network,
    normalize,
    pixel_statistics,
    prefetch_decoding,
    to_tensor_image,
)
from deepplantphenomics.data.io import (
    IMAGE_EXTENSIONS,
    image_files,
    image_size,
    match_depth,
    not_found,
    pixel_scale,
    read_image,
    read_image_into,
)
from deepplantphenomics.data.patches import predict_tiled, tile_starts
from deepplantphenomics.runtime import (
    choose_layout,
    mapped_allocations,
    prepare_input,
    prepare_module,
    tune_allocator,
)
from deepplantphenomics.settings import Settings, check_bool


def check_files(
    files: Sequence[str | os.PathLike] | str | os.PathLike, argument: str = "files", recursive: bool = False
) -> list[Path]:
    """Image files from a path or list of paths; a folder stands for its image files, sorted.

    Args:
        files: file and folder paths (or one path).
        argument: the caller's name for ``files``, used in error messages.
        recursive: folders also give the image files of their sub-folders.

    Returns:
        The files, in input order (each folder's sorted, as ``dpp segment`` lists them).

    Raises:
        TypeError: ``files`` is not a path or a list of paths, ``recursive`` not a bool.
        FileNotFoundError: "No such file or folder", naming the path.
        ValueError: an empty list, or a folder without image files (named).
    """
    recursive = check_bool("recursive", recursive)
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    if isinstance(files, np.ndarray) and files.ndim == 1:
        files = files.tolist()  # a numpy array of paths, as DPP accepted
    if not isinstance(files, Sequence) or isinstance(files, (bytes, bytearray)):
        raise TypeError(
            f"Invalid value for argument `{argument}`: expected a list of file paths, received {files!r}."
        )
    paths = []
    for item in files:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(
                f"Invalid value for argument `{argument}`: expected file paths, received {item!r}."
            )
        path = Path(item)
        if path.is_dir():
            found = image_files(path, recursive)
            if not found:
                raise ValueError(
                    f"Folder '{path}' given in `{argument}` holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                    + ("." if recursive else "; pass recursive=True to include its sub-folders.")
                )
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise not_found(path)
    if not paths:
        raise ValueError(f"Invalid value for argument `{argument}`: expected at least one file, received [].")
    return paths


def load_image_tensor(path: Path, depth: int) -> torch.Tensor:
    """Read a file as a (depth, H, W) float32 tensor in [0, 1]."""
    return to_tensor_image(match_depth(read_image(path), depth, path))


def read_into_result(path: Path, depth: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """An uninitialised float32 (H, W, channels) result for a file, and the file's image inside it.

    The image (as ``match_depth(read_image(path), depth)``) is decoded into the last bytes of the result's
    buffer when it takes no more bytes per pixel than the result (8-bit images always do: 1 or 3 bytes against
    4 per channel), else into an array of its own. :func:`~deepplantphenomics.data.patches.predict_tiled`
    writes the result's rows only after it has read the image's rows they overlap, so the photo and its
    probabilities together take the memory of the probabilities alone.

    Returns:
        (result, image): image is (H, W, depth) uint8 or uint16.
    """
    results: list[np.ndarray] = []

    def allocate(shape: tuple[int, int, int], dtype: np.dtype) -> np.ndarray:
        result = np.empty((shape[0], shape[1], channels), dtype=np.float32)
        results.append(result)
        size = math.prod(shape) * np.dtype(dtype).itemsize
        if size > result.nbytes:
            return np.empty(shape, dtype=dtype)
        return result.reshape(-1).view(np.uint8)[result.nbytes - size :].view(dtype).reshape(shape)

    # Mapped rather than grown into the heap: the decoder's whole-image buffer (Pillow's, freed on return) then
    # leaves no hole there for the tile loop to fragment, and the result goes back to the system once the
    # caller drops it.
    with mapped_allocations():
        image = read_image_into(path, allocate, depth)
    return results[0], image


def class_probabilities(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, K, H, W): sigmoid of the single binary logit, softmax over K classes.

    The model's own output activation, one batch at a time. (``tools.network_probabilities`` is the
    vegetation tool's scheme on top of a network: resized views, mirroring, averaged logits.)
    """
    logits = network(images).float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def chunked(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of ``items`` of ``size`` items each (the last one shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.inference_mode()
def predict_files(
    network: nn.Module,
    files: list[Path],
    settings: Settings,
    device: torch.device,
    batch_size: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[np.ndarray]:
    """Class probabilities for each file as (H, W, K) float32 (K = 1 for binary).

    H, W are the network size, or the file's own size when a patch size is set. ``log`` gets the debug
    log's lines (the memory layout chosen).
    """
    tune_allocator()
    depth = settings.image_depth
    size = (settings.image_height, settings.image_width)
    step = batch_size or max(settings.batch_size, 1)
    choose_inference_layout(network.eval(), files, settings, device, step, log)
    network = prepare_module(network, device).eval()
    outputs: list[np.ndarray] = []
    if settings.patching:

        def predict(tiles: torch.Tensor) -> torch.Tensor:
            return class_probabilities(network, prepare_input(tiles, device))

        channels = 1 if settings.binary else settings.num_classes
        for path in files:
            # The decoded 8-bit (or 16-bit) image is tiled as it is and each batch of tiles converted to
            # floats and standardised with the whole image's statistics (every tile sees the same scale, as in
            # training): a full-size float copy would take 4 times the decoded image's memory. The image is
            # decoded into the end of the array the probabilities are written to (see `predict_tiled`).
            result, raw = read_into_result(path, depth, channels)
            scale = pixel_scale(raw.dtype)
            pixels = torch.from_numpy(raw).permute(2, 0, 1)
            standardize = settings.input_normalization != "none"
            stats = pixel_statistics(pixels, scale) if standardize else None

            def prepare(
                tiles: torch.Tensor, stats: torch.Tensor | None = stats, scale: float = scale
            ) -> torch.Tensor:
                tiles = tiles.float().div_(scale)
                return tiles if stats is None else tiles.sub_(stats[0]).div_(stats[1])

            predict_tiled(
                predict,
                pixels,
                settings.patch_height,
                settings.patch_width,
                batch_size=step,
                prepare=prepare,
                out=torch.from_numpy(result).permute(2, 0, 1),
            )
            del raw, pixels
            outputs.append(result)
        return outputs

    def load(path: Path) -> torch.Tensor:
        image = load_image_tensor(path, depth)
        image = fit_to_network(image, *size, settings.resize_images, settings.crop_or_pad_images, str(path))
        return normalize(image[None], settings.input_normalization)[0]  # per image: in the decoding thread

    for images in prefetch_decoding(load, list(chunked(files, step))):
        probs = class_probabilities(network, prepare_input(torch.stack(images), device))
        outputs.extend(as_numpy(p) for p in probs)
    return outputs


def choose_inference_layout(
    network: nn.Module,
    files: list[Path],
    settings: Settings,
    device: torch.device,
    batch_size: int,
    log: Callable[[str], None] | None = None,
) -> None:
    """Pick the network's memory layout for a prediction run (``runtime.choose_layout``): a run of many
    batches measures it once per machine and shape; a short one uses the cached decision, else NCHW."""
    if settings.patching:
        shape = (settings.patch_height, settings.patch_width)
        try:  # tiles of the first file, as a guide to the run's length (a header read)
            height, width = image_size(files[0])
        except (OSError, ValueError):  # ImageReadError is a ValueError; the decode reports it
            height, width = shape
        rows = tile_starts(height, shape[0], shape[0] // 4)
        tiles = len(rows) * len(tile_starts(width, shape[1], shape[1] // 4))
        batches, count = len(files) * math.ceil(tiles / batch_size), batch_size
    else:
        shape = (settings.image_height, settings.image_width)
        batches, count = math.ceil(len(files) / batch_size), min(batch_size, len(files))
    # A private generator: the caller's random streams are left alone.
    sample = torch.rand((count, settings.image_depth, *shape), generator=torch.Generator().manual_seed(0))
    choose_layout(network, sample, device, training=False, planned_steps=batches, log=log)


def as_numpy(probabilities: torch.Tensor) -> np.ndarray:
    """(K, H, W) tensor -> C-contiguous (H, W, K) float32 array, copying only when the layout needs it."""
    return np.ascontiguousarray(probabilities.detach().permute(1, 2, 0).cpu().numpy(), dtype=np.float32)


def interpret(probabilities: np.ndarray, threshold: float | str | None = None) -> np.ndarray:
    """(H, W, K) probabilities -> uint8 (H, W) mask: 0/255 for binary, class indices (arg-max) otherwise.

    Binary maps are cut as ``threshold`` says:

    - None (DPP's rule): the map is stretched to its own [min, max] range and cut at the middle, i.e. a
      pixel is foreground when ``p >= (min + max) / 2``; a constant map is all background (DPP divided by
      zero there). The cut adapts to a model that is still under-confident (all p < 0.5 after a short
      training), but it always finds some foreground, even in an image with none;
    - 'otsu': Otsu's threshold of the map (also adaptive);
    - a float t in (0, 1): ``p > t`` (use 0.5 when some images may hold no plant at all).

    Args:
        probabilities: (H, W, K) float probabilities, K = 1 for binary models.
        threshold: None, 'otsu' or a float in (0, 1); ignored for multi-class maps.

    Returns:
        (H, W) uint8 mask.
    """
    if probabilities.shape[-1] != 1:
        return probabilities.argmax(axis=-1).astype(np.uint8)
    p = probabilities[..., 0]
    if threshold is None:
        low, high = float(p.min()), float(p.max())
        if not high > low:
            return np.zeros(p.shape, dtype=np.uint8)
        # The same comparison as DPP's (p - min) / (max - min) >= 0.5, without the division.
        foreground = (p - low) >= 0.5 * (high - low)
    elif threshold == "otsu":
        from deepplantphenomics.postprocess import threshold_otsu

        foreground = p > threshold_otsu(p)
    else:
        foreground = p > float(threshold)
    return foreground.astype(np.uint8) * 255


def stack_or_list(arrays: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """One array when every output has the same shape (the usual case), else the list (tiled, mixed sizes)."""
    if len(arrays) == 1:
        return arrays[0][None]  # a view: one full-resolution result is not copied again
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)
    return arrays
