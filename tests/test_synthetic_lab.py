"""Lab scenes of deepplantphenomics.synthetic: pots on trays, seedlings on paper, dark cloth, no-plant scenes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deepplantphenomics.indices import excess_green
from deepplantphenomics.synthetic import (
    LAB_SCENES,
    generate_lab_image,
    load_cutouts,
    write_lab_dataset,
    write_synthetic_dataset,
)


@pytest.mark.parametrize("scene", LAB_SCENES)
@pytest.mark.parametrize(("height", "width"), [(64, 64), (48, 80)])
def test_lab_shapes_and_dtypes(scene, height, width):
    image, mask = generate_lab_image(height, width, rng=0, scene=scene)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    assert mask.shape == (height, width) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 255}


@pytest.mark.parametrize("scene", ["pots", "paper", "cloth"])
def test_lab_scenes_with_plants_have_plants_and_background(scene):
    for seed in range(6):
        _, mask = generate_lab_image(96, 96, rng=seed, scene=scene)
        assert (mask == 255).any() and (mask == 0).any(), seed


def test_empty_scenes_have_empty_masks():
    for seed in range(12):
        image, mask = generate_lab_image(96, 96, rng=seed, scene="empty")
        assert not mask.any(), seed
        assert image.std() > 0  # a scene was drawn, not a blank


def test_lab_mask_pixels_are_the_green_ones():
    """Masks agree with pixels: inside the plants (away from blended edges) pixels are green; plant pixels are
    greener than the rest of the scene on average (green non-plant objects included)."""
    for scene in ("pots", "paper", "cloth"):
        for seed in range(5):
            image, mask = generate_lab_image(128, 128, rng=seed, scene=scene)
            plant = mask > 0
            inner = plant.copy()
            inner[1:-1, 1:-1] &= plant[:-2, 1:-1] & plant[2:, 1:-1] & plant[1:-1, :-2] & plant[1:-1, 2:]
            rgb = image.astype(np.int32)
            assert np.mean(rgb[inner][:, 1] > rgb[inner][:, 0]) > 0.95, (scene, seed)
            exg = excess_green(image)
            assert exg[plant].mean() > exg[~plant].mean() + 0.05, (scene, seed)


def test_lab_same_seed_same_scene_and_generator_advances():
    for scene in LAB_SCENES:
        a = generate_lab_image(64, 64, rng=5, scene=scene)
        b = generate_lab_image(64, 64, rng=5, scene=scene)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    gen = np.random.default_rng(1)
    first, second = generate_lab_image(64, 64, rng=gen), generate_lab_image(64, 64, rng=gen)
    assert not np.array_equal(first[0], second[0])
    assert not np.array_equal(generate_lab_image(64, 64, rng=1)[0], generate_lab_image(64, 64, rng=2)[0])


def test_lab_random_scene_covers_every_setting():
    """scene=None draws every scene, so empty masks occur among random draws."""
    empty = [not generate_lab_image(32, 32, rng=seed)[1].any() for seed in range(40)]
    assert 0 < sum(empty) < 40


def test_lab_rejects_an_unknown_scene():
    with pytest.raises(ValueError, match="scene"):
        generate_lab_image(64, 64, rng=0, scene="greenhouse")


def test_write_lab_dataset_names_and_reproducibility(tmp_path):
    images_dir, masks_dir = write_lab_dataset(tmp_path / "a", 5, 48, 64, seed=3)
    again, _ = write_lab_dataset(tmp_path / "b", 5, 48, 64, seed=3)
    names = sorted(p.name for p in images_dir.iterdir())
    assert names == sorted(p.name for p in masks_dir.iterdir())
    assert names == [
        "lab_cloth_0002.png",
        "lab_empty_0003.png",
        "lab_paper_0001.png",
        "lab_pots_0000.png",
        "lab_pots_0004.png",
    ]
    for name in names:
        assert (images_dir / name).read_bytes() == (again / name).read_bytes()
    empty_mask = np.asarray(Image.open(masks_dir / "lab_empty_0003.png"))
    assert empty_mask.shape == (48, 64) and not empty_mask.any()


def test_load_cutouts_and_paste_them(tmp_path):
    images_dir, _ = write_synthetic_dataset(tmp_path / "field", 3, 64, 64, seed=0)
    cutouts = load_cutouts(tmp_path / "field", max_cutouts=6, min_pixels=16)
    assert 0 < len(cutouts) <= 6
    for pixels, shape in cutouts:
        assert pixels.dtype == np.uint8 and pixels.shape[:2] == shape.shape and shape.dtype == bool
        assert shape.any()
    from_root = load_cutouts(tmp_path, max_cutouts=2, min_pixels=16)  # a folder of datasets works too
    for (a, mask_a), (b, mask_b) in zip(from_root, cutouts[:2], strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(mask_a, mask_b)
    assert load_cutouts(tmp_path / "missing") == []
    skipped = load_cutouts(tmp_path / "field", min_pixels=16, exclude=[p.name for p in images_dir.iterdir()])
    assert skipped == []
    for seed in range(4):
        image, mask = generate_lab_image(96, 96, rng=seed, scene="cloth", cutouts=cutouts)
        assert mask.any() and image.shape == (96, 96, 3)
