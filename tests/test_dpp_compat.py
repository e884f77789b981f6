"""What DPP's own test suite (``tests/test_dpp.py`` of DPP's last release) expects, through the public API.

Each test follows DPP's documented behaviour (its code and tests), not this package's earlier output: skip
connections as DPP's graph loop computes them, numpy arguments, TypeError for wrong element types, the
layer-order check before argument checks, ``set_random_seed`` seeding Python's and numpy's generators, and
``forward_pass`` on a network without output layer. States saved before the skip rule changed still load and
compute what they computed (``tests/data/legacy_skip_state``, written by the code of commit 9caaf6a).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import deepplantphenomics as dpp
from deepplantphenomics.synthetic import write_synthetic_dataset

DATA = Path(__file__).parent / "data"
VEGETATION = Path(dpp.__file__).parent / "weights" / "vegetation"


def _model(height: int, width: int, depth: int, **kwargs) -> dpp.SemanticSegmentationModel:
    model = dpp.SemanticSegmentationModel(save_checkpoints=False, **kwargs)
    model.set_image_dimensions(height, width, depth)
    return model


# ------------------------------------------------------------------------------------------ 1. skip connections
def test_forward_pass_residual_as_in_dpp():
    """DPP's test_forward_pass_residual: input, skip, skip on a 0.5 image gives 1.0 (0.5 + 0.5)."""
    model = _model(50, 50, 1)
    model.add_input_layer()
    model.add_skip_connection(downsampled=False)  # marks the residual source
    model.add_skip_connection(downsampled=False)  # adds it to the current activation
    out = model.forward_pass(np.full([1, 50, 50, 1], 0.5, dtype=np.float32))
    assert out.shape == (1, 50, 50, 1)
    assert np.all(out == 1.0)


def test_resnet_pattern_declares(capsys):
    """DPP's FCN/ResNet pattern conv, conv, pool, add_skip_connection(): the first skip only marks the source."""
    model = _model(64, 64, 3, debug=True)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    model.add_convolutional_layer([3, 3, 8, 8], 1, "relu")
    model.add_pooling_layer(2, 2)
    model.add_skip_connection()
    model.add_convolutional_layer([3, 3, 8, 16], 1, "relu")
    model.add_pooling_layer(2, 2)
    model.add_skip_connection(downsampled=True)  # one halving since the source: a stride-2 projection
    model.add_output_layer()
    printed = capsys.readouterr().out
    first, second = (line for line in printed.splitlines() if "Adding skip connection" in line)
    assert "skip connection 4: output shape [1, 32, 32, 8]" in first
    assert "only marks the residual source" in first
    assert "skip connection 7: output shape [1, 16, 16, 16]" in second
    assert "marks" not in second
    assert model.forward_pass(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 64, 64, 1)


def test_add_skip_connection_as_in_dpp():
    """DPP's test_add_skip_connection, up to its last line (see the next test)."""
    model = _model(50, 50, 16, debug=False)
    with pytest.raises(RuntimeError, match="before the input layer"):
        model.add_skip_connection(downsampled=False)
    model.add_input_layer()
    model.add_skip_connection(downsampled=False)
    assert model.forward_pass(np.zeros((1, 50, 50, 16), np.float32)).shape == (1, 50, 50, 16)


def test_downsampled_skip_without_a_halving_is_refused():
    """DPP accepted input, skip, skip(downsampled=True) and logged 25x25, but its graph could not add a 25x25
    residual to the 50x50 activation; here the declaration says so (a documented difference)."""
    model = _model(50, 50, 16)
    model.add_input_layer()
    model.add_skip_connection()
    with pytest.raises(
        ValueError, match=r"source is 50x50 but the current activation is 50x50.*there was none"
    ):
        model.add_skip_connection(downsampled=True)


def test_later_skip_checks_the_source_size():
    model = _model(16, 16, 3)
    model.add_input_layer()
    model.add_skip_connection()
    model.add_convolutional_layer([3, 3, 3, 8], 2, "relu")
    with pytest.raises(
        ValueError, match=r"source is 16x16 but the current activation is 8x8.*downsampled=True"
    ):
        model.add_skip_connection()


