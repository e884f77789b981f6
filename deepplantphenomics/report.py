"""Things to look at rather than read: the training-curve PNG and the HTML results report.

- ``save_training_curves`` draws the per-epoch history of a training run (losses, validation IoU and Dice,
  learning rate) into ``training_curves.png`` in its ``save_dir``. It needs matplotlib (the optional 'plots'
  extra) and is skipped, with a debug log line, when matplotlib is not installed.
- ``ResultsReport`` collects per-image results while ``dpp segment --report`` or ``dpp evaluate --report``
  runs and writes ``report.html``: one self-contained page (thumbnails inlined as base64 PNG, no external
  file, script or style) with the run's settings, a summary, and a table with an overlay thumbnail and the
  figures of every image, sortable by clicking a column header. Evaluation reports list the worst images
  (lowest Dice) first.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepplantphenomics._version import __version__
from deepplantphenomics.metrics import binary_scores
from deepplantphenomics.postprocess import overlay_mask, resize_mask, to_uint8_rgb
from deepplantphenomics.state import atomic_write_bytes

__all__ = [
    "REPORT_HTML",
    "TRAINING_CURVES_PNG",
    "ReportRow",
    "ResultsReport",
    "save_training_curves",
]

logger = logging.getLogger(__name__)

TRAINING_CURVES_PNG = "training_curves.png"
REPORT_HTML = "report.html"
THUMBNAIL_SIZE = 224
SCORE_KEYS = ("dice", "iou", "precision", "recall")
PREDICTION_COLOUR = (255, 0, 255)
TRUTH_COLOUR = (255, 220, 0)


# The old name of the package's one atomic writer; other modules import it from here.
replace_file = atomic_write_bytes


# ============================================================================ training curves
def save_training_curves(
    history: Sequence[Mapping[str, Any]], directory: str | os.PathLike, filename: str = TRAINING_CURVES_PNG
) -> Path | None:
    """Plot a training run's per-epoch history into ``directory/filename`` (PNG).

    Panels: training and validation loss; validation IoU and Dice (when there was a validation split);
    learning rate (only when it changed during the run: a constant rate would be a flat line). Drawn with
    matplotlib's Agg canvas directly, so no global backend is changed (a notebook user's plots are left alone).

    Args:
        history: one record per epoch, as ``TrainingRun.run`` returns: ``epoch``, ``train_loss``,
            ``learning_rate`` and optionally ``val_loss``, ``val_iou``, ``val_dice``.
        directory: where to write the PNG (created if missing).
        filename: the PNG's name.

    Returns:
        The path written, or None when matplotlib is not installed or the history is empty.
    """
    if not history:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.debug(
            "matplotlib is not installed: no %s (pip install 'deepplantphenomics[plots]')",
            TRAINING_CURVES_PNG,
        )
        return None
    epochs = [int(record["epoch"]) for record in history]

    def series(key: str) -> list[float] | None:
        if not all(key in record and record[key] is not None for record in history):
            return None
        return [float(record[key]) for record in history]

    panels: list[tuple[str, list[tuple[str, list[float]]]]] = []
    losses = (("training", "train_loss"), ("validation", "val_loss"))
    panels.append(("loss", [(label, v) for label, key in losses if (v := series(key)) is not None]))
    scores = [("IoU", series("val_iou")), ("Dice", series("val_dice"))]
    if any(values is not None for _, values in scores):
        panels.append(("validation score", [(label, v) for label, v in scores if v is not None]))
    if (rates := series("learning_rate")) is not None and min(rates) != max(rates):
        panels.append(("learning rate", [("learning rate", rates)]))
    panels = [(title, lines) for title, lines in panels if lines]

    figure = Figure(figsize=(4.2 * len(panels), 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, lines) in zip(axes, panels):
        for label, values in lines:
            # Markers keep a one- or two-epoch run visible.
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if title == "validation score":
            ax.set_ylim(0.0, 1.0)
        if title == "learning rate" and min(lines[0][1]) > 0 and max(lines[0][1]) / min(lines[0][1]) > 10:
            ax.set_yscale("log")
        if len(lines) > 1:
            ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(Path(directory) / filename, buffer.getvalue())


# ============================================================================ the HTML report
@dataclass
class ReportRow:
    """One image in the report."""

    index: int  # position among the images added (1-based)
    file: str
    width: int
    height: int
    plant_pixels: int
    plant_fraction: float
    thumbnail: str  # data: URI of the overlay thumbnail (PNG)
    thumbnail_size: tuple[int, int]  # (width, height)
    link: str | None = None
    scores: dict[str, float] | None = None
    true_fraction: float | None = None  # evaluations: the true mask's plant fraction
    area_ratio: float | None = None  # evaluations: predicted / true plant pixels (None: no true plant)


def _thumbnail_size(height: int, width: int, limit: int) -> tuple[int, int]:
    scale = min(1.0, limit / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _png_data_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def overlay_thumbnail(
    image: np.ndarray, mask: np.ndarray, truth: np.ndarray | None = None, limit: int = THUMBNAIL_SIZE
) -> np.ndarray:
    """A small overlay: the mask tinted and outlined in magenta, the true mask (if any) outlined in yellow.

    Image and masks are shrunk first and the overlay drawn at the small size, so outlines stay one pixel
    wide and visible instead of being blurred away.

    Args:
        image: (H, W) or (H, W, C) image, any bit depth ``to_uint8_rgb`` accepts.
        mask: (H, W) predicted mask, non-zero = plant.
        truth: (H, W) true mask or None.
        limit: the thumbnail's longest side in pixels (images are never enlarged).

    Returns:
        uint8 (h, w, 3) RGB.
    """
    rgb = to_uint8_rgb(image)
    height, width = _thumbnail_size(rgb.shape[0], rgb.shape[1], limit)
    if (height, width) != rgb.shape[:2]:
        small = Image.fromarray(rgb).resize((width, height), Image.Resampling.BOX)
        rgb = np.asarray(small)
    out = overlay_mask(rgb, resize_mask(np.asarray(mask) > 0, height, width), color=PREDICTION_COLOUR)
    if truth is not None:
        out = overlay_mask(
            out, resize_mask(np.asarray(truth) > 0, height, width), color=TRUTH_COLOUR, alpha=0.0
        )
    return out


class ResultsReport:
    """Per-image results collected during a run, written as one self-contained ``report.html``.

    Only a thumbnail and a few numbers are kept per image, so a run over thousands of images stays small in
    memory (the page grows by roughly 20-60 kB per image).

    Args:
        title: the page title, e.g. "dpp segment".
        settings: what the run was (method, inputs, output folder...), shown as a table; the date and the
            library version are added.
        evaluation: rows carry Dice / IoU / precision / recall against a true mask, and the table starts
            with the worst images (lowest Dice).
        thumbnail_size: longest side of the overlay thumbnails, in pixels.
    """

    def __init__(
        self,
        title: str,
        settings: Mapping[str, Any],
        evaluation: bool = False,
        thumbnail_size: int = THUMBNAIL_SIZE,
    ):
        if not isinstance(thumbnail_size, int) or isinstance(thumbnail_size, bool) or thumbnail_size < 16:
            raise ValueError(
                f"Invalid value for argument `thumbnail_size`: expected an int >= 16, received {thumbnail_size!r}."
            )
        self.title = title
        self.settings = {str(k): str(v) for k, v in settings.items()}
        self.settings.setdefault("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        self.settings.setdefault("deepplantphenomics version", __version__)
        self.evaluation = bool(evaluation)
        self.thumbnail_size = thumbnail_size
        self.rows: list[ReportRow] = []
        self.failures: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(
        self,
        file: str,
        image: np.ndarray,
        mask: np.ndarray,
        truth: np.ndarray | None = None,
        link: str | None = None,
    ) -> ReportRow:
        """Add one image's result.

        Args:
            file: the name shown for the image (the input path as given).
            image: (H, W) or (H, W, C) image as read.
            mask: (H, W) predicted mask at the image's size, non-zero = plant.
            truth: (H, W) true mask (required for evaluation reports, ignored otherwise).
            link: a path relative to the report (e.g. the full-size overlay) the thumbnail links to.

        Returns:
            The row added.

        Raises:
            ValueError: masks and image of different sizes, or no ``truth`` in an evaluation report.
        """
        plant = np.asarray(mask)
        if plant.ndim == 3 and plant.shape[2] == 1:
            plant = plant[:, :, 0]
        plant = plant > 0
        height, width = plant.shape
        scores = true_pixels = None
        if self.evaluation:
            if truth is None:
                raise ValueError(f"An evaluation report needs the true mask of '{file}'.")
            truth = np.asarray(truth)
            if truth.ndim == 3 and truth.shape[2] == 1:
                truth = truth[:, :, 0]
            full = binary_scores(plant, truth)
            scores = {k: float(full[k]) for k in SCORE_KEYS}
            true_pixels = int(np.count_nonzero(truth))
        else:
            truth = None
        thumbnail = overlay_thumbnail(image, plant, truth, self.thumbnail_size)
        pixels = int(np.count_nonzero(plant))
        row = ReportRow(
            index=len(self.rows) + 1,
            file=str(file),
            width=int(width),
            height=int(height),
            plant_pixels=pixels,
            plant_fraction=pixels / (width * height),
            thumbnail=_png_data_uri(thumbnail),
            thumbnail_size=(thumbnail.shape[1], thumbnail.shape[0]),
            link=link,
            scores=scores,
            true_fraction=None if true_pixels is None else true_pixels / (width * height),
            area_ratio=pixels / true_pixels if true_pixels else None,
        )
        self.rows.append(row)
        return row

    def set_rows(self, rows: Sequence[ReportRow], order: Sequence[str] | None = None) -> None:
        """Replace the rows, e.g. by those gathered from every process under torchrun.

        Args:
            rows: the rows.
            order: file names in run order; rows are put in this order (unlisted ones last) and renumbered.
        """
        rows = list(rows)
        if order is not None:
            position = {name: i for i, name in enumerate(order)}
            rows.sort(key=lambda r: position.get(r.file, len(position)))
        for i, row in enumerate(rows, start=1):
            row.index = i
        self.rows = rows

    def add_failure(self, file: str, message: str = "could not be processed") -> None:
        """Record an input that could not be processed (listed below the table)."""
        self.failures.append((str(file), str(message)))

    def ordered_rows(self) -> list[ReportRow]:
        """Rows in the order the page shows them first: worst Dice first for evaluations, else run order."""
        if not self.evaluation:
            return list(self.rows)
        return sorted(self.rows, key=lambda r: (r.scores["dice"], r.scores["iou"], r.index))

    def summary(self) -> dict[str, float]:
        """Means over the images: plant fraction, and for evaluations the true plant fraction, the scores and
        ``area_ratio``, the mean predicted fraction over the mean true one (absent when no image has plant in
        its true mask)."""
        if not self.rows:
            return {}
        out = {"plant_fraction": math.fsum(r.plant_fraction for r in self.rows) / len(self.rows)}
        if self.evaluation:
            out["true_fraction"] = math.fsum(r.true_fraction for r in self.rows) / len(self.rows)
            if out["true_fraction"] > 0:
                out["area_ratio"] = out["plant_fraction"] / out["true_fraction"]
            for key in SCORE_KEYS:
                out[key] = math.fsum(r.scores[key] for r in self.rows) / len(self.rows)
        return out

    def html(self) -> str:
        """The page, as a string."""
        return _render(self)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page (atomically) to ``path``; returns it."""
        return atomic_write_bytes(path, self.html().encode("utf-8"))


