"""Issue 15.4: the vegetation recipe trains through the library's loop (TrainingRun, step-based), saves an
ordinary state, resumes from its checkpoint to the same weights, evaluates, and its card and settings.json say
how it was trained. Tiny sizes: 14 generated 48x48 photos, 32 px patches, 6 steps."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model
from PIL import Image
from safetensors.torch import load_file

import deepplantphenomics as dpp
from deepplantphenomics import state
from deepplantphenomics import train_vegetation as recipe
from deepplantphenomics.synthetic import generate_plant_image
from deepplantphenomics.training import BEST_WEIGHTS, cosine_factor


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """One dataset folder of 14 photo/mask pairs (8 held out, 3 validation, 3 trained on)."""
    root = tmp_path / "data" / "plots"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(14):
        image, mask = generate_plant_image(48, 48, np.random.default_rng(i))
        Image.fromarray(image).save(root / "images" / f"p{i:02d}.png")
        Image.fromarray(((mask > 127) * 255).astype(np.uint8)).save(root / "masks" / f"p{i:02d}.png")
    return root.parent


def _argv(data: Path, work_dir: Path, *extra: str) -> list[str]:
    return (
        ["--data", str(data), "--out", str(work_dir / "out"), "--work-dir", str(work_dir)]
        + ["--steps", "6", "--batch-size", "2", "--patch", "32", "--eval-every", "3", "--lr", "0.002"]
        + ["--weight-decay", "0.001", *extra]
    )


def _args(data: Path, work_dir: Path, *extra: str):
    return recipe.parse_args(_argv(data, work_dir, *extra))


def _train(args, stop_at: int | None = None):
    """The recipe's training part (main() up to the held-out scoring): sampler, model, TrainingRun."""
    torch.manual_seed(args.seed)
    datasets = recipe.load_datasets(args.data, args.split_seed)
    validation = {d.name: [recipe.read_pair(*p) for p in d.validation] for d in datasets}
    sampler = recipe.PatchSampler(datasets, args.patch, np.random.default_rng(args.seed))
    model = recipe.make_model(args, args.work_dir)
    network = model.build_network()
    calls = []

    def scores(net, validation):
        calls.append(1)
        if len(calls) * args.eval_every == stop_at:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C arriving during the evaluation at that step
        return recipe_scores(net, validation)

    recipe_scores = recipe.validation_scores
    recipe.validation_scores = scores
    try:
        history, best, _ = recipe.train(args, model, network, sampler, validation)
    finally:
        recipe.validation_scores = recipe_scores
    return model, datasets, history, best


@pytest.fixture(autouse=True)
def _small_pool(monkeypatch):
    monkeypatch.setattr(recipe, "SYNTHETIC_POOL", 4)
    monkeypatch.setattr(recipe, "log", lambda message: None)


def test_recipe_trains_saves_resumes_and_evaluates_through_training_run(data, tmp_path):
    args = _args(data, tmp_path / "whole")
    model, datasets, history, best = _train(args)
    assert [record["step"] for record in history] == [3, 6]
    assert {"train_loss", "learning_rate", "score", "dice_plots"} <= set(history[0])
    assert best["step"] in (3, 6) and best["score"] == max(record["score"] for record in history)
    # The work dir is an ordinary saved state holding the best weights, beside checkpoint and best weights.
    work = args.work_dir
    assert (work / state.CHECKPOINT).is_file() and (work / "metrics.csv").is_file()
    assert load_file(str(work / state.WEIGHTS)).keys() == load_file(str(work / BEST_WEIGHTS)).keys()
    loaded = dpp.load_model(work)
    assert loaded.settings.optimizer == "adamw" and loaded.settings.lr_schedule == "cosine"

    split = _args(data, tmp_path / "split")
    with pytest.raises(dpp.TrainingInterrupted, match="batch 3"):
        _train(split, stop_at=3)
    assert state.load_checkpoint(split.work_dir / state.CHECKPOINT)["batch"] == 3
    _, _, resumed, resumed_best = _train(_args(data, tmp_path / "split", "--resume"))
    assert resumed == [dict(r, elapsed_seconds=s["elapsed_seconds"]) for r, s in zip(history, resumed)]
    assert resumed_best == best
    for key, value in load_file(str(work / state.WEIGHTS)).items():
        assert torch.equal(value, load_file(str(split.work_dir / state.WEIGHTS))[key]), key

    # --finish-only reads the same run back.
    network = recipe.make_model(args, tmp_path / "other").build_network()
    finished_history, finished_best, _ = recipe.finished_run(args, network)
    assert finished_history == history and finished_best == best


