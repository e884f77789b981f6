"""Pairing images with masks, decoding them once into memory, and the train/validation/test split.

Every file is decoded and brought to the network size once per run; epochs then slice in-memory tensors.
Images are kept in their source integer type (uint8 / uint16, N x C x H x W) to hold four times more than
float32 would; batches are converted to float on the fly.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from deepplantphenomics.data.io import (
    IGNORE_INDEX,
    ImageReadError,
    decoding_in_threads,
    depth_conversion,
    is_image_file,
    match_depth,
    pixel_scale,
    read_binary_mask,
    read_class_mask,
    read_image_and_mode,
)

SPLITS = ("train", "validation", "test")


@dataclass
class LoadReport:
    """What the loader saw, for the debug log."""

    pairs: int = 0
    skipped: int = 0
    zero_one_masks: int = 0
    ignore_masks: int = 0
    modes: dict[str, list[str]] = field(default_factory=dict)


def _listing(directory: Path, argument: str) -> tuple[list[Path], int]:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            f"Invalid value for argument `{argument}`: expected a folder path (str), received {directory!r}."
        )
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Folder given as `{argument}` does not exist: '{directory}'.")
    files, skipped = [], 0
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and is_image_file(entry):
            files.append(entry)
        else:
            skipped += 1  # hidden files (.DS_Store), sub-folders, notes, CSVs
    if not files:
        raise ValueError(
            f"Folder given as `{argument}` holds no images (.png, .jpg, .jpeg, .tif, .tiff, .bmp): '{directory}'."
        )
    return files, skipped


# Name suffixes that public datasets give their masks, and their photos (plant001_rgb.png, plant001_fg.png).
MASK_SUFFIXES = ("_mask", "_masks", "_fg", "_label", "_labels", "_seg", "_gt", "_annotation")
PHOTO_SUFFIXES = ("", "_rgb", "_img", "_image")
BY_NAME = "identical file name or name stem"


@dataclass
class Pairing:
    """Images paired with masks, and how (for the debug log).

    Attributes:
        pairs: (image, mask) sorted by image name.
        skipped: non-image entries skipped in both folders.
        convention: :data:`BY_NAME`, or the suffix rule used, e.g. "'plant.png' with 'plant_mask.png'".
    """

    pairs: list[tuple[Path, Path]]
    skipped: int
    convention: str


def pair_files(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    arguments: tuple[str, ...] = ("images_dir", "masks_dir"),
    mask_suffix: str | None = None,
) -> tuple[list[tuple[Path, Path]], int]:
    """``pair_folders`` as (pairs, number of non-image entries skipped)."""
    pairing = pair_folders(images_dir, masks_dir, arguments, mask_suffix)
    return pairing.pairs, pairing.skipped


def pair_folders(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    arguments: tuple[str, ...] = ("images_dir", "masks_dir"),
    mask_suffix: str | None = None,
) -> Pairing:
    """Pair each image with its mask: by name, else by one name-suffix convention for the whole folder.

    In two folders, a mask with the identical file name, else the identical name stem, pairs with the image
    (photos are JPEG and masks PNG in most datasets: ``plant_01.jpg`` with ``plant_01.png``). When that does not
    pair every file, or when both folders are the same (a file is never its own mask), the masks may be named
    with one of :data:`MASK_SUFFIXES` (``001.png`` with ``001_mask.png``) and the photos with one of
    :data:`PHOTO_SUFFIXES` (``plant001_rgb.png`` with ``plant001_fg.png``); suffixes compare case-insensitively.
    One convention must pair every file; ``mask_suffix`` names any other mask suffix (and skips name pairing).

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks (may be ``images_dir``).
        arguments: the names under which the caller's user gave the two folders and the suffix (DPP's
            ``dirname`` and ``seg_dirname``, the CLI's ``--images``, ``--masks``, ``--mask-suffix``), used in
            error messages.
        mask_suffix: the part of a mask's name stem after its image's stem (``'-m'`` for ``a-m.png``), or
            None to find the convention.

    Returns:
        The pairs, the non-image entries skipped, and the convention used.

    Raises:
        FileNotFoundError: a folder does not exist.
        TypeError, ValueError: ``mask_suffix`` is not a non-empty str without a path separator.
        ValueError: a folder holds no images; no convention pairs every file (images without masks and masks
            without images named, with the mask suffix the names suggest), or several do (ambiguous).
    """
    names = (*arguments, "mask_suffix")[:3]
    suffix = _check_suffix(mask_suffix, names[2])
    images, skipped = _listing(images_dir, names[0])
    same = (
        isinstance(masks_dir, (str, os.PathLike)) and Path(images_dir).resolve() == Path(masks_dir).resolve()
    )
    masks = images
    if not same:
        masks, skipped_masks = _listing(masks_dir, names[1])
        skipped += skipped_masks
    baseline: tuple[list[tuple[Path, Path]], list[str]] | None = None
    if not same and suffix is None:
        baseline = _pair_by_name(images, masks, images_dir, masks_dir)
        if not baseline[1]:
            return Pairing(baseline[0], skipped, BY_NAME)
    conventions = [(p, m) for m in (MASK_SUFFIXES if suffix is None else (suffix,)) for p in PHOTO_SUFFIXES]
    results = {c: _pair_by_suffix(images, masks, c, same, images_dir, masks_dir) for c in conventions}
    fitting = [c for c, (pairs, problems) in results.items() if pairs and not problems]
    if len(fitting) == 1:
        pairs = results[fitting[0]][0]
        return Pairing(pairs, skipped, _describe(fitting[0], pairs[0]))
    if fitting:
        raise ValueError(
            "Cannot pair images with masks: the file names fit several conventions ("
            + "; ".join(_describe(c, results[c][0][0]) for c in fitting)
            + f"); pass {_option(names[2], fitting[0][1])} to choose one."
        )
    raise ValueError(_pairing_failure(images, masks, same, baseline, results, names, images_dir))


def _check_suffix(value: object, argument: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(
            f"Invalid value for argument `{argument}`: expected a str such as '_mask', received {value!r}."
        )
    if not value or "/" in value or "\\" in value:
        raise ValueError(
            f"Invalid value for argument `{argument}`: expected the end of a mask's name stem such as '_mask' "
            f"(not empty, no folder), received {value!r}."
        )
    return value


def _describe(convention: tuple[str, str], example: tuple[Path, Path] | None = None) -> str:
    """'mask suffix '_mask'' (with the photo suffix when there is one), and an example pair when given."""
    photo, mask = convention
    text = (f"photo suffix '{photo}' and " if photo else "") + f"mask suffix '{mask}'"
    return text + (f" (e.g. '{example[0].name}' with '{example[1].name}')" if example else "")


def _option(argument: str, suffix: str) -> str:
    """How the user passes ``suffix`` under ``argument``: a CLI option, a config key or a Python argument."""
    if argument.startswith("--"):
        return f"{argument} {suffix}"
    if "." in argument:
        return f'{argument} = "{suffix}"'
    return f"{argument}={suffix!r}"


def _pair_by_name(
    images: list[Path], masks: list[Path], images_dir: object, masks_dir: object
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pairs by identical file name, else identical stem; problems (empty when every file pairs)."""
    mask_by_name = {m.name: m for m in masks}
    mask_by_stem: dict[str, list[Path]] = defaultdict(list)
    for m in masks:
        mask_by_stem[m.stem].append(m)
    image_stems: dict[str, list[Path]] = defaultdict(list)
    for i in images:
        image_stems[i.stem].append(i)

    problems: list[str] = []
    for stem, group in image_stems.items():
        if len(group) > 1 and not all(g.name in mask_by_name for g in group):
            problems.append(
                f"several images share the name stem '{stem}': {', '.join(g.name for g in group)}"
            )
    pairs: list[tuple[Path, Path]] = []
    missing: list[str] = []
    for image in images:
        if image.name in mask_by_name:
            pairs.append((image, mask_by_name[image.name]))
            continue
        candidates = mask_by_stem.get(image.stem, [])
        if len(candidates) > 1:
            problems.append(
                f"image '{image.name}' matches several masks: {', '.join(c.name for c in candidates)}"
            )
        elif not candidates:
            missing.append(image.name)
        else:
            pairs.append((image, candidates[0]))
    used = {m for _, m in pairs}
    orphans = [m.name for m in masks if m not in used]
    problems += _unpaired(missing, orphans, images_dir, masks_dir)
    return pairs, problems


