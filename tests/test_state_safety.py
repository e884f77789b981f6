"""Issue 20, points 9-11: one training run per save_dir, a state always loads as one save, disk full is named,
and a hand-edited settings.json is checked when it is loaded.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_model
from PIL import Image

import deepplantphenomics as dpp
from deepplantphenomics import state
from deepplantphenomics.cli import main
from deepplantphenomics.synthetic import write_synthetic_dataset

CONFIG = """
[model]
debug = true
save_dir = "{save_dir}"
report_rate = 1
save_checkpoints = true

[settings]
number_of_threads = 1
batch_size = 2
image_dimensions = [64, 64, 3]
test_split = 0.25
validation_split = 0.0
random_seed = 3
maximum_training_epochs = {epochs}

[data]
images = "{images}"
masks = "{masks}"

[network]
layers = [
    {{ type = "input" }},
    {{ type = "convolutional", filter_dimension = [3, 3, 3, 4], stride_length = 1, activation_function = "relu" }},
    {{ type = "output" }},
]
"""


def write_config(path: Path, save_dir: Path, data: tuple[Path, Path], epochs: int) -> Path:
    text = CONFIG.format(save_dir=save_dir, images=data[0], masks=data[1], epochs=epochs)
    path.write_text(text, encoding="utf-8")
    return path


def start_training(config: Path) -> subprocess.Popen:
    """``dpp train CONFIG`` in a process of its own, returned once it is training (its first batch is logged)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deepplantphenomics", "train", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("epoch 1, batch 1/"):
            return process
    process.kill()
    raise AssertionError(f"training did not start: {process.communicate()[1][-2000:]}")


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, Path]:
    return write_synthetic_dataset(tmp_path / "data", n_images=8, height=64, width=64, seed=0)


# ------------------------------------------------------------------------------------ 20.9 one run per folder
def test_second_training_into_a_busy_save_dir_is_refused_and_kill_9_frees_it(tmp_path, dataset):
    save_dir = tmp_path / "runs" / "shared"
    first = start_training(write_config(tmp_path / "first.toml", save_dir, dataset, epochs=1000))
    try:
        # The same folder from Python: refused before anything is written there.
        model = make_model(save_dir)
        model.load_dataset_from_directory_with_segmentation_masks(*dataset)
        with pytest.raises(
            RuntimeError, match=re.escape(f"Another training run is using save_dir '{save_dir}'")
        ):
            model.begin_training()
        # ... and from the command line: one error line naming the folder, exit 1.
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "deepplantphenomics",
                "train",
                str(write_config(tmp_path / "b.toml", save_dir, dataset, 1)),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 1, second.stderr[-2000:]
        assert (
            f"Error: Another training run is using save_dir '{save_dir}' (pid {first.pid} on "
            in second.stderr
        )
    finally:
        first.send_signal(signal.SIGKILL)  # a crashed run: the OS drops its lock with the process
        first.communicate(timeout=60)
    model = make_model(save_dir)
    model.load_dataset_from_directory_with_segmentation_masks(*dataset)
    model.set_test_split(0.0)
    model.begin_training()  # not stuck
    assert dpp.load_model(save_dir).forward_pass_with_file_inputs([next(dataset[0].iterdir())]).shape == (
        1,
        64,
        64,
        1,
    )


ALTERNATING = textwrap.dedent(
    """
    import sys
    import torch
    import deepplantphenomics as dpp

    torch.set_num_threads(1)
    save_dir, images, masks, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    for run in range(runs):
        model = dpp.SemanticSegmentationModel(save_dir=save_dir, save_checkpoints=True)
        model.set_batch_size(4)
        model.set_image_dimensions(64, 64, 3)
        model.set_test_split(0.0)
        model.set_validation_split(0.0)
        model.set_maximum_training_epochs(2)
        model.load_dataset_from_directory_with_segmentation_masks(images, masks)
        model.add_input_layer()
        width = 4 if run % 2 == 0 else 6  # two networks whose weights do not fit each other's architecture
        model.add_convolutional_layer([3, 3, 3, width], 1, "relu")
        model.add_output_layer()
        model.begin_training()
    print("DONE", flush=True)
    """
)


