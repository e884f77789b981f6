"""Tests for the ``dpp`` command line (deepplantphenomics.cli) and training configs (deepplantphenomics.config)."""

from __future__ import annotations

import csv
import inspect
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

import deepplantphenomics as dpp
from deepplantphenomics import tools
from deepplantphenomics.cli import expand_inputs, main, one_line, output_stems
from deepplantphenomics.config import LAYER_TYPES, SETTING_KEYS, TrainingConfig, load_config
from deepplantphenomics.data.io import read_binary_mask, read_image
from deepplantphenomics.metrics import binary_scores
from deepplantphenomics.postprocess import apply_mask, overlay_mask, to_uint8_rgb
from deepplantphenomics.synthetic import write_synthetic_dataset

WEIGHTS = Path(dpp.__file__).parent / "weights" / "vegetation" / "model.safetensors"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture
def dataset(tmp_path):
    """Three 64x64 synthetic plant images with their 0/255 masks."""
    return write_synthetic_dataset(tmp_path / "data", 3, 64, 64, seed=0)


def save_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# ============================================================================ help, version, errors
def test_help_lists_every_command():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("segment", "evaluate", "train", "predict"):
        assert command in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"dpp {dpp.__version__}"


def test_python_m_help_runs_in_a_subprocess():
    completed = subprocess.run(
        [sys.executable, "-m", "deepplantphenomics", "--help"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "segment" in completed.stdout and "Usage:" in completed.stdout


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("plain", "plain"),
        (
            "Cannot pair images with masks:\n  - a without mask\n  - b without image",
            "Cannot pair images with masks: a without mask; b without image",
        ),
        ("", "ValueError"),
    ],
)
def test_one_line(message, expected):
    assert one_line(ValueError(message)) == expected


