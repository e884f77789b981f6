"""Peak memory (resident set) and time of training and inference, and how they grow with the data.

Every case runs in a fresh process that reports its own peak resident set size (``VmHWM``; not ``ru_maxrss``,
which Linux carries over from the parent across ``exec``), so no case inherits another's memory, nor that of
the parent drawing the test images:

- ``train_N``: ``begin_training()`` of DPP's example network (256x256 inputs resized from 384x512 PNG
  files, batch 4, one epoch, no test or validation split) on N = 10, 100 and 1,000 images (``--max-images``
  caps N). Reported: peak RSS, wall time of ``begin_training()`` (decoding included) and the training
  loop's images/s. The decoded set is held in memory as uint8, 192 KiB per 256x256 RGB image, so memory
  should grow by about that per image and time linearly.
- ``infer``: ``forward_pass_with_file_inputs`` of the same network on 64 files.
- ``tiled_MP``: full-resolution tiled inference (``set_patch_size(256, 256)``, ``use_predefined_model('u-net')``,
  random weights) of one 4:3 image of MP = 1, 5, 20 and 50 megapixels (``--max-megapixels`` caps it).
  Reported: peak RSS, RSS before the call, time and megapixels/s. Tiling should keep memory flat: the
  acceptance target is peak(50 MP) <= 1.5 x peak(5 MP). The returned (H, W, 1) float32 probabilities (4 bytes
  per pixel) cannot be avoided; ``unavoidable_mb`` shows them. The decoded image (3 bytes per pixel) is held in
  the last bytes of that same array until the tile loop overwrites it, so it costs nothing more; while the file
  is read, Pillow's own decoded copy (4 bytes per pixel for RGB) exists beside it, before the loop starts.

- ``segment_MP``: the vegetation tool on 4:3 photos of MP = 5 and 50 megapixels (``--segment-megapixels``):
  ``tools.segment_vegetation([photo], method=...)`` for ``network`` and ``exg`` (one photo), and
  ``dpp segment FOLDER --out DIR`` (default outputs: masks, cut-outs, overlays, CSV) of a folder of
  ``--segment-photos`` such photos (default 3). The returned float32 mask (4 bytes per pixel) and the decoded
  photo (3) are the tool's unavoidable part; ``pixels_mb`` is one photo's pixel count in MiB, so peak /
  pixels_mb is the bytes per pixel. ``--baseline DIR`` also runs these cases with another copy of the package
  (e.g. ``git archive main deepplantphenomics | tar -x -C DIR``), for a before/after on the same machine.

Usage: ``python bench/memory.py [--max-images 1000] [--max-megapixels 50] [--cases tiled]``; prints one JSON
line. ``--cases`` runs only some of ``train``, ``infer``, ``tiled`` and ``segment`` (default: all).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    StepTimer,
    current_rss_mb,
    emit,
    image_files,
    machine,
    peak_rss_mb,
    report_worker,
    run_worker,
    write_images,
)
from train_throughput import SOURCE_SIZE, declare_library_network  # noqa: E402

SCRIPT = Path(__file__).resolve()
IMAGE_COUNTS = (10, 100, 1000)
MEGAPIXELS = (1, 5, 20, 50)
FLATNESS_TARGET = 1.5


def four_by_three(megapixels: float) -> tuple[int, int]:
    """(height, width) of a 4:3 image with about ``megapixels`` million pixels."""
    width = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    return round(width * 3 / 4), width


def seed_model(args: argparse.Namespace, work: str):
    import deepplantphenomics as dpp

    model = dpp.SemanticSegmentationModel(
        debug=False, save_checkpoints=False, report_rate=10**9, save_dir=work
    )
    model.set_batch_size(4)
    model.set_image_dimensions(args.size, args.size, 3)
    model.set_resize_images(True)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.set_random_seed(0)
    model.set_maximum_training_epochs(1)
    declare_library_network(model, "seed")
    return model


def train_worker(args: argparse.Namespace) -> dict:
    data = Path(args.data)
    model = seed_model(args, args.work)
    model.load_dataset_from_directory_with_segmentation_masks(str(data / "images"), str(data / "masks"))
    timer = StepTimer()
    before = current_rss_mb()
    start = time.perf_counter()
    model.begin_training()
    seconds = time.perf_counter() - start
    warmup = min(2, max(len(timer.times) - 2, 0))
    rate = timer.images_per_second(4, warmup) if len(timer.times) >= 2 else None
    return {
        "seconds": seconds,
        "loop_images_per_s": rate,
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
    }


def infer_worker(args: argparse.Namespace) -> dict:
    files = [str(f) for f in image_files(Path(args.data))]
    model = seed_model(args, args.work)
    before = current_rss_mb()
    start = time.perf_counter()
    model.forward_pass_with_file_inputs(files)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}


def tiled_worker(args: argparse.Namespace) -> dict:
    import deepplantphenomics as dpp

    files = [str(f) for f in image_files(Path(args.data))]
    model = dpp.SemanticSegmentationModel(debug=False, save_checkpoints=False, save_dir=args.work)
    model.set_image_dimensions(256, 256, 3)
    model.set_patch_size(256, 256)
    model.set_batch_size(4)
    model.set_random_seed(0)
    model.use_predefined_model("u-net")
    before = current_rss_mb()
    start = time.perf_counter()
    probabilities = model.forward_pass_with_file_inputs(files)
    seconds = time.perf_counter() - start
    pixels = probabilities.shape[1] * probabilities.shape[2]
    return {
        "seconds": seconds,
        "megapixels_per_s": pixels / 1e6 / seconds,
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "unavoidable_mb": pixels * 4 / 2**20,
    }


def segment_worker(args: argparse.Namespace) -> dict:
    from deepplantphenomics import tools

    files = image_files(Path(args.data))
    before = current_rss_mb()
    start = time.perf_counter()
    if args.segment_case == "dpp_segment":
        from deepplantphenomics.cli import main as dpp

        try:
            dpp(["segment", args.data, "--out", args.work], standalone_mode=False)
        except SystemExit as exit_:
            if exit_.code:
                raise
    else:
        tools.segment_vegetation(files[:1], method=args.segment_case)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}


def segment_cases(args: argparse.Namespace, root: Path) -> dict:
    """Peak memory of the vegetation tool and ``dpp segment`` on big photos (fresh process per case)."""
    out: dict = {}
    versions = {"": None, "baseline_": args.baseline} if args.baseline else {"": None}
    for megapixels in args.segment_megapixels:
        height, width = four_by_three(megapixels)
        folder = root / f"segment_{megapixels:g}"
        images_dir, _ = write_images(folder, args.segment_photos, height, width, distinct=1, masks=False)
        cases = {}
        for prefix, package in versions.items():
            env = (
                {"PYTHONPATH": os.pathsep.join([package, os.environ.get("PYTHONPATH", "")])}
                if package
                else {}
            )
            for case in ("network", "exg", "dpp_segment"):
                work = ["--data", str(images_dir), "--work", str(root / f"out_{prefix}{case}_{megapixels:g}")]
                result = run_worker(SCRIPT, ["--worker", "segment", "--segment-case", case, *work], env=env)
                cases[prefix + case] = rounded(result)
        out[f"{megapixels:g}"] = {
            "size": f"{width}x{height}",
            "pixels_mb": round(height * width / 2**20, 1),
            "photos_in_folder": args.segment_photos,
            **cases,
        }
        for path in images_dir.glob("*.png"):
            path.unlink()
    return out


WORKERS = {"train": train_worker, "infer": infer_worker, "tiled": tiled_worker, "segment": segment_worker}


def link_subset(source: Path, target: Path, count: int) -> Path:
    """A dataset folder holding the first ``count`` pairs of ``source`` (hard links, or copies)."""
    for folder in ("images", "masks"):
        (target / folder).mkdir(parents=True, exist_ok=True)
        for path in sorted((source / folder).glob("*.png"))[:count]:
            try:
                os.link(path, target / folder / path.name)
            except OSError:
                (target / folder / path.name).write_bytes(path.read_bytes())
    return target


def rounded(result: dict) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--max-images", type=int, default=1000, help="largest training set (of 10, 100, 1000)"
    )
    parser.add_argument(
        "--max-megapixels", type=float, default=50, help="largest tiled image (of 1, 5, 20, 50)"
    )
    parser.add_argument("--image-counts", type=int, nargs="+", default=list(IMAGE_COUNTS))
    parser.add_argument("--megapixels", type=float, nargs="+", default=list(MEGAPIXELS))
    parser.add_argument("--size", type=int, default=256, help="network input height and width")
    parser.add_argument("--infer-images", type=int, default=64)
    parser.add_argument("--source-size", type=int, nargs=2, default=SOURCE_SIZE, metavar=("H", "W"))
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=sorted(WORKERS),
        default=sorted(WORKERS),
        help="cases to run (default: all)",
    )
    parser.add_argument("--segment-megapixels", type=float, nargs="+", default=[5, 50])
    parser.add_argument("--segment-photos", type=int, default=3, help="photos in dpp segment's folder")
    parser.add_argument("--baseline", help="segment cases: also run another copy of the package (a folder)")
    parser.add_argument("--segment-case", choices=("network", "exg", "dpp_segment"), help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        report_worker(WORKERS[args.worker](args))
        return
    counts = sorted({n for n in args.image_counts if n <= args.max_images} or {min(args.image_counts)})
    sizes = sorted({m for m in args.megapixels if m <= args.max_megapixels} or {min(args.megapixels)})
    out: dict = {"benchmark": "memory", "unit": "MiB peak resident set; seconds", "machine": machine()}
    common = ["--size", str(args.size)]
    with tempfile.TemporaryDirectory(prefix="dpp-bench-memory-") as tmp:
        root = Path(tmp)
        full = root / "full"
        if "train" in args.cases or "infer" in args.cases:
            write_images(full, max(max(counts), args.infer_images), *args.source_size)
        training = {}
        for n in counts if "train" in args.cases else ():
            data = link_subset(full, root / f"train_{n}", n)
            work = ["--data", str(data), "--work", str(root / f"state_{n}")]
            result = run_worker(SCRIPT, ["--worker", "train", *work, *common])
            result["seconds_per_image"] = result["seconds"] / n
            training[str(n)] = rounded(result)
        if training:
            out["train"] = training
        if "infer" in args.cases:
            infer = link_subset(full, root / "infer", args.infer_images) / "images"
            work = ["--data", str(infer), "--work", str(root / "state_infer")]
            out["infer"] = {
                "images": args.infer_images,
                **rounded(run_worker(SCRIPT, ["--worker", "infer", *work, *common])),
            }
        tiled = {}
        for megapixels in sizes if "tiled" in args.cases else ():
            height, width = four_by_three(megapixels)
            folder = root / f"tiled_{megapixels:g}"
            images_dir, _ = write_images(folder, 1, height, width, masks=False)
            work = ["--data", str(images_dir), "--work", str(root / "state_tiled")]
            result = run_worker(SCRIPT, ["--worker", "tiled", *work, *common])
            tiled[f"{megapixels:g}"] = {"size": f"{width}x{height}", **rounded(result)}
            for path in images_dir.glob("*.png"):
                path.unlink()  # the 50 MP file is large; free the space before the next one
        if tiled:
            out["tiled"] = tiled
        if "segment" in args.cases:
            out["segment"] = segment_cases(args, root)
    if "5" in tiled and "50" in tiled:
        ratio = tiled["50"]["peak_rss_mb"] / tiled["5"]["peak_rss_mb"]
        out["tiled_peak_ratio_50mp_5mp"] = round(ratio, 3)
        out["tiled_target"] = FLATNESS_TARGET
    if len(training) > 1:
        first, last = training[str(counts[0])], training[str(counts[-1])]
        out["train_growth"] = {
            "images": [counts[0], counts[-1]],
            "peak_rss_mb_per_extra_image": round(
                (last["peak_rss_mb"] - first["peak_rss_mb"]) / (counts[-1] - counts[0]), 4
            ),
            "seconds_ratio": round(last["seconds"] / first["seconds"], 3),
        }
    emit(out)


if __name__ == "__main__":
    main()
