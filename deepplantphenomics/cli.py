"""The ``dpp`` command line: segment, evaluate, train, predict, export, measure, growth (see docs/cli.md).

Every command turns the library's own errors (ValueError, TypeError, FileNotFoundError, RuntimeError, other
OSErrors) into a one-line ``Error: <message>`` and a non-zero exit code, never a traceback (the environment
variable ``DPP_DEBUG=1`` shows it). Commands that process many images handle them a few at a time, so memory
stays flat for thousands of images, and a file that cannot be read is reported on its own line while the
others are still processed; the exit code is then non-zero at the end.
"""

from __future__ import annotations

import csv
import math
import os
import shlex
import sys
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
import numpy as np
from PIL import Image
from tqdm import tqdm

from deepplantphenomics import distributed
from deepplantphenomics._version import __version__
from deepplantphenomics.data.io import (
    IMAGE_EXTENSIONS,
    image_files,
    not_found,
    read_binary_mask,
    read_image,
)
from deepplantphenomics.indices import INDEX_METHODS
from deepplantphenomics.inference import chunked
from deepplantphenomics.postprocess import apply_mask, overlay_mask, to_uint8_rgb
from deepplantphenomics.tools import METHODS
from deepplantphenomics.validation import IGNORE_INDEX

if TYPE_CHECKING:  # imported for the annotations only: the commands import these modules when they run
    from deepplantphenomics.model import SemanticSegmentationModel
    from deepplantphenomics.report import ResultsReport
    from deepplantphenomics.settings import Settings

__all__ = ["expand_inputs", "main", "output_stems"]

RESULTS_CSV = "results.csv"
# The names of the files dpp wrote into an output folder, one per line: a later run may overwrite these and
# never takes them as inputs; it refuses to overwrite anything else.
OUTPUTS_MANIFEST = ".dpp-outputs"
SEGMENT_OUTPUTS = ("mask", "cutout", "overlay", "csv")
# Pixels of photos waiting to be written (besides the one being written): with the photos being read and
# segmented, about two batches of photos are in memory at once.
WRITE_QUEUE_PIXELS = 10_000_000
# Rows drawn at once in an overlay: its float work arrays stay a few MiB for a 50 MP photo.
OVERLAY_BAND_PIXELS = 1 << 20
SEGMENT_COLUMNS = ("file", "width", "height", "plant_pixels", "plant_fraction", "quality")
SCORE_COLUMNS = ("dice", "iou", "precision", "recall")
# dpp evaluate also reports the plant area, the figure users publish: predicted / true (nan without plant).
AREA_COLUMNS = ("true_fraction", "predicted_fraction", "area_ratio")
# Colours for classes 1, 2, ... in multi-class overlays (class 0 is background and left untinted).
CLASS_COLOURS = (
    (255, 0, 255),
    (255, 220, 0),
    (0, 200, 255),
    (255, 80, 0),
    (120, 80, 255),
    (0, 255, 120),
    (255, 255, 255),
)
# What a command may raise on bad input: reported as one line, not a traceback.
# ImportError: a missing optional extra (e.g. tensorboard) is a message naming what to install.
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, ImportError)


# ============================================================================ errors
def one_line(exc: BaseException | str) -> str:
    """A message on one line: continuation lines (e.g. a list of unpaired files) joined with '; '."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    rest = [line[2:] if line.startswith("- ") else line for line in lines[1:]]
    return " ".join([lines[0], "; ".join(rest)]) if rest else lines[0]


def printable(text: str | os.PathLike) -> str:
    """A path or message as it can be printed and written to UTF-8 files: bytes of a file name that are not
    UTF-8 (kept by Python as surrogates, e.g. ``caf\\xe9.png`` from a zip made on Windows) shown as ``\\xe9``."""
    text = os.fspath(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _href(name: str) -> str:
    """A file name as a link in report.html: percent-encoded bytes, so any file name opens."""
    from urllib.parse import quote

    return quote(os.fsencode(name))


def _naming(path: Path, exc: BaseException) -> str:
    """The error's message, prefixed with the file when the message does not name it already."""
    message = one_line(exc)
    return message if str(path) in message or path.name in message else f"'{path}': {message}"


class _Group(click.Group):
    """A group whose commands report library errors as ``Error: <message>`` (exit code 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        # click's own Exit and Abort are RuntimeErrors: let them through untouched.
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except USER_ERRORS as exc:
            if _debug():
                raise  # the full traceback, for bug reports
            raise click.ClickException(one_line(exc)) from None


def _debug() -> bool:
    """DPP_DEBUG is on unless unset, empty, or 0/false/no/off (any case)."""
    return os.environ.get("DPP_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _warn(message: str) -> None:
    # tqdm.write keeps an active progress bar intact; the stream is looked up now, so that a test
    # runner's replacement stderr is used.
    tqdm.write(f"Error: {printable(message)}", file=sys.stderr)


# ============================================================================ inputs and output names
def expand_inputs(
    items: Sequence[str | os.PathLike], recursive: bool = False
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files from command-line arguments: folders expand to their image files (sorted; sub-folders too with
    ``recursive``).

    Args:
        items: file and folder paths as given.
        recursive: include the image files of sub-folders.

    Returns:
        (files in argument order without repeats, [(path, message)] for arguments that are missing or are
        folders without images). Files are not opened here: an unreadable file fails when it is read.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(path)

    for item in items:
        path = Path(item)
        if path.is_dir():
            found = image_files(path, recursive)
            if not found:
                hint = "" if recursive else " (--recursive includes sub-folders)"
                problems.append(
                    (path, f"Folder '{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)}){hint}.")
                )
            for p in found:
                add(p)
        elif path.is_file():
            add(path)
        else:
            problems.append((path, str(not_found(path))))
    return files, problems


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct output name stem per input file.

    A file keeps its own stem unless another input has the same one (compared case-insensitively, as on
    Windows and macOS file systems). Files sharing a stem are named by their path below the folder they
    have in common (``a/x.png``, ``b/x.jpg`` -> ``a_x``, ``b_x``), with the extension as well when that is
    still ambiguous (``x.png``, ``x.jpg`` -> ``x_png``, ``x_jpg``). Any name still taken gets ``_2``, ``_3``...

    Args:
        paths: the input files, without repeats.

    Returns:
        One stem per path, in the same order.
    """
    names = [p.stem for p in paths]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(paths):
        groups[p.stem.casefold()].append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        absolute = [Path(os.path.abspath(paths[i])) for i in members]
        common = Path(os.path.commonpath([str(a.parent) for a in absolute]))
        relative = [a.relative_to(common) for a in absolute]
        by_folder = ["_".join(r.with_suffix("").parts) for r in relative]
        if len({n.casefold() for n in by_folder}) < len(by_folder):
            by_folder = ["_".join(r.parts).replace(".", "_") for r in relative]
        for i, name in zip(members, by_folder):
            names[i] = name
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, k = name, 2
        while candidate.casefold() in taken:
            candidate, k = f"{name}_{k}", k + 1
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