def test_settings_and_card_say_how_the_weights_were_trained(data, tmp_path):
    args = _args(data, tmp_path / "run")
    model, datasets, history, best = _train(args)
    saved = json.loads((args.work_dir / state.SETTINGS).read_text())
    assert saved["optimizer"] == "adamw" and saved["learning_rate"] == 0.002
    assert saved["regularization_coefficient"] == 0.001 and saved["batch_size"] == 2
    assert saved["lr_schedule"] == "cosine" and saved["warmup_batches"] == recipe.warmup_batches(6) == 0
    assert saved["input_normalization"] == "none"
    assert not any(
        saved[key] for key in saved if key.startswith("augmentation_") and key != "augmentation_crop_ratio"
    )
    card = recipe.training_record(args, model.settings, "cmd", datasets, history, best, 1.0)
    assert card["optimizer"] == "adamw lr 0.002 weight decay 0.001"
    assert card["learning_rate_schedule"].startswith("cosine, 0 warm-up batches")
    assert (card["steps"], card["eval_every"], card["batch_size"], card["patch"]) == (6, 3, 2, 32)
    assert card["validation_history"] == history and card["best_step"] == best["step"]


def test_cosine_schedule_setting():
    factor = cosine_factor(2, 10)
    assert [round(factor(s), 4) for s in (0, 1, 5, 10, 12)] == [0.5, 0.9755, 0.5, 0.0, 0.0]
    model = dpp.SemanticSegmentationModel()
    model.set_learning_rate_decay(0.5, 2)
    model.set_learning_rate_schedule("Cosine", warmup_batches=3)
    assert (model.settings.lr_schedule, model.settings.warmup_batches) == ("cosine", 3)
    assert model.settings.lr_decay_factor is None
    with pytest.raises(ValueError, match=r"schedule.*\['cosine'\].*'linear'"):
        model.set_learning_rate_schedule("linear")
    with pytest.raises(ValueError, match="warmup_batches"):
        model.set_learning_rate_schedule("cosine", warmup_batches=-1)
    model.set_optimizer("AdamW")
    assert model.settings.optimizer == "adamw"


def test_shipped_settings_match_the_card():
    from deepplantphenomics import tools

    card = tools.model_card()["training"]
    settings = dpp.load_model(tools.WEIGHTS_DIR).settings
    expected = (
        f"{settings.optimizer} lr {settings.learning_rate} weight decay {settings.regularization_coefficient}"
    )
    assert card["optimizer"] == expected
    assert card["learning_rate_schedule"].startswith(
        f"{settings.lr_schedule}, {settings.warmup_batches} warm-up"
    )
    assert recipe.warmup_batches(card["steps"]) == settings.warmup_batches
    assert card["input_normalization"] == settings.input_normalization == "none"
    assert (card["batch_size"], card["threads"]) == (settings.batch_size, settings.num_threads)


def test_begin_training_with_adamw_and_cosine_ends_at_zero_learning_rate(tmp_path, tiny_dataset):
    model = make_model(tmp_path / "run")
    model.set_maximum_training_epochs(2)
    model.set_optimizer("adamw")
    model.set_regularization_coefficient(1e-3)
    model.set_learning_rate_schedule("cosine", warmup_batches=1)
    model.set_input_normalization("none")
    model.set_test_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(*map(str, tiny_dataset))
    model.begin_training()
    rates = [record["learning_rate"] for record in model.history]
    assert len(rates) == 2 and 0.0 < rates[0] <= model.settings.learning_rate and rates[1] == 0.0
    saved = dpp.load_model(tmp_path / "run").settings
    assert (saved.optimizer, saved.lr_schedule, saved.input_normalization) == ("adamw", "cosine", "none")


