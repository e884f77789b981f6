"""Tests for deepplantphenomics.data.augment: image and mask must stay aligned under every augmentation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepplantphenomics.data.augment import (
    BRIGHTNESS_MAX_DELTA,
    CONTRAST_RANGE,
    IGNORE_INDEX,
    AugmentationConfig,
    _adjust_brightness_contrast,
    _affine_matrices,
    _crop_border_scale,
    _resample,
    augment_batch,
)

SIZES = [(64, 64), (48, 64), (64, 40)]
SEEDS = [0, 1, 2, 3]

GEOMETRIC_CONFIGS = {
    "rotation": AugmentationConfig(rotation=True),
    "rotation_crop_borders": AugmentationConfig(rotation=True, rotation_crop_borders=True),
    "crop": AugmentationConfig(crop=True),
    "crop_small": AugmentationConfig(crop=True, crop_ratio=0.4),
    "rotation_crop": AugmentationConfig(rotation=True, crop=True),
    "everything_geometric": AugmentationConfig(
        flip_horizontal=True, flip_vertical=True, rotation=True, rotation_crop_borders=True, crop=True
    ),
    "flips_rotation": AugmentationConfig(flip_horizontal=True, flip_vertical=True, rotation=True),
}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blob_masks(n: int, height: int, width: int, seed: int, classes: int = 2) -> torch.Tensor:
    """Smooth random blobs (N, H, W) int64 with values in range(classes)."""
    coarse = torch.rand(n, 1, height // 8, width // 8, generator=_generator(seed))
    field = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    thresholds = torch.linspace(0, 1, classes + 1)[1:-1]
    return torch.bucketize(field, thresholds).to(torch.int64)


def _image_from_mask(mask: torch.Tensor, seed: int) -> torch.Tensor:
    """Three-channel image whose channel 1 IS the (binary) mask; the other channels are noise."""
    noise = torch.rand(mask.shape[0], 2, *mask.shape[1:], generator=_generator(seed + 100))
    return torch.stack([noise[:, 0], mask.float(), noise[:, 1]], dim=1)


def _boundary(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: the pixel's 3x3 neighbourhood holds more than one value (class edge or ignore edge)."""
    padded = F.pad(mask.unsqueeze(1).float(), (1, 1, 1, 1), mode="replicate")
    high = F.max_pool2d(padded, 3, stride=1)[:, 0]
    low = -F.max_pool2d(-padded, 3, stride=1)[:, 0]
    return high != low


# --------------------------------------------------------------------------------------------- config


def test_default_config_is_off() -> None:
    config = AugmentationConfig()
    assert not config.any
    assert config.crop_ratio == 0.75


@pytest.mark.parametrize(
    "field", ["brightness_contrast", "flip_horizontal", "flip_vertical", "rotation", "crop"]
)
def test_any_is_true_for_each_option(field: str) -> None:
    assert AugmentationConfig(**{field: True}).any


def test_crop_borders_alone_and_full_crop_are_not_augmentation() -> None:
    assert not AugmentationConfig(rotation_crop_borders=True).any
    assert not AugmentationConfig(crop=True, crop_ratio=1.0).any


def test_int_crop_ratio_becomes_float() -> None:
    config = AugmentationConfig(crop=True, crop_ratio=1)
    assert isinstance(config.crop_ratio, float)
    assert config.crop_ratio == 1.0


@pytest.mark.parametrize("ratio", [1.5, 0.0, -0.25, 1.0001, float("nan"), float("inf")])
def test_crop_ratio_out_of_range_raises(ratio: float) -> None:
    with pytest.raises(
        ValueError, match=r"Invalid value for argument `crop_ratio`: expected a float in \(0, 1\]"
    ):
        AugmentationConfig(crop=True, crop_ratio=ratio)


def test_crop_ratio_message_is_keras_style() -> None:
    expected = "Invalid value for argument `crop_ratio`: expected a float in (0, 1], received 1.5."
    with pytest.raises(ValueError) as info:
        AugmentationConfig(crop_ratio=1.5)
    assert str(info.value) == expected


