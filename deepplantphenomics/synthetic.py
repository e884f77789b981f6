"""Procedural top-down photos of seedlings on soil, with exact plant masks.

The demo and the end-to-end tests need a dataset that anyone can make in seconds, without downloads: these
images look like a camera looking straight down at a seed tray or a field plot. A small network (three
convolutional layers) learns them to Dice >= 0.9 in minutes on a CPU, yet they are not trivial: the soil is
textured at several scales and holds stones and dry leaf litter (background), plants are rosettes or seedlings
of shaded leaves that overlap, light and shadow vary.

Only numpy is used to draw (Pillow only writes the files), and every shape is drawn inside its own bounding
box, so one 256x256 image takes a few milliseconds.

Example:
    >>> from deepplantphenomics.synthetic import write_synthetic_dataset
    >>> images_dir, masks_dir = write_synthetic_dataset("demo_data", n_images=40, seed=0)
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np

from deepplantphenomics.settings import check_choice, check_int

__all__ = [
    "LAB_SCENES",
    "generate_lab_image",
    "generate_plant_image",
    "generate_tray_image",
    "load_cutouts",
    "write_lab_dataset",
    "write_synthetic_dataset",
    "write_tray_series",
]

# Below this size a plant is a handful of pixels and the images stop looking like plants.
_MIN_SIDE = 16

# Plant colours are kept clearly green (red well below green) and soil, stones and litter clearly not
# green (red at or above green), so that colour separates the classes for every pixel, whatever the light:
# that is what makes the task learnable by a very small network.
_MAX_RED_OVER_GREEN_PLANT = 0.78


# --------------------------------------------------------------------------------------------- helpers
def _as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise TypeError(
            "Invalid value for argument `rng`: expected a numpy.random.Generator, a non-negative int seed "
            f"or None, received {rng!r}."
        )
    if rng < 0:
        raise ValueError(
            f"Invalid value for argument `rng`: expected a non-negative int seed, received {int(rng)!r}."
        )
    return np.random.default_rng(int(rng))


def _value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random field in [-1, 1] whose blobs are about `cell` pixels across.

    Random values on a lattice with spacing `cell`, interpolated with a smoothstep so that no lattice grid
    shows. float32 (height, width).
    """
    if cell <= 1.0:
        return rng.random((height, width), dtype=np.float32) * 2.0 - 1.0
    grid_h = int(math.ceil(height / cell)) + 2
    grid_w = int(math.ceil(width / cell)) + 2
    grid = rng.random((grid_h, grid_w), dtype=np.float32) * 2.0 - 1.0
    y = np.arange(height, dtype=np.float32) / cell + np.float32(rng.uniform(0.0, 1.0))
    x = np.arange(width, dtype=np.float32) / cell + np.float32(rng.uniform(0.0, 1.0))
    y0 = y.astype(np.int64)
    x0 = x.astype(np.int64)
    ty = y - y0
    tx = x - x0
    ty = (ty * ty * (3.0 - 2.0 * ty))[:, None]
    tx = (tx * tx * (3.0 - 2.0 * tx))[None, :]
    # Separable: interpolate the small lattice along x first, then the rows along y.
    rows = grid[:, x0] * (1.0 - tx) + grid[:, x0 + 1] * tx
    return rows[y0] * (1.0 - ty) + rows[y0 + 1] * ty


def _box_blur(field: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated; summed-area table, so the cost does not grow with r."""
    if radius < 1:
        return field.astype(np.float32)
    k = 2 * radius + 1
    padded = np.pad(field.astype(np.float64), radius, mode="edge")
    table = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1))
    table[1:, 1:] = padded.cumsum(axis=0).cumsum(axis=1)
    total = table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]
    return (total / (k * k)).astype(np.float32)


def _bbox(
    xs: list[float], ys: list[float], margin: float, height: int, width: int
) -> tuple[int, int, int, int] | None:
    """Integer pixel window (y0, y1, x0, x1) around the points, clipped to the image; None when outside."""
    y0 = max(int(math.floor(min(ys) - margin)), 0)
    y1 = min(int(math.ceil(max(ys) + margin)) + 1, height)
    x0 = max(int(math.floor(min(xs) - margin)), 0)
    x1 = min(int(math.ceil(max(xs) + margin)) + 1, width)
    if y0 >= y1 or x0 >= x1:
        return None
    return y0, y1, x0, x1


def _draw_leaf(
    canvas: np.ndarray,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    *,
    cx: float,
    cy: float,
    angle: float,
    start: float,
    length: float,
    width: float,
    colour: np.ndarray,
    p: float,
    q: float,
    vein_colour: np.ndarray | None,
    edge_dark: float,
    bend: float = 0.0,
    texture: float = 0.04,
) -> None:
    """Paint one leaf (or petiole, twig, dry leaf) into `canvas` (H, W, 3) float32, and into `mask` if given.

    The leaf lies along `angle` from `start` to `start + length` pixels away from (cx, cy). Its half-width at
    relative position s in [0, 1] follows s^p (1-s)^q scaled so the widest point is `width`: p < q gives an
    egg shape, p > q a spatula (widest near the tip), p = q = 0 a strip of constant width. Pixels are shaded
    darker towards the edges (a curved blade), one half lit more than the other (folded along the mid-vein),
    and a lighter (or darker) mid-vein runs along the axis.
    """
    height, width_px = canvas.shape[:2]
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    base_x, base_y = cx + start * cos_a, cy + start * sin_a
    tip_x, tip_y = cx + (start + length) * cos_a, cy + (start + length) * sin_a
    margin = width + abs(bend) * length + 2.0
    box = _bbox([base_x, tip_x], [base_y, tip_y], margin, height, width_px)
    if box is None:
        return
    y0, y1, x0, x1 = box
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    # Only pixels within the leaf's length are shaded, as flat lists: a leaf fills a fraction of its box.
    s = (xs * cos_a + ys * sin_a - start) * np.float32(1.0 / length)
    rows, cols = np.nonzero((s >= 0.0) & (s <= 1.0))
    s = s[rows, cols]
    v = -xs[0, cols] * sin_a + ys[rows, 0] * cos_a - bend * length * s * s
    if p == 0.0 and q == 0.0:
        half = np.full_like(s, width)
    else:
        s_star = p / (p + q)
        norm = (s_star**p) * ((1.0 - s_star) ** q)
        half = (width / norm) * (s**p) * ((1.0 - s) ** q)
    keep = np.abs(v) <= half
    if not keep.any():
        return
    rows, cols, s, v, half = rows[keep], cols[keep], s[keep], v[keep], half[keep]
    rel = v / np.maximum(half, 1e-3)  # -1 .. 1 across the blade
    shade = 1.0 - edge_dark * rel * rel + 0.08 * rel + 0.06 * (0.5 - s)
    if texture > 0.0:
        shade += np.float32(texture) * rng.standard_normal(shade.size, dtype=np.float32)
    pixels = shade[:, None] * colour.astype(np.float32)[None, :]
    if vein_colour is not None:
        vein = (np.abs(v) <= max(0.6, 0.07 * width)) & (s < 0.88)
        pixels[vein] = shade[vein][:, None] * vein_colour
    rows += y0
    cols += x0
    canvas[rows, cols] = pixels
    if mask is not None:
        mask[rows, cols] = True


# ------------------------------------------------------------------------------------------ background
def _draw_strip(
    canvas: np.ndarray,
    rng: np.random.Generator,
    place: tuple[float, float, float, float],
    size: tuple[float, float],
    colour: np.ndarray,
    edge_dark: float,
    bend: float = 0.0,
    texture: float = 0.04,
) -> None:
    """Paint a strip of constant width and no vein (straw, a twig, a plant label, tape) into ``canvas`` only:
    :func:`_draw_leaf` with ``place`` = (cx, cy, angle, start) and ``size`` = (length, width)."""
    cx, cy, angle, start = place
    length, width = size
    _draw_leaf(
        canvas, None, rng, cx=cx, cy=cy, angle=angle, start=start, length=length, width=width, colour=colour,
        p=0.0, q=0.0, vein_colour=None, edge_dark=edge_dark, bend=bend, texture=texture,
    )  # fmt: skip


def _shadow_of(
    rng: np.random.Generator, drawn: np.ndarray, reach: tuple[float, float], scale: float
) -> np.ndarray:
    """Where ``drawn``'s shadow falls: the (H, W) bool mask shifted ``reach`` (low, high) * ``scale`` pixels
    in a random direction, as float32 0/1 (callers blur it)."""
    height, width = drawn.shape
    angle = rng.uniform(0, 2 * math.pi)
    offset = max(1, round(rng.uniform(*reach) * scale))
    dy, dx = round(offset * math.sin(angle)), round(offset * math.cos(angle))
    shifted = np.zeros((height, width), dtype=np.float32)
    shifted[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = drawn[
        max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return shifted


def _soil(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Soil texture, float32 (H, W, 3) in 0..255-ish: two tones mixed coarsely, brightness noise at 4 scales."""
    kind = rng.random()
    if kind < 0.6:  # brown soil, from sandy to dark humus
        red = rng.uniform(85.0, 160.0)
        tone = np.array([red, red * rng.uniform(0.72, 0.86), red * rng.uniform(0.48, 0.66)], np.float32)
    elif kind < 0.85:  # grey, potting mix or clay; a touch warm so that noise does not tip it to green
        grey = rng.uniform(80.0, 150.0)
        green = rng.uniform(0.9, 0.97)
        tone = np.array([grey, grey * green, grey * green * rng.uniform(0.88, 1.0)], np.float32)
    else:  # reddish loam
        red = rng.uniform(110.0, 170.0)
        tone = np.array([red, red * rng.uniform(0.62, 0.74), red * rng.uniform(0.45, 0.58)], np.float32)
    # A wetter, darker patch tone; it keeps red >= green so that soil never turns green.
    dark = (
        tone
        * np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.9, 1.0)], np.float32)
        * np.float32(rng.uniform(0.6, 0.85))
    )
    mix = np.clip(0.5 + 0.7 * _value_noise(rng, height, width, 70.0 * scale), 0.0, 1.0)[..., None]
    soil = mix * (dark - tone)
    soil += tone
    brightness = np.float32(1.0)
    for cell, low, high in ((24.0 * scale, 0.05, 0.12), (6.0 * scale, 0.05, 0.12), (2.0 * scale, 0.04, 0.1)):
        brightness = brightness + np.float32(rng.uniform(low, high)) * _value_noise(rng, height, width, cell)
    brightness += np.float32(rng.uniform(0.03, 0.08)) * _value_noise(rng, height, width, 1.0)
    # Crumbs: dark gaps between clods and light grains.
    crumbs = _value_noise(rng, height, width, 3.0 * scale)
    brightness[crumbs > 0.55] *= 0.72
    brightness[crumbs < -0.75] *= 1.18
    soil *= brightness[..., None]
    return soil


