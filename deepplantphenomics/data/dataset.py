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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepplantphenomics.data.io import (
    IGNORE_INDEX,
    ImageReadError,
    is_image_file,
    match_depth,
    pixel_scale,
    read_binary_mask,
    read_class_mask,
    read_image,
)

SPLITS = ("train", "validation", "test")


@dataclass
class LoadReport:
    """What the loader saw, for the debug log."""

    pairs: int = 0
    skipped: int = 0
    zero_one_masks: int = 0


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


def pair_files(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    arguments: tuple[str, str] = ("images_dir", "masks_dir"),
) -> tuple[list[tuple[Path, Path]], int]:
    """Pair each image with its mask by identical file name, else by identical name stem.

    Photos are JPEG and masks PNG in most datasets, so ``plant_01.jpg`` pairs with ``plant_01.png``.

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks.
        arguments: the names under which the caller's user gave the two folders (DPP's ``dirname`` and
            ``seg_dirname``, the CLI's ``--images`` and ``--masks``), used in error messages.

    Returns:
        (pairs sorted by image name, number of non-image entries skipped in both folders).

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: a folder holds no images; images without masks or masks without images (all named);
            a stem that matches several files.
    """
    images, skipped_i = _listing(images_dir, arguments[0])
    masks, skipped_m = _listing(masks_dir, arguments[1])
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
    used: set[Path] = set()
    missing: list[str] = []
    for image in images:
        if image.name in mask_by_name:
            mask = mask_by_name[image.name]
        else:
            candidates = mask_by_stem.get(image.stem, [])
            if len(candidates) > 1:
                problems.append(
                    f"image '{image.name}' matches several masks: {', '.join(c.name for c in candidates)}"
                )
                continue
            if not candidates:
                missing.append(image.name)
                continue
            mask = candidates[0]
        pairs.append((image, mask))
        used.add(mask)
    orphans = [m.name for m in masks if m not in used]
    if missing:
        problems.append(f"{len(missing)} image(s) without a mask in '{masks_dir}': {', '.join(missing)}")
    if orphans:
        problems.append(f"{len(orphans)} mask(s) without an image in '{images_dir}': {', '.join(orphans)}")
    if problems:
        raise ValueError("Cannot pair images with masks:\n  - " + "\n  - ".join(problems))
    return pairs, skipped_i + skipped_m


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


def load_pairs(
    pairs: list[tuple[Path, Path]],
    depth: int,
    num_classes: int,
    size: tuple[int, int] | None,
    resize: bool,
    crop_pad: bool,
) -> tuple[list[torch.Tensor], list[torch.Tensor], LoadReport]:
    """Decode every pair once, check it, and bring it to ``size`` (None keeps full resolution).

    Returns:
        (images as (C, H, W) uint8 tensors for 8-bit files, float32 in [0, 1] otherwise;
        masks as (H, W) uint8 tensors; report).

    Raises:
        ValueError: listing every unreadable file, image/mask size mismatch and bad mask at once.
    """
    report = LoadReport(pairs=len(pairs))
    images, masks, problems = [], [], []
    for image_path, mask_path in pairs:
        try:
            raw = match_depth(read_image(image_path), depth, image_path)
            if num_classes == 2:
                mask_np, zero_one = read_binary_mask(mask_path)
                report.zero_one_masks += int(zero_one)
            else:
                mask_np = read_class_mask(mask_path, num_classes)
        except (ImageReadError, ValueError, FileNotFoundError) as exc:
            problems.append(str(exc))
            continue
        if raw.shape[:2] != mask_np.shape:
            problems.append(
                f"image '{image_path}' is {raw.shape[0]}x{raw.shape[1]} (HxW) but its mask '{mask_path}' is "
                f"{mask_np.shape[0]}x{mask_np.shape[1]}"
            )
            continue
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
                problems.append(
                    f"image '{image_path}' is {image.shape[-2]}x{image.shape[-1]} but the network input is "
                    f"{size[0]}x{size[1]}: call set_resize_images(True) or set_crop_or_pad_images(True)"
                )
                continue
        if raw.dtype == np.uint8:
            image = image.mul_(255.0).round_().to(torch.uint8)  # exact: it held k/255 values
        images.append(image)
        masks.append(mask)
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in the dataset:\n  - " + "\n  - ".join(problems))
    return images, masks, report


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
