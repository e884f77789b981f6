"""Known-answer tests for deepplantphenomics.losses on tiny tensors."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from deepplantphenomics.losses import (
    IGNORE_INDEX,
    LOSS_NAMES,
    CrossEntropySegmentationLoss,
    FocalLoss,
    SoftDiceLoss,
    SumOfLosses,
    build_loss,
    canonical_loss_name,
)

IG = IGNORE_INDEX


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# A 1x1x2x2 binary example used throughout: one ignored pixel.
BIN_LOGITS = [[0.0, 2.0], [-1.0, 3.0]]
BIN_TARGET = [[0, 1], [1, IG]]
# Per-pixel BCE = softplus(z) for y=0 and softplus(-z) for y=1.
BIN_PIXEL_LOSSES = [_softplus(0.0), _softplus(-2.0), _softplus(1.0)]


def _bin_inputs(requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([[BIN_LOGITS]], dtype=torch.float64, requires_grad=requires_grad)
    target = torch.tensor([BIN_TARGET], dtype=torch.int64)
    return logits, target


def _multi_inputs(
    seed: int = 0, c: int = 3, requires_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, c, 8, 8, generator=gen, dtype=torch.float64)
    target = torch.randint(0, c, (2, 8, 8), generator=gen)
    target[torch.rand(2, 8, 8, generator=gen) < 0.2] = IG
    return logits.requires_grad_(requires_grad), target


# ---------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sigmoid cross entropy", "sigmoid cross entropy"),
        ("Sigmoid_Cross_Entropy", "sigmoid cross entropy"),
        ("SIGMOID-CROSS-ENTROPY", "sigmoid cross entropy"),
        ("  sigmoid   cross entropy ", "sigmoid cross entropy"),
        ("bce", "sigmoid cross entropy"),
        ("binary_cross_entropy", "sigmoid cross entropy"),
        ("softmax cross entropy", "softmax cross entropy"),
        ("Softmax_Cross_Entropy", "softmax cross entropy"),
        ("categorical cross entropy", "softmax cross entropy"),
        ("ce", "cross entropy"),
        ("cross_entropy", "cross entropy"),
        ("dice", "dice"),
        ("Dice_Loss", "dice"),
        ("focal", "focal"),
        ("focal loss", "focal"),
        ("ce+dice", "cross entropy + dice"),
        ("CE + Dice", "cross entropy + dice"),
        ("dice+ce", "cross entropy + dice"),
        ("bce_+_dice", "cross entropy + dice"),
        ("sigmoid cross entropy + dice", "cross entropy + dice"),
        ("softmax_cross_entropy+dice", "cross entropy + dice"),
        ("cross entropy + dice", "cross entropy + dice"),
        ("focal+dice", "focal + dice"),
        ("Dice + Focal", "focal + dice"),
    ],
)
def test_canonical_loss_name_table(given: str, expected: str) -> None:
    assert canonical_loss_name(given) == expected
    assert expected in LOSS_NAMES


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_canonical_names_are_fixed_points(name: str) -> None:
    assert canonical_loss_name(name) == name


@pytest.mark.parametrize("bad", ["", "mse", "hinge", "dice + dice", "ce + focal", "ce + dice + focal", "+"])
def test_unknown_loss_name_raises_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match=r"Invalid value for argument `loss_function`: expected one of \["):
        canonical_loss_name(bad)
    with pytest.raises(ValueError, match=re.escape(f"received {bad!r}.")):
        build_loss(bad, 2)


@pytest.mark.parametrize("bad", [None, 3, ["dice"]])
def test_non_string_loss_name_raises_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="`loss_function`"):
        canonical_loss_name(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- build_loss


@pytest.mark.parametrize(
    ("name", "num_classes", "kind"),
    [
        ("sigmoid cross entropy", 2, CrossEntropySegmentationLoss),
        ("softmax cross entropy", 5, CrossEntropySegmentationLoss),
        ("dice", 2, SoftDiceLoss),
        ("focal", 3, FocalLoss),
        ("cross entropy + dice", 2, SumOfLosses),
        ("focal + dice", 4, SumOfLosses),
    ],
)
def test_build_loss_returns_expected_module(name: str, num_classes: int, kind: type) -> None:
    loss = build_loss(name, num_classes)
    assert isinstance(loss, kind)
    assert isinstance(loss, torch.nn.Module)


def test_sigmoid_name_with_three_classes_switches_to_softmax() -> None:
    logits, target = _multi_inputs()
    loss = build_loss("sigmoid cross entropy", 3)(logits, target)
    expected = F.cross_entropy(logits, target, ignore_index=IG)
    torch.testing.assert_close(loss, expected)


def test_softmax_name_with_two_classes_switches_to_sigmoid() -> None:
    logits, target = _bin_inputs()
    loss = build_loss("softmax cross entropy", 2)(logits, target)
    assert loss.item() == pytest.approx(sum(BIN_PIXEL_LOSSES) / 3, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"num_classes": 1}, ValueError, r"`num_classes`: expected an int >= 2, received 1"),
        ({"num_classes": 2.0}, TypeError, "`num_classes`"),
        ({"num_classes": True}, TypeError, "`num_classes`"),
        ({"num_classes": 3, "class_weights": [1.0, 2.0]}, ValueError, r"`class_weights`: expected 3 values"),
        ({"num_classes": 2, "class_weights": [1.0, 0.0]}, ValueError, "`class_weights`: expected positive"),
        ({"num_classes": 2, "class_weights": [1.0, -2.0]}, ValueError, "`class_weights`: expected positive"),
        ({"num_classes": 2, "class_weights": [1.0, math.nan]}, ValueError, "`class_weights`"),
        ({"num_classes": 2, "class_weights": [1.0, "a"]}, ValueError, "`class_weights`"),
        ({"num_classes": 2, "class_weights": 3.0}, TypeError, "`class_weights`"),
        ({"num_classes": 2, "ignore_index": 1}, ValueError, "`ignore_index`"),
    ],
)
def test_build_loss_rejects_bad_arguments(kwargs: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        build_loss("sigmoid cross entropy", **kwargs)


@pytest.mark.parametrize(("gamma", "error"), [(-1.0, ValueError), (math.inf, ValueError), ("2", TypeError)])
def test_focal_gamma_validated(gamma: object, error: type) -> None:
    with pytest.raises(error, match="`focal_gamma`"):
        build_loss("focal", 2, focal_gamma=gamma)  # type: ignore[arg-type]


def test_class_weights_accept_tensor_and_tuple() -> None:
    logits, target = _bin_inputs()
    a = build_loss("bce", 2, class_weights=(1.0, 3.0))(logits, target)
    b = build_loss("bce", 2, class_weights=torch.tensor([1.0, 3.0]))(logits, target)
    torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------ input checking


def test_wrong_logit_channels_raise() -> None:
    loss = build_loss("bce", 2)
    with pytest.raises(ValueError, match=r"logits of shape \(N, 1, H, W\)"):
        loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64))


def test_target_shape_mismatch_raises() -> None:
    loss = build_loss("ce", 3)
    with pytest.raises(ValueError, match=r"target of shape \(1, 2, 2\)"):
        loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.int64))


def test_target_value_out_of_range_raises() -> None:
    loss = build_loss("bce", 2)
    with pytest.raises(ValueError, match=r"outside 0\.\.1 .*\[2\]"):
        loss(torch.zeros(1, 1, 2, 2), torch.tensor([[[0, 1], [2, IG]]]))


def test_float_target_raises() -> None:
    loss = build_loss("dice", 2)
    with pytest.raises(ValueError, match="integer target"):
        loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))


# ----------------------------------------------------------------------------------- cross entropy


def test_bce_matches_hand_formula_and_torch() -> None:
    logits, target = _bin_inputs()
    value = build_loss("sigmoid cross entropy", 2)(logits, target)
    assert value.item() == pytest.approx(sum(BIN_PIXEL_LOSSES) / 3, rel=1e-12)
    valid = target != IG
    reference = F.binary_cross_entropy_with_logits(logits[:, 0][valid], target[valid].double())
    torch.testing.assert_close(value, reference)


def test_ce_single_pixel_known_answer() -> None:
    logits = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1)
    target = torch.tensor([[[2]]])
    value = build_loss("softmax cross entropy", 3)(logits, target).item()
    expected = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert value == pytest.approx(expected, rel=1e-12)


def test_ce_matches_torch_with_ignore_index() -> None:
    logits, target = _multi_inputs(seed=1, c=4)
    value = build_loss("softmax cross entropy", 4)(logits, target)
    torch.testing.assert_close(value, F.cross_entropy(logits, target, ignore_index=IG))


def test_binary_class_weights_by_hand() -> None:
    logits, target = _bin_inputs()
    value = build_loss("bce", 2, class_weights=[1.0, 3.0])(logits, target).item()
    # pixels: (y=0, w=1), (y=1, w=3), (y=1, w=3); normalised by the sum of weights, 7.
    l0, l1, l2 = BIN_PIXEL_LOSSES
    assert value == pytest.approx((1 * l0 + 3 * l1 + 3 * l2) / 7, rel=1e-12)
    assert value != pytest.approx(sum(BIN_PIXEL_LOSSES) / 3)


def test_binary_weighted_bce_equals_two_logit_softmax_ce() -> None:
    # sigmoid(z) is softmax([0, z])[1], so weighted BCE must equal weighted CE on those two logits.
    logits, target = _bin_inputs()
    two = torch.cat([torch.zeros_like(logits), logits], dim=1)
    weight = torch.tensor([0.5, 2.0], dtype=torch.float64)
    expected = F.cross_entropy(two, target, weight=weight, ignore_index=IG)
    value = build_loss("bce", 2, class_weights=[0.5, 2.0])(logits, target)
    torch.testing.assert_close(value, expected)


def test_multiclass_class_weights_match_torch() -> None:
    logits, target = _multi_inputs(seed=2)
    weights = [0.2, 1.0, 5.0]
    value = build_loss("ce", 3, class_weights=weights)(logits, target)
    expected = F.cross_entropy(
        logits, target, weight=torch.tensor(weights, dtype=torch.float64), ignore_index=IG
    )
    torch.testing.assert_close(value, expected)


def test_uniform_class_weights_change_nothing() -> None:
    logits, target = _multi_inputs(seed=3)
    plain = build_loss("ce", 3)(logits, target)
    scaled = build_loss("ce", 3, class_weights=[4.0, 4.0, 4.0])(logits, target)
    torch.testing.assert_close(plain, scaled)


# -------------------------------------------------------------------------------------------- dice


def test_binary_dice_perfect_prediction_is_near_zero() -> None:
    target = torch.tensor([[[1, 0], [0, 1]]])
    logits = (target.double() * 2 - 1).unsqueeze(1) * 30.0
    assert build_loss("dice", 2)(logits, target).item() == pytest.approx(0.0, abs=1e-9)


def test_binary_dice_disjoint_prediction_with_smoothing() -> None:
    target = torch.tensor([[[1, 0], [0, 1]]])
    logits = (1 - target.double() * 2).unsqueeze(1) * 30.0
    # intersection 0, sum(p) = 2, sum(t) = 2, smooth 1: dice = 1 / 5.
    assert build_loss("dice", 2)(logits, target).item() == pytest.approx(1 - 1 / 5, abs=1e-9)


def test_binary_dice_soft_known_answer_with_ignore() -> None:
    logits = torch.zeros(1, 1, 2, 2, dtype=torch.float64)  # p = 0.5 everywhere
    target = torch.tensor([[[1, 0], [0, IG]]])
    # 3 valid pixels: sum(p) = 1.5, sum(t) = 1, intersection 0.5 -> dice = (1 + 1) / (1.5 + 1 + 1) = 4/7.
    assert build_loss("dice", 2)(logits, target).item() == pytest.approx(3 / 7, rel=1e-12)


def test_binary_dice_empty_target_and_empty_prediction_is_near_zero() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.int64)
    logits = torch.full((1, 1, 2, 2), -30.0, dtype=torch.float64)
    assert build_loss("dice", 2)(logits, target).item() == pytest.approx(0.0, abs=1e-9)


def test_multiclass_dice_perfect_and_absent_class_excluded() -> None:
    target = torch.tensor([[[0, 1], [1, 0]]])
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).double() * 30.0
    assert build_loss("dice", 3)(logits, target).item() == pytest.approx(0.0, abs=1e-9)


def test_multiclass_dice_mean_over_present_classes_only() -> None:
    logits = torch.zeros(1, 3, 2, 2, dtype=torch.float64)  # p = 1/3 each; arg-max picks class 0
    target = torch.zeros(1, 2, 2, dtype=torch.int64)
    # Only class 0 is present: dice_0 = (2 * 4/3 + 1) / (4/3 + 4 + 1) = 11/19.
    # (Averaging in the absent classes 1 and 2, dice 3/7 each, would give something else.)
    assert build_loss("dice", 3)(logits, target).item() == pytest.approx(1 - 11 / 19, rel=1e-12)


def test_multiclass_dice_ignored_pixels_excluded_known_answer() -> None:
    logits = torch.zeros(1, 3, 1, 3, dtype=torch.float64)
    target = torch.tensor([[[0, 1, IG]]])
    # classes 0 and 1 present (class 0 also by arg-max); each: (2/3 + 1) / (2/3 + 1 + 1) = 5/8.
    assert build_loss("dice", 3)(logits, target).item() == pytest.approx(1 - 5 / 8, rel=1e-12)


# ------------------------------------------------------------------------------------------- focal


def test_focal_gamma_zero_equals_ce_binary_and_multiclass() -> None:
    logits, target = _bin_inputs()
    torch.testing.assert_close(
        build_loss("focal", 2, focal_gamma=0.0)(logits, target), build_loss("bce", 2)(logits, target)
    )
    logits, target = _multi_inputs(seed=4)
    torch.testing.assert_close(
        build_loss("focal", 3, focal_gamma=0.0, class_weights=[1.0, 2.0, 3.0])(logits, target),
        build_loss("ce", 3, class_weights=[1.0, 2.0, 3.0])(logits, target),
    )


def test_focal_known_answer_binary() -> None:
    logits, target = _bin_inputs()
    # p_t = exp(-bce); loss = mean((1 - p_t)^2 * bce)
    expected = sum((1 - math.exp(-v)) ** 2 * v for v in BIN_PIXEL_LOSSES) / 3
    value = build_loss("focal", 2, focal_gamma=2.0)(logits, target).item()
    assert value == pytest.approx(expected, rel=1e-10)
    # the single z = 0, y = 0 pixel on its own: (1 - 0.5)^2 * ln 2
    one = build_loss("focal", 2)(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, dtype=torch.int64)).item()
    assert one == pytest.approx(0.25 * math.log(2), rel=1e-6)


def test_focal_known_answer_multiclass() -> None:
    logits = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1)
    target = torch.tensor([[[0]]])
    p0 = math.exp(1) / (math.exp(1) + math.exp(2) + math.exp(3))
    value = build_loss("focal", 3, focal_gamma=1.5)(logits, target).item()
    assert value == pytest.approx(-((1 - p0) ** 1.5) * math.log(p0), rel=1e-10)


def test_focal_down_weights_easy_pixels() -> None:
    logits, target = _multi_inputs(seed=5)
    assert build_loss("focal", 3)(logits, target).item() < build_loss("ce", 3)(logits, target).item()


def test_focal_gradient_finite_on_confident_pixels_with_small_gamma() -> None:
    logits = torch.tensor([[[[60.0, -60.0]]]], requires_grad=True)
    target = torch.tensor([[[1, 0]]])
    build_loss("focal", 2, focal_gamma=0.5)(logits, target).backward()
    assert torch.isfinite(logits.grad).all()


# -------------------------------------------------------------------------------------- sums


@pytest.mark.parametrize("num_classes", [2, 3])
def test_combined_losses_are_sums(num_classes: int) -> None:
    logits, target = _bin_inputs() if num_classes == 2 else _multi_inputs(seed=6)
    ce = build_loss("ce", num_classes)(logits, target)
    dice = build_loss("dice", num_classes)(logits, target)
    focal = build_loss("focal", num_classes)(logits, target)
    torch.testing.assert_close(build_loss("ce + dice", num_classes)(logits, target), ce + dice)
    torch.testing.assert_close(build_loss("focal + dice", num_classes)(logits, target), focal + dice)


# ----------------------------------------------------------------------------- ignore and edge cases

ALL_BUILDABLE = [
    "sigmoid cross entropy",
    "softmax cross entropy",
    "dice",
    "focal",
    "ce + dice",
    "focal + dice",
]


@pytest.mark.parametrize("name", ALL_BUILDABLE)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_ignored_pixels_change_neither_loss_nor_gradient(name: str, num_classes: int) -> None:
    gen = torch.Generator().manual_seed(7)
    channels = 1 if num_classes == 2 else num_classes
    base = torch.randn(2, channels, 6, 6, generator=gen, dtype=torch.float64)
    target = torch.randint(0, num_classes, (2, 6, 6), generator=gen)
    ignored = torch.rand(2, 6, 6, generator=gen) < 0.3
    target[ignored] = IG
    loss_fn = build_loss(name, num_classes, class_weights=[1.0] + [2.0] * (num_classes - 1))

    def run(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = logits.clone().requires_grad_(True)
        value = loss_fn(logits, target)
        value.backward()
        return value.detach(), logits.grad

    v1, g1 = run(base)
    perturbed = base.clone()
    perturbed[ignored.unsqueeze(1).expand_as(perturbed)] = 50.0 * torch.randn(
        int(ignored.sum()) * channels, generator=gen, dtype=torch.float64
    )
    v2, g2 = run(perturbed)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)
    assert (g1[ignored.unsqueeze(1).expand_as(g1)] == 0).all()


@pytest.mark.parametrize("name", ALL_BUILDABLE)
@pytest.mark.parametrize("num_classes", [2, 4])
def test_all_ignore_batch_gives_zero_with_grad(name: str, num_classes: int) -> None:
    channels = 1 if num_classes == 2 else num_classes
    logits = torch.randn(2, channels, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IG, dtype=torch.int64)
    value = build_loss(name, num_classes, class_weights=[1.0] * num_classes)(logits, target)
    assert value.item() == 0.0
    assert not torch.isnan(value)
    value.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("name", ALL_BUILDABLE)
def test_losses_are_finite_scalars_on_extreme_logits(name: str) -> None:
    logits = torch.tensor([[[[1e4, -1e4], [-1e4, 1e4]]]], requires_grad=True)
    target = torch.tensor([[[0, 1], [0, 1]]])
    value = build_loss(name, 2)(logits, target)
    assert value.dim() == 0
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all()


def test_uint8_target_accepted() -> None:
    logits, target = _bin_inputs()
    a = build_loss("bce", 2)(logits, target)
    b = build_loss("bce", 2)(logits, target.to(torch.uint8))
    torch.testing.assert_close(a, b)
