"""Issue 2 acceptance: DPP's example, unchanged, trained on a dozen real CWFID field images.

The example's own settings (100 epochs, learning rate 1e-4, 'normal' initialisation) leave little room: a
hand-written PyTorch twin reaches about 0.77 mean Dice on unseen CWFID images. The library must reach >= 0.75.

After those 300 small steps the model is still under-confident (max probability 0.39-0.41 on unseen images),
so a fixed 0.5 cut finds nothing; DPP's own rule for interpreted outputs (each probability map cut at the
middle of its min-max range), which ``forward_pass_with_interpreted_outputs`` keeps, gave 0.765, 0.772, 0.777
(fixed seeds and split) and 0.838 (this test, random seed) mean Dice (measured 2026-11-24).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepplantphenomics as dpp
from deepplantphenomics.data.io import read_binary_mask
from deepplantphenomics.metrics import binary_scores
from deepplantphenomics.postprocess import resize_mask

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CWFID = SHARED / "data" / "cwfid"
N_TRAIN = 12

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CWFID.is_dir(), reason="needs ../shared/data/cwfid (present in CI, absent in a user's clone)"
    ),
]


def test_examples_copy_is_dpp_example_verbatim():
    spec = SHARED / "spec" / "seed_example.py"
    assert (ROOT / "examples" / "seed_example.py").read_bytes() == spec.read_bytes()


def _run_example(tmp_path: Path, script_text: bytes) -> float:
    """Run the example in a folder of CWFID links; return the mean Dice of the saved model on unseen images."""
    names = sorted(p.name for p in (CWFID / "images").glob("*.png"))
    train, unseen = names[:N_TRAIN], names[N_TRAIN:]
    (tmp_path / "data").mkdir()
    (tmp_path / "segmented").mkdir()
    for name in train:  # links, not copies: the data stays in ../shared
        os.symlink(CWFID / "images" / name, tmp_path / "data" / name)
        os.symlink(CWFID / "masks" / name, tmp_path / "segmented" / name)
    script = tmp_path / "seed_example.py"
    script.write_bytes(script_text)

    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for needle in ("Test loss", "pixel accuracy", "IoU", "Dice"):
        assert needle in result.stdout
    state_dir = tmp_path / "saved_state"
    for name in ("model.safetensors", "architecture.json", "settings.json", "split.json"):
        assert (state_dir / name).is_file()

    model = dpp.load_model(state_dir)
    files = [CWFID / "images" / name for name in unseen]
    masks = model.forward_pass_with_interpreted_outputs(files)  # DPP's rule: what DPP users got
    dices = []
    for name, mask in zip(unseen, masks):
        truth = read_binary_mask(CWFID / "masks" / name)[0]
        full = resize_mask(mask, *truth.shape)  # back to the photo's 1296x966
        dices.append(binary_scores(full > 0, truth)["dice"])
    mean_dice = float(np.mean(dices))
    print(f"mean Dice on {len(unseen)} unseen CWFID images: {mean_dice:.4f}")
    return mean_dice


def test_seed_example_runs_unchanged_on_cwfid_and_generalises(tmp_path):
    mean_dice = _run_example(tmp_path, (SHARED / "spec" / "seed_example.py").read_bytes())
    assert mean_dice >= 0.75


@pytest.mark.skipif(
    os.environ.get("DPP_LONG_ACCEPTANCE") != "1",
    reason="a second 2-minute CWFID training; CI's whole run is near 10 min, so run with DPP_LONG_ACCEPTANCE=1",
)
def test_seed_example_with_xavier_initialisation_generalises(tmp_path):
    """The same example with one setting changed (DPP's default initialiser, and a seed for a fixed split)."""
    text = (SHARED / "spec" / "seed_example.py").read_text()
    assert "model.set_weight_initializer('normal')" in text
    text = text.replace(
        "model.set_weight_initializer('normal')",
        "model.set_weight_initializer('xavier')\nmodel.set_random_seed(0)",
    )
    mean_dice = _run_example(tmp_path, text.encode())
    assert mean_dice >= 0.8  # measured 0.854 (seed 0); a hand-written twin reaches about 0.89
