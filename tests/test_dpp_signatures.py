"""Scripts written for Deep Plant Phenomics run here unchanged, also when they pass arguments by keyword.

``DPP_SIGNATURES`` is copied from DPP's own source (github.com/p2irc/deepplantphenomics, newest versions:
``deepplantphenomics/deepplantpheno.py`` at 89da9a0 for ``DPPModel`` and ``semantic_segmentation_model.py`` at
3bf325d for ``SemanticSegmentationModel``): every public method that applies to a segmentation model, with its
parameter names in order and their defaults. Ours must take the same names in the same order with the same
defaults; it may add parameters after them, with defaults (``begin_training(resume=False)``).
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import deepplantphenomics as dpp
from deepplantphenomics.layers import LEGACY_BN_EPSILON, make_module
from deepplantphenomics.network import SegmentationNetwork
from deepplantphenomics.settings import Settings
from deepplantphenomics.state import check_architecture
from deepplantphenomics.synthetic import write_synthetic_dataset
from deepplantphenomics.training import make_optimizer, optimizer_parameters

REQUIRED = inspect.Parameter.empty

# method: [(parameter, DPP's default or REQUIRED), ...] in DPP's order.
DPP_SIGNATURES: dict[str, list[tuple[str, object]]] = {
    "__init__": [
        ("debug", False),
        ("load_from_saved", False),
        ("save_checkpoints", True),
        ("initialize", True),
        ("tensorboard_dir", None),
        ("report_rate", 100),
        ("save_dir", None),
    ],
    # settings
    "set_number_of_threads": [("num_threads", REQUIRED)],
    "set_number_of_gpus": [("num_gpus", REQUIRED)],
    "set_random_seed": [("seed", REQUIRED)],
    "set_batch_size": [("size", REQUIRED)],
    "set_test_split": [("ratio", REQUIRED)],
    "set_validation_split": [("ratio", REQUIRED)],
    "force_split_shuffle": [("force_split", REQUIRED)],
    "set_maximum_training_epochs": [("epochs", REQUIRED)],
    "set_learning_rate": [("rate", REQUIRED)],
    "set_crop_or_pad_images": [("crop_or_pad", REQUIRED)],
    "set_resize_images": [("resize", REQUIRED)],
    "set_augmentation_flip_horizontal": [("flip", REQUIRED)],
    "set_augmentation_flip_vertical": [("flip", REQUIRED)],
    "set_augmentation_crop": [("resize", REQUIRED), ("crop_ratio", 0.75)],
    "set_augmentation_brightness_and_contrast": [("contr", REQUIRED)],
    "set_augmentation_rotation": [("rot", REQUIRED), ("crop_borders", False)],
    "set_regularization_coefficient": [("lamb", REQUIRED)],
    # DPP's documentation and older releases name the second argument epochs_per_decay, its last release
    # batches_per_decay; both are accepted (see test_learning_rate_decay_takes_both_dpp_names).
    "set_learning_rate_decay": [("decay_factor", REQUIRED), ("epochs_per_decay", REQUIRED)],
    "set_optimizer": [("optimizer", REQUIRED)],
    "set_loss_function": [("loss_fn", REQUIRED)],
    "set_weight_initializer": [("initializer", REQUIRED)],
    "set_image_dimensions": [
        ("image_height", REQUIRED),
        ("image_width", REQUIRED),
        ("image_depth", REQUIRED),
    ],
    "set_original_image_dimensions": [("image_height", REQUIRED), ("image_width", REQUIRED)],
    "set_patch_size": [("height", REQUIRED), ("width", REQUIRED)],
    "set_gen_data_overwrite": [("overwrite", REQUIRED)],
    "set_num_segmentation_classes": [("num_class", REQUIRED)],
    # training, evaluation, state
    "begin_training": [("return_test_loss", False)],
    "begin_training_with_hyperparameter_search": [
        ("l2_reg_limits", None),
        ("lr_limits", None),
        ("num_steps", 3),
    ],
    "compute_full_test_accuracy": [],
    "shut_down": [],
    "save_state": [("directory", None)],
    "load_state": [],
    # inference
    "forward_pass": [("x", REQUIRED), ("deterministic", False), ("moderation_features", None)],
    "forward_pass_with_file_inputs": [("images", REQUIRED)],
    "forward_pass_with_interpreted_outputs": [("x", REQUIRED)],
    # layers
    "add_input_layer": [],
    "add_moderation_layer": [],
    "add_moderation_features": [("moderation_features", REQUIRED)],
    "add_convolutional_layer": [
        ("filter_dimension", REQUIRED),
        ("stride_length", REQUIRED),
        ("activation_function", REQUIRED),
        ("padding", None),
        ("batch_norm", False),
        ("use_bias", True),
        ("epsilon", 1e-5),
        ("decay", 0.9),
    ],
    "add_upsampling_layer": [
        ("filter_size", REQUIRED),
        ("num_filters", REQUIRED),
        ("upscale_factor", 2),
        ("activation_function", None),
        ("use_bias", True),
        ("regularization_coefficient", None),
    ],
    "add_pooling_layer": [("kernel_size", REQUIRED), ("stride_length", REQUIRED), ("pooling_type", "max")],
    "add_normalization_layer": [],
    "add_dropout_layer": [("p", REQUIRED)],
    "add_batch_norm_layer": [],
    "add_fully_connected_layer": [
        ("output_size", REQUIRED),
        ("activation_function", REQUIRED),
        ("regularization_coefficient", None),
    ],
    "add_paral_conv_block": [("filter_dimension_1", REQUIRED), ("filter_dimension_2", REQUIRED)],
    "add_skip_connection": [("downsampled", False)],
    "add_copy_connection": [("mode", REQUIRED)],
    "add_global_average_pooling_layer": [],
    "add_output_layer": [("regularization_coefficient", None), ("output_size", None)],
    "use_predefined_model": [("model_name", REQUIRED)],
    # data
    "load_dataset_from_directory_with_segmentation_masks": [("dirname", REQUIRED), ("seg_dirname", REQUIRED)],
    "load_images_from_list": [("image_files", REQUIRED)],
}

# (method, parameter) that DPP requires but that has a default here, and why.
OPTIONAL_HERE = {
    ("set_learning_rate_decay", "epochs_per_decay"): "None when batches_per_decay is given instead",
}


@pytest.mark.parametrize("method", sorted(DPP_SIGNATURES))
def test_signature_matches_dpp(method):
    ours = list(inspect.signature(getattr(dpp.SemanticSegmentationModel, method)).parameters.values())[1:]
    dpp_params = DPP_SIGNATURES[method]
    assert len(ours) >= len(dpp_params), f"{method} takes fewer parameters than DPP's"
    for (name, default), param in zip(dpp_params, ours):
        assert param.name == name, f"{method}: expected parameter {name!r}, found {param.name!r}"
        assert param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, f"{method}({name}) must be positional"
        if (method, name) in OPTIONAL_HERE:
            assert param.default is not REQUIRED
        else:
            assert param.default == default or (default is REQUIRED and param.default is REQUIRED), (
                f"{method}({name}): DPP's default is {default!r}, ours {param.default!r}"
            )
    for extra in ours[len(dpp_params) :]:
        assert extra.default is not REQUIRED, f"{method}: added parameter {extra.name!r} needs a default"


def test_every_public_method_of_dpp_for_segmentation_exists():
    missing = [
        name for name in DPP_SIGNATURES if not callable(getattr(dpp.SemanticSegmentationModel, name, None))
    ]
    assert missing == []


# ------------------------------------------------------------------------------------ a DPP script, by keyword
def dpp_layers(model: dpp.SemanticSegmentationModel) -> None:
    """A small U-Net-like network declared with every layer method, every argument by keyword."""
    model.add_input_layer()
    model.add_convolutional_layer(
        filter_dimension=[3, 3, 3, 8],
        stride_length=1,
        activation_function="relu",
        padding=None,
        batch_norm=True,
        use_bias=False,
        epsilon=1e-5,
        decay=0.9,
    )
    model.add_copy_connection(mode="save")
    model.add_pooling_layer(kernel_size=2, stride_length=2, pooling_type="max")
    model.add_convolutional_layer(filter_dimension=[3, 3, 8, 8], stride_length=1, activation_function="lrelu")
    model.add_dropout_layer(p=0.9)
    model.add_upsampling_layer(
        filter_size=2,
        num_filters=8,
        upscale_factor=2,
        activation_function="relu",
        use_bias=True,
        regularization_coefficient=1e-3,
    )
    model.add_copy_connection(mode="load")
    model.add_batch_norm_layer()
    model.add_normalization_layer()
    model.add_paral_conv_block(filter_dimension_1=[1, 1, 16, 4], filter_dimension_2=[3, 3, 16, 4])
    model.add_skip_connection(downsampled=False)
    model.add_output_layer(regularization_coefficient=None, output_size=None)


def configure(model: dpp.SemanticSegmentationModel) -> None:
    model.set_number_of_threads(num_threads=1)
    model.set_batch_size(size=2)
    model.set_image_dimensions(image_height=32, image_width=32, image_depth=3)
    model.set_original_image_dimensions(image_height=32, image_width=32)
    model.set_resize_images(resize=False)
    model.set_crop_or_pad_images(crop_or_pad=False)
    model.set_test_split(ratio=0.25)
    model.set_validation_split(ratio=0.0)
    model.force_split_shuffle(force_split=True)
    model.set_random_seed(seed=3)
    model.set_learning_rate(rate=0.001)
    model.set_optimizer(optimizer="adam")
    model.set_learning_rate_decay(decay_factor=0.5, epochs_per_decay=1)
    model.set_regularization_coefficient(lamb=1e-4)
    model.set_weight_initializer(initializer="xavier")
    model.set_maximum_training_epochs(epochs=1)
    model.set_loss_function(loss_fn="sigmoid cross entropy")
    model.set_num_segmentation_classes(num_class=2)
    model.set_augmentation_brightness_and_contrast(contr=True)
    model.set_augmentation_flip_horizontal(flip=True)
    model.set_augmentation_flip_vertical(flip=True)
    model.set_augmentation_rotation(rot=False, crop_borders=False)
    model.set_augmentation_crop(resize=False, crop_ratio=0.75)
    model.set_gen_data_overwrite(overwrite=False)


@pytest.fixture(scope="module")
def dpp_script(tmp_path_factory):
    """Runs the keyword script once: (root, image files, model after training)."""
    root = tmp_path_factory.mktemp("dpp_script")
    images, masks = write_synthetic_dataset(root / "data", n_images=8, height=32, width=32, seed=0)
    model = dpp.SemanticSegmentationModel(
        debug=False,
        load_from_saved=False,
        save_checkpoints=False,
        initialize=True,
        tensorboard_dir=None,
        report_rate=100,
        save_dir=str(root / "state"),
    )
    configure(model)
    model.load_dataset_from_directory_with_segmentation_masks(dirname=str(images), seg_dirname=str(masks))
    dpp_layers(model)
    test_loss = model.begin_training(return_test_loss=True)
    files = sorted(str(p) for p in images.iterdir())[:2]
    return root, files, model, test_loss


def test_keyword_script_trains_and_predicts(dpp_script):
    root, files, model, test_loss = dpp_script
    assert isinstance(test_loss, float) and math.isfinite(test_loss)
    assert len(model.history) == 1
    probs = model.forward_pass_with_file_inputs(images=files)
    assert probs.shape == (2, 32, 32, 1) and probs.dtype == np.float32
    masks = model.forward_pass_with_interpreted_outputs(x=files)
    assert masks.shape == (2, 32, 32) and set(np.unique(masks).tolist()) <= {0, 255}
    assert model.save_state(directory=str(root / "copy")) == root / "copy"
    metrics = model.compute_full_test_accuracy()
    assert metrics["loss"] == pytest.approx(test_loss, rel=1e-5)


def test_keyword_script_state_loads_with_load_state(dpp_script):
    root, files, trained, _ = dpp_script
    model = dpp.SemanticSegmentationModel(load_from_saved=str(root / "state"), save_dir=str(root / "other"))
    configure(model)
    dpp_layers(model)
    model.load_state()
    np.testing.assert_allclose(
        model.forward_pass_with_file_inputs(images=files),
        trained.forward_pass_with_file_inputs(files),
        atol=1e-6,
    )
    model.shut_down()
    model.shut_down()


def test_keyword_script_layer_options_reach_the_network(dpp_script):
    _, _, model, _ = dpp_script
    network = model.build_network()
    conv, bn, _ = network.layers[1]
    assert conv.bias is None  # use_bias=False
    assert (bn.eps, bn.momentum) == (pytest.approx(1e-5), pytest.approx(0.1))
    assert network.layers[6][0].bias is not None  # the upsampling layer kept its bias
    assert network.layers[8].eps == pytest.approx(1e-5)  # add_batch_norm_layer: DPP's epsilon
    assert model.layer_specs[6]["regularization_coefficient"] == 1e-3


def test_predefined_model_by_keyword(tmp_path):
    model = dpp.SemanticSegmentationModel(save_dir=tmp_path)
    model.set_image_dimensions(image_height=32, image_width=32, image_depth=3)
    model.use_predefined_model(model_name="fcn-18")
    assert model.layer_specs[-1]["kind"] == "output"
    with pytest.raises(ValueError, match=r"argument `model_name`.*received 'vgg-16'"):
        dpp.SemanticSegmentationModel().use_predefined_model(model_name="vgg-16")


# ------------------------------------------------------------------------------------------ layer options
def new_model(size: int = 16, depth: int = 3) -> dpp.SemanticSegmentationModel:
    model = dpp.SemanticSegmentationModel()
    model.set_image_dimensions(size, size, depth)
    model.add_input_layer()
    return model


# (layer spec, expected bias present, expected (eps, momentum) of the batch norm or None)
SPEC_TABLE = [
    # Specs saved before DPP's options existed: bias, Keras' epsilon, torch's momentum.
    (
        {"kind": "conv", "filter_dimension": [3, 3, 3, 4], "stride_length": 1, "batch_norm": True},
        True,
        (1e-3, 0.1),
    ),
    ({"kind": "conv", "filter_dimension": [3, 3, 3, 4], "stride_length": 1}, True, None),
    (
        {"kind": "conv", "filter_dimension": [3, 3, 3, 4], "stride_length": 1, "use_bias": False},
        False,
        None,
    ),
    (
        {
            "kind": "conv",
            "filter_dimension": [3, 3, 3, 4],
            "stride_length": 1,
            "batch_norm": True,
            "use_bias": False,
            "epsilon": 0.01,
            "decay": 0.99,
        },
        False,
        (0.01, 0.01),
    ),
]


@pytest.mark.parametrize(("spec", "bias", "bn"), SPEC_TABLE)
def test_conv_spec_options(spec, bias, bn):
    block = make_module(spec, (3, 8, 8))
    assert (block[0].bias is not None) == bias
    norms = [m for m in block if isinstance(m, nn.BatchNorm2d)]
    if bn is None:
        assert norms == []
    else:
        assert (norms[0].eps, norms[0].momentum) == (pytest.approx(bn[0]), pytest.approx(bn[1]))


def test_old_batchnorm_and_upsample_specs_keep_their_behaviour():
    norm = make_module({"kind": "batchnorm"}, (4, 8, 8))
    assert (norm.eps, norm.momentum) == (LEGACY_BN_EPSILON, pytest.approx(0.1))
    up = make_module({"kind": "upsample", "filter_size": 2, "num_filters": 3, "upscale_factor": 2}, (4, 8, 8))
    assert up[0].bias is not None


def test_use_bias_false_removes_the_bias_parameters():
    with_bias, without = new_model(), new_model()
    with_bias.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    without.add_convolutional_layer([3, 3, 3, 4], 1, "relu", use_bias=False)
    without.add_upsampling_layer(2, 2, use_bias=False)
    with_bias.add_upsampling_layer(2, 2)
    for model in (with_bias, without):
        model.add_output_layer()
    count = {id(m): sum(p.numel() for p in m.build_network().parameters()) for m in (with_bias, without)}
    assert count[id(with_bias)] - count[id(without)] == 4 + 2  # conv bias (4) + upsampling bias (2)


def test_epsilon_and_decay_are_saved_only_with_batch_norm():
    model = new_model()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu", epsilon=0.5)
    model.add_convolutional_layer([3, 3, 4, 4], 1, "relu", batch_norm=True, epsilon=0.5, decay=0.8)
    assert "epsilon" not in model.layer_specs[1]
    assert (model.layer_specs[2]["epsilon"], model.layer_specs[2]["decay"]) == (0.5, 0.8)


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (
            lambda m: m.add_convolutional_layer([3, 3, 3, 4], 1, "relu", use_bias=1),
            TypeError,
            r"`use_bias`.*1",
        ),
        (
            lambda m: m.add_convolutional_layer([3, 3, 3, 4], 1, "relu", epsilon=-1e-5),
            ValueError,
            r"`epsilon`",
        ),
        (
            lambda m: m.add_convolutional_layer([3, 3, 3, 4], 1, "relu", epsilon="1e-5"),
            TypeError,
            r"`epsilon`",
        ),
        (
            lambda m: m.add_convolutional_layer([3, 3, 3, 4], 1, "relu", decay=1.5),
            ValueError,
            r"`decay`.*1\.5",
        ),
        (lambda m: m.add_upsampling_layer(2, 4, use_bias=None), TypeError, r"`use_bias`.*None"),
        (
            lambda m: m.add_upsampling_layer(2, 4, regularization_coefficient=-0.1),
            ValueError,
            r"`regularization_coefficient`.*-0\.1",
        ),
        (
            lambda m: m.add_output_layer(regularization_coefficient="a"),
            TypeError,
            r"`regularization_coefficient`",
        ),
        (
            lambda m: m.add_output_layer(output_size=3),
            ValueError,
            r"`output_size`.*set_num_segmentation_classes",
        ),
    ],
)
def test_layer_option_validation(call, error, pattern):
    model = new_model()
    with pytest.raises(error, match=pattern):
        call(model)
    assert len(model.layer_specs) == 1  # nothing was added


def test_old_saved_specs_match_new_declarations():
    old = [
        {"kind": "input"},
        {
            "kind": "conv",
            "filter_dimension": [3, 3, 3, 4],
            "stride_length": 1,
            "activation_function": "relu",
            "padding": None,
            "batch_norm": False,
        },
        {
            "kind": "upsample",
            "filter_size": 2,
            "num_filters": 2,
            "upscale_factor": 2,
            "activation_function": "linear",
        },
        {"kind": "output"},
    ]
    model = new_model()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    model.add_upsampling_layer(2, 2, regularization_coefficient=0.5)  # training-only: may differ
    model.add_output_layer()
    check_architecture(old, model.layer_specs, Path("state"))
    changed = new_model()
    changed.add_convolutional_layer([3, 3, 3, 4], 1, "relu", use_bias=False)
    changed.add_upsampling_layer(2, 2)
    changed.add_output_layer()
    with pytest.raises(ValueError, match=r"at layer 1 \(convolutional layer\)"):
        check_architecture(old, changed.layer_specs, Path("state"))


def test_batch_norm_decay_may_differ_from_the_saved_one_but_epsilon_may_not():
    def specs(**options):
        model = new_model()
        model.add_convolutional_layer([3, 3, 3, 4], 1, "relu", batch_norm=True, **options)
        model.add_output_layer()
        return model.layer_specs

    check_architecture(specs(decay=0.9), specs(decay=0.5), Path("state"))
    with pytest.raises(ValueError, match=r"at layer 1"):
        check_architecture(specs(epsilon=1e-5), specs(epsilon=1e-3), Path("state"))


def test_per_layer_regularization_is_an_optimizer_parameter_group():
    model = new_model()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    model.add_upsampling_layer(2, 2, regularization_coefficient=0.5)
    model.add_output_layer(regularization_coefficient=0.25)
    network = model.build_network()
    settings = Settings(optimizer="sgd", learning_rate=0.1, regularization_coefficient=0.01)
    optimizer = make_optimizer(settings, optimizer_parameters(network, settings))
    assert sorted(group["weight_decay"] for group in optimizer.param_groups) == [0.01, 0.25, 0.5]
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    for p in network.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # a zero gradient leaves only the decay: p <- p * (1 - lr * coefficient)
    factor = {"layers.1.": 1 - 0.1 * 0.01, "layers.2.": 1 - 0.1 * 0.5, "layers.3.": 1 - 0.1 * 0.25}
    for name, p in network.named_parameters():
        expected = next(f for prefix, f in factor.items() if name.startswith(prefix))
        torch.testing.assert_close(p.detach(), before[name] * expected)


def test_without_per_layer_coefficients_there_is_one_parameter_group():
    model = new_model()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    model.add_output_layer()
    network = model.build_network()
    settings = Settings(regularization_coefficient=0.01)
    optimizer = make_optimizer(settings, optimizer_parameters(network, settings))
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.01]


def test_network_built_from_specs_records_them():
    model = new_model()
    model.add_upsampling_layer(2, 2, regularization_coefficient=0.5)
    model.add_output_layer()
    network = SegmentationNetwork(model.layer_specs, (3, 16, 16), 1)
    assert [s["kind"] for s in network.specs] == ["input", "upsample", "output"]


# ------------------------------------------------------------------------------------------ learning rate decay
def tiny_training_model(root: Path, **model_kwargs) -> dpp.SemanticSegmentationModel:
    images, masks = write_synthetic_dataset(root / "data", n_images=8, height=32, width=32, seed=1)
    model = dpp.SemanticSegmentationModel(save_dir=root / "state", save_checkpoints=False, **model_kwargs)
    model.set_random_seed(seed=0)
    model.set_batch_size(size=2)
    model.set_image_dimensions(image_height=32, image_width=32, image_depth=3)
    model.set_test_split(ratio=0.25)
    model.set_validation_split(ratio=0.0)
    model.set_maximum_training_epochs(epochs=1)
    model.load_dataset_from_directory_with_segmentation_masks(dirname=images, seg_dirname=masks)
    model.add_input_layer()
    model.add_convolutional_layer(filter_dimension=[3, 3, 3, 4], stride_length=1, activation_function="relu")
    model.add_output_layer()
    return model


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_gpus_asked_for_without_a_gpu_warn_at_the_callers_line(tmp_path):
    model = tiny_training_model(tmp_path)
    model.set_number_of_gpus(num_gpus=1)
    with pytest.warns(UserWarning, match=r"set_number_of_gpus\(1\): no GPU is available") as caught:
        model.begin_training()
    assert {Path(w.filename).name for w in caught if "GPU" in str(w.message)} == {Path(__file__).name}


def test_learning_rate_decay_takes_both_dpp_names(tmp_path):
    model = tiny_training_model(tmp_path)
    model.set_learning_rate_decay(decay_factor=0.5, epochs_per_decay=3)
    assert model.settings.epochs_per_decay == 3
    model.set_learning_rate_decay(decay_factor=0.5, batches_per_decay=6)
    model.begin_training()
    # 6 training images in batches of 2: 3 batches per epoch, so 6 batches are 2 epochs.
    assert model.settings.epochs_per_decay == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({}, TypeError, r"one of `epochs_per_decay` and `batches_per_decay`"),
        ({"epochs_per_decay": 2, "batches_per_decay": 10}, TypeError, r"one of `epochs_per_decay`"),
        ({"batches_per_decay": 0}, ValueError, r"argument `batches_per_decay`.*received 0"),
        ({"batches_per_decay": 2.0}, TypeError, r"argument `batches_per_decay`.*received 2\.0"),
    ],
)
def test_learning_rate_decay_argument_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        dpp.SemanticSegmentationModel().set_learning_rate_decay(0.5, **kwargs)


# ------------------------------------------------------------------------------------------ forward_pass
def test_forward_pass_on_arrays_and_tensors():
    model = new_model(16, 1)
    model.add_convolutional_layer([3, 3, 1, 4], 1, "relu", batch_norm=True)
    model.add_dropout_layer(0.5)
    model.add_output_layer()
    network = model.build_network()
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    out = model.forward_pass(x, deterministic=True)
    assert isinstance(out, np.ndarray) and out.shape == (2, 16, 16, 1)
    network.eval()
    with torch.no_grad():
        expected = network(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    network.train()
    tensor = torch.from_numpy(x).requires_grad_()
    logits = model.forward_pass(tensor, deterministic=True)
    logits.sum().backward()  # the graph is kept for tensors
    assert tensor.grad is not None and tensor.grad.shape == (2, 16, 16, 1)
    assert network.training  # the mode is restored


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "pattern"),
    [
        ([[1.0]], {}, TypeError, r"argument `x`.*received list"),
        (np.zeros((16, 16, 1), np.float32), {}, ValueError, r"argument `x`.*\(N, H, W, 1\).*\(16, 16, 1\)"),
        (np.zeros((1, 16, 16, 3), np.float32), {}, ValueError, r"received shape \(1, 16, 16, 3\)"),
        (np.zeros((1, 16, 16, 1), np.float32), {"deterministic": 1}, TypeError, r"`deterministic`"),
        (
            np.zeros((1, 16, 16, 1), np.float32),
            {"moderation_features": [1.0]},
            NotImplementedError,
            "moderation",
        ),
    ],
)
def test_forward_pass_errors(x, kwargs, error, pattern):
    model = new_model(16, 1)
    model.add_output_layer()
    with pytest.raises(error, match=pattern):
        model.forward_pass(x, **kwargs)


def test_interpreted_outputs_name_dpp_argument(tmp_path):
    model = new_model()
    model.add_output_layer()
    with pytest.raises(ValueError, match=r"argument `x`: expected at least one file"):
        model.forward_pass_with_interpreted_outputs(x=[])


# ------------------------------------------------------------------------------------------ other DPP methods
def test_load_state_needs_load_from_saved():
    model = new_model()
    model.add_output_layer()
    with pytest.raises(RuntimeError, match=r"load_state\(\) loads the folder given as `load_from_saved`"):
        model.load_state()


def test_set_original_image_dimensions_is_validated_and_changes_nothing():
    model = dpp.SemanticSegmentationModel()
    before = model.settings.to_dict()
    model.set_original_image_dimensions(image_height=480, image_width=640)
    assert model.settings.to_dict() == before
    with pytest.raises(TypeError, match=r"argument `image_height`.*received '480'"):
        model.set_original_image_dimensions("480", 640)
    with pytest.raises(ValueError, match=r"argument `image_width`.*received 0"):
        model.set_original_image_dimensions(480, 0)


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        (lambda m: m.add_fully_connected_layer(output_size=8, activation_function="relu"), "1x1 convolution"),
        (lambda m: m.add_global_average_pooling_layer(), "pooling_type='avg'"),
        (lambda m: m.add_moderation_layer(), "fully connected layers"),
        (lambda m: m.add_moderation_features(moderation_features=np.zeros((2, 3))), "fully connected layers"),
        (lambda m: m.load_images_from_list(image_files=["a.png"]), "forward_pass_with_file_inputs"),
    ],
)
def test_dpp_methods_that_do_not_apply_say_what_to_use(call, hint):
    with pytest.raises(NotImplementedError, match=re.escape(hint)):
        call(new_model())


def test_methods_of_other_dpp_model_types_are_named():
    model = dpp.SemanticSegmentationModel()
    with pytest.raises(
        AttributeError, match=r"'load_ippn_tray_dataset_from_directory'.*semantic segmentation only"
    ):
        model.load_ippn_tray_dataset_from_directory("trays")
    assert not hasattr(model, "load_yolo_dataset_from_directory")
    with pytest.raises(AttributeError, match=r"object has no attribute 'no_such_method'"):
        model.no_such_method()


def test_hyperparameter_search_grid(tmp_path):
    model = tiny_training_model(tmp_path)
    model.set_regularization_coefficient(lamb=1e-4)
    losses = model.begin_training_with_hyperparameter_search(lr_limits=[1e-3, 1e-2], num_steps=2)
    assert losses.shape == (1, 2) and np.isfinite(losses).all()
    assert (model.settings.learning_rate, model.settings.regularization_coefficient) == (0.001, 1e-4)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"lr_limits": [0.1]}, TypeError, r"argument `lr_limits`: expected \[low, high\]"),
        ({"lr_limits": [0.0, 0.1]}, ValueError, r"argument `lr_limits`.*received 0\.0"),
        ({"l2_reg_limits": [0.2, 0.1]}, ValueError, r"argument `l2_reg_limits`: expected low <= high"),
        ({"num_steps": 0}, ValueError, r"argument `num_steps`.*received 0"),
    ],
)
def test_hyperparameter_search_argument_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        dpp.SemanticSegmentationModel().begin_training_with_hyperparameter_search(**kwargs)


def test_hyperparameter_search_needs_a_test_split_and_data():
    model = dpp.SemanticSegmentationModel()
    model.set_test_split(0)
    with pytest.raises(RuntimeError, match=r"compares test losses"):
        model.begin_training_with_hyperparameter_search(lr_limits=[1e-3, 1e-2])
    with pytest.raises(RuntimeError, match=r"No data"):
        dpp.SemanticSegmentationModel().begin_training_with_hyperparameter_search(lr_limits=[1e-3, 1e-2])


@pytest.mark.parametrize("name", ["adam", "sgd", "sgd_momentum", "adadelta", "adagrad"])
def test_optimizers_use_the_multi_tensor_update_with_identical_numerics(name):
    # make_optimizer asks for foreach=True (PyTorch's default only on CUDA): the same numbers as the
    # per-parameter loop, bit for bit.
    model = new_model()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu", batch_norm=True)
    model.add_output_layer()
    settings = Settings(optimizer=name, learning_rate=0.01, regularization_coefficient=0.001)
    networks = [model.build_network() for _ in range(2)]
    networks[1].load_state_dict(networks[0].state_dict())
    ours = make_optimizer(settings, networks[0].parameters())
    assert all(group["foreach"] for group in ours.param_groups)
    loop = type(ours)(networks[1].parameters(), **{**ours.defaults, "foreach": False})
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        for a, b in zip(networks[0].parameters(), networks[1].parameters(), strict=True):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        ours.step()
        loop.step()
    for a, b in zip(networks[0].parameters(), networks[1].parameters(), strict=True):
        assert torch.equal(a, b)
