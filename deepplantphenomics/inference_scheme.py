"""The vegetation tool's inference scheme: how the shipped network is run on a photo, as its model card says.

The card's ``inference`` section, for example::

    "inference": {"mode": "resize", "scale": null, "max_pixels": [120000, 350000], "flip": true,
                  "multiple": 16, "threshold": 0.5}

is read into a frozen :class:`InferenceScheme` (after timm's ``PretrainedCfg``): ``from_dict`` checks every key
and type, naming the key and the card file in its error; ``to_dict`` gives the section back. A key missing
from an older card takes its default, so cards written before a setting existed still load.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepplantphenomics.validation import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_mask_threshold,
    check_sequence,
)

__all__ = ["MODES", "InferenceScheme"]

MODES = ("resize", "tiled")


@dataclass(frozen=True)
class InferenceScheme:
    """How the vegetation network sees a photo and how its probabilities become a mask.

    Attributes:
        mode: ``'resize'``: the network sees reduced views of the photo (``scale`` / ``max_pixels``), their
            logits resized back and averaged; ``'tiled'``: full resolution, tile by tile.
        scale: a fixed resize factor (at most 1: photos are never enlarged); None lets ``max_pixels`` decide.
        max_pixels: with ``scale`` None, photos with more pixels than this are shrunk to it (None: full size);
            a tuple of limits predicts at each of those sizes and averages them (a multi-scale ensemble).
        multiple: views are padded to a multiple of this many pixels (every pooling then halves evenly), and
            never made smaller than it.
        threshold: the cut on the probability: a number in (0, 1), or ``'otsu'`` (Otsu's threshold per photo,
            kept inside ``tools.OTSU_BAND``).
        flip: also predict each view mirrored left-right and average the two.
        tile: the tile side in pixels for ``mode='tiled'``.
    """

    mode: str = "resize"
    scale: float | None = 0.5
    max_pixels: int | tuple[int, ...] | None = None
    multiple: int = 16
    threshold: float | str = 0.5
    flip: bool = False
    tile: int = 256

    def __post_init__(self) -> None:
        for name, value in _checked(dataclasses.asdict(self), None).items():
            object.__setattr__(self, name, value)  # frozen: normalised values (a list of limits -> tuple)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | os.PathLike | None = None) -> InferenceScheme:
        """A scheme from a card's ``inference`` section; missing keys take their defaults.

        Args:
            data: the section (keys as the attributes).
            source: the card file, named in errors.

        Raises:
            TypeError: ``data`` is not a mapping, or a value has the wrong type.
            ValueError: an unknown key, or a value out of range.
        """
        if not isinstance(data, Mapping):
            raise TypeError(
                f"The inference section{_where(source)} must be a JSON object of settings, received "
                f"{type(data).__name__}."
            )
        return cls(**_checked(data, source))

    def to_dict(self) -> dict[str, Any]:
        """The scheme as a card's ``inference`` section (JSON types: a list of limits, not a tuple)."""
        out = dataclasses.asdict(self)
        if isinstance(self.max_pixels, tuple):
            out["max_pixels"] = list(self.max_pixels)
        return out

    def replace(self, **changes: Any) -> InferenceScheme:
        """A copy with ``changes`` applied (checked like ``from_dict``)."""
        return InferenceScheme.from_dict({**self.to_dict(), **changes})

    @classmethod
    def of(cls, settings: InferenceScheme | Mapping[str, Any]) -> InferenceScheme:
        """``settings`` as a scheme: a scheme as it is, a mapping through :meth:`from_dict`."""
        return settings if isinstance(settings, InferenceScheme) else cls.from_dict(settings)


FIELDS = tuple(field.name for field in dataclasses.fields(InferenceScheme))


def _where(source: str | os.PathLike | None) -> str:
    return f" of the model card '{os.fspath(source)}'" if source is not None else ""


def _checked(data: Mapping[str, Any], source: str | os.PathLike | None) -> dict[str, Any]:
    """``data``'s values checked and normalised; errors name the key and the card file."""
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        raise ValueError(
            f"Unknown key '{unknown[0]}' in the inference section{_where(source)}: expected some of "
            f"{', '.join(FIELDS)}. Remove the key or correct its spelling."
        )
    out = {}
    for key, value in data.items():
        try:
            out[key] = _CHECKS[key](key, value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{exc} (the '{key}' setting in the inference section{_where(source)})") from None
    return out


def _optional_scale(key: str, value: Any) -> float | None:
    return None if value is None else check_float(key, value, 0.0, None, low_inclusive=False)


def _max_pixels(key: str, value: Any) -> int | tuple[int, ...] | None:
    if value is None or isinstance(value, numbers.Integral):
        return None if value is None else check_int(key, value)
    limits = check_sequence(key, value, "None, an int or a list of ints")
    if not limits:
        raise ValueError(
            f"Invalid value for argument `{key}`: expected at least one limit, received {value!r}."
        )
    return tuple(check_int(key, limit) for limit in limits)


def _threshold(key: str, value: Any) -> float | str:
    if value is None:  # DPP's rule is for trained models; the tool's card names its cut
        raise ValueError(
            f"Invalid value for argument `{key}`: expected 'otsu' or a float in (0, 1), received None."
        )
    return check_mask_threshold(key, value)


_CHECKS = {
    "mode": lambda key, value: check_choice(key, value, MODES),
    "scale": _optional_scale,
    "max_pixels": _max_pixels,
    "multiple": check_int,
    "threshold": _threshold,
    "flip": check_bool,
    "tile": check_int,
}
