"""set_patch_size: training on tiles of full-resolution images (cached), full-size tiled inference."""

from __future__ import annotations

import numpy as np
import pytest

import deepplantphenomics as dpp
from deepplantphenomics.synthetic import write_synthetic_dataset


def _model(tmp_path, images, masks, debug=True):
    model = dpp.SemanticSegmentationModel(debug=debug, save_checkpoints=False, save_dir=tmp_path / "state")
    model.set_image_dimensions(96, 80, 3)
    model.set_patch_size(32, 32)
    model.set_batch_size(8)
    model.set_test_split(0.25)
    model.set_validation_split(0.0)
    model.set_random_seed(0)
    model.set_maximum_training_epochs(1)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu")
    model.add_output_layer()
    return model


@pytest.fixture()
def data(tmp_path):
    return write_synthetic_dataset(tmp_path / "data", 4, 96, 80, seed=2)


def test_patches_are_cached_and_reused_unless_overwrite(tmp_path, data, capsys):
    _model(tmp_path, *data).begin_training()
    first = capsys.readouterr().out
    # 96x80 images in 32x32 patches: 3 rows x 3 columns (the last column aligned to the border) = 9 each.
    assert "Cut 27 patches of 32x32 from 3 images" in first
    caches = sorted((tmp_path / "state" / "patch_cache").glob("*.pt"))
    assert len(caches) == 2  # training and test subsets

    _model(tmp_path, *data).begin_training()
    second = capsys.readouterr().out
    assert "Reusing 27 cached patches" in second and "Cut " not in second

    model = _model(tmp_path, *data)
    model.set_gen_data_overwrite(True)
    model.begin_training()
    assert "Cut 27 patches" in capsys.readouterr().out


def test_patch_model_predicts_full_size_for_any_image_size(tmp_path, data):
    model = _model(tmp_path, *data, debug=False)
    model.begin_training()
    other, _ = write_synthetic_dataset(tmp_path / "other", 1, 50, 130, seed=9)
    files = [next(data[0].glob("*.png")), next(other.glob("*.png"))]
    probs = model.forward_pass_with_file_inputs(files)
    assert isinstance(probs, list)  # two sizes: one array each
    assert probs[0].shape == (96, 80, 1) and probs[1].shape == (50, 130, 1)
    masks = dpp.load_model(tmp_path / "state").forward_pass_with_interpreted_outputs(files[:1])
    assert masks.shape == (1, 96, 80) and set(np.unique(masks)) <= {0, 255}
