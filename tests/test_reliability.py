"""Issue 5: messy folders, broken files and diverging training give clear errors; nothing is lost."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import deepplantphenomics as dpp
from deepplantphenomics.data.dataset import load_pairs, pair_files
from deepplantphenomics.data.io import read_image
from deepplantphenomics.synthetic import write_synthetic_dataset
from deepplantphenomics.training import TrainingDivergedError

# ----------------------------------------------------------------------------- fuzzing the loader

MODES = ("L", "RGB", "RGBA", "LA", "I;16", "P", "1")
FORMATS = ("png", "jpg", "tif", "bmp")


def _encode(array: np.ndarray, mode: str, fmt: str) -> bytes:
    """Encode ``array`` as a file of ``fmt``; TIFF goes through tifffile (16-bit and any channel count)."""
    buffer = io.BytesIO()
    if fmt == "tif":
        tifffile.imwrite(
            buffer, array, photometric="minisblack" if array.ndim == 2 or array.shape[2] != 3 else "rgb"
        )
        return buffer.getvalue()
    image = Image.fromarray(array)
    if mode == "P":
        image = image.convert("P")
    elif mode == "1":
        image = image.convert("1")
    if fmt == "jpg" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if fmt == "bmp" and image.mode in ("LA", "I;16"):
        image = image.convert("L")
    image.save(buffer, format={"jpg": "JPEG", "png": "PNG", "bmp": "BMP"}[fmt])
    return buffer.getvalue()


def _array(mode: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    if mode == "I;16":
        return rng.integers(0, 65535, (h, w), dtype=np.uint16)
    channels = {"L": 1, "P": 3, "1": 1, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
    array = rng.integers(0, 255, (h, w, channels), dtype=np.uint8)
    return array[:, :, 0] if channels == 1 else array


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(FORMATS),
    mask_fmt=st.sampled_from(("png", "tif", "bmp")),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    mask_dh=st.sampled_from((0, 0, 0, 1)),
    truncate=st.sampled_from((None, None, 0.5, 0.05, 0)),
    seed=st.integers(0, 2**16),
)
def test_loader_fuzz_either_loads_correctly_or_raises_documented_error(
    tmp_path_factory, mode, fmt, mask_fmt, h, w, mask_dh, truncate, seed
):
    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("fuzz")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    data = _encode(_array(mode, h, w, rng), mode, fmt)
    if truncate is not None:
        data = data[: int(len(data) * truncate)]
    (root / "images" / f"x.{fmt}").write_bytes(data)
    mask = (rng.random((h + mask_dh, w)) > 0.5).astype(np.uint8) * 255
    (root / "masks" / f"x.{mask_fmt}").write_bytes(_encode(mask, "L", mask_fmt))
    try:
        pairs, _ = pair_files(root / "images", root / "masks")
        images, masks, _ = load_pairs(pairs, 3, 2, (16, 16), True, False)
    except (ValueError, FileNotFoundError) as exc:
        message = str(exc)
        assert "x." in message  # the error names the file
        return
    # A correct load: right shapes, mask values exact, nothing silently dropped.
    assert truncate in (None,) or fmt in ("bmp", "tif")  # a cut PNG/JPEG must not load silently
    assert mask_dh == 0
    assert len(images) == 1 and tuple(images[0].shape) == (3, 16, 16)
    assert set(np.unique(masks[0].numpy())) <= {0, 1}


def test_truncated_png_is_named(tmp_path):
    write_synthetic_dataset(tmp_path, 2, 32, 32)
    target = tmp_path / "images" / "plant_0001.png"
    target.write_bytes(target.read_bytes()[:200])
    pairs, _ = pair_files(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(ValueError, match="plant_0001.png"):
        load_pairs(pairs, 3, 2, (32, 32), False, False)


def test_every_problem_reported_at_once(tmp_path):
    write_synthetic_dataset(tmp_path, 4, 32, 32)
    (tmp_path / "images" / "plant_0000.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((31, 32), np.uint8)).save(tmp_path / "masks" / "plant_0002.png")
    pairs, _ = pair_files(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(ValueError) as info:
        load_pairs(pairs, 3, 2, (32, 32), False, False)
    message = str(info.value)
    assert "2 problem(s)" in message
    assert "plant_0000.png" in message and "plant_0002.png" in message and "31x32" in message


def test_hidden_and_non_image_files_are_skipped_and_counted(tmp_path):
    write_synthetic_dataset(tmp_path, 3, 32, 32)
    (tmp_path / "images" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "masks" / "notes.txt").write_text("hello")
    pairs, skipped = pair_files(tmp_path / "images", tmp_path / "masks")
    assert len(pairs) == 3 and skipped == 2


def test_inference_on_unreadable_file_names_it(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image(bad)


# ----------------------------------------------------------------------------- divergence


def _tiny_model(
    tmp_path: Path, lr: float, load_from_saved: Path | bool = False
) -> dpp.SemanticSegmentationModel:
    images, masks = write_synthetic_dataset(tmp_path / "data", 8, 32, 32, seed=1)
    model = dpp.SemanticSegmentationModel(save_dir=tmp_path / "state", load_from_saved=load_from_saved)
    model.set_image_dimensions(32, 32, 3)
    model.set_batch_size(4)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.set_random_seed(0)
    model.set_optimizer("sgd")
    model.set_learning_rate(lr)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    model.add_convolutional_layer([3, 3, 8, 8], 1, "relu")
    model.add_output_layer()
    return model


def test_nan_loss_stops_with_epoch_batch_and_advice_and_keeps_last_good_state(tmp_path):
    # Train one good epoch so a checkpoint exists, then fine-tune it with an absurd learning rate: it diverges.
    model = _tiny_model(tmp_path, 0.01)
    model.set_maximum_training_epochs(1)
    model.begin_training()
    good = (tmp_path / "state" / "model.safetensors").read_bytes()

    model = _tiny_model(tmp_path, 1e30, load_from_saved=tmp_path / "state")
    model.set_maximum_training_epochs(5)
    with pytest.raises(TrainingDivergedError, match=r"at epoch \d+, batch \d+.*lower learning rate") as info:
        model.begin_training()
    assert "last good checkpoint is kept" in str(info.value)
    assert (tmp_path / "state" / "model.safetensors").read_bytes() == good
    dpp.load_model(tmp_path / "state")  # still loadable


def test_corrupt_state_files_are_named(tmp_path):
    model = _tiny_model(tmp_path, 0.01)
    model.set_maximum_training_epochs(1)
    model.begin_training()
    state = tmp_path / "state"
    broken = tmp_path / "broken"
    shutil.copytree(state, broken)
    (broken / "model.safetensors").write_bytes((state / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors"):
        dpp.load_model(broken)
    (broken / "architecture.json").write_text("{ not json")
    with pytest.raises(ValueError, match="architecture.json"):
        dpp.load_model(broken)
    (broken / "architecture.json").unlink()
    with pytest.raises(FileNotFoundError, match="architecture.json"):
        dpp.load_model(broken)


def test_shut_down_model_refuses_to_predict_instead_of_using_random_weights(tmp_path):
    model = _tiny_model(tmp_path, 0.01)
    model.set_maximum_training_epochs(1)
    model.begin_training()
    image = next((tmp_path / "data" / "images").glob("*.png"))
    model.shut_down()
    model.shut_down()  # safe twice
    with pytest.raises(RuntimeError, match="shut down"):
        model.forward_pass_with_file_inputs([image])
    assert dpp.load_model(tmp_path / "state").forward_pass_with_file_inputs([image]).shape == (1, 32, 32, 1)
