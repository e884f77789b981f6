"""How probabilities become masks: DPP's min-max rule (the default), Otsu, fixed cuts; argument checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import deepplantphenomics as dpp
from deepplantphenomics.cli import main
from deepplantphenomics.inference import interpret
from deepplantphenomics.postprocess import threshold_otsu


def dpp_interpretation(img: np.ndarray) -> np.ndarray:
    """DPP's forward_pass_with_interpreted_outputs for one binary (H, W, 1) map, as its source wrote it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mask = (img - np.min(img)) / (np.max(img) - np.min(img))
    mask[mask >= 0.5] = 255
    mask[mask < 0.5] = 0
    # A constant map gives NaN there; DPP stored it into a uint8 array (0 on x86). Made explicit here.
    return np.nan_to_num(mask[..., 0], nan=0.0).astype(np.uint8)


# (probabilities, threshold, expected mask / 255)
KNOWN = [
    ([[0.1, 0.2], [0.3, 0.4]], None, [[0, 0], [1, 1]]),  # cut at (0.1 + 0.4) / 2 = 0.25
    ([[0.0, 0.5], [0.25, 1.0]], None, [[0, 1], [0, 1]]),  # the middle itself is foreground (>=)
    ([[0.3, 0.3], [0.3, 0.3]], None, [[0, 0], [0, 0]]),  # constant map: nothing
    ([[0.1, 0.2], [0.3, 0.4]], 0.5, [[0, 0], [0, 0]]),  # under-confident model, fixed cut: nothing
    ([[0.2, 0.5], [0.6, 0.9]], 0.5, [[0, 0], [1, 1]]),  # fixed cut is strict (>)
    ([[0.05, 0.1], [0.8, 0.9]], "otsu", [[0, 0], [1, 1]]),
]


@pytest.mark.parametrize(("probabilities", "threshold", "expected"), KNOWN)
def test_known_answers(probabilities, threshold, expected):
    p = np.asarray(probabilities, dtype=np.float32)[..., None]
    np.testing.assert_array_equal(interpret(p, threshold), np.asarray(expected, dtype=np.uint8) * 255)


@pytest.mark.parametrize("seed", range(5))
def test_default_rule_equals_dpps_code(seed):
    rng = np.random.default_rng(seed)
    p = (rng.random((40, 30, 1)) * rng.uniform(0.05, 1.0)).astype(np.float32)  # any range, e.g. max 0.3
    np.testing.assert_array_equal(interpret(p), dpp_interpretation(p))
    constant = np.full((8, 8, 1), 0.42, dtype=np.float32)
    np.testing.assert_array_equal(interpret(constant), dpp_interpretation(constant))


def test_otsu_rule_uses_otsus_threshold():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0.0, 0.2, 500), rng.uniform(0.25, 0.4, 300)]).reshape(40, 20, 1)
    np.testing.assert_array_equal(interpret(p, "otsu") > 0, p[..., 0] > threshold_otsu(p[..., 0]))
    assert 0.19 <= threshold_otsu(p[..., 0]) <= 0.25  # between the two groups (bin centre)


def test_multiclass_maps_are_arg_max_whatever_the_threshold():
    rng = np.random.default_rng(1)
    p = rng.random((6, 5, 3)).astype(np.float32)
    for threshold in (None, 0.5, "otsu"):
        np.testing.assert_array_equal(interpret(p, threshold), p.argmax(-1).astype(np.uint8))


def _saved_model(directory: Path) -> Path:
    model = dpp.SemanticSegmentationModel(save_dir=directory)
    model.set_image_dimensions(16, 16, 3)
    model.set_random_seed(3)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    model.add_output_layer()
    model.save_state()
    return directory


@pytest.fixture
def files_and_model(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "in").mkdir()
    files = []
    for i in range(2):
        path = tmp_path / "in" / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files, dpp.load_model(_saved_model(tmp_path / "state")), tmp_path


def test_model_applies_each_rule_to_its_probabilities(files_and_model):
    files, model, _ = files_and_model
    probabilities = model.forward_pass_with_file_inputs(files)
    for threshold in (None, 0.5, "otsu", "OTSU", 0.25):
        rule = threshold.lower() if isinstance(threshold, str) else threshold
        masks = model.forward_pass_with_interpreted_outputs(files, threshold=threshold)
        for mask, p in zip(masks, probabilities):
            np.testing.assert_array_equal(mask, interpret(p, rule))
    default = model.forward_pass_with_interpreted_outputs(files)
    np.testing.assert_array_equal(default, np.stack([dpp_interpretation(p) for p in probabilities]))


@pytest.mark.parametrize(
    ("threshold", "error", "pattern"),
    [
        (0.0, ValueError, r"argument `threshold`: expected a float in \(0.0, 1.0\), received 0.0"),
        (1.0, ValueError, r"argument `threshold`.*received 1.0"),
        (float("nan"), ValueError, r"argument `threshold`"),
        ("mean", ValueError, r"argument `threshold`: expected None \(DPP's rule\), 'otsu' or a float"),
        ([0.5], TypeError, r"argument `threshold`.*received \[0.5\]"),
        (True, TypeError, r"argument `threshold`.*received True"),
    ],
)
def test_bad_thresholds_are_named(files_and_model, threshold, error, pattern):
    files, model, _ = files_and_model
    with pytest.raises(error, match=pattern):
        model.forward_pass_with_interpreted_outputs(files, threshold=threshold)


@pytest.mark.parametrize(
    ("option", "rule"),
    [
        ([], None),
        (["--threshold", "dpp"], None),
        (["--threshold", "0.5"], 0.5),
        (["--threshold", "Otsu"], "otsu"),
    ],
)
def test_cli_predict_threshold(files_and_model, option, rule):
    files, model, tmp_path = files_and_model
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "state"), str(tmp_path / "in"), "--out", str(out), *option]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    want = model.forward_pass_with_interpreted_outputs(files, threshold=rule)
    for path, mask in zip(files, want):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{path.stem}_mask.png")), mask)


@pytest.mark.parametrize("value", ["1.5", "half", "0"])
def test_cli_rejects_bad_threshold(files_and_model, value):
    _, _, tmp_path = files_and_model
    args = [
        "predict",
        str(tmp_path / "state"),
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "o"),
        "--threshold",
        value,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--threshold" in result.output and value in result.output


def test_cli_evaluate_threshold_needs_a_state(files_and_model):
    _, _, tmp_path = files_and_model
    args = [
        "evaluate",
        "--images",
        str(tmp_path / "in"),
        "--masks",
        str(tmp_path / "in"),
        "--threshold",
        "0.5",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--threshold applies to a trained model (--state)" in result.output
