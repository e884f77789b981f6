"""What a user waits for around training: imports that stay light, and images decoded in parallel threads
with the same results and warnings as one at a time (bench/end_to_end.py measures the time)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from deepplantphenomics.data import dataset
from deepplantphenomics.data.dataset import load_pairs, pair_files
from deepplantphenomics.synthetic import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "scipy", "skimage", "tifffile", "torch.utils.tensorboard", "onnx", "pandas")


def test_importing_the_library_leaves_heavy_optional_modules_unloaded():
    code = f"import sys, deepplantphenomics; print([m for m in {HEAVY!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_decoding_in_threads_gives_the_same_tensors_in_the_same_order(tmp_path, monkeypatch):
    images, masks = write_synthetic_dataset(tmp_path / "data", n_images=6, height=40, width=48, seed=3)
    pairs = pair_files(images, masks)[0]
    threaded = load_pairs(pairs, 3, 2, (32, 32), True, False)
    monkeypatch.setattr(dataset, "DECODE_THREADS", 1)
    one_by_one = load_pairs(pairs, 3, 2, (32, 32), True, False)
    for got, expected in zip(threaded[:2], one_by_one[:2]):
        assert len(got) == len(expected) == 6
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert threaded[2] == one_by_one[2]


def test_warnings_from_decoding_threads_reach_the_caller_and_filters_are_restored(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b", "c"):
        values = np.full((8, 8), 0.5, dtype=np.float32)
        if name == "b":
            values[0, 0] = np.nan
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", values)
        tifffile.imwrite(tmp_path / "masks" / f"{name}.tif", np.zeros((8, 8), dtype=np.uint8))
    pairs = pair_files(tmp_path / "images", tmp_path / "masks")[0]
    filters = list(warnings.filters)
    with pytest.warns(UserWarning, match=r"'.*b\.tif' holds 1 non-finite pixel value"):
        images, _, _ = load_pairs(pairs, 1, 2, None, False, False)
    assert len(images) == 3
    assert warnings.filters == filters


def test_a_damaged_file_is_reported_once_without_decoder_noise(tmp_path):
    images, masks = write_synthetic_dataset(tmp_path / "data", n_images=4, height=16, width=16, seed=0)
    broken = sorted(images.iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:60])  # a truncated PNG
    pairs = pair_files(images, masks)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any decoder warning would fail the test
        with pytest.raises(ValueError, match=rf"1 problem\(s\) in the dataset:\n  - .*{broken.name}"):
            load_pairs(pairs, 3, 2, None, False, False)
