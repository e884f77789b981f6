"""Segmentation metrics built on a confusion matrix, plus per-image binary scores.

Pixels whose target is :data:`~deepplantphenomics.validation.IGNORE_INDEX` (255) are excluded everywhere.

Conventions for classes that are missing:

- :class:`ConfusionMatrix`: a class absent from both target and prediction has no meaningful score, so
  its IoU, Dice, precision and recall are NaN and it is left out of the means. A class that appears on
  either side but is never hit correctly scores 0.0 on every measure (an undefined precision or recall,
  0/0, counts as 0.0 there, because the class does appear and something was missed).
- :func:`binary_scores` (one image): both masks empty is perfect agreement, every score 1.0.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from deepplantphenomics.validation import IGNORE_INDEX, check_num_classes

__all__ = [
    "ConfusionMatrix",
    "binary_scores",
    "format_metrics",
    "predictions_from_logits",
]


def _ratio(numerator: float, denominator: float, present: bool) -> float:
    """numerator / denominator; NaN for a class absent everywhere, 0.0 for 0/0 of a present class."""
    if not present:
        return math.nan
    if denominator == 0:
        return 0.0
    return numerator / denominator


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix over batches and derives segmentation metrics.

    Rows are true classes, columns predicted classes. Counting uses ``torch.bincount`` on the
    tensors' device, so evaluating on a GPU does not copy masks to the host.

    Args:
        num_classes: Number of classes C >= 2.
        ignore_index: Target value whose pixels are not counted.
        device: Where the matrix lives; ``None`` adopts the device of the first ``update``.

    Raises:
        TypeError: If ``num_classes`` is not an int.
        ValueError: If ``num_classes < 2``.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device=None) -> None:
        self.num_classes = check_num_classes("num_classes", num_classes)
        self.ignore_index = ignore_index
        self._device = torch.device(device) if device is not None else None
        start_device = self._device if self._device is not None else torch.device("cpu")
        self._matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=start_device)

    @property
    def matrix(self) -> torch.Tensor:
        """The (C, C) int64 counts; rows = true class, columns = predicted class."""
        return self._matrix

    def reset(self) -> None:
        """Set every count back to zero."""
        self._matrix.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of predictions.

        Args:
            pred: (N, H, W) int predicted class indices (e.g. from :func:`predictions_from_logits`).
            target: (N, H, W) int true class indices, ``ignore_index`` for pixels not to count.

        Raises:
            ValueError: If shapes differ, a tensor is not integer, or values fall outside 0..C-1
                (other than ``ignore_index`` in the target).
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"Prediction and target shapes differ: prediction {tuple(pred.shape)}, "
                f"target {tuple(target.shape)}."
            )
        for label, tensor in (("prediction", pred), ("target", target)):
            if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
                raise ValueError(
                    f"Expected an integer {label} of class indices, received dtype {tensor.dtype}."
                )
        if self._device is None:
            self._device = target.device
            self._matrix = self._matrix.to(self._device)
        pred = pred.to(self._device).long().flatten()
        target = target.to(self._device).long().flatten()
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        c = self.num_classes
        if target.numel() == 0:
            return
        if bool(((target < 0) | (target >= c)).any()):
            raise ValueError(
                f"Target holds values outside 0..{c - 1} that are not the ignore index {self.ignore_index}: "
                f"{sorted(target[(target < 0) | (target >= c)].unique().tolist())[:5]}."
            )
        if bool(((pred < 0) | (pred >= c)).any()):
            raise ValueError(
                f"Prediction holds values outside 0..{c - 1}: "
                f"{sorted(pred[(pred < 0) | (pred >= c)].unique().tolist())[:5]}."
            )
        counts = torch.bincount(target * c + pred, minlength=c * c)
        self._matrix += counts.reshape(c, c)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add the counts of another matrix (e.g. from another worker) to this one.

        Args:
            other: A :class:`ConfusionMatrix` with the same number of classes.

        Raises:
            TypeError: If ``other`` is not a ConfusionMatrix.
            ValueError: If the numbers of classes differ.
        """
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(
                "Invalid type for argument `other`: expected a ConfusionMatrix, "
                f"received {type(other).__name__}."
            )
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"Invalid value for argument `other`: expected {self.num_classes} classes, "
                f"received {other.num_classes}."
            )
        self._matrix += other.matrix.to(self._matrix.device)

    def compute(self) -> dict[str, float | list[float]]:
        """Derive the metrics from the counts so far.

        Returns:
            A dict of plain Python floats (JSON-serialisable; NaN where undefined):
            ``pixel_accuracy``; per-class lists ``iou``, ``dice``, ``precision``, ``recall``;
            ``mean_iou`` and ``mean_dice`` over the classes that appear in target or prediction;
            and for binary (C == 2) ``foreground_iou``, ``foreground_dice``, ``foreground_precision``,
            ``foreground_recall`` (class 1). With no pixel counted at all every value is NaN.
        """
        m = self._matrix.detach().cpu().to(torch.float64)
        tp = torch.diagonal(m)
        true_count = m.sum(dim=1)  # tp + fn
        pred_count = m.sum(dim=0)  # tp + fp
        total = float(m.sum())
        iou, dice, precision, recall = [], [], [], []
        for c in range(self.num_classes):
            t, n_true, n_pred = float(tp[c]), float(true_count[c]), float(pred_count[c])
            present = n_true > 0 or n_pred > 0
            iou.append(_ratio(t, n_true + n_pred - t, present))
            dice.append(_ratio(2.0 * t, n_true + n_pred, present))
            precision.append(_ratio(t, n_pred, present))
            recall.append(_ratio(t, n_true, present))
        result: dict[str, float | list[float]] = {
            "pixel_accuracy": float(tp.sum()) / total if total > 0 else math.nan,
            "iou": iou,
            "dice": dice,
            "precision": precision,
            "recall": recall,
            "mean_iou": _nanmean(iou),
            "mean_dice": _nanmean(dice),
        }
        if self.num_classes == 2:
            result["foreground_iou"] = iou[1]
            result["foreground_dice"] = dice[1]
            result["foreground_precision"] = precision[1]
            result["foreground_recall"] = recall[1]
        return result

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self._matrix.sum())})"
        )


