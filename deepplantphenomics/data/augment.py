"""Training-time augmentation that transforms images and segmentation masks together.

DPP allowed only brightness/contrast for segmentation, because its TensorFlow ops could not move a mask in
step with its image. Here every geometric operation is applied to image and mask with the same sampling grid,
so a mask drawn from an image still matches it after augmentation.

Conventions:
    * images: floating tensors (N, C, H, W), values in [0, 1], any channel count;
    * masks: integer tensors (N, H, W) of class indices, ``IGNORE_INDEX`` (255) marking "do not learn here".

Everything works on a whole batch at once with per-sample random parameters drawn from a ``torch.Generator``
(reproducible with the model's random seed) and runs on whatever device the tensors are on.

Order of operations (per sample):
    1. brightness/contrast (image only; before geometry so the filled-in corners stay 0 and the contrast
       mean is taken over real content);
    2. horizontal / vertical flips (``torch.flip``: exact, no resampling);
    3. rotation and random crop, composed into one affine matrix and resampled once (bilinear for the image,
       nearest for the mask, so class indices stay exact). Output pixels whose source lies outside the image
       (the corners a rotation uncovers) are 0 in the image and ``IGNORE_INDEX`` in the mask, so the loss
       does not learn from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepplantphenomics.settings import check_bool, check_float
from deepplantphenomics.validation import IGNORE_INDEX

# DPP called tf.image.random_brightness(max_delta=63) on 0-255 images, i.e. a delta of up to 63/255 ~ 0.247 of
# the full range; the same delta is used here on [0, 1] images.
BRIGHTNESS_MAX_DELTA = 63.0 / 255.0
# DPP's tf.image.random_contrast(lower=0.2, upper=1.8) can flatten an image to 20 % of its contrast, which
# for plant/soil segmentation often erases the very edge the mask follows; a narrower, still symmetric range
# around 1 keeps the augmentation strong without producing unlearnable images.
CONTRAST_RANGE = (0.5, 1.5)

# Tolerance (in normalised coordinates) for deciding that a sampling point lies inside the source image;
# absorbs float error of the rotation so exact borders (e.g. crop_borders=True) are never marked as outside.
_INSIDE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class AugmentationConfig:
    """Which augmentations to apply to training batches.

    Attributes:
        brightness_contrast: Image only. Adds a brightness delta uniform in
            [-``BRIGHTNESS_MAX_DELTA``, ``BRIGHTNESS_MAX_DELTA``] (63/255, DPP's value), then scales each
            channel's deviation from its mean by a contrast factor uniform in ``CONTRAST_RANGE`` (0.5-1.5);
            the result is clamped to [0, 1]. The mask is never changed.
        flip_horizontal: Mirror left-right with probability 0.5 per sample.
        flip_vertical: Mirror top-bottom with probability 0.5 per sample.
        rotation: Rotate by an angle uniform in [0, 360) degrees per sample, about the image centre.
        rotation_crop_borders: With ``rotation``, zoom into the largest centred rectangle of the image's own
            aspect ratio that contains no uncovered corner, scaled back to (H, W), so no pixel is ignored.
        crop: Take a random crop of ``crop_ratio * H`` by ``crop_ratio * W`` and resize it back to (H, W).
        crop_ratio: Side length of the crop as a fraction of the image side, a float in (0, 1].

    Raises:
        TypeError: A flag is not a bool, or ``crop_ratio`` is not a number.
        ValueError: ``crop_ratio`` is not in (0, 1].
    """

    brightness_contrast: bool = False
    flip_horizontal: bool = False
    flip_vertical: bool = False
    rotation: bool = False
    rotation_crop_borders: bool = False
    crop: bool = False
    crop_ratio: float = 0.75

    def __post_init__(self) -> None:
        for name in ("brightness_contrast", "flip_horizontal", "flip_vertical", "rotation"):
            check_bool(name, getattr(self, name))
        check_bool("rotation_crop_borders", self.rotation_crop_borders)
        check_bool("crop", self.crop)
        ratio = check_float("crop_ratio", self.crop_ratio, 0, 1, low_inclusive=False)
        # Frozen dataclass: normalise an int such as 1 to a float without bypassing immutability for users.
        object.__setattr__(self, "crop_ratio", ratio)

    @property
    def any(self) -> bool:
        """Whether at least one augmentation would change a batch."""
        return (
            self.brightness_contrast
            or self.flip_horizontal
            or self.flip_vertical
            or self.rotation
            or (self.crop and self.crop_ratio < 1.0)
        )

    @property
    def geometric(self) -> bool:
        """Whether the affine resampling step (rotation or crop) is needed."""
        return self.rotation or (self.crop and self.crop_ratio < 1.0)


def _check_inputs(
    images: torch.Tensor, masks: torch.Tensor, config: AugmentationConfig, generator: torch.Generator | None
) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise TypeError(
            "Invalid value for argument `images`: expected a floating-point tensor of shape (N, C, H, W), "
            f"received {_describe(images)}."
        )
    if (
        not isinstance(masks, torch.Tensor)
        or masks.dim() != 3
        or masks.is_floating_point()
        or masks.is_complex()
        or masks.dtype == torch.bool
    ):
        raise TypeError(
            "Invalid value for argument `masks`: expected an integer tensor of shape (N, H, W), "
            f"received {_describe(masks)}."
        )
    if masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            "Invalid value for argument `masks`: expected shape "
            f"{(images.shape[0], *images.shape[2:])} to match `images` {tuple(images.shape)}, "
            f"received {tuple(masks.shape)}."
        )
    if masks.device != images.device:
        raise ValueError(
            f"Invalid value for argument `masks`: expected a tensor on {images.device} like `images`, "
            f"received one on {masks.device}."
        )
    if not isinstance(config, AugmentationConfig):
        raise TypeError(
            f"Invalid value for argument `config`: expected an AugmentationConfig, received {config!r}."
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            "Invalid value for argument `generator`: expected a torch.Generator or None, "
            f"received {generator!r}."
        )


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return repr(value)


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``n`` float32 draws uniform in [low, high), on ``device``.

    Drawn on the generator's own device (a CPU generator cannot fill a CUDA tensor) and then moved, so one
    seeded CPU generator gives the same augmentation on every device.
    """
    draw_device = generator.device if generator is not None else device
    values = torch.rand(n, generator=generator, device=draw_device, dtype=torch.float32)
    return (low + (high - low) * values).to(device)


def _adjust_brightness_contrast(
    images: torch.Tensor, delta: torch.Tensor, factor: torch.Tensor
) -> torch.Tensor:
    """Apply per-sample brightness then contrast, as DPP's TensorFlow ops did, clamped to [0, 1].

    Args:
        images: (N, C, H, W) floating images in [0, 1].
        delta: (N,) brightness offsets added to every pixel.
        factor: (N,) contrast factors; each channel's deviation from its own spatial mean is scaled by it.

    Returns:
        (N, C, H, W) adjusted images in [0, 1], same dtype as ``images``.
    """
    delta = delta.to(images.dtype).view(-1, 1, 1, 1)
    factor = factor.to(images.dtype).view(-1, 1, 1, 1)
    # Clamp after brightness too: a saturated pixel is white, it must not come back from above 1 under
    # lowered contrast.
    out = (images + delta).clamp(0.0, 1.0)
    mean = out.mean(dim=(2, 3), keepdim=True)
    return ((out - mean) * factor + mean).clamp(0.0, 1.0)


def _crop_border_scale(angles_deg: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Largest zoom factor k so a centred k*H by k*W rectangle fits inside the rotated image.

    The rectangle's corners (+-kW/2, +-kH/2), rotated back into the source frame, must satisfy
    |x| <= W/2 and |y| <= H/2, giving k <= W / (|cos|W + |sin|H) and k <= H / (|sin|W + |cos|H).
    Keeping the image's aspect ratio means scaling the rectangle back to (H, W) does not skew the content.

    Args:
        angles_deg: (N,) rotation angles in degrees.
        height: Image height H in pixels.
        width: Image width W in pixels.

    Returns:
        (N,) float tensor of factors in (0, 1]; 1 for multiples of 180 degrees (and of 90 for square images).
    """
    radians = torch.deg2rad(angles_deg.to(torch.float64))
    cos, sin = radians.cos().abs(), radians.sin().abs()
    k_x = width / (cos * width + sin * height)
    k_y = height / (sin * width + cos * height)
    return torch.minimum(k_x, k_y).clamp(max=1.0).to(angles_deg.dtype)


def _affine_matrices(
    angles_deg: torch.Tensor,
    height: int,
    width: int,
    *,
    crop_borders: bool = False,
    crop_ratio: float = 1.0,
    crop_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampling matrices for ``F.affine_grid`` (align_corners=False) that rotate, then crop, each sample.

    Content is rotated counter-clockwise as displayed (row 0 at the top) by ``angles_deg`` about the image
    centre, so 90 degrees equals ``torch.rot90(x, 1, dims=(-2, -1))`` on a square image. Rotation is done in
    pixel units, not in the [-1, 1] normalised units affine_grid uses, so a non-square image is not skewed:
    with S = diag(W/2, H/2) mapping normalised to centred pixel coordinates, the normalised matrix is
    S^-1 R S = [[cos, -sin*H/W], [sin*W/H, cos]].

    Args:
        angles_deg: (N,) angles in degrees (zeros for no rotation).
        height: Image height H in pixels.
        width: Image width W in pixels.
        crop_borders: Zoom into the largest corner-free rectangle of the rotated image (see
            ``_crop_border_scale``).
        crop_ratio: Side of the crop window as a fraction of the (rotated, possibly zoomed) view.
        crop_positions: (N, 2) window positions (x, y), each in [0, 1]: 0 = left/top edge, 1 = right/bottom;
            None centres the window.

    Returns:
        (N, 2, 3) float32 matrices mapping output to source normalised (x, y) coordinates.
    """
    n = angles_deg.shape[0]
    device = angles_deg.device
    # float64 keeps the trigonometry exact enough that multiples of 90 degrees hit pixel centres exactly.
    radians = torch.deg2rad(angles_deg.to(torch.float64))
    cos, sin = radians.cos(), radians.sin()
    rotation = torch.stack(
        [
            torch.stack([cos, -sin * (height / width)], dim=-1),
            torch.stack([sin * (width / height), cos], dim=-1),
        ],
        dim=-2,
    )
    zoom = (
        _crop_border_scale(angles_deg.to(torch.float64), height, width)
        if crop_borders
        else torch.ones(n, dtype=torch.float64, device=device)
    )
    if crop_positions is None:
        offsets = torch.zeros(n, 2, dtype=torch.float64, device=device)
    else:
        # A window of half-size r in [-1, 1] view coordinates can be centred anywhere in [-(1-r), 1-r].
        offsets = (2.0 * crop_positions.to(device=device, dtype=torch.float64) - 1.0) * (1.0 - crop_ratio)
    # Output o -> view v = r*o + t -> zoomed view z = k*v -> source s = R z.
    linear = rotation * (zoom * crop_ratio).view(n, 1, 1)
    translation = (rotation @ (offsets * zoom.view(n, 1)).unsqueeze(-1)).squeeze(-1)
    return torch.cat([linear, translation.unsqueeze(-1)], dim=-1).to(torch.float32)


def _resample(
    images: torch.Tensor, masks: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample images (bilinear) and masks (nearest) through the same affine grid.

    Pixels whose sampling point falls outside the source become 0 in the image and ``IGNORE_INDEX`` in the
    mask.
    'border' padding is used for the sampling itself so pixels just inside the edge are not darkened by
    interpolation with the zero padding.
    """
    n, _, h, w = images.shape
    grid = F.affine_grid(theta.to(images.device), [n, 1, h, w], align_corners=False)
    inside = (grid.abs() <= 1.0 + _INSIDE_TOLERANCE).all(dim=-1)  # (N, H, W)
    out_images = F.grid_sample(
        images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )
    out_images = out_images * inside.unsqueeze(1).to(images.dtype)
    # float32 represents every class index exactly; nearest sampling copies values, rounding only undoes
    # float noise before the cast back.
    sampled = F.grid_sample(
        masks.unsqueeze(1).to(torch.float32), grid, mode="nearest", padding_mode="border", align_corners=False
    )
    sampled = sampled.squeeze(1).round().to(masks.dtype)
    out_masks = torch.where(inside, sampled, torch.full_like(sampled, IGNORE_INDEX))
    return out_images, out_masks


def augment_batch(
    images: torch.Tensor,
    masks: torch.Tensor,
    config: AugmentationConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly augment a batch, moving each mask exactly with its image.

    Random parameters are drawn in a fixed order (flips, rotation, crop, brightness/contrast), so switching
    brightness/contrast on or off does not change the geometry drawn from the same seed.

    Args:
        images: (N, C, H, W) floating images with values in [0, 1].
        masks: (N, H, W) integer class-index masks; ``IGNORE_INDEX`` marks pixels to ignore.
        config: Which augmentations to apply.
        generator: Source of randomness; None uses torch's global generator for the tensors' device.

    Returns:
        ``(images, masks)``: new tensors with the input shapes, dtypes and device. Pixels uncovered by a
        rotation or crop are 0 in the image and ``IGNORE_INDEX`` in the mask.

    Raises:
        TypeError: ``images``/``masks`` have the wrong dtype or rank, or ``config``/``generator`` the wrong
            type.
        ValueError: ``masks`` do not match ``images`` in batch size, height and width, or device.
    """
    _check_inputs(images, masks, config, generator)
    images, masks = images.clone(), masks.clone()
    n, _, h, w = images.shape
    if n == 0 or not config.any:
        return images, masks
    device = images.device

    flip_h = _uniform(n, 0.0, 1.0, generator, device) < 0.5 if config.flip_horizontal else None
    flip_v = _uniform(n, 0.0, 1.0, generator, device) < 0.5 if config.flip_vertical else None
    angles = _uniform(n, 0.0, 360.0, generator, device) if config.rotation else torch.zeros(n, device=device)
    use_crop = config.crop and config.crop_ratio < 1.0
    positions = (
        torch.stack([_uniform(n, 0.0, 1.0, generator, device) for _ in range(2)], dim=-1)
        if use_crop
        else None
    )
    if config.brightness_contrast:
        delta = _uniform(n, -BRIGHTNESS_MAX_DELTA, BRIGHTNESS_MAX_DELTA, generator, device)
        factor = _uniform(n, *CONTRAST_RANGE, generator, device)
        images = _adjust_brightness_contrast(images, delta, factor)

    if flip_h is not None:
        images = torch.where(flip_h.view(-1, 1, 1, 1), images.flip(-1), images)
        masks = torch.where(flip_h.view(-1, 1, 1), masks.flip(-1), masks)
    if flip_v is not None:
        images = torch.where(flip_v.view(-1, 1, 1, 1), images.flip(-2), images)
        masks = torch.where(flip_v.view(-1, 1, 1), masks.flip(-2), masks)

    if config.geometric:
        theta = _affine_matrices(
            angles,
            h,
            w,
            crop_borders=config.rotation and config.rotation_crop_borders,
            crop_ratio=config.crop_ratio if use_crop else 1.0,
            crop_positions=positions,
        )
        images, masks = _resample(images, masks, theta)
    return images, masks
