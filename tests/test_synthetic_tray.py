"""Tests for the synthetic tray series (deepplantphenomics.synthetic.generate_tray_image / write_tray_series)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deepplantphenomics.synthetic import generate_tray_image, write_tray_series


def test_tray_shapes_masks_and_pot_labels():
    image, mask, pots = generate_tray_image(2, 3, day=1, cell=32, seed=0)
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert mask.shape == pots.shape == (64, 96) and mask.dtype == np.uint8 and pots.dtype == np.int32
    assert set(np.unique(mask).tolist()) == {0, 255}
    np.testing.assert_array_equal(mask > 0, pots > 0)
    assert set(np.unique(pots).tolist()) == set(range(7))  # every pot of the 2x3 tray has its plant


def test_tray_plants_grow_and_stay_in_their_pots():
    areas = []
    for day in (0, 1, 2):
        _, _, pots = generate_tray_image(4, 6, day=day, seed=3)
        areas.append(np.bincount(pots.ravel(), minlength=25)[1:])
        # Each plant's centre of mass lies in its own pot on every day.
        for index in range(1, 25):
            ys, xs = np.nonzero(pots == index)
            row, col = divmod(index - 1, 6)
            assert int(ys.mean() // 64) == row and int(xs.mean() // 64) == col
    areas = np.array(areas)
    assert np.all(areas[1] > areas[0]) and np.all(areas[2] > areas[1])


def test_tray_same_seed_same_plants_other_day_other_exposure():
    a, mask_a, _ = generate_tray_image(2, 2, day=2, cell=32, seed=5)
    b, mask_b, _ = generate_tray_image(2, 2, day=2, cell=32, seed=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mask_a, mask_b)
    c, _, _ = generate_tray_image(2, 2, day=3, cell=32, seed=5)
    assert not np.array_equal(a, c)


def test_tray_empty_pot():
    _, _, pots = generate_tray_image(4, 6, day=2, seed=0, empty=("B3",))
    present = set(np.unique(pots).tolist()) - {0}
    assert present == set(range(1, 25)) - {1 * 6 + 2 + 1}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"empty": ("E1",)}, r"`empty`: 'E1' is not a cell of a 4x6 grid"),
        ({"empty": ("A7",)}, r"`empty`: 'A7' is not a cell"),
        ({"day": -1}, r"`day`: expected a number >= 0, received -1"),
        ({"cell": 8}, r"cell"),
    ],
)
def test_tray_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_tray_image(4, 6, **kwargs)


def test_write_tray_series(tmp_path):
    images, masks = write_tray_series(tmp_path / "tray", days=2, rows=2, cols=2, cell=32, seed=1)
    names = sorted(p.name for p in images.iterdir())
    assert names == ["tray_day00.png", "tray_day01.png"] == sorted(p.name for p in masks.iterdir())
    with Image.open(images / "tray_day01.png") as photo, Image.open(masks / "tray_day01.png") as mask:
        assert photo.size == mask.size == (64, 64) and photo.mode == "RGB" and mask.mode == "L"
        expected = generate_tray_image(2, 2, day=1, cell=32, seed=1)[1]
        np.testing.assert_array_equal(np.asarray(mask), expected)
