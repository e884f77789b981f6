"""The vegetation tool's inference scheme (deepplantphenomics.inference_scheme): read from the model card into a
checked, frozen dataclass, and the masks the tool makes with it."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from deepplantphenomics import tools
from deepplantphenomics.inference_scheme import InferenceScheme

CARD = tools.WEIGHTS_DIR / tools.MODEL_CARD


def _card_with(tmp_path, **inference):
    """A copy of the shipped card whose inference section has ``inference`` merged in: (card, its path)."""
    card = json.loads(CARD.read_text(encoding="utf-8"))
    card["inference"].update(inference)
    path = tmp_path / tools.MODEL_CARD
    path.write_text(json.dumps(card), encoding="utf-8")
    return card, path


def test_the_cards_scheme_loads_into_the_dataclass():
    card = tools.model_card()
    scheme = tools.card_scheme(card, CARD)
    assert isinstance(scheme, InferenceScheme)
    assert (scheme.mode, scheme.scale, scheme.max_pixels, scheme.flip) == (
        "resize",
        None,
        (120_000, 350_000),
        True,
    )
    assert (scheme.multiple, scheme.threshold) == (16, card["inference"]["threshold"])
    # Written back, the section is the card's, plus the settings it leaves at their defaults.
    assert scheme.to_dict() == {**{"tile": 256}, **card["inference"]}
    assert InferenceScheme.from_dict(scheme.to_dict()) == scheme
    with pytest.raises(dataclasses.FrozenInstanceError):
        scheme.flip = False  # the tool's cached scheme cannot be changed by a caller


def test_a_card_without_some_settings_takes_the_defaults():
    # Cards from before a setting existed: half size, 0.5 on the probability, no mirror.
    assert tools.card_scheme({}) == InferenceScheme()
    assert InferenceScheme() == InferenceScheme(
        mode="resize", scale=0.5, max_pixels=None, multiple=16, threshold=0.5, flip=False, tile=256
    )
    assert tools.card_scheme({"inference": {"threshold": "otsu"}}).threshold == "otsu"


def test_an_unknown_key_names_the_key_and_the_card(tmp_path):
    card, path = _card_with(tmp_path, flipp=True)
    with pytest.raises(ValueError, match=rf"Unknown key 'flipp'.*'{re.escape(str(path))}'.*flip, tile"):
        tools.card_scheme(card, path)


@pytest.mark.parametrize(
    ("key", "value", "error", "expected"),
    [
        ("flip", "yes", TypeError, "a bool"),
        ("max_pixels", [120_000, "350000"], TypeError, "an int"),
        ("max_pixels", [], ValueError, "at least one limit"),
        ("multiple", 16.0, TypeError, "an int"),
        ("scale", True, TypeError, "a float"),
        ("threshold", 1.5, ValueError, r"a float in \(0.0, 1.0\)"),
        ("threshold", None, ValueError, "'otsu' or a float in"),
        ("mode", "tiles", ValueError, r"one of \['resize', 'tiled'\]"),
    ],
)
def test_a_wrong_value_names_the_key_the_card_and_what_was_expected(tmp_path, key, value, error, expected):
    card, path = _card_with(tmp_path, **{key: value})
    pattern = (
        rf"Invalid value for argument `{key}`: expected {expected}.*received .*"
        rf"\(the '{key}' setting in the inference section of the model card '{re.escape(str(path))}'\)"
    )
    with pytest.raises(error, match=pattern):
        tools.card_scheme(card, path)


def test_an_inference_section_that_is_not_an_object_is_refused(tmp_path):
    with pytest.raises(
        TypeError, match=r"inference section of the model card 'card.json' must be a JSON object"
    ):
        tools.card_scheme({"inference": [0.5]}, "card.json")


def test_replace_and_mappings_are_checked_too():
    scheme = InferenceScheme()
    assert scheme.replace(max_pixels=[1_000, 2_000]).max_pixels == (1_000, 2_000)
    with pytest.raises(TypeError, match="argument `flip`: expected a bool"):
        scheme.replace(flip=1)
    with pytest.raises(ValueError, match="Unknown key 'tiles'"):
        tools.working_size(64, 64, {"tiles": 128})
    with pytest.raises(ValueError, match="argument `tile`: expected a positive int"):
        InferenceScheme(tile=0)
    assert InferenceScheme(mode="Tiled ", threshold="OTSU").to_dict()["mode"] == "tiled"  # as the checks read


def test_network_fast_is_the_cards_scheme_with_the_fast_settings():
    scheme = tools.inference_scheme()
    assert scheme == tools.card_scheme(tools.model_card())
    fast = tools.inference_scheme("Network-Fast")
    assert fast == scheme.replace(**tools.FAST_INFERENCE)
    assert (fast.max_pixels, fast.flip, fast.multiple) == (200_000, False, scheme.multiple)
    with pytest.raises(ValueError, match="argument `method`"):
        tools.inference_scheme("exg")  # the colour indices have no inference scheme


# Plant pixels of the tool's masks of two CWFID photos (1296x966) with the shipped weights (measured for the
# second lab-scene fine-tune, 2026-12-05; the weights before gave 147_497 / 148_209 / 74_546 / 74_578). A changed
# scheme moves them by far more than the tolerance (without the mirror: hundreds of pixels), which only absorbs
# float rounding on other CPUs.
CWFID_PLANT_PIXELS = {
    ("002", "network"): 147_125,
    ("002", "network-fast"): 147_680,
    ("005", "network"): 74_815,
    ("005", "network-fast"): 75_773,
}


@pytest.mark.shared_data
@pytest.mark.parametrize("method", ["network", "network-fast"])
def test_tool_masks_of_cwfid_photos_are_unchanged(shared_data, method):
    paths = [shared_data / "cwfid" / "images" / f"{name}.png" for name in ("002", "005")]
    masks = tools.segment_vegetation(paths, method=method, check_quality=False)
    for path, mask in zip(paths, masks):
        assert mask.shape == (966, 1296)
        expected = CWFID_PLANT_PIXELS[(path.stem, method)]
        assert abs(int(np.count_nonzero(mask)) - expected) <= 20, path.name
