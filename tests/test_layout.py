"""The memory layout is chosen by measurement (runtime.choose_layout), cached per machine and network shape,
logged with debug=True, forced by DPP_CHANNELS_LAST, and never changes results beyond float rounding.

Every test points DPP_CACHE_DIR at its own folder (conftest also keeps the whole session's cache out of the
home directory). Nothing here asserts which layout is faster: that depends on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model
from torch import nn

from deepplantphenomics import runtime
from deepplantphenomics.runtime import LAYOUT_CACHE_FILE, MIN_MEASURED_STEPS, choose_layout


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty layout cache for this test, and no forced layout."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("DPP_CACHE_DIR", str(folder))
    monkeypatch.delenv("DPP_CHANNELS_LAST", raising=False)
    return folder / LAYOUT_CACHE_FILE


def small_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(8, 1, 1)
    )


def sample_batch() -> torch.Tensor:
    return torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(1))


def trained_model(save_dir: Path, tiny_dataset, **kwargs):
    """The seed network trained on eight 64x64 images for MIN_MEASURED_STEPS steps (4 per epoch)."""
    model = make_model(save_dir, **kwargs)
    model.set_batch_size(2)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.set_maximum_training_epochs(MIN_MEASURED_STEPS // 4)
    model.load_dataset_from_directory_with_segmentation_masks(*tiny_dataset)
    model.begin_training()
    return model


def test_the_choice_is_measured_then_cached(cache, monkeypatch):
    network, sample = small_network(), sample_batch()
    lines: list[str] = []
    first = choose_layout(network, sample, log=lines.append)
    assert first.source == "measured"
    assert set(first.timings_ms) == {"nchw", "channels_last"}
    assert first.channels_last == (first.timings_ms["channels_last"] < first.timings_ms["nchw"])
    assert lines == [first.describe()] and lines[0].startswith("memory layout: ")
    entries = json.loads(cache.read_text(encoding="utf-8"))["entries"]
    assert [entry["channels_last"] for entry in entries.values()] == [first.channels_last]

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again although the decision was cached")

    monkeypatch.setattr(runtime, "measure_layouts", no_measuring)
    second = choose_layout(network, sample, log=lines.append)
    assert (second.source, second.channels_last) == ("cached", first.channels_last)
    assert "measured before on this machine" in lines[-1]


def test_the_cache_tells_shapes_and_modes_apart(cache):
    network = small_network()
    choose_layout(network, sample_batch())
    choose_layout(network, sample_batch(), training=False)
    choose_layout(network, torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(2)))
    keys = json.loads(cache.read_text(encoding="utf-8"))["entries"].keys()
    assert len(keys) == 3


def test_the_cache_tells_kernel_instruction_sets_apart(cache, monkeypatch):
    """A run with torch's kernels held to a lower ISA (as on an AVX2 machine) measures afresh."""
    network = small_network()
    choose_layout(network, sample_batch())
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert choose_layout(network, sample_batch()).source == "measured"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert choose_layout(network, sample_batch()).source == "measured"
    keys = list(json.loads(cache.read_text(encoding="utf-8"))["entries"])
    assert len(keys) == 3
    assert sum("oneDNN AVX2" in key for key in keys) == 2 and sum("DEFAULT" in key for key in keys) == 1


def test_measuring_leaves_weights_statistics_and_random_streams_alone(cache):
    network = small_network()
    before = {name: value.clone() for name, value in network.state_dict().items()}
    rng = torch.get_rng_state()
    choose_layout(network, sample_batch())
    assert torch.equal(torch.get_rng_state(), rng)
    after = network.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(p.grad is None for p in network.parameters())


def test_a_corrupt_cache_file_is_ignored_and_rewritten(cache):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json", encoding="utf-8")
    assert choose_layout(small_network(), sample_batch()).source == "measured"
    assert json.loads(cache.read_text(encoding="utf-8"))["version"] == 1


