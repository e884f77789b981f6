"""Reading images and masks of any common kind as the user sees them, with errors that name the file.

Images come back as (H, W, C) uint8 or uint16 numpy arrays (C = 1, 3; alpha dropped); masks as (H, W) uint8
class indices. Nothing from an image library escapes as a bare traceback. Every photo and mask goes through
this module, so the rules below hold for training, inference, the tools, the CLI and the reports alike
(docs/api.md, "How files are read"):

- the EXIF / TIFF orientation tag is applied (a phone photo comes out as every viewer shows it);
- palette photos become their colours (palette *masks* keep their indices: those are labels), CMYK becomes
  RGB, planar ("one plane per channel") TIFFs are read as interleaved, float images are scaled by their finite
  values;
- binary masks are judged by their values, not by their type's range, alpha counts when it varies, and
  {0, 1, 255} masks are 0/1 with 255 = ignore.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
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
# EXIF / TIFF tag 274: how the stored pixels must be turned to show the picture upright.
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The same turns on numpy (H, W, ...) arrays, for TIFFs read by tifffile.
_TRANSPOSE_ARRAY: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
# Colour modes as ``read_image_and_mode`` names them, from Pillow's modes.
_MODE_LABELS = {
    "1": "1-bit",
    "L": "grey",
    "LA": "grey+alpha",
    "La": "grey+alpha",
    "I": "grey",
    "I;16": "grey",
    "I;16B": "grey",
    "I;16L": "grey",
    "F": "grey",
    "P": "palette",
    "PA": "palette",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "RGBa": "RGBA",
    "CMYK": "CMYK",
}
# How each colour mode becomes the channels ``read_image`` returns (grey <-> RGB is ``match_depth``'s).
MODE_CONVERSIONS = {
    "1-bit": "1-bit read as grey 0/255",
    "grey+alpha": "alpha dropped",
    "palette": "palette indices replaced by their colours",
    "RGBA": "alpha dropped",
    "CMYK": "CMYK converted to RGB (R = (1 - C)(1 - K), and so on)",
    "YCbCr": "YCbCr converted to RGB",
}
# TIFF photometric interpretations that need converting (TIFF 6.0 tag 262).
_PHOTOMETRIC_MINISWHITE = 0  # grey stored inverted (scanners, fax-style bilevel TIFFs)
_PHOTOMETRIC_PALETTE = 3
_PHOTOMETRIC_SEPARATED = 5  # CMYK


class ImageReadError(ValueError):
    """A file exists but cannot be decoded as an image."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a file name with an image extension (any case) that is not hidden (``.name``)."""
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image files of a folder, sorted; hidden files and folders are left out.

    Args:
        folder: an existing folder.
        recursive: also the image files of its sub-folders (sorted by path below ``folder``).

    Returns:
        Paths starting with ``folder``; empty when the folder holds no images.
    """
    folder = Path(folder)
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .ipynb_checkpoints, .git, ...
        found.extend(Path(root) / f for f in files if is_image_file(f))
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def not_found(path: str | os.PathLike) -> FileNotFoundError:
    """The one error for a path that does not exist, wherever a file or folder of images is taken."""
    return FileNotFoundError(f"No such file or folder: '{path}'.")


_threaded_section = False  # decoding_in_threads is active: it handles the decoders' warnings itself


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    # Decoders warn (and tifffile logs) about damaged files before failing; those messages are noise for the
    # user, who gets one error naming the file instead.
    if _threaded_section:
        yield
        return
    tiff_logger = logging.getLogger("tifffile")
    was_disabled, tiff_logger.disabled = tiff_logger.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        tiff_logger.disabled = was_disabled


@contextlib.contextmanager
def decoding_in_threads() -> Iterator[None]:
    """Around reading files in several threads at once (entered by one thread, which waits for the others).

    Python's warning filters are global: one thread silencing the decoders' noise (as ``_quiet_decoders``
    does) would hide, or fail to restore around, another thread's warnings. Within this section the warnings
    of every thread are recorded instead; when it ends, the decoders' (Pillow's, tifffile's) are dropped and
    the others (the library's own, such as a non-finite pixel, and those of whatever the calling thread ran
    meanwhile, such as a network's forward pass) are issued again in the calling thread.
    """
    global _threaded_section
    tiff_logger = logging.getLogger("tifffile")
    was_disabled, tiff_logger.disabled = tiff_logger.disabled, True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _threaded_section = True
            try:
                yield
            finally:
                _threaded_section = False
    finally:
        tiff_logger.disabled = was_disabled
    decoders = _decoder_dirs()
    for record in caught:
        if not any(Path(record.filename).resolve().is_relative_to(d) for d in decoders):
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)


@functools.cache
def _decoder_dirs() -> tuple[Path, ...]:
    """Folders of the decoding libraries whose warnings ``decoding_in_threads`` drops (found, not imported;
    looked up once per process)."""
    dirs = [Path(Image.__file__).resolve().parent]
    spec = importlib.util.find_spec("tifffile")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).resolve().parent)
    return tuple(dirs)


def _read_raw(path: Path, mask: bool) -> tuple[np.ndarray, str]:
    if not path.exists():
        raise not_found(path)
    with _quiet_decoders():
        return _decode(path, mask)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation of a Pillow image, 1 (as stored) when absent or invalid."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:  # a damaged EXIF block: show the pixels as stored
        return 1
    return value if value in _TRANSPOSE else 1


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its orientation tag says (the same image when it has none)."""
    orientation = _orientation(image)
    return image if orientation == 1 else image.transpose(_TRANSPOSE[orientation])


def _mode_label(mode: str) -> str:
    return _MODE_LABELS.get(mode, mode)


def _pil_array(image: Image.Image, mask: bool) -> np.ndarray:
    """The pixels of a loaded Pillow image as numpy, before the channel and dtype rules of ``read_image``.

    ``mask``: a palette image keeps its indices (class labels) instead of becoming its colours.
    """
    if image.mode in ("P", "PA"):
        if mask:
            return np.asarray(image)
        # A palette photo (pngquant, TinyPNG, GIF-like exports) is its colours; transparency becomes alpha.
        return np.asarray(
            image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
        )
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image).astype(np.uint16)
    if image.mode in ("I", "F"):
        return np.asarray(image)
    if image.mode in ("1", "L", "LA", "RGB", "RGBA"):
        return np.asarray(image.convert("L") if image.mode == "1" else image)
    if image.mode == "La":
        return np.asarray(image.convert("LA"))
    return np.asarray(image.convert("RGBA" if "A" in image.mode else "RGB"))


