"""Hyperparameters as one dataclass (the checks every setter uses are in validation.py).

Each check raises the Keras-style error users see: what argument, what was expected, what was received.
Validation happens when a setting is set, so a typo fails on the line that made it, not an hour into training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# The checks live in validation.py; they are re-exported here because setters and other modules import them
# from settings.
from deepplantphenomics.validation import (  # noqa: F401
    check_bool,
    check_choice,
    check_dims,
    check_float,
    check_int,
    check_mask_threshold,
    check_sequence,
)

OPTIMIZERS = ("adam", "sgd", "sgd_momentum", "adadelta", "adagrad")
INITIALIZERS = ("xavier", "normal")
ACTIVATIONS = ("relu", "tanh", "lrelu", "selu", "linear")
PRECISIONS = ("fp32", "bf16")


def check_activation(argument: str, value: Any) -> str:
    """Activation names as DPP accepted them; None means linear."""
    if value is None:
        return "linear"
    return check_choice(argument, value, ACTIVATIONS)


@dataclass
class Settings:
    """Every hyperparameter of a model; serialised to ``settings.json`` beside the weights."""

    batch_size: int = 1
    image_height: int | None = None
    image_width: int | None = None
    image_depth: int | None = None
    resize_images: bool = False
    crop_or_pad_images: bool = False
    test_split: float = 0.10
    validation_split: float = 0.10
    force_split_shuffle: bool = False
    random_seed: int | None = None
    learning_rate: float = 0.001
    optimizer: str = "adam"
    lr_decay_factor: float | None = None
    epochs_per_decay: int | None = None
    regularization_coefficient: float = 0.0
    weight_initializer: str = "xavier"
    maximum_training_epochs: int = 100
    loss_function: str = "sigmoid cross entropy"
    num_classes: int = 2
    class_weights: list[float] | None = None
    num_threads: int | None = None
    num_gpus: int | None = None
    patch_height: int | None = None
    patch_width: int | None = None
    gen_data_overwrite: bool = False
    augmentation_brightness_contrast: bool = False
    augmentation_flip_horizontal: bool = False
    augmentation_flip_vertical: bool = False
    augmentation_rotation: bool = False
    augmentation_rotation_crop_borders: bool = False
    augmentation_crop: bool = False
    augmentation_crop_ratio: float = 0.75
    precision: str = "fp32"
    # DPP standardised every image (tf.image.per_image_standardization); states saved before this setting
    # existed used 'none' (see SemanticSegmentationModel.from_saved_state).
    input_normalization: str = "per_image_standardization"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Rebuild from ``to_dict`` output; unknown keys (from a newer version) are kept in ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        settings = cls(**known)
        settings.extra.update(unknown)
        return settings

    @property
    def patching(self) -> bool:
        return self.patch_height is not None

    @property
    def binary(self) -> bool:
        return self.num_classes == 2
