"""Post-processing of network outputs: Otsu threshold, resizing back to the photo, cut-outs and overlays.

DPP's Tools page shows users how to turn the vegetation network's output into something useful by hand:
threshold the probability map with Otsu's method, resize the mask to the photo's size, multiply the photo by
it. These functions do those steps, with the details right (class indices survive a resize exactly, a size
mismatch is an error that says what to do), and add a coloured overlay for checking results by eye.

All functions take and return numpy arrays in (H, W) or (H, W, C) layout, channels last.

Example:
    >>> probabilities = model.forward_pass_with_file_inputs(["plant.png"])[0]   # (h, w, 1) float32
    >>> mask = resize_mask(otsu_mask(probabilities), photo.shape[0], photo.shape[1])
    >>> cutout = apply_mask(photo, mask)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from deepplantphenomics.settings import check_bool, check_float, check_int

__all__ = [
    "apply_mask",
    "otsu_mask",
    "overlay_mask",
    "resize_mask",
    "resize_probabilities",
    "threshold_otsu",
    "to_uint8_rgb",
]

# Integer inputs get one histogram bin per integer value (as skimage does); beyond this many distinct
# values that would allocate a huge histogram, so such inputs are binned like floats instead.
_MAX_INTEGER_BINS = 1 << 24


def _as_array(argument: str, value: object) -> np.ndarray:
    """``value`` as a numeric (bool, integer or float) numpy array, else a TypeError naming the argument."""
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.number)) or np.issubdtype(
        array.dtype, np.complexfloating
    ):
        raise TypeError(
            f"Invalid value for argument `{argument}`: expected a numeric numpy array, received an array of "
            f"dtype {array.dtype}."
        )
    return array


def _plane(argument: str, array: np.ndarray) -> np.ndarray:
    """A (H, W) view of an (H, W) or (H, W, 1) array, else a ValueError naming the argument."""
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim != 2:
        raise ValueError(
            f"Invalid value for argument `{argument}`: expected an array of shape (H, W) or (H, W, 1), "
            f"received shape {array.shape}."
        )
    return array


def _foreground(mask: np.ndarray) -> np.ndarray:
    """Boolean foreground of a (H, W) mask: True, 1, 255 or any non-zero value is foreground."""
    return mask if mask.dtype == np.bool_ else mask != 0


def _check_same_size(image: np.ndarray, mask: np.ndarray) -> None:
    if mask.shape[:2] != image.shape[:2]:
        height, width = image.shape[:2]
        raise ValueError(
            f"Invalid value for argument `mask`: expected the height and width of `image` "
            f"({height}, {width}), received a mask of shape {mask.shape} for an image of shape {image.shape}. "
            f"Resize the mask first: resize_mask(mask, {height}, {width})."
        )


# ------------------------------------------------------------------------------------------------- Otsu
def threshold_otsu(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold of an array of values: the cut that maximises the between-class variance.

    Gives the same value as ``skimage.filters.threshold_otsu(values, nbins)``: integer inputs get one
    histogram bin per integer value (``nbins`` is ignored for them, as in skimage), float inputs ``nbins``
    equal bins between their minimum and maximum, and the threshold is a bin centre.

    Args:
        values: Array of any shape (e.g. an (H, W) probability map or grey image), integer, bool or float.
        nbins: Number of histogram bins for float inputs, a positive int.

    Returns:
        The threshold; values strictly greater than it are the foreground class. For an array holding one
        value only, that value (so that nothing is above it).

    Raises:
        TypeError: ``values`` is not numeric, or ``nbins`` is not an int.
        ValueError: ``values`` is empty or holds NaN or infinity, or ``nbins`` is below 1.
    """
    array = _as_array("values", values)
    nbins = check_int("nbins", nbins, minimum=1)
    if array.size == 0:
        raise ValueError(
            "Invalid value for argument `values`: expected a non-empty array, received an empty one."
        )
    flat = array.reshape(-1)
    if flat.dtype == np.bool_:
        flat = flat.astype(np.uint8)
    if np.issubdtype(flat.dtype, np.floating):
        finite = np.isfinite(flat)
        if not finite.all():
            raise ValueError(
                f"Invalid value for argument `values`: expected finite numbers, received an array with "
                f"{int(flat.size - finite.sum())} NaN or infinite value(s) out of {flat.size}."
            )
    first = flat[0]
    if np.all(flat == first):
        return float(first)

    integer = np.issubdtype(flat.dtype, np.integer)
    low, high = (int(flat.min()), int(flat.max())) if integer else (0, 0)
    if integer and high - low < _MAX_INTEGER_BINS:
        # uint64 could overflow int64; any other integer type widens safely before the subtraction.
        offsets = (flat - flat.min()) if flat.dtype == np.uint64 else flat.astype(np.int64) - low
        counts = np.bincount(offsets.astype(np.int64, copy=False), minlength=high - low + 1)
        centres = np.arange(low, high + 1)
    else:
        counts, edges = np.histogram(flat, bins=nbins)
        centres = (edges[:-1] + edges[1:]) / 2.0
    # float32 counts, as skimage uses, so that ties in the variance resolve to the same bin.
    counts = counts.astype(np.float32)
    weighted = counts * centres
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(weighted) / weight1
    mean2 = (np.cumsum(weighted[::-1]) / weight2[::-1])[::-1]
    # Threshold after bin i: class 1 is bins 0..i, class 2 is bins i+1..end.
    between = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def otsu_mask(probabilities: np.ndarray) -> np.ndarray:
    """Binary mask of a probability (or any score) map thresholded with Otsu's method.

    Args:
        probabilities: Float (H, W) or (H, W, 1) map, e.g. one image of
            ``forward_pass_with_file_inputs``' (N, H, W, 1) output.

    Returns:
        uint8 (H, W) mask: 1 where the value is above ``threshold_otsu(probabilities)``, 0 elsewhere (all 0
        for a constant map).

    Raises:
        TypeError: ``probabilities`` is not numeric.
        ValueError: ``probabilities`` has another shape, is empty or holds NaN or infinity.
    """
    plane = _plane("probabilities", _as_array("probabilities", probabilities))
    if plane.size == 0:
        raise ValueError(
            f"Invalid value for argument `probabilities`: expected a non-empty map, received shape {plane.shape}."
        )
    try:
        threshold = threshold_otsu(plane)
    except ValueError as error:
        raise ValueError(str(error).replace("`values`", "`probabilities`")) from None
    return (plane > threshold).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- resize