def test_load_model_never_mixes_two_runs(tmp_path, dataset):
    """Runs of two different networks take turns in one folder while it is loaded over and over."""
    save_dir = tmp_path / "state"
    script = tmp_path / "alternate.py"
    script.write_text(ALTERNATING)
    first = make_model(save_dir)
    first.load_dataset_from_directory_with_segmentation_masks(*dataset)
    first.set_test_split(0.0)
    first.begin_training()
    writer = subprocess.Popen(
        [sys.executable, str(script), str(save_dir), str(dataset[0]), str(dataset[1]), "12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    loads, failures = 0, []
    while writer.poll() is None:
        try:
            model = dpp.load_model(save_dir)
            # Weights that fit the architecture loaded with them: the network runs.
            assert model.forward_pass(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 64, 64, 1)
            loads += 1
        except (ValueError, FileNotFoundError) as exc:
            failures.append(str(exc))
    out, err = writer.communicate()
    assert writer.returncode == 0 and "DONE" in out, err[-2000:]
    assert failures == []
    assert loads > 0  # it really loaded while the runs took turns


def test_a_save_caught_half_done_is_read_once_it_is_complete(tmp_path):
    """architecture.json and settings.json of a new network are in place, its weights not yet: load_model waits
    for them instead of pairing the new architecture with the old weights."""
    old, new = tmp_path / "old", tmp_path / "new"
    make_model(old).save_state()
    newer = make_model(new, network=False)
    newer.add_input_layer()
    newer.add_convolutional_layer([3, 3, 3, 5], 1, "relu")
    newer.add_output_layer()
    newer.save_state()
    for name in ("architecture.json", "settings.json"):
        shutil.copy(new / name, old / name)

    def finish_the_save() -> None:
        time.sleep(0.6)
        shutil.copy(new / "model.safetensors", old / ".model.tmp")
        os.replace(old / ".model.tmp", old / "model.safetensors")

    thread = threading.Thread(target=finish_the_save)
    thread.start()
    loaded = dpp.load_model(old)
    thread.join()
    expected = dpp.load_model(new).forward_pass(np.ones((1, 64, 64, 3), np.float32), deterministic=True)
    got = loaded.forward_pass(np.ones((1, 64, 64, 3), np.float32), deterministic=True)
    np.testing.assert_array_equal(got, expected)


def test_a_folder_left_with_files_of_two_saves_is_refused_by_name(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    make_model(old).save_state()
    other = make_model(new, network=False)
    other.add_input_layer()
    other.add_output_layer()
    other.save_state()
    shutil.copy(new / "architecture.json", old / "architecture.json")  # a save cut off after its first file
    with pytest.raises(
        ValueError, match=re.escape(f"The saved state in '{old}' mixes files of different saves")
    ):
        dpp.load_model(old)


# ------------------------------------------------------------------------------------------- 20.10 disk full
def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_saving_names_the_file_and_keeps_the_previous_state(tmp_path, dataset, monkeypatch):
    save_dir = tmp_path / "state"
    model = make_model(save_dir)
    model.load_dataset_from_directory_with_segmentation_masks(*dataset)
    model.set_test_split(0.0)
    model.begin_training()
    probe = [str(next(dataset[0].iterdir()))]
    before = dpp.load_model(save_dir).forward_pass_with_file_inputs(probe)

    model.set_maximum_training_epochs(2)
    monkeypatch.setattr(state, "save_file", no_space)  # the disk fills while the weights are written
    weights = save_dir / "model.safetensors"
    with pytest.raises(
        OSError, match=re.escape(f"No space left on device while writing '{weights}'")
    ) as info:
        model.begin_training()
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    np.testing.assert_array_equal(dpp.load_model(save_dir).forward_pass_with_file_inputs(probe), before)
    assert not [p.name for p in save_dir.iterdir() if p.name.endswith(".tmp")]  # no half-written file left


def test_torch_short_write_is_reported_as_disk_full(tmp_path, dataset, monkeypatch):
    """torch.save on a full disk fails with '[enforce fail at inline_container.cc:672] . unexpected pos ...'."""
    save_dir = tmp_path / "state"
    model = make_model(save_dir, save_checkpoints=True)
    model.load_dataset_from_directory_with_segmentation_masks(*dataset)

    def short_write(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5568 vs 5460")

    monkeypatch.setattr(torch, "save", short_write)
    checkpoint = save_dir / "checkpoint.pt"
    with pytest.raises(OSError, match=re.escape(f"No space left on device while writing '{checkpoint}'")):
        model.begin_training()
    monkeypatch.undo()
    assert not checkpoint.exists()
    dpp.load_model(save_dir)  # the weights written before the checkpoint load


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0, reason="mounting a tmpfs needs root"
)
def test_a_really_full_disk(tmp_path):
    """A 1 MiB tmpfs, filled: the error the user sees from save_state() on a real full disk."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        make_model(mount / "state").save_state()
        # Leave 40 KiB: room for the JSON files, not for the weights (about 120 KiB).
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        (mount / "filler").write_bytes(b"\0" * (free - 40 * 1024))
        other = make_model(mount / "state", seed=5)
        with pytest.raises(
            OSError, match=r"No space left on device while writing '.*state/model\.safetensors'"
        ):
            other.save_state()
        dpp.load_model(mount / "state")  # the first save still loads
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# ----------------------------------------------------------------------------------- 20.11 edited settings.json
@pytest.fixture
def saved(tmp_path) -> Path:
    """A saved state of the seed network on 64x64 RGB images."""
    return make_model(tmp_path / "state").save_state()


def edit_settings(directory: Path, **changes) -> Path:
    path = directory / "settings.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("changes", "kind", "message"),
    [
        ({"image_height": "64"}, TypeError, r"`image_height`: expected an int, received '64'"),
        ({"batch_size": 0}, ValueError, r"`batch_size`: expected a positive int, received 0"),
        ({"optimizer": "rmsprop"}, ValueError, r"`optimizer`: expected one of \['adam'"),
        ({"resize_images": "yes"}, TypeError, r"`resize_images`: expected a bool"),
        ({"test_split": 1.5}, ValueError, r"`test_split`: expected a float in \[0.0, 1.0\)"),
    ],
)
def test_a_value_the_setter_would_refuse_is_named_with_key_and_file(saved, changes, kind, message):
    path = edit_settings(saved, **changes)
    with pytest.raises(
        kind, match=re.escape(f"Saved settings '{path}' are not valid") + ".*" + message
    ) as info:
        dpp.load_model(saved)
    assert f"Correct the key `{next(iter(changes))}` in that file" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "key", "saved_value"),
    [
        ({"image_depth": 4}, "image_depth", "3"),
        ({"image_width": 32}, "image_width", "64"),
        ({"num_classes": 3}, "num_classes", "2"),
        ({"input_normalization": "none"}, "input_normalization", "'per_image_standardization'"),
    ],
)
def test_settings_that_do_not_fit_the_saved_network_are_named(saved, changes, key, saved_value):
    edit_settings(saved, **changes)
    expected = (
        f"Saved settings '{saved / 'settings.json'}' do not match the network in '{saved / 'architecture.json'}': "
        f"`{key}` is {changes[key]!r} but the network was built for {saved_value}."
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        dpp.load_model(saved)


def test_cli_reports_an_edited_settings_file_on_one_line(saved, tmp_path):
    edit_settings(saved, image_depth=4)
    image = tmp_path / "plant.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    result = CliRunner().invoke(main, ["predict", str(saved), str(image), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Saved settings '") and "`image_depth` is 4" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_edit_the_setters_accept_still_loads(saved):
    edit_settings(saved, learning_rate=0.5, maximum_training_epochs=7)  # training-only settings
    model = dpp.load_model(saved)
    assert model.forward_pass(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 64, 64, 1)
