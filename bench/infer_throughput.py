"""Inference throughput (images/s) from files: ``forward_pass_with_file_inputs`` against decode + resize +
forward written by hand.

Both sides start from the same PNG files (384x512 photos) and do the whole job: decode, resize to the
256x256 network input (antialiased bilinear), standardise each image, run the network in batches of 4 and
return (H, W, 1) float32 foreground probabilities as numpy arrays. The hand-written side is what a PyTorch
user writes: NCHW fp32 under ``torch.no_grad()``, PIL decoding, the network written directly in PyTorch
with the same layers (``train_throughput.seed_network_by_hand`` / ``unet_by_hand``; weights random, which
does not change the speed).

Cases run in fresh processes, interleaved over ``--rounds`` rounds (median reported): ``library``,
``naive``, ``library_channels_last`` (``DPP_CHANNELS_LAST=1``), and for the seed network
``library_malloc_tuning_off`` (``DPP_MALLOC_TUNING=0``) and ``naive_channels_last``. A first call on one
batch warms each process up and is not timed.

Usage: ``python bench/infer_throughput.py [--rounds 7] [--models seed,unet]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    emit,
    image_files,
    machine,
    peak_rss_mb,
    report_worker,
    run_worker,
    summarize,
    threads_env,
    write_images,
)
from train_throughput import (  # noqa: E402
    SOURCE_SIZE,
    declare_library_network,
    init_like_library,
    seed_network_by_hand,
    unet_by_hand,
)

SCRIPT = Path(__file__).resolve()
CASES: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "seed/library": ("seed", ["library"], {}),
    "seed/naive": ("seed", ["naive"], {}),
    "seed/library_malloc_tuning_off": ("seed", ["library"], {"DPP_MALLOC_TUNING": "0"}),
    "seed/library_channels_last": ("seed", ["library"], {"DPP_CHANNELS_LAST": "1"}),
    "seed/naive_channels_last": ("seed", ["naive", "--channels-last"], {}),
    "unet/library": ("unet", ["library"], {}),
    "unet/library_channels_last": ("unet", ["library"], {"DPP_CHANNELS_LAST": "1"}),
    "unet/naive": ("unet", ["naive"], {}),
}
TARGETS = {"seed": 1.4, "unet": None}


def rates(images: int, seconds: float, cpu_seconds: float) -> dict:
    return {
        "images_per_s": images / seconds,
        "images_per_cpu_s": images / cpu_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def library_worker(args: argparse.Namespace) -> dict:
    import deepplantphenomics as dpp

    files = [str(f) for f in image_files(Path(args.data))][: args.images]
    model = dpp.SemanticSegmentationModel(debug=False, save_checkpoints=False, save_dir=args.work)
    model.set_batch_size(args.batch)
    model.set_image_dimensions(args.size, args.size, 3)
    model.set_resize_images(True)
    model.set_random_seed(0)
    declare_library_network(model, args.network)
    model.forward_pass_with_file_inputs(files[: args.batch])  # warm-up, untimed
    start, cpu = time.perf_counter(), time.process_time()
    probabilities = model.forward_pass_with_file_inputs(files)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    assert probabilities.shape == (len(files), args.size, args.size, 1)
    return rates(len(files), seconds, cpu_seconds)


def naive_worker(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    files = image_files(Path(args.data))[: args.images]
    torch.manual_seed(0)
    network = seed_network_by_hand() if args.network == "seed" else unet_by_hand()
    init_like_library(network, "xavier", seed=0)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    network = network.to(memory_format=layout).eval()

    def load(path: Path) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
        pixels = F.interpolate(pixels[None], size=(args.size, args.size), mode="bilinear", antialias=True)[0]
        return (pixels - pixels.mean()) / pixels.std(unbiased=False).clamp_min(1 / math.sqrt(pixels.numel()))

    def predict(paths: list[Path]) -> list[np.ndarray]:
        outputs = []
        with torch.no_grad():
            for start in range(0, len(paths), args.batch):
                batch = torch.stack([load(p) for p in paths[start : start + args.batch]])
                probs = torch.sigmoid(network(batch.contiguous(memory_format=layout)))
                outputs.extend(p.permute(1, 2, 0).numpy().astype(np.float32) for p in probs)
        return outputs

    predict(files[: args.batch])  # warm-up, untimed
    start, cpu = time.perf_counter(), time.process_time()
    outputs = predict(files)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    assert len(outputs) == len(files)
    return rates(len(files), seconds, cpu_seconds)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case (median reported)")
    parser.add_argument("--models", default="seed,unet", help="comma-separated: seed, unet")
    parser.add_argument("--cases", default="", help="comma-separated case names to run (default: all)")
    parser.add_argument("--size", type=int, default=256, help="network input height and width")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--images", type=int, default=64, help="files predicted per timed call (seed)")
    parser.add_argument("--unet-images", type=int, default=32, help="files predicted per timed call (U-Net)")
    parser.add_argument("--source-size", type=int, nargs=2, default=SOURCE_SIZE, metavar=("H", "W"))
    parser.add_argument("--threads", type=int, help="intra-op threads of every worker (default: torch's)")
    parser.add_argument("--worker", choices=["library", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--network", choices=["seed", "unet"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        report_worker((library_worker if args.worker == "library" else naive_worker)(args))
        return
    models = [m for m in args.models.split(",") if m]
    wanted = [c for c in args.cases.split(",") if c]
    cases = {
        name: case for name, case in CASES.items() if case[0] in models and (not wanted or name in wanted)
    }
    results: dict[str, list[dict]] = {name: [] for name in cases}
    info = machine()
    if args.threads:
        info["torch_threads"] = args.threads
    with tempfile.TemporaryDirectory(prefix="dpp-bench-infer-") as tmp:
        data = Path(tmp) / "data"
        images_dir, _ = write_images(data, max(args.images, args.unet_images), *args.source_size, masks=False)
        for _ in range(args.rounds):
            for name, (network, worker_args, env) in cases.items():
                count = args.images if network == "seed" else args.unet_images
                worker = ["--worker", worker_args[0], *worker_args[1:], "--network", network]
                common = [
                    "--data",
                    str(images_dir),
                    "--work",
                    str(Path(tmp) / "state"),
                    "--size",
                    str(args.size),
                ]
                common += ["--batch", str(args.batch), "--images", str(count)]
                results[name].append(
                    run_worker(SCRIPT, worker + common, {**env, **threads_env(args.threads)})
                )
    out: dict = {
        "benchmark": "infer_throughput",
        "unit": "images/s (decode + resize + forward, from PNG files; wall clock and per CPU-second)",
        "rounds": args.rounds,
        "input": f"{args.size}x{args.size}x3 from {args.source_size[0]}x{args.source_size[1]} PNG",
        "batch": args.batch,
        "machine": info,
    }
    for network in models:
        if any(n.startswith(network + "/") for n in results):
            out[network] = summarize(results, network, TARGETS[network])
    emit(out)


if __name__ == "__main__":
    main()
