"""Issues 17 (points 3, 4) and 20 (point 7): masks named with a suffix, one folder for both, folders of photos.

Through the public API (``load_dataset_from_directory_with_segmentation_masks``, ``tools.segment_vegetation``,
the model's forward passes), the TOML config and the CLI.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_model
from PIL import Image

from deepplantphenomics import tools
from deepplantphenomics.cli import main
from deepplantphenomics.config import TrainingConfig
from deepplantphenomics.data.dataset import MASK_SUFFIXES, pair_files

GREEN, SOIL = (40, 170, 50), (120, 85, 50)


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def photo(seed: int, size: int = 16) -> np.ndarray:
    """A plant block (its place depends on ``seed``) on soil."""
    out = np.empty((size, size, 3), np.uint8)
    out[:] = SOIL
    top = seed % (size // 2)
    out[top : top + size // 2, 2 : size // 2] = GREEN
    return out


def plant(seed: int, size: int = 16) -> np.ndarray:
    return (photo(seed, size)[:, :, 1] == GREEN[1]).astype(np.uint8) * 255


def write(folder: Path, names: list[str], size: int = 16) -> Path:
    """Photos (names without a mask-like suffix) and masks, each drawn from the digits in its name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        digits = re.search(r"\d+", name)
        seed = int(digits.group()) if digits else ord(name[0])
        is_mask = (
            any(Path(name).stem.lower().endswith(s) for s in (*MASK_SUFFIXES, "-m")) and "rgb" not in name
        )
        Image.fromarray(plant(seed, size) if is_mask else photo(seed, size)).save(folder / name)
    return folder


def named(pairs) -> list[tuple[str, str]]:
    return [(image.name, mask.name) for image, mask in pairs]


# ------------------------------------------------------------------------------------- 17.3 suffix conventions
@pytest.mark.parametrize("suffix", MASK_SUFFIXES)
def test_each_mask_suffix_pairs_automatically(tmp_path, suffix):
    images = write(tmp_path / "images", ["001.png", "002.jpg"])
    masks = write(tmp_path / "masks", [f"001{suffix}.png", f"002{suffix}.png"])
    assert named(pair_files(images, masks)[0]) == [
        ("001.png", f"001{suffix}.png"),
        ("002.jpg", f"002{suffix}.png"),
    ]


@pytest.mark.parametrize(
    ("photo_suffix", "mask_suffix"), [("_rgb", "_fg"), ("_rgb", "_label"), ("_img", "_gt")]
)
def test_photos_with_a_suffix_pair_with_masks_with_another(tmp_path, photo_suffix, mask_suffix):
    images = write(tmp_path / "images", [f"plant001{photo_suffix}.png", f"plant002{photo_suffix}.png"])
    masks = write(tmp_path / "masks", [f"plant001{mask_suffix}.png", f"plant002{mask_suffix}.png"])
    assert named(pair_files(images, masks)[0]) == [
        (f"plant001{photo_suffix}.png", f"plant001{mask_suffix}.png"),
        (f"plant002{photo_suffix}.png", f"plant002{mask_suffix}.png"),
    ]


def test_suffix_case_does_not_matter(tmp_path):
    images = write(tmp_path / "images", ["001.png"])
    masks = write(tmp_path / "masks", ["001_MASK.png"])
    assert named(pair_files(images, masks)[0]) == [("001.png", "001_MASK.png")]


def test_the_debug_log_names_the_convention_and_training_gets_the_right_masks(tmp_path, capsys):
    images = write(tmp_path / "images", [f"{i:03d}.png" for i in range(4)], size=64)
    masks = write(tmp_path / "masks", [f"{i:03d}_mask.png" for i in range(4)], size=64)
    model = make_model(tmp_path / "state", debug=True)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    out = capsys.readouterr().out
    assert "Found 4 image/mask pairs" in out
    assert "paired by mask suffix '_mask' (e.g. '000.png' with '000_mask.png')" in out


def test_an_unknown_suffix_is_suggested_and_mask_suffix_pairs_it(tmp_path):
    images = write(tmp_path / "images", ["001.png", "002.png"])
    masks = write(tmp_path / "masks", ["001-m.png", "002-m.png"])
    model = make_model(tmp_path / "state", network=False)
    with pytest.raises(ValueError, match=r"the masks look named with the suffix '-m': pass mask_suffix='-m'"):
        model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks, mask_suffix="-m")
    assert named(pair_files(images, masks, mask_suffix="-m")[0]) == [
        ("001.png", "001-m.png"),
        ("002.png", "002-m.png"),
    ]


