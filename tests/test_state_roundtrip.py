"""The saved state (safetensors weights + JSON) and inference on image files.

One tiny model is trained once per module (1 epoch on eight 64x64 generated images) and its state directory is
copied wherever a test damages it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import add_seed_network, make_model
from PIL import Image
from safetensors.torch import load_file

import deepplantphenomics as dpp
from deepplantphenomics.inference import interpret
from deepplantphenomics.network import SegmentationNetwork
from deepplantphenomics.settings import Settings
from deepplantphenomics.synthetic import write_synthetic_dataset

STATE_FILES = {"model.safetensors", "architecture.json", "settings.json", "split.json"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(state dir, image files, probabilities of the trained model on them, the model)."""
    root = tmp_path_factory.mktemp("trained")
    images, masks = write_synthetic_dataset(root / "data", n_images=8, height=64, width=64, seed=0)
    model = make_model(root / "state", save_checkpoints=True)
    model.set_test_split(0.25)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.begin_training()
    files = sorted(str(p) for p in images.iterdir())[:3]
    return root / "state", files, model.forward_pass_with_file_inputs(files), model


@pytest.fixture
def state_copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained[0], tmp_path / "copy"))


def declare_like_trained(model: dpp.SemanticSegmentationModel) -> None:
    model.set_batch_size(4)
    model.set_image_dimensions(64, 64, 3)
    add_seed_network(model)


# ------------------------------------------------------------------------------------------ what is written
def test_begin_training_writes_the_state(trained):
    state, *_ = trained
    names = {p.name for p in state.iterdir()}
    assert STATE_FILES | {"checkpoint.pt"} <= names
    assert not any(name.endswith(".tmp") for name in names)  # atomic writes leave no temporary files


def test_no_checkpoint_without_save_checkpoints(tmp_path, tiny_dataset):
    model = make_model(tmp_path / "state")  # save_checkpoints=False
    model.set_test_split(0.25)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(*tiny_dataset)
    model.begin_training()
    names = {p.name for p in (tmp_path / "state").iterdir()}
    assert STATE_FILES <= names and "checkpoint.pt" not in names


def test_architecture_and_settings_json(trained):
    state, _, _, model = trained
    arch = json.loads((state / "architecture.json").read_text())
    assert arch["layers"] == model.layer_specs
    assert [layer["kind"] for layer in arch["layers"]] == ["input", "conv", "conv", "conv", "output"]
    assert arch["input_shape"] == [3, 64, 64] and arch["out_channels"] == 1 and arch["num_classes"] == 2
    settings = Settings.from_dict(json.loads((state / "settings.json").read_text()))
    assert settings == model.settings
    split = json.loads((state / "split.json").read_text())
    assert len(split["test"]) == 2 and len(split["train"]) == 6


def test_safetensors_file_loads_with_safetensors(trained):
    state, files, expected, model = trained
    weights = load_file(str(state / "model.safetensors"))
    network = model.build_network()
    assert set(weights) == set(network.state_dict())
    for key, value in network.state_dict().items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0)
    # The file alone, with architecture.json, rebuilds the same function.
    arch = json.loads((state / "architecture.json").read_text())
    rebuilt = SegmentationNetwork(arch["layers"], tuple(arch["input_shape"]), arch["out_channels"])
    rebuilt.load_state_dict(weights)
    rebuilt.eval()
    image = np.asarray(Image.open(files[0]), dtype=np.float32) / 255.0
    with torch.no_grad():
        # The documented preprocessing (architecture.json): DPP's per-image standardisation.
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        x = (x - x.mean()) / x.std(unbiased=False).clamp_min(1 / np.sqrt(x.numel()))
        probs = torch.sigmoid(rebuilt(x))
    np.testing.assert_allclose(probs[0].permute(1, 2, 0).numpy(), expected[0], atol=1e-5)


def test_save_state_to_another_folder(trained, tmp_path):
    *_, model = trained
    out = model.save_state(tmp_path / "exported")
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "architecture.json", "settings.json"}


