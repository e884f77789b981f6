"""`dpp measure` and `dpp growth` end to end: generated tray series, real shared photos, bad input."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deepplantphenomics import measure
from deepplantphenomics.cli import main
from deepplantphenomics.data.io import read_binary_mask
from deepplantphenomics.synthetic import generate_tray_image, write_tray_series

IDS = [f"{row}{col}" for row in "ABCD" for col in range(1, 7)]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture
def tray(tmp_path):
    """Three daily photos of a 4x6 tray (64-pixel pots) with pot B3 empty, and their masks."""
    return write_tray_series(tmp_path / "tray", days=3, seed=0, empty=("B3",))


def test_help_lists_measure_and_growth():
    result = run("--help")
    assert "dpp measure PHOTOS" in result.output and "dpp growth plants.csv" in result.output
    assert "--time-from-exif" in run("growth", "--help").output
    text = " ".join(run("measure", "--help").output.split())
    assert "--mm-per-pixel" in text
    # The defaults the help states are the library's.
    assert f"[default: {measure.MIN_AREA}]" in text and f"[default: {measure.MERGE_DISTANCE:g}]" in text


def test_measure_tray_series_with_masks_grid_and_scale(tray, tmp_path):
    images, masks = tray
    out = tmp_path / "out"
    result = run("measure", images, "--masks", masks, "--grid", "4x6", "--mm-per-pixel", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "plants.csv")
    assert len(rows) == 3 * 24
    for day in range(3):
        photo = str(images / f"tray_day{day:02d}.png")
        day_rows = [r for r in rows if r["file"] == photo]
        assert [r["plant"] for r in day_rows] == IDS
        pots = generate_tray_image(4, 6, day=day, seed=0, empty=("B3",))[2]
        truth = np.bincount(pots.ravel(), minlength=25)[1:]
        assert [int(r["area_px"]) for r in day_rows] == truth.tolist()
        b3 = day_rows[IDS.index("B3")]
        assert b3["area_px"] == "0" and b3["perimeter_px"] == ""
        a1 = day_rows[0]
        assert float(a1["area_mm2"]) == pytest.approx(int(a1["area_px"]) * 0.25)
        overlay = out / f"tray_day{day:02d}_plants.png"
        with Image.open(overlay) as picture:
            assert picture.size == (384, 256) and picture.mode == "RGB"
    photos = read_csv(out / "photos.csv")
    assert [(p["plants"], p["grid"], p["specks_dropped"]) for p in photos] == [("23", "4x6", "0")] * 3
    assert "Measured 69 plant(s) in 3 photo(s)" in result.output


def test_growth_from_measure(tray, tmp_path):
    images, masks = tray
    out = tmp_path / "out"
    assert run("measure", images, "--masks", masks, "--grid", "4x6", "--out", out).exit_code == 0
    result = run("growth", out / "plants.csv", "--time-from-name", r"day(\d+)", "--out", tmp_path / "growth")
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "growth" / "growth.csv")
    assert len(rows) == 24 * 3
    a1 = [r for r in rows if r["plant"] == "A1"]
    assert [float(r["time"]) for r in a1] == [0.0, 1.0, 2.0]
    assert a1[0]["rgr"] == ""
    expected = math.log(int(a1[2]["area_px"]) / int(a1[1]["area_px"]))
    assert float(a1[2]["rgr"]) == pytest.approx(expected, abs=1e-4)
    assert all(r["rgr"] == "" for r in rows if r["plant"] == "B3")  # empty pot: no rate
    # Plants sort naturally: A1 .. A6, then B1.
    assert [r["plant"] for r in rows[::3]][:7] == IDS[:7]
    with Image.open(tmp_path / "growth" / "growth.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 600
    page = (tmp_path / "growth" / "growth.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "<th>B3</th>" in page


def test_growth_without_matplotlib_writes_csv_and_page(tray, tmp_path, monkeypatch):
    images, masks = tray
    out = tmp_path / "out"
    assert run("measure", images, "--masks", masks, "--grid", "4x6", "--out", out).exit_code == 0
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    result = run("growth", out / "plants.csv", "--time-from-name", r"day(\d+)", "--out", tmp_path / "g")
    assert result.exit_code == 0
    assert "No growth.png: matplotlib is not installed" in result.output
    assert not (tmp_path / "g" / "growth.png").exists()
    assert (tmp_path / "g" / "growth.csv").is_file()
    assert "matplotlib is not installed" in (tmp_path / "g" / "growth.html").read_text(encoding="utf-8")


def test_growth_time_from_exif(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = []
    for k, stamp in enumerate(("2024:05:01 09:00:00", "2024:05:03 21:00:00")):
        image, mask, _ = generate_tray_image(1, 2, day=k, cell=48, seed=1)
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = stamp
        path = photos / f"p{k}.jpg"
        Image.fromarray(image).save(path, exif=exif)
        rows.append((path, mask))
    masks = tmp_path / "masks"
    masks.mkdir()
    for path, mask in rows:
        Image.fromarray(mask).save(masks / f"{path.stem}.png")
    out = tmp_path / "out"
    assert run("measure", photos, "--masks", masks, "--grid", "1x2", "--out", out).exit_code == 0
    result = run("growth", out / "plants.csv", "--time-from-exif", "--out", tmp_path / "g")
    assert result.exit_code == 0, result.output
    growth = read_csv(tmp_path / "g" / "growth.csv")
    assert [float(r["time"]) for r in growth if r["plant"] == "A1"] == [0.0, 2.5]
    assert growth[1]["timestamp"] == "2024-05-03T21:00:00"


def test_measure_with_the_vegetation_tool(tray, tmp_path):
    images, _ = tray
    out = tmp_path / "out"
    result = run("measure", images / "tray_day02.png", "--grid", "auto", "--method", "exg", "--out", out)
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "plants.csv")
    assert [r["plant"] for r in rows] == IDS
    found = [r["plant"] for r in rows if int(r["area_px"]) > 0]
    assert "B3" not in found and len(found) >= 20


def test_measure_reports_bad_files_and_measures_the_others(tray, tmp_path):
    images, _ = tray
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a PNG")
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    result = run("measure", missing, images / "tray_day00.png", corrupt, "--method", "exg", "--out", out)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert {r["file"] for r in read_csv(out / "plants.csv")} == {str(images / "tray_day00.png")}
    errors = error_lines(result)
    assert any(str(corrupt) in line and "Cannot read" in line for line in errors)
    assert any(str(missing) in line and "No such file or folder" in line for line in errors)
    assert "2 of 3" in errors[-1]


def test_measure_mask_of_another_size_names_the_mask(tray, tmp_path):
    images, masks = tray
    small = tmp_path / "small"
    small.mkdir()
    for path in sorted(masks.iterdir()):
        with Image.open(path) as mask:
            mask.resize((192, 128)).save(small / path.name)
    result = run("measure", images / "tray_day01.png", "--masks", small, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert any(
        f"Mask '{small / 'tray_day01.png'}' is 192x128 (W x H) but photo '{images / 'tray_day01.png'}' is 384x256"
        in line
        for line in error_lines(result)
    )


def test_measure_grid_errors_name_the_option(tray, tmp_path):
    images, masks = tray
    result = run("measure", images, "--masks", masks, "--grid", "100x100", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert any(
        "`--grid`: a 100x100 grid does not fit a 384x256 (W x H) photo" in e for e in error_lines(result)
    )
    bad = run("measure", images, "--masks", masks, "--grid", "4 by 6", "--out", tmp_path / "out")
    assert bad.exit_code == 2 and "--grid" in bad.output and "expected ROWSxCOLS" in bad.output
    both = run("measure", images, "--masks", masks, "--method", "exg", "--out", tmp_path / "out")
    assert both.exit_code == 2 and "either --masks or --method" in both.output


def test_measure_unpaired_masks_are_named(tray, tmp_path):
    images, masks = tray
    (masks / "tray_day01.png").unlink()
    result = run("measure", images, "--masks", masks, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "Cannot pair images with masks" in result.output and "tray_day01.png" in result.output


def test_growth_unparsable_time_names_the_file_and_option(tray, tmp_path):
    images, masks = tray
    out = tmp_path / "out"
    assert run("measure", images, "--masks", masks, "--grid", "4x6", "--out", out).exit_code == 0
    result = run("growth", out / "plants.csv", "--time-from-name", r"(tray)", "--out", tmp_path / "g")
    assert result.exit_code == 1
    assert (
        "--time-from-name '(tray)' takes 'tray' from 'tray_day00.png', which is neither a number"
        in result.output
    )
    result = run("growth", out / "plants.csv", "--time-from-name", r"week(\d+)", "--out", tmp_path / "g")
    assert "does not match the file name 'tray_day00.png'" in result.output
    result = run("growth", out / "plants.csv", "--time-from-exif", "--out", tmp_path / "g")
    assert result.exit_code == 1 and "has no EXIF date" in result.output and "tray_day00.png" in result.output
    neither = run("growth", out / "plants.csv", "--out", tmp_path / "g")
    assert neither.exit_code == 2 and "exactly one of --time-from-name" in neither.output


@pytest.mark.shared_data
def test_measure_real_photos(shared_data, tmp_path):
    cwfid = shared_data / "cwfid"
    photos = [cwfid / "images" / "002.png", cwfid / "images" / "005.png"]
    out = tmp_path / "cwfid"
    result = run("measure", *photos, "--masks", cwfid / "masks", "--out", out)
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "plants.csv")
    summary = read_csv(out / "photos.csv")
    for photo, line in zip(photos, summary):
        mask, _ = read_binary_mask(cwfid / "masks" / photo.name)
        measured = sum(int(r["area_px"]) for r in rows if r["file"] == str(photo))
        # Every plant pixel of the mask is in a plant or in a counted speck.
        assert measured + int(line["speck_pixels"]) == int(mask.sum())
        assert int(line["plants"]) >= 1 and (out / f"{photo.stem}_plants.png").is_file()
    peanut = sorted((shared_data / "peanut_field_vn" / "images").iterdir())[0]
    result = run("measure", peanut, "--method", "exg", "--out", tmp_path / "peanut")
    assert result.exit_code == 0, result.output
    assert len(read_csv(tmp_path / "peanut" / "plants.csv")) >= 1


def test_demo_measures_a_generated_tray_with_the_vegetation_tool(tmp_path):
    """examples/demo.py's last step: `dpp measure` (network-fast masks) and `dpp growth` on a 3-day tray."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
    spec = importlib.util.spec_from_file_location("example_demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    outputs = demo.measure_trays(tmp_path, seed=0)
    rows = read_csv(outputs["plants_csv"])
    assert len(rows) == 3 * 24
    for day in range(3):
        day_rows = [r for r in rows if r["file"].endswith(f"tray_day{day:02d}.png")]
        assert [r["plant"] for r in day_rows] == IDS
        measured = np.array([int(r["area_px"]) for r in day_rows])
        pots = generate_tray_image(4, 6, day=day, seed=0, empty=("B3",))[2]
        truth = np.bincount(pots.ravel(), minlength=25)[1:]
        assert measured[IDS.index("B3")] == 0
        present = truth > 0
        # The tool's masks give each pot's area to within a median 15 % of the drawn plant (measured 2026-12-05:
        # 2.7-10.6 %, the highest on day 0, where one 20-pixel seedling of 23 is missed).
        assert np.median(np.abs(measured[present] - truth[present]) / truth[present]) < 0.15
    assert len(read_csv(outputs["growth_csv"])) == 3 * 24
    assert outputs["growth_html"].is_file()
