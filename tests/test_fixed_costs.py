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


def test_prefetch_decoding_yields_each_group_in_order_from_one_pool(monkeypatch):
    import threading

    monkeypatch.setattr(dataset.os, "cpu_count", lambda: 4)
    workers = set()

    def square(value: int) -> int:
        workers.add(threading.current_thread())  # Thread objects, kept alive: a new pool's would be new ones
        return value * value

    groups = [list(range(start, start + 3)) for start in range(0, 30, 3)] + [[30]]
    got = list(dataset.prefetch_decoding(square, groups))
    assert got == [[v * v for v in group] for group in groups]
    assert 1 <= len(workers) <= dataset.DECODE_THREADS
    assert threading.main_thread() not in workers


def test_prefetch_decoding_stops_at_a_failing_group_and_cancels_the_rest(monkeypatch):
    monkeypatch.setattr(dataset.os, "cpu_count", lambda: 2)
    calls = []

    def decode(value: int) -> int:
        calls.append(value)
        if value == 4:
            raise ValueError("file 4 is damaged")
        return value

    seen = []
    with pytest.raises(ValueError, match="file 4 is damaged"):
        for group in dataset.prefetch_decoding(decode, [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]):
            seen.append(group)
    assert seen == [[0, 1], [2, 3]]
    assert max(calls) <= 7  # at most the group after the failing one was started


def test_prefetch_decoding_keeps_the_callers_warnings_and_drops_the_decoders(monkeypatch):
    """Between groups the caller runs its own work (a forward pass) inside the decoding section: its
    warnings are issued when the section ends; a warning from Pillow's code is dropped as decoder noise."""
    from PIL import Image

    monkeypatch.setattr(dataset.os, "cpu_count", lambda: 2)

    def decode(value: int) -> int:
        warnings.warn_explicit("decoder noise", UserWarning, Image.__file__, 1)
        return value

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for group in dataset.prefetch_decoding(decode, [[0, 1], [2, 3]]):
            warnings.warn(f"the caller's work on {group}", RuntimeWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    assert messages == ["the caller's work on [0, 1]", "the caller's work on [2, 3]"]