def _ellipse_r2(
    dx: np.ndarray, dy: np.ndarray, cos_t: float, sin_t: float, ra: float, rb: float
) -> np.ndarray:
    """Squared elliptic radius of offsets (dx, dy): <= 1 inside the ellipse with semi-axes ra, rb."""
    a = (dx * cos_t + dy * sin_t) / ra
    b = (-dx * sin_t + dy * cos_t) / rb
    return a * a + b * b


def _stones(rng: np.random.Generator, canvas: np.ndarray, scale: float) -> None:
    """Pebbles: grey-beige ellipses lit from the upper left, each with a small shadow to the lower right."""
    height, width = canvas.shape[:2]
    area_factor = height * width / 65536.0
    n_stones = int(rng.integers(0, 30) * area_factor * rng.uniform(0.5, 1.0))
    for _ in range(n_stones):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        ra = rng.uniform(1.5, 7.0) * scale
        rb = ra * rng.uniform(0.55, 1.0)
        theta = rng.uniform(0, math.pi)
        value = rng.uniform(95.0, 215.0)
        colour = value * np.array([1.0, rng.uniform(0.9, 0.99), rng.uniform(0.78, 0.95)], dtype=np.float32)
        box = _bbox([cx], [cy], ra + 3.0, height, width)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
        axes = (math.cos(theta), math.sin(theta), ra, rb)
        window = canvas[y0:y1, x0:x1]
        offset = 0.35 * ra
        shadow = _ellipse_r2(xs - offset, ys - offset, *axes) <= 1.0
        window[shadow] *= 0.72
        d2 = _ellipse_r2(xs, ys, *axes)
        inside = d2 <= 1.0
        light = 1.0 - 0.22 * (xs + ys) / (ra * 1.41) - 0.25 * d2
        pixels = light[..., None] * colour[None, None, :]
        window[inside] = pixels[inside]


def _litter(rng: np.random.Generator, canvas: np.ndarray, scale: float) -> None:
    """Dry, brown leaves and bits of straw lying on the soil: background that is leaf-shaped but not green."""
    height, width = canvas.shape[:2]
    area_factor = height * width / 65536.0
    n_items = int(rng.integers(0, 5) * area_factor)
    for _ in range(n_items):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        angle = rng.uniform(0, 2 * math.pi)
        if rng.random() < 0.7:  # dry leaf
            red = rng.uniform(110.0, 175.0)
            colour = np.array([red, red * rng.uniform(0.62, 0.8), red * rng.uniform(0.32, 0.5)])
            length = rng.uniform(8.0, 22.0) * scale
            _draw_leaf(
                canvas,
                None,
                rng,
                cx=cx,
                cy=cy,
                angle=angle,
                start=0.0,
                length=length,
                width=length * rng.uniform(0.18, 0.35),
                colour=colour,
                p=rng.uniform(0.6, 1.0),
                q=rng.uniform(0.5, 0.9),
                vein_colour=colour * 0.7,
                edge_dark=0.3,
                bend=rng.uniform(-0.15, 0.15),
                texture=0.06,
            )
        else:  # straw or twig
            red = rng.uniform(120.0, 200.0)
            colour = np.array([red, red * rng.uniform(0.8, 0.92), red * rng.uniform(0.45, 0.65)])
            size = (rng.uniform(10.0, 35.0) * scale, rng.uniform(0.6, 1.4) * scale)
            _draw_strip(canvas, rng, (cx, cy, angle, 0.0), size, colour, 0.25, rng.uniform(-0.05, 0.05))


# ---------------------------------------------------------------------------------------------- plants
def _plant_green(rng: np.random.Generator) -> np.ndarray:
    green = rng.uniform(85.0, 175.0)
    return np.array(
        [green * rng.uniform(0.38, 0.7), green, green * rng.uniform(0.12, 0.45)], dtype=np.float32
    )


def _leaf_colour(rng: np.random.Generator, base: np.ndarray, youth: float) -> np.ndarray:
    """Per-leaf variation of the plant's green; young leaves (youth -> 1) are lighter and more yellow."""
    colour = base * rng.uniform(0.85, 1.12)
    colour = colour * (1.0 + 0.18 * youth) + np.array([12.0, 8.0, 0.0]) * youth
    colour[0] = min(colour[0], _MAX_RED_OVER_GREEN_PLANT * colour[1])
    return np.minimum(colour, 250.0).astype(np.float32)


