"""Argument checks shared by the whole package, and the package-wide mask constant.

Every check raises the Keras-style error users see: which argument, what was expected, what was received
(``TypeError`` for a wrong type, ``ValueError`` for a wrong value). This module imports nothing from the
package, so any module (settings, losses, metrics, data, tools) can use it without an import cycle.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "IGNORE_INDEX",
    "check_bool",
    "check_choice",
    "check_dims",
    "check_float",
    "check_int",
    "check_mask_threshold",
    "check_num_classes",
    "check_sequence",
]

#: Mask value of a pixel that takes no part in the loss or the metrics (API.md, section 5); also the padding
#: value of masks that patching or augmentation extends beyond the image.
IGNORE_INDEX = 255


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


def check_num_classes(argument: str, value: Any) -> int:
    """The number of segmentation classes: an int >= 2 (2 = binary, one logit channel).

    Raises:
        TypeError: ``value`` is not an int (bools are refused).
        ValueError: ``value`` < 2.
    """
    return check_int(argument, value, minimum=2)
