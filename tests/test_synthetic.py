"""Tests for deepplantphenomics.synthetic: procedural seedling images and their exact masks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from deepplantphenomics.synthetic import generate_plant_image, write_synthetic_dataset


@pytest.mark.parametrize(("height", "width"), [(64, 64), (48, 80), (16, 16)])
def test_shapes_and_dtypes(height, width):
    image, mask = generate_plant_image(height, width, rng=0)
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8
    assert mask.shape == (height, width)
    assert mask.dtype == np.uint8


def test_default_size_is_256():
    image, mask = generate_plant_image(rng=1)
    assert image.shape == (256, 256, 3)
    assert mask.shape == (256, 256)


def test_mask_values_are_0_and_255():
    for seed in range(10):
        _, mask = generate_plant_image(64, 64, rng=seed)
        assert set(np.unique(mask).tolist()) <= {0, 255}
        # Every image has both plants and background.
        assert (mask == 255).any()
        assert (mask == 0).any()


def test_plant_fraction_in_sensible_range():
    fractions = np.array([(generate_plant_image(64, 64, rng=seed)[1] > 0).mean() for seed in range(20)])
    assert 0.03 <= fractions.mean() <= 0.60
    assert fractions.min() >= 0.01
    assert fractions.max() <= 0.60
    # Images differ in how much plant they show (1-6 plants of different sizes).
    assert fractions.std() > 0.02


def test_same_int_seed_gives_identical_images():
    image_a, mask_a = generate_plant_image(64, 64, rng=7)
    image_b, mask_b = generate_plant_image(64, 64, rng=7)
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(mask_a, mask_b)


def test_same_generator_state_gives_identical_images():
    image_a, mask_a = generate_plant_image(64, 64, rng=np.random.default_rng(3))
    image_b, mask_b = generate_plant_image(64, 64, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(mask_a, mask_b)


def test_generator_is_advanced_so_consecutive_images_differ():
    gen = np.random.default_rng(5)
    first, _ = generate_plant_image(64, 64, rng=gen)
    second, _ = generate_plant_image(64, 64, rng=gen)
    assert not np.array_equal(first, second)


def test_different_seeds_differ():
    image_a, mask_a = generate_plant_image(64, 64, rng=1)
    image_b, mask_b = generate_plant_image(64, 64, rng=2)
    assert not np.array_equal(image_a, image_b)
    assert not np.array_equal(mask_a, mask_b)


def test_mask_pixels_are_greener_than_background():
    for seed in range(8):
        image, mask = generate_plant_image(64, 64, rng=seed)
        rgb = image.astype(np.float64)
        excess_green = 2 * rgb[..., 1] - rgb[..., 0] - rgb[..., 2]
        plant = mask == 255
        assert excess_green[plant].mean() > excess_green[~plant].mean() + 20


def test_mask_aligns_with_green_pixels():
    # A per-pixel colour rule (green clearly above red and blue) already finds the plants, which is what
    # makes the images learnable by a small network: the mask must cover exactly those pixels.
    dice = []
    for seed in range(8):
        image, mask = generate_plant_image(64, 64, rng=seed)
        red, green, blue = (image[..., c].astype(np.float64) for c in range(3))
        predicted = (green > 1.08 * red) & (green > blue)
        plant = mask == 255
        dice.append(2 * (predicted & plant).sum() / (predicted.sum() + plant.sum()))
    assert np.mean(dice) > 0.9


def test_write_synthetic_dataset_layout_and_pairing(tmp_path):
    images_dir, masks_dir = write_synthetic_dataset(
        tmp_path / "data", n_images=3, height=64, width=48, seed=1
    )
    assert images_dir == tmp_path / "data" / "images"
    assert masks_dir == tmp_path / "data" / "masks"
    image_names = sorted(p.name for p in images_dir.iterdir())
    mask_names = sorted(p.name for p in masks_dir.iterdir())
    assert image_names == ["plant_0000.png", "plant_0001.png", "plant_0002.png"]
    assert mask_names == image_names
    for name in image_names:
        with Image.open(images_dir / name) as image:
            assert image.mode == "RGB"
            assert image.size == (48, 64)
        with Image.open(masks_dir / name) as mask:
            assert mask.mode == "L"
            assert mask.size == (48, 64)
            assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}


def test_written_files_match_generated_arrays(tmp_path):
    images_dir, masks_dir = write_synthetic_dataset(tmp_path, n_images=2, height=32, width=32, seed=4)
    image, mask = generate_plant_image(32, 32, rng=np.random.default_rng([4, 1]))
    with Image.open(images_dir / "plant_0001.png") as written:
        np.testing.assert_array_equal(np.asarray(written), image)
    with Image.open(masks_dir / "plant_0001.png") as written:
        np.testing.assert_array_equal(np.asarray(written), mask)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_writes_byte_identical_files(tmp_path):
    first = write_synthetic_dataset(tmp_path / "a", n_images=2, height=32, width=32, seed=9, prefix="x")
    second = write_synthetic_dataset(tmp_path / "b", n_images=2, height=32, width=32, seed=9, prefix="x")
    for folder_a, folder_b in zip(first, second):
        digests = _digests(folder_a)
        assert list(digests) == ["x_0000.png", "x_0001.png"]
        assert digests == _digests(folder_b)


def test_different_seeds_write_different_files(tmp_path):
    images_a, _ = write_synthetic_dataset(tmp_path / "a", n_images=1, height=32, width=32, seed=0)
    images_b, _ = write_synthetic_dataset(tmp_path / "b", n_images=1, height=32, width=32, seed=1)
    assert _digests(images_a) != _digests(images_b)


def test_more_images_only_add_files(tmp_path):
    small, _ = write_synthetic_dataset(tmp_path / "a", n_images=1, height=32, width=32, seed=2)
    large, _ = write_synthetic_dataset(tmp_path / "b", n_images=2, height=32, width=32, seed=2)
    assert _digests(small)["plant_0000.png"] == _digests(large)["plant_0000.png"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"height": 0}, ValueError, "`height`"),
        ({"height": 15}, ValueError, "`height`.*>= 16"),
        ({"width": -4}, ValueError, "`width`"),
        ({"height": 64.0}, TypeError, "`height`.*an int"),
        ({"width": True}, TypeError, "`width`"),
        ({"rng": "seed"}, TypeError, "`rng`.*Generator"),
        ({"rng": 1.5}, TypeError, "`rng`"),
        ({"rng": -1}, ValueError, "`rng`.*non-negative"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        generate_plant_image(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_images": 0}, ValueError, "`n_images`.*positive int"),
        ({"n_images": 2.0}, TypeError, "`n_images`"),
        ({"height": 8}, ValueError, "`height`"),
        ({"width": "64"}, TypeError, "`width`"),
        ({"seed": -3}, ValueError, "`seed`"),
        ({"seed": None}, TypeError, "`seed`"),
        ({"prefix": ""}, ValueError, "`prefix`"),
        ({"prefix": "a/b"}, ValueError, "`prefix`.*separators"),
        ({"prefix": 3}, TypeError, "`prefix`"),
    ],
)
def test_write_rejects_bad_arguments(tmp_path, kwargs, error, match):
    arguments = {"directory": tmp_path, "n_images": 1, "height": 32, "width": 32}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        write_synthetic_dataset(**arguments)
    # Nothing is written when the arguments are refused.
    assert not (tmp_path / "images").exists()


def test_write_rejects_bad_directory(tmp_path):
    with pytest.raises(TypeError, match="`directory`"):
        write_synthetic_dataset(3, n_images=1)
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="`directory`.*is a file"):
        write_synthetic_dataset(a_file, n_images=1, height=32, width=32)
