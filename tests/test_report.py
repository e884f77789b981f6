"""What users look at: metrics.csv and training_curves.png after training, and the report.html that
``dpp segment --report`` and ``dpp evaluate --report`` write, rendered in a real browser (headless Chromium)."""

from __future__ import annotations

import csv
import logging
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_model
from PIL import Image

import deepplantphenomics as dpp
from deepplantphenomics.cli import main
from deepplantphenomics.report import (
    PREDICTION_COLOUR,
    THUMBNAIL_SIZE,
    TRUTH_COLOUR,
    ResultsReport,
    overlay_thumbnail,
    save_training_curves,
)
from deepplantphenomics.synthetic import write_synthetic_dataset

needs_matplotlib = pytest.mark.skipif(
    find_spec("matplotlib") is None,
    reason="matplotlib not installed (pip install 'deepplantphenomics[plots]')",
)
MATPLOTLIB_MODULES = (
    "matplotlib",
    "matplotlib.figure",
    "matplotlib.backends",
    "matplotlib.backends.backend_agg",
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not installed (Debian: apt-get install chromium); the report is not rendered in a browser",
)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


class ReportDom(HTMLParser):
    """The parts of report.html a test looks at: overlay images and the rows of the results table."""

    def __init__(self, text: str):
        super().__init__()
        self.overlays: list[dict[str, str]] = []
        self.rows: list[str] = []  # data-file of each row of #results' body, in page order
        self.headers: dict[str, str | None] = {}  # data-key -> aria-sort
        self._in_results = False
        self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "results":
            self._in_results = True
        elif self._in_results and tag == "tbody":
            self._in_body = True
        elif self._in_results and tag == "th" and "data-key" in a:
            self.headers[a["data-key"]] = a.get("aria-sort")
        elif self._in_body and tag == "tr":
            self.rows.append(a.get("data-file", ""))
        elif tag == "img" and "overlay" in a.get("class", "").split():
            self.overlays.append(a)

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._in_results = False


# ============================================================================ metrics CSV and curves
@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """A three-epoch run with a validation split: (model, save_dir)."""
    tmp = tmp_path_factory.mktemp("curves")
    images_dir, masks_dir = write_synthetic_dataset(tmp / "data", n_images=8, height=64, width=64, seed=0)
    model = make_model(tmp / "state")
    model.set_validation_split(0.25)
    model.set_maximum_training_epochs(3)
    model.load_dataset_from_directory_with_segmentation_masks(images_dir, masks_dir)
    model.begin_training()
    return model, tmp / "state"


def test_metrics_csv_has_one_row_per_epoch(three_epochs):
    model, save_dir = three_epochs
    rows = read_csv(save_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "train_loss", "learning_rate", "val_loss", "val_iou", "val_dice"]
    for row, record in zip(rows, model.history):
        assert float(row["train_loss"]) == pytest.approx(record["train_loss"], rel=1e-12)
        assert float(row["val_dice"]) == pytest.approx(record["val_dice"], rel=1e-12)


@needs_matplotlib
def test_training_writes_the_curves_png(three_epochs):
    _, save_dir = three_epochs
    # Two panels (loss, validation score) of 4.2 x 3.4 inches at 100 dpi: the learning rate never changed.
    assert png_size(save_dir / "training_curves.png") == (840, 340)


@needs_matplotlib
@pytest.mark.parametrize(
    ("history", "size"),
    [
        ([{"epoch": 1, "train_loss": 0.7, "learning_rate": 1e-3}], (420, 340)),  # loss (one rate: no panel)
        (
            [
                {
                    "epoch": e,
                    "train_loss": 1 / e,
                    "learning_rate": 0.1**e,
                    "val_loss": 1.2 / e,
                    "val_iou": 0.2 * e,
                }
                for e in (1, 2, 3)
            ],
            (1260, 340),
        ),
    ],
)
def test_curves_panels_follow_the_history(tmp_path, history, size):
    path = save_training_curves(history, tmp_path / "out")
    assert path == tmp_path / "out" / "training_curves.png"
    assert png_size(path) == size