def _vein_colour(colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Veins are paler, yellower greens; kept green so that a vein pixel is still a plant pixel by colour.
    vein = colour * 0.7 + np.array([0.55, 0.75, 0.35], dtype=np.float32) * 255.0 * 0.3
    vein *= rng.uniform(0.95, 1.08)
    vein[0] = min(vein[0], _MAX_RED_OVER_GREEN_PLANT * vein[1])
    return np.minimum(vein, 250.0).astype(np.float32)


def _rosette_leaves(rng: np.random.Generator, radius: float, theta0: float) -> list[dict]:
    """Rosette (Arabidopsis-like): spiral phyllotaxis, older outer leaves large and drawn first, younger
    leaves smaller and on top, spatula-shaped blades on short petioles."""
    leaves: list[dict] = []
    n_leaves = int(rng.integers(5, 13))
    golden = math.radians(137.5)
    for k in range(n_leaves):
        youth = k / max(n_leaves - 1, 1)
        reach = radius * (1.0 - 0.55 * youth) * rng.uniform(0.85, 1.08)
        petiole = reach * rng.uniform(0.12, 0.3)
        leaves.append(
            dict(
                angle=theta0 + k * golden + rng.uniform(-0.2, 0.2),
                start=petiole,
                length=reach - petiole,
                width=(reach - petiole) * rng.uniform(0.24, 0.38),
                p=rng.uniform(0.9, 1.5),
                q=rng.uniform(0.4, 0.65),
                youth=youth,
                bend=rng.uniform(-0.12, 0.12),
                petiole=petiole,
            )
        )
    return leaves


def _seedling_leaves(rng: np.random.Generator, radius: float, theta0: float) -> list[dict]:
    """Seedling: two opposite cotyledons, then up to two small true leaves across them."""
    leaves: list[dict] = []
    reach = radius * rng.uniform(0.85, 1.05)
    for side in (0.0, math.pi):
        start = reach * rng.uniform(0.05, 0.15)
        leaves.append(
            dict(
                angle=theta0 + side + rng.uniform(-0.25, 0.25),
                start=start,
                length=reach - start,
                width=(reach - start) * rng.uniform(0.28, 0.42),
                p=rng.uniform(0.5, 0.8),
                q=rng.uniform(0.5, 0.8),
                youth=0.0,
                bend=rng.uniform(-0.1, 0.1),
                petiole=start,
            )
        )
    for side in (0.0, math.pi)[: int(rng.integers(0, 3))]:
        true_reach = reach * rng.uniform(0.45, 0.7)
        leaves.append(
            dict(
                angle=theta0 + math.pi / 2 + side + rng.uniform(-0.3, 0.3),
                start=0.0,
                length=true_reach,
                width=true_reach * rng.uniform(0.25, 0.35),
                p=rng.uniform(0.8, 1.2),
                q=rng.uniform(0.5, 0.8),
                youth=1.0,
                bend=rng.uniform(-0.1, 0.1),
                petiole=0.0,
            )
        )
    return leaves


def _weed_leaves(rng: np.random.Generator, radius: float, theta0: float) -> list[dict]:
    """Weed-like star of 3-6 narrow, pointed leaves spread evenly."""
    leaves: list[dict] = []
    n_leaves = int(rng.integers(3, 7))
    for k in range(n_leaves):
        reach = radius * rng.uniform(0.7, 1.05)
        leaves.append(
            dict(
                angle=theta0 + 2 * math.pi * k / n_leaves + rng.uniform(-0.3, 0.3),
                start=0.0,
                length=reach,
                width=reach * rng.uniform(0.12, 0.22),
                p=rng.uniform(0.6, 0.9),
                q=rng.uniform(0.7, 1.0),
                youth=rng.uniform(0.0, 0.5),
                bend=rng.uniform(-0.2, 0.2),
                petiole=0.0,
            )
        )
    return leaves


def _paint_plant_leaf(
    rng: np.random.Generator,
    canvas: np.ndarray,
    mask: np.ndarray,
    centre: tuple[float, float],
    leaf: dict,
    colour: np.ndarray,
    edge_dark: float,
) -> None:
    """One leaf of a plant: its petiole (a thin vein-coloured strip from the centre) if long enough, then the
    blade with its mid-vein."""
    cx, cy = centre
    axis = {"cx": cx, "cy": cy, "angle": leaf["angle"]}
    if leaf["petiole"] > 1.0:
        petiole = {"length": leaf["petiole"] + 1.0, "width": max(0.8, 0.12 * leaf["width"])}
        stalk = _vein_colour(colour, rng)
        _draw_leaf(
            canvas,
            mask,
            rng,
            **axis,
            start=0.0,
            **petiole,
            colour=stalk,
            p=0.0,
            q=0.0,
            vein_colour=None,
            edge_dark=0.2,
        )
    blade = {key: leaf[key] for key in ("start", "length", "width", "p", "q", "bend")}
    vein = _vein_colour(colour, rng)
    _draw_leaf(canvas, mask, rng, **axis, **blade, colour=colour, vein_colour=vein, edge_dark=edge_dark)


def _draw_plant(
    rng: np.random.Generator,
    canvas: np.ndarray,
    mask: np.ndarray,
    cx: float,
    cy: float,
    radius: float,
    kind: float | None = None,
    base: np.ndarray | None = None,
) -> None:
    """One plant whose leaves reach about `radius` pixels from (cx, cy); `kind` < 0.5 forces a rosette.

    `base` is the plant's RGB colour (0..255); None draws a field green (:func:`_plant_green`).
    """
    base = _plant_green(rng) if base is None else base
    kind = rng.random() if kind is None else kind
    theta0 = rng.uniform(0, 2 * math.pi)
    edge_dark = rng.uniform(0.15, 0.35)
    if kind < 0.5:
        leaves = _rosette_leaves(rng, radius, theta0)
    elif kind < 0.8:
        leaves = _seedling_leaves(rng, radius, theta0)
    else:
        leaves = _weed_leaves(rng, radius, theta0)
    for leaf in leaves:
        # The colour is drawn before the leaf is painted: the random stream's order makes the images.
        colour = _leaf_colour(rng, base, leaf["youth"])
        _paint_plant_leaf(rng, canvas, mask, (cx, cy), leaf, colour, edge_dark)


def _plant_layout(rng: np.random.Generator, height: int, width: int) -> list[tuple[float, float, float]]:
    """Centres and radii of 1-6 plants, sized so that plants cover roughly 3-40 % of the image."""
    n_plants = int(rng.integers(1, 7))
    coverage = math.exp(rng.uniform(math.log(0.08), math.log(0.4)))
    # Measured: a plant of radius r covers about 1.1 r^2 pixels on average over the three plant kinds.
    mean_radius = math.sqrt(coverage * height * width / (n_plants * 1.1))
    side = min(height, width)
    layout: list[tuple[float, float, float]] = []
    for _ in range(n_plants):
        radius = float(np.clip(mean_radius * rng.uniform(0.75, 1.25), 0.06 * side, 0.45 * side))
        # Plants may be cut by the image border, as in any photo of a tray; a few tries keep them from
        # piling up on one spot.
        best = None
        for _attempt in range(8):
            cx = rng.uniform(0.08 * width, 0.92 * width)
            cy = rng.uniform(0.08 * height, 0.92 * height)
            gap = min((math.hypot(cx - x, cy - y) - r for x, y, r in layout), default=math.inf)
            if best is None or gap > best[0]:
                best = (gap, cx, cy)
            if gap > 0.6 * radius:
                break
        layout.append((best[1], best[2], radius))
    return layout


# ------------------------------------------------------------------------------------------ public API
def generate_plant_image(
    height: int = 256, width: int = 256, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one top-down photo of 1-6 seedlings on soil, with its exact plant mask.

    Args:
        height: Image height in pixels, at least 16.
        width: Image width in pixels, at least 16.
        rng: A ``numpy.random.Generator`` (advanced by the call), an int seed (same seed, same image) or None
            (fresh randomness).

    Returns:
        ``(image, mask)``: ``image`` uint8 (height, width, 3) RGB; ``mask`` uint8 (height, width) with 255 on
        exactly the plant pixels and 0 elsewhere (soil, stones and dry litter are background).

    Raises:
        TypeError: ``height``/``width`` are not ints, or ``rng`` is not a Generator, an int or None.
        ValueError: ``height``/``width`` are below 16, or ``rng`` is a negative int.
    """
    height = check_int("height", height, minimum=_MIN_SIDE)
    width = check_int("width", width, minimum=_MIN_SIDE)
    gen = _as_generator(rng)
    # Sizes of stones, leaves and texture scale with the image, so a 64x64 image looks like a
    # downscaled 256x256 one rather than a close-up.
    scale = min(height, width) / 256.0

    canvas = _soil(gen, height, width, scale)
    _stones(gen, canvas, scale)
    _litter(gen, canvas, scale)

    plants = np.zeros((height, width), dtype=bool)
    for cx, cy, radius in _plant_layout(gen, height, width):
        _draw_plant(gen, canvas, plants, cx, cy, radius)

    # Leaves shade the soil beside them (light from one side): a soft, offset shadow on background only.
    contact = _box_blur(_shadow_of(gen, plants, (1.5, 4.0), scale), max(1, round(2 * scale)))
    light = np.where(plants, np.float32(1.0), 1.0 - np.float32(gen.uniform(0.2, 0.45)) * contact)

    # Occasionally a large soft shadow (a neighbour plant, the tray rim, the photographer) over everything.
    if gen.random() < 0.35:
        blob = _value_noise(gen, height, width, gen.uniform(60.0, 140.0) * scale)
        edge = gen.uniform(-0.2, 0.3)
        softness = gen.uniform(0.25, 0.6)
        shadow = np.clip((blob - np.float32(edge)) * np.float32(1.0 / softness), 0.0, 1.0)
        light *= 1.0 - np.float32(gen.uniform(0.25, 0.5)) * shadow

    # Exposure and white balance of the camera, then sensor noise. Green is never boosted over red, so
    # that grey soil stays grey rather than turning faintly green.
    gain = gen.uniform(0.72, 1.22) * np.array([1.0, gen.uniform(0.95, 1.0), gen.uniform(0.9, 1.03)])
    canvas *= light[..., None] * gain.astype(np.float32)[None, None, :]
    noise = gen.standard_normal(canvas.shape, dtype=np.float32)
    noise *= np.float32(gen.uniform(1.0, 4.5))
    canvas += noise
    np.rint(canvas, out=canvas)
    np.clip(canvas, 0, 255, out=canvas)
    image = canvas.astype(np.uint8)
    mask = np.where(plants, np.uint8(255), np.uint8(0))
    return image, mask


def write_synthetic_dataset(
    directory: str | os.PathLike,
    n_images: int,
    height: int = 256,
    width: int = 256,
    seed: int = 0,
    prefix: str = "plant",
) -> tuple[Path, Path]:
    """Write a synthetic segmentation dataset in the layout the data loader reads.

    Image ``i`` is ``directory/images/{prefix}_{i:04d}.png`` (RGB) and its mask
    ``directory/masks/{prefix}_{i:04d}.png`` (8-bit grey, 0 = background, 255 = plant). Image ``i`` depends only
    on ``seed`` and ``i``, so the same seed writes byte-identical files, and a larger ``n_images`` only adds
    images. Existing files with the same names are overwritten.

    Args:
        directory: Folder to write into; created (with parents) if missing.
        n_images: Number of image/mask pairs, at least 1.
        height: Image height in pixels, at least 16.
        width: Image width in pixels, at least 16.
        seed: Non-negative int seed.
        prefix: File name prefix: non-empty, no path separators.

    Returns:
        ``(images_dir, masks_dir)`` as ``pathlib.Path``.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range, or ``directory`` exists and is not a folder.
    """
    from PIL import Image

    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            f"Invalid value for argument `directory`: expected a str or path-like, received {directory!r}."
        )
    n_images = check_int("n_images", n_images, minimum=1)
    height = check_int("height", height, minimum=_MIN_SIDE)
    width = check_int("width", width, minimum=_MIN_SIDE)
    seed = check_int("seed", seed, minimum=0)
    if not isinstance(prefix, str):
        raise TypeError(f"Invalid value for argument `prefix`: expected a str, received {prefix!r}.")
    if not prefix or any(sep in prefix for sep in ("/", "\\", os.sep)) or prefix in (".", ".."):
        raise ValueError(
            "Invalid value for argument `prefix`: expected a non-empty file name prefix without path "
            f"separators, received {prefix!r}."
        )
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ValueError(
            f"Invalid value for argument `directory`: expected a folder, received {str(root)!r}, which is a file."
        )
    images_dir = root / "images"
    masks_dir = root / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        image, mask = generate_plant_image(height, width, np.random.default_rng([seed, i]))
        name = f"{prefix}_{i:04d}.png"
        Image.fromarray(image).save(images_dir / name, format="PNG")
        Image.fromarray(mask).save(masks_dir / name, format="PNG")
    return images_dir, masks_dir


# ------------------------------------------------------------------------------------------------ trays
# Fraction of a pot's side: the tray's plastic rim between pots, and the largest radius a plant grows to.
_RIM = 0.07
_MAX_REACH = 0.47


def _tray_plants(
    rows: int, cols: int, cell: int, seed: int
) -> list[tuple[float, float, float, float, float]]:
    """Per pot: centre (x, y), radius on day 0, growth rate per day and a draw seed; fixed for the series."""
    rng = np.random.default_rng([seed, 7919])
    plants = []
    for r in range(rows):
        for c in range(cols):
            cx = (c + 0.5 + rng.uniform(-0.06, 0.06)) * cell
            cy = (r + 0.5 + rng.uniform(-0.06, 0.06)) * cell
            plants.append(
                (cx, cy, cell * rng.uniform(0.1, 0.16), rng.uniform(0.3, 0.55), int(rng.integers(1 << 31)))
            )
    return plants


def _tray_radius(radius0: float, rate: float, day: float, cell: int) -> float:
    """Logistic growth of a plant's reach: radius0 on day 0, levelling off at _MAX_REACH of the pot."""
    top = _MAX_REACH * cell
    return top / (1.0 + (top / radius0 - 1.0) * math.exp(-rate * day))


def generate_tray_image(
    rows: int = 4,
    cols: int = 6,
    day: float = 0.0,
    *,
    cell: int = 64,
    seed: int = 0,
    empty: tuple[str, ...] | list[str] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One top-down photo of a tray of ``rows`` x ``cols`` pots, each with a rosette that grows with ``day``.

    The same ``seed`` gives the same tray on every day: each pot keeps its plant (shape, colour, position),
    whose reach grows logistically from about 0.13 of the pot's side on day 0 to at most 0.47 (neighbours'
    leaves may then cross the rim between pots). Soil texture, exposure and sensor noise change from day to
    day, as between real photos. Thin petioles may leave a small leaf disconnected from its rosette, as in
    real masks.

    Args:
        rows: Pot rows, at least 1.
        cols: Pot columns, at least 1.
        day: Days since the first photo, >= 0 (fractions allowed).
        cell: Side of one pot in pixels, at least 16; the image is ``rows * cell`` x ``cols * cell``.
        seed: Non-negative int: the tray (plants and their growth).
        empty: Pot ids left without a plant, e.g. ``("B3",)``; ids run A1, A2, ... along the first row
            (row letter, column number), as ``deepplantphenomics.measure`` names grid cells.

    Returns:
        ``(image, mask, pots)``: ``image`` uint8 (H, W, 3) RGB; ``mask`` uint8 (H, W), 255 on plant pixels,
        0 elsewhere; ``pots`` int32 (H, W), on each plant pixel the 1-based row-major index of the pot whose
        plant it is (``row * cols + col + 1``), 0 elsewhere.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range, or ``empty`` names a pot outside the tray.
    """
    from deepplantphenomics.measure import parse_cell_id

    rows = check_int("rows", rows, minimum=1)
    cols = check_int("cols", cols, minimum=1)
    cell = check_int("cell", cell, minimum=_MIN_SIDE)
    seed = check_int("seed", seed, minimum=0)
    if isinstance(day, bool) or not isinstance(day, numbers.Real) or not math.isfinite(day) or day < 0:
        raise ValueError(f"Invalid value for argument `day`: expected a number >= 0, received {day!r}.")
    if isinstance(empty, str):
        empty = (empty,)
    skip = {parse_cell_id(name, (rows, cols), "empty") for name in empty}
    height, width = rows * cell, cols * cell
    # The soil and the tray are the same on every day; exposure and sensor noise are not.
    tray = np.random.default_rng([seed, 1])
    gen = np.random.default_rng([seed, 2, int(round(float(day) * 1000))])
    canvas = _soil(tray, height, width, cell / 128.0)
    # The tray's plastic between pots: dark grey, drawn before the plants so that leaves lie over it.
    rim = max(1, round(_RIM * cell / 2))
    plastic = np.float32(tray.uniform(35.0, 60.0))
    for k in range(rows + 1):
        canvas[max(k * cell - rim, 0) : k * cell + rim] = plastic
    for k in range(cols + 1):
        canvas[:, max(k * cell - rim, 0) : k * cell + rim] = plastic
    pots = np.zeros((height, width), dtype=np.int32)
    for index, (cx, cy, radius0, rate, plant_seed) in enumerate(_tray_plants(rows, cols, cell, seed)):
        if divmod(index, cols) in skip:
            continue
        plant = np.zeros((height, width), dtype=bool)
        radius = _tray_radius(radius0, rate, float(day), cell)
        _draw_plant(np.random.default_rng(plant_seed), canvas, plant, cx, cy, radius, kind=0.0)
        pots[plant] = index + 1
    gain = gen.uniform(0.85, 1.15) * np.array([1.0, gen.uniform(0.96, 1.0), gen.uniform(0.92, 1.02)])
    canvas *= gain.astype(np.float32)[None, None, :]
    canvas += gen.standard_normal(canvas.shape, dtype=np.float32) * np.float32(gen.uniform(1.0, 3.0))
    np.clip(np.rint(canvas), 0, 255, out=canvas)
    mask = np.where(pots > 0, np.uint8(255), np.uint8(0))
    return canvas.astype(np.uint8), mask, pots


def write_tray_series(
    directory: str | os.PathLike,
    days: int = 3,
    rows: int = 4,
    cols: int = 6,
    *,
    cell: int = 64,
    seed: int = 0,
    empty: tuple[str, ...] | list[str] = (),
    prefix: str = "tray",
) -> tuple[Path, Path]:
    """Write daily photos of one tray (:func:`generate_tray_image`) with their plant masks.

    Day ``d`` (0 .. days-1) is ``directory/images/{prefix}_day{d:02d}.png`` and its mask (0/255)
    ``directory/masks/{prefix}_day{d:02d}.png``, so ``dpp growth --time-from-name 'day(\\d+)'`` reads the day
    back from the name.

    Args:
        directory: Folder to write into; created if missing.
        days: Number of daily photos, at least 1.
        rows: Pot rows.
        cols: Pot columns.
        cell: Side of one pot in pixels.
        seed: The tray.
        empty: Pot ids left without a plant, e.g. ``("B3",)``.
        prefix: File name prefix.

    Returns:
        ``(images_dir, masks_dir)``.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range.
    """
    from PIL import Image

    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            f"Invalid value for argument `directory`: expected a str or path-like, received {directory!r}."
        )
    days = check_int("days", days, minimum=1)
    if not isinstance(prefix, str) or not prefix or any(sep in prefix for sep in ("/", "\\", os.sep)):
        raise ValueError(
            f"Invalid value for argument `prefix`: expected a file name prefix, received {prefix!r}."
        )
    images_dir = Path(directory) / "images"
    masks_dir = Path(directory) / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    for d in range(days):
        image, mask, _ = generate_tray_image(rows, cols, d, cell=cell, seed=seed, empty=empty)
        name = f"{prefix}_day{d:02d}.png"
        Image.fromarray(image).save(images_dir / name, format="PNG")
        Image.fromarray(mask).save(masks_dir / name, format="PNG")
    return images_dir, masks_dir


# ------------------------------------------------------------------------------------------ lab scenes
# Top-down photos as taken in growth chambers and greenhouses (issue 15): rosettes in round or square pots on
# a tray, seedlings on white paper beside a tray edge, plants on dark cloth, and the same settings with no
# plant at all (some with green objects that are not plants: green pots, labels, tape). The plants are darker,
# bluer or more yellow than field greens, cast soft shadows and have blended edges, so that the network cannot
# learn "bright green on soil" or a one-pixel paste halo.
LAB_SCENES = ("pots", "paper", "cloth", "empty")

# Colours (0..255 RGB) of lab materials.
_TRAY_COLOURS = ((34, 34, 36), (205, 112, 45), (72, 86, 102), (214, 214, 208), (58, 118, 72))
_POT_COLOURS = ((28, 28, 30), (172, 92, 60), (42, 112, 62), (120, 120, 118))
_LABEL_COLOURS = ((235, 235, 228), (230, 205, 60), (60, 160, 80), (70, 120, 200))
_CLOTH_COLOURS = ((22, 22, 24), (20, 24, 48), (40, 38, 36), (48, 28, 30))
# Indices into _TRAY_COLOURS / _POT_COLOURS / _LABEL_COLOURS of green materials (hard negatives).
_GREEN_TRAY, _GREEN_POT, _GREEN_LABEL = 4, 2, 2


def _lab_green(rng: np.random.Generator) -> np.ndarray:
    """A plant colour as seen under lab lights: dark, bluish or yellow-green more often than field green."""
    kind = rng.random()
    if kind < 0.3:  # dark green (Arabidopsis, shaded leaves)
        green = rng.uniform(55.0, 110.0)
        ratios = (rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.65))
    elif kind < 0.55:  # bluish green (glaucous leaves, cool white LEDs)
        green = rng.uniform(70.0, 135.0)
        ratios = (rng.uniform(0.35, 0.6), rng.uniform(0.65, 0.9))
    elif kind < 0.75:  # yellow-green (young or nitrogen-poor leaves, warm light)
        green = rng.uniform(120.0, 195.0)
        ratios = (rng.uniform(0.6, 0.78), rng.uniform(0.1, 0.35))
    else:
        return _plant_green(rng)
    return np.array([green * ratios[0], green, green * ratios[1]], dtype=np.float32)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row and column coordinates as (H, 1) and (1, W) float32 arrays (broadcast, never materialised)."""
    return np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]


def _board(
    rng: np.random.Generator, height: int, width: int, colour, scale: float, grain: float
) -> np.ndarray:
    """A flat material (tray plastic, paper, cloth): its colour with fine grain and slow blotches."""
    tone = np.asarray(colour, np.float32) * np.float32(rng.uniform(0.9, 1.1))
    shade = 1.0 + np.float32(grain) * _value_noise(rng, height, width, max(1.0, 1.5 * scale))
    shade += np.float32(rng.uniform(0.01, 0.05)) * _value_noise(rng, height, width, 60.0 * scale)
    return shade[..., None] * tone[None, None, :]


def _lighting(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Uneven lab light: a linear gradient across the scene times a vignette, (H, W) float32 around 1."""
    ys, xs = _grid(height, width)
    ys = ys / max(height - 1, 1) * 2.0 - 1.0
    xs = xs / max(width - 1, 1) * 2.0 - 1.0
    angle = rng.uniform(0.0, 2.0 * math.pi)
    slope = np.float32(rng.uniform(0.0, 0.22))
    gradient = 1.0 + slope * (xs * np.float32(math.cos(angle)) + ys * np.float32(math.sin(angle)))
    return gradient * (1.0 - np.float32(rng.uniform(0.0, 0.3)) * (xs * xs + ys * ys) * 0.5)


def _shape_distance(
    ys: np.ndarray, xs: np.ndarray, cx: float, cy: float, radius: float, square: bool
) -> np.ndarray:
    """Distance from (cx, cy) in units of ``radius``: a circle, or a rounded square (8-norm), <= 1 inside."""
    dy, dx = np.abs(ys - np.float32(cy)), np.abs(xs - np.float32(cx))
    if square:
        return ((dx**8 + dy**8) ** 0.125) / np.float32(radius)
    return np.sqrt(dx * dx + dy * dy) / np.float32(radius)


def _draw_pot(
    rng: np.random.Generator, canvas: np.ndarray, soil: np.ndarray, cx: float, cy: float, radius: float, **kw
) -> None:
    """A pot seen from above: a rim lit from one side, soil inside with a shadow along the rim."""
    height, width = canvas.shape[:2]
    box = _bbox([cx], [cy], radius * 1.05 + 2.0, height, width)
    if box is None:
        return
    y0, y1, x0, x1 = box
    ys, xs = _grid(height, width)
    ys, xs = ys[y0:y1], xs[:, x0:x1]
    dist = _shape_distance(ys, xs, cx, cy, radius, kw["square"])
    inner = 1.0 - kw["rim"]
    window, fill = canvas[y0:y1, x0:x1], soil[y0:y1, x0:x1]
    # The rim: brighter on the side facing the light, with a highlight line along its top edge.
    facing = ((xs - np.float32(cx)) * kw["light"][0] + (ys - np.float32(cy)) * kw["light"][1]) / np.float32(
        radius
    )
    rim_shade = 1.0 + 0.25 * facing + 0.35 * np.exp(-(((dist - 1.0 + kw["rim"] / 2) / 0.02) ** 2))
    rim = (dist <= 1.0) & (dist > inner)
    window[rim] = (rim_shade[..., None] * np.asarray(kw["colour"], np.float32))[rim]
    inside = dist <= inner
    # The rim shades the soil on the side away from the light.
    shadow = 1.0 - 0.45 * np.clip((dist - inner * 0.8) / (inner * 0.2), 0.0, 1.0) * np.clip(
        -facing + 0.3, 0, 1
    )
    window[inside] = (fill * shadow[..., None])[inside]


def _pot_labels(
    rng: np.random.Generator, canvas: np.ndarray, spots: list[tuple[float, float, float]], green: bool
) -> None:
    """Plastic plant labels stuck in some pots: flat rectangles near the rim (green ones are hard negatives)."""
    for cx, cy, radius in spots:
        if rng.random() > 0.35:
            continue
        colour = _LABEL_COLOURS[_GREEN_LABEL if green else int(rng.integers(len(_LABEL_COLOURS)))]
        angle = rng.uniform(0, 2 * math.pi)
        start = radius * rng.uniform(0.5, 0.75)
        size = (radius * rng.uniform(0.35, 0.6), radius * rng.uniform(0.06, 0.12))
        _draw_strip(
            canvas, rng, (cx, cy, angle, start), size, np.asarray(colour, np.float32), 0.05, texture=0.01
        )


def _pots_background(
    rng: np.random.Generator, height: int, width: int, scale: float, green: bool
) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """A tray of pots filled with soil (sometimes mossy); returns the canvas and each pot's (x, y, radius)."""
    tray = _TRAY_COLOURS[_GREEN_TRAY if green and rng.random() < 0.5 else int(rng.integers(4))]
    canvas = _board(rng, height, width, tray, scale, 0.02)
    soil = _soil(rng, height, width, scale) * np.float32(rng.uniform(0.5, 0.85))
    if rng.random() < 0.3:  # moss or algae on the soil: dull olive patches, background all the same
        moss = np.clip(_value_noise(rng, height, width, 12.0 * scale) * 2.0 - 0.8, 0.0, 1.0)[..., None]
        olive = np.array([70.0, 76.0, 48.0], np.float32) * np.float32(rng.uniform(0.7, 1.1))
        soil = soil * (1.0 - moss) + olive * moss
    side = rng.uniform(0.3, 0.6) * min(height, width)
    square = bool(rng.random() < 0.4)
    pot = _POT_COLOURS[_GREEN_POT if green and rng.random() < 0.5 else (0, 1, 3)[int(rng.integers(3))]]
    angle = rng.uniform(0, 2 * math.pi)
    style = dict(
        square=square, rim=rng.uniform(0.06, 0.12), colour=pot, light=(math.cos(angle), math.sin(angle))
    )
    spots = []
    offset_y, offset_x = rng.uniform(0, side), rng.uniform(0, side)
    for row in range(int(height / side) + 2):
        for col in range(int(width / side) + 2):
            cx = col * side - offset_x + side / 2 + rng.uniform(-0.03, 0.03) * side
            cy = row * side - offset_y + side / 2 + rng.uniform(-0.03, 0.03) * side
            radius = side * rng.uniform(0.42, 0.47)
            _draw_pot(rng, canvas, soil, cx, cy, radius, **style)
            spots.append((cx, cy, radius))
    return canvas, spots


def _tray_edge(rng: np.random.Generator, canvas: np.ndarray, green: bool) -> None:
    """The edge of a tray along one side of the picture, with a highlight and a shadow on the paper."""
    height, width = canvas.shape[:2]
    side = int(rng.integers(4))
    depth = int(rng.uniform(0.04, 0.2) * (height if side < 2 else width))
    colour = np.asarray(_TRAY_COLOURS[_GREEN_TRAY if green else int(rng.integers(3))], np.float32)
    view = canvas if side < 2 else canvas.transpose(1, 0, 2)
    if side % 2:
        view = view[::-1]
    band = view[:depth]
    band[:] = colour * (1.0 + 0.04 * rng.standard_normal((1, band.shape[1], 1))).astype(np.float32)
    view[max(depth - 3, 0) : depth] *= 1.35  # highlight on the tray's lip
    shadow = np.linspace(0.7, 1.0, num=max(3, depth // 2), dtype=np.float32)
    view[depth : depth + shadow.size] *= shadow[: view.shape[0] - depth, None, None]


def _paper_background(
    rng: np.random.Generator, height: int, width: int, scale: float, green: bool
) -> np.ndarray:
    """White paper (or filter paper) with grain, a tray edge on one side and sometimes a neighbouring pot."""
    white = rng.uniform(195.0, 235.0)
    tint = np.array([1.0, rng.uniform(0.97, 1.01), rng.uniform(0.92, 1.03)], np.float32)
    canvas = _board(rng, height, width, white * tint, scale, 0.012)
    if rng.random() < 0.8:
        _tray_edge(rng, canvas, green and rng.random() < 0.5)
    if rng.random() < 0.4:
        corner_x, corner_y = rng.choice([0.0, float(width)]), rng.choice([0.0, float(height)])
        soil = _soil(rng, height, width, scale) * np.float32(0.6)
        pot = _POT_COLOURS[_GREEN_POT if green else int(rng.integers(2))]
        angle = rng.uniform(0, 2 * math.pi)
        style = dict(square=False, rim=0.08, colour=pot, light=(math.cos(angle), math.sin(angle)))
        _draw_pot(rng, canvas, soil, corner_x, corner_y, min(height, width) * rng.uniform(0.2, 0.4), **style)
    return canvas


def _cloth_background(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Dark cloth: a fine weave and soft folds."""
    colour = _CLOTH_COLOURS[int(rng.integers(len(_CLOTH_COLOURS)))]
    canvas = _board(rng, height, width, colour, scale, 0.08)
    ys, xs = _grid(height, width)
    period = np.float32(max(2.0, 3.0 * scale))
    weave = 1.0 + 0.06 * np.sin(xs * (2 * np.pi / period)) * np.sin(ys * (2 * np.pi / period))
    folds = 1.0 + np.float32(rng.uniform(0.1, 0.35)) * _value_noise(rng, height, width, 50.0 * scale)
    return canvas * (weave * folds)[..., None]


def _green_objects(rng: np.random.Generator, canvas: np.ndarray, scale: float) -> None:
    """Green things that are not plants: tape strips and labels (background in the mask)."""
    height, width = canvas.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        colour = np.array([rng.uniform(30, 90), rng.uniform(110, 200), rng.uniform(40, 110)], np.float32)
        length = rng.uniform(0.15, 0.6) * min(height, width)
        place = (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, 2 * math.pi), 0.0)
        size = (length, max(2.0, rng.uniform(0.03, 0.1) * length))
        _draw_strip(canvas, rng, place, size, colour, 0.05, texture=0.01)


def _paste_cutout(
    rng: np.random.Generator,
    layer: np.ndarray,
    drawn: np.ndarray,
    cutout: tuple[np.ndarray, np.ndarray],
    centre: tuple[float, float],
    radius: float,
    base: np.ndarray,
) -> None:
    """Paste a real plant cut-out (:func:`load_cutouts`), turned, resized to ``2 * radius`` and recoloured
    towards ``base`` (so that a bright field weed becomes a dark or bluish lab plant)."""
    pixels, shape = cutout
    turns = int(rng.integers(4))
    pixels, shape = np.rot90(pixels, turns), np.rot90(shape, turns)
    if rng.random() < 0.5:
        pixels, shape = pixels[:, ::-1], shape[:, ::-1]
    factor = float(np.clip(2.0 * radius / max(shape.shape), 0.2, 3.0))
    new_h, new_w = max(1, round(shape.shape[0] * factor)), max(1, round(shape.shape[1] * factor))
    rows = np.minimum((np.arange(new_h) / factor).astype(np.int64), shape.shape[0] - 1)
    cols = np.minimum((np.arange(new_w) / factor).astype(np.int64), shape.shape[1] - 1)
    pixels = pixels[rows][:, cols].astype(np.float32)
    shape = shape[rows][:, cols]
    if not shape.any():
        return
    mean = pixels[shape].mean(axis=0)
    pixels *= np.clip(base / np.maximum(mean, 1.0), 0.5, 1.6)[None, None, :]
    top, left = round(centre[1] - new_h / 2), round(centre[0] - new_w / 2)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + new_h, layer.shape[0]), min(left + new_w, layer.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    piece = shape[y0 - top : y1 - top, x0 - left : x1 - left]
    window = layer[y0:y1, x0:x1]
    window[piece] = pixels[y0 - top : y1 - top, x0 - left : x1 - left][piece]
    drawn[y0:y1, x0:x1] |= piece


def _lab_plants(
    rng: np.random.Generator,
    layer: np.ndarray,
    drawn: np.ndarray,
    setting: str,
    spots: list[tuple[float, float, float]],
    cutouts: list[tuple[np.ndarray, np.ndarray]] | None,
) -> None:
    """Draw (or paste) the plants of a lab scene into ``layer`` and their pixels into ``drawn``."""
    height, width = drawn.shape
    side = min(height, width)
    places: list[tuple[float, float, float, float]] = []  # x, y, radius, kind
    if setting == "pots":
        visible = [s for s in spots if 0 <= s[0] < width and 0 <= s[1] < height] or spots[:1]
        for cx, cy, radius in visible:
            if rng.random() < 0.85 or not places:
                jitter = radius * 0.15
                places.append(
                    (
                        cx + rng.uniform(-jitter, jitter),
                        cy + rng.uniform(-jitter, jitter),
                        radius * rng.uniform(0.25, 1.0),
                        rng.uniform(0.0, 0.5),
                    )
                )
    else:
        count = int(rng.integers(1, 4 if setting == "paper" else 5))
        low, high = (0.05, 0.22) if setting == "paper" else (0.08, 0.3)
        for _ in range(count):
            kind = rng.uniform(0.5, 0.8) if setting == "paper" and rng.random() < 0.7 else rng.random()
            places.append(
                (
                    rng.uniform(0.15, 0.85) * width,
                    rng.uniform(0.15, 0.85) * height,
                    side * rng.uniform(low, high),
                    kind,
                )
            )
    base = _lab_green(rng)  # one genotype per scene, each plant a little different
    for cx, cy, radius, kind in places:
        colour = (base * rng.uniform(0.88, 1.12, size=3)).astype(np.float32)
        colour[0] = min(colour[0], _MAX_RED_OVER_GREEN_PLANT * colour[1])
        radius = max(radius, 3.0)
        if cutouts and rng.random() < 0.5:
            _paste_cutout(
                rng, layer, drawn, cutouts[int(rng.integers(len(cutouts)))], (cx, cy), radius, colour
            )
        else:
            _draw_plant(rng, layer, drawn, cx, cy, radius, kind=kind, base=colour)


def _finish_lab(
    rng: np.random.Generator, background: np.ndarray, layer: np.ndarray, drawn: np.ndarray, scale: float
) -> np.ndarray:
    """Shadows, blended plant edges, uneven light, white balance, optics, sensor noise and JPEG: uint8 RGB."""
    height, width = drawn.shape
    if drawn.any():
        # A soft shadow under the leaves, offset away from the light, on the background only.
        shifted = _shadow_of(rng, drawn, (2.0, 6.0), scale)
        darkness = np.float32(rng.uniform(0.15, 0.4))
        background = background * (1.0 - darkness * _box_blur(shifted, max(1, round(3 * scale))))[..., None]
    # Blended edges: a plant pixel at the outline is partly background (>= about 45 % plant), so there is
    # no hard one-pixel seam for a network to learn; the mask keeps every drawn pixel.
    weight = np.where(drawn, np.clip(0.35 + _box_blur(drawn.astype(np.float32), 1), 0.0, 1.0), 0.0)
    canvas = background + (layer - background) * weight[..., None].astype(np.float32)
    canvas *= _lighting(rng, height, width)[..., None]
    gain = rng.uniform(0.75, 1.25) * np.array([rng.uniform(0.94, 1.08), 1.0, rng.uniform(0.9, 1.1)])
    canvas *= gain.astype(np.float32)[None, None, :]
    if rng.random() < 0.3:  # slightly out of focus
        blurred = np.stack([_box_blur(canvas[..., c], 1) for c in range(3)], axis=-1)
        canvas = 0.5 * canvas + 0.5 * blurred
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 4.0))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        image = _jpeg(image, int(rng.integers(70, 96)))
    return image


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG round trip at ``quality`` (blocking and chroma blur, as in camera files)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


def generate_lab_image(
    height: int = 256,
    width: int = 256,
    rng: np.random.Generator | int | None = None,
    scene: str | None = None,
    cutouts: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one top-down photo of a lab setting, with its exact plant mask.

    Scenes (:data:`LAB_SCENES`): ``'pots'`` (rosettes in round or square pots of soil on a tray, pot rims,
    sometimes moss and plant labels), ``'paper'`` (seedlings or small rosettes on white paper, a tray edge and
    sometimes a neighbouring pot in view), ``'cloth'`` (plants on dark cloth) and ``'empty'`` (one of those
    settings with no plant at all, often with green objects that are not plants: the mask is all 0). Plants are
    dark, bluish, yellow or field green, with soft shadows and blended edges; light is uneven; white balance,
    noise, blur and JPEG compression vary. About a fifth of the scenes with plants also hold green non-plant
    objects (a green tray, pot, label or tape).

    Args:
        height: Image height in pixels, at least 16.
        width: Image width in pixels, at least 16.
        rng: A ``numpy.random.Generator`` (advanced by the call), an int seed (same seed, same image) or None.
        scene: One of :data:`LAB_SCENES`, or None for a random one.
        cutouts: Optional real plant cut-outs (:func:`load_cutouts`); half of the plants are then pasted
            cut-outs (turned, resized and recoloured) instead of drawn ones.

    Returns:
        ``(image, mask)``: uint8 (height, width, 3) RGB and uint8 (height, width), 255 on plant pixels, else 0.

    Raises:
        TypeError: ``height``/``width`` are not ints, ``rng`` is not a Generator, an int or None.
        ValueError: a size below 16, a negative seed, or an unknown ``scene``.
    """
    height = check_int("height", height, minimum=_MIN_SIDE)
    width = check_int("width", width, minimum=_MIN_SIDE)
    gen = _as_generator(rng)
    scene = (
        LAB_SCENES[int(gen.integers(len(LAB_SCENES)))]
        if scene is None
        else check_choice("scene", scene, LAB_SCENES)
    )
    scale = min(height, width) / 256.0
    green = bool(gen.random() < 0.2)
    setting = scene if scene != "empty" else ("pots", "paper", "cloth")[int(gen.integers(3))]
    spots: list[tuple[float, float, float]] = []
    if setting == "pots":
        background, spots = _pots_background(gen, height, width, scale, green)
        _pot_labels(gen, background, spots, green)
    elif setting == "paper":
        background = _paper_background(gen, height, width, scale, green)
    else:
        background = _cloth_background(gen, height, width, scale)
    if green or (scene == "empty" and gen.random() < 0.6):
        _green_objects(gen, background, scale)
    layer = background.copy()
    drawn = np.zeros((height, width), dtype=bool)
    if scene != "empty":
        _lab_plants(gen, layer, drawn, setting, spots, cutouts)
    image = _finish_lab(gen, background, layer, drawn, scale)
    return image, np.where(drawn, np.uint8(255), np.uint8(0))


def load_cutouts(
    path: str | os.PathLike,
    max_cutouts: int = 300,
    min_pixels: int = 64,
    exclude: tuple[str, ...] | list[str] = (),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real plant cut-outs from a folder of labelled photos, for :func:`generate_lab_image`.

    Every connected plant region of every mask (at least ``min_pixels``, at most a quarter of its photo) is cut
    out with its bounding box: up to 4 per photo, the largest first, photos in name order, until
    ``max_cutouts``. ``path`` is one dataset (``images/`` and ``masks/``) or a folder of datasets (as
    ``../shared/data``); a missing folder gives an empty list, so callers can use cut-outs when present.

    Args:
        path: Dataset folder, or a folder whose sub-folders are datasets.
        max_cutouts: Most cut-outs returned.
        min_pixels: Smallest region kept.
        exclude: Image file names to skip (e.g. held-out photos that must not be trained on).

    Returns:
        ``[(pixels, shape), ...]``: uint8 (h, w, 3) RGB crops and bool (h, w) plant masks.
    """
    from scipy import ndimage

    from deepplantphenomics.data.dataset import pair_files
    from deepplantphenomics.data.io import read_binary_mask, read_image

    root = Path(path)
    max_cutouts = check_int("max_cutouts", max_cutouts, minimum=1)
    min_pixels = check_int("min_pixels", min_pixels, minimum=1)
    folders = (
        [root] if (root / "images").is_dir() else sorted(p for p in root.glob("*") if (p / "images").is_dir())
    )
    skip = set(exclude)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for folder in folders:
        if not (folder / "masks").is_dir():
            continue
        pairs, _ = pair_files(folder / "images", folder / "masks")
        for image_path, mask_path in sorted(pairs):
            if image_path.name in skip:
                continue
            image = read_image(image_path)
            image = image if image.dtype == np.uint8 else np.rint(image / 257.0).astype(np.uint8)
            image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
            mask = read_binary_mask(mask_path)[0] > 0
            labels, _count = ndimage.label(mask)
            sizes = np.bincount(labels.ravel())
            boxes = ndimage.find_objects(labels)
            order = np.argsort(-sizes[1:])[:4]
            for index in order:
                if not min_pixels <= sizes[index + 1] <= mask.size // 4:
                    continue
                box = boxes[index]
                found.append((image[box].copy(), labels[box] == index + 1))
                if len(found) >= max_cutouts:
                    return found
    return found


def write_lab_dataset(
    directory: str | os.PathLike,
    n_images: int,
    height: int = 256,
    width: int = 256,
    seed: int = 0,
    scenes: tuple[str, ...] | list[str] = LAB_SCENES,
    prefix: str = "lab",
    cutouts: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[Path, Path]:
    """Write lab scenes (:func:`generate_lab_image`) and their masks in the layout the data loader reads.

    Image ``i`` shows scene ``scenes[i % len(scenes)]`` and is ``directory/images/{prefix}_{scene}_{i:04d}.png``
    (mask in ``masks/``, 0/255); it depends only on ``seed``, ``i`` and the scene list (and ``cutouts``).

    Returns:
        ``(images_dir, masks_dir)``.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range, or a scene is unknown.
    """
    from PIL import Image

    n_images = check_int("n_images", n_images, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    scenes = [check_choice("scenes", scene, LAB_SCENES) for scene in scenes]
    if not scenes:
        raise ValueError(
            f"Invalid value for argument `scenes`: expected some of {LAB_SCENES}, received none."
        )
    images_dir, masks_dir = Path(directory) / "images", Path(directory) / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        scene = scenes[i % len(scenes)]
        image, mask = generate_lab_image(height, width, np.random.default_rng([seed, i, 15]), scene, cutouts)
        name = f"{prefix}_{scene}_{i:04d}.png"
        Image.fromarray(image).save(images_dir / name, format="PNG")
        Image.fromarray(mask).save(masks_dir / name, format="PNG")
    return images_dir, masks_dir