def _check_target(height: object, width: object) -> tuple[int, int]:
    return check_int("height", height, minimum=1), check_int("width", width, minimum=1)


def _nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    # Source pixel whose centre is nearest the output pixel's centre: floor((i + 0.5) * in / out), in exact
    # integer arithmetic so no rounding error can shift a row.
    indices = ((2 * np.arange(size_out, dtype=np.int64) + 1) * size_in) // (2 * size_out)
    return np.minimum(indices, size_in - 1)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a mask, so that class indices stay exactly the same set of values.

    Each output pixel takes the value of the input pixel whose centre is nearest its own (the pixel-centre
    convention of Pillow's ``NEAREST`` and torch's ``nearest-exact``).

    Args:
        mask: (H, W) or (H, W, 1) mask of any integer, bool or float dtype (0/1, 0/255, class indices).
        height: Output height, a positive int.
        width: Output width, a positive int.

    Returns:
        The mask at (height, width) (or (height, width, 1) for an (H, W, 1) input), same dtype.

    Raises:
        TypeError: ``mask`` is not numeric, or ``height``/``width`` are not ints.
        ValueError: ``mask`` has another shape or is empty, or ``height``/``width`` are below 1.
    """
    array = _as_array("mask", mask)
    plane = _plane("mask", array)
    height, width = _check_target(height, width)
    if plane.size == 0:
        raise ValueError(
            f"Invalid value for argument `mask`: expected a non-empty mask, received shape {array.shape}."
        )
    rows = _nearest_indices(plane.shape[0], height)
    cols = _nearest_indices(plane.shape[1], width)
    resized = plane[rows[:, None], cols[None, :]]
    return resized[:, :, None] if array.ndim == 3 else resized


def _linear_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Half-pixel centres (align_corners=False); sources left of the first centre clamp to it.
    source = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
    source = np.maximum(source, 0.0)
    low = np.minimum(source.astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (source - low).astype(np.float32)


def resize_probabilities(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a probability (or any float) map.

    Uses half-pixel centres, the same values as ``torch.nn.functional.interpolate(..., mode="bilinear",
    align_corners=False)``. There is no anti-aliasing, so shrinking by more than 2x samples rather than
    averages; resize the mask rather than the probabilities in that case.

    Args:
        prob: (H, W) or (H, W, C) map of any real dtype.
        height: Output height, a positive int.
        width: Output width, a positive int.

    Returns:
        float32 (height, width) or (height, width, C).

    Raises:
        TypeError: ``prob`` is not numeric, or ``height``/``width`` are not ints.
        ValueError: ``prob`` is not 2-D or 3-D or is empty, or ``height``/``width`` are below 1.
    """
    array = _as_array("prob", prob)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(
            f"Invalid value for argument `prob`: expected a non-empty array of shape (H, W) or (H, W, C), "
            f"received shape {array.shape}."
        )
    height, width = _check_target(height, width)
    data = array.astype(np.float32)
    squeeze = data.ndim == 2
    if squeeze:
        data = data[:, :, None]
    r0, r1, ty = _linear_weights(data.shape[0], height)
    c0, c1, tx = _linear_weights(data.shape[1], width)
    ty = ty[:, None, None]
    tx = tx[None, :, None]
    # a + (b - a) * t rather than (1 - t) * a + t * b: a constant map (all 1.0, say) stays exactly constant.
    top = data[r0]
    rows = top + (data[r1] - top) * ty
    left = rows[:, c0]
    out = left + (rows[:, c1] - left) * tx
    out = out.astype(np.float32, copy=False)
    return out[:, :, 0] if squeeze else out