def _cmyk_to_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W, 4+) CMYK (ink amounts, 0 = none) -> (H, W, 3) RGB of the same dtype, as Pillow converts it.

    R = (1 - C)(1 - K), G = (1 - M)(1 - K), B = (1 - Y)(1 - K) in the dtype's range; channels after K
    (extra samples) are dropped.
    """
    top = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
    if np.issubdtype(array.dtype, np.integer):
        wide = np.uint64 if array.dtype.itemsize > 1 else np.uint32
        light = top - array[:, :, :4].astype(wide)
        rgb = (light[:, :, :3] * light[:, :, 3:4] + top // 2) // top
        return rgb.astype(array.dtype)
    light = top - array[:, :, :4]
    return light[:, :, :3] * light[:, :, 3:4] / top


def _decode_tiff(path: Path, mask: bool) -> tuple[np.ndarray, str]:
    """A TIFF's first image via tifffile: planar layouts interleaved, CMYK and palette photos as RGB,
    min-is-white grey inverted, upright."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = tif.pages[0]
        array = np.asarray(series.asarray())
        axes = series.axes
        photometric = int(page.photometric)
        colormap = page.colormap
        tag = page.tags.get(_ORIENTATION_TAG)
        orientation = int(tag.value) if tag is not None else 1
    if axes.endswith("SYX") and array.ndim >= 3:  # planar configuration: one plane per channel
        array = np.moveaxis(array, -3, -1)
    channels = array.shape[2] if array.ndim == 3 else 1
    label = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels} channels")
    if photometric == _PHOTOMETRIC_MINISWHITE and array.dtype == np.bool_:
        array = ~array
    elif photometric == _PHOTOMETRIC_MINISWHITE and np.issubdtype(array.dtype, np.unsignedinteger):
        array = np.iinfo(array.dtype).max - array  # 0 is white: shown as a viewer shows it
    if photometric == _PHOTOMETRIC_SEPARATED and channels >= 4:
        array, label = _cmyk_to_rgb(array), "CMYK"
    elif photometric == _PHOTOMETRIC_PALETTE and colormap is not None and array.ndim == 2:
        label = "palette"
        if not mask:
            # TIFF colour maps are 16-bit; writers scale 8-bit colours by 256 or 257, and >> 8 undoes both.
            array = (np.asarray(colormap).T[array] >> 8).astype(np.uint8)
    if orientation in _TRANSPOSE_ARRAY and array.ndim >= 2:
        array = _TRANSPOSE_ARRAY[orientation](array)
    return array, label


