"""Tests for deepplantphenomics.growth: times from names, growth table known answers, errors."""

from __future__ import annotations

import datetime
import math

import pytest

from deepplantphenomics import growth


def rows(*entries):
    return [
        {"file": f, "plant": p, "area_px": str(a), "area_mm2": "", "row": "", "col": ""}
        for f, p, a in entries
    ]


def test_time_from_name_numbers_dates_and_named_group():
    assert growth.time_from_name("trays/tray_day03.png", r"day(\d+)") == 3.0
    assert growth.time_from_name("t_2024-05-01.jpg", r"(\d{4}-\d{2}-\d{2})") == datetime.datetime(2024, 5, 1)
    assert growth.time_from_name("cam_20240501_093000.jpg", r"(\d{8}_\d{6})") == datetime.datetime(
        2024, 5, 1, 9, 30
    )
    assert growth.time_from_name("x_h12.5_y.png", r"y|h(?P<time>[\d.]+)") == 12.5
    assert growth.time_from_name("p_20240501.png", r"(\d+)") == datetime.datetime(
        2024, 5, 1
    )  # 8 digits: a date
    assert growth.time_from_name("p_12345678.png", r"(\d+)") == 12345678.0  # not a date: a number


def test_photo_times_dates_become_days_since_the_first():
    times = growth.photo_times(["a_2024-05-03T12:00.png", "b_2024-05-01T00:00.png"], pattern=r"_(.*)\.png")
    assert times["b_2024-05-01T00:00.png"] == (0.0, "2024-05-01T00:00:00")
    assert times["a_2024-05-03T12:00.png"] == (2.5, "2024-05-03T12:00:00")


def test_growth_table_relative_growth_rate_known_answers():
    times = {"d0.png": (0.0, ""), "d1.png": (1.0, ""), "d3.png": (3.0, "")}
    table = growth.growth_table(
        rows(("d3.png", "A1", 400), ("d0.png", "A1", 100), ("d1.png", "A1", 200), ("d0.png", "A2", 0)), times
    )
    a1 = [e for e in table if e["plant"] == "A1"]
    assert [e["time"] for e in a1] == [0.0, 1.0, 3.0]
    assert a1[0]["rgr"] is None
    assert a1[1]["rgr"] == pytest.approx(math.log(2.0))
    assert a1[2]["rgr"] == pytest.approx(math.log(2.0) / 2.0)
    assert [e["plant"] for e in table] == ["A1", "A1", "A1", "A2"]


def test_plants_sort_naturally():
    times = {"a.png": (0.0, "")}
    table = growth.growth_table(rows(("a.png", "A10", 1), ("a.png", "B1", 1), ("a.png", "A2", 1)), times)
    assert [e["plant"] for e in table] == ["A2", "A10", "B1"]


@pytest.mark.parametrize(
    ("files", "pattern", "match"),
    [
        (
            ["tray.png"],
            r"day(\d+)",
            r"--time-from-name 'day\(\\d\+\)' does not match the file name 'tray.png'",
        ),
        (
            ["tray_dayX.png"],
            r"day(\w)",
            r"takes 'X' from 'tray_dayX.png', which is neither a number nor a date",
        ),
        (["a.png"], r"(", r"Invalid value for --time-from-name: '\(' is not a regular expression"),
        (["d1.png", "d2024-05-01.png"], r"d(.*)\.png", r"a date from 'd2024-05-01.png' but a plain number"),
    ],
)
def test_time_errors_name_the_file_and_option(files, pattern, match):
    with pytest.raises(ValueError, match=match):
        growth.photo_times(files, pattern=pattern)


def test_two_photos_at_one_time_is_an_error():
    times = {"a_day1.png": (1.0, ""), "b_day1.png": (1.0, "")}
    with pytest.raises(ValueError, match=r"Plant A1 has two rows at time 1: 'a_day1.png' and 'b_day1.png'"):
        growth.growth_table(rows(("a_day1.png", "A1", 5), ("b_day1.png", "A1", 6)), times)


def test_read_plants_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Plants CSV not found"):
        growth.read_plants_csv(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,area\nx.png,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) plant, area_px"):
        growth.read_plants_csv(bad)