def test_a_folder_mixing_suffixes_is_ambiguous_and_says_so(tmp_path):
    images = write(tmp_path / "images", ["001.png", "002.png", "003.png"])
    masks = write(tmp_path / "masks", ["001_mask.png", "002_mask.png", "003_gt.png"])
    with pytest.raises(ValueError) as info:
        pair_files(images, masks)
    message = str(info.value)
    assert "the mask names use several suffixes ('_mask': 2, '_gt': 1): use one per folder" in message
    assert "by mask suffix '_mask': 1 image(s) without a mask" in message and "003.png" in message


def test_two_masks_for_one_image_are_refused(tmp_path):
    images = write(tmp_path / "images", ["001.png"])
    masks = write(tmp_path / "masks", ["001_mask.png", "001_gt.png"])
    with pytest.raises(ValueError, match=r"several suffixes \('_gt': 1, '_mask': 1\)"):
        pair_files(images, masks)


def test_pairing_by_name_is_unchanged_and_wins(tmp_path):
    images = write(tmp_path / "images", ["a_mask.png", "b_mask.png"])  # odd photo names, identical mask names
    masks = write(tmp_path / "masks", ["a_mask.png", "b_mask.png"])
    assert named(pair_files(images, masks)[0]) == [("a_mask.png", "a_mask.png"), ("b_mask.png", "b_mask.png")]


@pytest.mark.parametrize("bad", ["", "a/b"])
def test_mask_suffix_is_checked(tmp_path, bad):
    images = write(tmp_path / "images", ["001.png"])
    with pytest.raises(ValueError, match=r"argument `mask_suffix`: expected the end of a mask's name stem"):
        pair_files(images, images, mask_suffix=bad)
    with pytest.raises(TypeError, match=r"argument `mask_suffix`: expected a str"):
        pair_files(images, images, mask_suffix=3)


def test_cli_evaluate_takes_mask_suffix_and_suggests_it(tmp_path):
    images = write(tmp_path / "images", ["001.png", "002.png"])
    masks = write(tmp_path / "masks", ["001-m.png", "002-m.png"])
    result = run("evaluate", "--images", images, "--masks", masks, "--method", "exg")
    assert result.exit_code == 1
    assert "the masks look named with the suffix '-m': pass --mask-suffix -m" in error_lines(result)[0]
    result = run("evaluate", "--images", images, "--masks", masks, "--method", "exg", "--mask-suffix", "-m")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("00")]
    assert [row[0] for row in rows] == ["001.png", "002.png"] and all(float(row[1]) == 1.0 for row in rows)


def test_config_takes_data_mask_suffix(tmp_path):
    write(tmp_path / "data" / "images", [f"{i:03d}.png" for i in range(4)], size=64)
    write(tmp_path / "data" / "masks", [f"{i:03d}-m.png" for i in range(4)], size=64)
    section = {
        "settings": {"image_dimensions": [64, 64, 3]},
        "data": {"images": "data/images", "masks": "data/masks"},
        "network": {"predefined": "fcn-18"},
        "model": {"save_dir": "state"},
    }
    with pytest.raises(ValueError, match=r'pass data\.mask_suffix = "-m"'):
        TrainingConfig.from_dict(section, base_dir=tmp_path).build_model()
    section["data"]["mask_suffix"] = "-m"
    model = TrainingConfig.from_dict(section, base_dir=tmp_path).build_model()
    probabilities = model.forward_pass_with_file_inputs(tmp_path / "data" / "images")
    assert probabilities.shape == (4, 64, 64, 1)


# ------------------------------------------------------------------------------------- 20.7 one folder for both
def test_same_folder_with_mask_suffix_pairs_and_never_a_file_with_itself(tmp_path):
    folder = write(tmp_path / "both", ["001.jpg", "001_mask.png", "002.jpg", "002_mask.png"])
    pairs, _ = pair_files(folder, folder)
    assert named(pairs) == [("001.jpg", "001_mask.png"), ("002.jpg", "002_mask.png")]
    assert all(image != mask for image, mask in pairs)


def test_same_folder_without_a_suffix_is_refused_saying_why(tmp_path):
    folder = write(
        tmp_path / "both", ["001.jpg", "001.png", "002.jpg", "002.png"]
    )  # photos and masks side by side
    model = make_model(tmp_path / "state", network=False)
    with pytest.raises(ValueError) as info:
        model.load_dataset_from_directory_with_segmentation_masks(folder, folder)
    message = str(info.value)
    assert (
        f"`dirname` and `seg_dirname` are the same folder '{folder}': a file is never its own mask" in message
    )
    assert (
        "the masks must carry a name suffix (_mask, _masks, _fg, _label, _labels, _seg, _gt, _annotation"
        in message
    )