def _unpaired(missing: list[str], orphans: list[str], images_dir: object, masks_dir: object) -> list[str]:
    problems = []
    if missing:
        problems.append(f"{len(missing)} image(s) without a mask in '{masks_dir}': {', '.join(missing)}")
    if orphans:
        problems.append(f"{len(orphans)} mask(s) without an image in '{images_dir}': {', '.join(orphans)}")
    return problems


def _strip(stem: str, suffix: str) -> str | None:
    """``stem`` without ``suffix`` (compared case-insensitively), None when it does not end with it."""
    if not suffix:
        return stem
    if len(stem) > len(suffix) and stem.casefold().endswith(suffix.casefold()):
        return stem[: -len(suffix)]
    return None


def _pair_by_suffix(
    images: list[Path],
    masks: list[Path],
    convention: tuple[str, str],
    same: bool,
    images_dir: object,
    masks_dir: object,
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pairs under one (photo suffix, mask suffix) convention; problems (empty when every file pairs).

    In one folder, the files whose stem ends with the mask suffix are the masks and the others the images,
    so no file pairs with itself.
    """
    photo, suffix = convention
    if same:
        masks = [f for f in images if _strip(f.stem, suffix) is not None]
        chosen = set(masks)
        images = [f for f in images if f not in chosen]
    by_key: dict[str, list[Path]] = defaultdict(list)
    for m in masks:
        key = _strip(m.stem, suffix)
        if key is not None:
            by_key[key].append(m)
    problems: list[str] = []
    pairs: list[tuple[Path, Path]] = []
    missing: list[str] = []
    for image in images:
        key = _strip(image.stem, photo)
        found = by_key.get(key, []) if key is not None else []
        if len(found) > 1:
            problems.append(f"image '{image.name}' matches several masks: {', '.join(f.name for f in found)}")
        elif not found:
            missing.append(image.name)
        else:
            pairs.append((image, found[0]))
    counts: dict[Path, int] = defaultdict(int)
    for _, m in pairs:
        counts[m] += 1
    for m, n in counts.items():
        if n > 1:
            shared = [i.name for i, mm in pairs if mm == m]
            problems.append(f"mask '{m.name}' matches several images: {', '.join(shared)}")
    orphans = [m.name for m in masks if m not in counts]
    return pairs, problems + _unpaired(missing, orphans, images_dir, masks_dir)


def _seen_suffixes(images: list[Path], masks: list[Path]) -> dict[str, int]:
    """How often each mask name extends an image's name stem (``a_m.png`` extends ``a.jpg`` by ``_m``).

    The longest image stem (also without a photo suffix) that starts a mask's stem counts, once per mask.
    """
    keys: dict[str, Path] = {}
    for image in images:
        for photo in PHOTO_SUFFIXES:
            key = _strip(image.stem, photo)
            if key is not None:
                keys.setdefault(key, image)
    seen: dict[str, int] = defaultdict(int)
    for mask in masks:
        stem = mask.stem
        for end in range(len(stem) - 1, 0, -1):
            if stem[:end] in keys and keys[stem[:end]] != mask:
                seen[stem[end:]] += 1
                break
    return dict(seen)


def _pairing_failure(
    images: list[Path],
    masks: list[Path],
    same: bool,
    baseline: tuple[list[tuple[Path, Path]], list[str]] | None,
    results: dict[tuple[str, str], tuple[list[tuple[Path, Path]], list[str]]],
    names: tuple[str, ...],
    images_dir: object,
) -> str:
    """The error when no convention pairs every file: why, what is unpaired, and the suffix the names suggest."""
    best = max(results, key=lambda c: len(results[c][0]))
    lines: list[str] = []
    if same:
        lines.append(
            f"`{names[0]}` and `{names[1]}` are the same folder '{images_dir}': a file is never its own mask, so "
            f"the masks must carry a name suffix ({', '.join(MASK_SUFFIXES)}; e.g. 'plant.jpg' with "
            f"'plant_mask.png') or pass {_option(names[2], '_SUFFIX')}"
        )
    if baseline is not None and len(baseline[0]) >= len(results[best][0]):
        lines += baseline[1]
    elif results[best][0]:
        lines += [f"by {_describe(best)}: {problem}" for problem in results[best][1]]
    elif baseline is None and not same:
        lines += [f"no mask name ends with {best[1]!r}"] + results[best][1]
    seen = _seen_suffixes(images, masks)
    tried = {c[1].casefold() for c in results}
    if len(seen) > 1:
        counts = ", ".join(f"'{s}': {n}" for s, n in sorted(seen.items(), key=lambda kv: -kv[1]))
        lines.append(
            f"the mask names use several suffixes ({counts}): use one per folder, or pass "
            f"{_option(names[2], max(seen, key=seen.get))} to choose one"
        )
    elif seen and next(iter(seen)).casefold() not in tried:
        lines.append(
            f"the masks look named with the suffix '{next(iter(seen))}': pass {_option(names[2], next(iter(seen)))}"
        )
    return "Cannot pair images with masks:\n  - " + "\n  - ".join(lines)


def to_tensor_image(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8/uint16 numpy -> (C, H, W) float32 torch tensor in [0, 1]."""
    scale = pixel_scale(image.dtype)
    array = image.astype(np.float32) if image.dtype == np.uint16 else image
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(scale)


def resize_image_tensor(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(C, H, W) float -> (C, height, width), bilinear with antialiasing when shrinking."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    shrinking = image.shape[-2] > height or image.shape[-1] > width
    out = F.interpolate(
        image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return out[0].clamp_(0.0, 1.0)


def resize_mask_tensor(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W) integer mask -> (height, width) by nearest neighbour (class indices stay exact)."""
    if tuple(mask.shape[-2:]) == (height, width):
        return mask
    out = F.interpolate(mask[None, None].float(), size=(height, width), mode="nearest-exact")
    return out[0, 0].to(mask.dtype)


def crop_or_pad(array: torch.Tensor, height: int, width: int, fill: float) -> torch.Tensor:
    """Centre-crop or pad the last two dimensions to (height, width), padding with ``fill``."""
    h, w = array.shape[-2:]
    top, left = max((h - height) // 2, 0), max((w - width) // 2, 0)
    array = array[..., top : top + min(h, height), left : left + min(w, width)]
    ph, pw = height - array.shape[-2], width - array.shape[-1]
    if ph or pw:
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        array = F.pad(array.float(), pad, value=fill).to(array.dtype)
    return array


def fit_to_network(
    image: torch.Tensor, height: int, width: int, resize: bool, crop_pad: bool, name: str = ""
) -> torch.Tensor:
    """Bring a (C, H, W) float image to the network size the way the settings say."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    if resize:
        return resize_image_tensor(image, height, width)
    if crop_pad:
        return crop_or_pad(image, height, width, 0.0)
    raise ValueError(
        f"Image '{name}' is {image.shape[-2]}x{image.shape[-1]} but the network input is {height}x{width}; "
        "call set_resize_images(True) or set_crop_or_pad_images(True), or set_patch_size() for large images."
    )


NORMALIZATIONS = ("per_image_standardization", "none")


# Values per block of ``pixel_statistics`` (4 MB as float32, 8 MB as float64).
_STATISTICS_BLOCK = 1 << 20


def image_statistics(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) float -> (N, 2): each image's mean and TensorFlow-adjusted standard deviation.

    TF's per_image_standardization divides by max(std, 1/sqrt(pixels*channels)) so flat images stay finite.
    """
    # Sums in float64, so that the statistics of a large image computed in pieces (tiled inference,
    # ``pixel_statistics``) are the same float32 values as those computed here in one go.
    flat = images.reshape(images.shape[0], -1).double()
    mean = flat.mean(dim=1)
    std = flat.std(dim=1, unbiased=False).clamp_min(1.0 / math.sqrt(flat.shape[1]))
    return torch.stack([mean, std], dim=1).to(images.dtype)


def pixel_statistics(pixels: torch.Tensor, scale: float, rows: int | None = None) -> torch.Tensor:
    """``image_statistics`` of ``pixels.float() / scale`` for one integer (C, H, W) image, in row blocks.

    The float image is never made whole (12 bytes per pixel for RGB): blocks of ``rows`` rows are converted,
    exactly as :func:`to_tensor_image` converts them, and summed in float64 (two passes: mean, then squared
    deviations). By default a block holds at most 256 rows and ``_STATISTICS_BLOCK`` values (12 MB of
    temporaries), so the temporaries do not grow with the image's width.

    Returns:
        float32 tensor (2,): mean and TensorFlow-adjusted standard deviation.
    """
    if rows is None:
        rows = min(256, max(1, _STATISTICS_BLOCK // max(pixels.shape[0] * pixels.shape[2], 1)))
    height = pixels.shape[1]
    count = pixels.numel()
    total = 0.0
    for top in range(0, height, rows):
        total += float(pixels[:, top : top + rows].float().div_(scale).double().sum())
    mean = total / count
    squares = 0.0
    for top in range(0, height, rows):
        block = pixels[:, top : top + rows].float().div_(scale).double()
        squares += float(block.sub_(mean).square_().sum())
    std = max(math.sqrt(squares / count), 1.0 / math.sqrt(count))
    return torch.tensor([mean, std], dtype=torch.float64).float()


def normalize(images: torch.Tensor, mode: str, statistics: torch.Tensor | None = None) -> torch.Tensor:
    """Network input from (N, C, H, W) images in [0, 1].

    Args:
        images: the batch.
        mode: 'per_image_standardization' (DPP's preprocessing: zero mean, unit variance per image) or 'none'.
        statistics: (N, 2) mean/std to use instead of the batch's own — a patch is standardised with the
            statistics of the whole image it was cut from, exactly as at tiled inference.
    """
    if mode == "none":
        return images
    stats = image_statistics(images) if statistics is None else statistics.to(images.device, images.dtype)
    return (images - stats[:, 0, None, None, None]) / stats[:, 1, None, None, None]


@dataclass
class InMemoryData:
    """Decoded images and masks. images: (N, C, H, W) uint8 or float32; masks: (N, H, W) uint8.

    ``statistics`` (N, 2), when set, holds the mean/std of the full image each item (a patch) was cut from.
    """

    names: list[str]
    images: torch.Tensor
    masks: torch.Tensor
    statistics: torch.Tensor | None = None

    def subset(self, names: list[str]) -> InMemoryData:
        index = {n: i for i, n in enumerate(self.names)}
        rows = torch.tensor([index[n] for n in names], dtype=torch.long)
        stats = None if self.statistics is None else self.statistics[rows]
        return InMemoryData(list(names), self.images[rows], self.masks[rows], stats)

    def __len__(self) -> int:
        return len(self.names)

    def float_images(self, rows: torch.Tensor | slice) -> torch.Tensor:
        return as_float(self.images[rows])


# Threads decoding files at once: Pillow and zlib release the GIL while they decode, and torch while it
# resizes, so a few threads use the cores that the single-threaded decoders would leave idle.
DECODE_THREADS = 4


T = TypeVar("T")
R = TypeVar("R")


def map_decoding(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[function(item) for item in items]``, run by up to ``DECODE_THREADS`` threads, for functions that
    decode image files: warnings are handled as :func:`~deepplantphenomics.data.io.decoding_in_threads` says,
    and the first exception raised is raised here."""
    threads = min(DECODE_THREADS, os.cpu_count() or 1, len(items))
    with decoding_in_threads():
        if threads <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(threads, thread_name_prefix="dpp-decode") as pool:
            return list(pool.map(function, items))


def prefetch_decoding(function: Callable[[T], R], groups: Sequence[Sequence[T]]) -> Iterator[list[R]]:
    """``[function(item) for item in group]`` for each group in turn, the next group decoded by the threads
    while the caller works on the current one (a prediction run: decode batch k + 1 during batch k's forward
    pass). One pool serves the whole run: a thread that runs torch operations gets OpenMP workers of its
    own, which spin after each use, and pools made afresh for every batch cost more (new threads, their
    workers spinning beside the network's) than the decoding itself. Warnings and errors as in
    :func:`map_decoding` (an error is raised when its group is reached)."""
    threads = min(DECODE_THREADS, os.cpu_count() or 1, max((len(group) for group in groups), default=0))
    with decoding_in_threads():
        if threads <= 1:
            for group in groups:
                yield [function(item) for item in group]
            return
        with ThreadPoolExecutor(threads, thread_name_prefix="dpp-decode") as pool:
            pending: list[Future[R]] = []
            try:
                for index, group in enumerate(groups):
                    current = pending or [pool.submit(function, item) for item in group]
                    following = groups[index + 1] if index + 1 < len(groups) else ()
                    pending = [pool.submit(function, item) for item in following]
                    yield [future.result() for future in current]
            finally:  # the caller stopped early, or a decode failed: nothing more is decoded
                for future in pending:
                    future.cancel()


@dataclass
class _Decoded:
    """One pair as ``_load_pair`` leaves it: tensors and what the report counts, or the problem found."""

    image: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    mode: str = ""
    zero_one: bool = False
    ignore: bool = False
    problem: str | None = None


def _load_pair(
    image_path: Path,
    mask_path: Path,
    depth: int,
    num_classes: int,
    size: tuple[int, int] | None,
    resize: bool,
    crop_pad: bool,
) -> _Decoded:
    """Decode one pair, check it and bring it to ``size``; a problem is returned, not raised."""
    out = _Decoded()
    try:
        raw, out.mode = read_image_and_mode(image_path)
        raw = match_depth(raw, depth, image_path)
        if num_classes == 2:
            mask_np, zero_one = read_binary_mask(mask_path)
            out.ignore = zero_one and bool(np.any(mask_np == IGNORE_INDEX))
            out.zero_one = zero_one and not out.ignore
        else:
            mask_np = read_class_mask(mask_path, num_classes)
    except (ImageReadError, ValueError, FileNotFoundError) as exc:
        return _Decoded(problem=str(exc))
    if raw.shape[:2] != mask_np.shape:
        return _Decoded(
            problem=f"image '{image_path}' is {raw.shape[0]}x{raw.shape[1]} (HxW) but its mask '{mask_path}' is "
            f"{mask_np.shape[0]}x{mask_np.shape[1]}"
        )
    image = to_tensor_image(raw)
    mask = torch.from_numpy(mask_np)
    if size is not None and tuple(image.shape[-2:]) != size:
        if resize:
            image = resize_image_tensor(image, *size)
            mask = resize_mask_tensor(mask, *size)
        elif crop_pad:
            image = crop_or_pad(image, *size, 0.0)
            mask = crop_or_pad(mask, *size, IGNORE_INDEX)
        else:
            return _Decoded(
                problem=f"image '{image_path}' is {image.shape[-2]}x{image.shape[-1]} but the network input is "
                f"{size[0]}x{size[1]}: call set_resize_images(True) or set_crop_or_pad_images(True)"
            )
    if raw.dtype == np.uint8:
        image = image.mul_(255.0).round_().to(torch.uint8)  # exact: it held k/255 values
    out.image, out.mask = image, mask
    return out


def load_pairs(
    pairs: list[tuple[Path, Path]],
    depth: int,
    num_classes: int,
    size: tuple[int, int] | None,
    resize: bool,
    crop_pad: bool,
) -> tuple[list[torch.Tensor], list[torch.Tensor], LoadReport]:
    """Decode every pair once (``DECODE_THREADS`` at a time), check it, and bring it to ``size`` (None keeps
    full resolution).

    Returns:
        (images as (C, H, W) uint8 tensors for 8-bit files, float32 in [0, 1] otherwise;
        masks as (H, W) uint8 tensors; report), in the order of ``pairs``.

    Raises:
        ValueError: listing every unreadable file, image/mask size mismatch and bad mask at once.
    """
    report = LoadReport(pairs=len(pairs))
    images, masks, problems = [], [], []

    def load(pair: tuple[Path, Path]) -> _Decoded:
        return _load_pair(*pair, depth, num_classes, size, resize, crop_pad)

    decoded = map_decoding(load, pairs)
    for (image_path, _), item in zip(pairs, decoded):
        if item.problem is not None:
            problems.append(item.problem)
            continue
        report.modes.setdefault(item.mode, []).append(image_path.name)
        report.zero_one_masks += int(item.zero_one)
        report.ignore_masks += int(item.ignore)
        images.append(item.image)
        masks.append(item.mask)
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in the dataset:\n  - " + "\n  - ".join(problems))
    if len(report.modes) > 1:
        warnings.warn(mixed_modes_message(report.modes, depth), UserWarning, stacklevel=2)
    return images, masks, report


def mode_counts(modes: dict[str, list[str]]) -> str:
    """'RGB 11, grey 1': the images per colour mode, most common first."""
    return ", ".join(
        f"{mode} {len(files)}" for mode, files in sorted(modes.items(), key=lambda kv: -len(kv[1]))
    )


def mixed_modes_message(modes: dict[str, list[str]], depth: int, shown: int = 3) -> str:
    """The warning for a set of images in several colour modes: counts, a few files of the rarer modes, and
    how each mode was converted to the network's ``depth`` channels."""
    common = max(modes, key=lambda m: len(modes[m]))
    lines = [f"The images mix colour modes ({mode_counts(modes)}); each was converted to {depth} channel(s):"]
    for mode, files in sorted(modes.items(), key=lambda kv: -len(kv[1])):
        named = (
            "" if mode == common else ": " + ", ".join(files[:shown]) + (" ..." if len(files) > shown else "")
        )
        lines.append(f"{mode} ({len(files)}): {depth_conversion(mode, depth)}{named}")
    return "\n  - ".join(lines)


def as_float(image: torch.Tensor) -> torch.Tensor:
    """A stored image (uint8 or float) as float32 in [0, 1]."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()


def stack(
    names: list[str],
    images: list[torch.Tensor],
    masks: list[torch.Tensor],
    statistics: torch.Tensor | None = None,
) -> InMemoryData:
    """Stack same-sized tensors; all-8-bit data stays uint8, mixed bit depths become float32."""
    if any(image.dtype != torch.uint8 for image in images):
        images = [as_float(image) for image in images]
    return InMemoryData(names, torch.stack(images), torch.stack(masks), statistics)


def split_counts(n: int, test: float, validation: float) -> tuple[int, int]:
    """Number of test and validation items: at least one of each when its fraction is > 0."""
    n_test = max(1, round(n * test)) if test > 0 else 0
    n_val = max(1, round(n * validation)) if validation > 0 else 0
    if n_test + n_val >= n:
        raise ValueError(
            f"The test ({test}) and validation ({validation}) splits leave no training images out of {n}; "
            "lower set_test_split / set_validation_split or add images."
        )
    if n - n_test - n_val < n / 2:
        warnings.warn(
            f"Only {n - n_test - n_val} of {n} images are left for training after the test and validation "
            "splits.",
            UserWarning,
            stacklevel=3,
        )
    return n_test, n_val


def make_split(names: list[str], test: float, validation: float, seed: int | None) -> dict[str, list[str]]:
    """Draw a train/validation/test partition of ``names`` (reproducible for a given seed)."""
    n_test, n_val = split_counts(len(names), test, validation)
    generator = np.random.default_rng(seed)
    order = [names[i] for i in generator.permutation(len(names))]
    return {
        "test": sorted(order[:n_test]),
        "validation": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


def reuse_split(
    saved: dict[str, list[str]], names: list[str], test: float, validation: float, seed: int | None
) -> tuple[dict[str, list[str]], list[str]]:
    """Keep a saved partition for the names it knows; new names are drawn into splits by the fractions.

    Returns:
        (split, notes): notes say what changed (new names, names no longer present).
    """
    present = set(names)
    split = {key: [n for n in saved.get(key, []) if n in present] for key in SPLITS}
    known = {n for key in SPLITS for n in saved.get(key, [])}
    new = [n for n in names if n not in known]
    notes = []
    gone = len(known - present)
    if gone:
        notes.append(f"{gone} image(s) of the saved split are no longer in the dataset")
    if new:
        generator = np.random.default_rng(None if seed is None else seed + 1)
        order = [new[i] for i in generator.permutation(len(new))]
        n_test = math.floor(len(new) * test + 0.5) if test > 0 else 0
        n_val = math.floor(len(new) * validation + 0.5) if validation > 0 else 0
        split["test"] += order[:n_test]
        split["validation"] += order[n_test : n_test + n_val]
        split["train"] += order[n_test + n_val :]
        notes.append(f"{len(new)} new image(s) were assigned to splits")
    for key in SPLITS:
        split[key] = sorted(split[key])
    if not split["train"]:
        raise ValueError("The saved split leaves no training images; call force_split_shuffle(True).")
    return split, notes