def _known_weights_network(tmp_path: Path) -> Path:
    """A 4x4 grey network with three skip connections, saved with the weights set by hand.

    input, skip (marks x), conv 1x1 -> 2 channels, skip (adds the projected x), max pool 2x2, skip
    (downsampled: adds the stride-2 projection of the previous sum), transposed conv 2x2 (x2) -> 1, output.
    """
    model = _model(4, 4, 1, save_dir=tmp_path / "unused")
    model.add_input_layer()
    model.add_skip_connection()
    model.add_convolutional_layer([1, 1, 1, 2], 1, None)
    model.add_skip_connection()
    model.add_pooling_layer(2, 2)
    model.add_skip_connection(downsampled=True)
    model.add_upsampling_layer(2, 1, 2, None)
    model.add_output_layer()
    directory = model.save_state(tmp_path / "known")
    weights = load_file(str(directory / "model.safetensors"))
    known = {
        "layers.2.0.weight": torch.tensor([2.0, -1.0]).view(2, 1, 1, 1),  # conv
        "layers.2.0.bias": torch.tensor([0.5, 0.0]),
        "layers.3.weight": torch.tensor([1.0, 3.0]).view(2, 1, 1, 1),  # projection 1 -> 2 channels, no bias
        "layers.5.weight": torch.tensor([[1.0, 0.0], [2.0, -1.0]]).view(2, 2, 1, 1),  # stride-2 projection
        "layers.6.0.weight": torch.tensor([1.0, 0.5]).view(2, 1, 1, 1).expand(2, 1, 2, 2).contiguous(),
        "layers.6.0.bias": torch.tensor([0.25]),
        "layers.7.weight": torch.tensor([2.0]).view(1, 1, 1, 1),  # output
        "layers.7.bias": torch.tensor([-1.0]),
    }
    assert set(weights) == set(known)  # no tensor for the first skip (a marker) and no projection bias
    save_file(known, str(directory / "model.safetensors"))
    return directory


def test_skip_semantics_numerically(tmp_path):
    """The forward pass of a network with known weights, computed by hand with DPP's rule in numpy."""
    x = np.arange(16, dtype=np.float32).reshape(4, 4) / 4 - 1.5
    conv = np.stack([2.0 * x + 0.5, -1.0 * x])  # (2, 4, 4)
    sum1 = conv + np.stack([1.0 * x, 3.0 * x])  # the marked source x, projected to 2 channels
    pooled = sum1.reshape(2, 2, 2, 2, 2).max(axis=(2, 4))  # 2x2 max pooling
    sub = sum1[:, ::2, ::2]  # the stride-2 1x1 projection sees every second pixel of the previous sum
    sum2 = pooled + np.stack([sub[0], 2.0 * sub[0] - sub[1]])
    up = np.kron(1.0 * sum2[0] + 0.5 * sum2[1] + 0.25, np.ones((2, 2)))  # 2x2 blocks of the transposed conv
    expected = 2.0 * up - 1.0

    model = dpp.load_model(_known_weights_network(tmp_path))
    out = model.forward_pass(x[None, :, :, None], deterministic=True)
    np.testing.assert_allclose(out[0, :, :, 0], expected, rtol=0, atol=1e-5)


def test_new_states_record_the_rule(tmp_path):
    directory = _known_weights_network(tmp_path)
    architecture = json.loads((directory / "architecture.json").read_text())
    assert architecture["skip_semantics"] == "dpp"


def test_unknown_rule_is_refused(tmp_path):
    directory = _known_weights_network(tmp_path)
    path = directory / "architecture.json"
    architecture = json.loads(path.read_text())
    architecture["skip_semantics"] = "from-the-future"
    path.write_text(json.dumps(architecture))
    with pytest.raises(ValueError, match=r"'from-the-future'.*newer version of deepplantphenomics"):
        dpp.load_model(directory)


@pytest.fixture
def legacy_state(tmp_path: Path) -> Path:
    directory = tmp_path / "legacy"
    shutil.copytree(DATA / "legacy_skip_state", directory)
    return directory


