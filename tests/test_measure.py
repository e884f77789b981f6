"""Tests for deepplantphenomics.measure: known shapes against scikit-image's own figures and geometry,
fragments merged into plants, specks, trays with stable ids, scale, colour and errors.

Tolerances: a figure computed by this module must equal scikit-image's ``regionprops`` of the same pixels to
1e-9 (it is the same computation); against the continuous shape it digitises, areas are within 1.5 %, axes
within 2 %, perimeters within 8 % and convex hull areas within 5 % (scikit-image's perimeter is an estimate from
the boundary pixels and its hull is that of the pixel squares: for a digital disc of radius 20 they come out
about 5 % and 4 % above 2 pi r and pi r^2, for the annulus' inner edge of radius 12 the perimeter 7 %).
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from skimage.measure import regionprops

from deepplantphenomics import measure
from deepplantphenomics.synthetic import generate_tray_image

GREY = np.full((96, 96, 3), 128, dtype=np.uint8)


def disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r


def only(records: list[dict]) -> dict:
    assert len(records) == 1
    return records[0]


def assert_same_as_regionprops(record: dict, mask: np.ndarray) -> None:
    region = regionprops(mask.astype(np.uint8))[0]
    assert record["area_px"] == region.area
    assert record["perimeter_px"] == pytest.approx(region.perimeter, rel=1e-9)
    assert record["convex_area_px"] == region.area_convex
    assert record["solidity"] == pytest.approx(region.solidity, rel=1e-9)
    assert record["major_axis_px"] == pytest.approx(region.axis_major_length, rel=1e-9)
    assert record["minor_axis_px"] == pytest.approx(region.axis_minor_length, rel=1e-9)
    assert record["eccentricity"] == pytest.approx(region.eccentricity, rel=1e-9, abs=1e-12)
    assert (record["centroid_y"], record["centroid_x"]) == pytest.approx(region.centroid, rel=1e-9)
    expected = math.degrees(region.orientation) - 90.0
    expected = expected + 180.0 if expected <= -90.0 else expected
    assert record["orientation_deg"] == pytest.approx(expected, abs=1e-7)


def test_disc_known_answers():
    mask = disc((96, 96), 47.0, 48.0, 20.0)
    record = only(measure.plants(GREY, mask))
    assert_same_as_regionprops(record, mask)
    assert record["area_px"] == pytest.approx(math.pi * 400, rel=0.015)
    assert record["perimeter_px"] == pytest.approx(2 * math.pi * 20, rel=0.08)
    # scikit-image's hull is that of the pixel squares, not of their centres: about 4 % above pi r^2.
    assert record["convex_area_px"] == pytest.approx(math.pi * 400, rel=0.05)
    assert record["solidity"] == pytest.approx(0.96, abs=0.02)
    assert record["major_axis_px"] == pytest.approx(40.0, rel=0.02)
    assert record["minor_axis_px"] == pytest.approx(40.0, rel=0.02)
    assert record["eccentricity"] < 0.1
    assert (record["centroid_x"], record["centroid_y"]) == pytest.approx((48.0, 47.0))
    assert (record["width_px"], record["height_px"]) == (41, 41)
    assert record["plant"] == "P1" and record["fragments"] == 1


def test_rectangle_known_answers_and_orientation():
    mask = np.zeros((96, 96), dtype=bool)
    mask[30:50, 10:50] = True  # 40 wide, 20 high
    record = only(measure.plants(GREY, mask))
    assert_same_as_regionprops(record, mask)
    assert record["area_px"] == record["convex_area_px"] == 800
    assert record["solidity"] == 1.0
    assert (record["bbox_x"], record["bbox_y"], record["width_px"], record["height_px"]) == (10, 30, 40, 20)
    # The ellipse with the rectangle's second moments: axis = 4 sqrt(variance), variance (L^2 - 1) / 12.
    assert record["major_axis_px"] == pytest.approx(4 * math.sqrt((40**2 - 1) / 12), rel=1e-6)
    assert record["minor_axis_px"] == pytest.approx(4 * math.sqrt((20**2 - 1) / 12), rel=1e-6)
    assert record["perimeter_px"] == pytest.approx(2 * (40 + 20), rel=0.08)
    assert record["orientation_deg"] == pytest.approx(0.0, abs=1e-6)
    upright = only(measure.plants(GREY, mask.T))
    assert abs(upright["orientation_deg"]) == pytest.approx(90.0, abs=1e-6)
    # A bar rising to the right as seen in the photo (y down) is at +45 degrees.
    ys, xs = np.mgrid[:96, :96]
    rising = (np.abs((xs - 48) + (ys - 48)) <= 3) & (np.abs((xs - 48) - (ys - 48)) <= 40)
    assert only(measure.plants(GREY, rising))["orientation_deg"] == pytest.approx(45.0, abs=0.5)


def test_annulus_known_answers():
    mask = disc((96, 96), 48, 48, 25) & ~disc((96, 96), 48, 48, 12)
    record = only(measure.plants(GREY, mask))
    assert_same_as_regionprops(record, mask)
    assert record["area_px"] == pytest.approx(math.pi * (25**2 - 12**2), rel=0.015)
    assert record["convex_area_px"] == pytest.approx(math.pi * 25**2, rel=0.05)  # the hull fills the hole
    assert record["solidity"] == pytest.approx((25**2 - 12**2) / 25**2, abs=0.04)
    # The perimeter counts both the outer and the inner edge.
    assert record["perimeter_px"] == pytest.approx(2 * math.pi * (25 + 12), rel=0.08)
    assert record["fragments"] == 1


def two_fragment_rosette() -> np.ndarray:
    """Two leaves of one rosette whose petiole the mask lost: a 3-pixel gap between them."""
    mask = np.zeros((64, 64), dtype=bool)
    mask |= disc((64, 64), 32, 20, 9)
    mask |= disc((64, 64), 32, 44, 9)
    mask[:, 29:35] = False  # cut through the middle: fragments 3+ pixels apart
    return mask


def test_two_fragment_rosette_is_one_plant():
    mask = two_fragment_rosette()
    apart = measure.plants(GREY[:64, :64], mask, merge_distance=0)
    assert len(apart) == 2
    record = only(measure.plants(GREY[:64, :64], mask))  # default merge_distance
    assert record["fragments"] == 2
    assert record["area_px"] == int(mask.sum()) == sum(r["area_px"] for r in apart)
    # Shape figures are those of both fragments together.
    assert_same_as_regionprops(record, mask)
    assert record["solidity"] < 0.95


def test_specks_are_dropped_and_counted():
    mask = disc((64, 64), 32, 32, 8)
    mask[2, 2] = mask[60, 5] = True  # single pixels
    mask[55:59, 55:59] = True  # 16 pixels
    result = measure.measure_plants(GREY[:64, :64], mask, min_area=20)
    assert len(result.plants) == 1 and result.plants[0]["area_px"] == int(disc((64, 64), 32, 32, 8).sum())
    assert (result.specks, result.speck_pixels) == (3, 18)
    assert result.labels[2, 2] == 0 and result.labels[32, 32] == 1
    kept = measure.measure_plants(GREY[:64, :64], mask, min_area=0, merge_distance=0)
    assert len(kept.plants) == 4 and kept.specks == 0


def test_tray_ids_stable_over_three_days_with_an_empty_pot():
    expected_ids = [f"{row}{col}" for row in "ABCD" for col in range(1, 7)]
    previous = None
    for day in (0, 1, 2):
        image, mask, pots = generate_tray_image(4, 6, day=day, seed=0, empty=("B3",))
        result = measure.measure_plants(image, mask, grid=(4, 6))
        assert [r["plant"] for r in result.plants] == expected_ids
        areas = np.array([r["area_px"] for r in result.plants])
        # Each pot's plant is exactly the generator's plant in that pot; B3 is empty but still reported.
        np.testing.assert_array_equal(areas, np.bincount(pots.ravel(), minlength=25)[1:])
        b3 = result.plants[expected_ids.index("B3")]
        assert b3["area_px"] == 0 and b3["perimeter_px"] is None and b3["row"] == 2 and b3["col"] == 3
        if previous is not None:
            grew = np.delete(areas > previous, expected_ids.index("B3"))
            assert grew.all()
        previous = areas
        auto = measure.measure_plants(image, mask, grid="auto")
        assert auto.grid == (4, 6)
        assert [r["plant"] for r in auto.plants] == expected_ids
        # labels index the returned list: pot k's pixels carry k + 1.
        np.testing.assert_array_equal(result.labels, pots)


def test_grid_splits_touching_neighbours_and_keeps_fragments_of_a_pot():
    mask = disc((64, 128), 32, 32, 14) | disc((64, 128), 32, 96, 14)
    mask[30:34, 32:96] = True  # the two plants' leaves touch across the cell line
    mask[5:8, 5:8] = True  # a detached leaf tip in the first pot
    result = measure.measure_plants(GREY[:64, :64].repeat(2, axis=1), mask, grid=(1, 2), min_area=5)
    first, second = result.plants
    assert (first["plant"], second["plant"]) == ("A1", "A2")
    assert first["area_px"] + second["area_px"] == int(mask.sum())
    assert first["fragments"] == 2 and second["fragments"] == 1
    assert first["area_px"] == int(mask[:, :64].sum())


def test_mm_conversion():
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:30, 10:50] = True
    record = only(measure.plants(GREY[:64, :64], mask, mm_per_pixel=0.25))
    assert record["mm_per_pixel"] == 0.25
    assert record["area_mm2"] == pytest.approx(800 * 0.0625)
    assert record["convex_area_mm2"] == pytest.approx(800 * 0.0625)
    assert (record["width_mm"], record["height_mm"]) == pytest.approx((10.0, 5.0))
    assert record["perimeter_mm"] == pytest.approx(record["perimeter_px"] * 0.25)
    assert record["major_axis_mm"] == pytest.approx(record["major_axis_px"] * 0.25)
    unscaled = only(measure.plants(GREY[:64, :64], mask))
    assert unscaled["mm_per_pixel"] is None and unscaled["area_mm2"] is None


def test_colour_statistics():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[..., :] = (40, 200, 20)
    mask = disc((64, 64), 32, 32, 10)
    record = only(measure.plants(image, mask))
    assert (record["mean_r"], record["mean_g"], record["mean_b"]) == pytest.approx((40, 200, 20))
    assert record["mean_exg"] == pytest.approx((2 * 200 - 40 - 20) / 260)
    # Hue is averaged on the circle: reds just below and above 0 degrees average to 0, not 180.
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[:, :32] = (255, 0, 21)  # hue about 355
    red[:, 32:] = (255, 21, 0)  # hue about 5
    hue = only(measure.plants(red, np.ones((64, 64), bool)))["hue_deg"]
    assert min(hue, 360 - hue) == pytest.approx(0.0, abs=1e-6)
    green = only(measure.plants(np.full((64, 64, 3), (0, 255, 0), np.uint8), mask))["hue_deg"]
    assert green == pytest.approx(120.0)


def test_label_image_input():
    labels = np.zeros((64, 64), dtype=np.uint16)
    labels[10:30, 10:30] = 7
    labels[10:30, 30:50] = 3  # touching plant 7: a label image keeps them apart
    records = measure.plants(GREY[:64, :64], labels, label_image=True)
    assert sorted(r["area_px"] for r in records) == [400, 400]
    # Any integer ids, also large ones; with a grid each label goes to the cell holding most of it.
    big = np.zeros((64, 64), dtype=np.int32)
    big[5:20, 5:20] = 1_000_000
    big[40:60, 40:60] = 70_000
    cells = measure.plants(GREY[:64, :64], big, label_image=True, grid=(2, 2))
    assert [(r["plant"], r["area_px"]) for r in cells] == [("A1", 225), ("A2", 0), ("B1", 0), ("B2", 400)]
    with pytest.raises(ValueError, match="label image holds non-negative integers"):
        measure.plants(GREY[:64, :64], -big, label_image=True)


def test_write_plants_csv(tmp_path):
    records = measure.plants(GREY[:64, :64], disc((64, 64), 32, 32, 10), grid=(2, 2))
    path = measure.write_plants_csv(tmp_path / "out" / "plants.csv", records, file="photo.png")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", *measure.PLANT_COLUMNS]
    assert [r["plant"] for r in rows] == ["A1", "A2", "B1", "B2"]
    assert all(r["file"] == "photo.png" for r in rows)
    # The disc sits on the centre of the 2x2 grid: its four quarters are four plants, one per pot.
    assert sum(int(r["area_px"]) for r in rows) == int(disc((64, 64), 32, 32, 10).sum())
    assert rows[0]["area_mm2"] == "" and rows[0]["mm_per_pixel"] == ""


def test_draw_plants():
    image, mask, _ = generate_tray_image(2, 2, day=3, cell=48, seed=0, empty=("A2",))
    result = measure.measure_plants(image, mask, grid=(2, 2))
    picture = measure.draw_plants(image, result)
    assert picture.shape == image.shape and picture.dtype == np.uint8
    assert not np.array_equal(picture, image)
    # Outlines in the first plant's colour lie on its pixels; the empty pot is left without outline.
    outline = np.all(picture == (255, 0, 255), axis=2)
    assert outline[result.labels == 1].any()
    assert not np.all(picture[:40, 52:] == (255, 0, 255), axis=2).any()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mask": np.zeros((32, 64), bool)}, ValueError, r"mask is 64x32 \(W x H\) but the image is 64x64"),
        ({"grid": (40, 40)}, ValueError, r"`grid`: a 40x40 grid does not fit a 64x64 \(W x H\) photo"),
        ({"grid": "4by6"}, ValueError, r"`grid`: expected ROWSxCOLS such as '4x6'"),
        ({"grid": (0, 3)}, ValueError, r"grid\[0\] \(rows\)"),
        ({"mm_per_pixel": 0.0}, ValueError, r"`mm_per_pixel`"),
        ({"mm_per_pixel": "0.1"}, TypeError, r"`mm_per_pixel`"),
        ({"min_area": -1}, ValueError, r"`min_area`"),
        ({"merge_distance": -2.0}, ValueError, r"`merge_distance`"),
        ({"mask": [[0, 1]]}, TypeError, r"`mask`: expected a numeric or bool numpy array"),
    ],
)
def test_errors_name_the_argument(kwargs, error, match):
    arguments = {"mask": disc((64, 64), 32, 32, 5), **kwargs}
    with pytest.raises(error, match=match):
        measure.plants(GREY[:64, :64], **arguments)


def test_auto_grid_without_plants_is_a_clear_error():
    with pytest.raises(ValueError, match="grid='auto' needs plants"):
        measure.plants(GREY[:64, :64], np.zeros((64, 64), bool), grid="auto")


def test_cell_ids():
    assert measure.cell_id(0, 0) == "A1" and measure.cell_id(1, 2) == "B3" and measure.cell_id(26, 0) == "AA1"
    assert measure.parse_cell_id("b3", (4, 6)) == (1, 2)
    assert measure.parse_cell_id("AA1", (30, 2)) == (26, 0)
    with pytest.raises(ValueError, match=r"`empty`: 'A7' is not a cell of a 4x6 grid"):
        measure.parse_cell_id("A7", (4, 6), "empty")


def test_many_plants_match_regionprops_one_by_one():
    """The ellipse figures are summed for all plants in one pass: each plant still matches its own regionprops."""
    rng = np.random.default_rng(4)
    mask = np.zeros((160, 200), dtype=bool)
    ys, xs = np.mgrid[:160, :200]
    for _ in range(9):
        cy, cx, ry, rx, t = (
            rng.uniform(15, 145),
            rng.uniform(15, 185),
            *rng.uniform(3, 12, 2),
            rng.uniform(0, 3),
        )
        u, v = (
            (xs - cx) * math.cos(t) + (ys - cy) * math.sin(t),
            -(xs - cx) * math.sin(t) + (ys - cy) * math.cos(t),
        )
        mask |= (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    result = measure.measure_plants(np.zeros((160, 200, 3), np.uint8), mask, merge_distance=0)
    assert len(result.plants) >= 5
    for number, record in enumerate(result.plants, start=1):
        assert_same_as_regionprops(record, result.labels == number)


def test_convex_area_equals_regionprops_on_random_shapes():
    """The hull count is regionprops' ``area_convex`` exactly: scattered pixels, thin slanted lines (whose hull
    edges pass through pixel centres), blobs, single pixels, shapes touching the photo's border."""
    from skimage.draw import line

    rng = np.random.default_rng(11)
    checked = 0
    for trial in range(150):
        height, width = (int(v) for v in rng.integers(2, 48, 2))
        mask = rng.random((height, width)) < rng.uniform(0.01, 0.5)
        if trial % 3 == 0:
            mask[:] = False
            for _ in range(int(rng.integers(1, 4))):
                rr, cc = line(*(int(v) for v in rng.integers(0, (height, width, height, width))))
                mask[rr, cc] = True
        result = measure.measure_plants(
            np.zeros((height, width, 3), np.uint8), mask, min_area=0, merge_distance=0
        )
        for number, record in enumerate(result.plants, start=1):
            region = regionprops((result.labels == number).astype(np.uint8))[0]
            assert record["convex_area_px"] == region.area_convex, (trial, number)
            checked += 1
    assert checked > 1000