def _decode(path: Path, mask: bool) -> tuple[np.ndarray, str]:
    """(pixels before ``_image_array``'s rules, the file's colour mode label)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            return _decode_tiff(path, mask)
        except Exception:  # tifffile cannot read some TIFF flavours (e.g. JPEG-compressed): let Pillow try
            pass
    try:
        with Image.open(path) as image:
            image.load()
            upright = _upright(image)
            return _pil_array(upright, mask), _mode_label(image.mode)
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"Cannot read image file '{path}': {exc}") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, C) uint8 or uint16, upright and in colour as a viewer shows it.

    Args:
        path: a PNG, JPEG, TIFF or BMP file; grey, grey+alpha, RGB, RGBA, palette or CMYK; 8 or 16 bit
            (32-bit integer and float too).

    Returns:
        (H, W, 1) for grey images, (H, W, 3) for colour; alpha is dropped, the orientation tag applied,
        palette and CMYK images converted to RGB. 32-bit integer and float images are scaled into uint16
        (floats by their finite values: NaN and -inf read as 0, +inf as full intensity, with a warning).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file cannot be decoded (a ValueError naming the file).
    """
    return read_image_and_mode(path)[0]


def read_image_and_mode(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """``read_image(path)`` and the file's own colour mode.

    Returns:
        (image, mode): mode is one of 'grey', 'grey+alpha', 'RGB', 'RGBA', 'palette', 'CMYK', '1-bit' (or
        Pillow's name for a rarer mode); :data:`MODE_CONVERSIONS` says how each became ``image``.

    Raises:
        FileNotFoundError, ImageReadError: as ``read_image``.
    """
    path = Path(path)
    array, mode = _read_raw(path, mask=False)
    return _image_array(array, path), mode


def _image_array(array: np.ndarray, path: Path, keep_alpha: bool = False) -> np.ndarray:
    """A decoded array brought to ``read_image``'s (H, W, C) uint8 / uint16 form (alpha kept on request)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ImageReadError(f"Cannot read image file '{path}': unsupported array shape {array.shape}.")
    if array.shape[2] in (2, 4) and not keep_alpha:  # grey+alpha, RGBA: alpha carries no plant information
        array = array[:, :, :-1]
    if array.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(
            f"Cannot read image file '{path}': {array.shape[2]} channels (expected 1, 3 or 4)."
        )
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return np.require(array, requirements=["C", "W"])  # writable: torch.from_numpy refuses read-only
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        return _scale_float(array, path)
    if np.issubdtype(array.dtype, np.integer):
        if array.min() >= 0 and array.max() <= 255:
            return array.astype(np.uint8)
        return np.clip(array, 0, 65535).astype(np.uint16)
    raise ImageReadError(f"Cannot read image file '{path}': unsupported pixel type {array.dtype}.")


def _scale_float(array: np.ndarray, path: Path) -> np.ndarray:
    """A float image into uint16: [0, 1] as is, else divided by its maximum; only finite values count.

    One inf or NaN pixel (a no-data value of a camera or a GIS tool) would otherwise make the whole image 0.
    """
    finite = np.isfinite(array)
    bad = array.size - int(np.count_nonzero(finite))
    top = float(array[finite].max()) if bad < array.size else 0.0
    top = max(top, 1.0)  # [0, 1] images stay as they are
    if bad:
        array = np.where(finite, array, np.where(np.isposinf(array), top, 0.0))
        warnings.warn(
            f"Image '{path}' holds {bad} non-finite pixel value(s) (NaN or inf): scaled by its finite values; "
            "NaN and -inf read as 0, +inf as full intensity.",
            UserWarning,
            stacklevel=4,
        )
    return np.clip(array / top * 65535, 0, 65535).astype(np.uint16)


def _open_for_strips(path: Path) -> Image.Image | None:
    """The decoded, upright Pillow image of a file whose pixels convert one by one, else None (read it whole).

    None for TIFF (read by tifffile) and 32-bit integer and float images, whose conversion depends on the whole
    image's range.
    """
    if path.suffix.lower() in (".tif", ".tiff"):
        return None
    try:
        image = Image.open(path)
        try:
            if image.mode not in (
                "I",
                "F",
            ):  # checked before decoding, and again after (a few formats change)
                image.load()
            if image.mode in ("I", "F"):
                image.close()
                return None
            upright = _upright(image)  # a turned photo costs one more decoded copy, for the time of the read
            if upright is not image:
                image.close()
            return upright
        except BaseException:
            image.close()
            raise
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"Cannot read image file '{path}': {exc}") from None


def read_image_into(
    path: str | os.PathLike,
    allocate: Callable[[tuple[int, int, int], np.dtype], np.ndarray],
    depth: int | None = None,
) -> np.ndarray:
    """``read_image(path)`` (then ``match_depth(image, depth, path)``) written into an array from ``allocate``.

    Lets the caller choose where a large decoded image lives (e.g. inside the buffer of a result). Files that
    Pillow decodes are converted ``_STRIP_PIXELS`` pixels (a band of rows) at a time straight into that array,
    so the only other whole-image memory is Pillow's decoded image (4 bytes per pixel for RGB, freed on
    return; twice that while a photo with an orientation tag is turned). ``read_image`` also makes image-sized
    copies: ``np.asarray`` of a Pillow image goes through ``tobytes`` (its chunks and their join) and the
    result is copied to be writable. TIFF and 32-bit integer and float files are read whole and copied.

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
        raise not_found(path)
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
        whole = _decode(path, mask=False)[0] if image is None else None
    if whole is not None:
        array = _image_array(whole, path)  # outside the quiet block: its non-finite warning must be seen
        put(0, array.shape[0], array.shape[1], array)
        return out
    with _quiet_decoders(), image:
        width, height = image.size
        rows = max(1, _STRIP_PIXELS // max(width, 1))
        for top in range(0, height, rows):
            try:
                block = _pil_array(image.crop((0, top, width, min(top + rows, height))), mask=False)
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


def depth_conversion(mode: str, depth: int) -> str:
    """In words, how an image of colour ``mode`` (as ``read_image_and_mode`` names it) becomes ``depth`` channels.

    Returns:
        e.g. 'grey repeated into R, G and B', 'palette indices replaced by their colours', 'kept as is'.
    """
    steps = [MODE_CONVERSIONS[mode]] if mode in MODE_CONVERSIONS else []
    grey = mode in ("grey", "grey+alpha", "1-bit")
    if grey and depth > 1:
        steps.append(
            "grey repeated into R, G and B" if depth == 3 else f"grey repeated into {depth} channels"
        )
    elif not grey and depth == 1:
        steps.append("converted to grey (ITU-R 601 luma, as Pillow's 'L')")
    return ", ".join(steps) or "kept as is"


def _half(values: np.ndarray) -> int:
    """The foreground threshold of mask values: 127 when they all fit in 0..255 (whatever the file's type,
    so a 16-bit file holding 0/255 reads as 0/255), else the middle of the 16-bit range."""
    return 127 if values.size == 0 or int(values.max()) <= 255 else 32767


def _only_0_1_255(values: np.ndarray) -> bool:
    """True when ``values`` holds exactly 0, 1 and 255 (a 0/1 mask with a 255 'void' band)."""
    ones = values == 1
    if not ones.any():  # the common 0/255 mask stops here, after one cheap pass
        return False
    zeros = values == 0
    return bool(zeros.any()) and bool(np.all(ones | zeros | (values == IGNORE_INDEX)))


def _read_mask_raw(path: str | os.PathLike, keep_alpha: bool) -> np.ndarray:
    """A mask file as (H, W, C) uint8/uint16: palette indices kept, upright, alpha kept on request."""
    path = Path(path)
    array, _ = _read_raw(path, mask=True)
    return _image_array(array, path, keep_alpha=keep_alpha)


def read_binary_mask(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """Read a binary mask as (H, W) uint8 with 0 = background, 1 = foreground (and 255 = ignore).

    The rules, judged on the values in the file (not on its type's range):

    - A value above 127 in any colour channel is foreground (above 32767 when values exceed 255).
    - A mask holding only 0 and 1 (saved as 0/1 instead of 0/255, common in real datasets) is read as 0/1,
      so the model does not learn an empty mask.
    - A mask whose values are exactly {0, 1, 255} (VOC style: 255 marks a "void" band along outlines) is read
      as 0/1 with 255 = ignore, as multi-class masks are.
    - An alpha channel counts when it is not constant: transparent pixels (alpha <= 127) are background, and
      when the colour channels hold no foreground at all (black RGB, plant drawn in alpha) the opaque pixels
      are the foreground. A constant alpha (an opaque RGBA file) is ignored.

    Returns:
        (mask, was_zero_one): ``was_zero_one`` is True when the file held only 0/1 (or 0/1/255) values.

    Raises:
        FileNotFoundError, ImageReadError: as ``read_image``.
    """
    raw = _read_mask_raw(path, keep_alpha=True)
    alpha = raw[:, :, -1] if raw.shape[2] in (2, 4) else None
    colour = raw[:, :, :-1] if alpha is not None else raw
    values = colour[:, :, 0] if colour.shape[2] == 1 else colour.max(axis=2)
    peak = int(values.max()) if values.size else 0
    zero_one = peak == 1 or (peak == IGNORE_INDEX and _only_0_1_255(values))
    mask = values.astype(np.uint8) if zero_one else (values > _half(values)).astype(np.uint8)
    if alpha is not None and alpha.size and alpha.min() != alpha.max():
        opaque = alpha > _half(alpha)
        if not np.any(mask == 1):
            mask = opaque.astype(np.uint8)
        else:
            mask[~opaque] = 0
    return mask, zero_one


def read_class_mask(path: str | os.PathLike, num_classes: int) -> np.ndarray:
    """Read a multi-class mask of class indices 0..num_classes-1, with 255 = ignore.

    Palette (indexed) files keep their indices; alpha is dropped.

    Raises:
        ValueError: the mask has several different channels, or indices >= num_classes other than 255.
    """
    raw = _read_mask_raw(path, keep_alpha=False)
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
    """(height, width) as ``read_image`` returns the file (orientation applied), from the header where possible."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            turned = _orientation(image) in (5, 6, 7, 8)
            return (image.width, image.height) if turned else (image.height, image.width)
    except _DECODE_ERRORS:
        array = read_image(path)
        return array.shape[0], array.shape[1]
