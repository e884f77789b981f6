"""Known-answer tests for deepplantphenomics.metrics."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from deepplantphenomics.losses import IGNORE_INDEX
from deepplantphenomics.metrics import ConfusionMatrix, binary_scores, format_metrics, predictions_from_logits

IG = IGNORE_INDEX


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.int64)


# ------------------------------------------------------------------------------ binary 2x3 by hand

# target              prediction
#  1 1 0               1 0 0
#  0 0 1               1 0 1
# TP = 2, FN = 1 (top middle), FP = 1 (bottom left), TN = 2.
BIN_TARGET = [[1, 1, 0], [0, 0, 1]]
BIN_PRED = [[1, 0, 0], [1, 0, 1]]


def test_binary_2x3_by_hand() -> None:
    cm = ConfusionMatrix(2)
    cm.update(_t(BIN_PRED), _t(BIN_TARGET))
    assert cm.matrix.tolist() == [[2, 1], [1, 2]]
    assert cm.matrix.dtype == torch.int64
    m = cm.compute()
    assert m["pixel_accuracy"] == pytest.approx(4 / 6)
    assert m["iou"] == pytest.approx([2 / 4, 2 / 4])
    assert m["dice"] == pytest.approx([4 / 6, 4 / 6])
    assert m["precision"] == pytest.approx([2 / 3, 2 / 3])
    assert m["recall"] == pytest.approx([2 / 3, 2 / 3])
    assert m["mean_iou"] == pytest.approx(0.5)
    assert m["mean_dice"] == pytest.approx(2 / 3)
    assert m["foreground_iou"] == pytest.approx(0.5)
    assert m["foreground_dice"] == pytest.approx(2 / 3)
    assert m["foreground_precision"] == pytest.approx(2 / 3)
    assert m["foreground_recall"] == pytest.approx(2 / 3)


def test_binary_asymmetric_precision_recall() -> None:
    # target 1 1 1 0, prediction 1 0 0 0: TP 1, FN 2, FP 0, TN 1.
    cm = ConfusionMatrix(2)
    cm.update(_t([[1, 0, 0, 0]]), _t([[1, 1, 1, 0]]))
    m = cm.compute()
    assert m["foreground_precision"] == pytest.approx(1.0)
    assert m["foreground_recall"] == pytest.approx(1 / 3)
    assert m["foreground_iou"] == pytest.approx(1 / 3)
    assert m["foreground_dice"] == pytest.approx(2 / 4)
    # background: TP 1 (the TN pixel), FP 2, FN 0.
    assert m["iou"][0] == pytest.approx(1 / 3)
    assert m["precision"][0] == pytest.approx(1 / 3)
    assert m["recall"][0] == pytest.approx(1.0)


# -------------------------------------------------------------------------- 3 classes with ignore

# target                prediction
#   0   1  2             0 2 2
# 255   1  0             1 1 1     (the prediction under 255 must not count anywhere)
MC_TARGET = [[0, 1, 2], [IG, 1, 0]]
MC_PRED = [[0, 2, 2], [1, 1, 1]]


def test_three_class_with_ignore_by_hand() -> None:
    cm = ConfusionMatrix(3)
    cm.update(_t(MC_PRED), _t(MC_TARGET))
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert int(cm.matrix.sum()) == 5
    m = cm.compute()
    assert m["pixel_accuracy"] == pytest.approx(3 / 5)
    # class: (tp, n_true, n_pred) = 0: (1, 2, 1), 1: (1, 2, 2), 2: (1, 1, 2)
    assert m["iou"] == pytest.approx([1 / 2, 1 / 3, 1 / 2])
    assert m["dice"] == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert m["precision"] == pytest.approx([1.0, 1 / 2, 1 / 2])
    assert m["recall"] == pytest.approx([1 / 2, 1 / 2, 1.0])
    assert m["mean_iou"] == pytest.approx(4 / 9)
    assert m["mean_dice"] == pytest.approx(11 / 18)
    assert "foreground_iou" not in m


def test_ignored_pixels_do_not_count_whatever_is_predicted_there() -> None:
    results = []
    for under_ignore in (0, 1, 2):
        pred = [row[:] for row in MC_PRED]
        pred[1][0] = under_ignore
        cm = ConfusionMatrix(3)
        cm.update(_t(pred), _t(MC_TARGET))
        results.append(cm.matrix.tolist())
    assert results[0] == results[1] == results[2]


def test_absent_class_is_nan_and_excluded_from_mean() -> None:
    cm = ConfusionMatrix(3)
    cm.update(_t(BIN_PRED), _t(BIN_TARGET))  # classes 0 and 1 only
    m = cm.compute()
    for key in ("iou", "dice", "precision", "recall"):
        assert math.isnan(m[key][2]), key
    assert m["iou"][:2] == pytest.approx([0.5, 0.5])
    assert m["mean_iou"] == pytest.approx(0.5)
    assert m["mean_dice"] == pytest.approx(2 / 3)


def test_class_only_in_prediction_scores_zero_not_nan() -> None:
    cm = ConfusionMatrix(3)
    cm.update(_t([[2, 0]]), _t([[0, 0]]))
    m = cm.compute()
    assert m["iou"][2] == 0.0
    assert m["dice"][2] == 0.0
    assert m["precision"][2] == 0.0
    assert m["recall"][2] == 0.0  # 0/0 for a class that does appear counts as 0
    assert math.isnan(m["iou"][1])
    assert m["mean_iou"] == pytest.approx((1 / 2 + 0.0) / 2)


def test_class_only_in_target_scores_zero() -> None:
    cm = ConfusionMatrix(2)
    cm.update(_t([[0, 0]]), _t([[1, 0]]))
    m = cm.compute()
    assert m["foreground_iou"] == 0.0
    assert m["foreground_precision"] == 0.0
    assert m["foreground_recall"] == 0.0


def test_empty_matrix_gives_nan_everywhere() -> None:
    cm = ConfusionMatrix(2)
    cm.update(_t([[1, 0]]), _t([[IG, IG]]))
    m = cm.compute()
    assert int(cm.matrix.sum()) == 0
    assert math.isnan(m["pixel_accuracy"])
    assert math.isnan(m["mean_iou"])
    assert all(math.isnan(v) for v in m["iou"])


def test_compute_returns_plain_json_serialisable_floats() -> None:
    cm = ConfusionMatrix(3)
    cm.update(_t(BIN_PRED), _t(BIN_TARGET))
    m = cm.compute()
    for key, value in m.items():
        values = value if isinstance(value, list) else [value]
        assert all(type(v) is float for v in values), key
    decoded = json.loads(json.dumps(m))
    assert math.isnan(decoded["iou"][2])
    assert decoded["mean_iou"] == pytest.approx(0.5)


def test_merge_equals_one_big_update() -> None:
    gen = torch.Generator().manual_seed(11)
    preds = [torch.randint(0, 4, (2, 16, 16), generator=gen) for _ in range(3)]
    targets = [torch.randint(0, 4, (2, 16, 16), generator=gen) for _ in range(3)]
    for t in targets:
        t[torch.rand(t.shape, generator=gen) < 0.1] = IG
    big = ConfusionMatrix(4)
    big.update(torch.cat(preds), torch.cat(targets))
    merged = ConfusionMatrix(4)
    for p, t in zip(preds, targets):
        part = ConfusionMatrix(4)
        part.update(p, t)
        merged.merge(part)
    assert torch.equal(merged.matrix, big.matrix)
    assert json.dumps(merged.compute()) == json.dumps(big.compute())
    sequential = ConfusionMatrix(4)
    for p, t in zip(preds, targets):
        sequential.update(p, t)
    assert torch.equal(sequential.matrix, big.matrix)


def test_merge_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match=r"`other`: expected 2 classes, received 3"):
        ConfusionMatrix(2).merge(ConfusionMatrix(3))
    with pytest.raises(TypeError, match="`other`"):
        ConfusionMatrix(2).merge(torch.zeros(2, 2))  # type: ignore[arg-type]


def test_reset_clears_counts() -> None:
    cm = ConfusionMatrix(2, device="cpu")
    cm.update(_t(BIN_PRED), _t(BIN_TARGET))
    cm.reset()
    assert int(cm.matrix.sum()) == 0


@pytest.mark.parametrize(
    ("pred", "target", "pattern"),
    [
        (
            torch.zeros(1, 2, 2, dtype=torch.int64),
            torch.zeros(1, 2, 3, dtype=torch.int64),
            r"\(1, 2, 2\).*\(1, 2, 3\)",
        ),
        (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64), "integer prediction"),
        (torch.zeros(1, 1, 2, dtype=torch.int64), _t([[0, 5]]), r"Target holds values outside 0\.\.1.*\[5\]"),
        (_t([[0, 3]]), _t([[0, 1]]), r"Prediction holds values outside 0\.\.1.*\[3\]"),
    ],
)
def test_update_rejects_bad_input(pred: torch.Tensor, target: torch.Tensor, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        ConfusionMatrix(2).update(pred, target)


@pytest.mark.parametrize(("value", "error"), [(1, ValueError), (2.0, TypeError), (True, TypeError)])
def test_num_classes_validated(value: object, error: type) -> None:
    with pytest.raises(error, match="`num_classes`"):
        ConfusionMatrix(value)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- comparison with numpy


def _numpy_iou_dice(pred: np.ndarray, truth: np.ndarray, c: int) -> tuple[float, float]:
    p, t = pred == c, truth == c
    inter = np.logical_and(p, t).sum()
    union = np.logical_or(p, t).sum()
    return inter / union, 2 * inter / (p.sum() + t.sum())


@pytest.mark.parametrize("num_classes", [2, 3])
def test_matches_direct_numpy_on_random_64x64(num_classes: int) -> None:
    rng = np.random.default_rng(1234)
    truth = rng.integers(0, num_classes, size=(64, 64))
    pred = np.where(rng.random((64, 64)) < 0.7, truth, rng.integers(0, num_classes, size=(64, 64)))
    cm = ConfusionMatrix(num_classes)
    cm.update(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None])
    m = cm.compute()
    for c in range(num_classes):
        iou, dice = _numpy_iou_dice(pred, truth, c)
        assert m["iou"][c] == pytest.approx(iou, rel=1e-12)
        assert m["dice"][c] == pytest.approx(dice, rel=1e-12)
    assert m["pixel_accuracy"] == pytest.approx(float((pred == truth).mean()), rel=1e-12)
    if num_classes == 2:
        scores = binary_scores(pred, truth)
        assert scores["iou"] == pytest.approx(m["foreground_iou"], rel=1e-12)
        assert scores["dice"] == pytest.approx(m["foreground_dice"], rel=1e-12)
        assert scores["precision"] == pytest.approx(m["foreground_precision"], rel=1e-12)
        assert scores["recall"] == pytest.approx(m["foreground_recall"], rel=1e-12)
        assert scores["pixel_accuracy"] == pytest.approx(m["pixel_accuracy"], rel=1e-12)


# ---------------------------------------------------------------------------------- binary_scores


def test_binary_scores_2x3_by_hand() -> None:
    s = binary_scores(np.array(BIN_PRED), np.array(BIN_TARGET))
    assert s == pytest.approx(
        {"dice": 2 / 3, "iou": 0.5, "precision": 2 / 3, "recall": 2 / 3, "pixel_accuracy": 4 / 6}
    )


def test_binary_scores_both_empty_is_perfect() -> None:
    s = binary_scores(np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8))
    assert s == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "pixel_accuracy": 1.0}


def test_binary_scores_prediction_empty() -> None:
    truth = np.zeros((2, 2), np.uint8)
    truth[0, 0] = 255
    s = binary_scores(np.zeros((2, 2)), truth)
    assert s == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0, "pixel_accuracy": 0.75}


def test_binary_scores_truth_empty() -> None:
    pred = np.array([[True, True], [False, False]])
    s = binary_scores(pred, np.zeros((2, 2), bool))
    assert s == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0, "pixel_accuracy": 0.5}


def test_binary_scores_mask_encodings_agree() -> None:
    rng = np.random.default_rng(5)
    a = rng.random((16, 16)) > 0.5
    b = rng.random((16, 16)) > 0.5
    as_bool = binary_scores(a, b)
    as_01 = binary_scores(a.astype(np.uint8), b.astype(np.int64))
    as_255 = binary_scores(a.astype(np.uint8) * 255, b.astype(np.uint8) * 255)
    assert as_bool == as_01 == as_255
    assert all(type(v) is float for v in as_bool.values())


def test_binary_scores_shape_mismatch_names_both() -> None:
    with pytest.raises(ValueError, match=re.escape("prediction (4, 5), truth (4, 4)")):
        binary_scores(np.zeros((4, 5)), np.zeros((4, 4)))


# ------------------------------------------------------------------------- predictions_from_logits


def test_predictions_from_binary_logits() -> None:
    logits = torch.tensor([[[[-1.0, 0.0], [0.1, 5.0]]]])
    pred = predictions_from_logits(logits)
    assert pred.dtype == torch.int64
    assert pred.shape == (1, 2, 2)
    assert pred.tolist() == [[[0, 0], [1, 1]]]  # sigmoid(0) = 0.5 is not > 0.5
    # sigmoid(0.1) ~ 0.525, sigmoid(5) ~ 0.993
    assert predictions_from_logits(logits, threshold=0.9).tolist() == [[[0, 0], [0, 1]]]
    assert predictions_from_logits(logits, threshold=0.2).tolist() == [[[1, 1], [1, 1]]]


def test_predictions_from_multiclass_logits_argmax() -> None:
    logits = torch.zeros(2, 3, 1, 2)
    logits[0, 2, 0, 0] = 1.0
    logits[0, 1, 0, 1] = 1.0
    logits[1, 0, 0, :] = 1.0
    pred = predictions_from_logits(logits)
    assert pred.dtype == torch.int64
    assert pred.tolist() == [[[2, 1]], [[0, 0]]]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"logits": torch.zeros(1, 2, 2)}, ValueError, r"`logits`: expected shape \(N, C, H, W\)"),
        ({"logits": torch.zeros(1, 1, 2, 2), "threshold": 1.5}, ValueError, r"`threshold`.*\[0, 1\]"),
        ({"logits": torch.zeros(1, 1, 2, 2), "threshold": "0.5"}, TypeError, "`threshold`"),
    ],
)
def test_predictions_from_logits_validation(kwargs: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        predictions_from_logits(**kwargs)


# --------------------------------------------------------------------------------- format_metrics


def test_format_binary_metrics() -> None:
    cm = ConfusionMatrix(2)
    cm.update(_t(BIN_PRED), _t(BIN_TARGET))
    text = format_metrics(cm.compute())
    assert "pixel accuracy:  0.6667" in text
    assert "mean IoU:        0.5000" in text
    assert "foreground IoU:  0.5000" in text
    assert "foreground Dice: 0.6667" in text
    assert "per class" not in text


def test_format_multiclass_metrics_with_names_and_nan() -> None:
    cm = ConfusionMatrix(4)
    cm.update(_t(MC_PRED), _t(MC_TARGET))
    text = format_metrics(cm.compute(), class_names=["soil", "crop", "weed", "stone"])
    lines = text.splitlines()
    assert lines[0] == "pixel accuracy:  0.6000"
    assert "mean IoU:        0.4444" in lines
    assert "mean Dice:       0.6111" in lines
    crop = next(line for line in lines if "crop" in line)
    assert "IoU 0.3333" in crop and "Dice 0.5000" in crop
    stone = next(line for line in lines if "stone" in line)
    assert "IoU    n/a" in stone
    assert "nan" not in text


def test_format_default_class_names_and_binary_scores() -> None:
    cm = ConfusionMatrix(3)
    cm.update(_t(MC_PRED), _t(MC_TARGET))
    assert "class 2" in format_metrics(cm.compute())
    text = format_metrics(binary_scores(np.array(BIN_PRED), np.array(BIN_TARGET)))
    assert "IoU:             0.5000" in text
    assert "Dice:            0.6667" in text


def test_format_rejects_wrong_number_of_names() -> None:
    cm = ConfusionMatrix(3)
    cm.update(_t(MC_PRED), _t(MC_TARGET))
    with pytest.raises(ValueError, match="`class_names`: expected 3 names"):
        format_metrics(cm.compute(), class_names=["a", "b"])