# ---------------------------------------------------------------------------- rendering
_COLUMNS_SEGMENT = [
    ("index", "#", "number"),
    ("overlay", "overlay", None),
    ("file", "file", "text"),
    ("size", "size (W × H)", "number"),
    ("plant_fraction", "plant fraction", "number"),
]
_COLUMNS_AREA = [
    ("true_fraction", "true fraction", "number"),
    ("area_ratio", "area ratio (predicted / true)", "number"),
]
_COLUMNS_SCORES = [
    ("dice", "Dice", "number"),
    ("iou", "IoU", "number"),
    ("precision", "precision", "number"),
    ("recall", "recall", "number"),
]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem; color: #1d2125;
       background: #fff; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 0.5rem; }
table { border-collapse: collapse; }
table.settings td, table.settings th { padding: 0.15rem 0.8rem 0.15rem 0; text-align: left; vertical-align: top; }
table.settings th { font-weight: 600; white-space: nowrap; }
#results th, #results td { border-bottom: 1px solid #d8dde2; padding: 0.3rem 0.6rem; text-align: right; }
#results td.file, #results th.file { text-align: left; word-break: break-all; max-width: 24rem; }
#results td.overlay, #results th.overlay { text-align: center; }
#results thead th { position: sticky; top: 0; background: #eef1f4; z-index: 1; }
#results th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0;
                     cursor: pointer; color: inherit; }
