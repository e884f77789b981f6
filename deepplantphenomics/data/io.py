"""Reading images and masks of any common kind, with errors that name the file.

Images come back as (H, W, C) uint8 or uint16 numpy arrays (C = 1, 3; alpha dropped); masks as (H, W) uint8
class indices. Nothing from an image library escapes as a bare traceback.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
IGNORE_INDEX = 255


class ImageReadError(ValueError):
    """A file exists but cannot be decoded as an image."""


def is_image_file(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _read_raw(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"Image file not found: '{path}'.")
    # Decoders warn (and tifffile logs) about damaged files before failing; those messages are noise for the
    # user, who gets one error naming the file instead.
    tiff_logger = logging.getLogger("tifffile")
    was_disabled, tiff_logger.disabled = tiff_logger.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _decode(path)
    finally:
        tiff_logger.disabled = was_disabled


def _decode(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            array = np.asarray(tifffile.imread(path))
        except Exception:  # tifffile cannot read some TIFF flavours (e.g. JPEG-compressed): let Pillow try
            array = None
        if array is not None:
            return array
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                # A palette PNG mask stores class indices in the palette index: keep them, do not expand.
                return np.asarray(image)
            if image.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(image).astype(np.uint16)
            if image.mode == "I":
                return np.asarray(image)
            if image.mode in ("1", "L", "LA", "RGB", "RGBA"):
                return np.asarray(image.convert("L") if image.mode == "1" else image)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise ImageReadError(f"Cannot read image file '{path}': {exc}") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, C) uint8 or uint16.

    Args:
        path: a PNG, JPEG, TIFF or BMP file; grey, grey+alpha, RGB or RGBA; 8 or 16 bit.

    Returns:
        (H, W, 1) for grey images, (H, W, 3) for colour; alpha is dropped. 32-bit integer and float images
        are scaled into uint16.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file cannot be decoded (a ValueError naming the file).
    """
    path = Path(path)
    array = _read_raw(path)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ImageReadError(f"Cannot read image file '{path}': unsupported array shape {array.shape}.")
    if array.shape[2] in (2, 4):  # grey+alpha, RGBA: alpha carries no plant information
        array = array[:, :, :-1]
    if array.shape[2] not in (1, 3):
        raise ImageReadError(
            f"Cannot read image file '{path}': {array.shape[2]} channels (expected 1, 3 or 4)."
        )
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return np.require(array, requirements=["C", "W"])  # writable: torch.from_numpy refuses read-only
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        top = 1.0 if float(np.nanmax(array)) <= 1.0 else float(np.nanmax(array))
        return np.clip(np.nan_to_num(array) / top * 65535, 0, 65535).astype(np.uint16)
    if np.issubdtype(array.dtype, np.integer):
        if array.min() >= 0 and array.max() <= 255:
            return array.astype(np.uint8)
        return np.clip(array, 0, 65535).astype(np.uint16)
    raise ImageReadError(f"Cannot read image file '{path}': unsupported pixel type {array.dtype}.")


def pixel_scale(dtype: np.dtype) -> float:
    """The value of full intensity for images of ``dtype`` as ``read_image`` returns them (uint8 or uint16)."""
    return 65535.0 if dtype == np.uint16 else 255.0


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 (H, W, C) -> float32 in [0, 1]."""
    scale = pixel_scale(image.dtype)
    return image.astype(np.float32) / scale


def match_depth(image: np.ndarray, depth: int, path: str | os.PathLike = "") -> np.ndarray:
    """Convert an (H, W, C) image to ``depth`` channels: grey<->RGB as users expect, else refuse."""
    channels = image.shape[2]
    if channels == depth:
        return image
    if channels == 1:
        return np.repeat(image, depth, axis=2)
    if depth == 1 and channels == 3:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as Pillow's 'L'
        grey = image.astype(np.float32) @ weights
        return np.round(grey)[:, :, None].astype(image.dtype)
    raise ValueError(
        f"Image '{path}' has {channels} channels but the network expects {depth} "
        "(set_image_dimensions(height, width, depth))."
    )


def read_binary_mask(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """Read a binary mask as (H, W) uint8 with 0 = background, 1 = foreground.

    Any channel above half the range (127 for 8-bit) is foreground. A mask that holds only 0 and 1 (saved as
    0/1 instead of 0/255, common in real datasets) is read as 0/1 so the model does not learn an empty mask.

    Returns:
        (mask, was_zero_one): ``was_zero_one`` is True when the file held only values 0/1.
    """
    raw = read_image(path)
    top = 32767 if raw.dtype == np.uint16 else 127
    values = raw.max(axis=2)
    if values.max() == 1:
        return values.astype(np.uint8), True
    return (values > top).astype(np.uint8), False


def read_class_mask(path: str | os.PathLike, num_classes: int) -> np.ndarray:
    """Read a multi-class mask of class indices 0..num_classes-1, with 255 = ignore.

    Raises:
        ValueError: the mask has several different channels, or indices >= num_classes other than 255.
    """
    raw = read_image(path)
    if raw.shape[2] == 3:
        if not (np.array_equal(raw[:, :, 0], raw[:, :, 1]) and np.array_equal(raw[:, :, 0], raw[:, :, 2])):
            raise ValueError(
                f"Mask '{path}' is a colour image; multi-class masks must be single-channel class indices "
                f"0..{num_classes - 1} (255 = ignore)."
            )
    mask = raw[:, :, 0]
    bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        found = sorted(int(v) for v in np.unique(mask[bad]))[:10]
        raise ValueError(
            f"Mask '{path}' holds class indices {found} but set_num_segmentation_classes({num_classes}) allows "
            f"0..{num_classes - 1} (and 255 = ignore)."
        )
    return mask.astype(np.uint8)


def read_mask(path: str | os.PathLike, num_classes: int) -> np.ndarray:
    """A binary (num_classes == 2) or multi-class mask as (H, W) uint8 targets."""
    if num_classes == 2:
        return read_binary_mask(path)[0]
    return read_class_mask(path, num_classes)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) from the file header where possible, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        array = read_image(path)
        return array.shape[0], array.shape[1]
