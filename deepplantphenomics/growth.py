"""Growth over time from ``plants.csv``: area per plant and time, relative growth rate, a plot and a page.

``dpp measure`` writes one row per plant per photo; the time of each photo comes from its file name (a
regular expression) or from its EXIF date. :func:`growth_table` then gives, per plant and time, the area
and the relative growth rate since the previous time, ``RGR = (ln A2 - ln A1) / (t2 - t1)`` (per unit of
time: days for dates, the name's own unit for plain numbers). See docs/measure.md.
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import io
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepplantphenomics.report import replace_file

__all__ = [
    "GROWTH_COLUMNS",
    "GROWTH_CSV",
    "GROWTH_HTML",
    "GROWTH_PNG",
    "growth_table",
    "photo_times",
    "read_plants_csv",
    "save_growth_plot",
    "time_from_exif",
    "time_from_name",
    "write_growth_csv",
    "write_growth_html",
]

logger = logging.getLogger(__name__)

GROWTH_CSV = "growth.csv"
GROWTH_PNG = "growth.png"
GROWTH_HTML = "growth.html"
GROWTH_COLUMNS = ("plant", "time", "timestamp", "file", "area_px", "area_mm2", "rgr")
_REQUIRED = ("file", "plant", "area_px")
# Dates and times that file names commonly hold, beyond what datetime.fromisoformat reads.
_NAME_FORMATS = ("%Y%m%d_%H%M%S", "%Y%m%d-%H%M%S", "%Y-%m-%d_%H-%M-%S", "%Y-%m-%d_%H-%M", "%Y-%m-%d_%H%M")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_EXIF_IFD = 0x8769
_EXIF_DATE_ORIGINAL = 0x9003
_EXIF_DATE = 0x0132


def read_plants_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a ``plants.csv`` written by ``dpp measure`` (or :func:`measure.write_plants_csv`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a column among file, plant, area_px is missing, or there are no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Plants CSV not found: '{path}'.")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"'{path}' lacks the column(s) {', '.join(missing)}: expected a plants.csv written by `dpp measure`."
            )
        rows = list(reader)
    if not rows:
        raise ValueError(f"'{path}' holds no plant rows.")
    return rows


def _parse_time(text: str) -> float | datetime.datetime | None:
    """A plain number (3, 2.5), else a date or date-time; 8 digits that form a date (20240501) are a date."""
    if _NUMBER.fullmatch(text) and not (len(text) == 8 and text.isdigit() and _as_date(text) is not None):
        return float(text)
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        pass
    for pattern in _NAME_FORMATS:
        try:
            return datetime.datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None


def _as_date(digits: str) -> datetime.datetime | None:
    try:
        value = datetime.datetime.strptime(digits, "%Y%m%d")
    except ValueError:
        return None
    return value if 1900 <= value.year <= 2200 else None


def time_from_name(name: str, pattern: str | re.Pattern[str]) -> float | datetime.datetime:
    """The time in a file name: the regex's group 'time', else its first group, else the whole match.

    A number ('day(\\d+)' on 'tray_day03.png' -> 3.0) is returned as a float; a date or date-time
    ('(\\d{4}-\\d{2}-\\d{2})', '(\\d{8}_\\d{6})', ISO 8601) as a datetime.

    Raises:
        ValueError: the pattern is not a valid regex, does not match the name, or what it captures is neither
            a number nor a date (the message names the file and the option ``--time-from-name``).
    """
    try:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    except re.error as exc:
        raise ValueError(
            f"Invalid value for --time-from-name: '{pattern}' is not a regular expression ({exc})."
        ) from None
    base = Path(name).name
    match = regex.search(base)
    if match is None:
        raise ValueError(f"--time-from-name '{regex.pattern}' does not match the file name '{base}'.")
    if "time" in regex.groupindex:
        text = match.group("time")
    else:
        text = match.group(1) if regex.groups else match.group(0)
    value = _parse_time(text or "")
    if value is None:
        raise ValueError(
            f"--time-from-name '{regex.pattern}' takes {text!r} from '{base}', which is neither a number nor a "
            "date (e.g. 3, 2024-05-01, 2024-05-01T09:30, 20240501_093000)."
        )
    return value


def time_from_exif(path: str | os.PathLike) -> datetime.datetime:
    """When the photo was taken: EXIF DateTimeOriginal, else the EXIF DateTime.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file has no EXIF date, or one that cannot be read (the message names the file).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Photo not found for --time-from-exif: '{path}'.")
    try:
        with Image.open(path) as image:
            exif = image.getexif()
            text = exif.get_ifd(_EXIF_IFD).get(_EXIF_DATE_ORIGINAL) or exif.get(_EXIF_DATE)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"Cannot read the EXIF data of '{path}': {exc}") from None
    if not text:
        raise ValueError(
            f"'{path}' has no EXIF date (DateTimeOriginal or DateTime); use --time-from-name REGEX instead."
        )
    try:
        return datetime.datetime.strptime(str(text).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        raise ValueError(f"The EXIF date {text!r} of '{path}' is not 'YYYY:MM:DD HH:MM:SS'.") from None


def photo_times(
    files: Sequence[str], pattern: str | None = None, exif: bool = False
) -> dict[str, tuple[float, str]]:
    """Per photo: (time, timestamp). Dates become days since the earliest photo, with the ISO timestamp;
    plain numbers stay as they are (timestamp empty).

    Raises:
        ValueError: neither or both of ``pattern`` and ``exif``; a time that cannot be read; numbers mixed
            with dates.
    """
    if (pattern is None) == (not exif):
        raise ValueError("Give exactly one of --time-from-name REGEX and --time-from-exif.")
    raw = {f: time_from_exif(f) if exif else time_from_name(f, pattern) for f in dict.fromkeys(files)}
    dates = {f: v for f, v in raw.items() if isinstance(v, datetime.datetime)}
    if dates and len(dates) < len(raw):
        number = next(f for f in raw if f not in dates)
        raise ValueError(
            f"--time-from-name reads a date from '{next(iter(dates))}' but a plain number from '{number}': "
            "use one kind of time for the whole series."
        )
    if not dates:
        return {f: (float(v), "") for f, v in raw.items()}
    aware = {v.tzinfo is not None for v in dates.values()}
    if len(aware) > 1:
        raise ValueError("Some photo times carry a time zone and others do not: cannot order them.")
    first = min(dates.values())
    return {f: ((v - first).total_seconds() / 86400.0, v.isoformat()) for f, v in dates.items()}


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def growth_table(rows: Sequence[dict[str, str]], times: dict[str, tuple[float, str]]) -> list[dict[str, Any]]:
    """One row per plant and time (keys :data:`GROWTH_COLUMNS`), sorted by plant then time.

    ``rgr`` is ``(ln A2 - ln A1) / (t2 - t1)`` from the plant's previous time; empty on its first time and
    when either area is 0 (an empty pot).

    Raises:
        ValueError: one plant has two rows at the same time (two photos with one time), naming the files.
    """
    by_plant: dict[str, dict[float, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        time, stamp = times[row["file"]]
        series = by_plant[row["plant"]]
        if time in series:
            raise ValueError(
                f"Plant {row['plant']} has two rows at time {time:g}: '{series[time]['file']}' and "
                f"'{row['file']}'; each photo of a series needs its own time."
            )
        series[time] = {
            "plant": row["plant"],
            "time": time,
            "timestamp": stamp,
            "file": row["file"],
            "area_px": float(row["area_px"] or 0),
            "area_mm2": _number(row.get("area_mm2", "")),
            "rgr": None,
            # The tray cell, for laying the plot out as the tray (not a growth.csv column).
            "row": int(row["row"]) if row.get("row") else None,
            "col": int(row["col"]) if row.get("col") else None,
        }
    table: list[dict[str, Any]] = []
    for plant in sorted(by_plant, key=_plant_key):
        previous = None
        for time in sorted(by_plant[plant]):
            entry = by_plant[plant][time]
            if previous is not None and previous["area_px"] > 0 and entry["area_px"] > 0:
                entry["rgr"] = math.log(entry["area_px"] / previous["area_px"]) / (time - previous["time"])
            table.append(entry)
            previous = entry
    return table


def _plant_key(plant: str) -> tuple:
    """A1, A2, ..., A10, B1 (and P1, P2, ..., P10) in natural order."""
    match = re.match(r"^([A-Za-z]+)([0-9]+)$", plant)
    return (match.group(1).upper(), int(match.group(2))) if match else (plant, 0)


def write_growth_csv(path: str | os.PathLike, table: Sequence[dict[str, Any]]) -> Path:
    """Write :func:`growth_table`'s rows (atomically); empty cells for missing values."""
    from deepplantphenomics.measure import csv_value

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(GROWTH_COLUMNS)
    for entry in table:
        area = entry["area_px"]
        values = {**entry, "area_px": int(area) if float(area).is_integer() else area}
        writer.writerow([csv_value(values[c]) for c in GROWTH_COLUMNS])
    return replace_file(path, text.getvalue().encode("utf-8"))


def _series(table: Sequence[dict[str, Any]]) -> tuple[dict[str, tuple[list[float], list[float]]], str]:
    """Per plant: (times, areas), in mm² when every row has it, else pixels; and the area's unit."""
    in_mm = all(entry["area_mm2"] is not None for entry in table)
    key, unit = ("area_mm2", "mm²") if in_mm else ("area_px", "pixels")
    series: dict[str, tuple[list[float], list[float]]] = {}
    for entry in table:
        times, areas = series.setdefault(entry["plant"], ([], []))
        times.append(entry["time"])
        areas.append(float(entry[key]))
    return series, unit


def _layout(table: Sequence[dict[str, Any]], plants: Sequence[str]) -> tuple[int, int, dict[str, int]]:
    """(rows, cols, panel index per plant): the tray's own layout when the rows carry grid cells, else a square."""
    cells = {entry["plant"]: (entry.get("row"), entry.get("col")) for entry in table}
    if all(isinstance(r, int) and isinstance(c, int) for r, c in cells.values()):
        rows = max(r for r, _ in cells.values())
        cols = max(c for _, c in cells.values())
        return rows, cols, {p: (r - 1) * cols + (c - 1) for p, (r, c) in cells.items()}
    cols = math.ceil(math.sqrt(len(plants)))
    rows = math.ceil(len(plants) / cols)
    return rows, cols, {p: i for i, p in enumerate(plants)}


def save_growth_plot(
    table: Sequence[dict[str, Any]], path: str | os.PathLike, time_label: str = "time"
) -> Path | None:
    """Area against time: one small panel per plant (laid out as the tray for A1.. ids), each with the
    median of all plants in grey, so 24 or 96 plants stay readable. Needs matplotlib (the 'plots' extra).

    Returns:
        The PNG written, or None when matplotlib is not installed (logged) or the table is empty.
    """
    if not table:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning(
            "matplotlib is not installed: no %s (pip install 'deepplantphenomics[plots]')", GROWTH_PNG
        )
        return None
    import numpy as np

    series, unit = _series(table)
    rows, cols, index = _layout(table, list(series))
    all_times = sorted({t for times, _ in series.values() for t in times})
    median = [
        float(np.median([a for times, areas in series.values() for tt, a in zip(times, areas) if tt == t]))
        for t in all_times
    ]
    top = max(max(areas) for _, areas in series.values()) * 1.05 or 1.0
    figure = Figure(figsize=(1.6 * cols + 0.6, 1.25 * rows + 0.9), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for ax in axes.ravel():
        ax.set_visible(False)
    for plant, (times, areas) in series.items():
        ax = axes.ravel()[index[plant]]
        ax.set_visible(True)
        ax.plot(all_times, median, color="0.65", linewidth=1.2, linestyle="--")
        ax.plot(times, areas, color="#2e7d32", linewidth=1.8, marker="o", markersize=2.5)
        ax.set_title(plant, fontsize=8, pad=2)
        ax.set_ylim(0, top)
        ax.tick_params(labelsize=6, length=2)
        ax.grid(True, alpha=0.25)
    figure.suptitle(
        f"plant area ({unit}) against {time_label}; grey dashed: median of all plants", fontsize=9
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return replace_file(path, buffer.getvalue())


def write_growth_html(
    table: Sequence[dict[str, Any]], path: str | os.PathLike, png: str | os.PathLike | None, title: str
) -> Path:
    """A self-contained page: the growth plot (inlined) and a table of area per plant (rows) and time (columns),
    with each plant's mean relative growth rate."""
    series, unit = _series(table)
    rgr: dict[str, list[float]] = defaultdict(list)
    for entry in table:
        if entry["rgr"] is not None:
            rgr[entry["plant"]].append(entry["rgr"])
    times = sorted({t for ts, _ in series.values() for t in ts})
    e = html.escape
    head = "".join(f"<th>{e(f'{t:g}')}</th>" for t in times)
    body = []
    for plant, (ts, areas) in series.items():
        value = dict(zip(ts, areas))
        cells = "".join(f"<td>{value[t]:.1f}</td>" if t in value else "<td></td>" for t in times)
        mean = f"{sum(rgr[plant]) / len(rgr[plant]):.4f}" if rgr[plant] else ""
        body.append(f"<tr><th>{e(plant)}</th>{cells}<td>{mean}</td></tr>")
    picture = ""
    if png is not None and Path(png).is_file():
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        picture = f'<img alt="growth curves" src="data:image/png;base64,{data}">'
    else:
        picture = "<p>No plot: matplotlib is not installed (pip install 'deepplantphenomics[plots]').</p>"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }} img {{ max-width: 100%; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #d8dde2; padding: 0.2rem 0.6rem;
text-align: right; }}</style></head>
<body><h1>{e(title)}</h1>{picture}
<h2>Area ({e(unit)}) per plant and time; mean relative growth rate</h2>
<table><thead><tr><th>plant</th>{head}<th>mean RGR</th></tr></thead><tbody>
{"".join(body)}
</tbody></table></body></html>
"""
    return replace_file(path, page.encode("utf-8"))