@pytest.mark.parametrize("ratio", ["0.5", None, True, [0.5]])
def test_crop_ratio_wrong_type_raises(ratio: object) -> None:
    with pytest.raises(TypeError, match="`crop_ratio`"):
        AugmentationConfig(crop=True, crop_ratio=ratio)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field",
    ["brightness_contrast", "flip_horizontal", "flip_vertical", "rotation", "rotation_crop_borders", "crop"],
)
@pytest.mark.parametrize("value", [1, "yes", None])
def test_flags_must_be_bool(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"Invalid value for argument `{field}`: expected a bool"):
        AugmentationConfig(**{field: value})


def test_config_is_frozen() -> None:
    config = AugmentationConfig()
    with pytest.raises(AttributeError):
        config.rotation = True  # type: ignore[misc]


# ---------------------------------------------------------------------------------------- input checks


def test_rejects_float_masks() -> None:
    with pytest.raises(TypeError, match="`masks`: expected an integer tensor"):
        augment_batch(torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8), AugmentationConfig())


def test_rejects_integer_images() -> None:
    with pytest.raises(TypeError, match="`images`: expected a floating-point tensor of shape"):
        augment_batch(
            torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
            torch.zeros(2, 8, 8, dtype=torch.int64),
            AugmentationConfig(),
        )


def test_rejects_three_dimensional_images() -> None:
    with pytest.raises(TypeError, match=r"received a torch.float32 tensor of shape \(3, 8, 8\)"):
        augment_batch(torch.zeros(3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.int64), AugmentationConfig())


def test_rejects_mismatched_mask_shape() -> None:
    with pytest.raises(ValueError, match=r"`masks`: expected shape \(2, 8, 8\) to match"):
        augment_batch(torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 9, dtype=torch.int64), AugmentationConfig())


def test_rejects_wrong_config_and_generator() -> None:
    images, masks = torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.int64)
    with pytest.raises(TypeError, match="`config`: expected an AugmentationConfig"):
        augment_batch(images, masks, {"rotation": True})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`generator`: expected a torch.Generator or None"):
        augment_batch(images, masks, AugmentationConfig(), generator=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- basic behaviour


def test_no_option_is_identity_and_returns_copies() -> None:
    masks = _blob_masks(3, 64, 64, seed=0)
    images = _image_from_mask(masks, seed=0)
    out_images, out_masks = augment_batch(images, masks, AugmentationConfig(), _generator(0))
    assert torch.equal(out_images, images)
    assert torch.equal(out_masks, masks)
    out_images[0, 0, 0, 0] = 5.0
    out_masks[0, 0, 0] = 7
    assert images[0, 0, 0, 0] != 5.0
    assert masks[0, 0, 0] != 7


@pytest.mark.parametrize("name", [*GEOMETRIC_CONFIGS, "brightness"])
@pytest.mark.parametrize(
    ("image_dtype", "mask_dtype", "channels"),
    [(torch.float32, torch.int64, 3), (torch.float32, torch.int64, 1), (torch.float64, torch.uint8, 5)],
)
def test_shapes_dtypes_device_preserved(
    name: str, image_dtype: torch.dtype, mask_dtype: torch.dtype, channels: int
) -> None:
    config = AugmentationConfig(brightness_contrast=True) if name == "brightness" else GEOMETRIC_CONFIGS[name]
    masks = _blob_masks(2, 48, 64, seed=1).to(mask_dtype)
    images = torch.rand(2, channels, 48, 64, generator=_generator(1), dtype=image_dtype)
    out_images, out_masks = augment_batch(images, masks, config, _generator(5))
    assert out_images.shape == images.shape and out_images.dtype == image_dtype
    assert out_masks.shape == masks.shape and out_masks.dtype == mask_dtype
    assert out_images.device == images.device and out_masks.device == masks.device
    assert float(out_images.min()) >= 0.0 and float(out_images.max()) <= 1.0


def test_empty_batch() -> None:
    images, masks = torch.zeros(0, 3, 16, 16), torch.zeros(0, 16, 16, dtype=torch.int64)
    out_images, out_masks = augment_batch(images, masks, AugmentationConfig(rotation=True), _generator(0))
    assert out_images.shape == (0, 3, 16, 16) and out_masks.shape == (0, 16, 16)


def test_global_generator_is_used_when_none_given() -> None:
    masks = _blob_masks(2, 32, 32, seed=2)
    images = _image_from_mask(masks, seed=2)
    torch.manual_seed(11)
    first = augment_batch(images, masks, AugmentationConfig(rotation=True))
    torch.manual_seed(11)
    second = augment_batch(images, masks, AugmentationConfig(rotation=True))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize("name", list(GEOMETRIC_CONFIGS))
def test_same_seed_same_output_different_seed_different_output(name: str) -> None:
    config = GEOMETRIC_CONFIGS[name]
    masks = _blob_masks(4, 64, 64, seed=3)
    images = _image_from_mask(masks, seed=3)
    first = augment_batch(images, masks, config, _generator(42))
    again = augment_batch(images, masks, config, _generator(42))
    other = augment_batch(images, masks, config, _generator(43))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def test_inputs_are_not_modified() -> None:
    masks = _blob_masks(2, 32, 32, seed=4)
    images = _image_from_mask(masks, seed=4)
    images_before, masks_before = images.clone(), masks.clone()
    config = AugmentationConfig(brightness_contrast=True, flip_horizontal=True, rotation=True, crop=True)
    augment_batch(images, masks, config, _generator(0))
    assert torch.equal(images, images_before) and torch.equal(masks, masks_before)


# ------------------------------------------------------------------------ the acceptance: alignment


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(GEOMETRIC_CONFIGS))
@pytest.mark.parametrize("seed", SEEDS)
def test_mask_drawn_from_image_still_matches(size: tuple[int, int], name: str, seed: int) -> None:
    height, width = size
    masks = _blob_masks(4, height, width, seed=seed)
    images = _image_from_mask(masks, seed=seed)
    out_images, out_masks = augment_batch(images, masks, GEOMETRIC_CONFIGS[name], _generator(seed))

    assert set(out_masks.unique().tolist()) <= {0, 1, IGNORE_INDEX}
    kept = out_masks != IGNORE_INDEX
    mismatch = ((out_images[:, 1] > 0.5).long() != out_masks) & kept
    # Bilinear (image) and nearest (mask) sampling may disagree only on the class edge; a one-pixel
    # misalignment of these blobs would mismatch about 6 % of the pixels.
    assert mismatch.sum() <= 0.015 * kept.sum()
    assert not (mismatch & ~_boundary(out_masks)).any()
    # Pixels that came from outside the image are black in every channel.
    assert float(out_images.permute(1, 0, 2, 3)[:, ~kept].abs().sum()) == 0.0