def test_an_unwritable_cache_is_logged_and_training_goes_on(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("DPP_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.delenv("DPP_CHANNELS_LAST", raising=False)
    lines: list[str] = []
    assert choose_layout(small_network(), sample_batch(), log=lines.append).source == "measured"
    assert "could not cache the layout decision" in lines[0]


def test_a_short_run_is_not_measured(cache):
    choice = choose_layout(small_network(), sample_batch(), planned_steps=MIN_MEASURED_STEPS - 1)
    assert (choice.source, choice.channels_last) == ("default", False)
    assert not cache.exists()


@pytest.mark.parametrize("value", ["0", "1"])
def test_dpp_channels_last_forces_the_layout(cache, monkeypatch, value):
    monkeypatch.setenv("DPP_CHANNELS_LAST", value)
    network = small_network()
    choice = choose_layout(network, sample_batch())
    assert (choice.source, choice.channels_last) == ("forced", value == "1")
    assert not cache.exists()
    prepared = runtime.prepare_module(network, torch.device("cpu"))
    weight = prepared[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) == (value == "1")
    images = runtime.prepare_input(sample_batch(), torch.device("cpu"))
    assert images.is_contiguous(memory_format=torch.channels_last) == (value == "1")


def test_training_logs_the_layout_and_native_bf16(cache, tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "native_bf16", lambda: "avx512_bf16")
    trained_model(tmp_path / "state", tiny_dataset, debug=True)
    out = capsys.readouterr().out
    assert "memory layout: " in out and "measured now" in out
    assert "natively (avx512_bf16): set_precision('bf16')" in out
    monkeypatch.setattr(runtime, "native_bf16", lambda: None)
    trained_model(tmp_path / "again", tiny_dataset, debug=True)
    out = capsys.readouterr().out
    assert "measured before on this machine" in out
    assert "set_precision('bf16')" not in out


def test_measuring_does_not_change_what_training_learns(cache, tiny_dataset, tmp_path):
    measured = trained_model(tmp_path / "measured", tiny_dataset)  # measures, then trains
    assert cache.exists()
    cached = trained_model(tmp_path / "cached", tiny_dataset)  # takes the cached decision: no measuring
    files = sorted(tiny_dataset[0].iterdir())[:2]
    assert np.array_equal(
        measured.forward_pass_with_file_inputs(files), cached.forward_pass_with_file_inputs(files)
    )


def test_either_layout_gives_the_same_predictions(cache, tiny_dataset, tmp_path, monkeypatch):
    model = make_model(tmp_path / "state")
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(*tiny_dataset)
    model.begin_training()
    files = sorted(tiny_dataset[0].iterdir())[:4]
    outputs = {}
    for value in ("0", "1"):
        monkeypatch.setenv("DPP_CHANNELS_LAST", value)
        outputs[value] = model.forward_pass_with_file_inputs(files)
    np.testing.assert_allclose(outputs["1"], outputs["0"], rtol=0, atol=1e-5)
    assert not np.array_equal(outputs["0"][0], outputs["0"][1])  # the images differ: the check is not empty


def test_a_short_run_takes_a_decision_measured_for_the_same_network(cache):
    network = small_network()
    trained = choose_layout(network, sample_batch())  # training, measured
    short = choose_layout(network, sample_batch()[:1], training=False, planned_steps=1)
    assert (short.source, short.channels_last) == ("related", trained.channels_last)
    other = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    assert choose_layout(other, sample_batch(), planned_steps=1).source == "default"


def test_prediction_logs_its_layout(cache, tiny_dataset, tmp_path, capsys):
    model = make_model(tmp_path / "state", debug=True)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(*tiny_dataset)
    model.begin_training()  # 2 steps: too short to measure, NCHW
    capsys.readouterr()
    model.forward_pass_with_file_inputs(sorted(tiny_dataset[0].iterdir()))
    assert "memory layout: NCHW, the CPU default" in capsys.readouterr().out