def test_legacy_state_computes_what_it_computed(legacy_state):
    """A state saved with the earlier rule (no skip_semantics recorded) gives its recorded outputs."""
    assert "skip_semantics" not in json.loads((legacy_state / "architecture.json").read_text())
    x = np.load(legacy_state / "input.npy")
    expected = np.load(legacy_state / "expected_logits.npy")
    model = dpp.load_model(legacy_state)
    np.testing.assert_allclose(model.forward_pass(x, deterministic=True), expected, rtol=0, atol=1e-6)

    again = model.save_state(legacy_state.parent / "saved_again")  # saving keeps the rule it was trained with
    assert json.loads((again / "architecture.json").read_text())["skip_semantics"] == "input-source"
    reloaded = dpp.load_model(again)
    np.testing.assert_allclose(reloaded.forward_pass(x, deterministic=True), expected, rtol=0, atol=1e-6)


def _declare_legacy_layers(model: dpp.SemanticSegmentationModel) -> None:
    """The layers of tests/data/legacy_skip_state, declared again."""
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    model.add_skip_connection()
    model.add_pooling_layer(2, 2)
    model.add_skip_connection(downsampled=True)
    model.add_convolutional_layer([3, 3, 4, 4], 1, "tanh")
    model.add_upsampling_layer(2, 4, 2, "relu")
    model.add_output_layer()


def test_legacy_state_with_the_layers_declared_again(legacy_state, tmp_path):
    """load_from_saved plus the same declarations (the DPP way) also keeps the earlier rule."""
    model = _model(8, 8, 3, load_from_saved=legacy_state, save_dir=tmp_path / "out")
    _declare_legacy_layers(model)
    x = np.load(legacy_state / "input.npy")
    expected = np.load(legacy_state / "expected_logits.npy")
    np.testing.assert_allclose(model.forward_pass(x, deterministic=True), expected, rtol=0, atol=1e-6)


def test_training_on_from_a_legacy_state_and_resuming_keep_its_rule(legacy_state, tmp_path):
    images, masks = write_synthetic_dataset(tmp_path / "data", n_images=4, height=16, width=16, seed=1)

    def new_model(**kwargs) -> dpp.SemanticSegmentationModel:
        model = dpp.SemanticSegmentationModel(save_dir=tmp_path / "run", **kwargs)
        model.set_image_dimensions(16, 16, 3)
        model.set_random_seed(0)
        model.set_test_split(0.0)
        model.set_validation_split(0.0)
        model.load_dataset_from_directory_with_segmentation_masks(images, masks)
        _declare_legacy_layers(model)
        return model

    first = new_model(load_from_saved=legacy_state)
    first.set_maximum_training_epochs(1)
    first.begin_training()
    architecture = json.loads((tmp_path / "run" / "architecture.json").read_text())
    assert architecture["skip_semantics"] == "input-source"

    resumed = new_model()  # no load_from_saved: the run in save_dir says which rule it trained with
    resumed.set_maximum_training_epochs(2)
    resumed.begin_training(resume=True)  # the earlier rule's projection biases load without a key error
    architecture = json.loads((tmp_path / "run" / "architecture.json").read_text())
    assert architecture["skip_semantics"] == "input-source"


def test_vegetation_weights_unchanged():
    """The shipped vegetation network has no skip connections and gives the outputs recorded for its weights."""
    architecture = json.loads((VEGETATION / "architecture.json").read_text())
    assert all(layer["kind"] != "skip" for layer in architecture["layers"])
    model = dpp.load_model(VEGETATION)
    x = np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype(np.float32)
    expected = np.load(DATA / "vegetation_logits_64.npy")
    np.testing.assert_allclose(model.forward_pass(x, deterministic=True), expected, rtol=0, atol=1e-5)


def test_fcn18_first_skip_marks_the_source(tmp_path):
    """FCN-18 (as DPP declared it) has a skip connection after each encoder level: the first marks the source,
    the three others add a stride-2, bias-free projection of it (so only they have weights)."""
    model = _model(32, 32, 3, save_dir=tmp_path / "unused")
    model.use_predefined_model("fcn-18")
    directory = model.save_state(tmp_path / "fcn")
    architecture = json.loads((directory / "architecture.json").read_text())
    skips = [i for i, layer in enumerate(architecture["layers"]) if layer["kind"] == "skip"]
    weights = load_file(str(directory / "model.safetensors"))
    assert [f"layers.{i}.weight" in weights for i in skips] == [False, True, True, True]
    assert not any(f"layers.{i}.bias" in weights for i in skips)