@pytest.mark.parametrize(
    "config",
    [
        AugmentationConfig(flip_horizontal=True),
        AugmentationConfig(flip_vertical=True),
        AugmentationConfig(flip_horizontal=True, flip_vertical=True),
    ],
    ids=["horizontal", "vertical", "both"],
)
@pytest.mark.parametrize("seed", SEEDS)
def test_flips_are_exact_and_move_image_and_mask_together(config: AugmentationConfig, seed: int) -> None:
    masks = _blob_masks(8, 48, 64, seed=seed)
    masks[:, :4, :4] = IGNORE_INDEX  # an ignore region must travel with the flip too
    images = _image_from_mask(masks.clamp(max=1), seed=seed)
    out_images, out_masks = augment_batch(images, masks, config, _generator(seed))
    assert torch.equal((out_images[:, 1] > 0.5).long(), out_masks.clamp(max=1))
    variants = []
    for i in range(masks.shape[0]):
        candidates = {
            "none": (images[i], masks[i]),
            "h": (images[i].flip(-1), masks[i].flip(-1)),
            "v": (images[i].flip(-2), masks[i].flip(-2)),
            "hv": (images[i].flip(-1).flip(-2), masks[i].flip(-1).flip(-2)),
        }
        matches = [
            key
            for key, (image, mask) in candidates.items()
            if torch.equal(out_images[i], image) and torch.equal(out_masks[i], mask)
        ]
        assert len(matches) == 1
        variants.append(matches[0])
    allowed = (
        {"none", "h"} if not config.flip_vertical else {"none", "v"} if not config.flip_horizontal else None
    )
    if allowed is not None:
        assert set(variants) <= allowed
    assert len(set(variants)) >= 2  # p = 0.5 per sample: 8 samples never all agree for these seeds