def test_main_writes_a_state_whose_card_matches_its_settings(data, tmp_path, monkeypatch):
    """The whole recipe (one inference candidate, so it stays tiny): the card's training section and the
    written settings.json agree."""
    one = {"resize to half size": {"mode": "resize", "scale": 0.5, "max_pixels": None}}
    monkeypatch.setattr(recipe, "inference_candidates", lambda: one)
    monkeypatch.setattr(recipe, "time_inference", lambda *args, **kwargs: 0.01)
    args = _args(data, tmp_path / "run")
    assert recipe.main(_argv(data, tmp_path / "run")) == 0
    card = json.loads((args.out / "model_card.json").read_text())["training"]
    settings = dpp.load_model(args.out).settings
    assert (
        card["optimizer"]
        == f"adamw lr {settings.learning_rate} weight decay {settings.regularization_coefficient}"
    )
    assert card["steps"] == 6 and [r["step"] for r in card["validation_history"]] == [3, 6]
    assert "--eval-every 3 --lab-share 0.4" in card["command"] and "--steps 6" in card["command"]
    assert card["initial_weights"].startswith("random")


def test_lab_share_draws_lab_scenes_and_validation_holds_them(data):
    datasets = recipe.load_datasets(data, 0)
    cutouts = recipe.training_cutouts(datasets)
    assert cutouts and all(pixels.shape[:2] == shape.shape for pixels, shape in cutouts)
    with pytest.raises(ValueError, match=r"lab_share.*0\.78.*received 0\.9"):
        recipe.PatchSampler(datasets, 32, np.random.default_rng(0), lab_share=0.9)
    draws = []
    for _ in range(2):  # same seed, same patches
        sampler = recipe.PatchSampler(datasets, 32, np.random.default_rng(3), lab_share=0.78, cutouts=cutouts)
        sampler.weights = np.eye(len(sampler.weights))[-1]  # lab scenes only
        draws.append(sampler.sample(24))
    (images, masks), (again, masks_again) = draws
    assert torch.equal(images, again) and torch.equal(masks, masks_again)
    assert images.shape == (24, 3, 32, 32) and masks.shape == (24, 32, 32)
    assert set(masks.unique().tolist()) == {0, 1}
    assert (masks.sum(dim=(1, 2)) == 0).any()  # empty scenes: nothing to segment
    # The masks follow the pixels: plant pixels are greener (excess green) than the rest.
    r, g, b = images.unbind(1)
    exg = 2 * g - r - b
    assert exg[masks == 1].mean() > exg[masks == 0].mean() + 0.1

    pairs = recipe.lab_validation(datasets)
    scenes = 4 * len(recipe.LAB_VALIDATION_SCENES)
    assert len(pairs) == scenes + 4  # and four trays of seedlings
    assert all(
        image.shape == (*recipe.LAB_VALIDATION_SIZE, 3) and mask.any() for image, mask in pairs[:scenes]
    )
    assert all(
        image.shape == (256, 384, 3) and set(np.unique(mask)) == {0, 1} for image, mask in pairs[scenes:]
    )
    assert np.array_equal(pairs[0][0], recipe.lab_validation(datasets)[0][0])


def test_the_generated_pool_holds_trays_of_seedlings():
    """Every TRAY_EVERY-th generated training image is a 4x4 tray whose mask marks its (small) plants."""
    for index in range(recipe.TRAY_EVERY):
        image, mask = recipe.pool_image(index, np.random.default_rng([3, index]))
        assert image.shape == (256, 256, 3) and mask.shape == (256, 256)
        assert set(np.unique(mask)) == {0, 255}
        r, g, b = (image[..., c].astype(float) for c in range(3))
        exg = 2 * g - r - b
        assert exg[mask > 0].mean() > exg[mask == 0].mean() + 10  # the mask follows the green plants
    tray, tray_mask = recipe.pool_image(recipe.TRAY_EVERY - 1, np.random.default_rng(0))
    field, _ = recipe.pool_image(0, np.random.default_rng(0))
    assert not np.array_equal(tray, field)
    assert 0.002 < (tray_mask > 0).mean() < 0.5


def test_init_starts_from_a_saved_states_weights(data, tmp_path):
    from deepplantphenomics import tools

    args = _args(data, tmp_path / "run", "--init", str(tools.WEIGHTS_DIR))
    network = recipe.make_model(args, args.work_dir).build_network()
    recipe.start_weights(args, network)
    shipped = load_file(str(tools.WEIGHTS_DIR / state.WEIGHTS))
    for key, value in network.state_dict().items():
        if key in shipped:
            assert torch.equal(value, shipped[key]), key
    assert args.init_sha256 == recipe.sha256(tools.WEIGHTS_DIR / state.WEIGHTS)
    assert f"--init {tools.WEIGHTS_DIR}" in recipe.reproduce_command(args)
