"""Reading images and masks of any common kind, with errors that name the file.

Images come back as (H, W, C) uint8 or uint16 numpy arrays (C = 1, 3; alpha dropped); masks as (H, W) uint8
class indices. Nothing from an image library escapes as a bare traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deepplantphenomics.validation import IGNORE_INDEX

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError)
# Pixels per band of rows converted at a time by ``read_image_into`` (a few MB for RGB).
_STRIP_PIXELS = 1 << 20


class ImageReadError(ValueError):
    """A file exists but cannot be decoded as an image."""


def is_image_file(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    # Decoders warn (and tifffile logs) about damaged files before failing; those messages are noise for the
    # user, who gets one error naming the file instead.
    tiff_logger = logging.getLogger("tifffile")
    was_disabled, tiff_logger.disabled = tiff_logger.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        tiff_logger.disabled = was_disabled


def _read_raw(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"Image file not found: '{path}'.")
    with _quiet_decoders():
        return _decode(path)


def _pil_array(image: Image.Image) -> np.ndarray:
    """The pixels of a loaded Pillow image as numpy, before the channel and dtype rules of ``read_image``."""
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
            return _pil_array(image)
    except _DECODE_ERRORS as exc:
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
    return _image_array(_read_raw(path), path)


def _image_array(array: np.ndarray, path: Path) -> np.ndarray:
    """A decoded array brought to ``read_image``'s (H, W, C) uint8 / uint16 form."""
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


def _open_for_strips(path: Path) -> Image.Image | None:
    """The decoded Pillow image of a file whose pixels convert one by one, else None (read it whole).

    None for TIFF (read by tifffile) and 32-bit integer images, whose conversion depends on the whole image's
    range.
    """
    if path.suffix.lower() in (".tif", ".tiff"):
        return None
    try:
        image = Image.open(path)
        try:
            if image.mode != "I":  # checked before decoding, and again after (a few formats change mode)
                image.load()
            if image.mode == "I":
                image.close()
                return None
        except BaseException:
            image.close()
            raise
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"Cannot read image file '{path}': {exc}") from None
    return image


def read_image_into(
    path: str | os.PathLike,
    allocate: Callable[[tuple[int, int, int], np.dtype], np.ndarray],
    depth: int | None = None,
) -> np.ndarray:
    """``read_image(path)`` (then ``match_depth(image, depth, path)``) written into an array from ``allocate``.

    Lets the caller choose where a large decoded image lives (e.g. inside the buffer of a result). Files that
    Pillow decodes are converted ``_STRIP_PIXELS`` pixels (a band of rows) at a time straight into that array,
    so the only other whole-image memory is Pillow's decoded image (4 bytes per pixel for RGB, freed on
    return). ``read_image`` also makes image-sized copies: ``np.asarray`` of a Pillow image goes through
    ``tobytes`` (its chunks and their join) and the result is copied to be writable. TIFF and 32-bit integer
    files are read whole and copied.

    Args:
        path: an image file, as for ``read_image``.
        allocate: called once as ``allocate((H, W, C), dtype)`` (uint8 or uint16) before any pixel is
            written; returns a writable array of that shape and dtype.
        depth: channel count to convert to with ``match_depth``; None keeps the file's (1 or 3).

    Returns:
        The array ``allocate`` returned, holding the same values as ``read_image`` (and ``match_depth``).

    Raises:
        FileNotFoundError, ImageReadError: as ``read_image``; ValueError: as ``match_depth``, or ``allocate``
            returned an array of another shape or dtype.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Image file not found: '{path}'.")
    out: np.ndarray | None = None

    def put(top: int, height: int, width: int, block: np.ndarray) -> None:
        nonlocal out
        if depth is not None:
            block = match_depth(block, depth, path)
        if out is None:
            shape = (height, width, block.shape[2])
            out = allocate(shape, block.dtype)
            if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != block.dtype:
                received = (out.shape, out.dtype) if isinstance(out, np.ndarray) else type(out)
                raise ValueError(
                    f"Invalid value for argument `allocate`: expected it to return an array of shape {shape} "
                    f"and dtype {block.dtype}, received {received}."
                )
        out[top : top + block.shape[0]] = block

    with _quiet_decoders():
        image = _open_for_strips(path)
        if image is None:
            array = _image_array(_decode(path), path)
            put(0, array.shape[0], array.shape[1], array)
        else:
            with image:
                width, height = image.size
                rows = max(1, _STRIP_PIXELS // max(width, 1))
                for top in range(0, height, rows):
                    try:
                        block = _pil_array(image.crop((0, top, width, min(top + rows, height))))
                    except _DECODE_ERRORS as exc:
                        raise ImageReadError(f"Cannot read image file '{path}': {exc}") from None
                    put(top, height, width, _image_array(block, path))
    assert out is not None  # an image has at least one row
    return out


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