@pytest.mark.parametrize("seed", SEEDS)
def test_class_indices_stay_within_original_set(seed: int) -> None:
    masks = _blob_masks(4, 64, 48, seed=seed, classes=4) * 3 + 2  # classes {2, 5, 8, 11}
    masks[:, 10:14, 20:30] = IGNORE_INDEX
    images = torch.rand(4, 3, 64, 48, generator=_generator(seed))
    original = set(masks.unique().tolist())
    for config in GEOMETRIC_CONFIGS.values():
        _, out_masks = augment_batch(images, masks, config, _generator(seed))
        assert set(out_masks.unique().tolist()) <= original | {IGNORE_INDEX}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("with_crop", [False, True])
def test_rotation_crop_borders_leaves_no_ignore_pixels(size: tuple[int, int], with_crop: bool) -> None:
    height, width = size
    masks = _blob_masks(8, height, width, seed=5)
    images = _image_from_mask(masks, seed=5)
    config = AugmentationConfig(rotation=True, rotation_crop_borders=True, crop=with_crop)
    for seed in SEEDS:
        _, out_masks = augment_batch(images, masks, config, _generator(seed))
        assert not (out_masks == IGNORE_INDEX).any()


def test_rotation_without_crop_borders_ignores_uncovered_corners() -> None:
    masks = torch.ones(8, 64, 64, dtype=torch.int64)
    images = torch.ones(8, 3, 64, 64)
    out_images, out_masks = augment_batch(images, masks, AugmentationConfig(rotation=True), _generator(0))
    ignored = out_masks == IGNORE_INDEX
    assert ignored.any()
    assert torch.equal(out_images[:, 0] == 0, ignored)
    assert torch.equal(out_images[:, 2] == 0, ignored)
    assert torch.all(out_masks[~ignored] == 1)


# ------------------------------------------------------------------------------- brightness/contrast


@pytest.mark.parametrize("seed", SEEDS)
def test_brightness_contrast_changes_image_only(seed: int) -> None:
    masks = _blob_masks(4, 64, 64, seed=seed)
    masks[:, 0, :] = IGNORE_INDEX
    images = torch.rand(4, 3, 64, 64, generator=_generator(seed))
    out_images, out_masks = augment_batch(
        images, masks, AugmentationConfig(brightness_contrast=True), _generator(seed)
    )
    assert torch.equal(out_masks, masks)
    assert float(out_images.min()) >= 0.0 and float(out_images.max()) <= 1.0
    assert not torch.allclose(out_images, images)


@pytest.mark.parametrize("seed", SEEDS)
def test_brightness_contrast_does_not_change_the_geometry_drawn(seed: int) -> None:
    masks = _blob_masks(4, 64, 64, seed=seed)
    images = _image_from_mask(masks, seed=seed)
    geometry = AugmentationConfig(flip_horizontal=True, rotation=True, crop=True)
    both = AugmentationConfig(brightness_contrast=True, flip_horizontal=True, rotation=True, crop=True)
    _, masks_geometry = augment_batch(images, masks, geometry, _generator(seed))
    out_images, masks_both = augment_batch(images, masks, both, _generator(seed))
    assert torch.equal(masks_geometry, masks_both)
    assert float(out_images.min()) >= 0.0 and float(out_images.max()) <= 1.0


def test_brightness_contrast_constants_are_documented_values() -> None:
    assert BRIGHTNESS_MAX_DELTA == pytest.approx(63 / 255)
    assert CONTRAST_RANGE == (0.5, 1.5)