# ============================================================================ processing in small batches
def _progress(total: int, desc: str) -> tqdm:
    # disable=None: a bar on a terminal, none in logs and pipes.
    return tqdm(total=total, desc=desc, unit="image", disable=None, file=sys.stderr, dynamic_ncols=True)


def _process(
    paths: list[Path],
    batch_size: int,
    predict: Callable[[list[Path]], Sequence[np.ndarray]],
    handle: Callable[[Path, np.ndarray, np.ndarray], None],
    desc: str,
) -> list[Path]:
    """Read, predict and handle files ``batch_size`` at a time; report each failing file and go on.

    Args:
        paths: files to process.
        batch_size: files read and predicted together.
        predict: files -> one mask per file.
        handle: (path, image as read, mask) -> writes the outputs for one file.
        desc: progress bar label.

    Returns:
        The files that failed (each already reported on stderr).
    """
    failed: list[Path] = []

    def fail(path: Path, exc: BaseException) -> None:
        _warn(_naming(path, exc))
        failed.append(path)

    with _progress(len(paths), desc) as bar:
        for chunk in chunked(paths, batch_size):
            images: dict[Path, np.ndarray] = {}
            for path in chunk:
                try:
                    images[path] = read_image(path)
                except USER_ERRORS as exc:
                    fail(path, exc)
                    bar.update(1)
            readable = list(images)
            if not readable:
                continue
            try:
                masks: list[np.ndarray | None] = list(predict(readable))
            except USER_ERRORS as exc:
                if len(readable) == 1:
                    masks = [None]
                    fail(readable[0], exc)
                else:
                    # Find the file(s) at fault by predicting one at a time.
                    masks = []
                    for path in readable:
                        try:
                            masks.append(predict([path])[0])
                        except USER_ERRORS as single:
                            masks.append(None)
                            fail(path, single)
            for path, mask in zip(readable, masks):
                if mask is not None:
                    try:
                        handle(path, images.pop(path), mask)
                    except USER_ERRORS as exc:
                        fail(path, exc)
                bar.update(1)
    return failed