# ------------------------------------------------------------------------------------------ loading
def test_load_model_gives_the_same_outputs(trained):
    state, files, expected, _ = trained
    loaded = dpp.load_model(state)
    np.testing.assert_allclose(loaded.forward_pass_with_file_inputs(files), expected, atol=1e-5)
    np.testing.assert_array_equal(
        loaded.forward_pass_with_interpreted_outputs(files, threshold=0.5),
        ((expected[..., 0] > 0.5) * 255).astype(np.uint8),
    )
    np.testing.assert_array_equal(
        loaded.forward_pass_with_interpreted_outputs(files), np.stack([interpret(p) for p in expected])
    )


def test_load_model_accepts_a_string_path(trained):
    state, files, expected, _ = trained
    np.testing.assert_allclose(
        dpp.load_model(str(state)).forward_pass_with_file_inputs(files), expected, atol=1e-5
    )


def test_dpp_way_load_from_saved_with_the_same_layers(trained):
    state, files, expected, _ = trained
    model = dpp.SemanticSegmentationModel(load_from_saved=state, save_dir=state)
    model.set_random_seed(123)  # another initialisation, overwritten by the saved weights
    declare_like_trained(model)
    np.testing.assert_allclose(model.forward_pass_with_file_inputs(files), expected, atol=1e-5)


def test_load_from_saved_with_another_architecture_names_the_first_differing_layer(trained):
    state, files, *_ = trained
    model = dpp.SemanticSegmentationModel(load_from_saved=state)
    model.set_image_dimensions(64, 64, 3)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 16], 1, "relu")
    model.add_convolutional_layer([3, 3, 16, 64], 1, "relu")  # saved: 32 filters
    model.add_convolutional_layer([5, 5, 64, 32], 1, "relu")
    model.add_output_layer()
    with pytest.raises(
        ValueError, match=r"differs from the one saved in .* at layer 2 \(convolutional layer\)"
    ):
        model.forward_pass_with_file_inputs(files)


def test_load_from_saved_with_fewer_layers(trained):
    state, files, *_ = trained
    model = dpp.SemanticSegmentationModel(load_from_saved=state)
    model.set_image_dimensions(64, 64, 3)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 16], 1, "relu")
    model.add_output_layer()
    with pytest.raises(ValueError, match=r"at layer 2 \((output layer|convolutional layer)\)"):
        model.forward_pass_with_file_inputs(files)


def test_missing_weights_file_is_named(state_copy, trained):
    (state_copy / "model.safetensors").unlink()
    files = trained[1]
    with pytest.raises(FileNotFoundError, match=re.escape(str(state_copy / "model.safetensors"))):
        dpp.load_model(state_copy)
    model = dpp.SemanticSegmentationModel(load_from_saved=state_copy)
    declare_like_trained(model)
    with pytest.raises(FileNotFoundError, match=re.escape(str(state_copy / "model.safetensors"))):
        model.forward_pass_with_file_inputs(files)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights_file_is_named(state_copy, trained, damage):
    path = state_copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07" * 100)
    with pytest.raises(ValueError, match=re.escape(f"Weights file '{path}' is corrupt")):
        dpp.load_model(state_copy)
    model = dpp.SemanticSegmentationModel(load_from_saved=state_copy)
    declare_like_trained(model)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        model.forward_pass_with_file_inputs(trained[1])


