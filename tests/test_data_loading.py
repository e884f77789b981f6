"""Pairing images with masks, decoding every supported kind of file, fitting to the network size, and splits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import make_model
from PIL import Image

from deepplantphenomics.data.dataset import load_pairs, make_split, pair_files, reuse_split
from deepplantphenomics.data.io import IGNORE_INDEX, ImageReadError, read_binary_mask, read_image
from deepplantphenomics.synthetic import write_synthetic_dataset


def write(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def rgb(h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def mask(h: int = 8, w: int = 8) -> np.ndarray:
    out = np.zeros((h, w), dtype=np.uint8)
    out[: h // 2] = 255
    return out


def dataset(root: Path, images: list[str], masks: list[str], h: int = 8, w: int = 8) -> tuple[Path, Path]:
    for name in images:
        write(root / "images" / name, rgb(h, w))
    for name in masks:
        write(root / "masks" / name, mask(h, w))
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    return root / "images", root / "masks"


# ------------------------------------------------------------------------------------------ pairing
def test_pairs_by_identical_name(tmp_path):
    images, masks = dataset(tmp_path, ["b.png", "a.png"], ["a.png", "b.png"])
    pairs, skipped = pair_files(images, masks)
    assert [(i.name, m.name) for i, m in pairs] == [("a.png", "a.png"), ("b.png", "b.png")]
    assert skipped == 0


def test_pairs_by_stem_jpg_image_png_mask(tmp_path):
    images, masks = dataset(tmp_path, ["plant_01.jpg", "plant_02.JPEG"], ["plant_01.png", "plant_02.png"])
    pairs, _ = pair_files(images, masks)
    assert [(i.name, m.name) for i, m in pairs] == [
        ("plant_01.jpg", "plant_01.png"),
        ("plant_02.JPEG", "plant_02.png"),
    ]


def test_identical_name_wins_over_stem(tmp_path):
    images, masks = dataset(tmp_path, ["a.png"], ["a.png"])
    pairs, _ = pair_files(images, masks)
    assert pairs[0][1].name == "a.png"


def test_ambiguous_mask_stem_names_the_files(tmp_path):
    images, masks = dataset(tmp_path, ["a.jpg"], ["a.png", "a.bmp"])
    with pytest.raises(ValueError, match=r"image 'a\.jpg' matches several masks: a\.bmp, a\.png"):
        pair_files(images, masks)


def test_ambiguous_image_stem_names_the_files(tmp_path):
    images, masks = dataset(tmp_path, ["a.jpg", "a.png"], ["a.tif"])
    with pytest.raises(ValueError, match=r"several images share the name stem 'a': a\.jpg, a\.png"):
        pair_files(images, masks)


def test_image_without_mask_and_mask_without_image_in_one_error(tmp_path):
    images, masks = dataset(tmp_path, ["a.png", "b.png", "c.png"], ["a.png", "x.png", "y.png"])
    with pytest.raises(ValueError) as info:
        pair_files(images, masks)
    text = str(info.value)
    assert re.search(r"2 image\(s\) without a mask in '.*masks': b\.png, c\.png", text)
    assert re.search(r"2 mask\(s\) without an image in '.*images': x\.png, y\.png", text)


def test_empty_folder(tmp_path):
    images, masks = dataset(tmp_path, [], ["a.png"])
    (images / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"`images_dir` holds no images .*" + re.escape(str(images))):
        pair_files(images, masks)


@pytest.mark.parametrize("which", ["images", "masks"])
def test_missing_folder_named(tmp_path, which):
    images, masks = dataset(tmp_path, ["a.png"], ["a.png"])
    missing = tmp_path / "nowhere"
    args = (missing, masks) if which == "images" else (images, missing)
    with pytest.raises(FileNotFoundError, match=re.escape(f"does not exist: '{missing}'")):
        pair_files(*args)


def test_folder_argument_type(tmp_path):
    with pytest.raises(TypeError, match=r"argument `images_dir`.*received 3"):
        pair_files(3, tmp_path)


def test_hidden_files_notes_and_subfolders_are_skipped(tmp_path):
    images, masks = dataset(tmp_path, ["a.png"], ["a.png"])
    (images / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (images / "notes.txt").write_text("taken on 2024-05-01")
    (masks / ".DS_Store").write_bytes(b"\x00")
    (masks / "thumbs").mkdir()
    pairs, skipped = pair_files(images, masks)
    assert [(i.name, m.name) for i, m in pairs] == [("a.png", "a.png")]
    assert skipped == 4


def test_model_load_dataset_reports_pairs(tmp_path, capsys):
    images, masks = dataset(tmp_path, ["a.jpg", "b.jpg"], ["a.png", "b.png"])
    (images / ".DS_Store").write_bytes(b"\x00")
    model = make_model(tmp_path / "state", debug=True, network=False)
    model.load_dataset_from_directory_with_segmentation_masks(str(images), str(masks))
    out = capsys.readouterr().out
    assert "Found 2 image/mask pairs" in out and "(1 non-image entries skipped)" in out


# ------------------------------------------------------------------------------------------ decoding
def test_read_grey_rgb_rgba_bmp_jpeg(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    colour = rgb()
    rgba = np.dstack([colour, np.full((8, 8), 7, np.uint8)])
    assert np.array_equal(read_image(write(tmp_path / "g.png", grey)), grey[:, :, None])
    assert np.array_equal(read_image(write(tmp_path / "c.png", colour)), colour)
    assert np.array_equal(read_image(write(tmp_path / "c.png", rgba)), colour)  # alpha dropped
    assert np.array_equal(read_image(write(tmp_path / "c.bmp", colour)), colour)
    jpeg = read_image(write(tmp_path / "c.jpg", colour, quality=95))
    assert jpeg.shape == (8, 8, 3) and jpeg.dtype == np.uint8


def test_read_16_bit_png(tmp_path):
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    path = tmp_path / "d.png"
    Image.fromarray(deep).save(path)
    out = read_image(path)
    assert out.dtype == np.uint16 and out.shape == (8, 8, 1)
    assert np.array_equal(out[:, :, 0], deep)


def test_read_tiff_with_tifffile(tmp_path):
    colour = rgb()
    tifffile.imwrite(tmp_path / "c.tif", colour, photometric="rgb")
    deep = np.arange(64, dtype=np.uint16).reshape(8, 8) * 900
    tifffile.imwrite(tmp_path / "d.tiff", deep)
    assert np.array_equal(read_image(tmp_path / "c.tif"), colour)
    out = read_image(tmp_path / "d.tiff")
    assert out.dtype == np.uint16 and np.array_equal(out[:, :, 0], deep)


def test_all_formats_load_through_one_dataset(tmp_path):
    colour = rgb(8, 8)
    root = tmp_path / "mixed"
    write(root / "images" / "grey.png", colour[:, :, 0])
    write(root / "images" / "rgba.png", np.dstack([colour, np.full((8, 8), 255, np.uint8)]))
    write(root / "images" / "bitmap.bmp", colour)
    Image.fromarray(colour[:, :, 0].astype(np.uint16) * 257).save(root / "images" / "deep.png")
    tifffile.imwrite(root / "images" / "tiff.tif", colour, photometric="rgb")
    for stem in ("grey", "rgba", "bitmap", "deep", "tiff"):
        write(root / "masks" / f"{stem}.png", mask())
    pairs, _ = pair_files(root / "images", root / "masks")
    with pytest.warns(UserWarning, match=r"mix colour modes \(RGB 2, grey 2, RGBA 1\)") as caught:
        images, masks, report = load_pairs(
            pairs, depth=3, num_classes=2, size=(8, 8), resize=False, crop_pad=False
        )
    message = str(caught[0].message)
    assert "grey (2): grey repeated into R, G and B: deep.png, grey.png" in message
    assert "RGBA (1): alpha dropped: rgba.png" in message
    assert report.pairs == 5
    by_name = {image_path.stem: image for (image_path, _), image in zip(pairs, images)}
    assert by_name["deep"].dtype == torch.float32  # 16-bit stays exact as float
    assert by_name["grey"].dtype == torch.uint8 and by_name["grey"].shape == (3, 8, 8)
    # The grey image repeated to 3 channels, and the 16-bit copy of it, hold the same picture.
    torch.testing.assert_close(by_name["deep"], by_name["grey"].float() / 255.0)
    assert torch.equal(by_name["rgba"], by_name["bitmap"])
    assert torch.equal(by_name["tiff"], by_name["bitmap"])
    for m in masks:
        assert set(m.unique().tolist()) == {0, 1}


def test_binary_mask_threshold_is_above_127(tmp_path):
    values = np.array([[0, 1, 127, 128, 200, 255]], dtype=np.uint8)
    out, zero_one = read_binary_mask(write(tmp_path / "m.png", values))
    assert out.tolist() == [[0, 0, 0, 1, 1, 1]] and not zero_one


def test_zero_one_masks_are_accepted(tmp_path):
    out, zero_one = read_binary_mask(write(tmp_path / "m.png", np.array([[0, 1, 1, 0]], dtype=np.uint8)))
    assert out.tolist() == [[0, 1, 1, 0]] and zero_one


def test_colour_and_16_bit_masks(tmp_path):
    colour = np.zeros((1, 3, 3), dtype=np.uint8)
    colour[0, 1, 0] = 200  # any channel above 127
    colour[0, 2] = (100, 100, 100)
    assert read_binary_mask(write(tmp_path / "c.png", colour))[0].tolist() == [[0, 1, 0]]
    deep = np.array([[0, 30000, 40000]], dtype=np.uint16)
    path = tmp_path / "d.png"
    Image.fromarray(deep).save(path)
    assert read_binary_mask(path)[0].tolist() == [[0, 0, 1]]


def test_image_mask_size_mismatch_names_both_sizes(tmp_path):
    write(tmp_path / "images" / "a.png", rgb(8, 8))
    write(tmp_path / "masks" / "a.png", mask(8, 6))
    pairs, _ = pair_files(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(ValueError, match=r"image '.*a\.png' is 8x8 \(HxW\) but its mask '.*a\.png' is 8x6"):
        load_pairs(pairs, 3, 2, (8, 8), resize=True, crop_pad=False)


def test_truncated_png_is_named(tmp_path):
    images, masks = dataset(tmp_path, ["a.png", "b.png"], ["a.png", "b.png"], h=32, w=32)
    data = (images / "b.png").read_bytes()
    (images / "b.png").write_bytes(data[: len(data) // 2])
    pairs, _ = pair_files(images, masks)
    with pytest.raises(ValueError, match=r"(?s)1 problem\(s\).*Cannot read image file '.*b\.png'"):
        load_pairs(pairs, 3, 2, (32, 32), resize=False, crop_pad=False)
    with pytest.raises(ImageReadError, match=re.escape(str(images / "b.png"))):
        read_image(images / "b.png")


def test_missing_image_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "gone.png"))):
        read_image(tmp_path / "gone.png")


def test_every_problem_is_listed_at_once(tmp_path):
    images, masks = dataset(tmp_path, ["a.png", "b.png", "c.png"], ["a.png", "b.png", "c.png"])
    (images / "a.png").write_bytes(b"not a png")
    write(masks / "b.png", mask(8, 4))
    pairs, _ = pair_files(images, masks)
    with pytest.raises(ValueError, match=r"2 problem\(s\)") as info:
        load_pairs(pairs, 3, 2, (8, 8), resize=False, crop_pad=False)
    assert "a.png" in str(info.value) and "b.png" in str(info.value)


# ------------------------------------------------------------------------------------------ fitting to the network size
def test_resize_keeps_mask_binary(tmp_path):
    root = tmp_path / "big"
    image = rgb(40, 50)
    m = np.zeros((40, 50), dtype=np.uint8)
    m[10:30, 5:25] = 255
    write(root / "images" / "a.png", image)
    write(root / "masks" / "a.png", m)
    pairs, _ = pair_files(root / "images", root / "masks")
    images, masks, _ = load_pairs(pairs, 3, 2, (16, 20), resize=True, crop_pad=False)
    assert images[0].shape == (3, 16, 20) and images[0].dtype == torch.uint8
    assert masks[0].shape == (16, 20)
    assert set(masks[0].unique().tolist()) == {0, 1}
    # Nearest neighbour: the rectangle lands where it was, scaled by 0.4.
    assert masks[0][4:12, 2:10].all() and masks[0].sum() == 8 * 8


def test_crop_and_pad_are_centred(tmp_path):
    root = tmp_path / "cp"
    big = np.zeros((12, 12), dtype=np.uint8)
    big[2:10, 2:10] = 200  # the centre 8x8
    write(root / "images" / "big.png", big)
    write(root / "masks" / "big.png", np.where(big > 0, 255, 0).astype(np.uint8))
    small = np.full((4, 6), 100, dtype=np.uint8)
    write(root / "images" / "small.png", small)
    write(root / "masks" / "small.png", np.full((4, 6), 255, dtype=np.uint8))
    pairs, _ = pair_files(root / "images", root / "masks")
    images, masks, _ = load_pairs(pairs, 1, 2, (8, 8), resize=False, crop_pad=True)
    big_image, small_image = images
    big_mask, small_mask = masks
    assert (big_image == 200).all() and (big_mask == 1).all()  # cropped to exactly the centre
    assert small_image.shape == (1, 8, 8)
    assert (small_image[0, 2:6, 1:7] == 100).all() and small_image.sum() == 100 * 24
    # Padded mask pixels are marked 'ignore' so they do not count in the loss.
    assert (small_mask[2:6, 1:7] == 1).all()
    assert int((small_mask == IGNORE_INDEX).sum()) == 64 - 24


def test_wrong_size_without_resize_suggests_set_resize_images(tmp_path):
    images, masks = write_synthetic_dataset(tmp_path / "data", n_images=4, height=32, width=32, seed=1)
    model = make_model(tmp_path / "state", size=64)
    model.set_test_split(0.25)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    with pytest.raises(
        ValueError, match=r"is 32x32 but the network input is 64x64: call set_resize_images\(True\)"
    ):
        model.begin_training()


def test_all_background_masks_are_refused(tmp_path):
    images, masks = dataset(tmp_path, ["a.png", "b.png"], [])
    for name in ("a.png", "b.png"):
        write(masks / name, np.zeros((8, 8), dtype=np.uint8))
    model = make_model(tmp_path / "state", size=8)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    with pytest.raises(ValueError, match=r"Every mask is entirely background"):
        model.begin_training()


# ------------------------------------------------------------------------------------------ splits
NAMES = [f"plant_{i:02d}.png" for i in range(20)]


def test_split_is_a_reproducible_partition():
    a = make_split(NAMES, 0.2, 0.1, seed=3)
    assert a == make_split(NAMES, 0.2, 0.1, seed=3)
    assert (len(a["test"]), len(a["validation"]), len(a["train"])) == (4, 2, 14)
    assert sorted(a["test"] + a["validation"] + a["train"]) == NAMES
    assert make_split(NAMES, 0.2, 0.1, seed=4)["test"] != a["test"]


def test_zero_fractions_turn_splits_off():
    split = make_split(NAMES, 0.0, 0.0, seed=0)
    assert split == {"test": [], "validation": [], "train": NAMES}


def test_small_fractions_still_give_one_image():
    split = make_split(NAMES[:5], 0.01, 0.01, seed=0)
    assert (len(split["test"]), len(split["validation"])) == (1, 1)


def test_warns_when_less_than_half_is_left_for_training():
    with pytest.warns(UserWarning, match=r"Only 8 of 20 images are left for training"):
        make_split(NAMES, 0.3, 0.3, seed=0)


def test_splits_that_leave_nothing_to_train_on():
    with pytest.raises(ValueError, match=r"leave no training images out of 2"):
        make_split(NAMES[:2], 0.5, 0.5, seed=0)


def test_reuse_split_keeps_known_names_and_places_new_ones():
    saved = make_split(NAMES[:10], 0.2, 0.0, seed=0)
    split, notes = reuse_split(saved, NAMES[1:15], 0.2, 0.0, seed=0)
    assert set(saved["test"]) - {NAMES[0]} <= set(split["test"])
    assert sorted(split["test"] + split["validation"] + split["train"]) == NAMES[1:15]
    assert any("5 new image(s)" in note for note in notes)
    assert any("1 image(s) of the saved split are no longer in the dataset" in note for note in notes)


def split_model(save_dir: Path, seed: int, data: tuple[Path, Path], debug: bool = False):
    model = make_model(save_dir, seed=seed, network=False, debug=debug)
    model.set_test_split(0.25)
    model.set_validation_split(0.0)
    model.add_input_layer()
    model.add_output_layer()  # a 1x1 convolution: the split is what is under test
    model.load_dataset_from_directory_with_segmentation_masks(*data)
    return model


def read_split(save_dir: Path) -> dict:
    return json.loads((save_dir / "split.json").read_text())


def test_model_saves_and_reuses_the_split(tmp_path, tiny_dataset):
    state = tmp_path / "state"
    split_model(state, 0, tiny_dataset).begin_training()
    first = read_split(state)
    assert len(first["test"]) == 2 and len(first["train"]) == 6 and first["validation"] == []
    # Same seed, other folder: the same partition.
    split_model(tmp_path / "other", 0, tiny_dataset).begin_training()
    assert read_split(tmp_path / "other") == first
    # A second model on the same data and save_dir reuses it even with another seed.
    second = split_model(state, 99, tiny_dataset)
    second.begin_training()
    assert read_split(state) == first
    assert second.split["test"] == first["test"]
    # force_split_shuffle(True) redraws it.
    third = split_model(state, 99, tiny_dataset)
    third.force_split_shuffle(True)
    third.begin_training()
    assert read_split(state)["test"] != first["test"]
    assert read_split(state) == make_split(sorted(p.name for p in tiny_dataset[0].iterdir()), 0.25, 0.0, 99)


def test_model_without_test_split_skips_the_test_evaluation(tmp_path, tiny_dataset, capsys):
    model = split_model(tmp_path / "state", 0, tiny_dataset, debug=True)
    model.set_test_split(0.0)
    assert model.begin_training(return_test_loss=True) is None
    assert read_split(tmp_path / "state")["test"] == []
    assert "skipping the test evaluation" in capsys.readouterr().out


def test_model_warns_when_less_than_half_is_left_for_training(tmp_path, tiny_dataset):
    model = split_model(tmp_path / "state", 0, tiny_dataset)
    model.set_test_split(0.4)
    model.set_validation_split(0.3)
    with pytest.warns(UserWarning, match=r"Only 3 of 8 images are left for training"):
        model.begin_training()


def test_model_errors_name_dpps_arguments(tmp_path):
    # DPP's users call load_dataset_from_directory_with_segmentation_masks(dirname, seg_dirname): the message
    # must name those, not the loader's internal parameter names.
    images, masks = dataset(tmp_path, ["a.png"], ["a.png"])
    model = make_model(tmp_path / "state")
    with pytest.raises(FileNotFoundError, match=r"Folder given as `seg_dirname` does not exist"):
        model.load_dataset_from_directory_with_segmentation_masks(images, tmp_path / "nowhere")
    with pytest.raises(TypeError, match=r"argument `dirname`.*received 3"):
        model.load_dataset_from_directory_with_segmentation_masks(3, masks)