def test_cli_evaluate_with_one_folder(tmp_path):
    folder = write(tmp_path / "both", ["001.png", "001_gt.png", "002.png", "002_gt.png"])
    result = run("evaluate", "--images", folder, "--masks", folder, "--method", "exg")
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.output.splitlines() if line.startswith("00")]
    assert rows == ["001.png", "002.png"]  # the masks were not scored as photos
    same = write(tmp_path / "same", ["001.jpg", "001.png"])
    result = run("evaluate", "--images", same, "--masks", same, "--method", "exg")
    assert result.exit_code == 1 and "`--images` and `--masks` are the same folder" in error_lines(result)[0]


# ------------------------------------------------------------------------------------- 17.4 folders of photos
@pytest.fixture
def photos(tmp_path) -> Path:
    folder = write(tmp_path / "photos", ["b.png", "a.jpg"])
    write(folder / "sub", ["c2.png"])
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    return folder


def test_segment_vegetation_takes_a_folder_sorted(photos):
    files = [photos / "a.jpg", photos / "b.png"]
    expected = tools.segment_vegetation(files, method="exg")
    for given in (photos, str(photos), [photos]):
        masks = tools.segment_vegetation(given, method="exg")
        assert len(masks) == 2 and all(np.array_equal(m, e) for m, e in zip(masks, expected))


def test_segment_vegetation_recursive(photos):
    masks = tools.segment_vegetation(photos, method="exg", recursive=True)
    expected = tools.segment_vegetation(
        [photos / "a.jpg", photos / "b.png", photos / "sub" / "c2.png"], method="exg"
    )
    assert len(masks) == 3 and all(np.array_equal(m, e) for m, e in zip(masks, expected))
    with pytest.raises(TypeError, match=r"argument `recursive`: expected a bool"):
        tools.segment_vegetation(photos, method="exg", recursive="yes")


def test_missing_path_says_no_such_file_or_folder(tmp_path, photos):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(f"No such file or folder: '{missing}'")):
        tools.segment_vegetation(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(f"No such file or folder: '{missing}'")):
        tools.segment_vegetation([photos / "a.jpg", missing])
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ValueError, match=r"Folder '.*empty' given in `files` holds no images .*recursive=True"
    ):
        tools.segment_vegetation(tmp_path / "empty")


def test_model_forward_passes_take_a_folder(tmp_path, photos):
    model = make_model(tmp_path / "state", size=16)
    model.set_resize_images(True)
    by_files = model.forward_pass_with_file_inputs([photos / "a.jpg", photos / "b.png"])
    assert np.array_equal(model.forward_pass_with_file_inputs(photos), by_files)
    masks = model.forward_pass_with_interpreted_outputs(photos, recursive=True)
    assert masks.shape == (3, 16, 16)
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        model.forward_pass_with_interpreted_outputs(tmp_path / "nowhere")


def test_cli_segment_recursive(tmp_path, photos):
    out = tmp_path / "out"
    result = run("segment", photos, "--out", out, "--method", "exg")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*_mask.png")) == ["a_mask.png", "b_mask.png"]
    result = run("segment", photos, "--out", tmp_path / "out2", "--method", "exg", "--recursive")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out2").glob("*_mask.png")) == [
        "a_mask.png",
        "b_mask.png",
        "c2_mask.png",
    ]
    result = run("segment", tmp_path / "nowhere", "--out", tmp_path / "out3", "--method", "exg")
    assert result.exit_code == 1
    assert f"Error: No such file or folder: '{tmp_path / 'nowhere'}'." in result.stderr


def test_cli_measure_takes_mask_suffix_and_suggests_it(tmp_path):
    photos = write(tmp_path / "photos", ["001.png", "002.png"])
    masks = write(tmp_path / "masks", ["001-m.png", "002-m.png"])
    result = run("measure", photos, "--masks", masks, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "the masks look named with the suffix '-m': pass --mask-suffix -m" in error_lines(result)[0]
    result = run("measure", photos, "--masks", masks, "--mask-suffix", "-m", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "out" / "photos.csv").read_text(encoding="utf-8").splitlines()
    assert [row.split(",")[:4] for row in rows[1:]] == [
        [str(photos / "001.png"), "16", "16", "1"],
        [str(photos / "002.png"), "16", "16", "1"],
    ]
    result = run("measure", photos, "--mask-suffix", "-m", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "--mask-suffix names the masks of --masks DIR" in result.output
