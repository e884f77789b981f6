"""When not to trust a vegetation mask: per-photo quality flags from the photo, the mask and colour indices.

The pretrained vegetation network (``deepplantphenomics.tools``) was trained on open-field photos. On other
photos it can fail silently: a grey-scale photo gives an empty mask, a dark seedling on white paper can be
missed while a colour index finds it, and on a lab tray the mask can spill onto pot rims and walls. These
checks take about 6 ms per 1296x966 photo (they run on a sub-sampled copy of at most 100k pixels) and say
when a mask needs a look. They do not change the mask.

Flags (:data:`FLAGS`, meanings in :data:`FLAG_MEANINGS` and docs/vegetation.md):

- ``greyscale``: the photo has no colour (R = G = B to within 1 level): nothing to judge plants by; the
  network's mask is then usually empty.
- ``no_plant``: the mask is (nearly) empty and a colour index finds no coherent green region either: most
  likely a photo without plants. Informative, not a failure.
- ``missed_green``: a colour index (Excess Green above Otsu's cut, green above red and blue) finds a coherent
  green region that the mask mostly leaves out: a plant the network may have missed.
- ``non_green_mask``: most of the mask is not green: the mask may hold pots, trays, walls or soil (or the
  plants are not green: purple, dry or senescent leaves).
- ``unfamiliar_colours``: the photo's colour statistics lie far outside those of the photos the network was
  trained on (the model card's ``quality.colour_ranges``): white paper, dark cloth, strong colour casts.

Example:
    >>> from deepplantphenomics import mask_quality
    >>> flags = mask_quality.mask_quality(image, mask, ranges)   # [] when nothing is wrong
    >>> mask_quality.quality_label(flags)                        # 'ok' or e.g. 'missed_green;unfamiliar_colours'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from deepplantphenomics.indices import excess_green
from deepplantphenomics.postprocess import threshold_otsu

__all__ = [
    "FLAGS",
    "FLAG_MEANINGS",
    "VegetationQualityWarning",
    "colour_index_plant",
    "colour_ranges",
    "mask_quality",
    "photo_statistics",
    "quality_label",
]

FLAGS = ("greyscale", "no_plant", "missed_green", "non_green_mask", "unfamiliar_colours")
FLAG_MEANINGS = {
    "greyscale": "the photo has no colour (R = G = B): the network cannot tell plants from background and its "
    "mask is usually empty",
    "no_plant": "the mask is (nearly) empty and a colour index finds no green region either: most likely no "
    "plant in view (informative, not a failure)",
    "missed_green": "a colour index (Excess Green + Otsu) finds a coherent green region that the mask mostly "
    "leaves out: check for a missed plant",
    "non_green_mask": "most of the mask is not green: it may hold pots, trays, walls or soil, or the plants are "
    "not green",
    "unfamiliar_colours": "the photo's colours are far outside those of the training photos (e.g. white paper, "
    "dark cloth, a strong colour cast): the network is untested there",
}

# Thresholds, measured on every photo in ../shared/data with the shipped network's masks and on lab scenes
# from deepplantphenomics.synthetic (docs/vegetation.md, "Quality flags").
SAMPLE_PIXELS = 100_000  # the checks run on a sub-sampled copy of at most this many pixels
# 99th percentile of max(R,G,B) - min(R,G,B) on 0..255 at or below this: greyscale. A grey photo, even as an
# RGB JPEG, has 0-1; a colour photo of a dark neutral cloth after JPEG already 2-3, field photos 28 and more.
GREY_CHROMA = 1.0
DARK = 25.0  # pixels whose brightest channel is below this have no reliable colour
EXG_FLOOR = 0.06  # the colour index's cut is never below this ExG (on bare soil Otsu splits soil in two)
MIN_REGION = 12  # sub-sampled pixels: smaller green regions are noise, not a plant
INDEX_MIN_FRACTION = 0.003  # a colour-index plant covers at least this fraction of the photo
NEAR_EMPTY = 0.002  # a mask covering less than this fraction of the photo is near-empty
MISSED_COVERAGE = 0.3  # flag missed_green when the mask covers less than this of the colour-index plant
NON_GREEN_FRACTION = 0.6  # flag non_green_mask when more than this of the (lit) mask is not green
RANGE_MARGIN = 0.25  # colour_ranges widen the training photos' range by this fraction of its span per side


class VegetationQualityWarning(UserWarning):
    """A vegetation mask that may not be trustworthy (``tools.segment_vegetation``); the message names the file
    and the flags (:data:`FLAGS`). Silence it with ``warnings.filterwarnings('ignore',
    category=VegetationQualityWarning)``, or get the flags as data from ``tools.segment_with_quality``."""


def _rgb_float(image: np.ndarray) -> np.ndarray:
    """(H, W[, C]) uint8/uint16/float image as float32 (h, w, 3) on 0..255, sub-sampled to <= SAMPLE_PIXELS."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"Invalid value for argument `image`: expected an image of shape (H, W) or (H, W, 3), received "
            f"shape {array.shape}."
        )
    step = max(1, math.ceil(math.sqrt(array.shape[0] * array.shape[1] / SAMPLE_PIXELS)))
    array = array[::step, ::step]
    rgb = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[:, :, :3]
    rgb = rgb.astype(np.float32)
    if array.dtype == np.uint16:
        rgb *= np.float32(255.0 / 65535.0)
    elif np.issubdtype(array.dtype, np.floating) and rgb.size and float(rgb.max()) <= 1.0:
        rgb *= np.float32(255.0)
    return rgb