def test_hue_is_scikit_images_rgb2hsv_hue():
    """A plant's hue equals rgb2hsv's hue of its colour, ties between channels and greys included."""
    from skimage.color import rgb2hsv

    rng = np.random.default_rng(5)
    colours = rng.integers(0, 256, (30, 3))
    colours[:3] = colours[:3, :1]  # greys: hue 0
    colours[3:6, 1] = colours[3:6, 2]  # green == blue
    colours[6:9, 0] = colours[6:9, 1]  # red == green
    mask = disc((24, 24), 12, 12, 8)
    for colour in colours:
        image = np.broadcast_to(colour.astype(np.uint8), (24, 24, 3))
        expected = rgb2hsv(colour[None, None].astype(np.float64) / 255.0)[0, 0, 0] * 360.0
        hue = only(measure.plants(image, mask))["hue_deg"]
        assert min(abs(hue - expected), 360 - abs(hue - expected)) < 1e-9, colour


@pytest.mark.parametrize("merge_distance", [1.0, 2.0, 3.0, 7.3, 8.0, 15.0, 40.0, 80.0])
def test_fragments_merge_as_the_distance_transform_says(merge_distance):
    """Fragments are one plant exactly when the Euclidean distance transform joins them."""
    from scipy import ndimage

    rng = np.random.default_rng(int(merge_distance * 10))
    fg = rng.random((120, 150)) < 0.004
    fg[:3, :5] = fg[-2:, -4:] = True  # fragments at the borders
    joined, count = ndimage.label(
        ndimage.distance_transform_edt(~fg) <= merge_distance / 2.0, np.ones((3, 3))
    )
    result = measure.measure_plants(
        GREY[:1, :1].repeat(120, 0).repeat(150, 1), fg, min_area=0, merge_distance=merge_distance
    )
    expected = np.where(fg, joined, 0)
    assert len(result.plants) == len(np.unique(expected[fg]))
    for number in range(1, len(result.plants) + 1):
        assert len(np.unique(expected[result.labels == number])) == 1