@pytest.mark.parametrize(
    ("pixels", "delta", "factor", "expected"),
    [
        ([0.5, 0.5], 0.1, 1.0, [0.6, 0.6]),  # brightness only
        ([0.5, 0.5], 0.1, 1.4, [0.6, 0.6]),  # a flat image has no contrast to change
        ([0.25, 0.75], 0.0, 2.0, [0.0, 1.0]),  # deviation from the mean (0.5) doubled
        ([0.25, 0.75], 0.0, 0.5, [0.375, 0.625]),  # halved
        ([0.9, 0.7], 0.2, 1.0, [1.0, 0.9]),  # brightness clamps at 1
        ([0.1, 0.3], -0.2, 1.0, [0.0, 0.1]),  # and at 0
        ([0.0, 1.0], 0.0, 3.0, [0.0, 1.0]),  # contrast clamps too
    ],
)
def test_adjust_brightness_contrast_known_answers(
    pixels: list[float], delta: float, factor: float, expected: list[float]
) -> None:
    image = torch.tensor(pixels).view(1, 1, 1, 2)
    out = _adjust_brightness_contrast(image, torch.tensor([delta]), torch.tensor([factor]))
    assert torch.allclose(out.view(-1), torch.tensor(expected), atol=1e-6)


def test_contrast_uses_each_channels_own_mean() -> None:
    image = torch.tensor([[0.0, 0.2], [0.6, 1.0]]).view(1, 2, 1, 2)  # channel means 0.1 and 0.8
    out = _adjust_brightness_contrast(image, torch.tensor([0.0]), torch.tensor([0.5]))
    assert torch.allclose(out.view(2, 2), torch.tensor([[0.05, 0.15], [0.7, 0.9]]), atol=1e-6)


# ------------------------------------------------------------------ known-answer geometry (internal)


