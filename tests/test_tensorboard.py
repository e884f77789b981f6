"""TensorBoard logging (``tensorboard_dir=``): the event files of a tiny run hold the training, validation and
test scalars and the input / target / predicted mask images; a missing tensorboard names the extra."""

from __future__ import annotations

import io
import sys
from importlib.util import find_spec

import numpy as np
import pytest
from conftest import make_model
from PIL import Image

from deepplantphenomics.data.io import read_image
from deepplantphenomics.synthetic import write_synthetic_dataset

needs_tensorboard = pytest.mark.skipif(
    find_spec("tensorboard") is None,
    reason="tensorboard not installed (pip install 'deepplantphenomics[tensorboard]')",
)

TRAIN_TAGS = ("train/loss", "train/learning_rate")
VALIDATION_TAGS = ("validation/loss", "validation/iou", "validation/dice")
TEST_TAGS = ("test/loss", "test/iou", "test/dice")
IMAGE_TAGS = ("input", "target_mask", "predicted_mask")


def events(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def decode(event) -> np.ndarray:
    with Image.open(io.BytesIO(event.encoded_image_string)) as image:
        return np.asarray(image.convert("RGB"))


def stretched(image: np.ndarray) -> np.ndarray:
    """An image min-max stretched to 0..255, as TensorBoard shows the standardised network input."""
    values = image.astype(np.float64)
    return np.rint((values - values.min()) / (values.max() - values.min()) * 255.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs on 8 images (4 train, 2 validation, 2 test; one batch per epoch), reporting every batch."""
    tmp_path = tmp_path_factory.mktemp("tensorboard")
    images_dir, masks_dir = write_synthetic_dataset(
        tmp_path / "data", n_images=8, height=64, width=64, seed=0
    )
    model = make_model(tmp_path / "state", tensorboard_dir=tmp_path / "tb", report_rate=1)
    model.set_validation_split(0.25)
    model.set_test_split(0.25)
    model.set_maximum_training_epochs(2)
    model.load_dataset_from_directory_with_segmentation_masks(images_dir, masks_dir)
    model.begin_training()
    return model, tmp_path / "tb", images_dir


@needs_tensorboard
def test_event_files_hold_the_scalars(trained):
    model, directory, _ = trained
    log = events(directory)
    tags = set(log.Tags()["scalars"])
    assert set(TRAIN_TAGS + VALIDATION_TAGS + TEST_TAGS) <= tags
    for tag in TRAIN_TAGS + VALIDATION_TAGS:
        assert [e.step for e in log.Scalars(tag)] == [1, 2], tag
    assert [e.value for e in log.Scalars("train/learning_rate")] == pytest.approx([1e-3, 1e-3])
    for tag in VALIDATION_TAGS[1:] + TEST_TAGS[1:]:
        assert all(0.0 <= e.value <= 1.0 for e in log.Scalars(tag)), tag
    # The test scalars come once, at the last training step, with the values begin_training printed.
    (test_loss,) = log.Scalars("test/loss")
    assert test_loss.step == 2
    assert test_loss.value == pytest.approx(model.test_metrics["loss"], rel=1e-6)
    (test_dice,) = log.Scalars("test/dice")
    assert test_dice.value == pytest.approx(model.test_metrics["foreground_dice"], rel=1e-6)
    validation = [e.value for e in log.Scalars("validation/loss")]
    assert validation == pytest.approx([record["val_loss"] for record in model.history], rel=1e-6)


@needs_tensorboard
def test_event_files_hold_the_three_images(trained):
    model, directory, images_dir = trained
    log = events(directory)
    assert set(IMAGE_TAGS) <= set(log.Tags()["images"])
    for tag in IMAGE_TAGS:
        logged = log.Images(tag)
        assert [e.step for e in logged] == [1, 2], tag
        assert all((e.width, e.height) == (64, 64) for e in logged), tag
    # The input is shown as the image it was (the network sees it standardised): one of the training images.
    training = [stretched(read_image(images_dir / name)) for name in model.split["train"]]
    for event in log.Images("input"):
        shown = decode(event).astype(np.float64)
        assert min(np.abs(shown - image).max() for image in training) <= 1.0
    for tag in ("target_mask", "predicted_mask"):
        for event in log.Images(tag):
            assert set(np.unique(decode(event))) <= {0, 255}, tag


def test_missing_tensorboard_names_the_extra(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # the import now fails
    model = make_model(tmp_path / "state", tensorboard_dir=tmp_path / "tb")
    model.load_dataset_from_directory_with_segmentation_masks(*tiny_dataset)
    message = r"tensorboard_dir needs the optional 'tensorboard' extra: pip install 'deepplantphenomics\[tensorboard\]'"
    with pytest.raises(ImportError, match=message):
        model.begin_training()
    assert not (tmp_path / "tb").exists()


def test_without_tensorboard_dir_nothing_is_imported(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    model = make_model(tmp_path / "state")
    model.set_test_split(0.25)
    model.load_dataset_from_directory_with_segmentation_masks(*tiny_dataset)
    model.begin_training()
    assert (tmp_path / "state" / "metrics.csv").is_file()
