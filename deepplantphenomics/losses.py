"""Segmentation losses: cross entropy, soft Dice, focal, and their sums.

Conventions shared by the whole package:

- Targets are integer tensors of shape (N, H, W) holding class indices ``0..C-1``; the value
  :data:`IGNORE_INDEX` (255) marks pixels that take no part in the loss or the metrics.
- Binary segmentation (``C == 2``: 0 background, 1 foreground) uses ONE logit channel, logits
  (N, 1, H, W). Multi-class segmentation (``C > 2``) uses logits (N, C, H, W).

Every loss returned by :func:`build_loss` is an ``nn.Module`` called as ``loss(logits, target)`` that
returns a scalar tensor. A batch in which every pixel is ignored gives ``0 * logits.sum()``: zero, never
NaN, and ``backward()`` still works.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepplantphenomics.validation import IGNORE_INDEX, check_num_classes

__all__ = [
    "IGNORE_INDEX",
    "LOSS_NAMES",
    "CrossEntropySegmentationLoss",
    "FocalLoss",
    "SoftDiceLoss",
    "SumOfLosses",
    "build_loss",
    "canonical_loss_name",
]


#: Canonical loss names accepted by :func:`build_loss` (what :func:`canonical_loss_name` returns).
#: 'cross entropy' is the family name: binary models use sigmoid, multi-class models softmax.
LOSS_NAMES: tuple[str, ...] = (
    "sigmoid cross entropy",
    "softmax cross entropy",
    "cross entropy",
    "dice",
    "focal",
    "cross entropy + dice",
    "focal + dice",
)

# One term of a (possibly combined) loss name, after lower-casing and turning '_'/'-' into spaces.
_TERM_ALIASES: dict[str, str] = {
    "sigmoid cross entropy": "sigmoid cross entropy",
    "binary cross entropy": "sigmoid cross entropy",
    "bce": "sigmoid cross entropy",
    "softmax cross entropy": "softmax cross entropy",
    "categorical cross entropy": "softmax cross entropy",
    "cross entropy": "cross entropy",
    "ce": "cross entropy",
    "dice": "dice",
    "focal": "focal",
}

_CROSS_ENTROPY_TERMS = ("sigmoid cross entropy", "softmax cross entropy", "cross entropy")


def _invalid_name(name: str, argument: str = "loss_function") -> ValueError:
    return ValueError(
        f"Invalid value for argument `{argument}`: expected one of {list(LOSS_NAMES)}, received {name!r}."
    )


def canonical_loss_name(name: str, argument: str = "loss_function") -> str:
    """Normalise a user-supplied loss name to one of :data:`LOSS_NAMES`.

    Matching is case-insensitive; underscores, hyphens and runs of spaces count as one space, spacing
    around '+' does not matter, a trailing word 'loss' is dropped, and the order of the terms of a sum
    does not matter. A few obvious aliases are understood: 'bce' / 'binary cross entropy' (sigmoid),
    'categorical cross entropy' (softmax) and 'ce' (the cross entropy family). In a sum with Dice the
    sigmoid/softmax flavour is dropped because the number of classes decides it.

    Examples: 'Sigmoid_Cross_Entropy' -> 'sigmoid cross entropy', 'ce+dice' -> 'cross entropy + dice',
    'Dice + Focal' -> 'focal + dice', 'dice_loss' -> 'dice'.

    Args:
        name: The loss name as the user wrote it.
        argument: The argument name error messages give (the caller's parameter name).

    Returns:
        The canonical name, an element of :data:`LOSS_NAMES`.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If ``name`` is not a known loss.
    """
    if not isinstance(name, str):
        raise TypeError(f"Invalid value for argument `{argument}`: expected a str, received {name!r}.")
    terms = []
    for raw_term in name.split("+"):
        term = re.sub(r"[\s_\-]+", " ", raw_term.strip().lower()).strip()
        if term.endswith(" loss"):
            term = term[: -len(" loss")]
        if term not in _TERM_ALIASES:
            raise _invalid_name(name, argument)
        terms.append(_TERM_ALIASES[term])

    if len(terms) == 1:
        return terms[0]
    if len(terms) == 2:
        has_dice = "dice" in terms
        others = [t for t in terms if t != "dice"]
        if has_dice and len(others) == 1:
            if others[0] in _CROSS_ENTROPY_TERMS:
                return "cross entropy + dice"
            if others[0] == "focal":
                return "focal + dice"
    raise _invalid_name(name, argument)


def _check_class_weights(class_weights: Sequence[float] | None, num_classes: int) -> torch.Tensor | None:
    if class_weights is None:
        return None
    if isinstance(class_weights, torch.Tensor):
        class_weights = class_weights.detach().cpu().flatten().tolist()
    elif type(class_weights).__module__ == "numpy":
        class_weights = class_weights.tolist()
    if isinstance(class_weights, (str, bytes)) or not isinstance(class_weights, Sequence):
        raise TypeError(
            "Invalid type for argument `class_weights`: expected a sequence of floats, "
            f"received {type(class_weights).__name__}."
        )
    values = list(class_weights)
    if len(values) != num_classes:
        raise ValueError(
            f"Invalid value for argument `class_weights`: expected {num_classes} values (one per class), "
            f"received {len(values)}."
        )
    for value in values:
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value) or value <= 0:
            raise ValueError(
                "Invalid value for argument `class_weights`: expected positive finite floats, "
                f"received {values}."
            )
    return torch.tensor(values, dtype=torch.float32)


class _SegmentationLoss(nn.Module):
    """Shared input checks for the losses below.

    Args:
        num_classes: Number of classes C (2 = binary with one logit channel).
        ignore_index: Target value excluded from the loss.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.num_classes = check_num_classes("num_classes", num_classes)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(
                "Invalid type for argument `ignore_index`: expected an int, "
                f"received {type(ignore_index).__name__}."
            )
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f"Invalid value for argument `ignore_index`: expected a value outside the class range "
                f"0..{num_classes - 1}, received {ignore_index}."
            )
        self.ignore_index = ignore_index

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    def _prepare(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check shapes and values; return (target with ignored pixels set to 0, valid-pixel mask).

        Args:
            logits: (N, 1, H, W) for binary, (N, C, H, W) for multi-class.
            target: (N, H, W) integer class indices or ``ignore_index``.

        Returns:
            ``safe_target`` (N, H, W) int64 with ignored pixels replaced by class 0 (so it can index), and
            ``valid`` (N, H, W) bool, True where the pixel counts.
        """
        channels = 1 if self.binary else self.num_classes
        if logits.dim() != 4 or logits.shape[1] != channels:
            raise ValueError(
                f"Expected logits of shape (N, {channels}, H, W) for {self.num_classes} classes, "
                f"received {tuple(logits.shape)}."
            )
        expected = (logits.shape[0], *logits.shape[2:])
        if target.dim() != 3 or tuple(target.shape) != expected:
            raise ValueError(
                f"Expected a target of shape {expected} (N, H, W) to match logits "
                f"{tuple(logits.shape)}, received {tuple(target.shape)}."
            )
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise ValueError(f"Expected an integer target of class indices, received dtype {target.dtype}.")
        target = target.long()
        valid = target != self.ignore_index
        # A mask still in 0/255 form or with stray values would otherwise train silently on garbage.
        bad = valid & ((target < 0) | (target >= self.num_classes))
        if bool(bad.any()):
            found = sorted(set(target[bad].unique().tolist()))[:5]
            raise ValueError(
                f"Target holds values outside 0..{self.num_classes - 1} that are not the ignore index "
                f"{self.ignore_index}: {found}."
            )
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        return safe_target, valid

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, ignore_index={self.ignore_index}"


def _per_pixel_nll(logits: torch.Tensor, safe_target: torch.Tensor, binary: bool) -> torch.Tensor:
    """Negative log-likelihood of the true class per pixel, (N, H, W), computed stably from logits."""
    if binary:
        return F.binary_cross_entropy_with_logits(
            logits[:, 0], safe_target.to(logits.dtype), reduction="none"
        )
    log_probs = F.log_softmax(logits, dim=1)
    return -log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)


def _weighted_mean(
    per_pixel: torch.Tensor,
    safe_target: torch.Tensor,
    valid: torch.Tensor,
    class_weights: torch.Tensor | None,
    logits: torch.Tensor,
) -> torch.Tensor:
    """Mean of ``per_pixel`` over valid pixels, weighted by the true class's weight when weights are given.

    The normaliser is the sum of the weights (as in ``F.cross_entropy(weight=...)``), so weights [1, 1]
    equal no weights and scaling all weights by a constant changes nothing.
    """
    if class_weights is None:
        weights = valid.to(per_pixel.dtype)
    else:
        weights = class_weights.to(device=per_pixel.device, dtype=per_pixel.dtype)[safe_target]
        weights = weights * valid.to(per_pixel.dtype)
    total = weights.sum()
    if not bool(total > 0):
        return 0.0 * logits.sum()
    # where() rather than multiplication: a non-finite value at an ignored pixel must not leak in as NaN.
    return torch.where(valid, per_pixel * weights, torch.zeros_like(per_pixel)).sum() / total


class CrossEntropySegmentationLoss(_SegmentationLoss):
    """Cross entropy: sigmoid (BCE with logits) for binary, softmax for multi-class.

    The value is the mean over non-ignored pixels. With ``class_weights`` every pixel is weighted by the
    weight of its true class and the sum is divided by the sum of those weights, exactly like
    ``F.cross_entropy(weight=..., ignore_index=...)``; for binary this equals softmax cross entropy on the
    two logits ``[0, z]``.

    Args:
        num_classes: Number of classes C (2 = binary, one logit channel).
        class_weights: Optional C positive weights.
        ignore_index: Target value excluded from the loss.
    """

    def __init__(
        self,
        num_classes: int,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(num_classes, ignore_index)
        self.register_buffer("class_weights", _check_class_weights(class_weights, num_classes))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: (N, 1, H, W) binary or (N, C, H, W) multi-class raw scores.
            target: (N, H, W) int class indices, ``ignore_index`` for ignored pixels.

        Returns:
            Scalar tensor.
        """
        safe_target, valid = self._prepare(logits, target)
        nll = _per_pixel_nll(logits, safe_target, self.binary)
        return _weighted_mean(nll, safe_target, valid, self.class_weights, logits)


class FocalLoss(_SegmentationLoss):
    """Focal loss (Lin et al., 2017): ``-w_t * (1 - p_t) ** gamma * log(p_t)`` per pixel.

    ``p_t`` is the predicted probability of the true class (sigmoid for binary, softmax for
    multi-class). The per-class weights play the role of the paper's alpha and are normalised like
    :class:`CrossEntropySegmentationLoss`, so with ``gamma=0`` the two losses are equal.

    Args:
        num_classes: Number of classes C (2 = binary, one logit channel).
        gamma: Focusing parameter, >= 0.
        class_weights: Optional C positive weights.
        ignore_index: Target value excluded from the loss.

    Raises:
        TypeError, ValueError: If ``gamma`` is not a non-negative finite number.
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(num_classes, ignore_index)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
            raise TypeError(
                f"Invalid type for argument `focal_gamma`: expected a float, received {type(gamma).__name__}."
            )
        if not math.isfinite(gamma) or gamma < 0:
            raise ValueError(
                f"Invalid value for argument `focal_gamma`: expected a float >= 0, received {gamma}."
            )
        self.gamma = float(gamma)
        self.register_buffer("class_weights", _check_class_weights(class_weights, num_classes))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: (N, 1, H, W) binary or (N, C, H, W) multi-class raw scores.
            target: (N, H, W) int class indices, ``ignore_index`` for ignored pixels.

        Returns:
            Scalar tensor.
        """
        safe_target, valid = self._prepare(logits, target)
        nll = _per_pixel_nll(logits, safe_target, self.binary)
        if self.gamma == 0:
            per_pixel = nll
        else:
            # -expm1(-nll) = 1 - p_t without cancellation; the floor keeps the gradient of x**gamma finite
            # at p_t == 1 when gamma < 1.
            one_minus_pt = (-torch.expm1(-nll)).clamp_min(1e-12)
            per_pixel = one_minus_pt.pow(self.gamma) * nll
        return _weighted_mean(per_pixel, safe_target, valid, self.class_weights, logits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"


class SoftDiceLoss(_SegmentationLoss):
    """Soft Dice loss, ``1 - dice``, on probabilities, pooled over the whole batch.

    ``dice_c = (2 * sum(p_c * t_c) + smooth) / (sum(p_c) + sum(t_c) + smooth)`` over non-ignored pixels.
    Binary: ``p`` = sigmoid of the single channel and only the foreground class is scored. Multi-class:
    ``p`` = softmax, and the loss is 1 minus the mean Dice over the classes that appear in the target or
    in the arg-max prediction (non-ignored pixels only), so absent classes do not dilute the mean. Class
    weights are not used by this loss.

    Args:
        num_classes: Number of classes C (2 = binary, one logit channel).
        smooth: Added to numerator and denominator; keeps empty masks finite.
        ignore_index: Target value excluded from the loss.
    """

    def __init__(self, num_classes: int, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(num_classes, ignore_index)
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: (N, 1, H, W) binary or (N, C, H, W) multi-class raw scores.
            target: (N, H, W) int class indices, ``ignore_index`` for ignored pixels.

        Returns:
            Scalar tensor in [0, 1).
        """
        safe_target, valid = self._prepare(logits, target)
        if not bool(valid.any()):
            return 0.0 * logits.sum()
        mask = valid.to(logits.dtype)
        if self.binary:
            probs = torch.sigmoid(logits[:, 0]) * mask
            truth = safe_target.to(logits.dtype) * mask
            intersection = (probs * truth).sum()
            dice = (2.0 * intersection + self.smooth) / (probs.sum() + truth.sum() + self.smooth)
            return 1.0 - dice

        probs = F.softmax(logits, dim=1) * mask.unsqueeze(1)
        truth = F.one_hot(safe_target, self.num_classes).permute(0, 3, 1, 2).to(logits.dtype)
        truth = truth * mask.unsqueeze(1)
        dims = (0, 2, 3)
        intersection = (probs * truth).sum(dims)
        dice = (2.0 * intersection + self.smooth) / (probs.sum(dims) + truth.sum(dims) + self.smooth)
        with torch.no_grad():
            predicted = F.one_hot(logits.argmax(dim=1), self.num_classes).permute(0, 3, 1, 2)
            present = ((truth > 0) | ((predicted > 0) & valid.unsqueeze(1))).flatten(2).any(-1).any(0)
        return 1.0 - dice[present].mean()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, smooth={self.smooth}"


class SumOfLosses(nn.Module):
    """The plain sum of several losses, e.g. cross entropy + Dice.

    Args:
        losses: The terms, each called as ``term(logits, target)``.
    """

    def __init__(self, *losses: nn.Module) -> None:
        super().__init__()
        self.terms = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the sum of the terms' values (scalar tensor)."""
        total = self.terms[0](logits, target)
        for term in self.terms[1:]:
            total = total + term(logits, target)
        return total


def build_loss(
    name: str,
    num_classes: int,
    class_weights: Sequence[float] | None = None,
    ignore_index: int = IGNORE_INDEX,
    focal_gamma: float = 2.0,
) -> nn.Module:
    """Build the loss module for a loss name and a number of classes.

    The cross entropy flavour follows ``num_classes``, whatever the name says: 'sigmoid cross entropy'
    with ``num_classes > 2`` gives softmax cross entropy, and 'softmax cross entropy' with
    ``num_classes == 2`` gives sigmoid (BCE-with-logits) on the single logit channel, so that DPP
    scripts that keep 'sigmoid cross entropy' and call ``set_num_segmentation_classes(3)`` just work.

    Args:
        name: Any spelling accepted by :func:`canonical_loss_name`.
        num_classes: C >= 2; 2 means binary with logits (N, 1, H, W), otherwise logits (N, C, H, W).
        class_weights: Optional C positive weights (binary: [background, foreground]) for the cross
            entropy and focal terms. Dice does not use them.
        ignore_index: Target value excluded from the loss (must not be a class index).
        focal_gamma: Focusing parameter of the focal loss, >= 0.

    Returns:
        A module called as ``loss(logits, target)`` returning a scalar tensor, the mean over
        non-ignored pixels.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If the name is unknown, ``num_classes < 2``, or ``class_weights`` has the wrong
            length or non-positive values.
    """
    canonical = canonical_loss_name(name)
    check_num_classes("num_classes", num_classes)
    _check_class_weights(class_weights, num_classes)
    if canonical in _CROSS_ENTROPY_TERMS:
        return CrossEntropySegmentationLoss(num_classes, class_weights, ignore_index)
    if canonical == "dice":
        return SoftDiceLoss(num_classes, ignore_index=ignore_index)
    if canonical == "focal":
        return FocalLoss(num_classes, focal_gamma, class_weights, ignore_index)
    if canonical == "cross entropy + dice":
        return SumOfLosses(
            CrossEntropySegmentationLoss(num_classes, class_weights, ignore_index),
            SoftDiceLoss(num_classes, ignore_index=ignore_index),
        )
    # canonical_loss_name only returns LOSS_NAMES, so this is the last one.
    return SumOfLosses(
        FocalLoss(num_classes, focal_gamma, class_weights, ignore_index),
        SoftDiceLoss(num_classes, ignore_index=ignore_index),
    )
