"""Achieved GFLOP/s of training DPP's example network, against this CPU's measured fp32 matmul peak.

- FLOPs of one training step (forward and backward; batch 4, 256x256) are counted with
  ``torch.utils.flop_counter.FlopCounterMode`` around a one-step ``begin_training()`` of the library's own
  network, so the count is of exactly what the library runs.
- The step rate comes from the training loops of ``train_throughput.py`` (``library`` and the hand-written
  NCHW ``naive`` loop), each in a fresh process, interleaved over ``--rounds`` rounds (median).
- The peak is the best of several large fp32 ``torch.mm`` calls (``--matmul-size``, default 4096) with the
  same number of threads, in a fresh process.

Usage: ``python bench/flops.py [--rounds 3]``; prints one JSON line.
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
    machine,
    median,
    report_worker,
    run_worker,
    spread,
    threads_env,
    write_images,
)
from train_throughput import SOURCE_SIZE, declare_library_network  # noqa: E402

SCRIPT = Path(__file__).resolve()
TRAIN_SCRIPT = SCRIPT.parent / "train_throughput.py"


def count_worker(args: argparse.Namespace) -> dict:
    """FLOPs of one library training step (one batch, one epoch)."""
    from torch.utils.flop_counter import FlopCounterMode

    import deepplantphenomics as dpp

    data = Path(args.data)
    model = dpp.SemanticSegmentationModel(debug=False, save_checkpoints=False, save_dir=args.work)
    model.set_batch_size(args.batch)
    model.set_image_dimensions(args.size, args.size, 3)
    model.set_resize_images(True)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.set_random_seed(0)
    model.set_maximum_training_epochs(1)
    model.load_dataset_from_directory_with_segmentation_masks(str(data / "images"), str(data / "masks"))
    declare_library_network(model, "seed")
    counter = FlopCounterMode(display=False)
    with counter:
        model.begin_training()
    return {"flops_per_step": int(counter.get_total_flops())}


def peak_worker(args: argparse.Namespace) -> dict:
    """Best fp32 matmul rate of a few large ``torch.mm`` calls."""
    import torch

    n = args.matmul_size
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator)
    b = torch.randn(n, n, generator=generator)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(args.matmul_repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * n**3 / best / 1e9, "threads": torch.get_num_threads()}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per process")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--matmul-repeats", type=int, default=5)
    parser.add_argument("--source-size", type=int, nargs=2, default=SOURCE_SIZE, metavar=("H", "W"))
    parser.add_argument("--threads", type=int, help="intra-op threads of every worker (default: torch's)")
    parser.add_argument("--worker", choices=["count", "peak"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        report_worker((count_worker if args.worker == "count" else peak_worker)(args))
        return
    info = machine()
    if args.threads:
        info["torch_threads"] = args.threads
    rates: dict[str, list[float]] = {"library": [], "naive": []}
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="dpp-bench-flops-") as tmp:
        root = Path(tmp)
        write_images(root / "data", 32, *args.source_size)
        one_batch = root / "one_batch"
        write_images(one_batch, args.batch, *args.source_size)
        shape = ["--size", str(args.size), "--batch", str(args.batch)]
        flops = run_worker(
            SCRIPT, ["--worker", "count", "--data", str(one_batch), "--work", str(root / "count"), *shape]
        )
        flops_per_image = flops["flops_per_step"] / args.batch
        for _ in range(args.rounds):
            peak_args = ["--worker", "peak", "--matmul-size", str(args.matmul_size)]
            peaks.append(
                run_worker(SCRIPT, [*peak_args, "--matmul-repeats", str(args.matmul_repeats)])["gflops"]
            )
            for case in rates:
                worker = ["--worker", case, "--network", "seed", "--data", str(root / "data")]
                worker += [
                    "--work",
                    str(root / case),
                    *shape,
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                ]
                rates[case].append(
                    run_worker(TRAIN_SCRIPT, worker, threads_env(args.threads))["images_per_s"]
                )
    peak = max(peaks)
    out: dict = {
        "benchmark": "flops",
        "network": f"DPP example network, training step (forward + backward), batch {args.batch}, "
        f"{args.size}x{args.size}x3",
        "rounds": args.rounds,
        "gflop_per_image": round(flops_per_image / 1e9, 4),
        "matmul_peak_gflops": round(peak, 2),
        "matmul_peak_spread": spread(peaks),
        "matmul": f"torch.mm {args.matmul_size}x{args.matmul_size} fp32, best of {args.matmul_repeats}",
        "machine": info,
    }
    for case, values in rates.items():
        achieved = flops_per_image * median(values) / 1e9
        out[case] = {
            "images_per_s": round(median(values), 3),
            "gflops": round(achieved, 2),
            "fraction_of_peak": round(achieved / peak, 3),
        }
    emit(out)


if __name__ == "__main__":
    main()
