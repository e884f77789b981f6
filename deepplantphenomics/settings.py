"""Hyperparameters as one dataclass, and the validators every setter uses.

Each validator raises the Keras-style error users see: what argument, what was expected, what was received.
Validation happens when a setting is set, so a typo fails on the line that made it, not an hour into training.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OPTIMIZERS = ("adam", "sgd", "sgd_momentum", "adadelta", "adagrad")
INITIALIZERS = ("xavier", "normal")
ACTIVATIONS = ("relu", "tanh", "lrelu", "selu", "linear")
PRECISIONS = ("fp32", "bf16")


def _fail(argument: str, expected: str, received: Any, hint: str = "") -> str:
    message = f"Invalid value for argument `{argument}`: expected {expected}, received {received!r}."
    return f"{message} {hint}".rstrip()


def check_bool(argument: str, value: Any) -> bool:
    """Return ``value`` if it is a bool.

    Raises:
        TypeError: ``value`` is not a bool (1/0 and strings are refused, so typos do not pass silently).
    """
    if not isinstance(value, bool):
        raise TypeError(_fail(argument, "a bool (True or False)", value))
    return value


def check_int(argument: str, value: Any, minimum: int | None = 1) -> int:
    """Return ``value`` as an int, checking its type and lower bound.

    Raises:
        TypeError: ``value`` is not an integer (bools are refused).
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(_fail(argument, "an int", value))
    if minimum is not None and value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(_fail(argument, kind, value))
    return int(value)


def check_float(
    argument: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float inside the given interval.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is not finite or outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(_fail(argument, "a float", value))
    value = float(value)
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value < low if low_inclusive else value <= low
    if high is not None:
        bad |= value > high if high_inclusive else value >= high
    if bad:
        raise ValueError(_fail(argument, f"a float in {interval}", value))
    return value


def check_choice(argument: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return the canonical lower-case form of a case-insensitive name.

    Raises:
        TypeError: ``value`` is not a str.
        ValueError: ``value`` is not one of ``choices``.
    """
    if not isinstance(value, str):
        raise TypeError(_fail(argument, f"a str, one of {list(choices)}", value))
    canonical = value.strip().lower()
    if canonical not in choices:
        raise ValueError(_fail(argument, f"one of {list(choices)}", value))
    return canonical


def check_mask_threshold(argument: str, value: Any) -> float | str | None:
    """How binary probabilities become a mask: None (DPP's rule), 'otsu', or a fixed cut in (0, 1).

    Raises:
        TypeError: ``value`` is neither None, a str nor a real number.
        ValueError: an unknown name, or a number outside (0, 1).
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "otsu":
            return "otsu"
        raise ValueError(_fail(argument, "None (DPP's rule), 'otsu' or a float in (0, 1)", value))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(_fail(argument, "None (DPP's rule), 'otsu' or a float in (0, 1)", value))
    return check_float(argument, value, 0.0, 1.0, low_inclusive=False, high_inclusive=False)


def check_activation(argument: str, value: Any) -> str:
    """Activation names as DPP accepted them; None means linear."""
    if value is None:
        return "linear"
    return check_choice(argument, value, ACTIVATIONS)


def check_sequence(argument: str, value: Any, expected: str) -> list[Any]:
    """The items of a list, tuple or 1-D numpy array (DPP took numpy arrays wherever it took lists).

    Raises:
        TypeError: ``value`` is none of those.
    """
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.tolist()  # numpy scalars become Python ints/floats/bools, checked as such
    if not isinstance(value, (list, tuple)):
        raise TypeError(_fail(argument, expected, value))
    return list(value)


def check_dims(argument: str, value: Any, length: int) -> list[int]:
    """A list, tuple or 1-D integer numpy array of ``length`` positive ints (e.g. a filter dimension).

    Raises:
        TypeError: not a sequence of ``length`` items, or an item that is not an int (a float such as 2.0, a
            bool), as in DPP.
        ValueError: an item < 1.
    """
    expected = f"a list of {length} positive ints"
    items = check_sequence(argument, value, expected)
    if len(items) != length:
        raise TypeError(_fail(argument, expected, value))
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise TypeError(_fail(argument, expected, value, f"{item!r} is not an int."))
    for item in items:
        if item < 1:
            raise ValueError(_fail(argument, expected, value))
    return [int(v) for v in items]


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