def test_library_error_is_one_line_without_traceback(tmp_path):
    image = save_image(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    result = run("predict", tmp_path / "no_state", image, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert error_lines(result) == [f"Error: Saved state folder does not exist: '{tmp_path / 'no_state'}'."]


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_dpp_debug_shows_the_traceback(tmp_path, monkeypatch, value):
    monkeypatch.setenv("DPP_DEBUG", value)
    with pytest.raises(FileNotFoundError, match="Config file not found"):
        run("train", tmp_path / "absent.toml")


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_dpp_debug_off_values_keep_the_one_line_error(tmp_path, monkeypatch, value):
    monkeypatch.setenv("DPP_DEBUG", value)
    result = run("train", tmp_path / "absent.toml")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert error_lines(result) and "Config file not found" in error_lines(result)[0]


# ============================================================================ inputs and names
def test_output_stems_known_answers(tmp_path):
    cases = [
        (["a/x.png", "b/y.png"], ["x", "y"]),
        (["a/x.png", "b/x.jpg"], ["a_x", "b_x"]),
        (["a/x.png", "a/x.jpg"], ["x_png", "x_jpg"]),
        (["a/X.png", "b/x.png"], ["a_X", "b_x"]),
        (["p/q/x.png", "p/r/s/x.png", "p/t.png"], ["q_x", "r_s_x", "t"]),
        # A generated name meeting another file's own stem gets a number.
        (["a/x.png", "b/x.png", "c/a_x.png"], ["a_x", "b_x", "a_x_2"]),
    ]
    for given, expected in cases:
        assert output_stems([tmp_path / p for p in given]) == expected, given


def test_expand_inputs_sorts_folders_skips_non_images_and_repeats(tmp_path):
    folder = tmp_path / "imgs"
    for name in ("b.png", "a.jpg", "notes.txt", ".hidden.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs([folder, folder / "a.jpg", tmp_path / "missing.png", tmp_path / "empty"])
    assert files == [folder / "a.jpg", folder / "b.png"]
    assert [p for p, _ in problems] == [tmp_path / "missing.png", tmp_path / "empty"]
    assert "No such file or folder" in problems[0][1] and "holds no images" in problems[1][1]


# ============================================================================ segment
def test_segment_writes_masks_cutouts_overlays_and_csv(dataset, tmp_path):
    images_dir, _ = dataset
    out = tmp_path / "out"
    result = run("segment", images_dir, "--out", out, "--method", "exg", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "results.csv")
    files = sorted(images_dir.iterdir())
    assert list(rows[0]) == ["file", "width", "height", "plant_pixels", "plant_fraction", "quality"]
    assert [r["file"] for r in rows] == [str(f) for f in files]
    for row, path in zip(rows, files):
        image = read_image(path)
        expected = tools.segment_vegetation([path], method="exg")[0]
        mask = png(out / f"{path.stem}_mask.png")
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask, (expected > 0).astype(np.uint8) * 255)
        np.testing.assert_array_equal(png(out / f"{path.stem}_cutout.png"), apply_mask(image, mask))
        np.testing.assert_array_equal(png(out / f"{path.stem}_overlay.png"), overlay_mask(image, mask))
        pixels = int(np.count_nonzero(mask))
        assert 0 < pixels < 64 * 64
        assert (int(row["width"]), int(row["height"]), int(row["plant_pixels"])) == (64, 64, pixels)
        assert float(row["plant_fraction"]) == pixels / (64 * 64)


def test_segment_reports_bad_files_and_processes_the_others(dataset, tmp_path):
    images_dir, _ = dataset
    good = images_dir / "plant_0000.png"
    missing = tmp_path / "missing.png"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not a PNG")
    out = tmp_path / "out"
    result = run("segment", missing, good, corrupt, "--out", out, "--method", "exg")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    rows = read_csv(out / "results.csv")
    assert [r["file"] for r in rows] == [str(good)]
    assert (out / "plant_0000_mask.png").is_file()
    errors = error_lines(result)
    assert any(str(missing) in line and "No such file or folder" in line for line in errors)
    assert any(str(corrupt) in line and "Cannot read" in line for line in errors)
    # The closing summary names both files.
    assert str(missing) in errors[-1] and str(corrupt) in errors[-1] and "2 of 3" in errors[-1]


def test_segment_only_missing_files_writes_an_empty_table(tmp_path):
    out = tmp_path / "out"
    result = run("segment", tmp_path / "nothing.jpg", "--out", out, "--method", "cive")
    assert result.exit_code == 1
    assert read_csv(out / "results.csv") == []
    assert "1 of 1 input(s) could not be processed" in error_lines(result)[-1]


def test_segment_colliding_stems_get_distinct_outputs(tmp_path):
    rng = np.random.default_rng(1)
    first = save_image(tmp_path / "a" / "x.png", rng.integers(0, 256, (32, 40, 3), dtype=np.uint8))
    second = save_image(tmp_path / "b" / "x.jpg", rng.integers(0, 256, (24, 16, 3), dtype=np.uint8))
    out = tmp_path / "out"
    result = run("segment", first, second, "--out", out, "--method", "exg")
    assert result.exit_code == 0, result.output
    assert png(out / "a_x_mask.png").shape == (32, 40)
    assert png(out / "b_x_mask.png").shape == (24, 16)
    assert [(r["file"], r["width"], r["height"]) for r in read_csv(out / "results.csv")] == [
        (str(first), "40", "32"),
        (str(second), "16", "24"),
    ]


def test_segment_16_bit_colour_image(tmp_path):
    rng = np.random.default_rng(6)
    image = rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    image[5:15, 6:18, 1] = 65535  # a green patch
    import tifffile

    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, image)
    out = tmp_path / "out"
    result = run("segment", path, "--out", out, "--method", "exg")
    assert result.exit_code == 0, result.output
    mask = png(out / "deep_mask.png")
    assert mask.shape == (20, 24)
    # Pillow cannot write 16-bit RGB PNGs: the cut-out is 8-bit.
    np.testing.assert_array_equal(png(out / "deep_cutout.png"), apply_mask(to_uint8_rgb(image), mask))


def test_python_m_segment_in_a_subprocess(dataset, tmp_path):
    images_dir, _ = dataset
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "deepplantphenomics", "segment", str(images_dir / "plant_0001.png"),
         "--out", str(out), "--method", "exg"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert len(read_csv(out / "results.csv")) == 1


def test_segment_network_method_with_stand_in_weights(dataset, tmp_path, monkeypatch):
    # The shipped weights may not be trained yet: a seeded stand-in network exercises the same path.
    weights = saved_model(tmp_path / "vegetation")
    (weights / "model_card.json").write_text(json.dumps({"inference": {"scale": 1.0}}), encoding="utf-8")
    monkeypatch.setattr(tools, "WEIGHTS_DIR", weights)
    images_dir, _ = dataset
    out = tmp_path / "out"
    result = run("segment", images_dir, "--out", out, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    files = sorted(images_dir.iterdir())
    for path, expected in zip(files, tools.segment_vegetation(files, check_quality=False)):
        np.testing.assert_array_equal(
            png(out / f"{path.stem}_mask.png"), (expected > 0).astype(np.uint8) * 255
        )
    assert len(read_csv(out / "results.csv")) == 3


def test_segment_network_method_without_weights_fails_once(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "WEIGHTS_DIR", tmp_path / "no_weights")
    images_dir, _ = dataset
    result = run("segment", images_dir, "--out", tmp_path / "out")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and "pretrained vegetation weights are missing" in lines[0]


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="the vegetation network's weights are not trained yet")
@pytest.mark.parametrize("method", ["network", "network-fast"])
def test_segment_with_the_network(dataset, tmp_path, method):
    images_dir, _ = dataset
    out = tmp_path / "out"
    result = run("segment", images_dir / "plant_0002.png", "--out", out, "--method", method)
    assert result.exit_code == 0, result.output
    expected = tools.segment_vegetation([images_dir / "plant_0002.png"], method=method)[0]
    mask = png(out / "plant_0002_mask.png")
    np.testing.assert_array_equal(mask, (expected > 0).astype(np.uint8) * 255)
    assert int(read_csv(out / "results.csv")[0]["plant_pixels"]) == int(expected.sum())


# ============================================================================ evaluate
def test_evaluate_prints_and_saves_binary_scores(dataset, tmp_path):
    images_dir, masks_dir = dataset
    table = tmp_path / "scores.csv"
    result = run("evaluate", "--images", images_dir, "--masks", masks_dir, "--method", "exg", "--csv", table)
    assert result.exit_code == 0, result.output
    rows = read_csv(table)
    assert list(rows[0]) == [
        "file",
        "dice",
        "iou",
        "precision",
        "recall",
        "true_fraction",
        "predicted_fraction",
        "area_ratio",
    ]
    names = sorted(p.name for p in images_dir.iterdir())
    assert [r["file"] for r in rows] == [*names, "mean"]
    expected = []
    for name in names:
        pred = tools.segment_vegetation([images_dir / name], method="exg")[0]
        expected.append(binary_scores(pred, read_binary_mask(masks_dir / name)[0]))
    for row, scores in zip(rows, expected):
        for key in ("dice", "iou", "precision", "recall"):
            assert float(row[key]) == scores[key]
    for key in ("dice", "iou", "precision", "recall"):
        assert float(rows[-1][key]) == pytest.approx(np.mean([s[key] for s in expected]), abs=1e-12)
    # The area figures: plant fraction of prediction and truth, and predicted / true.
    ratios = []
    for row, name in zip(rows, names):
        pred = tools.segment_vegetation([images_dir / name], method="exg")[0] > 0
        truth = read_binary_mask(masks_dir / name)[0] == 1
        assert float(row["true_fraction"]) == truth.mean() and float(row["predicted_fraction"]) == pred.mean()
        ratios.append(pred.sum() / truth.sum())
        assert float(row["area_ratio"]) == pytest.approx(ratios[-1], rel=1e-12)
    assert float(rows[-1]["area_ratio"]) == pytest.approx(np.mean(ratios), rel=1e-12)
    # The printed table shows the same numbers.
    line = next(line for line in result.stdout.splitlines() if line.startswith(names[0]))
    keys = ("dice", "iou", "precision", "recall")
    assert line.split()[1:] == [f"{expected[0][k]:.4f}" for k in keys] + [f"{ratios[0]:.4f}"]
    assert "mean (3 images)" in result.stdout


def test_evaluate_unpaired_folders_is_a_one_line_error(dataset, tmp_path):
    images_dir, masks_dir = dataset
    (masks_dir / "plant_0000.png").unlink()
    result = run("evaluate", "--images", images_dir, "--masks", masks_dir, "--method", "exg")
    assert result.exit_code == 1
    assert len(error_lines(result)) == 1 and "plant_0000.png" in error_lines(result)[0]


def test_evaluate_missing_folder_names_the_option(dataset, tmp_path):
    images_dir, _ = dataset
    result = run("evaluate", "--images", images_dir, "--masks", tmp_path / "nowhere", "--method", "exg")
    assert result.exit_code == 1
    assert error_lines(result) == [
        f"Error: Folder given as `--masks` does not exist: '{tmp_path / 'nowhere'}'."
    ]


def test_evaluate_refuses_method_and_state_together(dataset, tmp_path):
    images_dir, masks_dir = dataset
    result = run(
        "evaluate", "--images", images_dir, "--masks", masks_dir, "--method", "exg", "--state", tmp_path
    )
    assert result.exit_code == 2
    assert "either --method or --state" in result.stderr


# ============================================================================ trained models: predict, evaluate --state
def saved_model(directory: Path, height=32, width=32, classes=2, resize=False, crop_or_pad=False) -> Path:
    """An (untrained, seeded) model saved as a training run would save it."""
    model = dpp.SemanticSegmentationModel(save_dir=directory)
    model.set_image_dimensions(height, width, 3)
    model.set_random_seed(3)
    model.set_num_segmentation_classes(classes)
    model.set_resize_images(resize)
    model.set_crop_or_pad_images(crop_or_pad)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    model.add_output_layer()
    model.save_state()
    return directory


def test_predict_binary_masks_match_the_python_api(tmp_path):
    state_dir = saved_model(tmp_path / "state")
    rng = np.random.default_rng(2)
    files = [
        save_image(tmp_path / "in" / f"img{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        for i in range(3)
    ]
    out = tmp_path / "out"
    result = run("predict", state_dir, tmp_path / "in", "--out", out, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    expected = dpp.load_model(state_dir).forward_pass_with_interpreted_outputs(files)
    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == ["file", "width", "height", "foreground_pixels", "foreground_fraction"]
    for path, want, row in zip(files, expected, rows):
        mask = png(out / f"{path.stem}_mask.png")
        np.testing.assert_array_equal(mask, want)
        assert (out / f"{path.stem}_overlay.png").is_file()
        assert int(row["foreground_pixels"]) == int(np.count_nonzero(mask))
        assert float(row["foreground_fraction"]) == np.count_nonzero(mask) / mask.size


@pytest.mark.parametrize("fit", ["resize", "crop_or_pad"])
def test_predict_masks_come_back_at_each_image_size(tmp_path, fit):
    state_dir = saved_model(tmp_path / "state", resize=fit == "resize", crop_or_pad=fit == "crop_or_pad")
    rng = np.random.default_rng(4)
    big = save_image(tmp_path / "big.png", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    out = tmp_path / "out"
    result = run("predict", state_dir, big, "--out", out)
    assert result.exit_code == 0, result.output
    mask = png(out / "big_mask.png")
    assert mask.shape == (48, 40)
    network_mask = dpp.load_model(state_dir).forward_pass_with_interpreted_outputs([big])[0]
    if fit == "crop_or_pad":
        # The network saw the centre 32x32 crop: that is where its mask goes, the rest is background.
        np.testing.assert_array_equal(mask[8:40, 4:36], network_mask)
        assert mask.sum() == network_mask.sum()
    else:
        assert set(np.unique(mask)) <= {0, 255}


def test_predict_multiclass_writes_class_index_pngs(tmp_path):
    state_dir = saved_model(tmp_path / "state", classes=3)
    image = save_image(
        tmp_path / "img.png", np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    )
    out = tmp_path / "out"
    result = run("predict", state_dir, image, "--out", out)
    assert result.exit_code == 0, result.output
    mask = png(out / "img_mask.png")
    np.testing.assert_array_equal(
        mask, dpp.load_model(state_dir).forward_pass_with_interpreted_outputs([image])[0]
    )
    assert mask.max() < 3
    row = read_csv(out / "results.csv")[0]
    counts = [int(row[f"class_{c}_pixels"]) for c in range(3)]
    assert counts == [int(np.count_nonzero(mask == c)) for c in range(3)]
    assert png(out / "img_overlay.png").shape == (32, 32, 3)


def test_predict_reports_a_corrupt_file_and_goes_on(tmp_path):
    state_dir = saved_model(tmp_path / "state")
    good = save_image(tmp_path / "good.png", np.zeros((32, 32, 3), np.uint8))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 truncated")
    result = run("predict", state_dir, corrupt, good, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert [r["file"] for r in read_csv(tmp_path / "out" / "results.csv")] == [str(good)]
    assert any(str(corrupt) in line for line in error_lines(result)[:-1])


def test_evaluate_a_trained_model(dataset, tmp_path):
    images_dir, masks_dir = dataset
    state_dir = saved_model(tmp_path / "state", resize=True)
    table = tmp_path / "scores.csv"
    result = run(
        "evaluate", "--images", images_dir, "--masks", masks_dir, "--state", state_dir, "--csv", table
    )
    assert result.exit_code == 0, result.output
    model = dpp.load_model(state_dir)
    rows = read_csv(table)
    for row in rows[:-1]:
        pred = model.forward_pass_with_interpreted_outputs([images_dir / row["file"]])[0]
        from deepplantphenomics.postprocess import resize_mask

        scores = binary_scores(resize_mask(pred, 64, 64), read_binary_mask(masks_dir / row["file"])[0])
        assert float(row["dice"]) == scores["dice"] and float(row["recall"]) == scores["recall"]


def test_evaluate_refuses_a_multiclass_model(dataset, tmp_path):
    images_dir, masks_dir = dataset
    state_dir = saved_model(tmp_path / "state", classes=3, resize=True)
    result = run("evaluate", "--images", images_dir, "--masks", masks_dir, "--state", state_dir)
    assert result.exit_code == 1
    assert "3 classes" in error_lines(result)[0]


# ============================================================================ train from a config
TOML = """
[model]
save_dir = "{save_dir}"
save_checkpoints = true
report_rate = 1

[settings]
number_of_threads = 1
batch_size = 2
image_dimensions = [32, 32, 3]
test_split = 0.25
validation_split = 0.0
random_seed = 11
learning_rate = 0.01
weight_initializer = "normal"
maximum_training_epochs = {epochs}
augmentation_flip_horizontal = true
augmentation_crop = {{ resize = true, crop_ratio = 0.8 }}

[data]
images = "data/images"
masks = "data/masks"

[network]
layers = [
    {{ type = "input" }},
    {{ type = "convolutional", filter_dimension = [3, 3, 3, 6], stride_length = 1, activation_function = "relu" }},
    {{ type = "pooling", kernel_size = 2, stride_length = 2 }},
    {{ type = "upsampling", filter_size = 2, num_filters = 6 }},
    {{ type = "output" }},
]
"""


def train_with_python_api(images_dir: Path, masks_dir: Path, save_dir: Path, epochs: int) -> None:
    model = dpp.SemanticSegmentationModel(save_dir=save_dir, save_checkpoints=True, report_rate=1)
    model.set_number_of_threads(1)
    model.set_batch_size(2)
    model.set_image_dimensions(32, 32, 3)
    model.set_test_split(0.25)
    model.set_validation_split(0.0)
    model.set_random_seed(11)
    model.set_learning_rate(0.01)
    model.set_weight_initializer("normal")
    model.set_maximum_training_epochs(epochs)
    model.set_augmentation_flip_horizontal(True)
    model.set_augmentation_crop(True, crop_ratio=0.8)
    model.load_dataset_from_directory_with_segmentation_masks(images_dir, masks_dir)
    model.add_input_layer()
    model.add_convolutional_layer(filter_dimension=[3, 3, 3, 6], stride_length=1, activation_function="relu")
    model.add_pooling_layer(kernel_size=2, stride_length=2)
    model.add_upsampling_layer(filter_size=2, num_filters=6)
    model.add_output_layer()
    model.begin_training()


@pytest.fixture
def train_folder(tmp_path):
    """A folder holding tiny training data, as a versioned experiment would."""
    write_synthetic_dataset(tmp_path / "data", 4, 32, 32, seed=5)
    return tmp_path


def write_config(folder: Path, save_dir: str = "runs/cli", epochs: int = 2, name: str = "run.toml") -> Path:
    path = folder / name
    path.write_text(TOML.format(save_dir=save_dir, epochs=epochs), encoding="utf-8")
    return path


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key].equal(b[key]), key


def test_train_config_reproduces_the_python_api_run(train_folder):
    config = write_config(train_folder)
    result = run("train", config)
    assert result.exit_code == 0, result.output
    cli_dir = train_folder / "runs" / "cli"  # relative to the config file, not the working folder
    assert f"Trained state saved to '{cli_dir}'" in result.stdout
    train_with_python_api(
        train_folder / "data" / "images", train_folder / "data" / "masks", train_folder / "api", 2
    )
    assert_same_weights(cli_dir, train_folder / "api")
    # Training really changed the weights: a different seed gives different ones.
    other = write_config(train_folder, save_dir="runs/other", name="other.toml")
    other.write_text(other.read_text().replace("random_seed = 11", "random_seed = 12"))
    assert run("train", other).exit_code == 0
    with pytest.raises(AssertionError):
        assert_same_weights(cli_dir, train_folder / "runs" / "other")


def test_train_resume_continues_to_the_same_weights(train_folder):
    assert run("train", write_config(train_folder, save_dir="runs/resumed", epochs=1)).exit_code == 0
    result = run("train", write_config(train_folder, save_dir="runs/resumed", epochs=2), "--resume")
    assert result.exit_code == 0, result.output
    assert (
        run("train", write_config(train_folder, save_dir="runs/straight", epochs=2, name="b.toml")).exit_code
        == 0
    )
    assert_same_weights(train_folder / "runs" / "resumed", train_folder / "runs" / "straight")


# DPP methods kept only so DPP scripts run: a no-op for segmentation, or NotImplementedError naming the substitute.
DPP_COMPATIBILITY_ONLY = {
    "set_original_image_dimensions",
    "add_fully_connected_layer",
    "add_global_average_pooling_layer",
    "add_moderation_layer",
    "add_moderation_features",
}


def test_every_setter_and_layer_is_reachable_from_a_config():
    setters = {
        name
        for name, _ in inspect.getmembers(dpp.SemanticSegmentationModel, inspect.isfunction)
        if (name.startswith("set_") or name == "force_split_shuffle") and name not in DPP_COMPATIBILITY_ONLY
    }
    assert set(SETTING_KEYS.values()) == setters
    adders = {
        name
        for name, _ in inspect.getmembers(dpp.SemanticSegmentationModel, inspect.isfunction)
        if name.startswith("add_") and name not in DPP_COMPATIBILITY_ONLY
    }
    assert set(LAYER_TYPES.values()) == adders


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("batch_size = 2", "batchsize = 2"),
            r"Unknown key `settings\.batchsize`.*mean `batch_size`.*allowed keys in \[settings\]: aug",
        ),
        (
            ("[data]", "[dataset]"),
            r"Unknown section `dataset`.*allowed sections: data, model, network, settings",
        ),
        (("report_rate = 1", "report_rate = 0"), r"\[model\].*`report_rate`"),
        (
            ("batch_size = 2", 'batch_size = "two"'),
            r"`settings\.batch_size`.*Invalid value for argument `size`",
        ),
        (
            ("image_dimensions = [32, 32, 3]", "image_dimensions = [32, 32]"),
            r"`settings\.image_dimensions`.*take \[32, 32\]",
        ),
        (('{ type = "output" }', '{ type = "outptu" }'), r"layer type \(layer 4\) `outptu`.*mean `output`"),
        (("stride_length = 1,", "stride = 1,"), r"`network\.layers\[1\]`.*cannot take"),
        (('images = "data/images"', 'images = "nowhere"'), r"Folder given as `data.images` does not exist"),
        (("[network]", "[network]\npredefined = 'u-net'"), r"exactly one of `network\.predefined`"),
        (('masks = "data/masks"', ""), r"needs `data\.masks`"),
        (("[model]", "[model]\nmodel = ["), r"is not valid TOML"),
    ],
)
def test_train_config_errors_are_one_line_and_name_the_key(train_folder, edit, message):
    config = write_config(train_folder)
    config.write_text(config.read_text().replace(*edit), encoding="utf-8")
    result = run("train", config)
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (train_folder / "runs" / "cli" / "model.safetensors").exists()


def test_train_without_the_tensorboard_extra_is_one_line(train_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    config = write_config(train_folder)
    config.write_text(
        config.read_text().replace("[model]\n", '[model]\ntensorboard_dir = "tb"\n'), encoding="utf-8"
    )
    result = run("train", config)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1 and "pip install 'deepplantphenomics[tensorboard]'" in lines[0], result.output


def test_train_missing_config(tmp_path):
    result = run("train", tmp_path / "absent.toml")
    assert result.exit_code == 1
    assert error_lines(result) == [f"Error: Config file not found: '{tmp_path / 'absent.toml'}'."]


def test_yaml_config_without_pyyaml_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    config = tmp_path / "run.yaml"
    config.write_text("settings:\n  batch_size: 2\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"needs PyYAML \(pip install pyyaml\)"):
        load_config(config)


def test_yaml_config_reads_like_toml(tmp_path):
    pytest.importorskip("yaml")
    config = tmp_path / "run.yml"
    config.write_text(
        "model: {save_dir: out}\nsettings: {image_dimensions: [32, 32, 3]}\n"
        "data: {images: d/i, masks: d/m}\nnetwork: {predefined: u-net}\n",
        encoding="utf-8",
    )
    parsed = TrainingConfig.from_file(config)
    assert parsed.save_dir == tmp_path / "out"
    assert parsed.settings == {"image_dimensions": [32, 32, 3]}
    assert parsed.data == {"images": tmp_path / "d" / "i", "masks": tmp_path / "d" / "m"}


def test_yaml_config_goes_through_pyyaml_safe_load(tmp_path, monkeypatch):
    # Without PyYAML installed: a stand-in module (JSON is valid YAML) checks the plumbing around safe_load.
    calls = []

    def safe_load(handle):
        calls.append(handle.name)
        return json.load(handle)

    fake = types.SimpleNamespace(safe_load=safe_load, YAMLError=json.JSONDecodeError)
    monkeypatch.setitem(sys.modules, "yaml", fake)
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"settings": {"batch_size": 2}}), encoding="utf-8")
    assert load_config(config) == {"settings": {"batch_size": 2}}
    assert calls == [str(config)]
    config.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"run\.yaml' is not valid YAML"):
        load_config(config)


def test_config_paths_resolve_against_the_config_folder(tmp_path):
    parsed = TrainingConfig.from_dict(
        {"data": {"images": "i", "masks": "/abs/m"}, "network": {"predefined": "u-net"}}, base_dir=tmp_path
    )
    assert parsed.data == {"images": tmp_path / "i", "masks": Path("/abs/m")}
    assert parsed.save_dir == Path("saved_state")  # the API default when the config names none


def test_cli_methods_are_the_tools_methods():
    # cli.py spells the list out so that `dpp --help` does not import torch; it must not drift.
    from deepplantphenomics import cli

    assert cli.METHODS == tools.METHODS