def _sub_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The mask sub-sampled like the photo (same step), as bool."""
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array[:, :, 0]
    step = max(1, math.ceil(math.sqrt(array.shape[0] * array.shape[1] / SAMPLE_PIXELS)))
    array = array[::step, ::step] > 0
    if array.shape != shape:
        raise ValueError(
            f"Invalid value for argument `mask`: expected the photo's size, received a mask of shape "
            f"{np.asarray(mask).shape[:2]}."
        )
    return array


def _brightest(rgb: np.ndarray) -> np.ndarray:
    # Channel by channel: numpy reduces a length-3 last axis several times slower than this.
    return np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def _darkest(rgb: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def _greenish(rgb: np.ndarray) -> np.ndarray:
    """Pixels green by hue: green above red and above blue (the plant side of every colour index)."""
    return (rgb[..., 1] > rgb[..., 0]) & (rgb[..., 1] > rgb[..., 2])


def colour_index_plant(rgb: np.ndarray) -> np.ndarray:
    """The colour-index plant of a (sub-sampled) float RGB image: ExG above max(Otsu, EXG_FLOOR), green above
    red and blue, lit, opened with a 3x3 square and without regions under MIN_REGION pixels. bool (h, w)."""
    from scipy import ndimage

    exg = excess_green(rgb)
    cut = max(threshold_otsu(exg), EXG_FLOOR)
    green = (exg > cut) & _greenish(rgb) & (_brightest(rgb) >= DARK)
    green = ndimage.binary_opening(green, np.ones((3, 3), dtype=bool))
    labels, count = ndimage.label(green)
    if not count:
        return green
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (sizes >= MIN_REGION)[labels]


def photo_statistics(image: np.ndarray) -> dict[str, float]:
    """Colour statistics of a photo, compared with the training photos' ranges for ``unfamiliar_colours``.

    Returns:
        ``brightness`` (mean of R, G, B in [0, 1]), ``contrast`` (its standard deviation), ``white`` and
        ``black`` (fractions of pixels with every channel above 215 / the brightest below 15), ``saturation``
        (mean (max - min) / max), ``red`` and ``blue`` (mean chromaticity R / (R + G + B), B / (R + G + B)).
    """
    rgb = _rgb_float(image)
    brightest, darkest = _brightest(rgb), _darkest(rgb)
    total = rgb[..., 0] + rgb[..., 1] + rgb[..., 2] + 1e-6
    brightness = total / (3.0 * 255.0)
    return {
        "brightness": float(brightness.mean()),
        "contrast": float(brightness.std()),
        "white": float((darkest > 215.0).mean()),
        "black": float((brightest < 15.0).mean()),
        "saturation": float(((brightest - darkest) / (brightest + 1e-6)).mean()),
        "red": float((rgb[..., 0] / total).mean()),
        "blue": float((rgb[..., 2] / total).mean()),
    }


def colour_ranges(statistics: Iterable[Mapping[str, float]], margin: float = RANGE_MARGIN) -> dict[str, list]:
    """Per statistic, the range of the training photos (0.5th to 99.5th percentile) widened by ``margin`` of
    its span on each side: what the model card stores as ``quality.colour_ranges``.

    Args:
        statistics: :func:`photo_statistics` of each training photo.
        margin: Fraction of each range's span added on each side.

    Returns:
        ``{name: [low, high]}``, rounded to 4 decimals.
    """
    rows = list(statistics)
    ranges = {}
    for name in rows[0]:
        values = np.array([row[name] for row in rows], dtype=np.float64)
        low, high = np.percentile(values, [0.5, 99.5])
        span = high - low
        ranges[name] = [round(float(low - margin * span), 4), round(float(high + margin * span), 4)]
    return ranges


def mask_quality(
    image: np.ndarray, mask: np.ndarray, ranges: Mapping[str, Sequence[float]] | None = None
) -> list[str]:
    """Quality flags of one photo's plant mask (:data:`FLAGS`, in that order); ``[]`` when nothing is wrong.

    Args:
        image: The photo, (H, W) grey or (H, W, 3/4) RGB(A), uint8, uint16 or float in [0, 1].
        mask: Its plant mask, (H, W), plant > 0.
        ranges: Training photos' colour ranges (:func:`colour_ranges`; the model card's
            ``quality.colour_ranges``); None skips the ``unfamiliar_colours`` check.

    Returns:
        The flags raised, a sub-list of :data:`FLAGS`.

    Raises:
        ValueError: ``image`` is not an image, or ``mask`` is not of its size.
    """
    rgb = _rgb_float(image)
    plant = _sub_mask(mask, rgb.shape[:2])
    brightest = _brightest(rgb)
    chroma = brightest - _darkest(rgb)
    if float(np.percentile(chroma, 99)) <= GREY_CHROMA:
        return ["greyscale"]  # no colour: the other checks read colour and would say nothing useful
    flags = []
    index_plant = colour_index_plant(rgb)
    mask_fraction, index_fraction = float(plant.mean()), float(index_plant.mean())
    if index_fraction >= INDEX_MIN_FRACTION:
        from scipy import ndimage

        # A one-pixel margin: the index and the network may draw the same leaf's outline a pixel apart.
        near_mask = ndimage.binary_dilation(plant, np.ones((3, 3), dtype=bool))
        if float((near_mask & index_plant).sum()) < MISSED_COVERAGE * float(index_plant.sum()):
            flags.append("missed_green")
    elif mask_fraction < NEAR_EMPTY:
        flags.append("no_plant")
    lit = plant & (brightest >= DARK)
    if mask_fraction >= NEAR_EMPTY and lit.any():
        non_green = float((lit & ~_greenish(rgb)).sum()) / float(lit.sum())
        if non_green > NON_GREEN_FRACTION:
            flags.append("non_green_mask")
    if ranges:
        statistics = photo_statistics(image)
        if any(
            not low <= statistics[name] <= high for name, (low, high) in ranges.items() if name in statistics
        ):
            flags.append("unfamiliar_colours")
    return [flag for flag in FLAGS if flag in flags]


def unfamiliar_statistics(
    image: np.ndarray, ranges: Mapping[str, Sequence[float]]
) -> dict[str, tuple[float, list[float]]]:
    """The statistics of ``image`` outside ``ranges``: ``{name: (value, [low, high])}`` (for messages)."""
    statistics = photo_statistics(image)
    return {
        name: (round(statistics[name], 4), list(bounds))
        for name, bounds in ranges.items()
        if name in statistics and not bounds[0] <= statistics[name] <= bounds[1]
    }


def quality_label(flags: Sequence[str]) -> str:
    """The CSV cell for a photo's flags: ``'ok'``, or the flags joined by ``';'``."""
    return ";".join(flags) if flags else "ok"


def describe(flags: Sequence[str]) -> str:
    """One sentence per flag (:data:`FLAG_MEANINGS`), for warnings and reports."""
    return "; ".join(f"{flag}: {FLAG_MEANINGS[flag]}" for flag in flags)


def quality_summary(records: Sequence[Any]) -> dict[str, int]:
    """How many photos carry each flag, from their flag lists (for a run's closing line)."""
    counts = dict.fromkeys(FLAGS, 0)
    for flags in records:
        for flag in flags:
            counts[flag] += 1
    return {flag: count for flag, count in counts.items() if count}