# ------------------------------------------------------------------------------------------ 2. numpy arguments
def test_numpy_arguments_are_accepted(tmp_path):
    model = dpp.SemanticSegmentationModel(save_checkpoints=False, save_dir=tmp_path / "unused")
    model.set_image_dimensions(np.int64(16), np.int32(16), np.uint8(3))
    model.set_batch_size(np.int64(2))
    model.set_learning_rate(np.float32(0.01))
    model.set_test_split(np.float64(0.2))
    model.set_maximum_training_epochs(np.int16(3))
    model.set_class_weights(np.array([1.0, 2.0]))
    model.set_random_seed(np.int64(5))
    model.add_input_layer()
    model.add_convolutional_layer(np.array([3, 3, 3, 16]), np.int64(1), "relu")
    model.add_pooling_layer(np.int64(2), np.int64(2))
    model.add_paral_conv_block(np.array([1, 1, 16, 4]), np.array([3, 3, 16, 4]))
    model.add_dropout_layer(np.float32(0.5))
    model.add_upsampling_layer(np.int64(2), np.int64(8), np.int64(2), "relu")
    model.add_output_layer(regularization_coefficient=np.float64(0.1))
    directory = model.save_state(tmp_path / "state")  # the specs are plain JSON ints and floats
    layers = json.loads((directory / "architecture.json").read_text())["layers"]
    assert layers[1]["filter_dimension"] == [3, 3, 3, 16]
    assert layers[3]["filter_dimension_1"] == [1, 1, 16, 4]


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m: m.add_convolutional_layer([3, 3, 3, True], 1, "relu"), "filter_dimension"),
        (
            lambda m: m.add_convolutional_layer(np.array([1, 1, 1, 1], dtype=bool), 1, "relu"),
            "filter_dimension",
        ),
        (lambda m: m.add_convolutional_layer(np.array([3.0, 3.0, 3.0, 8.0]), 1, "relu"), "filter_dimension"),
        (lambda m: m.add_convolutional_layer(np.ones((2, 2), dtype=int), 1, "relu"), "filter_dimension"),
        (lambda m: m.add_convolutional_layer([3, 3, 3, 8], True, "relu"), "stride_length"),
        (lambda m: m.add_pooling_layer(np.bool_(True), 2), "kernel_size"),
        (lambda m: m.set_batch_size(True), "size"),
        (lambda m: m.set_batch_size(np.bool_(True)), "size"),
        (lambda m: m.set_class_weights(np.array([[1.0, 2.0]])), "weights"),
    ],
)
def test_bools_are_not_ints(call, argument):
    model = _model(16, 16, 3)
    model.add_input_layer()
    with pytest.raises(TypeError, match=f"argument `{argument}`"):
        call(model)


# ------------------------------------------------------------------------------------------ 3. element types
@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m: m.add_convolutional_layer([1, 2.0, 3, 4], 1, "relu"), "filter_dimension"),
        (lambda m: m.add_convolutional_layer([1, 2], 1, "relu"), "filter_dimension"),
        (lambda m: m.add_paral_conv_block([1, 1, 1, 1], [1, 2.0, 1, 1]), "filter_dimension_2"),
        (lambda m: m.add_paral_conv_block([1, 1, 1, 1], [1, 1, 1]), "filter_dimension_2"),
        (lambda m: m.add_paral_conv_block([1, 1, 1, 1], 1), "filter_dimension_2"),
        (lambda m: m.add_paral_conv_block([1, "1", 1, 1], [1, 1, 1, 1]), "filter_dimension_1"),
    ],
)
def test_wrong_element_types_raise_type_error(call, argument):
    """DPP's test_add_convolutional_layer and test_add_paral_conv_block."""
    model = _model(16, 16, 3)
    model.add_input_layer()
    with pytest.raises(TypeError, match=f"argument `{argument}`"):
        call(model)


def test_zero_dimension_is_a_value_error():
    model = _model(16, 16, 3)
    model.add_input_layer()
    with pytest.raises(ValueError, match=re.escape("argument `filter_dimension`")):
        model.add_convolutional_layer([3, 0, 3, 8], 1, "relu")