def _pattern(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 1, H, W) image and a (1, H, W) mask in which every pixel is distinct / a distinct-ish class."""
    index = torch.arange(height * width).view(1, height, width)
    return (index.float() / (height * width)).unsqueeze(1), index % 251


@pytest.mark.parametrize("size", [(32, 32), (24, 40)], ids=["square", "wide"])
def test_zero_angle_is_identity(size: tuple[int, int]) -> None:
    image, mask = _pattern(*size)
    out_image, out_mask = _resample(image, mask, _affine_matrices(torch.tensor([0.0]), *size))
    assert torch.equal(out_mask, mask)
    assert torch.allclose(out_image, image, atol=1e-6)


@pytest.mark.parametrize(("angle", "turns"), [(90.0, 1), (180.0, 2), (270.0, 3), (-90.0, 3), (450.0, 1)])
def test_square_rotation_matches_rot90(angle: float, turns: int) -> None:
    image, mask = _pattern(32, 32)
    out_image, out_mask = _resample(image, mask, _affine_matrices(torch.tensor([angle]), 32, 32))
    assert torch.equal(out_mask, torch.rot90(mask, turns, dims=(-2, -1)))
    assert torch.allclose(out_image, torch.rot90(image, turns, dims=(-2, -1)), atol=1e-5)


def test_positive_angle_turns_content_counter_clockwise() -> None:
    mask = torch.zeros(1, 16, 16, dtype=torch.int64)
    mask[0, 7:9, 12:16] = 1  # a bar touching the right edge
    _, out_mask = _resample(mask.float().unsqueeze(1), mask, _affine_matrices(torch.tensor([90.0]), 16, 16))
    expected = torch.zeros_like(mask)
    expected[0, 0:4, 7:9] = 1  # now touching the top edge
    assert torch.equal(out_mask, expected)


def test_non_square_180_degrees_is_a_double_flip() -> None:
    image, mask = _pattern(24, 40)
    out_image, out_mask = _resample(image, mask, _affine_matrices(torch.tensor([180.0]), 24, 40))
    assert torch.equal(out_mask, mask.flip(-1).flip(-2))
    assert torch.allclose(out_image, image.flip(-1).flip(-2), atol=1e-5)


def test_non_square_90_degrees_is_not_skewed() -> None:
    # A 32 x 64 image turned by 90 degrees is 64 tall and 32 wide; the output window (32 x 64, same centre)
    # shows its middle 32 rows in columns 16..47 and nothing on either side.
    image, mask = _pattern(32, 64)
    out_image, out_mask = _resample(image, mask, _affine_matrices(torch.tensor([90.0]), 32, 64))
    turned_mask = torch.rot90(mask, 1, dims=(-2, -1))  # (1, 64, 32)
    turned_image = torch.rot90(image, 1, dims=(-2, -1))
    assert torch.equal(out_mask[:, :, 16:48], turned_mask[:, 16:48, :])
    assert torch.allclose(out_image[:, :, :, 16:48], turned_image[:, :, 16:48, :], atol=1e-5)
    assert torch.all(out_mask[:, :, :16] == IGNORE_INDEX) and torch.all(out_mask[:, :, 48:] == IGNORE_INDEX)
    assert torch.all(out_image[:, :, :, :16] == 0) and torch.all(out_image[:, :, :, 48:] == 0)


def test_circle_stays_round_on_non_square_image() -> None:
    # A disc rotated by any angle about the centre is the same disc. Rotating in normalised [-1, 1] units
    # without the H/W correction turns it into an ellipse (130-240 of its 716 pixels change); rounding of
    # nearest sampling changes 12-24 rim pixels.
    height, width = 48, 64
    rows = torch.arange(height).view(-1, 1) + 0.5 - height / 2
    cols = torch.arange(width).view(1, -1) + 0.5 - width / 2
    disc = ((rows**2 + cols**2) < 15**2).long().unsqueeze(0).repeat(3, 1, 1)
    angles = torch.tensor([30.0, 73.0, 135.0])
    _, out_mask = _resample(disc.float().unsqueeze(1), disc, _affine_matrices(angles, height, width))
    differ = (out_mask != disc) & (out_mask != IGNORE_INDEX)
    assert differ.sum(dim=(1, 2)).max() <= 30
    assert not (differ & ~_boundary(disc)).any()


@pytest.mark.parametrize(
    ("angle", "height", "width", "expected"),
    [
        (0.0, 64, 64, 1.0),
        (90.0, 64, 64, 1.0),
        (180.0, 32, 64, 1.0),
        (45.0, 64, 64, 1 / math.sqrt(2)),
        (90.0, 32, 64, 0.5),  # the rotated image is 32 wide: a 16 x 32 window fits
        (90.0, 64, 32, 0.5),
        (30.0, 64, 64, 1 / (math.cos(math.radians(30)) + math.sin(math.radians(30)))),
    ],
)
def test_crop_border_scale_known_answers(angle: float, height: int, width: int, expected: float) -> None:
    scale = _crop_border_scale(torch.tensor([angle], dtype=torch.float64), height, width)
    assert float(scale) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("position", "rows", "cols"),
    [
        ((0.0, 0.0), slice(0, 16), slice(0, 16)),
        ((1.0, 1.0), slice(16, 32), slice(16, 32)),
        ((1.0, 0.0), slice(0, 16), slice(16, 32)),
    ],
)
def test_crop_known_answer(position: tuple[float, float], rows: slice, cols: slice) -> None:
    # crop_ratio 0.5 at a corner is that quarter of the image enlarged twice: nearest doubles every pixel.
    image, mask = _pattern(32, 32)
    theta = _affine_matrices(
        torch.tensor([0.0]), 32, 32, crop_ratio=0.5, crop_positions=torch.tensor([position])
    )
    out_image, out_mask = _resample(image, mask, theta)
    quarter = mask[:, rows, cols]
    assert torch.equal(out_mask, quarter.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2))
    enlarged = F.interpolate(image[:, :, rows, cols], scale_factor=2, mode="bilinear", align_corners=False)
    # Away from the crop's edges (where the crop samples its neighbours, not a clamped copy) bilinear agrees.
    assert torch.allclose(out_image[:, :, 1:-1, 1:-1], enlarged[:, :, 1:-1, 1:-1], atol=1e-5)


def test_crop_borders_at_45_degrees_keeps_the_centre() -> None:
    # With crop_borders the image is zoomed by 1/k about its centre: the centre pixel value is unchanged.
    image = torch.zeros(1, 1, 64, 64)
    image[:, :, 30:34, 30:34] = 1.0
    mask = (image[:, 0] > 0.5).long()
    theta = _affine_matrices(torch.tensor([45.0]), 64, 64, crop_borders=True)
    out_image, out_mask = _resample(image, mask, theta)
    assert not (out_mask == IGNORE_INDEX).any()
    assert out_mask[0, 31:33, 31:33].eq(1).all()
    assert out_mask[0, :24].eq(0).all() and out_mask[0, 40:].eq(0).all()
    assert float(out_image[0, 0, 32, 32]) == pytest.approx(1.0, abs=1e-5)
