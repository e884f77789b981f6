"""Quality flags of vegetation masks (deepplantphenomics.mask_quality, tools.segment_with_quality, the
warning of segment_vegetation and the quality column of dpp segment)."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deepplantphenomics import mask_quality, tools
from deepplantphenomics.cli import main
from deepplantphenomics.mask_quality import FLAGS, VegetationQualityWarning
from deepplantphenomics.synthetic import generate_lab_image, generate_plant_image

RANGES = tools.model_card()["quality"]["colour_ranges"]


def soil(size: int = 96, seed: int = 0) -> np.ndarray:
    """Bare brown soil with grain: no plant."""
    rng = np.random.default_rng(seed)
    grain = rng.normal(1.0, 0.12, (size, size, 1))
    return np.clip(np.array([125.0, 95.0, 65.0]) * grain, 0, 255).astype(np.uint8)


def field(seed: int = 3) -> np.ndarray:
    return generate_plant_image(96, 96, rng=seed)[0]


def save(path, image: np.ndarray):
    Image.fromarray(image).save(path)
    return path


# ------------------------------------------------------------------------------------------ the checks
def test_greyscale_photo_is_flagged_alone():
    grey = np.asarray(Image.fromarray(field()).convert("L"))
    assert mask_quality.mask_quality(grey, np.zeros(grey.shape), RANGES) == ["greyscale"]
    as_rgb = np.repeat(grey[..., None], 3, axis=2)
    assert mask_quality.mask_quality(as_rgb, np.ones(grey.shape), RANGES) == ["greyscale"]


def test_no_plant_when_mask_and_colour_index_are_both_empty():
    assert mask_quality.mask_quality(soil(), np.zeros((96, 96)), RANGES) == ["no_plant"]


def test_missed_green_when_the_index_finds_a_plant_the_mask_leaves_out():
    image, truth = generate_plant_image(96, 96, rng=3)
    assert mask_quality.mask_quality(image, np.zeros((96, 96)), RANGES) == ["missed_green"]
    assert mask_quality.mask_quality(image, truth, RANGES) == []


def test_non_green_mask_when_the_mask_holds_soil():
    image, truth = generate_plant_image(96, 96, rng=3)
    assert "non_green_mask" in mask_quality.mask_quality(image, truth == 0, RANGES)


def test_unfamiliar_colours_on_white_paper_only_with_ranges():
    image, truth = generate_lab_image(128, 128, rng=8, scene="paper")
    assert (image.min(axis=2) > 215).mean() > 0.3  # mostly white paper
    assert mask_quality.mask_quality(image, truth, RANGES) == ["unfamiliar_colours"]
    assert mask_quality.mask_quality(image, truth, None) == []
    assert "white" in mask_quality.unfamiliar_statistics(image, RANGES)


def test_flags_come_in_a_fixed_order_and_label_for_the_csv():
    assert mask_quality.quality_label([]) == "ok"
    assert (
        mask_quality.quality_label(["missed_green", "unfamiliar_colours"])
        == "missed_green;unfamiliar_colours"
    )
    assert set(mask_quality.FLAG_MEANINGS) == set(FLAGS)
    assert tools.model_card()["quality"]["flags"] == mask_quality.FLAG_MEANINGS


def test_mask_of_another_size_is_refused():
    with pytest.raises(ValueError, match="expected the photo's size"):
        mask_quality.mask_quality(soil(96), np.zeros((40, 40)))


def test_colour_ranges_widen_the_training_range():
    ranges = mask_quality.colour_ranges([{"brightness": 0.2}, {"brightness": 0.6}], margin=0.25)
    low, high = 0.2 + 0.005 * 0.4, 0.6 - 0.005 * 0.4  # the 0.5th and 99.5th percentiles of two values
    assert ranges["brightness"] == [round(low - 0.25 * (high - low), 4), round(high + 0.25 * (high - low), 4)]


# ------------------------------------------------------------------------------------------ through the tool
def test_segment_with_quality_flags_grey_and_empty_photos_not_a_field_photo(tmp_path):
    grey = save(tmp_path / "grey.png", np.asarray(Image.fromarray(field()).convert("L")))
    bare = save(tmp_path / "bare.png", soil())
    plants = save(tmp_path / "plants.png", field())
    results = tools.segment_with_quality([grey, bare, plants])
    assert [flags for _, flags in results] == [["greyscale"], ["no_plant"], []]
    assert all(mask.shape == (96, 96) and mask.dtype == np.float32 for mask, _ in results)


def test_segment_vegetation_warns_naming_file_and_flag(tmp_path):
    grey = save(tmp_path / "grey.png", np.asarray(Image.fromarray(field()).convert("L")))
    plants = save(tmp_path / "plants.png", field())
    with pytest.warns(VegetationQualityWarning, match=r"grey\.png.*greyscale") as record:
        masks = tools.segment_vegetation([plants, grey])
    assert len(record) == 1 and len(masks) == 2
    assert issubclass(VegetationQualityWarning, UserWarning)
    assert tools.VegetationQualityWarning is VegetationQualityWarning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tools.segment_vegetation([grey], check_quality=False)
        tools.segment_vegetation([grey], method="exg")  # the index methods are not checked


@pytest.mark.shared_data
def test_real_field_photos_are_not_flagged(shared_data):
    """A normal field photo of each shared dataset (the card's first held-out photo) gets no flag."""
    card = tools.model_card()
    photos = []
    for info in card["training"]["datasets"]:
        folder = shared_data / info["folder"] / "images"
        if folder.is_dir():
            photos.append(folder / info["held_out_files"][0])
    if not photos:
        pytest.skip("none of the card's datasets is in ../shared/data")
    assert [flags for _, flags in tools.segment_with_quality(photos)] == [[] for _ in photos]


# ------------------------------------------------------------------------------------------ dpp segment
def test_dpp_segment_csv_has_the_quality_column(tmp_path):
    (tmp_path / "in").mkdir()
    save(tmp_path / "in" / "grey.png", np.asarray(Image.fromarray(field()).convert("L")))
    save(tmp_path / "in" / "plants.png", field())
    for method, expected in (("network", {"grey.png": "greyscale", "plants.png": "ok"}), ("exg", None)):
        out = tmp_path / method
        result = CliRunner().invoke(
            main, ["segment", str(tmp_path / "in"), "--out", str(out), "--method", method]
        )
        assert result.exit_code == 0, result.output
        with (out / "results.csv").open(newline="", encoding="utf-8") as handle:
            rows = {row["file"].rsplit("/", 1)[-1]: row["quality"] for row in csv.DictReader(handle)}
        assert rows == (expected or {"grey.png": "", "plants.png": ""})


def test_train_vegetation_writes_the_quality_block_only(tmp_path):
    """`python -m deepplantphenomics.train_vegetation --add-quality` rewrites the card's quality section alone."""
    import json
    import shutil

    from deepplantphenomics.synthetic import write_synthetic_dataset
    from deepplantphenomics.train_vegetation import main as train_main

    write_synthetic_dataset(tmp_path / "data" / "field", 14, 48, 48, seed=0)
    out = tmp_path / "weights"
    out.mkdir()
    shutil.copy(tools.WEIGHTS_DIR / tools.MODEL_CARD, out / tools.MODEL_CARD)
    before = json.loads((out / tools.MODEL_CARD).read_text())
    assert train_main(["--add-quality", "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    after = json.loads((out / tools.MODEL_CARD).read_text())
    assert {k: v for k, v in after.items() if k != "quality"} == {
        k: v for k, v in before.items() if k != "quality"
    }
    ranges = after["quality"]["colour_ranges"]
    assert set(ranges) == set(mask_quality.photo_statistics(field()))
    assert all(low <= high for low, high in ranges.values())
    assert after["quality"]["ranges_from"].startswith("3 training photos")