@pytest.mark.parametrize(
    ("call", "layer"),
    [
        (lambda m: m.add_convolutional_layer([1, 2.0, 3, 4], 1, "relu"), "convolutional layer"),
        (lambda m: m.add_convolutional_layer([1, 1, 1, 1], 1.0, "Nico"), "convolutional layer"),
        (lambda m: m.add_paral_conv_block([1, 1, 1, 1], [1, 2.0, 1, 1]), "parallel convolution block"),
        (lambda m: m.add_pooling_layer(1.5, 1, 5), "pooling layer"),
        (lambda m: m.add_upsampling_layer("2", -1), "upsampling layer"),
        (lambda m: m.add_dropout_layer("0.5"), "dropout layer"),
        (lambda m: m.add_skip_connection(downsampled="yes"), "skip connection"),
        (lambda m: m.add_copy_connection(5), "copy connection"),
        (lambda m: m.add_output_layer(2.5, 3), "output layer"),
    ],
)
def test_order_is_checked_before_the_arguments(call, layer):
    """DPP raised RuntimeError before the input layer, even for malformed arguments."""
    model = _model(16, 16, 3)
    with pytest.raises(RuntimeError, match=f"Cannot add a {layer}.*before the input layer"):
        call(model)


def test_order_after_the_output_layer_comes_first():
    model = _model(16, 16, 3)
    model.add_input_layer()
    model.add_output_layer()
    with pytest.raises(RuntimeError, match="after the output layer"):
        model.add_convolutional_layer([1, 2.0, 3, 4], 1, "relu")


# ------------------------------------------------------------------------------------------ 4. random seed
def test_set_random_seed_seeds_python_numpy_and_torch():
    """DPP's test_set_random_seed: the same seed repeats Python's, numpy's (and here torch's) sequences."""

    def sequences() -> tuple[list[float], np.ndarray, torch.Tensor]:
        dpp.SemanticSegmentationModel().set_random_seed(7)
        return [random.random() for _ in range(10)], np.random.random_sample((10,)), torch.rand(10)  # noqa: NPY002

    first, second = sequences(), sequences()
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    torch.testing.assert_close(first[2], second[2], rtol=0, atol=0)
    random.seed(7)
    assert first[0] == [random.random() for _ in range(10)]  # Python's generator itself, seeded with 7
    np.random.seed(7)  # noqa: NPY002 - the global generator is what is tested
    np.testing.assert_array_equal(first[1], np.random.random_sample((10,)))  # noqa: NPY002


@pytest.mark.parametrize(
    ("seed", "error"), [("7", TypeError), (7.0, TypeError), (-1, ValueError), (2**32, ValueError)]
)
def test_set_random_seed_validates(seed, error):
    with pytest.raises(error, match="argument `seed`"):
        dpp.SemanticSegmentationModel().set_random_seed(seed)


# ------------------------------------------------------------------------------------------ 5. partial networks
def test_forward_pass_on_a_partial_network(tmp_path):
    images, masks = write_synthetic_dataset(tmp_path / "data", n_images=3, height=16, width=16, seed=1)
    model = _model(16, 16, 3, save_dir=tmp_path / "state")
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 2, "relu")
    x = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype(np.float32)
    activations = model.forward_pass(x, deterministic=True)
    assert activations.shape == (2, 8, 8, 8)  # NHWC, the last layer's own size
    assert activations.min() >= 0.0  # after the relu
    tensor = model.forward_pass(torch.from_numpy(x))
    assert tuple(tensor.shape) == (2, 8, 8, 8)
    for call in (model.save_state, model.begin_training):
        with pytest.raises(RuntimeError, match="The network is not complete"):
            call()
    model.add_output_layer()
    assert model.forward_pass(x).shape == (2, 16, 16, 1)


def test_forward_pass_before_any_layer():
    with pytest.raises(RuntimeError, match="add an input layer"):
        _model(16, 16, 3).forward_pass(np.zeros((1, 16, 16, 3), np.float32))


# ------------------------------------------------------------------------------------------ 6. output_size
def test_output_size_is_refused_with_value_error():
    """DPP raised RuntimeError here; this package raises ValueError (documented in docs/migrating.md)."""
    model = _model(5, 5, 3)
    model.add_input_layer()
    with pytest.raises(ValueError, match=r"argument `output_size`: expected None"):
        model.add_output_layer(output_size=3)