def test_weights_of_another_network_are_named(state_copy, tmp_path):
    other = make_model(tmp_path / "other", network=False)
    other.add_input_layer()
    other.add_output_layer()
    other.save_state(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", state_copy / "model.safetensors")
    # The weights say which architecture they were saved with (issue 20.9), so the copy is caught as such.
    with pytest.raises(
        ValueError, match=r"'.*copy' mixes files of different saves: model\.safetensors belong"
    ):
        dpp.load_model(state_copy)


@pytest.mark.parametrize("name", ["architecture.json", "settings.json"])
def test_missing_or_corrupt_json_is_named(state_copy, name):
    path = state_copy / name
    path.write_text("{ not json")
    with pytest.raises(ValueError, match=re.escape(f"Saved state file '{path}' is corrupt")):
        dpp.load_model(state_copy)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        dpp.load_model(state_copy)


def test_load_model_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nothing"))):
        dpp.load_model(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------ inference
@pytest.fixture
def untrained(tmp_path) -> dpp.SemanticSegmentationModel:
    return make_model(tmp_path / "state")


def test_file_inputs_give_float32_probabilities(untrained, tiny_dataset):
    files = sorted(tiny_dataset[0].iterdir())[:3]
    probs = untrained.forward_pass_with_file_inputs(files)
    assert probs.dtype == np.float32 and probs.shape == (3, 64, 64, 1)
    assert probs.min() >= 0.0 and probs.max() <= 1.0
    single = untrained.forward_pass_with_file_inputs(str(files[0]))
    np.testing.assert_allclose(single, probs[:1], atol=1e-6)


def test_interpreted_outputs_are_uint8_0_or_255(untrained, tiny_dataset):
    files = sorted(tiny_dataset[0].iterdir())[:3]
    masks = untrained.forward_pass_with_interpreted_outputs(files)
    assert masks.dtype == np.uint8 and masks.shape == (3, 64, 64)
    assert set(np.unique(masks).tolist()) <= {0, 255}
    probs = untrained.forward_pass_with_file_inputs(files)
    # DPP's rule by default: each map cut at the middle of its own min-max range.
    low = probs[..., 0].min(axis=(1, 2), keepdims=True)
    high = probs[..., 0].max(axis=(1, 2), keepdims=True)
    np.testing.assert_array_equal(masks, np.where(probs[..., 0] - low >= 0.5 * (high - low), 255, 0))
    fixed = untrained.forward_pass_with_interpreted_outputs(files, threshold=0.5)
    np.testing.assert_array_equal(fixed, np.where(probs[..., 0] > 0.5, 255, 0))


def test_multi_class_outputs(tmp_path, tiny_dataset):
    model = make_model(tmp_path / "state", network=False)
    model.set_num_segmentation_classes(3)
    add_seed_network(model)
    files = sorted(tiny_dataset[0].iterdir())[:2]
    probs = model.forward_pass_with_file_inputs(files)
    assert probs.dtype == np.float32 and probs.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    classes = model.forward_pass_with_interpreted_outputs(files)
    assert classes.dtype == np.uint8 and classes.shape == (2, 64, 64)
    assert set(np.unique(classes).tolist()) <= {0, 1, 2}
    np.testing.assert_array_equal(classes, probs.argmax(axis=-1))


def test_missing_input_file_is_named(untrained, tiny_dataset, tmp_path):
    good = sorted(tiny_dataset[0].iterdir())[0]
    missing = tmp_path / "no_such_image.png"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        untrained.forward_pass_with_file_inputs([good, missing])
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        untrained.forward_pass_with_interpreted_outputs([missing])


def test_bad_file_lists(untrained):
    with pytest.raises(ValueError, match=r"argument `images`: expected at least one file, received \[\]"):
        untrained.forward_pass_with_file_inputs([])
    with pytest.raises(TypeError, match=r"argument `images`.*received 3"):
        untrained.forward_pass_with_file_inputs([3])


def test_inference_resizes_like_training(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(path)
    model = make_model(tmp_path / "state")
    with pytest.raises(
        ValueError, match=r"is 80x96 but the network input is 64x64; call set_resize_images\(True\)"
    ):
        model.forward_pass_with_file_inputs([path])
    model.set_resize_images(True)
    assert model.forward_pass_with_file_inputs([path]).shape == (1, 64, 64, 1)


def test_shut_down_twice_is_safe(trained):
    state, files, expected, _ = trained
    model = dpp.load_model(state)
    model.shut_down()
    model.shut_down()
    with pytest.raises(RuntimeError, match=r"shut down"):
        model.build_network()  # the network was released
