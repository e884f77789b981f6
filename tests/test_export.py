"""ONNX export (deepplantphenomics.export, ``model.export_onnx``, ``dpp export``): onnxruntime's outputs match
PyTorch's to 1e-4 at several input sizes, preprocessing included."""

from __future__ import annotations

import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_model

import deepplantphenomics as dpp
from deepplantphenomics.cli import main
from deepplantphenomics.data.dataset import normalize, to_tensor_image
from deepplantphenomics.data.io import read_image
from deepplantphenomics.export import ExportWrapper, export_onnx, size_multiple
from deepplantphenomics.inference import class_probabilities

HAVE_ONNX = find_spec("onnx") is not None and find_spec("onnxruntime") is not None
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX, reason="onnx/onnxruntime not installed (pip install 'deepplantphenomics[onnx]')"
)
TOLERANCE = 1e-4


def run_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})
    return output


def metadata(path: Path) -> dict[str, str]:
    import onnx

    return {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}


def torch_probabilities(
    model: dpp.SemanticSegmentationModel, images: np.ndarray, normalization: str | None = None
) -> np.ndarray:
    """What the library computes for [0, 1] NCHW images: its normalisation, then the network, then sigmoid."""
    network = model.build_network().eval()
    batch = torch.from_numpy(images)
    normalization = normalization or model.settings.input_normalization
    with torch.no_grad():
        return class_probabilities(network, normalize(batch, normalization)).numpy()


def random_images(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


# ============================================================================ parity
@needs_onnx
def test_trained_model_matches_forward_pass_with_file_inputs(tmp_path, tiny_dataset):
    images_dir, masks_dir = tiny_dataset
    model = make_model(tmp_path / "state")
    model.load_dataset_from_directory_with_segmentation_masks(images_dir, masks_dir)
    model.begin_training()
    loaded = dpp.load_model(tmp_path / "state")
    onnx_path = loaded.export_onnx(tmp_path / "model.onnx")
    assert onnx_path == tmp_path / "model.onnx"

    files = sorted(images_dir.iterdir())[:3]
    expected = loaded.forward_pass_with_file_inputs(files)  # (N, H, W, 1)
    batch = torch.stack([to_tensor_image(read_image(f)) for f in files]).numpy()
    got = run_onnx(onnx_path, batch)
    assert got.shape == (3, 1, 64, 64)
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), expected, atol=TOLERANCE, rtol=0)
    # The network has no strided layer: any size works, odd ones included.
    other = random_images((2, 3, 37, 50), seed=1)
    got = run_onnx(onnx_path, other)
    assert got.shape == (2, 1, 37, 50)
    np.testing.assert_allclose(got, torch_probabilities(loaded, other), atol=TOLERANCE, rtol=0)
    assert metadata(onnx_path)["size_multiple"] == "1"


@needs_onnx
@pytest.mark.parametrize("architecture", ["u-net", "fcn-18"])
def test_predefined_networks_match_at_two_sizes(tmp_path, architecture):
    model = make_model(tmp_path / "state", network=False)
    model.use_predefined_model(architecture)
    path = model.export_onnx(tmp_path / f"{architecture}.onnx")
    assert metadata(path)["size_multiple"] == "16"
    for seed, shape in enumerate([(2, 3, 64, 64), (1, 3, 48, 80)]):
        images = random_images(shape, seed)
        got = run_onnx(path, images)
        assert got.shape == (shape[0], 1, *shape[2:])
        np.testing.assert_allclose(got, torch_probabilities(model, images), atol=TOLERANCE, rtol=0)


@needs_onnx
def test_multiclass_softmax_logits_and_no_normalisation(tmp_path):
    model = make_model(tmp_path / "state")
    model.set_num_segmentation_classes(3)
    images = random_images((2, 3, 64, 64), seed=3)

    path = model.export_onnx(tmp_path / "probabilities.onnx")
    probabilities = run_onnx(path, images)
    assert probabilities.shape == (2, 3, 64, 64)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities, torch_probabilities(model, images), atol=TOLERANCE, rtol=0)
    other = random_images((1, 3, 40, 56), seed=6)
    np.testing.assert_allclose(
        run_onnx(path, other), torch_probabilities(model, other), atol=TOLERANCE, rtol=0
    )

    path = model.export_onnx(tmp_path / "logits.onnx", probabilities=False)
    logits = run_onnx(path, images)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), probabilities, atol=1e-5)
    assert metadata(path)["output"].startswith("logits: float32 (N, 3, H, W), class logits")

    # A state written before normalisation was a setting feeds the network [0, 1] pixels as they are.
    settings = model.settings
    settings.input_normalization = "none"
    path = export_onnx(model.build_network(), settings, model.layer_specs, tmp_path / "none.onnx")
    np.testing.assert_allclose(
        run_onnx(path, images), torch_probabilities(model, images, "none"), atol=TOLERANCE
    )
    assert metadata(path)["input_normalization"] == "none"


