"""Run every benchmark (``make bench``); each prints one JSON line, passed through as it finishes.

The benchmarks take a while on a small CPU (about an hour on 2 cores with the default rounds): they run
every case in fresh processes, interleaved over several rounds. Run them on a quiet machine — other jobs on
the same cores distort every figure. ``--quick`` runs each once on tiny sizes (a smoke test, not figures).

Usage: ``python bench/run_all.py [--only train_throughput,flops] [--quick] [--out results.jsonl]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = (
    "train_throughput",
    "infer_throughput",
    "tiled_inference",
    "memory",
    "flops",
    "end_to_end",
    "bf16_accuracy",
    "segment_speed",
)

# Tiny sizes that keep every code path but finish in seconds; the figures mean nothing.
QUICK_ARGS: dict[str, list[str]] = {
    "train_throughput": [
        *"--rounds 1 --size 32 --steps 2 --unet-steps 2 --warmup 1 --images 8 --source-size 48 64".split(),
        "--cases",
        "seed/library_channels_last,seed/library_nchw,seed/naive_channels_last,unet/library,unet/naive,"
        "unet/naive_malloc_tuned",
    ],
    "infer_throughput": [
        *"--rounds 1 --size 32 --images 4 --unet-images 4 --source-size 48 64".split(),
        "--cases",
        "seed/library_channels_last,seed/naive_channels_last,unet/library,unet/naive",
    ],
    "end_to_end": "--rounds 1 --epochs 1 --images 4 --size 32 --source-size 48 64".split(),
    "bf16_accuracy": "--epochs 1 --train-images 4 --unseen-images 1 --size 32".split(),
    "tiled_inference": "--rounds 1 --images 1 --height 72 --width 96 --tile 32".split(),
    "memory": (
        "--image-counts 8 --megapixels 0.005 --size 32 --infer-images 4 --source-size 48 64 "
        "--segment-megapixels 0.01 --segment-photos 2"
    ).split(),
    "flops": (
        "--rounds 1 --size 32 --steps 2 --warmup 1 --matmul-size 128 --matmul-repeats 2 --source-size 48 64"
    ).split(),
    "segment_speed": "--rounds 1 --photos 2 --method exg --height 48 --width 64".split(),
}


def command(name: str, quick: bool) -> list[str]:
    return [sys.executable, str(BENCH / f"{name}.py"), *(QUICK_ARGS[name] if quick else [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks, not figures")
    parser.add_argument("--out", help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SCRIPTS)
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(SCRIPTS)}")
    failed = []
    for name in names:
        # stdout carries the JSON line; stderr (progress, errors) goes straight to the terminal.
        proc = subprocess.run(command(name, args.quick), stdout=subprocess.PIPE, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            failed.append(name)
            print(json.dumps({"benchmark": name, "error": f"exit code {proc.returncode}"}), flush=True)
            continue
        print(lines[-1], flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as handle:
                handle.write(lines[-1] + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
