"""``dpp segment``'s outputs and output folder (issues 17.5, 17.7, 20.8, 20.12, 20.13, 20.15).

What to write (``--outputs``), writing beside segmentation, never overwriting a file no dpp run wrote, an
unreadable or non-UTF-8 file among the inputs, the evaluation report's areas and full-size overlays, and the
memory of big photos (batches by pixels, colour indices a few bytes per pixel).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deepplantphenomics import tools
from deepplantphenomics.cli import OUTPUTS_MANIFEST, main
from deepplantphenomics.indices import index_mask, index_plant
from deepplantphenomics.report import save_training_curves
from deepplantphenomics.synthetic import generate_plant_image, write_synthetic_dataset


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Error:")]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of three 64x64 synthetic plant photos (plant_0000.png ...)."""
    images_dir, _ = write_synthetic_dataset(tmp_path / "data", 3, 64, 64, seed=0)
    return images_dir


# ============================================================================ 17.5 --outputs
def test_outputs_mask_and_csv_write_only_those(photos, tmp_path):
    out = tmp_path / "out"
    result = run("segment", photos, "--out", out, "--method", "exg", "--outputs", "mask,csv")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    stems = [p.stem for p in sorted(photos.iterdir())]
    assert written == sorted([OUTPUTS_MANIFEST, "results.csv", *(f"{s}_mask.png" for s in stems)])
    expected = tools.segment_vegetation(sorted(photos.iterdir()), method="exg")
    for stem, mask in zip(stems, expected):
        np.testing.assert_array_equal(png(out / f"{stem}_mask.png"), (mask > 0).astype(np.uint8) * 255)
    rows = read_csv(out / "results.csv")
    assert [int(r["plant_pixels"]) for r in rows] == [int(m.sum()) for m in expected]


def test_default_outputs_are_all_four_and_overlay_only_is_allowed(photos, tmp_path):
    result = run("segment", photos, "--out", tmp_path / "all", "--method", "exg")
    assert result.exit_code == 0, result.output
    kinds = {p.name.rsplit("_", 1)[-1] for p in (tmp_path / "all").glob("*.png")}
    assert kinds == {"mask.png", "cutout.png", "overlay.png"}
    assert (tmp_path / "all" / "results.csv").is_file()
    result = run("segment", photos, "--out", tmp_path / "overlay", "--method", "exg", "--outputs", "Overlay")
    assert result.exit_code == 0, result.output
    assert "results in" in result.output and "results.csv" not in result.output
    assert {p.name.rsplit("_", 1)[-1] for p in (tmp_path / "overlay").glob("*.png")} == {"overlay.png"}
    assert not (tmp_path / "overlay" / "results.csv").exists()


def test_outputs_refuses_unknown_names(photos, tmp_path):
    result = run("segment", photos, "--out", tmp_path / "out", "--outputs", "mask,thumbnails")
    assert result.exit_code == 2
    assert "expected a comma list of mask, cutout, overlay, csv" in result.output
    assert "'mask,thumbnails'" in result.output
    assert not (tmp_path / "out").exists()


