"""Predefined architectures: use_predefined_model('u-net' | 'fcn-18').

Shapes for binary and 3-class outputs at two input sizes, the layer lists themselves (hand-counted), the
size rules, a real training step through the public API, and a save/load round trip via dpp.load_model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepplantphenomics as dpp
from deepplantphenomics import state
from deepplantphenomics.architectures import FCN18_WIDTHS, PREDEFINED, UNET_WIDTHS, predefined_layer_specs
from deepplantphenomics.synthetic import write_synthetic_dataset


def _model(tmp_path: Path, height: int, width: int, classes: int = 2, channels: int = 3, **kwargs):
    model = dpp.SemanticSegmentationModel(save_checkpoints=False, save_dir=tmp_path / "state", **kwargs)
    model.set_random_seed(0)
    model.set_image_dimensions(height, width, channels)
    if classes != 2:
        model.set_num_segmentation_classes(classes)
    return model


def _network(model: dpp.SemanticSegmentationModel):
    return model.build_network().eval()


def test_predefined_names():
    assert PREDEFINED == ("u-net", "fcn-18")
    assert UNET_WIDTHS == (16, 32, 64, 128, 256)
    assert FCN18_WIDTHS == (16, 32, 64, 128, 256)


@pytest.mark.parametrize("name", ["u-net", "fcn-18"])
@pytest.mark.parametrize(("classes", "out_channels"), [(2, 1), (3, 3)])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 128)])
def test_output_shape(tmp_path, name, classes, out_channels, height, width):
    model = _model(tmp_path, height, width, classes)
    model.use_predefined_model(name)
    network = _network(model)
    with torch.inference_mode():
        out = network(torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0)))
    assert tuple(out.shape) == (2, out_channels, height, width)
    assert torch.isfinite(out).all()
    # The builder's tracked shape of the last layer is the input size too (no silent resize).
    assert model.build_network().shapes[-1][1:] == (height, width)


# Layer kinds, counted by hand from the architecture descriptions in architectures.py.
#   u-net:  4 levels x (2 conv, save, pool) + 2 bottleneck conv + 4 x (upsample, load, 2 conv)
#   fcn-18: 4 levels x (2 conv, pool, skip) + 2 bottleneck conv + 4 x (upsample, 2 conv) = 18 convolutions
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "u-net",
            {"input": 1, "conv": 18, "copy_save": 4, "pool": 4, "upsample": 4, "copy_load": 4, "output": 1},
        ),
        ("fcn-18", {"input": 1, "conv": 18, "pool": 4, "skip": 4, "upsample": 4, "output": 1}),
    ],
)
def test_layer_list(tmp_path, name, expected):
    model = _model(tmp_path, 64, 64)
    model.use_predefined_model(name)
    specs = model.layer_specs
    assert Counter(spec["kind"] for spec in specs) == expected
    assert specs[0]["kind"] == "input"
    assert specs[-1]["kind"] == "output"
    convs = [spec for spec in specs if spec["kind"] == "conv"]
    assert all(spec["batch_norm"] and spec["activation_function"] == "relu" for spec in convs)
    assert all(spec["filter_dimension"][:2] == [3, 3] for spec in convs)
    assert [spec["filter_dimension"][3] for spec in convs[:10]] == [
        16,
        16,
        32,
        32,
        64,
        64,
        128,
        128,
        256,
        256,
    ]
    if name == "fcn-18":
        assert all(spec["downsampled"] for spec in specs if spec["kind"] == "skip")


def test_unet_parameter_count(tmp_path):
    # Hand count (weights + bias + batch-norm scale/shift): encoder convs 3->16 ... 256->256 = 1,180,752;
    # decoder (2x2 transposed conv + two 3x3 convs per level) = 763,280; 1x1 output 16->1 = 17.
    model = _model(tmp_path, 64, 64)
    model.use_predefined_model("u-net")
    assert sum(p.numel() for p in _network(model).parameters()) == 1_944_049


def test_unet_copy_connections_concatenate_encoder_features(tmp_path):
    model = _model(tmp_path, 64, 64)
    model.use_predefined_model("u-net")
    shapes = model.build_network().shapes
    loads = [shapes[i] for i, spec in enumerate(model.layer_specs) if spec["kind"] == "copy_load"]
    # Upsampled width + saved encoder width, at the encoder level's size.
    assert loads == [(256, 8, 8), (128, 16, 16), (64, 32, 32), (32, 64, 64)]


def test_names_are_case_insensitive(tmp_path):
    model = _model(tmp_path, 64, 64)
    model.use_predefined_model(" U-Net ")
    assert model.layer_specs[-1]["kind"] == "output"


def test_fcn18_accepts_odd_sizes(tmp_path):
    model = _model(tmp_path, 65, 63, classes=3)
    model.use_predefined_model("fcn-18")
    with torch.inference_mode():
        out = _network(model)(torch.rand(1, 3, 65, 63))
    assert tuple(out.shape) == (1, 3, 65, 63)


def test_unet_size_not_multiple_of_16(tmp_path):
    model = _model(tmp_path, 65, 64)
    with pytest.raises(ValueError, match=r"multiples of 16.*received 65x64.*set_image_dimensions.*'fcn-18'"):
        model.use_predefined_model("u-net")
    assert model.layer_specs == []  # nothing half-declared


def test_unet_uses_patch_size(tmp_path):
    model = _model(tmp_path, 200, 300)  # not multiples of 16: the network sees patches, not whole images
    model.set_patch_size(96, 64)
    model.use_predefined_model("u-net")
    assert model.input_shape == (3, 96, 64)
    bad = _model(tmp_path, 64, 64)
    bad.set_patch_size(40, 64)
    with pytest.raises(ValueError, match=r"received 40x64.*set_patch_size"):
        bad.use_predefined_model("u-net")


def test_grey_input(tmp_path):
    model = _model(tmp_path, 64, 64, channels=1)
    model.use_predefined_model("fcn-18")
    with torch.inference_mode():
        assert tuple(_network(model)(torch.rand(1, 1, 64, 64)).shape) == (1, 1, 64, 64)


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("unet", ValueError, r"`model_name`: expected one of \['u-net', 'fcn-18'\], received 'unet'"),
        ("vgg-16", ValueError, r"`model_name`"),
        (3, TypeError, r"`model_name`"),
    ],
)
def test_bad_names(tmp_path, name, error, match):
    model = _model(tmp_path, 64, 64)
    with pytest.raises(error, match=match):
        model.use_predefined_model(name)


def test_predefined_layer_specs_rejects_unknown_name():
    with pytest.raises(ValueError, match=r"received 'resnet'"):
        predefined_layer_specs("resnet", (3, 64, 64))


@pytest.mark.parametrize("name", PREDEFINED)
def test_the_specs_are_what_the_model_declares(tmp_path, name):
    """architectures.py returns plain specs; the model declares each with add_layer(**spec), unchanged."""
    specs = predefined_layer_specs(name, (1, 32, 48))
    model = _model(tmp_path, 32, 48, channels=1)
    model.use_predefined_model(name)
    assert model.layer_specs == specs
    again = _model(tmp_path, 32, 48, channels=1)
    for spec in specs:
        again.add_layer(**spec)
    assert again.layer_specs == specs


def test_needs_image_dimensions_first(tmp_path):
    model = dpp.SemanticSegmentationModel(save_dir=tmp_path / "state")
    for name in PREDEFINED:
        with pytest.raises(RuntimeError, match="set_image_dimensions"):
            model.use_predefined_model(name)


def test_refused_after_layers(tmp_path):
    model = _model(tmp_path, 64, 64)
    model.add_input_layer()
    with pytest.raises(RuntimeError, match="instead of adding layers"):
        model.use_predefined_model("u-net")


def _three_class_dataset(root: Path) -> tuple[Path, Path]:
    """Synthetic plants whose left half is class 1 and right half class 2, with a band of 255 (ignore)."""
    images, masks = write_synthetic_dataset(root, n_images=6, height=64, width=64, seed=1)
    classes = root / "classes"
    classes.mkdir()
    for path in sorted(masks.iterdir()):
        with Image.open(path) as image:
            plant = np.array(image) > 127
        mask = np.zeros(plant.shape, np.uint8)
        mask[:, :32][plant[:, :32]] = 1
        mask[:, 32:][plant[:, 32:]] = 2
        mask[:2] = 255
        Image.fromarray(mask).save(classes / path.name)
    return images, classes


@pytest.mark.parametrize("name", ["u-net", "fcn-18"])
@pytest.mark.parametrize("classes", [2, 3])
def test_training_step_and_load_round_trip(tmp_path, name, classes):
    if classes == 2:
        images, masks = write_synthetic_dataset(tmp_path / "data", n_images=6, height=64, width=64, seed=1)
    else:
        images, masks = _three_class_dataset(tmp_path / "data")
    model = _model(tmp_path, 64, 64, classes)
    model.set_batch_size(2)
    model.set_maximum_training_epochs(1)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.use_predefined_model(name)
    before = {k: v.clone() for k, v in _network(model).state_dict().items()}
    model.begin_training()
    after = model.build_network().state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert changed, "a training step must change the weights"
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())

    files = sorted(images.iterdir())[:2]
    expected = model.forward_pass_with_file_inputs(files)
    assert expected.shape == (2, 64, 64, 1 if classes == 2 else classes)

    loaded = dpp.load_model(tmp_path / "state")
    arch = state.read_json(tmp_path / "state" / state.ARCHITECTURE)
    assert arch["layers"] == model.layer_specs
    np.testing.assert_allclose(loaded.forward_pass_with_file_inputs(files), expected, rtol=0, atol=1e-6)
    masks_out = loaded.forward_pass_with_interpreted_outputs(files)
    assert masks_out.dtype == np.uint8
    assert set(np.unique(masks_out)) <= ({0, 255} if classes == 2 else {0, 1, 2})


def test_declared_again_from_saved_state(tmp_path):
    """load_from_saved with the same predefined architecture re-declared matches the saved layers."""
    images, masks = write_synthetic_dataset(tmp_path / "data", n_images=4, height=64, width=64, seed=2)
    model = _model(tmp_path, 64, 64)
    model.set_batch_size(2)
    model.set_maximum_training_epochs(1)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.use_predefined_model("fcn-18")
    model.begin_training()
    files = sorted(images.iterdir())[:1]
    expected = model.forward_pass_with_file_inputs(files)

    again = dpp.SemanticSegmentationModel(load_from_saved=tmp_path / "state", save_dir=tmp_path / "other")
    again.set_image_dimensions(64, 64, 3)
    again.use_predefined_model("fcn-18")
    np.testing.assert_allclose(again.forward_pass_with_file_inputs(files), expected, rtol=0, atol=1e-6)

    mismatch = dpp.SemanticSegmentationModel(load_from_saved=tmp_path / "state", save_dir=tmp_path / "third")
    mismatch.set_image_dimensions(64, 64, 3)
    mismatch.use_predefined_model("u-net")
    with pytest.raises(ValueError, match="layer"):
        mismatch.forward_pass_with_file_inputs(files)


def test_vegetation_specs_are_the_shipped_network():
    """The vegetation tool's network, as architectures.py declares it, is the one its shipped state saved."""
    from deepplantphenomics.architectures import vegetation_layer_specs

    shipped = Path(dpp.__file__).parent / "weights" / "vegetation" / state.ARCHITECTURE
    assert vegetation_layer_specs() == state.read_json(shipped)["layers"]
