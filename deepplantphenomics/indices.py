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

__all__ = ["INDEX_METHODS", "cive", "excess_green", "index_mask"]

INDEX_METHODS = ("exg", "cive")

# Kataoka et al.'s coefficients apply to 8-bit R, G, B values.
_CIVE_WEIGHTS = np.array([0.441, -0.811, 0.385], dtype=np.float64)
_CIVE_OFFSET = 18.78745


def _rgb_255(image: object) -> np.ndarray:
    """An (H, W, 3) uint8/uint16/float image as float64 R, G, B on the 0..255 scale.

    Raises:
        TypeError: ``image`` is not a numeric numpy array.
        ValueError: ``image`` is not (H, W, 3) (or (H, W, 4), alpha dropped).
    """
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
    rgb = image[:, :, :3].astype(np.float64)
    if image.dtype == np.uint16:
        rgb *= 255.0 / 65535.0
    elif np.issubdtype(image.dtype, np.floating) and rgb.size and float(rgb.max()) <= 1.0:
        rgb *= 255.0  # float images in [0, 1], as the library's loaders produce them
    return rgb


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
    method = check_choice("method", method, INDEX_METHODS)
    values = excess_green(image) if method == "exg" else cive(image)
    threshold = threshold_otsu(values)
    return (values > threshold).astype(np.float32)
