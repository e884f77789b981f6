"""Layer shapes (tracked by the builder and produced by the real torch forward pass), order errors, debug print.

Each shape test declares layers on a model, builds the network, runs a forward pass with a hook on every layer
that receives the running activation, and checks that what the builder tracked is what torch produced.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import add_seed_network

import deepplantphenomics as dpp
from deepplantphenomics.layers import SameConv2d, SamePool2d, _same_pad
from deepplantphenomics.network import NetworkBuilder, SegmentationNetwork

# Kinds whose module is called with the running activation (a skip's module sees the residual source).
_CHAINED = {"input", "conv", "pool", "upsample", "batchnorm", "dropout", "lrn", "paral_conv", "output"}


def new_model(
    height: int = 16, width: int = 16, channels: int = 3, **kwargs
) -> dpp.SemanticSegmentationModel:
    model = dpp.SemanticSegmentationModel(**kwargs)
    model.set_image_dimensions(height, width, channels)
    model.add_input_layer()
    return model


def forward_shapes(model: dpp.SemanticSegmentationModel) -> tuple[dict[int, tuple], tuple]:
    """Run a (2, C, H, W) batch through the model's network.

    Returns:
        ({layer index: (C, H, W) of the activation leaving that layer}, final output shape (N, C, H, W)).
    """
    network = model.build_network()
    network.eval()
    entering: dict[int, tuple] = {}
    handles = []
    for index, (kind, module) in enumerate(zip(network.kinds, network.layers)):
        if kind in _CHAINED:

            def hook(_module, args, index=index):
                entering[index] = tuple(args[0].shape[1:])

            handles.append(module.register_forward_pre_hook(hook))
    c, h, w = model.input_shape
    with torch.no_grad():
        out = network(torch.rand(2, c, h, w))
    for handle in handles:
        handle.remove()
    # What enters layer i + 1 is what left layer i.
    leaving = {index - 1: shape for index, shape in entering.items() if index > 0}
    return leaving, tuple(out.shape)


def check_shapes(model: dpp.SemanticSegmentationModel) -> tuple:
    """Assert tracked == real for every layer the forward pass exposes; returns the final output shape."""
    leaving, out = forward_shapes(model)
    tracked = model.layer_shapes
    assert leaving, "no layer was observed"
    for index, shape in leaving.items():
        assert tuple(tracked[index]) == shape, f"layer {index}: tracked {tracked[index]}, torch {shape}"
    c, h, w = model.input_shape
    assert out == (2, tracked[-1][0], h, w)  # 1 channel for binary models, else one per class
    # The output layer's tracked size is the network's real output size.
    assert tuple(tracked[-1][1:]) == out[2:]
    return out


# ------------------------------------------------------------------------------------------ convolution
@pytest.mark.parametrize("size", [16, 15, 17, 33])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_conv_same_padding_shapes(size, stride, kernel):
    model = new_model(size, size + 1, 3)
    model.add_convolutional_layer([kernel, kernel, 3, 8], stride, "relu")
    model.add_output_layer()
    assert model.layer_shapes[1] == (8, math.ceil(size / stride), math.ceil((size + 1) / stride))
    check_shapes(model)


@pytest.mark.parametrize(
    ("padding", "kernel", "stride", "expected"),
    [("valid", 3, 1, 14), ("valid", 5, 2, 6), (0, 3, 1, 14), (1, 3, 1, 16), (2, 3, 2, 9), ("same", 4, 3, 6)],
)
def test_conv_explicit_padding_shapes(padding, kernel, stride, expected):
    model = new_model(16, 16, 1)
    model.add_convolutional_layer([kernel, kernel, 1, 4], stride, None, padding=padding)
    model.add_output_layer()
    assert model.layer_shapes[1] == (4, expected, expected)
    check_shapes(model)


def test_conv_in_channels_come_from_the_previous_layer():
    model = new_model(16, 16, 3)
    model.add_convolutional_layer([3, 3, 999, 8], 1, "relu")  # DPP ignored the written in-channels
    model.add_convolutional_layer([3, 3, 1, 4], 1, "tanh", batch_norm=True)
    model.add_output_layer()
    assert model.layer_specs[1]["filter_dimension"] == [3, 3, 3, 8]
    assert model.layer_specs[2]["filter_dimension"] == [3, 3, 8, 4]
    check_shapes(model)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    # TensorFlow 'SAME': total = max((ceil(n / s) - 1) * s + k - n, 0), the extra pixel goes after.
    [
        (5, 2, 1, (0, 1)),
        (5, 3, 1, (1, 1)),
        (5, 3, 2, (1, 1)),
        (6, 3, 2, (0, 1)),
        (7, 4, 3, (1, 2)),
        (6, 1, 2, (0, 0)),
    ],
)
def test_same_padding_known_answers(size, kernel, stride, pads):
    assert _same_pad(size, kernel, stride) == pads


@pytest.mark.parametrize(
    ("width", "kernel", "stride", "expected"),
    [
        (5, 2, 1, [3.0, 5.0, 7.0, 9.0, 5.0]),  # padding after only: the last window is [5, 0]
        (6, 3, 2, [6.0, 12.0, 11.0]),  # windows [1,2,3], [3,4,5], [5,6,0]
        (5, 3, 2, [3.0, 9.0, 9.0]),  # windows [0,1,2], [2,3,4], [4,5,0]
        (7, 4, 3, [6.0, 18.0, 13.0]),  # pads (1, 2): [0,1,2,3], [3,4,5,6], [6,7,0,0]
    ],
)
def test_same_conv_asymmetric_padding_values(width, kernel, stride, expected):
    conv = SameConv2d(1, 1, (1, kernel), stride)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        x = torch.arange(1, width + 1, dtype=torch.float32).reshape(1, 1, 1, width)
        out = conv(x)
    assert out.flatten().tolist() == expected


# ------------------------------------------------------------------------------------------ pooling
@pytest.mark.parametrize("size", [16, 15, 9])
@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (3, 2), (3, 1), (2, 3), (4, 4)])
@pytest.mark.parametrize("kind", ["max", "avg", "MAX"])
def test_pooling_shapes(size, kernel, stride, kind):
    model = new_model(size, size, 2)
    model.add_pooling_layer(kernel, stride, kind)
    model.add_output_layer()
    assert model.layer_shapes[1] == (2, math.ceil(size / stride), math.ceil(size / stride))
    check_shapes(model)


@pytest.mark.parametrize(
    ("values", "kind", "expected"),
    [
        ([1, 2, 3, 4, 5], "max", [2, 4, 5]),
        ([-1, -2, -3, -4, -5], "max", [-1, -3, -5]),  # padding never wins a max
        ([1, 2, 3, 4, 5], "avg", [1.5, 3.5, 5.0]),  # padding is not counted in the average
    ],
)
def test_same_pooling_values(values, kind, expected):
    pool = SamePool2d(2, 2, kind)
    out = pool(torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1))
    assert out.flatten().tolist() == expected


# ------------------------------------------------------------------------------------------ upsampling
@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("kernel", [2, 3, 4, 5])
def test_upsampling_multiplies_the_size_exactly(size, factor, kernel):
    model = new_model(size * factor, size * factor, 3)
    model.add_pooling_layer(factor, factor)
    model.add_upsampling_layer(kernel, 6, factor, "relu")
    model.add_output_layer()
    assert model.layer_shapes[1] == (3, size, size)
    assert model.layer_shapes[2] == (6, size * factor, size * factor)
    check_shapes(model)


# ------------------------------------------------------------------------------------------ shape-keeping layers
def test_batchnorm_lrn_dropout_keep_the_shape():
    model = new_model(15, 17, 3)
    model.add_convolutional_layer([3, 3, 3, 8], 2, "lrelu")
    model.add_batch_norm_layer()
    model.add_normalization_layer()
    model.add_dropout_layer(0.5)
    model.add_output_layer()
    assert model.layer_shapes[1:5] == [(8, 8, 9)] * 4
    check_shapes(model)


def test_dropout_p_is_the_keep_probability_and_is_off_in_eval():
    model = new_model(16, 16, 3)
    model.add_dropout_layer(0.8)
    model.add_output_layer()
    network = model.build_network()
    dropout = network.layers[1]
    assert isinstance(dropout, torch.nn.Dropout)
    assert dropout.p == pytest.approx(0.2)
    x = torch.rand(2, 3, 16, 16)
    dropout.eval()
    assert torch.equal(dropout(x), x)
    dropout.train()
    torch.manual_seed(0)
    dropped = dropout(x)
    assert (dropped == 0).any()
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], x[kept] / 0.8)
    # In eval mode the whole network is deterministic.
    network.eval()
    with torch.no_grad():
        assert torch.equal(network(x), network(x))


@pytest.mark.parametrize("p", [0.0, -0.5, 1.5])
def test_dropout_keep_probability_out_of_range(p):
    model = new_model()
    with pytest.raises(
        ValueError, match=re.escape(f"argument `p`: expected a float in (0.0, 1.0], received {p!r}")
    ):
        model.add_dropout_layer(p)


# ------------------------------------------------------------------------------------------ connections
def test_skip_connection_identity():
    model = new_model(16, 16, 4)
    model.add_skip_connection()  # DPP's rule: the first skip connection marks the residual source
    model.add_convolutional_layer([3, 3, 4, 4], 1, "relu")
    model.add_skip_connection()
    model.add_output_layer()
    network = model.build_network()
    assert isinstance(network.layers[3], torch.nn.Identity)
    check_shapes(model)


def test_skip_connection_identity_adds_the_marked_source():
    model = new_model(8, 8, 2)
    model.add_skip_connection()
    model.add_convolutional_layer([3, 3, 2, 2], 1, None)
    model.add_skip_connection()
    model.add_output_layer()
    network = model.build_network()
    with torch.no_grad():
        network.layers[2][0].weight.zero_()
        network.layers[2][0].bias.fill_(1.0)  # the convolution outputs 1 everywhere
        output = network.layers[-1]
        output.weight.fill_(1.0)
        output.bias.zero_()
        x = torch.rand(1, 2, 8, 8)
        # output = sum over channels of (x + 1)
        torch.testing.assert_close(network(x), (x + 1).sum(dim=1, keepdim=True))


def test_skip_connection_projects_channels():
    model = new_model(16, 16, 3)
    model.add_skip_connection()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    model.add_skip_connection()
    model.add_output_layer()
    projection = model.build_network().layers[3]
    assert isinstance(projection, torch.nn.Conv2d)
    assert (projection.in_channels, projection.out_channels, projection.stride) == (3, 8, (1, 1))
    assert projection.bias is None  # DPP's projection has no bias
    check_shapes(model)


@pytest.mark.parametrize("size", [16, 15])
def test_skip_connection_downsampled(size):
    model = new_model(size, size, 3)
    model.add_skip_connection()
    model.add_convolutional_layer([3, 3, 3, 8], 2, "relu")
    model.add_convolutional_layer([3, 3, 8, 8], 1, "relu")
    model.add_skip_connection(downsampled=True)
    model.add_convolutional_layer([3, 3, 8, 8], 1, "relu")
    model.add_skip_connection()  # the source is now the previous skip connection
    model.add_output_layer()
    projection = model.build_network().layers[4]
    half = (size + 1) // 2
    assert projection(torch.zeros(1, 3, size, size)).shape[-2:] == (half, half)  # a stride-2 1x1 projection
    assert model.layer_shapes[4] == (8, half, half)
    check_shapes(model)


def test_skip_connection_size_mismatch():
    model = new_model(16, 16, 3)
    model.add_skip_connection()
    model.add_convolutional_layer([3, 3, 3, 8], 2, "relu")
    with pytest.raises(
        ValueError, match=r"residual source is 16x16 but the current activation is 8x8.*downsampled"
    ):
        model.add_skip_connection()


def test_copy_connection_concatenates():
    model = new_model(16, 16, 3)
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    model.add_copy_connection("save")
    model.add_pooling_layer(2, 2)
    model.add_convolutional_layer([3, 3, 8, 16], 1, "relu")
    model.add_upsampling_layer(2, 16, 2, "relu")
    model.add_copy_connection("LOAD")
    model.add_convolutional_layer([3, 3, 1, 4], 1, "relu")
    model.add_output_layer()
    assert model.layer_shapes[6] == (24, 16, 16)
    assert model.layer_specs[7]["filter_dimension"] == [3, 3, 24, 4]
    check_shapes(model)


def test_copy_connection_nested_pairs_last_saved_first():
    model = new_model(16, 16, 3)
    model.add_convolutional_layer([3, 3, 3, 4], 1, "relu")
    model.add_copy_connection("save")  # 4 channels at 16x16
    model.add_pooling_layer(2, 2)
    model.add_convolutional_layer([3, 3, 4, 8], 1, "relu")
    model.add_copy_connection("save")  # 8 channels at 8x8
    model.add_pooling_layer(2, 2)
    model.add_upsampling_layer(2, 8, 2)
    model.add_copy_connection("load")  # 8 + 8
    model.add_upsampling_layer(2, 4, 2)
    model.add_copy_connection("load")  # 4 + 4
    model.add_output_layer()
    assert model.layer_shapes[8] == (16, 8, 8)
    assert model.layer_shapes[10] == (8, 16, 16)
    check_shapes(model)


def test_copy_load_without_save():
    model = new_model()
    with pytest.raises(
        RuntimeError, match=r"add_copy_connection\('load'\) needs an earlier add_copy_connection\('save'\)"
    ):
        model.add_copy_connection("load")


def test_copy_connection_size_mismatch():
    model = new_model(15, 15, 3)
    model.add_copy_connection("save")
    model.add_pooling_layer(2, 2)
    model.add_upsampling_layer(2, 3, 2)
    with pytest.raises(
        ValueError, match=r"saved activation of size 15x15 with the current one of size 16x16"
    ):
        model.add_copy_connection("load")


def test_copy_connection_bad_mode():
    model = new_model()
    with pytest.raises(ValueError, match=r"argument `mode`.*received 'keep'"):
        model.add_copy_connection("keep")


def test_paral_conv_block_concatenates_both_branches():
    model = new_model(15, 15, 3)
    model.add_paral_conv_block([3, 3, 3, 8], [5, 5, 3, 4])
    model.add_output_layer()
    assert model.layer_shapes[1] == (12, 15, 15)
    check_shapes(model)


# ------------------------------------------------------------------------------------------ output layer
def test_output_layer_binary_has_one_channel():
    model = new_model(16, 16, 3)
    add_seed_network_after_input(model)
    assert check_shapes(model) == (2, 1, 16, 16)


@pytest.mark.parametrize("classes", [3, 5])
def test_output_layer_has_one_channel_per_class(classes):
    model = dpp.SemanticSegmentationModel()
    model.set_num_segmentation_classes(classes)
    model.set_image_dimensions(16, 16, 3)
    add_seed_network(model)
    assert check_shapes(model) == (2, classes, 16, 16)


def test_output_is_resized_to_the_input_when_pooling_is_not_undone():
    model = new_model(15, 15, 3)
    model.add_convolutional_layer([3, 3, 3, 8], 2, "relu")
    model.add_pooling_layer(2, 2)
    model.add_output_layer()
    assert model.layer_shapes[2] == (8, 4, 4)
    assert check_shapes(model) == (2, 1, 15, 15)


def add_seed_network_after_input(model: dpp.SemanticSegmentationModel) -> None:
    model.add_convolutional_layer([3, 3, 3, 16], 1, "relu")
    model.add_convolutional_layer([3, 3, 16, 32], 1, "relu")
    model.add_convolutional_layer([5, 5, 32, 32], 1, "relu")
    model.add_output_layer()


def test_network_accepts_other_input_sizes():
    # Tiled inference feeds tiles of other sizes than the declared one: 'SAME' padding adapts per size.
    model = new_model(16, 16, 3)
    model.add_convolutional_layer([4, 4, 3, 4], 2, "relu")
    model.add_upsampling_layer(3, 4, 2)
    model.add_output_layer()
    network = model.build_network()
    with torch.no_grad():
        assert network(torch.rand(1, 3, 21, 13)).shape == (1, 1, 21, 13)


def test_segmentation_network_from_specs_matches_model():
    model = new_model(16, 16, 3)
    add_seed_network_after_input(model)
    network = SegmentationNetwork(model.layer_specs, (3, 16, 16), 1)
    assert network.shapes[:-1] == model.layer_shapes[:-1]
    assert sum(p.numel() for p in network.parameters()) == (
        (3 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 25 * 32 + 32) + (32 + 1)
    )


# ------------------------------------------------------------------------------------------ order errors
def test_layer_before_input():
    model = dpp.SemanticSegmentationModel()
    model.set_image_dimensions(16, 16, 3)
    with pytest.raises(RuntimeError, match=r"Cannot add a convolutional layer before the input layer"):
        model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    with pytest.raises(RuntimeError, match=r"before the input layer: call add_input_layer\(\) first"):
        model.add_output_layer()


def test_layer_after_output():
    model = new_model()
    model.add_output_layer()
    with pytest.raises(RuntimeError, match=r"Cannot add a pooling layer after the output layer"):
        model.add_pooling_layer(2, 2)
    with pytest.raises(RuntimeError, match=r"after the output layer"):
        model.add_output_layer()


def test_second_input_layer():
    model = new_model()
    with pytest.raises(RuntimeError, match=r"input layer must be the first layer and can only be added once"):
        model.add_input_layer()


def test_layers_before_set_image_dimensions():
    model = dpp.SemanticSegmentationModel()
    with pytest.raises(
        RuntimeError,
        match=r"set_image_dimensions\(image_height, image_width, image_depth\) before adding layers",
    ):
        model.add_input_layer()
    with pytest.raises(RuntimeError, match=r"before the input layer"):
        model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")


def test_a_layer_that_shrinks_the_image_to_nothing():
    builder = NetworkBuilder((3, 4, 4))
    builder.add({"kind": "input"})
    with pytest.raises(ValueError, match=r"shrinks the image to 0x0"):
        builder.add(
            {
                "kind": "conv",
                "filter_dimension": [5, 5, 3, 4],
                "stride_length": 1,
                "padding": "valid",
                "activation_function": "relu",
            }
        )


def test_incomplete_network_cannot_be_built():
    model = new_model()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    with pytest.raises(RuntimeError, match=r"network is not complete"):
        model.build_network()


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (
            lambda m: m.add_convolutional_layer([3, 3, 8], 1, "relu"),
            TypeError,
            r"`filter_dimension`.*\[3, 3, 8\]",
        ),
        (lambda m: m.add_convolutional_layer([3, 0, 3, 8], 1, "relu"), ValueError, r"`filter_dimension`"),
        (
            lambda m: m.add_convolutional_layer([3, 3, 3, 8], 0, "relu"),
            ValueError,
            r"`stride_length`.*received 0",
        ),
        (
            lambda m: m.add_convolutional_layer([3, 3, 3, 8], 1, "swish"),
            ValueError,
            r"`activation_function`.*'swish'",
        ),
        (
            lambda m: m.add_convolutional_layer([3, 3, 3, 8], 1, "relu", padding=-1),
            ValueError,
            r"`padding`.*-1",
        ),
        (
            lambda m: m.add_convolutional_layer([3, 3, 3, 8], 1, "relu", batch_norm=1),
            TypeError,
            r"`batch_norm`",
        ),
        (lambda m: m.add_pooling_layer(2, 2, "median"), ValueError, r"`pooling_type`.*'median'"),
        (lambda m: m.add_pooling_layer(2.0, 2), TypeError, r"`kernel_size`.*2\.0"),
        (lambda m: m.add_upsampling_layer(3, 8, 0), ValueError, r"`upscale_factor`.*received 0"),
        (lambda m: m.add_upsampling_layer(3, "8"), TypeError, r"`num_filters`.*'8'"),
        (lambda m: m.add_skip_connection(downsampled="yes"), TypeError, r"`downsampled`.*'yes'"),
        (lambda m: m.add_paral_conv_block([3, 3, 3, 8], [5, 5, 3]), TypeError, r"`filter_dimension_2`"),
    ],
)
def test_layer_argument_validation(call, error, pattern):
    model = new_model()
    with pytest.raises(error, match=pattern):
        call(model)
    assert len(model.layer_specs) == 1  # nothing was added


def test_activation_names_are_case_insensitive_and_none_is_linear():
    model = new_model()
    model.add_convolutional_layer([3, 3, 3, 4], 1, "ReLU")
    model.add_convolutional_layer([3, 3, 4, 4], 1, None)
    model.add_convolutional_layer([3, 3, 4, 4], 1, "SELU")
    assert [s["activation_function"] for s in model.layer_specs[1:]] == ["relu", "linear", "selu"]


# ------------------------------------------------------------------------------------------ debug print
def test_debug_prints_every_layer_shape(capsys):
    model = dpp.SemanticSegmentationModel(debug=True)
    model.set_batch_size(4)
    model.set_image_dimensions(16, 15, 3)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 2, "relu")
    model.add_pooling_layer(2, 2)
    model.add_upsampling_layer(3, 4, 2)
    model.add_output_layer()
    lines = capsys.readouterr().out.splitlines()
    expected = [
        "Adding input layer 0: output shape [4, 16, 15, 3]",
        "Adding convolutional layer 1: output shape [4, 8, 8, 8]",
        "Adding pooling layer 2: output shape [4, 4, 4, 8]",
        "Adding upsampling layer 3: output shape [4, 8, 8, 4]",
        "Adding output layer 4: output shape [4, 16, 15, 1]",
    ]
    assert len(lines) == len(expected)
    for line, text in zip(lines, expected):
        assert text in line


def test_no_print_without_debug(capsys):
    model = new_model()
    model.add_output_layer()
    assert capsys.readouterr().out == ""


def test_seed_network_shapes():
    model = dpp.SemanticSegmentationModel()
    model.set_image_dimensions(64, 64, 3)
    add_seed_network(model)
    assert model.layer_specs[-1]["kind"] == "output"
    assert model.layer_shapes[:4] == [(3, 64, 64), (16, 64, 64), (32, 64, 64), (32, 64, 64)]
    check_shapes(model)


def test_pooled_network_output_is_bilinear_resize_of_the_small_logits():
    model = new_model(8, 8, 1)
    model.add_pooling_layer(2, 2, "avg")
    model.add_output_layer()
    network = model.build_network()
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        small = network.layers[2](F.avg_pool2d(x, 2))
        torch.testing.assert_close(network(x), F.interpolate(small, size=(8, 8), mode="bilinear"))