def test_report_links_overlays_only_when_written(photos, tmp_path):
    result = run(
        "segment", photos, "--out", tmp_path / "o", "--method", "exg", "--outputs", "csv", "--report"
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "<a href=" not in page and page.count('class="overlay" src=') == 3


def test_segment_images_yields_each_photo_with_its_mask(photos):
    files = sorted(photos.iterdir())
    results = list(tools.segment_images(photos, method="exg"))
    assert [r.path for r in results] == files
    for result, expected in zip(results, tools.segment_vegetation(files, method="exg")):
        assert result.error is None and result.mask.dtype == np.bool_ and result.image.shape == (64, 64, 3)
        np.testing.assert_array_equal(result.mask, expected > 0)


def test_segment_images_returns_a_broken_file_and_goes_on(photos, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    files = [*sorted(photos.iterdir())[:2], broken]
    results = list(tools.segment_images(files, method="exg", errors="return"))
    assert [r.error is None for r in results] == [True, True, False]
    assert "broken.png" in str(results[2].error) and results[2].mask is None
    with pytest.raises(ValueError, match="broken.png"):
        list(tools.segment_images(files, method="exg"))
    with pytest.raises(ValueError, match="`errors`"):
        tools.segment_images(files, errors="skip")  # checked at the call, before any file is read


# ============================================================================ 20.8 output folder = input folder
def test_segment_into_its_own_input_folder_never_reads_its_outputs(photos):
    first = run("segment", photos, "--out", photos, "--method", "exg")
    assert first.exit_code == 0, first.output
    listed = (photos / OUTPUTS_MANIFEST).read_text(encoding="utf-8").splitlines()
    assert "plant_0000_mask.png" in listed and "results.csv" in listed
    again = run("segment", photos, "--out", photos, "--method", "exg")
    assert again.exit_code == 0, again.output
    assert "Segmented 3 image(s)" in again.output  # not the 9 PNGs the first run wrote
    assert [Path(r["file"]).name for r in read_csv(photos / "results.csv")] == [
        "plant_0000.png",
        "plant_0001.png",
        "plant_0002.png",
    ]


def test_segment_refuses_to_overwrite_a_users_file(photos):
    users_mask = photos / "plant_0001_mask.png"
    Image.fromarray(np.full((64, 64), 255, dtype=np.uint8)).save(users_mask)
    before = users_mask.read_bytes()
    result = run("segment", photos, "--out", photos, "--method", "exg")
    assert result.exit_code == 1
    assert f"Refusing to overwrite '{users_mask}': dpp segment did not write it" in result.output
    assert "choose another --out folder" in result.output
    assert users_mask.read_bytes() == before
    assert sorted(p.name for p in photos.iterdir()) == [
        "plant_0000.png",
        "plant_0001.png",
        "plant_0001_mask.png",
        "plant_0002.png",
    ]  # nothing written, not even the manifest


def test_segment_refuses_to_overwrite_a_results_csv_it_did_not_write(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("my notes\n", encoding="utf-8")
    result = run("segment", photos, "--out", out, "--method", "exg")
    assert (
        result.exit_code == 1 and "Refusing to overwrite" in result.output and "results.csv" in result.output
    )
    assert (out / "results.csv").read_text(encoding="utf-8") == "my notes\n"
    # A folder dpp wrote before is written again without complaint.
    assert run("segment", photos, "--out", tmp_path / "o2", "--method", "exg").exit_code == 0
    assert run("segment", photos, "--out", tmp_path / "o2", "--method", "exg").exit_code == 0


@pytest.mark.parametrize("command", ["predict", "measure"])
def test_predict_and_measure_guard_the_output_folder_as_segment_does(photos, command):
    users = photos / ("plant_0001_mask.png" if command == "predict" else "plants.csv")
    users.write_bytes(b"mine")
    if command == "predict":
        args, done = ("predict", tools.WEIGHTS_DIR, photos), "Predicted 3 image(s)"
    else:
        args, done = ("measure", photos, "--method", "exg"), "in 3 photo(s)"
    refused = run(*args, "--out", photos)
    assert refused.exit_code == 1
    assert f"Refusing to overwrite '{users}': dpp {command} did not write it" in refused.output
    assert users.read_bytes() == b"mine" and not (photos / OUTPUTS_MANIFEST).exists()
    users.unlink()
    for _ in range(2):  # the second run neither refuses its own files nor reads them as photos
        result = run(*args, "--out", photos)
        assert result.exit_code == 0 and done in result.output, result.output


def test_growth_refuses_to_overwrite_a_users_file(photos, tmp_path):
    measured = tmp_path / "measured"
    assert run("measure", photos, "--method", "exg", "--out", measured).exit_code == 0
    out = tmp_path / "growth"
    out.mkdir()
    (out / "growth.csv").write_text("my table\n", encoding="utf-8")
    args = ("growth", measured / "plants.csv", "--time-from-name", r"plant_(\d+)", "--out", out)
    result = run(*args)
    assert (
        result.exit_code == 1 and "Refusing to overwrite" in result.output and "dpp growth" in result.output
    )
    assert (out / "growth.csv").read_text(encoding="utf-8") == "my table\n"
    (out / "growth.csv").unlink()
    assert run(*args).exit_code == 0 and run(*args).exit_code == 0


# ============================================================================ 20.12 / 20.13 via subprocess
# As root every file is readable, so the command drops to 'nobody' after importing what it needs: the
# interpreter itself may live in a folder only root can read.
_AS_NOBODY = """
import os, sys
import PIL.Image
import deepplantphenomics.cli as cli, deepplantphenomics.tools
PIL.Image.init()
os.setgid(65534)
os.setuid(65534)
sys.argv = ["dpp", *sys.argv[1:]]
cli.main()
"""


def test_one_unreadable_file_is_reported_and_the_rest_processed():
    folder = Path(tempfile.mkdtemp(prefix="dpp-unreadable-"))  # not under pytest's root-only tmp folder
    try:
        folder.chmod(0o777)
        for i in range(3):
            image, _ = generate_plant_image(64, 64, rng=i)
            Image.fromarray(image).save(folder / f"x{i}.png")
            (folder / f"x{i}.png").chmod(0o644)
        (folder / "x1.png").chmod(0)
        command = [sys.executable, "-m", "deepplantphenomics"]
        if os.geteuid() == 0:
            command = [sys.executable, "-c", _AS_NOBODY]
        completed = subprocess.run(
            [*command, "segment", "x0.png", "x1.png", "x2.png", "--out", "out", "--method", "exg"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        assert completed.returncode == 1, completed.stderr  # docs/cli.md: some files failed
        errors = error_lines(completed.stderr)
        assert errors[0] == "Error: Cannot read image file 'x1.png': [Errno 13] Permission denied: 'x1.png'"
        assert errors[-1] == "Error: 1 of 3 input(s) could not be processed: x1.png."
        assert "not readable" not in completed.stderr  # not click's up-front refusal of the whole run
        assert [r["file"] for r in read_csv(folder / "out" / "results.csv")] == ["x0.png", "x2.png"]
        assert (folder / "out" / "x2_mask.png").is_file() and not (folder / "out" / "x1_mask.png").exists()
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(sys.platform != "linux", reason="bytes file names that are not UTF-8: Linux")
def test_a_non_utf8_file_name_gets_its_row(tmp_path):
    image, _ = generate_plant_image(64, 64, rng=0)
    folder = os.fsencode(tmp_path / "photos")
    os.mkdir(folder)
    name = b"caf\xe9.png"  # Latin-1, as zips made on Windows hold them
    Image.fromarray(image).save(os.path.join(folder, name), format="PNG")
    completed = subprocess.run(
        [sys.executable, "-m", "deepplantphenomics", "segment", folder, b"--out", b"out", b"--method", b"exg",
         b"--report"],
        cwd=tmp_path, capture_output=True, check=False,
    )  # fmt: skip
    stderr = completed.stderr.decode("utf-8")
    assert completed.returncode == 0, stderr
    assert "Segmented 1 image(s)" in completed.stdout.decode("utf-8")
    (row,) = read_csv(tmp_path / "out" / "results.csv")
    assert row["file"] == os.path.join(str(tmp_path / "photos"), "caf\\xe9.png")
    assert int(row["plant_pixels"]) == int(tools.segment_image(image, "exg").sum())
    assert os.path.isfile(os.path.join(os.fsencode(tmp_path), b"out", b"caf\xe9_mask.png"))
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 'href="caf%E9_overlay.png"' in page and "caf\\xe9.png" in page


# ============================================================================ 17.7 the evaluation report
def test_evaluate_report_shows_true_fraction_area_ratio_and_links_full_size_overlays(tmp_path):
    images_dir, masks_dir = write_synthetic_dataset(tmp_path / "data", 2, 64, 64, seed=1)
    out = tmp_path / "report"
    result = run(
        "evaluate", "--images", images_dir, "--masks", masks_dir, "--method", "exg", "--report", "--out", out
    )
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    predicted = tools.segment_vegetation(sorted(images_dir.iterdir()), method="exg")
    fractions = []
    for (image_path, mask), mask_path in zip(
        zip(sorted(images_dir.iterdir()), predicted), sorted(masks_dir.iterdir())
    ):
        truth = png(mask_path) > 127
        true_fraction = float(truth.mean())
        ratio = float(mask.sum() / truth.sum())
        fractions.append((float(mask.mean()), true_fraction))
        assert f'data-value="{true_fraction!r}">{100 * true_fraction:.1f} %</td>' in page
        assert f">{ratio:.3f}</td>" in page
        overlay = out / f"{image_path.stem}_overlay.png"
        assert f'<a href="{overlay.name}">' in page
        assert png(overlay).shape == (64, 64, 3)  # full size, beside report.html
    mean_predicted = sum(p for p, _ in fractions) / 2
    mean_true = sum(t for _, t in fractions) / 2
    assert f"mean true plant fraction {100 * mean_true:.1f} %" in page
    assert f"area ratio (predicted / true) {mean_predicted / mean_true:.3f}" in page
    assert "true fraction" in page and "area ratio (predicted / true)" in page


def test_training_curves_leave_out_a_constant_learning_rate(tmp_path):
    pytest.importorskip("matplotlib")
    constant = [{"epoch": e, "train_loss": 1 / e, "learning_rate": 1e-3} for e in (1, 2, 3)]
    changing = [{**record, "learning_rate": 1e-3 / record["epoch"]} for record in constant]
    with Image.open(save_training_curves(constant, tmp_path, "constant.png")) as image:
        assert image.size == (420, 340)  # the loss panel alone
    with Image.open(save_training_curves(changing, tmp_path, "changing.png")) as image:
        assert image.size == (840, 340)  # loss and learning rate


# ============================================================================ 20.15 memory of big photos
def _traced_peak(function, *args) -> int:
    tracemalloc.start()
    try:
        function(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_colour_index_takes_a_few_bytes_per_pixel():
    image, _ = generate_plant_image(256, 256, rng=0)
    small, big = np.tile(image, (4, 4, 1)), np.tile(image, (8, 8, 1))  # 1 and 4 MP
    index_plant(image, "exg")  # first-call allocations out of the measurement
    extra = _traced_peak(index_plant, big, "exg") - _traced_peak(index_plant, small, "exg")
    assert extra / (big.shape[0] * big.shape[1] - small.shape[0] * small.shape[1]) < 8  # was ~50
    np.testing.assert_array_equal(index_plant(big, "cive"), index_mask(big, "cive") > 0)


def test_network_batches_by_pixels_not_photo_count(photos, monkeypatch):
    network, _ = tools._network("network")
    batches: list[int] = []
    hook = network.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        files = sorted(photos.iterdir())
        default = tools.segment_vegetation(files, batch_size=8)
        assert batches and max(batches) == 3  # three small photos share a network call
        batches.clear()
        monkeypatch.setattr(tools, "NETWORK_BATCH_PIXELS", 64 * 64)  # one such photo's pixels
        alone = tools.segment_vegetation(files, batch_size=8)
    finally:
        hook.remove()
    assert batches and max(batches) == 1
    for a, b in zip(default, alone):
        np.testing.assert_array_equal(a, b)


def test_views_made_band_by_band_give_the_same_masks(tmp_path, monkeypatch):
    # A photo above the card's largest view (0.35 MP), so every view is a resize; bands of 37 rows.
    image, _ = generate_plant_image(600, 800, rng=3)
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    monkeypatch.setattr(tools, "_VIEW_BAND_PIXELS", 800 * 37)
    (from_file,) = tools.segment_vegetation([path])
    np.testing.assert_array_equal(from_file, tools.segment_image(image))  # whole-image float resize
    assert 0.05 < from_file.mean() < 0.95