def predictions_from_logits(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Turn network outputs into class-index masks.

    Args:
        logits: (N, 1, H, W) binary logits, or (N, C, H, W) multi-class logits.
        threshold: Binary only: foreground where ``sigmoid(logit) > threshold``; in [0, 1].

    Returns:
        (N, H, W) int64 class indices (binary: 0 background, 1 foreground; multi-class: arg-max).

    Raises:
        TypeError: If ``threshold`` is not a number.
        ValueError: If ``logits`` is not 4-D or ``threshold`` is outside [0, 1].
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(
            f"Invalid type for argument `threshold`: expected a float, received {type(threshold).__name__}."
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"Invalid value for argument `threshold`: expected a float in [0, 1], received {threshold}."
        )
    if logits.dim() != 4:
        raise ValueError(
            "Invalid value for argument `logits`: expected shape (N, C, H, W), "
            f"received {tuple(logits.shape)}."
        )
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0]) > threshold).long()
    return logits.argmax(dim=1)


def binary_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Scores of one predicted mask against one true mask.

    Any value > 0 is foreground, so bool, 0/1 and 0/255 masks all work.

    Args:
        pred: (H, W) predicted mask.
        truth: (H, W) true mask.

    Returns:
        ``dice``, ``iou``, ``precision``, ``recall``, ``pixel_accuracy`` as plain floats. Both masks
        empty counts as perfect agreement (every score 1.0); a 0/0 precision or recall with only one
        mask empty is 0.0.

    Raises:
        ValueError: If the shapes differ (both are named) or the masks are empty arrays.
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"Prediction and truth shapes differ: prediction {pred.shape}, truth {truth.shape}.")
    if pred.size == 0:
        raise ValueError(f"Cannot score empty arrays (shape {pred.shape}).")
    p = pred > 0
    t = truth > 0
    tp = int(np.count_nonzero(p & t))
    n_pred = int(np.count_nonzero(p))
    n_true = int(np.count_nonzero(t))
    accuracy = float(np.count_nonzero(p == t)) / p.size
    if n_pred == 0 and n_true == 0:
        return {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "pixel_accuracy": accuracy}
    return {
        "dice": 2.0 * tp / (n_pred + n_true),
        "iou": tp / (n_pred + n_true - tp),
        "precision": tp / n_pred if n_pred else 0.0,
        "recall": tp / n_true if n_true else 0.0,
        "pixel_accuracy": accuracy,
    }


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def format_metrics(metrics: dict, class_names: Sequence[str] | None = None) -> str:
    """Render metrics as a multi-line summary for the console.

    Accepts the dict from :meth:`ConfusionMatrix.compute` or from :func:`binary_scores`; other keys
    (e.g. a ``loss`` the caller added and reports itself) are left out. Values are printed with 4
    decimals; NaN (class absent) prints 'n/a'.

    Args:
        metrics: The metrics dict.
        class_names: Optional names for the classes, one per class, used in the per-class lines.

    Returns:
        The summary, lines separated by newlines, without a trailing newline.

    Raises:
        ValueError: If ``class_names`` does not have one name per class.
    """
    lines = []
    if "pixel_accuracy" in metrics:
        lines.append(f"pixel accuracy:  {_fmt(metrics['pixel_accuracy'])}")

    per_class = isinstance(metrics.get("iou"), (list, tuple))
    if not per_class:
        # A single image's binary scores.
        for key, label in (
            ("iou", "IoU"),
            ("dice", "Dice"),
            ("precision", "precision"),
            ("recall", "recall"),
        ):
            if key in metrics:
                lines.append(f"{label + ':':<17}{_fmt(metrics[key])}")
        return "\n".join(lines)

    num_classes = len(metrics["iou"])
    if class_names is not None:
        if isinstance(class_names, str) or len(class_names) != num_classes:
            raise ValueError(
                f"Invalid value for argument `class_names`: expected {num_classes} names (one per class), "
                f"received {class_names!r}."
            )
        names = [str(n) for n in class_names]
    else:
        names = [f"class {c}" for c in range(num_classes)]

    lines.append(f"mean IoU:        {_fmt(metrics['mean_iou'])}")
    lines.append(f"mean Dice:       {_fmt(metrics['mean_dice'])}")
    if num_classes == 2 and "foreground_iou" in metrics:
        lines.append(f"foreground IoU:  {_fmt(metrics['foreground_iou'])}")
        lines.append(f"foreground Dice: {_fmt(metrics['foreground_dice'])}")
        if "foreground_precision" in metrics:
            lines.append(f"precision:       {_fmt(metrics['foreground_precision'])}")
            lines.append(f"recall:          {_fmt(metrics['foreground_recall'])}")
        return "\n".join(lines)

    width = max(len(n) for n in names)
    precision = metrics.get("precision", [math.nan] * num_classes)
    recall = metrics.get("recall", [math.nan] * num_classes)
    lines.append("per class:")
    for c in range(num_classes):
        lines.append(
            f"  {names[c]:<{width}}  IoU {_fmt(metrics['iou'][c]):>6}  Dice {_fmt(metrics['dice'][c]):>6}  "
            f"precision {_fmt(precision[c]):>6}  recall {_fmt(recall[c]):>6}"
        )
    return "\n".join(lines)