def _finish(failed: Sequence[Path], problems: Sequence[tuple[Path, str]], total: int) -> None:
    """Exit non-zero, naming the files (the first 20; each was reported on its own line), when any failed."""
    bad = [str(p) for p, _ in problems] + [str(p) for p in failed]
    if bad:
        named = ", ".join(bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise click.ClickException(
            printable(f"{len(bad)} of {total} input(s) could not be processed: {named}.")
        )


def _report_problems(problems: Sequence[tuple[Path, str]]) -> None:
    for _, message in problems:
        _warn(message)


# ============================================================================ writing images
def _save_png(path: Path, array: np.ndarray, compress_level: int = 6) -> None:
    """Write a PNG; ``compress_level`` 1 for overlays: 4x faster to write than zlib's default 6 on a photo, about
    17% larger (a CWFID overlay: 0.08 s and 1.9 MB against 0.36 s and 1.6 MB), the same pixels."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=compress_level)


def _cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """image x mask, in the image's own bit depth where PNG can hold it (16-bit grey), else 8-bit."""
    if image.dtype == np.uint16 and image.shape[2] == 3:
        image = to_uint8_rgb(image)  # Pillow cannot write 16-bit RGB PNGs
    return apply_mask(image, mask)


def _class_overlay(image: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """RGB image with every class but 0 tinted (and outlined) in its own colour."""
    out = to_uint8_rgb(image)
    for c in range(1, num_classes):
        if np.any(classes == c):
            out = overlay_mask(out, classes == c, color=CLASS_COLOURS[(c - 1) % len(CLASS_COLOURS)])
    return out


def _check_size(path: Path, image: np.ndarray, mask: np.ndarray) -> None:
    if mask.shape[:2] != image.shape[:2]:
        raise RuntimeError(
            f"The mask for '{path}' is {mask.shape[0]}x{mask.shape[1]} but the image is "
            f"{image.shape[0]}x{image.shape[1]}."
        )


class _CsvLog:
    """A CSV written row by row and flushed, so an interrupted run keeps the rows done so far."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self._handle: TextIO = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(columns)
        self._handle.flush()

    def write(self, row: Sequence[Any]) -> None:
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _overlay(image: np.ndarray, plant: np.ndarray, **options: Any) -> np.ndarray:
    """``overlay_mask`` drawn a band of rows at a time (with a row of context on each side for the outline),
    so a 50 MP photo's overlay needs its own 3 bytes per pixel, not ``overlay_mask``'s float copies."""
    height, width = plant.shape[:2]
    rows = max(1, OVERLAY_BAND_PIXELS // max(width, 1))
    if rows >= height:
        return overlay_mask(image, plant, **options)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        first, last = max(top - 1, 0), min(bottom + 1, height)
        out[top:bottom] = overlay_mask(image[first:last], plant[first:last], **options)[top - first :][
            : bottom - top
        ]
    return out


class _Writer:
    """Writes each photo's outputs on a thread of its own, so the next photos are read and segmented meanwhile.

    Jobs wait in a queue bounded by pixels (:data:`WRITE_QUEUE_PIXELS`; one job is always let in), so memory
    stays bounded when writing is slower than segmenting; :meth:`wait_for_room` lets the caller start on the
    next photo only when the queue has room, so a photo bigger than the whole budget (50 MP) is segmented while
    nothing is being written, and the two working sets never add up. PNG encoding (zlib) and numpy release the GIL.
    ``write`` reports a file's own failures itself; anything else it raises (a bug) stops the run, raised again
    in the caller's thread.
    """

    def __init__(self, write: Callable[..., None], budget: int = WRITE_QUEUE_PIXELS):
        self._write = write
        self._budget = budget
        self._jobs: deque[tuple[tuple[Any, ...], int]] = deque()
        self._pending = 0
        self._closed = False
        self._error: BaseException | None = None
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="dpp-writer", daemon=True)
        self._thread.start()

    def put(self, job: tuple[Any, ...], pixels: int) -> None:
        """Queue a job, waiting while the queue is full."""
        with self._condition:
            while self._jobs and self._pending + pixels > self._budget and self._error is None:
                self._condition.wait()
            self._raise()
            self._jobs.append((job, pixels))
            self._pending += pixels
            self._condition.notify_all()

    def wait_for_room(self, everything: bool = False) -> None:
        """Wait until the photos queued or being written hold fewer pixels than the budget (``everything``:
        until all is written)."""
        with self._condition:
            while self._jobs and (everything or self._pending >= self._budget) and self._error is None:
                self._condition.wait()
            self._raise()

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise what it failed with."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._jobs and not self._closed:
                    self._condition.wait()
                if not self._jobs:
                    return
                job, pixels = self._jobs[0]
            try:
                self._write(*job)
                del job  # the photo is freed now, not when the next job arrives
            except BaseException as exc:  # a bug, not a bad file: handed to the main thread
                with self._condition:
                    self._error = exc
                    self._jobs.clear()
                    self._pending = 0
                    self._condition.notify_all()
                return
            with self._condition:
                self._jobs.popleft()
                self._pending -= pixels
                self._condition.notify_all()


# ============================================================================ output folders
def _read_manifest(out_dir: Path) -> set[str]:
    """The names listed in ``out_dir/.dpp-outputs`` (none when it does not exist)."""
    try:
        data = (out_dir / OUTPUTS_MANIFEST).read_bytes()
    except FileNotFoundError:
        return set()
    return {os.fsdecode(line) for line in data.splitlines() if line and not line.startswith(b"#")}


def _claim_outputs(out_dir: Path, names: Iterable[str], command: str, write: bool = True) -> None:
    """Refuse to write over a file no dpp run wrote, then list ``names`` in the manifest before writing them.

    Raises:
        click.ClickException: a file with one of ``names`` exists in ``out_dir`` and is not in the manifest;
            nothing has been written then.
    """
    listed = _read_manifest(out_dir)
    names = list(dict.fromkeys(names))
    for name in names:
        target = out_dir / name
        if name not in listed and (target.exists() or target.is_symlink()):
            raise click.ClickException(
                printable(
                    f"Refusing to overwrite '{target}': {command} did not write it (it is not listed in "
                    f"'{out_dir / OUTPUTS_MANIFEST}', the list of files dpp wrote there). Nothing was written; "
                    "choose another --out folder, or move that file away."
                )
            )
    new = [name for name in names if name not in listed]
    if write and (new or not (out_dir / OUTPUTS_MANIFEST).exists()):
        from deepplantphenomics.state import atomic_write_bytes

        header = b"# Files written by dpp into this folder: dpp may overwrite these and never reads them as inputs.\n"
        lines = sorted(os.fsencode(name) for name in listed | set(new))
        atomic_write_bytes(out_dir / OUTPUTS_MANIFEST, header + b"".join(line + b"\n" for line in lines))


def _not_outputs(files: list[Path], out_dir: Path) -> list[Path]:
    """``files`` without those a dpp run wrote into ``out_dir`` (listed in its manifest)."""
    listed = _read_manifest(out_dir)
    if not listed:
        return files
    folder = out_dir.resolve()
    return [path for path in files if not (path.name in listed and path.resolve().parent == folder)]


# ============================================================================ predictors
def _tool_predictor(method: str, batch_size: int) -> Callable[[list[Path]], Sequence[np.ndarray]]:
    """The vegetation tool as files -> masks; fails now (not once per file) when the tool cannot run."""
    from deepplantphenomics import tools

    # A tiny image through the tool up front: missing weights or a broken install is one error for the
    # run, not the same error repeated for every file.
    tools.segment_image(np.full((64, 64, 3), 128, dtype=np.uint8), method=method)

    def predict(files: list[Path]) -> Sequence[np.ndarray]:
        # The quality column is written per file from the image already read (segment_quality).
        return tools.segment_vegetation(files, batch_size=batch_size, method=method, check_quality=False)

    return predict


def segment_quality(method: str, image: np.ndarray, mask: np.ndarray) -> str:
    """The ``quality`` cell of dpp segment's CSV for one photo: 'ok', the flags joined by ';'
    (``tools.quality_flags``, docs/vegetation.md), or '' for the colour-index methods (not checked)."""
    from deepplantphenomics import mask_quality, tools

    if method in INDEX_METHODS:
        return ""
    return mask_quality.quality_label(tools.quality_flags(image, mask))


def _load_trained(state_dir: Path) -> tuple[SemanticSegmentationModel, Settings]:
    """(model, settings) of a saved state; settings say how its outputs map back to the image size."""
    from deepplantphenomics.model import load_model

    model = load_model(state_dir)
    return model, model.settings


def _model_predictor(
    model: SemanticSegmentationModel, settings: Settings, threshold: float | str | None = None
) -> Callable[[list[Path]], Sequence[np.ndarray]]:
    """A trained model as files -> uint8 masks at each file's own size (0/1 binary, class indices).

    ``threshold``: how binary probabilities are cut (see ``forward_pass_with_interpreted_outputs``).
    """
    import torch

    from deepplantphenomics.data.dataset import crop_or_pad
    from deepplantphenomics.data.io import image_size
    from deepplantphenomics.postprocess import resize_mask

    def to_image_size(mask: np.ndarray, path: Path) -> np.ndarray:
        height, width = image_size(path)
        if mask.shape == (height, width):
            return mask
        if settings.crop_or_pad_images and not settings.resize_images:
            # The network saw the centre crop (or a centred padding) of the image: undo that placement.
            return crop_or_pad(torch.from_numpy(mask), height, width, 0).numpy()
        return resize_mask(mask, height, width)

    def predict(files: list[Path]) -> Sequence[np.ndarray]:
        masks = model.forward_pass_with_interpreted_outputs(files, threshold=threshold)
        out = []
        for mask, path in zip(masks, files):
            mask = np.asarray(mask, dtype=np.uint8)
            if settings.num_classes == 2:
                mask = (mask > 0).astype(np.uint8)
            out.append(to_image_size(mask, path))
        return out

    return predict


def _threshold_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    """``--threshold``: 'dpp' (or absent) -> None, 'otsu', or a float in (0, 1) (``check_mask_threshold``)."""
    from deepplantphenomics.settings import check_mask_threshold

    if value is None or value.strip().lower() == "dpp":
        return None
    try:
        number: float | str = float(value)
    except ValueError:
        number = value  # a name: 'otsu', or refused below
    try:
        return check_mask_threshold("threshold", number)
    except (TypeError, ValueError):
        raise click.BadParameter(
            f"expected 'dpp', 'otsu' or a number in (0, 1), received {value!r}."
        ) from None


# ============================================================================ commands
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dpp", message="%(prog)s %(version)s")
def main() -> None:
    """Deep Plant Phenomics: plant segmentation from the command line.

    \b
    dpp segment IMAGES... --out DIR     plant masks, cut-outs, overlays and a CSV, no training needed
    dpp evaluate --images D --masks D   Dice / IoU / precision / recall against your own masks
    dpp train CONFIG.toml               train a model described in a config file
    dpp predict STATE_DIR IMAGES...     masks from a trained model
    dpp export STATE_DIR model.onnx     the trained model as ONNX, for deployment
    dpp measure PHOTOS... --out DIR     per-plant area, shape and colour; trays with --grid RxC
    dpp growth plants.csv --out DIR     growth curves per plant from dpp measure's CSV

    Run `dpp COMMAND --help` for a command's options.
    """


def _outputs_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    """``--outputs``: a comma list of mask, cutout, overlay, csv (any case, in any order)."""
    chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in SEGMENT_OUTPUTS]
    if unknown or not chosen:
        raise click.BadParameter(
            f"expected a comma list of {', '.join(SEGMENT_OUTPUTS)} (e.g. mask,csv), received {value!r}."
        )
    return tuple(name for name in SEGMENT_OUTPUTS if name in chosen)


@main.command(short_help="Plant masks, cut-outs, overlays and a CSV; no training.")
# readable=False: an unreadable file is reported on its own line when it is read, not refused up front.
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option(
    "--method",
    type=click.Choice(METHODS, case_sensitive=False),
    default="network",
    show_default=True,
    help="The pretrained network; network-fast: the same on one smaller view (about 4x faster, slightly "
    "less accurate); or Excess Green / CIVE colour index with Otsu's threshold.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Images processed together.",
)
@click.option(
    "--recursive", is_flag=True, help="Folders also give the images of their sub-folders (sorted by path)."
)
@click.option(
    "--outputs",
    default=",".join(SEGMENT_OUTPUTS),
    show_default=True,
    callback=_outputs_option,
    help="What to write: a comma list of mask, cutout, overlay, csv (e.g. mask,csv: the fastest).",
)
@click.option("--report", is_flag=True, help="Also write report.html: overlays and figures of every image.")
def segment(
    images: tuple[Path, ...],
    out_dir: Path,
    method: str,
    batch_size: int,
    recursive: bool,
    outputs: tuple[str, ...],
    report: bool,
) -> None:
    """Segment plants in IMAGES (files or folders of images) without training.

    Writes, per image, STEM_mask.png (0/255), STEM_cutout.png (the image with the background set to 0)
    and STEM_overlay.png (mask tinted and outlined on the image), and one results.csv for the run with
    file, width, height, plant_pixels, plant_fraction (--outputs picks some of these). Files sharing a name
    stem get distinct names. With --report, also report.html: one page with every overlay and plant
    fraction, sortable. Files in DIR that no dpp run wrote are never overwritten (the run refuses), and files
    a dpp run wrote there (listed in DIR/.dpp-outputs) are never taken as inputs.
    """
    method = method.lower()
    files, problems = expand_inputs(images, recursive)
    files = _not_outputs(files, out_dir)
    sharded = distributed.initialize()  # under torchrun: each rank segments every N-th file
    if distributed.is_main():
        _report_problems(problems)
    stems = dict(zip(files, output_stems(files)))  # from the full list, so names agree across ranks
    out_dir.mkdir(parents=True, exist_ok=True)
    images_out = [kind for kind in outputs if kind != "csv"]
    names = [f"{stem}_{kind}.png" for stem in stems.values() for kind in images_out]
    names += [RESULTS_CSV] if "csv" in outputs or sharded else []
    names += [f".{RESULTS_CSV}.rank{r}" for r in range(distributed.world_size())] if sharded else []
    names += ["report.html"] if report else []
    # Every rank checks before any rank writes (the same answer everywhere; the main rank checks and lists the
    # names in one go), then all wait, so no rank's first output can meet another rank's check.
    _claim_outputs(out_dir, names, "dpp segment", write=distributed.is_main())
    if sharded:
        distributed.barrier()
    all_files, files = files, distributed.shard(files)
    settings = {
        "method": method,
        "inputs": printable(_inputs_label(images)),
        "output folder": printable(out_dir),
        "batch size": batch_size,
        "outputs": ", ".join(outputs),
    }
    page = _new_report("dpp segment", settings) if report else None
    run = _SegmentRun(out_dir, stems, outputs, page, method)
    csv_path = out_dir / (f".{RESULTS_CSV}.rank{distributed.rank()}" if sharded else RESULTS_CSV)
    failed = run.run(files, method, batch_size, csv_path if "csv" in outputs or sharded else None)
    done, page = run.done, run.page
    if sharded:
        distributed.barrier()
        if distributed.is_main():
            _merge_rank_csvs(out_dir, all_files, keep="csv" in outputs)
        done = sum(distributed.gather_objects(done))
        failed = [f for part in distributed.gather_objects(failed) for f in part]
        if page is not None:
            rows = [row for part in distributed.gather_objects(page.rows) for row in part]
            page.set_rows(rows, order=[printable(path) for path in all_files])
    if distributed.is_main():
        where = out_dir / RESULTS_CSV if "csv" in outputs else out_dir
        click.echo(printable(f"Segmented {done} image(s) with method '{method}'; results in '{where}'."))
        if page is not None:
            _write_report(page, out_dir, problems, failed)
    _finish(failed, problems, len(all_files) + len(problems))


class _SegmentRun:
    """``dpp segment``'s work on this process's files: segmentation here, writing on a :class:`_Writer`."""

    def __init__(
        self,
        out_dir: Path,
        stems: dict[Path, str],
        outputs: Sequence[str],
        page: ResultsReport | None,
        method: str,
    ):
        self.out_dir, self.stems, self.outputs, self.page, self.method = out_dir, stems, outputs, page, method
        self.done = 0
        self.failed: list[Path] = []
        self.log: _CsvLog | None = None
        self.bar: tqdm | None = None

    def fail(self, path: Path, exc: BaseException) -> None:
        _warn(_naming(path, exc))
        self.failed.append(path)

    def run(self, files: list[Path], method: str, batch_size: int, csv_path: Path | None) -> list[Path]:
        """Segment and write ``files``; returns those that failed (each reported on its own line)."""
        if not files:
            if csv_path is not None:
                _CsvLog(csv_path, SEGMENT_COLUMNS).close()
            return []
        _tool_predictor(method, batch_size)  # a broken install is one error for the run, not one per file
        self.log = _CsvLog(csv_path, SEGMENT_COLUMNS) if csv_path is not None else None
        # Not under runtime.mapped_allocations as a whole: the network's buffers must stay in the tuned heap
        # (mapped afresh for every call they cost 4x the network's time). The tool maps the photo-sized buffers
        # of its own steps; the writer's photo-sized ones (over 64 MiB at 50 MP) are mapped by glibc anyway in
        # a thread's arena, and those of small photos are small.
        writer = _Writer(self.write)
        try:
            self._segment(files, method, batch_size, writer)
            writer.close()
        finally:
            writer.close()
            if self.log is not None:
                self.log.close()
        return self.failed

    def _segment(self, files: list[Path], method: str, batch_size: int, writer: _Writer) -> None:
        from deepplantphenomics import tools

        with _progress(len(files), "segment") as self.bar:
            results = tools.segment_images(files, batch_size, method, errors="return")
            while True:
                writer.wait_for_room()  # before the next photos are read and segmented
                result = next(results, None)
                if result is None:
                    break
                if result.error is not None:
                    self.fail(result.path, result.error)
                    self.bar.update(1)
                    continue
                pixels = result.mask.shape[0] * result.mask.shape[1]
                writer.put((result.path, result.image, result.mask), pixels)
                del result  # the writer holds the only reference now
            writer.wait_for_room(everything=True)  # all written while the bar is shown

    def write(self, path: Path, image: np.ndarray, plant: np.ndarray) -> None:
        """One photo's outputs (on the writer thread); a failure is reported and the run goes on."""
        try:
            _check_size(path, image, plant)
            stem, out_dir = self.stems[path], self.out_dir
            if "mask" in self.outputs:
                _save_png(out_dir / f"{stem}_mask.png", plant.view(np.uint8) * np.uint8(255))
            if "cutout" in self.outputs:
                _save_png(out_dir / f"{stem}_cutout.png", _cutout(image, plant))
            if "overlay" in self.outputs:
                _save_png(out_dir / f"{stem}_overlay.png", _overlay(image, plant), compress_level=1)
            height, width = plant.shape
            pixels = int(np.count_nonzero(plant))
            if self.log is not None:
                quality = segment_quality(self.method, image, plant)
                self.log.write(
                    [printable(path), width, height, pixels, repr(pixels / (width * height)), quality]
                )
            if self.page is not None:
                link = _href(f"{stem}_overlay.png") if "overlay" in self.outputs else None
                self.page.add(printable(path), image, plant, link=link)
            self.done += 1
        except USER_ERRORS as exc:
            self.fail(path, exc)
        finally:
            if self.bar is not None:
                self.bar.update(1)


def _inputs_label(items: Sequence[Path], shown: int = 10) -> str:
    names = [str(p) for p in items]
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _new_report(title: str, settings: dict[str, Any], evaluation: bool = False) -> ResultsReport:
    from deepplantphenomics.report import ResultsReport

    return ResultsReport(title, settings, evaluation=evaluation)


def _write_report(
    page: ResultsReport, out_dir: Path, problems: Sequence[tuple[Path, str]], failed: Sequence[Path]
) -> None:
    """Write report.html, listing the inputs that could not be processed under the table."""
    from deepplantphenomics.report import REPORT_HTML

    for path, message in problems:
        page.add_failure(printable(path), message)
    for path in failed:
        page.add_failure(str(path), "could not be processed (see the error output)")
    click.echo(f"Report written to '{page.write(out_dir / REPORT_HTML)}'.")


def _merge_rank_csvs(out_dir: Path, files: list[Path], keep: bool = True) -> None:
    """Merge the per-rank CSV parts into one results.csv, rows in the order the files were given (or, with
    ``keep`` False, only remove the parts)."""
    order = {printable(path): i for i, path in enumerate(files)}
    rows: list[list[str]] = []
    parts = sorted(out_dir.glob(f".{RESULTS_CSV}.rank*"))
    for part in parts:
        with part.open(newline="", encoding="utf-8") as handle:
            rows.extend(list(csv.reader(handle))[1:])
    rows.sort(key=lambda row: order.get(row[0], len(order)))
    if keep:
        with (out_dir / RESULTS_CSV).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(SEGMENT_COLUMNS)
            writer.writerows(rows)
    for part in parts:
        part.unlink()


def _format_table(rows: list[tuple[str, dict[str, float]]]) -> str:
    width = max([len(name) for name, _ in rows] + [4])
    titles = ("Dice", "IoU", "precision", "recall", "area ratio")
    header = f"{'file':<{width}}" + "".join(f"  {title:>10}" for title in titles)
    lines = [header, "-" * len(header)]
    for name, scores in rows:
        figures = [scores[k] for k in (*SCORE_COLUMNS, "area_ratio")]
        lines.append(f"{name:<{width}}" + "".join(f"  {figure:>10.4f}" for figure in figures))
    return "\n".join(lines)


def _area_figures(mask: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Plant fraction of the prediction and of the truth (over the scored pixels), and their ratio."""
    pixels = max(truth.size, 1)
    predicted, true = int(np.count_nonzero(mask)), int(np.count_nonzero(truth))
    return {
        "true_fraction": true / pixels,
        "predicted_fraction": predicted / pixels,
        "area_ratio": predicted / true if true else math.nan,
    }


@main.command(short_help="Dice / IoU / precision / recall against true masks.")
@click.option(
    "--images", "images_dir", required=True, type=click.Path(path_type=Path), help="Folder of images."
)
@click.option(
    "--masks",
    "masks_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of true masks (0 = background, > 127 or 1 = plant), paired with the images by name or "
    "name suffix (a_mask.png); may be the --images folder.",
)
@click.option(
    "--mask-suffix",
    default=None,
    help="The end of a mask's name after its image's (a-m.png for a.jpg: -m), when it is not one of _mask, "
    "_masks, _fg, _label, _labels, _seg, _gt, _annotation.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS, case_sensitive=False),
    default="network",
    show_default=True,
    help="Tool method to score (ignored with --state).",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Score a trained binary model (a save_dir) instead of a tool method.",
)
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Also save the table."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--report", is_flag=True, help="Also write report.html (worst images first) into --out DIR.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Folder for --report's page."
)
@click.option(
    "--threshold",
    callback=_threshold_option,
    help="With --state: how probabilities become masks, as in `dpp predict` ('dpp' default, 'otsu', or a "
    "number in (0, 1)).",
)
def evaluate(
    images_dir: Path,
    masks_dir: Path,
    mask_suffix: str | None,
    method: str,
    state_dir: Path | None,
    csv_path: Path | None,
    batch_size: int,
    report: bool,
    out_dir: Path | None,
    threshold: float | str | None,
) -> None:
    """Score a method (or a trained model) against true masks: Dice, IoU, precision, recall per image.

    Images and masks are paired by file name, or by name stem (plant_01.jpg with plant_01.png), else by one
    mask-name suffix for the folder (plant_01_mask.png; --mask-suffix for others). The last row
    is the mean over the images. With --report --out DIR, also DIR/report.html: every image's overlay
    (prediction tinted, true mask outlined) and scores, worst first, sortable.
    """
    from deepplantphenomics.data.dataset import pair_files

    _check_evaluate_options(click.get_current_context(), state_dir, report, out_dir)
    pairs, _ = pair_files(images_dir, masks_dir, ("--images", "--masks", "--mask-suffix"), mask_suffix)
    method = method.lower()
    predict, label = _evaluation_predictor(state_dir, method, batch_size, threshold)
    truth_of = dict(pairs)
    what = {"model": state_dir} if state_dir is not None else {"method": method}
    settings = {**what, "images": images_dir, "masks": masks_dir}
    page = _new_report("dpp evaluate", settings, evaluation=True) if report else None
    stems = dict(zip(truth_of, output_stems(list(truth_of))))
    if page is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        names = [f"{stem}_overlay.png" for stem in stems.values()]
        _claim_outputs(out_dir, [*names, "report.html"], "dpp evaluate")
    scoring = _Scoring(truth_of, stems, page, out_dir)
    failed = _process([image for image, _ in pairs], batch_size, predict, scoring.handle, "evaluate")
    if scoring.rows:
        _print_scores(scoring.rows, label, csv_path)
    if page is not None:
        _write_report(page, out_dir, [], failed)
    _finish(failed, [], len(pairs))


def _check_evaluate_options(
    ctx: click.Context, state_dir: Path | None, report: bool, out_dir: Path | None
) -> None:
    """The option combinations ``dpp evaluate`` refuses (a usage error naming the options)."""
    given = click.core.ParameterSource.DEFAULT
    if state_dir is not None and ctx.get_parameter_source("method") is not given:
        raise click.UsageError("Give either --method or --state, not both.")
    if report != (out_dir is not None):
        raise click.UsageError("--report writes report.html into --out DIR: give both or neither.")
    if state_dir is None and ctx.get_parameter_source("threshold") is not given:
        raise click.UsageError(
            "--threshold applies to a trained model (--state); tool methods cut as documented."
        )


def _evaluation_predictor(
    state_dir: Path | None, method: str, batch_size: int, threshold: float | str | None
) -> tuple[Callable[[list[Path]], Sequence[np.ndarray]], str]:
    """What ``dpp evaluate`` scores, as a predictor and a label: a trained binary model or a tool method."""
    if state_dir is None:
        return _tool_predictor(method, batch_size), f"method '{method}'"
    model, settings = _load_trained(state_dir)
    if settings.num_classes != 2:
        raise ValueError(
            f"`dpp evaluate` scores binary masks, but the model in '{state_dir}' has "
            f"{settings.num_classes} classes."
        )
    return _model_predictor(model, settings, threshold), f"model '{state_dir}'"


class _Scoring:
    """``dpp evaluate``'s per-image work: score a mask against its truth, and add it to the report if any."""

    def __init__(
        self,
        truth_of: dict[Path, Path],
        stems: dict[Path, str],
        page: ResultsReport | None,
        out_dir: Path | None,
    ):
        self.truth_of, self.stems, self.page, self.out_dir = truth_of, stems, page, out_dir
        self.rows: list[tuple[str, dict[str, float]]] = []

    def handle(self, path: Path, image: np.ndarray, mask: np.ndarray) -> None:
        from deepplantphenomics.metrics import binary_scores

        truth, _ = read_binary_mask(self.truth_of[path])
        if truth.shape != mask.shape[:2]:
            raise ValueError(
                f"Mask '{self.truth_of[path]}' is {truth.shape[0]}x{truth.shape[1]} but image '{path}' is "
                f"{image.shape[0]}x{image.shape[1]}."
            )
        scored = truth != IGNORE_INDEX  # 255 in a 0/1/255 mask: pixels the truth leaves out
        scores = binary_scores(mask[scored], truth[scored])
        self.rows.append((path.name, scores | _area_figures(mask[scored] > 0, truth[scored] == 1)))
        if self.page is not None:
            self._add_to_report(path, image, mask, truth)

    def _add_to_report(self, path: Path, image: np.ndarray, mask: np.ndarray, truth: np.ndarray) -> None:
        from deepplantphenomics.report import PREDICTION_COLOUR, TRUTH_COLOUR

        # The full-size overlay beside report.html, which the thumbnail opens.
        overlay = _overlay(image, mask, color=PREDICTION_COLOUR)
        name = f"{self.stems[path]}_overlay.png"
        overlay = _overlay(overlay, truth == 1, color=TRUTH_COLOUR, alpha=0.0)
        _save_png(self.out_dir / name, overlay, compress_level=1)
        self.page.add(printable(path.name), image, mask, truth=truth == 1, link=_href(name))


def _print_scores(rows: list[tuple[str, dict[str, float]]], label: str, csv_path: Path | None) -> None:
    """Print the per-image scores and their mean; with ``csv_path``, also save them as CSV."""
    mean = {}
    for key in (*SCORE_COLUMNS, *AREA_COLUMNS):  # the area ratio's mean is over images with plant
        values = [s[key] for _, s in rows if not math.isnan(s[key])]
        mean[key] = math.fsum(values) / len(values) if values else math.nan
    table = rows + [(f"mean ({len(rows)} images)", mean)]
    click.echo(f"Scores of {label} on {len(rows)} image(s):")
    click.echo(printable(_format_table(table)))
    if csv_path is None:
        return
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as handle_csv:
        writer = csv.writer(handle_csv)
        writer.writerow(("file", *SCORE_COLUMNS, *AREA_COLUMNS))
        for name, scores in rows + [("mean", mean)]:
            writer.writerow([name, *(repr(scores[k]) for k in (*SCORE_COLUMNS, *AREA_COLUMNS))])
    click.echo(f"Table saved to '{csv_path}'.")


@main.command(short_help="Train a model described in a TOML/YAML config file.")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in the config's save_dir.")
def train(config: Path, resume: bool) -> None:
    """Train a model described in CONFIG (.toml, or .yaml with PyYAML installed).

    \b
    [model]     constructor arguments: debug, save_dir, save_checkpoints, report_rate, tensorboard_dir
    [settings]  one key per setter: batch_size = 4, image_dimensions = [256, 256, 3], ...
    [data]      images = "folder", masks = "folder" (relative to the config file)
    [network]   predefined = "u-net", or layers = [ { type = "input" }, ..., { type = "output" } ]

    See docs/cli.md for every key.

    Ctrl-C or SIGTERM finishes the batch under way, saves the state and exits 130 (SIGINT) or 143 (SIGTERM);
    `dpp train CONFIG --resume` continues the run.
    """
    from deepplantphenomics.config import TrainingConfig
    from deepplantphenomics.training import TrainingInterrupted

    run = TrainingConfig.from_file(config)
    try:
        run.train(resume=resume)
    except TrainingInterrupted as stop:
        click.echo(
            f"Training interrupted by {stop.signal_label} at epoch {stop.epoch}, batch {stop.batch}: the run did "
            f"not finish. Its state is saved in '{stop.save_dir}'; continue with: "
            f"dpp train {shlex.quote(str(config))} --resume",
            err=True,
        )
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        # Before the training loop (data loading) or after it (test evaluation): no checkpoint is written here.
        click.echo("Interrupted (Ctrl-C): dpp train did not finish.", err=True)
        sys.exit(130)
    click.echo(f"Trained state saved to '{run.save_dir}'.")


@main.command(short_help="Masks and overlays from a trained model.")
@click.argument("state_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--threshold",
    callback=_threshold_option,
    help="Binary models: 'dpp' (default; DPP's rule, each probability map cut at the middle of its own "
    "min-max range), 'otsu', or a number in (0, 1) such as 0.5 (best when some images hold no plant).",
)
@click.option(
    "--recursive", is_flag=True, help="Folders also give the images of their sub-folders (sorted by path)."
)
def predict(
    state_dir: Path,
    images: tuple[Path, ...],
    out_dir: Path,
    batch_size: int,
    threshold: float | str | None,
    recursive: bool,
) -> None:
    """Masks from a trained model (STATE_DIR, a save_dir) for IMAGES (files or folders).

    Writes, per image and at the image's own size, STEM_mask.png (0/255 for a binary model, class indices
    0..n-1 for a multi-class one) and STEM_overlay.png, and a results.csv with the pixel count of each class.
    """
    model, settings = _load_trained(state_dir)
    num_classes = settings.num_classes
    files, problems = expand_inputs(images, recursive)
    files = _not_outputs(files, out_dir)
    _report_problems(problems)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = dict(zip(files, output_stems(files)))
    names = [f"{stem}_{kind}.png" for stem in stems.values() for kind in ("mask", "overlay")]
    _claim_outputs(out_dir, [*names, RESULTS_CSV], "dpp predict")
    if num_classes == 2:
        columns = ("file", "width", "height", "foreground_pixels", "foreground_fraction")
    else:
        columns = ("file", "width", "height", *(f"class_{c}_pixels" for c in range(num_classes)))
    log = _CsvLog(out_dir / RESULTS_CSV, columns)
    done = 0

    def handle(path: Path, image: np.ndarray, mask: np.ndarray) -> None:
        nonlocal done
        _check_size(path, image, mask)
        stem = stems[path]
        height, width = mask.shape
        if num_classes == 2:
            _save_png(out_dir / f"{stem}_mask.png", mask * np.uint8(255))
            _save_png(out_dir / f"{stem}_overlay.png", overlay_mask(image, mask))
            pixels = int(np.count_nonzero(mask))
            log.write([printable(path), width, height, pixels, repr(pixels / (width * height))])
        else:
            _save_png(out_dir / f"{stem}_mask.png", mask)
            _save_png(out_dir / f"{stem}_overlay.png", _class_overlay(image, mask, num_classes))
            counts = np.bincount(mask.reshape(-1), minlength=num_classes)[:num_classes]
            log.write([printable(path), width, height, *(int(c) for c in counts)])
        done += 1

    try:
        failed = (
            _process(files, batch_size, _model_predictor(model, settings, threshold), handle, "predict")
            if files
            else []
        )
    finally:
        log.close()
    click.echo(f"Predicted {done} image(s) with the model in '{state_dir}'; results in '{out_dir}'.")
    _finish(failed, problems, len(files) + len(problems))


@main.command(short_help="Export a trained model to ONNX (needs the 'onnx' extra).")
@click.argument("state_dir", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--logits", is_flag=True, help="Output raw logits instead of probabilities.")
def export(state_dir: Path, output: Path, logits: bool) -> None:
    """Export the trained model in STATE_DIR (a save_dir) to OUTPUT (an .onnx file).

    The graph takes float32 images N x C x H x W with values in [0, 1] and does the input normalisation
    itself; it returns probabilities N x K x H x W (sigmoid for binary models, softmax otherwise). Batch,
    height and width are dynamic. See docs/export.md.
    """
    from deepplantphenomics.model import load_model

    model = load_model(state_dir)
    try:
        path = model.export_onnx(output, probabilities=not logits)
    except ImportError as exc:  # the optional extra is missing: its message names the pip command
        raise click.ClickException(str(exc)) from None
    click.echo(f"Exported the model in '{state_dir}' to '{path}'.")


# ============================================================================ phenotypes: measure and growth
PLANTS_CSV = "plants.csv"
PHOTOS_CSV = "photos.csv"
PHOTO_COLUMNS = ("file", "width", "height", "plants", "specks_dropped", "speck_pixels", "grid")


def _mask_reader(
    files: Sequence[Path], masks_dir: Path, mask_suffix: str | None = None
) -> tuple[Callable, dict[Path, Path]]:
    """Files -> the user's masks, paired with the photos as the training loader pairs them (``pair_files``)."""
    from deepplantphenomics.data.dataset import pair_files

    mask_of: dict[Path, Path] = {}
    for folder in dict.fromkeys(path.parent for path in files):
        pairs, _ = pair_files(folder, masks_dir, ("PHOTOS", "--masks", "--mask-suffix"), mask_suffix)
        mask_of.update((image.resolve(), mask) for image, mask in pairs)

    def predict(paths: list[Path]) -> Sequence[np.ndarray]:
        return [read_binary_mask(mask_of[path.resolve()])[0] for path in paths]

    return predict, {path: mask_of[path.resolve()] for path in files}


def _measure_options(
    grid: str | None, mm_per_pixel: float | None, min_area: int | None, merge_distance: float | None
) -> dict[str, Any]:
    """``measure_plants``' keyword arguments from ``dpp measure``'s options (a bad --grid is a usage error)."""
    from deepplantphenomics import measure as measuring

    try:
        tray = measuring.parse_grid(grid, "--grid")
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(one_line(exc), param_hint="--grid") from None
    return {
        "grid": tray,
        "mm_per_pixel": mm_per_pixel,
        "min_area": measuring.MIN_AREA if min_area is None else min_area,
        "merge_distance": measuring.MERGE_DISTANCE if merge_distance is None else merge_distance,
    }


@main.command(short_help="Per-plant area, shape and colour (trays: --grid), with overlays.")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option(
    "--masks",
    "masks_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of your own masks (0 = background), paired with the photos by name, name stem or mask "
    "suffix (a_mask.png); without it, masks come from the vegetation tool (--method).",
)
@click.option(
    "--mask-suffix",
    default=None,
    help="With --masks: the end of a mask's name after its photo's (a-m.png for a.jpg: -m), when it is not "
    "one of _mask, _masks, _fg, _label, _labels, _seg, _gt, _annotation.",
)
@click.option("--grid", default=None, help="Tray of ROWSxCOLS pots, e.g. 4x6 (ids A1, A2, ...), or 'auto'.")
@click.option(
    "--mm-per-pixel",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Scale: adds mm columns.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS, case_sensitive=False),
    default="network",
    show_default=True,
    help="Vegetation tool method that makes the masks (not with --masks).",
)
@click.option(
    "--min-area",
    type=click.IntRange(min=0),
    default=None,
    help="Plants below this many pixels are specks: dropped and counted [default: 30].",
)
@click.option(
    "--merge-distance",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Without --grid: fragments at most this many pixels apart are one plant [default: 8].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
def measure(
    photos: tuple[Path, ...],
    out_dir: Path,
    masks_dir: Path | None,
    mask_suffix: str | None,
    grid: str | None,
    mm_per_pixel: float | None,
    method: str,
    min_area: int | None,
    merge_distance: float | None,
    batch_size: int,
) -> None:
    """Measure every plant in PHOTOS (files or folders): area, perimeter, hull, axes, colour.

    Writes plants.csv (one row per plant per photo; columns in docs/measure.md), photos.csv (plants and
    dropped specks per photo) and STEM_plants.png (each plant outlined and labelled with its id). With
    --grid RxC, plants are named by their pot (A1, A2, ... row-major), the same in every photo of a series;
    then `dpp growth plants.csv` draws growth curves.
    """
    from deepplantphenomics import measure as measuring

    ctx = click.get_current_context()
    if masks_dir is not None and ctx.get_parameter_source("method") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("Give either --masks or --method, not both.")
    options = _measure_options(grid, mm_per_pixel, min_area, merge_distance)
    tray = options["grid"]
    files, problems = expand_inputs(photos)
    files = _not_outputs(files, out_dir)
    _report_problems(problems)
    if mask_suffix is not None and masks_dir is None:
        raise click.UsageError("--mask-suffix names the masks of --masks DIR: give --masks too.")
    if masks_dir is not None:
        predict, mask_of = _mask_reader(files, masks_dir, mask_suffix)
    else:
        predict, mask_of = _tool_predictor(method.lower(), batch_size), {}
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = dict(zip(files, output_stems(files)))
    names = [f"{stem}_plants.png" for stem in stems.values()]
    _claim_outputs(out_dir, [*names, PLANTS_CSV, PHOTOS_CSV], "dpp measure")
    plants_log = _CsvLog(out_dir / PLANTS_CSV, ("file", *measuring.PLANT_COLUMNS))
    photos_log = _CsvLog(out_dir / PHOTOS_CSV, PHOTO_COLUMNS)
    counts = {"photos": 0, "plants": 0}

    def handle(path: Path, image: np.ndarray, mask: np.ndarray) -> None:
        if mask.shape[:2] != image.shape[:2]:
            source = f"Mask '{mask_of[path]}'" if path in mask_of else "The mask"
            raise ValueError(
                f"{source} is {mask.shape[1]}x{mask.shape[0]} (W x H) but photo '{path}' is "
                f"{image.shape[1]}x{image.shape[0]}."
            )
        if isinstance(tray, tuple):
            measuring.check_grid_fits(tray, image.shape[0], image.shape[1], "--grid")
        result = measuring.measure_plants(image, mask, **options)
        _save_png(out_dir / f"{stems[path]}_plants.png", measuring.draw_plants(image, result))
        name = printable(path)
        for record in result.plants:
            plants_log.write([name, *(measuring.csv_value(record[c]) for c in measuring.PLANT_COLUMNS)])
        found = sum(1 for record in result.plants if record["area_px"])
        grid_text = "" if result.grid is None else f"{result.grid[0]}x{result.grid[1]}"
        height, width = image.shape[:2]
        photos_log.write([name, width, height, found, result.specks, result.speck_pixels, grid_text])
        counts["photos"] += 1
        counts["plants"] += found

    try:
        failed = _process(files, batch_size, predict, handle, "measure") if files else []
    finally:
        plants_log.close()
        photos_log.close()
    click.echo(
        f"Measured {counts['plants']} plant(s) in {counts['photos']} photo(s); results in "
        f"'{out_dir / PLANTS_CSV}'."
    )
    _finish(failed, problems, len(files) + len(problems))


@main.command(short_help="Growth curves per plant from plants.csv (needs the 'plots' extra for the PNG).")
@click.argument("plants_csv", type=click.Path(path_type=Path))
@click.option(
    "--time-from-name", "pattern", default=None, help="Regex taking each photo's time from its name."
)
@click.option("--time-from-exif", "exif", is_flag=True, help="Take each photo's time from its EXIF date.")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
def growth(plants_csv: Path, pattern: str | None, exif: bool, out_dir: Path) -> None:
    """Area per plant and time, and relative growth rate, from PLANTS_CSV (written by `dpp measure`).

    The time of each photo comes from its file name (--time-from-name 'day(\\d+)' reads 3 from
    tray_day03.png; a date such as 2024-05-01 becomes days since the first photo) or from its EXIF date
    (--time-from-exif; days since the first photo). Writes growth.csv, growth.png (one small panel per plant
    with the median of all plants) and growth.html.
    """
    from deepplantphenomics import growth as growing

    if (pattern is None) == (not exif):
        raise click.UsageError("Give exactly one of --time-from-name REGEX and --time-from-exif.")
    rows = growing.read_plants_csv(plants_csv)
    times = growing.photo_times([row["file"] for row in rows], pattern=pattern, exif=exif)
    table = growing.growth_table(rows, times)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = (growing.GROWTH_CSV, growing.GROWTH_PNG, growing.GROWTH_HTML)
    _claim_outputs(out_dir, outputs, "dpp growth")
    growing.write_growth_csv(out_dir / growing.GROWTH_CSV, table)
    dated = any(entry["timestamp"] for entry in table)
    png = growing.save_growth_plot(table, out_dir / growing.GROWTH_PNG, "days" if dated else "time")
    page = growing.write_growth_html(table, out_dir / growing.GROWTH_HTML, png, f"Growth: {plants_csv}")
    plants = len({entry["plant"] for entry in table})
    if any(entry["row"] is None for entry in table):
        click.echo(
            "Note: plants measured without --grid are numbered P1, P2, ... in each photo's reading order, which "
            "can change between photos; measure a series with --grid RxC for ids that follow each pot."
        )
    click.echo(f"Growth of {plants} plant(s) at {len(set(times.values()))} time(s) in '{out_dir}'.")
    if png is None:
        click.echo("No growth.png: matplotlib is not installed (pip install 'deepplantphenomics[plots]').")
    click.echo(f"Report written to '{page}'.")
