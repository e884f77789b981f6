"""Every setter and the constructor of SemanticSegmentationModel validate their arguments DPP's way.

Good values are stored (in canonical form); a wrong type raises TypeError and an out-of-range value ValueError,
with a Keras-style message that names the argument and repeats the received value.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import deepplantphenomics as dpp
from deepplantphenomics.settings import Settings


@pytest.fixture
def model(tmp_path: Path) -> dpp.SemanticSegmentationModel:
    return dpp.SemanticSegmentationModel(save_dir=tmp_path / "state")


def message(argument: str, received: object) -> str:
    """Regex for the part of an error message that names the argument and the received value."""
    return re.escape(f"argument `{argument}`") + ".*" + re.escape(f"received {received!r}")


# (setter, args, {settings attribute: stored value})
GOOD = [
    ("set_batch_size", (8,), {"batch_size": 8}),
    ("set_image_dimensions", (128, 96, 3), {"image_height": 128, "image_width": 96, "image_depth": 3}),
    ("set_image_dimensions", (32, 32, 1), {"image_depth": 1}),
    ("set_image_dimensions", (32, 32, 4), {"image_depth": 4}),
    ("set_resize_images", (True,), {"resize_images": True}),
    ("set_crop_or_pad_images", (True,), {"crop_or_pad_images": True}),
    ("set_test_split", (0.2,), {"test_split": 0.2}),
    ("set_test_split", (0,), {"test_split": 0.0}),
    ("set_validation_split", (0.0,), {"validation_split": 0.0}),
    ("set_validation_split", (0.25,), {"validation_split": 0.25}),
    ("force_split_shuffle", (True,), {"force_split_shuffle": True}),
    ("set_random_seed", (0,), {"random_seed": 0}),
    ("set_random_seed", (1234,), {"random_seed": 1234}),
    ("set_learning_rate", (1e-4,), {"learning_rate": 1e-4}),
    ("set_learning_rate", (1,), {"learning_rate": 1.0}),
    ("set_optimizer", ("sgd",), {"optimizer": "sgd"}),
    ("set_optimizer", ("ADAM",), {"optimizer": "adam"}),
    ("set_optimizer", ("Sgd_Momentum",), {"optimizer": "sgd_momentum"}),
    ("set_optimizer", ("adadelta",), {"optimizer": "adadelta"}),
    ("set_optimizer", ("AdaGrad",), {"optimizer": "adagrad"}),
    ("set_learning_rate_decay", (0.5, 10), {"lr_decay_factor": 0.5, "epochs_per_decay": 10}),
    ("set_learning_rate_decay", (1.0, 1), {"lr_decay_factor": 1.0}),
    ("set_regularization_coefficient", (0.0,), {"regularization_coefficient": 0.0}),
    ("set_regularization_coefficient", (5e-4,), {"regularization_coefficient": 5e-4}),
    ("set_weight_initializer", ("Xavier",), {"weight_initializer": "xavier"}),
    ("set_weight_initializer", ("NORMAL",), {"weight_initializer": "normal"}),
    ("set_maximum_training_epochs", (3,), {"maximum_training_epochs": 3}),
    ("set_loss_function", ("Sigmoid Cross Entropy",), {"loss_function": "sigmoid cross entropy"}),
    ("set_loss_function", ("softmax_cross_entropy",), {"loss_function": "softmax cross entropy"}),
    ("set_loss_function", ("DICE",), {"loss_function": "dice"}),
    ("set_loss_function", ("focal + dice",), {"loss_function": "focal + dice"}),
    ("set_num_segmentation_classes", (2,), {"num_classes": 2}),
    ("set_num_segmentation_classes", (5,), {"num_classes": 5}),
    ("set_class_weights", ([1.0, 3.0],), {"class_weights": [1.0, 3.0]}),
    ("set_class_weights", (None,), {"class_weights": None}),
    ("set_number_of_threads", (1,), {"num_threads": 1}),
    ("set_number_of_gpus", (0,), {"num_gpus": 0}),
    ("set_number_of_gpus", (2,), {"num_gpus": 2}),
    ("set_patch_size", (64, 32), {"patch_height": 64, "patch_width": 32}),
    ("set_gen_data_overwrite", (True,), {"gen_data_overwrite": True}),
    ("set_precision", ("BF16",), {"precision": "bf16"}),
    ("set_precision", ("fp32",), {"precision": "fp32"}),
    ("set_augmentation_brightness_and_contrast", (True,), {"augmentation_brightness_contrast": True}),
    ("set_augmentation_flip_horizontal", (True,), {"augmentation_flip_horizontal": True}),
    ("set_augmentation_flip_vertical", (True,), {"augmentation_flip_vertical": True}),
    (
        "set_augmentation_rotation",
        (True, True),
        {"augmentation_rotation": True, "augmentation_rotation_crop_borders": True},
    ),
    ("set_augmentation_crop", (True, 0.5), {"augmentation_crop": True, "augmentation_crop_ratio": 0.5}),
    ("set_augmentation_crop", (True, 1.0), {"augmentation_crop_ratio": 1.0}),
]


@pytest.mark.parametrize(("setter", "args", "stored"), GOOD, ids=lambda v: v if isinstance(v, str) else None)
def test_good_values_are_accepted_and_stored(model, setter, args, stored):
    getattr(model, setter)(*args)
    for attribute, value in stored.items():
        assert getattr(model.settings, attribute) == value


def test_every_public_setter_is_covered():
    names = {name for name in dir(dpp.SemanticSegmentationModel) if name.startswith("set_")}
    names.add("force_split_shuffle")
    names.discard(
        "set_original_image_dimensions"
    )  # stores nothing for segmentation; see test_dpp_signatures.py
    covered = {setter for setter, _, _ in GOOD}
    assert names <= covered, f"setters without tests: {sorted(names - covered)}"


# (setter, args, argument named in the message, received value)
WRONG_TYPE = [
    ("set_batch_size", ("4",), "size", "4"),
    ("set_batch_size", (4.0,), "size", 4.0),
    ("set_batch_size", (True,), "size", True),
    ("set_image_dimensions", (64.0, 64, 3), "image_height", 64.0),
    ("set_image_dimensions", (64, "64", 3), "image_width", "64"),
    ("set_image_dimensions", (64, 64, None), "image_depth", None),
    ("set_resize_images", (1,), "resize", 1),
    ("set_resize_images", ("True",), "resize", "True"),
    ("set_crop_or_pad_images", (0,), "crop_or_pad", 0),
    ("set_test_split", ("0.1",), "ratio", "0.1"),
    ("set_test_split", (None,), "ratio", None),
    ("set_validation_split", (False,), "ratio", False),
    ("force_split_shuffle", ("yes",), "force_split", "yes"),
    ("set_random_seed", (1.5,), "seed", 1.5),
    ("set_random_seed", ("7",), "seed", "7"),
    ("set_learning_rate", ("0.001",), "rate", "0.001"),
    ("set_optimizer", (1,), "optimizer", 1),
    ("set_optimizer", (None,), "optimizer", None),
    ("set_learning_rate_decay", ("0.5", 10), "decay_factor", "0.5"),
    ("set_learning_rate_decay", (0.5, 2.5), "epochs_per_decay", 2.5),
    ("set_regularization_coefficient", ([0.1],), "lamb", [0.1]),
    ("set_weight_initializer", (0,), "initializer", 0),
    ("set_maximum_training_epochs", (10.0,), "epochs", 10.0),
    ("set_loss_function", (3,), "loss_fn", 3),
    ("set_num_segmentation_classes", (2.0,), "num_class", 2.0),
    ("set_class_weights", (2.0,), "weights", 2.0),
    ("set_class_weights", ([1.0, "2"],), "weights", "2"),
    ("set_number_of_threads", ("2",), "num_threads", "2"),
    ("set_number_of_gpus", (1.0,), "num_gpus", 1.0),
    ("set_patch_size", (64, None), "width", None),
    ("set_gen_data_overwrite", (None,), "overwrite", None),
    ("set_precision", (16,), "precision", 16),
    ("set_augmentation_brightness_and_contrast", (1,), "contr", 1),
    ("set_augmentation_flip_horizontal", ("no",), "flip", "no"),
    ("set_augmentation_flip_vertical", (None,), "flip", None),
    ("set_augmentation_rotation", ("yes",), "rot", "yes"),
    ("set_augmentation_crop", (1, 0.5), "resize", 1),
    ("set_augmentation_rotation", (True, 1), "crop_borders", 1),
    ("set_augmentation_crop", (True, "0.5"), "crop_ratio", "0.5"),
]


@pytest.mark.parametrize(
    ("setter", "args", "argument", "received"), WRONG_TYPE, ids=lambda v: v if isinstance(v, str) else None
)
def test_wrong_type_raises_type_error_naming_argument_and_value(model, setter, args, argument, received):
    with pytest.raises(TypeError, match=message(argument, received)):
        getattr(model, setter)(*args)


OUT_OF_RANGE = [
    ("set_batch_size", (0,), "size", 0),
    ("set_batch_size", (-4,), "size", -4),
    ("set_image_dimensions", (0, 64, 3), "image_height", 0),
    ("set_image_dimensions", (64, -1, 3), "image_width", -1),
    ("set_image_dimensions", (64, 64, 0), "image_depth", 0),
    ("set_test_split", (1.0,), "ratio", 1.0),
    ("set_test_split", (-0.1,), "ratio", -0.1),
    ("set_test_split", (float("nan"),), "ratio", float("nan")),
    ("set_validation_split", (1.5,), "ratio", 1.5),
    ("set_random_seed", (-1,), "seed", -1),
    ("set_learning_rate", (0.0,), "rate", 0.0),
    ("set_learning_rate", (-0.01,), "rate", -0.01),
    ("set_learning_rate", (float("inf"),), "rate", float("inf")),
    ("set_optimizer", ("rmsprop",), "optimizer", "rmsprop"),
    ("set_learning_rate_decay", (0.0, 10), "decay_factor", 0.0),
    ("set_learning_rate_decay", (1.5, 10), "decay_factor", 1.5),
    ("set_learning_rate_decay", (0.5, 0), "epochs_per_decay", 0),
    ("set_regularization_coefficient", (-1e-4,), "lamb", -1e-4),
    ("set_weight_initializer", ("he",), "initializer", "he"),
    ("set_maximum_training_epochs", (0,), "epochs", 0),
    ("set_loss_function", ("hinge",), "loss_fn", "hinge"),
    ("set_num_segmentation_classes", (1,), "num_class", 1),
    ("set_num_segmentation_classes", (0,), "num_class", 0),
    ("set_class_weights", ([1.0, 0.0],), "weights", 0.0),
    ("set_class_weights", ([1.0, -2.0],), "weights", -2.0),
    ("set_number_of_threads", (0,), "num_threads", 0),
    ("set_number_of_gpus", (-1,), "num_gpus", -1),
    ("set_patch_size", (0, 64), "height", 0),
    ("set_precision", ("fp16",), "precision", "fp16"),
    ("set_augmentation_crop", (True, 0.0), "crop_ratio", 0.0),
    ("set_augmentation_crop", (True, 1.25), "crop_ratio", 1.25),
]


@pytest.mark.parametrize(
    ("setter", "args", "argument", "received"), OUT_OF_RANGE, ids=lambda v: v if isinstance(v, str) else None
)
def test_out_of_range_raises_value_error_naming_argument_and_value(model, setter, args, argument, received):
    with pytest.raises(ValueError, match=message(argument, received)):
        getattr(model, setter)(*args)


def test_message_is_keras_style(model):
    with pytest.raises(ValueError) as info:
        model.set_test_split(1.5)
    assert (
        str(info.value) == "Invalid value for argument `ratio`: expected a float in [0.0, 1.0), received 1.5."
    )


def test_choice_error_lists_the_valid_names(model):
    with pytest.raises(ValueError, match=r"one of \['adam', 'sgd', 'sgd_momentum', 'adadelta', 'adagrad'\]"):
        model.set_optimizer("Adamw")


def test_a_rejected_value_leaves_the_setting_unchanged(model):
    model.set_batch_size(4)
    with pytest.raises(ValueError):
        model.set_batch_size(0)
    assert model.settings.batch_size == 4


def test_defaults_match_dpp():
    settings = dpp.SemanticSegmentationModel().settings
    assert (settings.batch_size, settings.learning_rate, settings.optimizer) == (1, 0.001, "adam")
    assert (settings.test_split, settings.validation_split) == (0.10, 0.10)
    assert settings.weight_initializer == "xavier"
    assert settings.loss_function == "sigmoid cross entropy"
    assert settings.num_classes == 2


@pytest.mark.parametrize(
    ("loss", "classes", "expected"),
    [
        ("sigmoid cross entropy", 3, "softmax cross entropy"),
        ("softmax cross entropy", 2, "sigmoid cross entropy"),
        ("sigmoid cross entropy", 2, "sigmoid cross entropy"),
        ("dice", 4, "dice"),
        ("focal", 3, "focal"),
    ],
)
def test_num_classes_switches_a_cross_entropy_loss(model, loss, classes, expected):
    model.set_loss_function(loss)
    model.set_num_segmentation_classes(classes)
    assert model.settings.loss_function == expected


def test_num_classes_back_to_binary_restores_sigmoid(model):
    model.set_num_segmentation_classes(4)
    assert model.settings.loss_function == "softmax cross entropy"
    model.set_num_segmentation_classes(2)
    assert model.settings.loss_function == "sigmoid cross entropy"
    assert model.settings.binary


def test_settings_round_trip_through_dict():
    settings = Settings(batch_size=3, optimizer="sgd", class_weights=[1.0, 2.0])
    data = settings.to_dict()
    data["option_from_a_newer_version"] = 1
    back = Settings.from_dict(data)
    assert back.batch_size == 3 and back.optimizer == "sgd" and back.class_weights == [1.0, 2.0]
    assert back.extra == {"option_from_a_newer_version": 1}


def test_settings_from_dict_is_held_to_the_setters_rules():
    data = Settings().to_dict()
    data["batch_size"] = 0
    with pytest.raises(
        ValueError, match=r"^Settings are not valid: .*`batch_size`.*Correct the key `batch_size`"
    ):
        Settings.from_dict(data)
    with pytest.raises(TypeError, match=r"Settings hold list, not a JSON object"):
        Settings.from_dict([1, 2])
    data = Settings().to_dict()
    data["loss_function"] = "Sigmoid Cross-Entropy"
    assert (
        Settings.from_dict(data).loss_function == "sigmoid cross entropy"
    )  # made canonical, as the setter does


def test_settings_validate_themselves():
    with pytest.raises(ValueError, match=r"`optimizer`: expected one of"):
        Settings(optimizer="adamw2")
    with pytest.raises(TypeError, match=r"`extra`"):
        Settings(extra=[1])
    assert Settings(learning_rate=1).learning_rate == 1.0


# ------------------------------------------------------------------------------------------ constructor
def test_constructor_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = dpp.SemanticSegmentationModel()
    assert model.save_dir == Path("saved_state")
    assert model.debug is False and model.save_checkpoints is True and model.report_rate == 100


def test_constructor_accepts_dpp_arguments(tmp_path):
    model = dpp.SemanticSegmentationModel(
        debug=True,
        load_from_saved=False,
        save_checkpoints=False,
        initialize=True,
        tensorboard_dir=None,
        report_rate=20,
        save_dir=tmp_path,
    )
    assert model.report_rate == 20 and model.save_dir == tmp_path


@pytest.mark.parametrize(
    ("kwargs", "error", "argument", "received"),
    [
        ({"debug": "yes"}, TypeError, "debug", "yes"),
        ({"debug": 1}, TypeError, "debug", 1),
        ({"save_checkpoints": None}, TypeError, "save_checkpoints", None),
        ({"initialize": 0}, TypeError, "initialize", 0),
        ({"report_rate": 0}, ValueError, "report_rate", 0),
        ({"report_rate": 2.5}, TypeError, "report_rate", 2.5),
        ({"load_from_saved": True}, TypeError, "load_from_saved", True),
        ({"load_from_saved": 3}, TypeError, "load_from_saved", 3),
        ({"tensorboard_dir": 5}, TypeError, "tensorboard_dir", 5),
        ({"save_dir": ["a"]}, TypeError, "save_dir", ["a"]),
    ],
)
def test_constructor_validation(kwargs, error, argument, received):
    with pytest.raises(error, match=message(argument, received)):
        dpp.SemanticSegmentationModel(**kwargs)


def test_load_from_saved_missing_folder_is_named(tmp_path):
    missing = tmp_path / "no_such_state"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        dpp.SemanticSegmentationModel(load_from_saved=missing)
