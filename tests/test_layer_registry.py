"""One record per layer kind (``layers.LayerKind``): a new kind added through the registry alone is declared,
trained, saved, loaded, read from a TOML config and exported, with no other change to the package.

The toy kind is a learnable per-channel scale (``y = x * gamma``), the smallest layer with weights.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SIZE
from torch import nn

import deepplantphenomics as dpp
from deepplantphenomics.config import LAYER_TYPES, TrainingConfig, layer_types
from deepplantphenomics.layers import (
    LayerKind,
    Shape,
    layer_kind,
    layer_kinds,
    register_layer_kind,
    unregister_layer_kind,
)
from deepplantphenomics.validation import check_float


class ChannelScale(nn.Module):
    """y = x * gamma, one learnable gamma per channel."""

    def __init__(self, channels: int, initial: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((1, channels, 1, 1), initial))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _build_scale(in_shape: Shape, initial: float = 1.0) -> dict[str, Any]:
    return {"initial": check_float("initial", initial, 0.0, None, low_inclusive=False)}


# The whole definition of the new kind: one record.
SCALE = LayerKind(
    kind="channel_scale",
    name="channel scale layer",
    build=_build_scale,
    make_module=lambda spec, shape: ChannelScale(shape[0], spec["initial"]),
    defaults={"initial": 1.0},
    config_type="channel_scale",
)


@pytest.fixture
def scale_kind() -> Iterator[LayerKind]:
    register_layer_kind(SCALE)
    yield SCALE
    unregister_layer_kind(SCALE.kind)


def _model(save_dir: Path, **kwargs: Any) -> dpp.SemanticSegmentationModel:
    model = dpp.SemanticSegmentationModel(save_dir=save_dir, save_checkpoints=False, **kwargs)
    model.set_random_seed(0)
    model.set_batch_size(4)
    model.set_image_dimensions(SIZE, SIZE, 3)
    model.set_maximum_training_epochs(1)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    return model


def _declare(model: dpp.SemanticSegmentationModel) -> None:
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    model.add_layer("channel_scale", initial=0.5)
    model.add_pooling_layer(2, 2)
    model.add_layer("channel_scale")
    model.add_output_layer()


def test_a_new_kind_trains_saves_and_loads(tmp_path, tiny_dataset, scale_kind, capsys):
    images, masks = tiny_dataset
    model = _model(tmp_path / "state", debug=True)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    _declare(model)
    assert "Adding channel scale layer 2: output shape [4, 64, 64, 8]" in capsys.readouterr().out
    assert model.layer_specs[2] == {"kind": "channel_scale", "initial": 0.5}
    scales = [m for m in model.build_network().modules() if isinstance(m, ChannelScale)]
    assert [m.gamma.detach().mean().item() for m in scales] == [0.5, 1.0]

    model.begin_training()
    assert scales[0].gamma.detach().mean().item() != 0.5  # trained like any other weight

    files = sorted(images.iterdir())[:2]
    expected = model.forward_pass_with_file_inputs(files)
    loaded = dpp.load_model(tmp_path / "state")
    assert loaded.layer_specs == model.layer_specs
    np.testing.assert_allclose(loaded.forward_pass_with_file_inputs(files), expected, rtol=0, atol=1e-6)

    # Declared again with load_from_saved: the saved and declared layers compare equal.
    again = _model(tmp_path / "other", load_from_saved=tmp_path / "state")
    _declare(again)
    np.testing.assert_allclose(again.forward_pass_with_file_inputs(files), expected, rtol=0, atol=1e-6)


def test_a_new_kind_from_a_config(tmp_path, tiny_dataset, scale_kind):
    images, masks = tiny_dataset
    assert layer_types()["channel_scale"] == "add_layer"
    assert "channel_scale" not in LAYER_TYPES  # the import-time table holds the built-in types
    config = TrainingConfig.from_dict(
        {
            "settings": {"image_dimensions": [SIZE, SIZE, 3], "batch_size": 4},
            "data": {"images": str(images), "masks": str(masks)},
            "network": {
                "layers": [
                    {"type": "input"},
                    {"type": "channel_scale", "initial": 2.0},
                    {"type": "layer", "kind": "channel_scale"},
                    {"type": "output"},
                ]
            },
        }
    )
    specs = config.build_model().layer_specs
    assert specs[1:3] == [
        {"kind": "channel_scale", "initial": 2.0},
        {"kind": "channel_scale", "initial": 1.0},
    ]


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the optional 'onnx' extra")
def test_a_new_kind_exports(tmp_path, scale_kind):
    model = _model(tmp_path / "state")
    _declare(model)
    path = model.export_onnx(tmp_path / "net.onnx")
    assert path.is_file()


def test_an_unregistered_kind_is_named_when_a_state_loads(tmp_path, tiny_dataset):
    images, masks = tiny_dataset
    register_layer_kind(SCALE)
    try:
        model = _model(tmp_path / "state")
        model.load_dataset_from_directory_with_segmentation_masks(images, masks)
        _declare(model)
        model.begin_training()
    finally:
        unregister_layer_kind(SCALE.kind)
    with pytest.raises(ValueError, match=r"Unknown layer kind 'channel_scale'.*register_layer_kind"):
        dpp.load_model(tmp_path / "state")


def test_argument_errors_name_the_kind_and_the_argument(tmp_path, scale_kind):
    model = _model(tmp_path / "state")
    with pytest.raises(RuntimeError, match=r"Cannot add a channel scale layer before the input layer"):
        model.add_layer("channel_scale", initial="not checked before the order")
    model.add_input_layer()
    with pytest.raises(
        TypeError, match=r"channel scale layer \('channel_scale'\) takes the arguments \(initial"
    ):
        model.add_layer("channel_scale", gain=2.0)
    with pytest.raises(ValueError, match=r"`initial`"):
        model.add_layer("channel_scale", initial=0.0)
    with pytest.raises(ValueError, match=r"Unknown layer kind 'chanel_scale': expected one of \["):
        model.add_layer("chanel_scale")


def test_registration_is_checked():
    assert [record.kind for record in layer_kinds()][:2] == ["input", "conv"]
    with pytest.raises(ValueError, match=r"'conv' is already registered"):
        register_layer_kind(
            LayerKind("conv", "mine", _build_scale, make_module=lambda spec, shape: nn.Identity())
        )
    with pytest.raises(ValueError, match=r"Invalid layer kind 'Bad Name'"):
        register_layer_kind(
            LayerKind("Bad Name", "x", _build_scale, make_module=lambda spec, shape: nn.Identity())
        )
    with pytest.raises(ValueError, match=r"config type 'pooling'"):
        register_layer_kind(
            LayerKind(
                "mine", "x", _build_scale, make_module=lambda s, shape: nn.Identity(), config_type="pooling"
            )
        )
    with pytest.raises(TypeError, match=r"needs a callable `build` and `make_module`"):
        register_layer_kind(LayerKind("mine", "x", _build_scale))
    with pytest.raises(ValueError, match=r"built in and cannot be removed"):
        unregister_layer_kind("conv")
    with pytest.raises(TypeError, match=r"expects a LayerKind record, received 'mine'"):
        register_layer_kind("mine")


@pytest.mark.parametrize(
    ("kind", "arguments"),
    [
        ("conv", {"filter_dimension": [3, 3, 3, 4], "stride_length": 2, "activation_function": "relu"}),
        ("pool", {"kernel_size": 3, "stride_length": 2, "pooling_type": "avg"}),
        ("upsample", {"filter_size": 2, "num_filters": 4, "upscale_factor": 2}),
        ("paral_conv", {"filter_dimension_1": [1, 1, 3, 2], "filter_dimension_2": [3, 3, 3, 2]}),
        ("batchnorm", {}),
        ("dropout", {"p": 0.5}),
        ("lrn", {}),
    ],
)
def test_each_record_shape_matches_its_module(kind, arguments):
    """A record's output_shape is what its module returns, for an even and an odd size."""
    record = layer_kind(kind)
    for shape in ((3, 16, 16), (3, 15, 17)):
        spec = record.make_spec(shape, arguments)
        module = record.make_module(spec, shape).eval()
        with torch.no_grad():
            out = module(torch.rand(1, *shape))
        assert tuple(out.shape[1:]) == record.output_shape(spec, shape)


def test_every_spec_is_its_own_declaration(tmp_path):
    """add_layer(**spec) declares each layer the DPP methods declared, so specs (saved or computed) are
    declarations."""
    model = _model(tmp_path / "a")
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu", batch_norm=True, use_bias=False)
    model.add_copy_connection("save")
    model.add_pooling_layer(2, 2, "avg")
    model.add_skip_connection()
    model.add_dropout_layer(0.9)
    model.add_upsampling_layer(2, 8, 2, "relu", regularization_coefficient=1e-3)
    model.add_copy_connection("load")
    model.add_batch_norm_layer()
    model.add_normalization_layer()
    model.add_paral_conv_block([1, 1, 16, 4], [3, 3, 16, 4])
    model.add_output_layer(regularization_coefficient=0.5)
    again = _model(tmp_path / "b")
    for spec in model.layer_specs:
        again.add_layer(**spec)
    assert again.layer_specs == model.layer_specs
    assert again.layer_shapes == model.layer_shapes
    assert model.layer_shapes[-1] == (1, SIZE, SIZE)  # the output layer: one logit for a binary model
