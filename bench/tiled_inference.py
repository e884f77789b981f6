"""Full-resolution inference on 1296x966 photos (the size of DPP's field images): megapixels per second.

Cases, each in a fresh process, interleaved over ``--rounds`` rounds (median reported):

- ``vegetation_tool``: ``deepplantphenomics.tools.segment_vegetation(files)`` with the pretrained weights
  shipped in ``deepplantphenomics/weights/vegetation`` (skipped, and said so, when they are missing). How it
  covers the image (one full-size pass or tiles) is whatever its model card says; the JSON reports it.
- ``tiled_unet``: the library's tiled path, ``set_patch_size(256, 256)`` with ``use_predefined_model('u-net')``
  and random weights, through ``forward_pass_with_file_inputs`` (overlapping 256x256 tiles, 4 per batch,
  blended without seams).

Both include decoding the PNG files. A first call on one file warms each process up and is not timed.

Usage: ``python bench/tiled_inference.py [--rounds 5] [--images 4]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    emit,
    image_files,
    machine,
    median,
    peak_rss_mb,
    report_worker,
    run_worker,
    spread,
    write_images,
)

SCRIPT = Path(__file__).resolve()
HEIGHT, WIDTH = 966, 1296


def vegetation_weights_present() -> bool:
    from deepplantphenomics.tools import WEIGHTS_DIR

    return (WEIGHTS_DIR / "model.safetensors").is_file()


def vegetation_worker(args: argparse.Namespace) -> dict:
    from deepplantphenomics import tools

    files = image_files(Path(args.data))[: args.images]
    tools.segment_vegetation(files[:1])  # warm-up: loads the weights, selects kernels
    start = time.perf_counter()
    masks = tools.segment_vegetation(files)
    seconds = time.perf_counter() - start
    pixels = sum(m.size for m in masks)
    return {"megapixels_per_s": pixels / 1e6 / seconds, "peak_rss_mb": peak_rss_mb()}


def tiled_worker(args: argparse.Namespace) -> dict:
    import deepplantphenomics as dpp

    files = [str(f) for f in image_files(Path(args.data))[: args.images]]
    model = dpp.SemanticSegmentationModel(debug=False, save_checkpoints=False, save_dir=args.work)
    model.set_image_dimensions(args.height, args.width, 3)
    model.set_patch_size(args.tile, args.tile)
    model.set_batch_size(4)
    model.set_random_seed(0)
    model.use_predefined_model("u-net")
    model.forward_pass_with_file_inputs(files[:1])  # warm-up
    start = time.perf_counter()
    probabilities = model.forward_pass_with_file_inputs(files)
    seconds = time.perf_counter() - start
    pixels = sum(p.shape[0] * p.shape[1] for p in probabilities)
    return {"megapixels_per_s": pixels / 1e6 / seconds, "peak_rss_mb": peak_rss_mb()}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case (median reported)")
    parser.add_argument("--images", type=int, default=4, help="files per timed call")
    parser.add_argument("--height", type=int, default=HEIGHT)
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument(
        "--tile", type=int, default=256, help="patch size of the tiled U-Net (multiple of 16)"
    )
    parser.add_argument("--cases", default="vegetation_tool,tiled_unet")
    parser.add_argument("--worker", choices=["vegetation_tool", "tiled_unet"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        report_worker((vegetation_worker if args.worker == "vegetation_tool" else tiled_worker)(args))
        return
    cases = [c for c in args.cases.split(",") if c]
    out: dict = {
        "benchmark": "tiled_inference",
        "unit": "megapixels/s (decode + predict, from PNG files)",
        "rounds": args.rounds,
        "image": f"{args.width}x{args.height} RGB PNG",
        "machine": machine(),
    }
    if "vegetation_tool" in cases and not vegetation_weights_present():
        cases.remove("vegetation_tool")
        out["vegetation_tool"] = "skipped: no weights in deepplantphenomics/weights/vegetation"
    results: dict[str, list[float]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="dpp-bench-tiled-") as tmp:
        images_dir, _ = write_images(Path(tmp) / "data", args.images, args.height, args.width, masks=False)
        for _ in range(args.rounds):
            for case in cases:
                worker = ["--worker", case, "--data", str(images_dir), "--work", str(Path(tmp) / "state")]
                worker += [
                    "--images",
                    str(args.images),
                    "--height",
                    str(args.height),
                    "--width",
                    str(args.width),
                ]
                worker += ["--tile", str(args.tile)]
                results[case].append(run_worker(SCRIPT, worker)["megapixels_per_s"])
    if "vegetation_tool" in results:
        from deepplantphenomics.tools import model_card

        card = model_card().get("inference", {})
        out["vegetation_tool"] = {
            "megapixels_per_s": round(median(results["vegetation_tool"]), 4),
            "spread": spread(results["vegetation_tool"]),
            "network": "pretrained vegetation network (deepplantphenomics/weights/vegetation)",
            "inference": card,
        }
    if "tiled_unet" in results:
        out["tiled_unet"] = {
            "megapixels_per_s": round(median(results["tiled_unet"]), 4),
            "spread": spread(results["tiled_unet"]),
            "network": f"use_predefined_model('u-net'), random weights, set_patch_size({args.tile}, {args.tile})",
        }
    emit(out)


if __name__ == "__main__":
    main()