#results th[aria-sort="ascending"] button::after { content: " ▲"; }
#results th[aria-sort="descending"] button::after { content: " ▼"; }
#results tbody tr:hover { background: #f6f8fa; }
img.overlay { display: block; image-rendering: auto; border: 1px solid #c4cad0; }
.summary span { display: inline-block; margin-right: 1.5rem; }
.hint { color: #57606a; font-size: 0.9rem; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; vertical-align: -0.1rem; border: 1px solid #888; }
.failures li { color: #a4001f; }
footer { margin-top: 2rem; color: #57606a; font-size: 0.85rem; }
"""

# Sorting: click a header (again to reverse); "#sort=KEY" or "#sort=KEY:desc" in the address sorts on load,
# so a sorted view can be shared as a link.
_SCRIPT = """
(function () {
  var table = document.getElementById("results");
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;
  function key(row, index, type) {
    var v = row.cells[index].getAttribute("data-value");
    return type === "number" ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(index, descending) {
    var type = headers[index].getAttribute("data-type");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, type), y = key(b, index, type);
      var order = x < y ? -1 : (x > y ? 1 : 0);
      if (descending) { order = -order; }
      return order !== 0 ? order : key(a, 0, "number") - key(b, 0, "number");
    });
    rows.forEach(function (row) { body.appendChild(row); });
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    headers[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  Array.prototype.forEach.call(headers, function (header, index) {
    var button = header.querySelector("button");
    if (!button) { return; }
    button.addEventListener("click", function () {
      sortBy(index, header.getAttribute("aria-sort") === "ascending");
    });
  });
  var match = /^#sort=([a-z_]+)(?::(asc|desc))?$/.exec(window.location.hash);
  if (match) {
    Array.prototype.forEach.call(headers, function (header, index) {
      if (header.getAttribute("data-key") === match[1] && header.getAttribute("data-type")) {
        sortBy(index, match[2] === "desc");
      }
    });
  }
})();
"""


def _fraction(value: float) -> str:
    return f"{100.0 * value:.1f} %"


def _cell(value: Any, text: str, css: str | None = None) -> str:
    cls = f' class="{css}"' if css else ""
    return f'<td{cls} data-value="{html.escape(str(value), quote=True)}">{html.escape(text)}</td>'


def _area_cells(row: ReportRow) -> list[str]:
    """True fraction and area ratio; an image without true plant has no ratio (sorted as infinitely large)."""
    ratio = (
        _cell(repr(row.area_ratio), f"{row.area_ratio:.3f}")
        if row.area_ratio is not None
        else _cell("Infinity", "n/a (no true plant)")
    )
    return [_cell(repr(row.true_fraction), _fraction(row.true_fraction)), ratio]


def _header_cells(report: ResultsReport) -> list[str]:
    """The table's header cells; sortable columns get a button, the first sort key an ``aria-sort``."""
    e = html.escape
    columns = _COLUMNS_SEGMENT + (_COLUMNS_AREA + _COLUMNS_SCORES if report.evaluation else [])
    first_sorted = "dice" if report.evaluation else "index"
    head = []
    for key, label, kind in columns:
        css = f' class="{key}"' if key in ("file", "overlay") else ""
        if kind is None:
            head.append(f'<th data-key="{key}"{css}>{e(label)}</th>')
            continue
        sort = ' aria-sort="ascending"' if key == first_sorted else ""
        head.append(
            f'<th data-key="{key}" data-type="{kind}"{css}{sort}>'
            f'<button type="button" title="sort by {e(label)}">{e(label)}</button></th>'
        )
    return head


def _row_html(row: ReportRow, evaluation: bool) -> str:
    """One table row: the overlay thumbnail (linked when the row has a link) and the image's figures."""
    e = html.escape
    width, height = row.thumbnail_size
    image = (
        f'<img class="overlay" src="{row.thumbnail}" width="{width}" height="{height}" '
        f'alt="overlay of {e(row.file, quote=True)}" loading="lazy">'
    )
    if row.link:
        image = f'<a href="{e(row.link, quote=True)}">{image}</a>'
    cells = [
        _cell(row.index, str(row.index)),
        f'<td class="overlay">{image}</td>',
        _cell(row.file, row.file, "file"),
        _cell(row.width * row.height, f"{row.width} × {row.height}"),
        _cell(repr(row.plant_fraction), _fraction(row.plant_fraction)),
    ]
    if evaluation:
        cells += _area_cells(row)
        cells += [_cell(repr(row.scores[k]), f"{row.scores[k]:.4f}") for k in SCORE_KEYS]
    return f'<tr data-file="{e(row.file, quote=True)}">' + "".join(cells) + "</tr>"


def _summary_parts(report: ResultsReport) -> list[str]:
    """The summary line's items: counts, mean fractions and, for evaluations, the mean scores."""
    summary = report.summary()
    parts = [f"<span>{len(report.rows)} image(s)</span>"]
    if report.failures:
        parts.append(f"<span>{len(report.failures)} failed</span>")
    if summary:
        parts.append(f"<span>mean plant fraction {_fraction(summary['plant_fraction'])}</span>")
        if report.evaluation:
            parts.append(f"<span>mean true plant fraction {_fraction(summary['true_fraction'])}</span>")
            if "area_ratio" in summary:
                parts.append(f"<span>area ratio (predicted / true) {summary['area_ratio']:.3f}</span>")
            parts += [f"<span>mean {label} {summary[key]:.4f}</span>" for key, label, _ in _COLUMNS_SCORES]
    return parts


def _hint(report: ResultsReport) -> str:
    """The line above the table: the row order, how to sort, and the colours' legend."""
    swatch = '<span class="swatch" style="background: rgb{}"></span>'
    legend = f"{swatch.format(PREDICTION_COLOUR)} predicted plant (tint and outline)"
    if report.evaluation:
        legend += f" &nbsp; {swatch.format(TRUTH_COLOUR)} true mask (outline)"
    order = (
        "Worst images (lowest Dice) first."
        if report.evaluation
        else "Images in the order they were processed."
    )
    return f"{order} Click a column header to sort by it, again to reverse. {legend}."


def _failures_html(report: ResultsReport) -> str:
    """The list of inputs that could not be processed (empty when there are none)."""
    if not report.failures:
        return ""
    e = html.escape
    items = "".join(f"<li>{e(name)}: {e(message)}</li>" for name, message in report.failures)
    return f'<section id="failures"><h2>Not processed</h2><ul class="failures">{items}</ul></section>'


def _render(report: ResultsReport) -> str:
    e = html.escape
    head = _header_cells(report)
    body = [_row_html(row, report.evaluation) for row in report.ordered_rows()]
    settings = "".join(
        f"<tr><th>{e(key)}</th><td>{e(value)}</td></tr>" for key, value in report.settings.items()
    )
    parts = _summary_parts(report)
    hint = _hint(report)
    failures = _failures_html(report)
    version = report.settings.get("deepplantphenomics version", "")
    date = report.settings.get("date", "")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="deepplantphenomics {e(version, quote=True)}">
<title>{e(report.title)} report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{e(report.title)} report</h1>
<section id="settings"><h2>Run</h2><table class="settings"><tbody>{settings}</tbody></table></section>
<section id="summary"><h2>Summary</h2><p class="summary">{"".join(parts)}</p></section>
<section id="images"><h2>Images</h2>
<p class="hint">{hint}</p>
<table id="results">
<thead><tr>{"".join(head)}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
</section>
{failures}
<footer>Written by deepplantphenomics {e(version)} on {e(date)}.</footer>
<script>{_SCRIPT}</script>
</body>
</html>
"""
