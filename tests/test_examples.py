"""The example scripts in examples/ run (shortened with --quick) and write what they promise.

They are loaded from their files and their ``main(argv)`` called in-process, so that any warning they raise
fails the test (pytest runs with warnings as errors) and the run costs no extra interpreter start-up.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

import deepplantphenomics as dpp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def test_large_image_patching_quick(tmp_path):
    example = _load("large_image_patching")
    out = tmp_path / "large"
    results = example.main(["--quick", "--out", str(out)])

    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["mean_dice"] == pytest.approx(results["mean_dice"])
    assert 0.0 <= saved["mean_dice"] <= 1.0
    assert saved["patch_size"] == 64 and saved["train_size"] == [192, 256]
    # The unseen images are larger than the training images and not a multiple of the patch size, and the
    # masks come back at their own full size.
    height, width = saved["unseen_size"]
    assert (height, width) == (243, 229)
    unseen = sorted((out / "unseen" / "images").iterdir())
    assert len(unseen) == 2 and len(saved["per_image"]) == 2
    for path in unseen:
        mask = _read(out / "predictions" / f"{path.stem}_mask.png")
        assert mask.shape == (height, width)
        assert set(np.unique(mask)) <= {0, 255}
        assert _read(out / "predictions" / f"{path.stem}_overlay.png").shape == (height, width, 3)

    # The saved state is complete: dpp.load_model predicts the same full-size masks.
    loaded = dpp.load_model(out / "model")
    again = loaded.forward_pass_with_interpreted_outputs(unseen)
    first = _read(out / "predictions" / f"{unseen[0].stem}_mask.png")
    np.testing.assert_array_equal(again[0], first)


def test_large_image_patching_rejects_bad_patch_size(tmp_path, capsys):
    example = _load("large_image_patching")
    with pytest.raises(SystemExit) as info:
        example.main(["--quick", "--patch-size", "50", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "--patch-size must be a multiple of 16" in capsys.readouterr().err


def test_multiclass_cwfid_quick(tmp_path, shared_data):
    example = _load("multiclass_cwfid")
    out = tmp_path / "cwfid"
    results = example.main(["--quick", "--data", str(shared_data / "cwfid"), "--out", str(out)])

    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(saved["per_class"]) == {"soil", "crop", "weed"}
    assert saved["held_out_images"] == ["006", "012"]
    assert not set(saved["held_out_images"]) & set(saved["train_images"])
    assert saved["scale"] == 0.25 and saved["epochs"] == saved["epochs_completed"] == 1
    for key in ("crop_weed_mean_iou", "plant_dice"):
        assert saved[key] == pytest.approx(results[key], nan_ok=True)
        assert math.isnan(saved[key]) or 0.0 <= saved[key] <= 1.0
    assert 0.0 <= saved["per_class"]["soil"]["iou"] <= 1.0
    assert saved["command"].startswith("python examples/multiclass_cwfid.py --quick")
    # Training folders hold links to (or resized copies of) the shared data, never the held-out images.
    trained = {p.stem for p in (out / "train" / "images").iterdir()}
    assert trained == set(saved["train_images"])
    # Predictions are at CWFID's full resolution, one colour per class.
    for stem in saved["held_out_images"]:
        prediction = _read(out / "predictions" / f"{stem}.png")
        assert prediction.shape == (966, 1296, 3)
        colours = {tuple(c) for c in np.unique(prediction.reshape(-1, 3), axis=0).tolist()}
        assert colours <= {tuple(c) for c in example.PALETTE.tolist()}


def test_multiclass_cwfid_missing_data(tmp_path):
    example = _load("multiclass_cwfid")
    with pytest.raises(SystemExit, match="not found; pass the CWFID folder with --data"):
        example.main(["--quick", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])


def test_multiclass_cwfid_split_is_fixed():
    example = _load("multiclass_cwfid")
    assert example.HELD_OUT == ("006", "012", "018", "024", "033", "038", "043", "050", "055", "059")
    args = example.parse_args([])
    assert (args.scale, args.patch_size) == (1.0, 256)
