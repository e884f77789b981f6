"""The facade's read-only public views (what other modules use instead of its private members), the one
class-count check, and the one atomic writer (``state.atomic_write*``)."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from conftest import make_model

import deepplantphenomics as dpp
from deepplantphenomics import state
from deepplantphenomics._version import __version__
from deepplantphenomics.losses import build_loss
from deepplantphenomics.metrics import ConfusionMatrix
from deepplantphenomics.settings import Settings
from deepplantphenomics.validation import IGNORE_INDEX, check_num_classes


# ------------------------------------------------------------------------------------------ model views
def test_settings_is_a_copy(tmp_path):
    model = make_model(tmp_path / "state")
    model.set_class_weights([1.0, 3.0])
    settings = model.settings
    assert isinstance(settings, Settings)
    assert (settings.batch_size, settings.image_height, settings.class_weights) == (4, 64, [1.0, 3.0])
    settings.batch_size = 99
    settings.class_weights.append(5.0)
    assert model.settings.batch_size == 4  # changing the copy leaves the model alone
    assert model.settings.class_weights == [1.0, 3.0]
    with pytest.raises(AttributeError):
        model.settings = Settings()  # read-only: settings change through the set_* methods


def test_input_shape_follows_image_and_patch_size(tmp_path):
    model = make_model(tmp_path / "state", network=False)
    assert model.input_shape == (3, 64, 64)
    model.set_patch_size(32, 48)
    assert model.input_shape == (3, 32, 48)
    with pytest.raises(RuntimeError, match=r"set_image_dimensions\(image_height, image_width, image_depth\)"):
        _ = dpp.SemanticSegmentationModel().input_shape


def test_layer_specs_are_copies_of_the_declared_layers(tmp_path):
    model = make_model(tmp_path / "state", network=False)
    assert model.layer_specs == []
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    specs = model.layer_specs
    assert [spec["kind"] for spec in specs] == ["input", "conv"]
    assert specs[1]["filter_dimension"] == [3, 3, 3, 8]
    specs[1]["filter_dimension"] = [1, 1, 3, 8]
    assert model.layer_specs[1]["filter_dimension"] == [3, 3, 3, 8]


def test_build_network_needs_a_complete_network_and_returns_one_module(tmp_path):
    model = make_model(tmp_path / "state", network=False)
    model.add_input_layer()
    with pytest.raises(RuntimeError, match="The network is not complete"):
        model.build_network()
    model.add_output_layer()
    network = model.build_network()
    assert network is model.build_network()
    assert network(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_load_image_mask_folders_names_the_callers_arguments(tmp_path, tiny_dataset):
    model = make_model(tmp_path / "state")
    with pytest.raises(FileNotFoundError, match=r"data\.images"):
        model.load_image_mask_folders(tmp_path / "absent", tiny_dataset[1], ("data.images", "data.masks"))
    model.load_image_mask_folders(*tiny_dataset)
    model.set_validation_split(0.0)
    model.set_test_split(0.25)
    model.begin_training()
    assert (tmp_path / "state" / state.WEIGHTS).is_file()


def test_constructor_flags_files_and_split_are_readable(tmp_path, tiny_dataset):
    model = dpp.SemanticSegmentationModel(
        debug=False, save_checkpoints=False, report_rate=7, save_dir=tmp_path
    )
    assert (model.debug, model.save_checkpoints, model.report_rate) == (False, False, 7)
    assert model.paired_files == [] and model.split is None
    model.set_image_dimensions(64, 64, 3)
    model.set_test_split(0.25)
    model.set_validation_split(0.0)
    model.set_maximum_training_epochs(1)
    model.add_input_layer()
    model.add_output_layer()
    model.load_dataset_from_directory_with_segmentation_masks(*map(str, tiny_dataset))
    assert [image.name for image, _ in model.paired_files] == sorted(
        p.name for p in tiny_dataset[0].iterdir()
    )
    model.paired_files.clear()  # a copy: the model's own list is untouched
    assert model.paired_files
    model.begin_training()
    split = model.split
    assert sorted(split["train"] + split["test"]) == sorted(p.name for p in tiny_dataset[0].iterdir())
    assert len(split["test"]) == len(model.paired_files) // 4 and split["validation"] == []
    split["train"].clear()
    assert model.split["train"]


def test_version_is_the_packages():
    assert dpp.__version__ == __version__
    assert __version__.count(".") == 2


# ------------------------------------------------------------------------------------------ one class-count check
@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (1, ValueError, r"`num_class`: expected an int >= 2, received 1\."),
        (2.0, TypeError, r"`num_class`: expected an int, received 2\.0\."),
        (True, TypeError, r"`num_class`: expected an int, received True\."),
    ],
)
def test_class_count_check_is_the_same_everywhere(value, error, message):
    with pytest.raises(error, match=message):
        check_num_classes("num_class", value)
    with pytest.raises(error, match=message):
        dpp.SemanticSegmentationModel().set_num_segmentation_classes(value)
    with pytest.raises(error, match=message.replace("num_class", "num_classes")):
        build_loss("dice", value)
    with pytest.raises(error, match=message.replace("num_class", "num_classes")):
        ConfusionMatrix(value)


def test_class_count_check_returns_an_int():
    import numpy as np

    assert check_num_classes("num_classes", np.int64(3)) == 3
    assert type(check_num_classes("num_classes", np.int64(3))) is int
    assert IGNORE_INDEX == 255


# ------------------------------------------------------------------------------------------ atomic writer
def test_atomic_write_replaces_the_file_with_umask_permissions(tmp_path):
    path = tmp_path / "sub" / "metrics.csv"
    assert state.atomic_write_text(path, "epoch,loss\n") == path
    assert path.read_text(encoding="utf-8") == "epoch,loss\n"
    state.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert (
        stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    )  # readable like any new file, not mkstemp's 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.csv"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("good", encoding="utf-8")

    def half_then_fail(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        state.atomic_write(path, half_then_fail)
    assert path.read_text(encoding="utf-8") == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]  # the temporary file is gone
