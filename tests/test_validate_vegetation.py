"""python -m deepplantphenomics.validate_vegetation at tiny sizes (lab composites only)."""

from __future__ import annotations

import json

from deepplantphenomics.tools import METHODS
from deepplantphenomics.validate_vegetation import (
    LAB_SETTINGS,
    NO_PLANT_SETTING,
    TRAY_SETTING,
    format_tables,
    main,
    validate,
)


def test_validate_scores_every_lab_setting_and_the_no_plant_scenes():
    result = validate(None, lab_images=1, height=48, width=64, log=lambda message: None)
    settings = result["settings"]
    # Without real photos there are no held-out photos and no real cut-outs.
    assert [s["setting"] for s in settings] == [label for label, _, real in LAB_SETTINGS if not real] + [
        TRAY_SETTING,
        NO_PLANT_SETTING,
    ]
    trays = settings[-2]
    assert trays["images"] == 1 and trays["area_ratio_median"] > 0  # a day-0 tray: seedlings to find
    for method in ("network", "network-fast"):
        assert 0.0 <= trays["plants_found_share"][method] <= 1.0
        assert trays["plant_area_error_median"][method] >= 0.0
    assert "finds" in format_tables(result)
    for summary in settings:
        top = 100.0 if summary["no_plant"] else 1.0
        assert all(0.0 <= summary[method] <= top for method in METHODS)
        assert 0.0 <= summary["flagged_share"] <= 1.0
    assert settings[-1]["area_ratio_median"] is None  # no plant: no area to compare
    text = format_tables(result)
    assert "| setting | images | network | network-fast | ExG + Otsu | CIVE + Otsu |" in text
    assert "% background" in text


def test_validate_command_prints_tables_and_saves_json(tmp_path, capsys):
    out = tmp_path / "validation.json"
    assert (
        main(
            ["--data", str(tmp_path / "none"), "--lab-images", "1", "--size", "48", "64", "--json", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "lab: seedlings on white paper" in printed
    assert json.loads(out.read_text())["lab_size"] == [48, 64]
