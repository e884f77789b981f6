"""Colour-index vegetation baselines: Excess Green and CIVE, cut with Otsu's threshold.

These are what plant scientists use when they have no trained network: a per-pixel "greenness" index and an
automatic threshold. They work well on green plants over brown soil in even light and break under other
lighting, soil or backgrounds; ``deepplantphenomics.tools.segment_vegetation(..., method='exg' | 'cive')``
exposes them so users can compare them with the pretrained network on their own images.

Both index functions return maps where plant pixels score HIGH, so one thresholding rule (foreground =
above Otsu's threshold) serves both.

References:
    Woebbecke D. M., Meyer G. E., Von Bargen K., Mortensen D. A. (1995). Color indices for weed identification
    under various soil, residue, and lighting conditions. Transactions of the ASAE 38(1), 259-269. (ExG)
    Kataoka T., Kaneko T., Okamoto H., Hata S. (2003). Crop growth estimation system using machine vision.
    IEEE/ASME AIM 2003, b1079-b1083. (CIVE)
"""

from __future__ import annotations

import numpy as np

from deepplantphenomics.postprocess import threshold_otsu
from deepplantphenomics.settings import check_choice

__all__ = ["INDEX_METHODS", "cive", "excess_green", "index_mask", "index_plant"]

INDEX_METHODS = ("exg", "cive")

# Kataoka et al.'s coefficients apply to 8-bit R, G, B values.
_CIVE_WEIGHTS = np.array([0.441, -0.811, 0.385], dtype=np.float64)
_CIVE_OFFSET = 18.78745
# Rows of an image computed at once: the float64 work arrays (about 60 bytes per pixel) then stay a few MiB,
# and only the float32 index map (4 bytes per pixel) is image-sized.
_BAND_PIXELS = 1 << 18


def _rgb_255(image: object) -> np.ndarray:
    """An (H, W, 3) uint8/uint16/float image as float64 R, G, B on the 0..255 scale.

    Raises:
        TypeError: ``image`` is not a numeric numpy array.
        ValueError: ``image`` is not (H, W, 3) (or (H, W, 4), alpha dropped).
    """
    _check_rgb(image)
    rgb = image[:, :, :3].astype(np.float64)
    if image.dtype == np.uint16:
        rgb *= 255.0 / 65535.0
    elif np.issubdtype(image.dtype, np.floating) and rgb.size and float(rgb.max()) <= 1.0:
        rgb *= 255.0  # float images in [0, 1], as the library's loaders produce them
    return rgb


def _check_rgb(image: object) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"Invalid value for argument `image`: expected a numpy array of shape (H, W, 3), received "
            f"{type(image).__name__}."
        )
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.number):
        raise TypeError(
            f"Invalid value for argument `image`: expected a numeric array (uint8, uint16 or float), received "
            f"dtype {image.dtype}."
        )
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(
            f"Invalid value for argument `image`: expected an RGB array of shape (H, W, 3), received shape "
            f"{image.shape}."
        )


def excess_green(image: np.ndarray) -> np.ndarray:
    """Excess Green index on chromatic coordinates: ``ExG = 2g - r - b`` with ``r = R / (R + G + B)`` etc.

    Chromatic (brightness-normalised) coordinates make the index insensitive to overall exposure, as in
    Woebbecke et al. (1995). Black pixels (R + G + B = 0) score 0.

    Args:
        image: (H, W, 3) RGB array, uint8, uint16 or float (floats in [0, 1] or [0, 255]).

    Returns:
        float32 (H, W) in [-1, 2]; plants score high.

    Raises:
        TypeError: ``image`` is not a numeric numpy array.
        ValueError: ``image`` is not (H, W, 3).
    """
    rgb = _rgb_255(image)
    total = rgb.sum(axis=2)
    safe = np.where(total > 0, total, 1.0)
    r, g, b = (rgb[:, :, i] / safe for i in range(3))
    return np.where(total > 0, 2.0 * g - r - b, 0.0).astype(np.float32)


def cive(image: np.ndarray) -> np.ndarray:
    """Colour Index of Vegetation Extraction, sign-flipped so that plants score high.

    Kataoka et al. (2003) define ``CIVE = 0.441 R - 0.811 G + 0.385 B + 18.78745`` on 8-bit values, with
    plants LOW; this returns ``-CIVE`` so it thresholds the same way as :func:`excess_green`. 16-bit and
    [0, 1] float images are brought to the 0..255 scale first.

    Args:
        image: (H, W, 3) RGB array, uint8, uint16 or float (floats in [0, 1] or [0, 255]).

    Returns:
        float32 (H, W) ``-CIVE``; plants score high.

    Raises:
        TypeError: ``image`` is not a numeric numpy array.
        ValueError: ``image`` is not (H, W, 3).
    """
    rgb = _rgb_255(image)
    return (-(rgb @ _CIVE_WEIGHTS + _CIVE_OFFSET)).astype(np.float32)


def _index_map(image: np.ndarray, method: str) -> np.ndarray:
    """The index as float32 (H, W), computed in bands of rows: the same values as the whole-image formula."""
    _check_rgb(image)
    formula = excess_green if method == "exg" else cive
    if np.issubdtype(image.dtype, np.floating):
        return formula(image)  # how floats are scaled depends on the whole image's maximum
    height, width = image.shape[:2]
    out = np.empty((height, width), dtype=np.float32)
    rows = max(1, _BAND_PIXELS // width)
    for top in range(0, height, rows):
        out[top : top + rows] = formula(image[top : top + rows])
    return out


def index_plant(image: np.ndarray, method: str) -> np.ndarray:
    """Plant pixels by a colour index cut at Otsu's threshold, as a bool (H, W) map (1 byte per pixel).

    The same pixels as :func:`index_mask`; the index is computed band by band, so a 50 MP photo needs its
    index map (4 bytes per pixel) and this result beside the photo, not the whole-image float64 arrays.

    Args:
        image: (H, W, 3) RGB array, uint8, uint16 or float.
        method: 'exg' (Excess Green) or 'cive' (CIVE); case-insensitive.

    Returns:
        bool (H, W), True where the index is above Otsu's threshold.

    Raises:
        TypeError, ValueError: as :func:`index_mask`.
    """
    method = check_choice("method", method, INDEX_METHODS)
    values = _index_map(image, method)
    threshold = threshold_otsu(values)
    return np.greater(values, threshold, out=np.empty(values.shape, dtype=np.bool_))


def index_mask(image: np.ndarray, method: str) -> np.ndarray:
    """Plant mask from a colour index cut at Otsu's threshold (``deepplantphenomics.postprocess``).

    Args:
        image: (H, W, 3) RGB array, uint8, uint16 or float.
        method: 'exg' (Excess Green) or 'cive' (CIVE); case-insensitive.

    Returns:
        float32 (H, W) with 1.0 where the index is above Otsu's threshold, 0.0 elsewhere (all 0 for an image
        whose index is constant).

    Raises:
        TypeError: ``image`` is not a numeric array, or ``method`` is not a str.
        ValueError: ``image`` is not (H, W, 3), or ``method`` is not 'exg' or 'cive'.
    """
    return index_plant(image, method).astype(np.float32)