def test_curves_of_an_empty_history_are_skipped(tmp_path):
    assert save_training_curves([], tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_curves_without_matplotlib_are_skipped_with_a_debug_line(tmp_path, monkeypatch, caplog):
    for name in MATPLOTLIB_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    with caplog.at_level(logging.DEBUG, logger="deepplantphenomics.report"):
        result = save_training_curves([{"epoch": 1, "train_loss": 0.5, "learning_rate": 0.1}], tmp_path)
    assert result is None
    assert list(tmp_path.iterdir()) == []
    assert caplog.messages == [
        "matplotlib is not installed: no training_curves.png (pip install 'deepplantphenomics[plots]')"
    ]


def test_training_without_matplotlib_still_saves_its_state(tmp_path, tiny_dataset, monkeypatch):
    for name in MATPLOTLIB_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    model = make_model(tmp_path / "state")
    model.load_dataset_from_directory_with_segmentation_masks(*tiny_dataset)
    model.begin_training()
    assert len(read_csv(tmp_path / "state" / "metrics.csv")) == 1
    assert not (tmp_path / "state" / "training_curves.png").exists()
    assert dpp.load_model(tmp_path / "state") is not None


# ============================================================================ the report page
def square_mask(size: int, start: int, stop: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[start:stop, start:stop] = 1
    return mask


def test_overlay_thumbnail_shrinks_and_outlines():
    image = np.full((400, 300, 3), 128, dtype=np.uint8)
    mask = np.zeros((400, 300), dtype=np.uint8)
    mask[100:300, 100:200] = 1
    truth = np.zeros_like(mask)
    truth[120:280, 60:240] = 1
    thumb = overlay_thumbnail(image, mask, truth)
    assert thumb.shape == (THUMBNAIL_SIZE, 168, 3)  # the longest side is the limit, the aspect ratio kept
    pixels = {tuple(p) for p in thumb.reshape(-1, 3)}
    assert PREDICTION_COLOUR in pixels and TRUTH_COLOUR in pixels
    small = overlay_thumbnail(np.zeros((20, 30), dtype=np.uint16), np.ones((20, 30)))
    assert small.shape == (20, 30, 3)  # never enlarged


def test_report_rows_summary_and_order(tmp_path):
    report = ResultsReport("dpp evaluate", {"method": "exg"}, evaluation=True)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    truth = square_mask(64, 16, 48)
    report.add("perfect.png", image, truth, truth=truth)
    report.add("empty.png", image, np.zeros_like(truth), truth=truth)
    report.add("half.png", image, square_mask(64, 16, 32), truth=truth)
    report.add_failure("broken.png", "Cannot read image file 'broken.png'")
    assert len(report) == 3
    assert [r.file for r in report.ordered_rows()] == ["empty.png", "half.png", "perfect.png"]
    assert report.rows[2].scores == pytest.approx(
        {"dice": 0.4, "iou": 0.25, "precision": 1.0, "recall": 0.25}
    )
    assert [(r.true_fraction, r.area_ratio) for r in report.rows] == [(0.25, 1.0), (0.25, 0.0), (0.25, 0.25)]
    assert report.summary() == pytest.approx(
        {
            "plant_fraction": (0.25 + 0 + 0.0625) / 3,
            "true_fraction": 0.25,
            "area_ratio": (0.25 + 0 + 0.0625) / 3 / 0.25,
            "dice": (1 + 0 + 0.4) / 3,
            "iou": (1 + 0 + 0.25) / 3,
            "precision": (1 + 0 + 1) / 3,
            "recall": (1 + 0 + 0.25) / 3,
        }
    )
    path = report.write(tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    dom = ReportDom(page)
    assert dom.rows == ["empty.png", "half.png", "perfect.png"]
    assert len(dom.overlays) == 3
    assert dom.headers["dice"] == "ascending"
    assert "mean true plant fraction 25.0 %" in page and "area ratio (predicted / true) 0.417" in page
    assert "broken.png: Cannot read image file &#x27;broken.png&#x27;" in page
    assert f"<tr><th>deepplantphenomics version</th><td>{dpp.__version__}</td></tr>" in page
    # Self-contained: nothing is fetched from elsewhere.
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
    assert all(img["src"].startswith("data:image/png;base64,") for img in dom.overlays)


def test_report_area_ratio_without_true_plant():
    report = ResultsReport("dpp evaluate", {}, evaluation=True)
    empty = np.zeros((8, 8), dtype=np.uint8)
    row = report.add("bare.png", np.zeros((8, 8, 3), dtype=np.uint8), np.ones((8, 8)), truth=empty)
    assert (row.true_fraction, row.area_ratio) == (0.0, None)
    assert "area_ratio" not in report.summary()
    assert '<td data-value="Infinity">n/a (no true plant)</td>' in report.html()


def test_report_escapes_file_names(tmp_path):
    report = ResultsReport("dpp segment", {"inputs": "<b>x</b>"})
    report.add('a "<script>".png', np.zeros((8, 8, 3), dtype=np.uint8), np.ones((8, 8)), link="a&b.png")
    page = report.html()
    assert '<script>".png' not in page and "<b>x</b>" not in page
    assert 'data-file="a &quot;&lt;script&gt;&quot;.png"' in page
    assert '<a href="a&amp;b.png">' in page


def test_report_set_rows_reorders_and_renumbers():
    report = ResultsReport("dpp segment", {})
    for name in ("b", "c", "a"):
        report.add(name, np.zeros((8, 8), dtype=np.uint8), np.zeros((8, 8)))
    report.set_rows(list(report.rows), order=["a", "b", "c"])
    assert [(r.index, r.file) for r in report.rows] == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"thumbnail_size": 8},
            ValueError,
            r"Invalid value for argument `thumbnail_size`: expected an int >= 16",
        ),
        ({"thumbnail_size": 64.0}, ValueError, r"expected an int >= 16, received 64\.0\."),
    ],
)
def test_report_invalid_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        ResultsReport("dpp segment", {}, **kwargs)