# ------------------------------------------------------------------------------------- cut-out, overlay
def apply_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The cut-out: a copy of the image with every pixel outside the mask set to 0.

    Args:
        image: (H, W) or (H, W, C) image of any dtype.
        mask: (H, W) or (H, W, 1) mask of the image's height and width: True, 1, 255 or any non-zero value
            is kept. Threshold a probability map first (``otsu_mask``) and resize a mask of another size
            (``resize_mask``).

    Returns:
        Array of the image's shape and dtype.

    Raises:
        TypeError: ``image`` or ``mask`` is not numeric.
        ValueError: ``image`` is not 2-D or 3-D, ``mask`` has another shape, or their heights and widths
            differ (the message gives the ``resize_mask`` call that fixes it).
    """
    picture = _as_array("image", image)
    if picture.ndim not in (2, 3):
        raise ValueError(
            f"Invalid value for argument `image`: expected shape (H, W) or (H, W, C), received {picture.shape}."
        )
    plane = _plane("mask", _as_array("mask", mask))
    _check_same_size(picture, plane)
    keep = _foreground(plane)
    if picture.ndim == 3:
        keep = keep[:, :, None]
    # np.where, not out[~keep] = 0: a boolean index of a big photo builds int64 indices of every background
    # pixel (16 bytes each), the where only its result.
    return np.where(keep, picture, picture.dtype.type(0))


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """An image as 8-bit RGB, for display and overlays.

    Channels: (H, W) and (H, W, 1) grey are repeated to RGB, (H, W, 2) grey + alpha keeps the grey, (H, W, 4)
    RGBA drops alpha. Values: uint8 as is; uint16 scaled from 0..65535; other integers taken as 8-bit when
    they fit 0..255, else as 16-bit when they fit 0..65535 (Pillow reads 16-bit PNGs as int32); floats
    taken as 0..1 when their maximum is at most 1, else as 0..255 (clipped); bool as 0/255.

    Args:
        image: (H, W) or (H, W, C) image with C in 1..4.

    Returns:
        uint8 (H, W, 3), a new array.

    Raises:
        TypeError: ``image`` is not numeric.
        ValueError: another shape, integers outside 0..65535, or NaN/infinity.
    """
    picture = _as_array("image", image)
    if picture.ndim == 2:
        picture = picture[:, :, None]
    if picture.ndim != 3 or picture.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"Invalid value for argument `image`: expected shape (H, W) or (H, W, C) with C in 1..4, "
            f"received {np.shape(image)}."
        )
    picture = picture[:, :, :1] if picture.shape[2] <= 2 else picture[:, :, :3]

    if picture.dtype == np.uint8:
        eight = picture
    elif picture.dtype == np.bool_:
        eight = picture.astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(picture.dtype, np.integer):
        low = int(picture.min()) if picture.size else 0
        high = int(picture.max()) if picture.size else 0
        if low < 0 or high > 65535:
            raise ValueError(
                f"Invalid value for argument `image`: expected integer values in 0..65535, received values in "
                f"{low}..{high}."
            )
        if picture.dtype == np.uint16 or high > 255:
            eight = np.rint(picture / 257.0).astype(np.uint8)
        else:
            eight = picture.astype(np.uint8)
    else:
        if picture.size and not np.isfinite(picture).all():
            raise ValueError(
                "Invalid value for argument `image`: expected finite values, received NaN or infinity."
            )
        values = picture.astype(np.float64)
        if picture.size and values.max() <= 1.0:
            values = values * 255.0
        eight = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if eight.shape[2] == 1:
        return np.repeat(eight, 3, axis=2)
    return np.array(eight, dtype=np.uint8, copy=True)


def _check_colour(color: object) -> np.ndarray:
    valid = isinstance(color, (Sequence, np.ndarray)) and not isinstance(color, str) and len(color) == 3
    if valid:
        valid = all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c <= 255 for c in color
        )
    if not valid:
        raise ValueError(
            f"Invalid value for argument `color`: expected three ints in 0..255 (R, G, B), received {color!r}."
        )
    return np.array([int(c) for c in color], dtype=np.float32)


def _boundary(foreground: np.ndarray) -> np.ndarray:
    """Foreground pixels with at least one 4-neighbour outside the foreground.

    Beyond the image edge counts as the neighbouring edge pixel, so a plant cut by the border is not
    outlined along the border.
    """
    padded = np.pad(foreground, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return foreground & ~interior


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    color: Sequence[int] = (255, 0, 255),
    alpha: float = 0.45,
    outline: bool = True,
) -> np.ndarray:
    """The image with the mask area tinted in ``color`` and, optionally, the mask's outline drawn on top.

    Args:
        image: (H, W) or (H, W, C) image; converted with ``to_uint8_rgb`` (grey to RGB, 16-bit to 8-bit).
        mask: (H, W) or (H, W, 1) mask of the image's height and width; non-zero is foreground.
        color: Tint and outline colour, three ints in 0..255.
        alpha: Opacity of the tint in [0, 1]: 0 leaves the image as is, 1 paints the mask area solid.
        outline: Also draw the boundary (mask pixels with a 4-neighbour outside the mask) in ``color`` at
            full opacity.

    Returns:
        uint8 (H, W, 3) RGB.

    Raises:
        TypeError: ``image``/``mask`` not numeric, ``alpha`` not a number, ``outline`` not a bool.
        ValueError: bad shapes, mismatched sizes (the message gives the ``resize_mask`` call), ``color`` not
            three ints in 0..255, ``alpha`` outside [0, 1].
    """
    rgb = to_uint8_rgb(image)
    plane = _plane("mask", _as_array("mask", mask))
    _check_same_size(rgb, plane)
    tint = _check_colour(color)
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    outline = check_bool("outline", outline)

    foreground = _foreground(plane)
    out = rgb.copy()
    blended = (1.0 - alpha) * rgb[foreground].astype(np.float32) + alpha * tint
    out[foreground] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if outline:
        out[_boundary(foreground)] = tint.astype(np.uint8)
    return out
