"""Issue 5: Ctrl-C during training saves a loadable checkpoint; resuming ends with the same weights."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from deepplantphenomics.synthetic import write_synthetic_dataset

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import deepplantphenomics as dpp

    torch.set_num_threads(1)
    resume = sys.argv[1] == "resume"
    model = dpp.SemanticSegmentationModel(debug=True, save_checkpoints=True, report_rate=1, save_dir=sys.argv[2])
    model.set_batch_size(2)
    model.set_image_dimensions(48, 48, 3)
    model.set_resize_images(True)
    model.set_test_split(0.2)
    model.set_validation_split(0.0)
    model.set_random_seed(7)
    model.set_maximum_training_epochs(6)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    model.add_dropout_layer(0.8)
    model.add_convolutional_layer([3, 3, 8, 8], 1, "relu")
    model.add_output_layer()
    model.set_augmentation_flip_horizontal(True)
    model.set_augmentation_brightness_and_contrast(True)
    model.load_dataset_from_directory_with_segmentation_masks(sys.argv[3], sys.argv[4])
    model.begin_training(resume=resume)
    print("FINISHED", flush=True)
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("resume")
    images, masks = write_synthetic_dataset(tmp_path / "data", 20, 48, 48, seed=3)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return tmp_path, script, images, masks


@pytest.fixture(scope="module")
def straight(setup):
    """One uninterrupted run, the reference for every interrupted one."""
    tmp_path, script, images, masks = setup
    done = _run(script, "fresh", tmp_path / "straight", images, masks)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp_path / "straight"


def _run(script, mode, save_dir, images, masks):
    return subprocess.run(
        [sys.executable, str(script), mode, str(save_dir), str(images), str(masks)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_checkpoint_and_resume_matches_uninterrupted(setup, straight, sig):
    tmp_path, script, images, masks = setup
    interrupted = tmp_path / f"interrupted_{sig.name}"
    process = subprocess.Popen(
        [sys.executable, str(script), "fresh", str(interrupted), str(images), str(masks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stdout:  # wait until training is well under way, mid-epoch
        lines.append(line)
        if line.startswith("epoch 3, batch 2/"):
            process.send_signal(sig)
            break
    out, err = process.communicate(timeout=300)
    output = "".join(lines) + out
    assert process.returncode == 0, err[-2000:]
    assert "Training interrupted at epoch 3" in output
    assert "FINISHED" in output  # begin_training returned normally
    assert (interrupted / "checkpoint.pt").is_file()
    load_file(str(interrupted / "model.safetensors"))  # the saved weights are loadable

    resumed = _run(script, "resume", interrupted, images, masks)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from epoch 3" in resumed.stdout

    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(interrupted / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The per-epoch history is complete and identical too.
    assert (straight / "metrics.csv").read_text() == (interrupted / "metrics.csv").read_text()


def test_resume_without_checkpoint_names_the_file(setup):
    tmp_path, script, images, masks = setup
    result = _run(script, "resume", tmp_path / "nothing", images, masks)
    assert result.returncode != 0
    assert "checkpoint" in result.stderr and "nothing" in result.stderr
