"""Issue 3 acceptance: a U-Net trained with the library on CWFID classes, scored on held-out images.

Runs ``examples/multiclass_cwfid.py`` (29 training images, 10 held out, patches 256x256, see
docs/multiclass.md for the command, the figures and the time) and asserts the targets of the issue: mean IoU
over crop and weed >= 0.5 and plant-vs-soil Dice >= 0.9, on the held-out images at full resolution.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CWFID = ROOT.parent / "shared" / "data" / "cwfid"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CWFID.is_dir(), reason="needs ../shared/data/cwfid (absent in a user's clone)"),
    # 21 minutes of training on 2 quiet cores (41 min CPU): too long for the CI budget next to the rest.
    pytest.mark.skipif(
        os.environ.get("DPP_LONG_ACCEPTANCE") != "1",
        reason="the full CWFID U-Net run takes ~21 min on 2 cores; run with DPP_LONG_ACCEPTANCE=1",
    ),
]

# The arguments of the documented run (docs/multiclass.md), without --data/--out.
ARGS = ["--epochs", "7", "--batch-size", "2", "--class-weights", "1", "10", "3", "--threads", "2"]


def test_unet_on_cwfid_meets_the_targets(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "multiclass_cwfid", ROOT / "examples" / "multiclass_cwfid.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    out = tmp_path / "cwfid_unet"
    results = example.main([*ARGS, "--data", str(CWFID), "--out", str(out)])

    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["held_out_images"] == list(example.HELD_OUT)
    assert not set(saved["held_out_images"]) & set(saved["train_images"])
    assert results["crop_weed_mean_iou"] >= example.CROP_WEED_MEAN_IOU_TARGET, results["per_class"]
    assert results["plant_dice"] >= example.PLANT_DICE_TARGET, results["per_class"]
