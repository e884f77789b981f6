"""Phenotypes from masks: one record per plant (area, shape, colour), pots of a tray, and a scale.

A mask says which pixels are plant; a plant scientist reports numbers per plant. :func:`plants` turns an image
and its mask into one record per plant, with the shape descriptors of scikit-image's ``regionprops`` (area,
perimeter, convex hull, solidity, ellipse axes) and colour statistics over the plant's pixels.

Plants, not fragments: a rosette whose leaves touch only through thin petioles falls apart into several
connected regions of the mask. Fragments closer than ``merge_distance`` pixels are joined into one plant (or,
with a tray ``grid``, every fragment in a pot is that pot's plant), and plants smaller than ``min_area``
pixels are dropped as specks and counted.

Trays: with ``grid=(rows, cols)`` the photo is divided into equal cells named A1, A2, ... along the first row
(row letter, column number), and each plant is named by its cell, so the same pot has the same id in every
photo of a series; an empty pot still gets its record (area 0). ``grid="auto"`` finds rows and columns from
the plants' positions when the tray fills the photo.

Example:
    >>> from deepplantphenomics import measure
    >>> records = measure.plants(image, mask, grid=(4, 6), mm_per_pixel=0.2)
    >>> measure.write_plants_csv("plants.csv", records)

See docs/measure.md for every column.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage.measure import label as label_components
from skimage.measure import regionprops

from deepplantphenomics.postprocess import to_uint8_rgb
from deepplantphenomics.settings import check_float, check_int

__all__ = [
    "MERGE_DISTANCE",
    "MIN_AREA",
    "PLANT_COLUMNS",
    "Measurement",
    "auto_grid",
    "cell_id",
    "check_grid_fits",
    "csv_value",
    "draw_plants",
    "measure_plants",
    "parse_cell_id",
    "parse_grid",
    "plants",
    "write_plants_csv",
]

MIN_AREA = 30  # pixels: smaller plants are specks (noise of the mask), dropped and counted
MERGE_DISTANCE = 8.0  # pixels: fragments at most this far apart are one plant (no grid)
# A grid cell must be at least this many pixels on each side: smaller cells cannot hold a plant.
_MIN_CELL = 4
# A connected region with at least this share of its pixels in each of two or more cells is neighbours'
# leaves touching: it is split along the cell lines instead of being given whole to one pot.
_SPLIT_SHARE = 0.2
_CELL_ID = re.compile(r"^([A-Za-z]+)([0-9]+)$")
_GRID = re.compile(r"^\s*([0-9]+)\s*[xX×,]\s*([0-9]+)\s*$")

# One record per plant, in this order (the CSV adds 'file' in front). Lengths in pixels, areas in pixels²;
# the _mm / _mm2 columns are empty without a scale.
PLANT_COLUMNS = (
    "plant",
    "row",
    "col",
    "fragments",
    "centroid_x",
    "centroid_y",
    "bbox_x",
    "bbox_y",
    "width_px",
    "height_px",
    "area_px",
    "perimeter_px",
    "convex_area_px",
    "solidity",
    "major_axis_px",
    "minor_axis_px",
    "eccentricity",
    "orientation_deg",
    "mean_r",
    "mean_g",
    "mean_b",
    "hue_deg",
    "mean_exg",
    "mm_per_pixel",
    "area_mm2",
    "perimeter_mm",
    "convex_area_mm2",
    "width_mm",
    "height_mm",
    "major_axis_mm",
    "minor_axis_mm",
)
_LENGTHS = ("perimeter", "width", "height", "major_axis", "minor_axis")
_AREAS = ("area", "convex_area")


# ============================================================================ tray cells
def _row_letters(row: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (spreadsheet column style, so trays of more than 26 rows still work)."""
    letters = ""
    row += 1
    while row:
        row, rest = divmod(row - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def cell_id(row: int, col: int) -> str:
    """The id of a tray cell: row letter(s) and 1-based column number, e.g. (0, 0) -> 'A1', (1, 2) -> 'B3'."""
    return f"{_row_letters(row)}{col + 1}"


def parse_cell_id(name: str, grid: tuple[int, int], argument: str = "cell") -> tuple[int, int]:
    """(row, col), 0-based, of a cell id such as 'B3' in a ``grid`` of (rows, cols).

    Raises:
        ValueError: ``name`` is not an id of that grid (the message names ``argument``).
    """
    match = _CELL_ID.match(name.strip()) if isinstance(name, str) else None
    if match is not None:
        row = 0
        for letter in match.group(1).upper():
            row = row * 26 + ord(letter) - ord("A") + 1
        row, col = row - 1, int(match.group(2)) - 1
        if 0 <= row < grid[0] and 0 <= col < grid[1]:
            return row, col
    rows, cols = grid
    raise ValueError(
        f"Invalid value for argument `{argument}`: {name!r} is not a cell of a {rows}x{cols} grid; expected "
        f"a row letter A..{_row_letters(rows - 1)} and a column number 1..{cols}, e.g. 'A1'."
    )


def parse_grid(value: Any, argument: str = "grid") -> tuple[int, int] | str | None:
    """A grid given as None, 'auto', (rows, cols) or a 'RxC' string such as '4x6'.

    Returns:
        None, 'auto' or (rows, cols).

    Raises:
        ValueError / TypeError: anything else (the message names ``argument``).
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        match = _GRID.match(value)
        if match is None:
            raise ValueError(
                f"Invalid value for argument `{argument}`: expected ROWSxCOLS such as '4x6', or 'auto', "
                f"received {value!r}."
            )
        value = (int(match.group(1)), int(match.group(2)))
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(
            f"Invalid value for argument `{argument}`: expected (rows, cols), 'RxC' or 'auto', received {value!r}."
        )
    return check_int(f"{argument}[0] (rows)", value[0]), check_int(f"{argument}[1] (cols)", value[1])


def check_grid_fits(grid: tuple[int, int], height: int, width: int, argument: str = "grid") -> None:
    """Raise ValueError (naming ``argument``) when a (rows, cols) grid's cells are under 4 pixels on a side."""
    rows, cols = grid
    if height / rows < _MIN_CELL or width / cols < _MIN_CELL:
        raise ValueError(
            f"Invalid value for argument `{argument}`: a {rows}x{cols} grid does not fit a {width}x{height} "
            f"(W x H) photo: its cells would be {width / cols:.1f}x{height / rows:.1f} pixels; at most "
            f"{height // _MIN_CELL}x{width // _MIN_CELL} (rows x cols) cells of {_MIN_CELL}+ pixels fit."
        )


def _cell_index(height: int, width: int, grid: tuple[int, int]) -> np.ndarray:
    """int32 (H, W): the row-major index of the grid cell each pixel lies in (equal cells over the photo)."""
    rows, cols = grid
    row_of = np.minimum(np.arange(height) * rows // height, rows - 1)
    col_of = np.minimum(np.arange(width) * cols // width, cols - 1)
    return (row_of[:, None] * cols + col_of[None, :]).astype(np.int32)


def _axis_count(positions: np.ndarray, size: int) -> int | None:
    """The largest n such that n equal bands along an axis each hold a plant and every plant is near the
    middle of its band (within 30 % of the band's width of its centre); None when no n works."""
    for n in range(min(len(positions), size // _MIN_CELL), 0, -1):
        scaled = positions * n / size
        bands = np.minimum(scaled.astype(np.int64), n - 1)
        central = np.all(np.abs(scaled - bands - 0.5) < 0.3)
        if central and len(np.unique(bands)) == n:
            return n
    return None


def auto_grid(centroids: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the tray whose pots hold plants at ``centroids`` ((N, 2) as (y, x)).

    Raises:
        ValueError: no plants, or no equal grid puts every plant near the middle of its cell.
    """
    if len(centroids) == 0:
        raise ValueError(
            "grid='auto' needs plants to place the grid, but the mask holds none; give the grid."
        )
    rows = _axis_count(centroids[:, 0], height)
    cols = _axis_count(centroids[:, 1], width)
    if rows is None or cols is None:
        raise ValueError(
            "grid='auto' found no grid of equal cells with one plant near the middle of each occupied cell "
            "(does the tray fill the photo?); give the grid as (rows, cols) (--grid RxC)."
        )
    return rows, cols


# ============================================================================ measuring
@dataclass
class Measurement:
    """Everything :func:`measure_plants` found in one photo.

    Attributes:
        plants: one record per plant (keys :data:`PLANT_COLUMNS`); with a grid, one per cell, row-major, and
            an empty cell's record has ``area_px`` 0 and None for the shape and colour figures.
        labels: int32 (H, W): ``k`` on the pixels of ``plants[k - 1]``, 0 on background and dropped specks.
        specks: how many plants smaller than ``min_area`` were dropped.
        speck_pixels: their pixels in all.
        grid: the grid used ((rows, cols), also when found with 'auto'), or None.
    """

    plants: list[dict[str, Any]]
    labels: np.ndarray
    specks: int
    speck_pixels: int
    grid: tuple[int, int] | None


def _check_inputs(image: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image, (H, W) mask) after checking types and that the sizes agree."""
    if not isinstance(mask, np.ndarray) or not (
        np.issubdtype(mask.dtype, np.number) or mask.dtype == np.bool_
    ):
        raise TypeError(
            f"Invalid value for argument `mask`: expected a numeric or bool numpy array, received "
            f"{type(mask).__name__}."
        )
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f"Invalid value for argument `mask`: expected shape (H, W), received {mask.shape}.")
    rgb = to_uint8_rgb(image)
    if rgb.shape[:2] != mask.shape:
        raise ValueError(
            f"The mask is {mask.shape[1]}x{mask.shape[0]} (W x H) but the image is {rgb.shape[1]}x"
            f"{rgb.shape[0]}: a mask must have its photo's size."
        )
    return rgb, mask


def _group_by_cell(components: np.ndarray, cells: np.ndarray, n_cells: int) -> np.ndarray:
    """Plant labels (cell index + 1) for a grid: each region goes whole to the cell holding most of it,
    unless two or more cells each hold a large share (touching neighbours), then it is split along cells."""
    groups = np.zeros(components.shape, dtype=np.int32)
    n_components = int(components.max())
    if n_components == 0:
        return groups
    fg = components > 0
    key = components[fg].astype(np.int64) * n_cells + cells[fg]
    counts = np.bincount(key, minlength=(n_components + 1) * n_cells).reshape(n_components + 1, n_cells)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    split = (shares >= _SPLIT_SHARE).sum(axis=1) >= 2
    owner = counts.argmax(axis=1) + 1
    groups[fg] = np.where(split[components[fg]], cells[fg] + 1, owner[components[fg]])
    return groups


def _group_by_distance(fg: np.ndarray, components: np.ndarray, merge_distance: float) -> np.ndarray:
    """Plant labels: fragments whose gap is at most ``merge_distance`` pixels share a label."""
    if merge_distance <= 0 or not fg.any():
        return components
    # Grow every fragment by half the distance: two fragments meet when their gap is <= merge_distance.
    joined = label_components(_grow(fg, merge_distance / 2.0), connectivity=2)
    return np.where(fg, joined, 0).astype(np.int32)


_DISK_ROWS_LIMIT = 33  # above this many disk rows, one distance transform is cheaper than the row passes


def _grow(fg: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within Euclidean distance ``radius`` of a ``fg`` pixel: ``distance_transform_edt(~fg) <= radius``.

    For small radii the same set is the union of the disk's rows: per row offset ``dy``, a horizontal running
    maximum over ``2 * floor(sqrt(r^2 - dy^2)) + 1`` pixels, shifted by ``dy`` (each pass O(pixels), so about
    4x faster than the transform at the default ``MERGE_DISTANCE``; exact, tested against the transform).
    """
    reach = int(math.floor(radius))
    if 2 * reach + 1 > _DISK_ROWS_LIMIT:
        return ndimage.distance_transform_edt(~fg) <= radius
    source = fg.view(np.uint8)
    grown = np.zeros_like(fg)
    height = fg.shape[0]
    rows: dict[int, np.ndarray] = {}  # row offsets dy and -dy share their running maximum
    for dy in range(-reach, reach + 1):
        half = int(math.floor(math.sqrt(radius * radius - dy * dy)))
        if half not in rows:
            spread = ndimage.maximum_filter1d(source, 2 * half + 1, axis=1) if half else source
            rows[half] = spread.view(bool)
        row = rows[half]
        if dy >= 0:
            grown[dy:] |= row[: height - dy]
        else:
            grown[:dy] |= row[-dy:]
    return grown


def _drop_specks(groups: np.ndarray, min_area: int) -> tuple[np.ndarray, int, int]:
    """Groups relabelled 1..n in order of their old labels, those under ``min_area`` pixels set to 0."""
    areas = np.bincount(groups.ravel())
    areas[0] = 0
    present = areas > 0
    keep = present & (areas >= min_area)
    specks = int(np.count_nonzero(present & ~keep))
    speck_pixels = int(areas[present & ~keep].sum())
    new = np.zeros(len(areas), dtype=np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    # Labels already 1..n and nothing dropped: the relabelling is the identity, so skip its full-size copy.
    if np.array_equal(new, np.arange(len(new))):
        return groups.astype(np.int32, copy=False), specks, speck_pixels
    return new[groups], specks, speck_pixels


def _colour_stats(rgb: np.ndarray, labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per label 1..n: mean R, G, B (0..255), circular mean hue (degrees), mean Excess Green (2g - r - b)."""
    fg = labels > 0
    which = labels[fg]
    pixels = rgb[fg].astype(np.float64)
    count = np.maximum(np.bincount(which, minlength=n + 1)[1:], 1)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(which, weights=values, minlength=n + 1)[1:] / count

    # Channels combined one array at a time: numpy's reductions along a length-3 axis are several times slower.
    total = pixels[:, 0] + pixels[:, 1] + pixels[:, 2]
    chroma = pixels / np.where(total > 0, total, 1.0)[:, None]
    exg = np.where(total > 0, 2.0 * chroma[:, 1] - chroma[:, 0] - chroma[:, 2], 0.0)
    # Hue is an angle: red at 0° and 359° average to 0°, not 180°, so average unit vectors.
    hue = _hue(pixels / 255.0) * (2.0 * math.pi)
    angle = np.degrees(np.arctan2(mean(np.sin(hue)), mean(np.cos(hue)))) % 360.0
    return {
        "mean_r": mean(pixels[:, 0]),
        "mean_g": mean(pixels[:, 1]),
        "mean_b": mean(pixels[:, 2]),
        "hue_deg": angle,
        "mean_exg": mean(exg),
    }


def _hue(pixels: np.ndarray) -> np.ndarray:
    """Hue in [0, 1) of (N, 3) RGB rows: scikit-image's ``rgb2hsv`` hue (the same formula and tie order, blue
    over green over red; 0 for grey), computed on the plant's pixels only without the S and V planes."""
    r, g, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    top = np.maximum(np.maximum(r, g), b)
    delta = top - np.minimum(np.minimum(r, g), b)
    safe = np.where(delta > 0, delta, 1.0)
    hue = np.where(b == top, 4.0 + (r - g) / safe, np.where(g == top, 2.0 + (b - r) / safe, (g - b) / safe))
    hue = (hue / 6.0) % 1.0
    hue[delta == 0] = 0.0
    return hue


_DIAMOND = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)


def _convex_areas(rows: np.ndarray, cols: np.ndarray, which: np.ndarray, n: int) -> np.ndarray:
    """Per label 1..n: pixels of its convex hull, exactly ``regionprops``' ``area_convex``.

    ``rows``, ``cols``, ``which``: the labelled pixels in ``np.nonzero`` (row-major) order and their labels.
    scikit-image rasterises each plant's hull over its bounding box (``grid_points_in_poly``), a third of the
    measuring time on a field photo; here the hull of the same points (each pixel's four edge midpoints) is
    counted row by row with integer arithmetic (tests compare the two on thousands of shapes).
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(which, kind="stable")
    which, rows, cols = which[order], rows[order], cols[order]
    # Only the first and last pixel of each row of a plant can be on its hull.
    key = which.astype(np.int64) * (int(rows.max(initial=0)) + 1) + rows
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.unique(np.concatenate([first, np.r_[first[1:] - 1, len(key) - 1]]))
    which, points = which[ends], np.stack([rows[ends], cols[ends]], axis=1).astype(np.int64)
    bounds = np.searchsorted(which, np.arange(1, n + 2))
    return np.array([_hull_pixels(points[bounds[k] : bounds[k + 1]]) for k in range(n)], dtype=np.int64)


def _hull_pixels(points: np.ndarray) -> int:
    """Pixel centres inside or on the convex hull of the (row, col) ``points``' edge midpoints (N >= 1)."""
    # Coordinates doubled, so that the midpoints (half pixels) are integers and the count is exact.
    corners = (2 * points[:, None, :] + _DIAMOND).reshape(-1, 2)
    # Unique corners (repeated points can upset Qhull) through one integer key; columns start at -1.
    span = int(corners[:, 1].max()) + 2
    keys = np.unique(corners[:, 0] * span + corners[:, 1] + 1)
    corners = np.stack([keys // span, keys % span - 1], axis=1)
    vertices = corners[ConvexHull(corners).vertices]
    r1, c1 = vertices[:, 0], vertices[:, 1]
    y = 2 * np.arange(-(-int(r1.min()) // 2), int(r1.max()) // 2 + 1, dtype=np.int64)[:, None]
    r2, c2 = np.roll(r1, -1), np.roll(c1, -1)
    slanted = r1 != r2  # a horizontal edge's ends are the ends of its neighbours
    r1, c1, r2, c2 = r1[slanted], c1[slanted], r2[slanted], c2[slanted]
    # Each edge's doubled column at row y is num / (den / 2); its pixel columns are ceil/floor(num / den).
    sign = np.sign(r2 - r1)
    num = (c1 * (r2 - r1) + (y - r1) * (c2 - c1)) * sign
    den = 2 * (r2 - r1) * sign
    crosses = (y >= np.minimum(r1, r2)) & (y <= np.maximum(r1, r2))
    left = np.where(crosses, -(-num // den), np.iinfo(np.int64).max).min(axis=1)
    right = np.where(crosses, num // den, np.iinfo(np.int64).min).max(axis=1)
    return int(np.maximum(right - left + 1, 0).sum())


def _record(
    region: Any,
    colour: dict[str, np.ndarray],
    shape: dict[str, np.ndarray],
    fragments: int,
    scale: float | None,
) -> dict[str, Any]:
    """The figures of one plant (a regionprops region, its label's :func:`_ellipse_figures` in ``shape``);
    lengths in pixels, plus mm when ``scale`` is set."""
    top, left, bottom, right = region.bbox
    k = region.label - 1
    cy, cx = shape["centroid_y"][k], shape["centroid_x"][k]
    record: dict[str, Any] = dict.fromkeys(PLANT_COLUMNS)
    record.update(
        fragments=fragments,
        centroid_x=float(cx),
        centroid_y=float(cy),
        bbox_x=int(left),
        bbox_y=int(top),
        width_px=int(right - left),
        height_px=int(bottom - top),
        area_px=int(region.area),
        perimeter_px=float(region.perimeter),
        convex_area_px=int(shape["convex_area"][k]),
        solidity=float(region.area / shape["convex_area"][k]),
        major_axis_px=float(shape["major"][k]),
        minor_axis_px=float(shape["minor"][k]),
        eccentricity=float(shape["eccentricity"][k]),
        # regionprops: angle between the row axis and the major axis; here from the x axis, counter-clockwise
        # as seen in the photo (y grows downwards), in (-90, 90].
        orientation_deg=float(_orientation_from_x(shape["orientation"][k])),
        **{key: float(values[k]) for key, values in colour.items()},
    )
    if scale is not None:
        record["mm_per_pixel"] = scale
        for name in _LENGTHS:
            record[f"{name}_mm"] = record[f"{name}_px"] * scale
        for name in _AREAS:
            record[f"{name}_mm2"] = record[f"{name}_px"] * scale * scale
    return record


def _ellipse_figures(rows: np.ndarray, cols: np.ndarray, which: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per label 1..n: centroid, the ellipse's axes, eccentricity and orientation (radians from the row axis).

    The same definitions as ``regionprops`` (axes 4 * sqrt of the inertia tensor's eigenvalues, its
    ``orientation`` formula; tests compare the two), from second moments summed for all labels in one pass
    with ``np.bincount``: ``regionprops`` computes third-order moments over each plant's bounding box, which
    took a quarter of the measuring time on a 1296x966 field photo. ``rows``, ``cols``, ``which``: the
    labelled pixels and their labels, as for :func:`_convex_areas`.
    """
    count = np.maximum(np.bincount(which, minlength=n + 1)[1:], 1).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(which, weights=values, minlength=n + 1)[1:] / count

    cy, cx = mean(rows), mean(cols)
    dy, dx = rows - cy[which - 1], cols - cx[which - 1]
    # regionprops' inertia tensor is [[a, b], [b, c]]: a the column variance, c the row variance, b = -covariance.
    a, b, c = mean(dx * dx), -mean(dx * dy), mean(dy * dy)
    spread = np.sqrt(((a - c) / 2.0) ** 2 + b * b)
    large = np.maximum((a + c) / 2.0 + spread, 0.0)
    small = np.maximum((a + c) / 2.0 - spread, 0.0)
    eccentricity = np.sqrt(1.0 - np.divide(small, large, out=np.ones_like(large), where=large > 0))
    orientation = np.where(
        a - c == 0, np.where(b < 0, math.pi / 4, -math.pi / 4), 0.5 * np.arctan2(-2.0 * b, c - a)
    )
    return {
        "centroid_y": cy,
        "centroid_x": cx,
        "major": 4.0 * np.sqrt(large),
        "minor": 4.0 * np.sqrt(small),
        "eccentricity": np.where(large > 0, eccentricity, 0.0),
        "orientation": orientation,
    }


def _orientation_from_x(orientation: float) -> float:
    # regionprops measures from the row (y) axis; from the x axis it is 90 degrees less, which with y
    # pointing down is counter-clockwise as the photo is seen.
    degrees = math.degrees(orientation) - 90.0
    while degrees <= -90.0:
        degrees += 180.0
    while degrees > 90.0:
        degrees -= 180.0
    return degrees


def _check_options(mm_per_pixel: Any, min_area: Any, merge_distance: Any) -> tuple[float | None, int, float]:
    scale = None if mm_per_pixel is None else check_float("mm_per_pixel", mm_per_pixel, 0.0, None, False)
    return (
        scale,
        check_int("min_area", min_area, minimum=0),
        check_float("merge_distance", merge_distance, 0.0),
    )


def _plant_groups(
    mask: np.ndarray,
    label_image: bool,
    grid: tuple[int, int] | str | None,
    merge_distance: float,
    min_area: int,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """(plant groups before speck removal, connected components, grid): how pixels become plants."""
    fg = mask > 0
    components = label_components(fg, connectivity=2).astype(np.int32)
    if label_image:
        if np.issubdtype(mask.dtype, np.floating) or (mask < 0).any():
            raise ValueError("Invalid value for argument `mask`: a label image holds non-negative integers.")
        # Labels may be any integers (a labelling tool's ids): renumbered 1..n in order, so that tables
        # indexed by label stay small.
        values, inverse = np.unique(mask, return_inverse=True)
        base = inverse.reshape(mask.shape).astype(np.int32) + (0 if values[0] == 0 else 1)
    else:
        base = _group_by_distance(fg, components, merge_distance)
    if grid == "auto":
        kept, _, _ = _drop_specks(base, min_area)
        centroids = np.array([r.centroid for r in regionprops(kept)]).reshape(-1, 2)
        grid = auto_grid(centroids, *mask.shape)
    if grid is None:
        return base, components, None
    check_grid_fits(grid, *mask.shape)
    cells = _cell_index(*mask.shape, grid)
    # A label image's plants are kept whole; a binary mask's regions go to their cells.
    source = base if label_image else components
    return _group_by_cell(source.astype(np.int32), cells, grid[0] * grid[1]), components, grid


def measure_plants(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    grid: tuple[int, int] | str | None = None,
    mm_per_pixel: float | None = None,
    min_area: int = MIN_AREA,
    merge_distance: float = MERGE_DISTANCE,
    label_image: bool = False,
) -> Measurement:
    """Measure every plant of one photo: the records of :func:`plants`, the plant labels and the specks.

    Args:
        image: (H, W, 3) RGB (or grey (H, W) / (H, W, 1); RGBA drops alpha), uint8, uint16 or float in [0, 1].
        mask: (H, W) plant mask, non-zero = plant (0/1, 0/255, bool or float); with ``label_image=True``,
            non-negative integers, each value one plant (0 = background), as a labelling tool writes them.
        grid: None (plants found anywhere, named P1, P2, ... in reading order of their centres), (rows, cols)
            or 'RxC' (equal cells over the photo, plants named by their cell: A1, A2, ... row-major, every cell
            reported, empty ones with area 0), or 'auto' (rows and cols found from the plants' positions).
        mm_per_pixel: Side of one pixel in millimetres (> 0): adds the _mm and _mm2 columns. None: pixels only.
        min_area: Plants smaller than this many pixels are specks: dropped and counted (0 keeps all).
        merge_distance: Without a grid, fragments at most this many pixels apart are one plant (0: every
            connected region is a plant). With a grid, the fragments in one cell are its plant.
        label_image: ``mask`` is a label image: its labels are the plants (no merging).

    Returns:
        A :class:`Measurement`.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: the mask's size differs from the image's, a grid does not fit the photo (cells under
            4 pixels) or 'auto' finds none, or an option is out of range (each message names it).
    """
    scale, min_area, merge_distance = _check_options(mm_per_pixel, min_area, merge_distance)
    grid = parse_grid(grid)
    if not isinstance(label_image, bool):
        raise TypeError(
            f"Invalid value for argument `label_image`: expected a bool, received {label_image!r}."
        )
    rgb, mask = _check_inputs(image, mask)
    groups, components, grid = _plant_groups(mask, label_image, grid, merge_distance, min_area)
    labels, specks, speck_pixels = _drop_specks(groups, min_area)
    regions = regionprops(labels)
    colour = _colour_stats(rgb, labels, len(regions))
    fg = labels > 0
    # Fragments per plant: distinct (plant, connected region) pairs, as one int64 key per pixel.
    pairs = np.unique(labels[fg].astype(np.int64) * (int(components.max()) + 1) + components[fg])
    fragments = np.bincount(pairs // (int(components.max()) + 1), minlength=len(regions) + 1)
    rows, cols = np.nonzero(labels)
    which = labels[rows, cols]
    shape = _ellipse_figures(rows, cols, which, len(regions))
    shape["convex_area"] = _convex_areas(rows, cols, which, len(regions))
    records = [_record(r, colour, shape, int(fragments[r.label]), scale) for r in regions]
    plants_list, order = _named(records, regions, groups, grid, scale)
    return Measurement(plants_list, order[labels], specks, speck_pixels, grid)


def _named(
    records: list[dict[str, Any]],
    regions: list[Any],
    groups: np.ndarray,
    grid: tuple[int, int] | None,
    scale: float | None,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """(records named and ordered, new label of each region label): P1.. in reading order, or one record per
    grid cell, row-major, with empty records for empty cells. A new label is the record's position plus 1."""
    new_label = np.zeros(len(regions) + 1, dtype=np.int32)
    if grid is None:
        order = sorted(
            range(len(records)), key=lambda i: (records[i]["centroid_y"], records[i]["centroid_x"])
        )
        for number, i in enumerate(order, start=1):
            records[i]["plant"] = f"P{number}"
            new_label[i + 1] = number
        return [records[i] for i in order], new_label
    rows, cols = grid
    cells: list[dict[str, Any] | None] = [None] * (rows * cols)
    for i, region in enumerate(regions):
        # Grid groups are labelled cell index + 1, and _drop_specks keeps their order.
        index = int(groups[tuple(region.coords[0])]) - 1
        cells[index] = records[i]
        new_label[i + 1] = index + 1
    for index, record in enumerate(cells):
        if record is None:
            record = cells[index] = dict.fromkeys(PLANT_COLUMNS)
            record.update(area_px=0, fragments=0, mm_per_pixel=scale, area_mm2=None if scale is None else 0.0)
        row, col = divmod(index, cols)
        record.update(plant=cell_id(row, col), row=row + 1, col=col + 1)
    return cells, new_label


def plants(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    grid: tuple[int, int] | str | None = None,
    mm_per_pixel: float | None = None,
    min_area: int = MIN_AREA,
    merge_distance: float = MERGE_DISTANCE,
    label_image: bool = False,
) -> list[dict[str, Any]]:
    """One record per plant of one photo: id, position, size, shape and colour.

    Each record is a dict with the keys :data:`PLANT_COLUMNS` (see docs/measure.md): ``plant`` (the id: P1,
    P2, ... or, with a grid, the cell A1, A2, ...), ``row``/``col`` (1-based, with a grid), ``fragments``
    (connected regions merged into the plant), centroid and bounding box (pixels, x to the right, y down),
    ``area_px``, ``perimeter_px``, ``convex_area_px``, ``solidity``, ellipse axes, ``eccentricity``,
    ``orientation_deg``, colour means over the plant's pixels (``mean_r/g/b`` on 0..255, circular mean
    ``hue_deg``, ``mean_exg``), and with ``mm_per_pixel`` the same lengths in mm and areas in mm².
    Shape figures are scikit-image's ``regionprops`` of the plant's pixels (all its fragments together).

    Args:
        image: The photo, see :func:`measure_plants`.
        mask: Its plant mask (or a label image with ``label_image=True``), the photo's size.
        grid: None, (rows, cols), 'RxC' or 'auto'.
        mm_per_pixel: Millimetres per pixel, or None for pixels only.
        min_area: Smaller plants (pixels) are dropped as specks (:func:`measure_plants` counts them).
        merge_distance: Fragments at most this many pixels apart are one plant (without a grid).
        label_image: ``mask`` holds one label per plant.

    Returns:
        list of dicts, in reading order (no grid) or row-major cell order (grid, one per cell).

    Raises:
        TypeError, ValueError: as :func:`measure_plants`.
    """
    return measure_plants(
        image,
        mask,
        grid=grid,
        mm_per_pixel=mm_per_pixel,
        min_area=min_area,
        merge_distance=merge_distance,
        label_image=label_image,
    ).plants


# ============================================================================ output
def csv_value(value: Any) -> str:
    """A record's value as written in the CSV: None empty, floats rounded to 4 decimals."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 4))
    return str(value)


def write_plants_csv(
    path: str | os.PathLike, records: Sequence[dict[str, Any]], file: str | os.PathLike | None = None
) -> Path:
    """Write plant records (from :func:`plants`) as CSV, one row per plant, columns :data:`PLANT_COLUMNS`.

    Records that carry a ``file`` key (or all records, when ``file`` is given) get a first column ``file``.
    Missing figures (an empty pot's shape, the mm columns without a scale) are empty cells; floats are
    rounded to 4 decimals. The file is written to a temporary name and renamed, so it is never half-written.

    Args:
        path: the CSV to write (its folder is created).
        records: plant records.
        file: the photo the records come from, written in the ``file`` column.

    Returns:
        The path written.
    """
    from deepplantphenomics.report import replace_file

    rows = [dict(r, file=str(file)) if file is not None else r for r in records]
    columns = (("file",) if any("file" in r for r in rows) else ()) + PLANT_COLUMNS
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_value(r.get(c)) for c in columns] for r in rows)
    return replace_file(path, text.getvalue().encode("utf-8"))


_PALETTE = (
    (255, 0, 255),
    (255, 220, 0),
    (0, 200, 255),
    (255, 80, 0),
    (120, 80, 255),
    (0, 255, 120),
    (255, 255, 255),
)


def draw_plants(image: np.ndarray, measurement: Measurement) -> np.ndarray:
    """The photo with each plant outlined in its own colour and labelled with its id (and the grid, if any).

    Args:
        image: the photo measured, (H, W, C) or (H, W), any bit depth.
        measurement: what :func:`measure_plants` returned for it.

    Returns:
        uint8 (H, W, 3) RGB.
    """
    from PIL import Image, ImageDraw, ImageFont
    from skimage.segmentation import find_boundaries

    rgb = to_uint8_rgb(image)
    labels = measurement.labels
    height, width = labels.shape
    edge = find_boundaries(labels, mode="inner") & (labels > 0)
    if min(height, width) >= 600:
        # Two pixels wide on large photos, so that outlines stay visible when the overlay is viewed shrunk.
        edge = ndimage.binary_dilation(edge) & (labels > 0)
    colours = np.array(_PALETTE, dtype=np.uint8)
    rgb[edge] = colours[(labels[edge] - 1) % len(_PALETTE)]
    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    if measurement.grid is not None:
        rows, cols = measurement.grid
        for r in range(1, rows):
            y = round(r * height / rows)
            draw.line([(0, y), (width - 1, y)], fill=(200, 200, 200), width=1)
        for c in range(1, cols):
            x = round(c * width / cols)
            draw.line([(x, 0), (x, height - 1)], fill=(200, 200, 200), width=1)
    size = max(10, min(height, width) // 40)
    if measurement.grid is not None:
        size = max(10, min(size, height // (3 * measurement.grid[0])))
    font = ImageFont.load_default(size=size)
    for k, record in enumerate(measurement.plants, start=1):
        if not record["area_px"]:
            continue
        colour = tuple(int(c) for c in colours[(k - 1) % len(_PALETTE)])
        # Above the plant, so the label does not hide it; at the top edge it overlaps the plant's top instead
        # of going below it (where it would sit in the next pot).
        y = max(record["bbox_y"] - 2, size)
        draw.text(
            (record["centroid_x"], y),
            record["plant"],
            fill=colour,
            font=font,
            anchor="md",
            stroke_width=2,
            stroke_fill=(0, 0, 0),
        )
    return np.asarray(picture)