@needs_onnx
def test_metadata_documents_input_and_output(tmp_path):
    model = make_model(tmp_path / "state")
    model.set_resize_images(True)
    path = model.export_onnx(tmp_path / "sub" / "model.onnx")  # the folder is created
    props = metadata(path)
    assert props["producer"] == "deepplantphenomics"
    assert props["library_version"] == dpp.__version__
    assert props["input"].startswith("images: float32 (N, 3, H, W), pixel values in [0, 1]")
    assert props["input_normalization"] == "per_image_standardization (applied inside the graph)"
    assert props["output"] == "probabilities: float32 (N, 1, H, W), sigmoid foreground probability"
    assert props["num_classes"] == "2"
    assert props["training_image_size"] == "[64, 64]"
    assert props["resize_images"] == "true"
    assert props["patch_size"] == "null"


@needs_onnx
def test_export_leaves_the_network_untouched(tmp_path):
    model = make_model(tmp_path / "state")
    network = model.build_network()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    network.train()
    model.export_onnx(tmp_path / "model.onnx")
    assert network.training
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ============================================================================ the command
@needs_onnx
def test_dpp_export_command(tmp_path):
    model = make_model(tmp_path / "state")
    model.save_state()
    result = CliRunner().invoke(main, ["export", str(tmp_path / "state"), str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip() == f"Exported the model in '{tmp_path / 'state'}' to '{tmp_path / 'm.onnx'}'."
    )
    images = random_images((1, 3, 64, 64), seed=4)
    np.testing.assert_allclose(
        run_onnx(tmp_path / "m.onnx", images), torch_probabilities(model, images), atol=TOLERANCE
    )
    result = CliRunner().invoke(
        main, ["export", str(tmp_path / "state"), str(tmp_path / "l.onnx"), "--logits"]
    )
    assert result.exit_code == 0, result.output
    assert metadata(tmp_path / "l.onnx")["output"].startswith("logits:")


def test_dpp_export_of_a_missing_state_is_one_error_line(tmp_path):
    result = CliRunner().invoke(main, ["export", str(tmp_path / "nothing"), str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: Saved state folder does not exist: '{tmp_path / 'nothing'}'."


# ============================================================================ errors and helpers
def test_missing_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    model = make_model(tmp_path / "state")
    with pytest.raises(
        ImportError, match=r"needs the optional 'onnx' extra: pip install 'deepplantphenomics\[onnx\]'"
    ):
        model.export_onnx(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
    model.save_state()
    result = CliRunner().invoke(main, ["export", str(tmp_path / "state"), str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert "Error: ONNX export needs the optional 'onnx' extra" in result.output


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"path": 3}, TypeError, r"Invalid value for argument `path`: expected a file path, received 3\."),
        (
            {"probabilities": "yes"},
            TypeError,
            r"Invalid value for argument `probabilities`: expected a bool, received 'yes'\.",
        ),
        (
            {"opset": 7},
            ValueError,
            r"Invalid value for argument `opset`: expected an int in 11\.\.25, received 7\.",
        ),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, error, message):
    model = make_model(tmp_path / "state")
    arguments = {"path": tmp_path / "m.onnx", **kwargs}
    with pytest.raises(error, match=message):
        export_onnx(model.build_network(), model.settings, model.layer_specs, **arguments)


def test_wrapper_rejects_unknown_normalisation():
    with pytest.raises(ValueError, match=r"Invalid value for argument `normalization`: expected one of"):
        ExportWrapper(torch.nn.Identity(), "zscore")


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([], 1),
        ([{"kind": "pool", "kernel_size": 2, "stride_length": 2}], 2),
        ([{"kind": "conv", "stride_length": 2}, {"kind": "pool", "kernel_size": 3, "stride_length": 3}], 6),
        ([{"kind": "pool", "kernel_size": 2, "stride_length": 2}, {"kind": "skip", "downsampled": True}], 2),
        ([{"kind": "upsample", "upscale_factor": 2}], 1),
    ],
)
def test_size_multiple(layers, expected):
    specs = [{"kind": "input"}, *layers, {"kind": "output"}]
    assert size_multiple(specs) == expected


def test_wrapper_normalises_like_the_library():
    images = torch.from_numpy(random_images((3, 3, 20, 12), seed=5))
    images[1] = 0.25  # a flat image: TF's floor on the standard deviation keeps it finite
    wrapper = ExportWrapper(torch.nn.Identity(), "per_image_standardization", probabilities=False)
    torch.testing.assert_close(wrapper(images), normalize(images, "per_image_standardization"))
