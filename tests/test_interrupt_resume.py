"""Issue 5: Ctrl-C during training saves a loadable checkpoint; resuming ends with the same weights.

Issue 17.1: an interrupted run does not pass for a finished one: ``begin_training()`` raises
``dpp.TrainingInterrupted`` (a KeyboardInterrupt) after saving, and ``dpp train`` exits 130 (SIGINT) or 143
(SIGTERM) naming ``dpp train CONFIG --resume``.
"""

from __future__ import annotations

import re
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
    if sys.argv[1] != "catch":
        model.begin_training(resume=resume)
    else:
        try:
            model.begin_training()
        except dpp.TrainingInterrupted as stop:
            print(f"CAUGHT {stop.signal.name} epoch={stop.epoch} batch={stop.batch} dir={stop.save_dir}", flush=True)
            sys.exit(stop.exit_code)
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


def _interrupt(script, mode, save_dir, images, masks, sig, line_start="epoch 3, batch 2/"):
    """Start a run, send ``sig`` once training is well under way (mid-epoch); return (returncode, out, err)."""
    process = subprocess.Popen(
        [sys.executable, str(script), mode, str(save_dir), str(images), str(masks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(line_start):
            process.send_signal(sig)
            break
    out, err = process.communicate(timeout=300)
    return process.returncode, "".join(lines) + out, err


# SIGINT: a script that does not catch the exception stops there with a traceback (exit status 1, as for any
# uncaught exception). SIGTERM: a script that catches it exits with the signal's code.
@pytest.mark.parametrize(("sig", "mode"), [(signal.SIGINT, "fresh"), (signal.SIGTERM, "catch")])
def test_signal_saves_checkpoint_and_resume_matches_uninterrupted(setup, straight, sig, mode):
    tmp_path, script, images, masks = setup
    interrupted = tmp_path / f"interrupted_{sig.name}"
    code, output, err = _interrupt(script, mode, interrupted, images, masks, sig)
    assert "FINISHED" not in output  # the script did not go on as if training had finished
    if mode == "fresh":
        assert code == 1, err[-2000:]
        assert "TrainingInterrupted: Training interrupted by SIGINT (Ctrl-C) at epoch 3, batch " in err
        assert f"saved in '{interrupted}'; continue with begin_training(resume=True)" in err
    else:
        assert code == 143, err[-2000:]
        assert re.search(rf"CAUGHT SIGTERM epoch=3 batch=\d dir={re.escape(str(interrupted))}\n", output)
    assert (interrupted / "checkpoint.pt").is_file()
    load_file(str(interrupted / "model.safetensors"))  # the saved weights are loadable

    resumed = _run(script, "resume", interrupted, images, masks)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from epoch 3" in resumed.stdout
    assert "FINISHED" in resumed.stdout

    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(interrupted / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The per-epoch history is complete and identical too.
    assert (straight / "metrics.csv").read_text() == (interrupted / "metrics.csv").read_text()


CONFIG = """
[model]
debug = true
save_dir = "runs/seed"
report_rate = 1

[settings]
number_of_threads = 1
batch_size = 2
image_dimensions = [32, 32, 3]
test_split = 0.25
validation_split = 0.0
random_seed = 11
maximum_training_epochs = {epochs}

[data]
images = "data/images"
masks = "data/masks"

[network]
layers = [
    {{ type = "input" }},
    {{ type = "convolutional", filter_dimension = [3, 3, 3, 4], stride_length = 1, activation_function = "relu" }},
    {{ type = "output" }},
]
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_train_interrupted_exits_with_the_signal_code_and_resumes(tmp_path, sig, code):
    write_synthetic_dataset(tmp_path / "data", 4, 32, 32, seed=5)
    config = tmp_path / "seed.toml"
    config.write_text(CONFIG.format(epochs=500), encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "deepplantphenomics", "train", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("epoch 2, batch 1/"):
            process.send_signal(sig)
            break
    out, err = process.communicate(timeout=300)
    assert process.returncode == code, err[-2000:]
    assert "Trained state saved" not in out + err  # no claim that the run finished
    label = "SIGINT (Ctrl-C)" if sig == signal.SIGINT else "SIGTERM"
    stopped = re.search(rf"Training interrupted by {re.escape(label)} at epoch (\d+), batch \d: ", err)
    assert stopped, err[-2000:]
    assert "the run did not finish" in err
    save_dir = tmp_path / "runs" / "seed"
    assert f"Its state is saved in '{save_dir}'; continue with: dpp train {config} --resume" in err
    load_file(str(save_dir / "model.safetensors"))

    epochs = int(stopped.group(1)) + 2
    config.write_text(CONFIG.format(epochs=epochs), encoding="utf-8")
    resumed = subprocess.run(
        [sys.executable, "-m", "deepplantphenomics", "train", str(config), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from epoch" in resumed.stdout
    assert f"Trained state saved to '{save_dir}'" in resumed.stdout
    assert len((save_dir / "metrics.csv").read_text().splitlines()) == 1 + epochs  # header + every epoch


def test_resume_without_checkpoint_names_the_file(setup):
    tmp_path, script, images, masks = setup
    result = _run(script, "resume", tmp_path / "nothing", images, masks)
    assert result.returncode != 0
    assert "checkpoint" in result.stderr and "nothing" in result.stderr


def _small_model(save_dir, images, masks):
    import deepplantphenomics as dpp

    model = dpp.SemanticSegmentationModel(save_checkpoints=True, save_dir=str(save_dir))
    model.set_batch_size(4)
    model.set_image_dimensions(48, 48, 3)
    model.set_resize_images(True)
    model.set_test_split(0.2)
    model.set_validation_split(0.0)
    model.set_random_seed(5)
    model.set_maximum_training_epochs(3)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    model.add_output_layer()
    model.load_dataset_from_directory_with_segmentation_masks(str(images), str(masks))
    return model


def test_stop_during_an_epochs_last_batch_keeps_that_epochs_record(setup, tmp_path, monkeypatch):
    """A stop that lands in the last batch of epoch 2 (16 training images, batch 4: batches 4 of 4): the resumed
    run closes epoch 2 from the saved loss instead of skipping its record (CI saw metrics.csv lose a row)."""
    import os

    import deepplantphenomics as dpp
    from deepplantphenomics import training

    _, _, images, masks = setup
    straight = tmp_path / "straight"
    _small_model(straight, images, masks).begin_training()

    real = training.batch_tensors
    calls = []

    def stop_at_the_eighth_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:  # epoch 2, batch 4 of 4
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(training, "batch_tensors", stop_at_the_eighth_batch)
    with pytest.raises(dpp.TrainingInterrupted, match="at epoch 2, batch 4"):
        _small_model(stopped, images, masks).begin_training()
    monkeypatch.setattr(training, "batch_tensors", real)
    assert len((stopped / "metrics.csv").read_text().splitlines()) == 2  # header + epoch 1

    _small_model(stopped, images, masks).begin_training(resume=True)
    assert (stopped / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(stopped / "model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