def test_evaluation_report_needs_the_truth():
    report = ResultsReport("dpp evaluate", {}, evaluation=True)
    with pytest.raises(ValueError, match=r"An evaluation report needs the true mask of 'x\.png'\."):
        report.add("x.png", np.zeros((8, 8), dtype=np.uint8), np.zeros((8, 8)))


# ============================================================================ the commands
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three 64x64 synthetic plant images with their masks."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("report") / "data", 3, 64, 64, seed=0)


def test_segment_report(tmp_path, dataset):
    images_dir, _ = dataset
    result = run("segment", images_dir, "--out", tmp_path / "out", "--method", "exg", "--report")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"Report written to '{tmp_path / 'out' / 'report.html'}'."
    dom = ReportDom((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    files = [row["file"] for row in read_csv(tmp_path / "out" / "results.csv")]
    assert dom.rows == files  # run order
    assert len(dom.overlays) == 3
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    for name in files:
        link = f"{Path(name).stem}_overlay.png"
        assert f'<a href="{link}">' in page and (tmp_path / "out" / link).is_file()


def test_segment_report_lists_failures(tmp_path, dataset):
    images_dir, _ = dataset
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    result = run(
        "segment",
        images_dir,
        bad,
        tmp_path / "missing.png",
        "--out",
        tmp_path / "out",
        "--method",
        "exg",
        "--report",
    )
    assert result.exit_code == 1
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert len(ReportDom(page).rows) == 3
    assert f"<li>{tmp_path / 'missing.png'}: No such file or folder" in page
    assert f"<li>{bad}: could not be processed (see the error output)</li>" in page


def test_no_report_without_the_flag(tmp_path, dataset):
    result = run("segment", dataset[0], "--out", tmp_path / "out", "--method", "exg")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out" / "report.html").exists()


def test_evaluate_report_lists_the_worst_first(tmp_path, dataset):
    images_dir, masks_dir = dataset
    result = run(
        "evaluate",
        "--images",
        images_dir,
        "--masks",
        masks_dir,
        "--method",
        "exg",
        "--csv",
        tmp_path / "scores.csv",
        "--report",
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.output
    scores = [row for row in read_csv(tmp_path / "scores.csv") if row["file"] != "mean"]
    worst_first = [row["file"] for row in sorted(scores, key=lambda r: (float(r["dice"]), float(r["iou"])))]
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    dom = ReportDom(page)
    assert dom.rows == worst_first
    assert len(dom.overlays) == 3
    mean = next(row for row in read_csv(tmp_path / "scores.csv") if row["file"] == "mean")
    assert f"mean Dice {float(mean['dice']):.4f}" in page


@pytest.mark.parametrize("flags", [["--report"], ["--out", "somewhere"]])
def test_evaluate_report_needs_report_and_out_together(tmp_path, dataset, flags):
    images_dir, masks_dir = dataset
    result = CliRunner().invoke(
        main, ["evaluate", "--images", str(images_dir), "--masks", str(masks_dir), *flags]
    )
    assert result.exit_code == 2
    assert "--report writes report.html into --out DIR: give both or neither." in result.output


# ============================================================================ in a real browser
def chromium(url: str, profile: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *flags,
        url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed


@needs_chromium
def test_report_renders_in_chromium(tmp_path, dataset):
    images_dir, masks_dir = dataset
    result = run(
        "evaluate",
        "--images",
        images_dir,
        "--masks",
        masks_dir,
        "--method",
        "exg",
        "--report",
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.output
    page = tmp_path / "out" / "report.html"
    served = ReportDom(page.read_text(encoding="utf-8"))

    # The DOM after the browser ran the page's script: one overlay image per image, one row per image.
    rendered = ReportDom(chromium(page.as_uri(), tmp_path / "profile", "--dump-dom").stdout)
    assert len(rendered.overlays) == 3
    assert rendered.rows == served.rows
    assert all(img["src"].startswith("data:image/png;base64,") for img in rendered.overlays)

    # The sorting script works: "#sort=file:desc" sorts by file name, descending, when the page loads.
    resorted = ReportDom(
        chromium(page.as_uri() + "#sort=file:desc", tmp_path / "profile", "--dump-dom").stdout
    )
    assert resorted.rows == sorted(served.rows, reverse=True)
    assert resorted.headers["file"] == "descending" and resorted.headers["dice"] is None

    # What a user sees: a page of the window's size, with the thumbnails drawn (not a blank page).
    shot = tmp_path / "report.png"
    chromium(page.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,900")
    with Image.open(shot) as image:
        assert image.size == (1200, 900)
        pixels = np.asarray(image.convert("RGB"))
    magenta = np.all(np.abs(pixels.astype(int) - PREDICTION_COLOUR) <= 40, axis=2)
    assert magenta.sum() > 50  # the overlays' tint and outlines are on screen
