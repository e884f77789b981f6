"""Measuring plants vs segmenting them: seconds for one 1296x966 photo (CWFID 002 when the shared data is
there, else a synthetic photo of that size), median of several runs, in one process.

    python bench/measure_plants.py [--photo PATH --mask PATH] [--rounds 5] [--threads 2]

Prints one JSON line: measure_plants (no grid and a 4x6 grid), draw_plants, and the vegetation tool's
segment_image with 'network', 'network-fast' and 'exg' on the same photo.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from deepplantphenomics import measure, tools
from deepplantphenomics.data.io import read_binary_mask, read_image
from deepplantphenomics.synthetic import generate_plant_image

CWFID = Path(__file__).resolve().parents[2] / "shared" / "data" / "cwfid"


def _median_seconds(function, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photo", type=Path, default=CWFID / "images" / "002.png")
    parser.add_argument("--mask", type=Path, default=CWFID / "masks" / "002.png")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.photo.is_file() and args.mask.is_file():
        image, mask, source = read_image(args.photo), read_binary_mask(args.mask)[0], str(args.photo)
    else:
        image, mask = generate_plant_image(966, 1296, rng=0)
        source = "synthetic 1296x966"
    result = measure.measure_plants(image, mask)
    seconds = {
        "measure_plants": _median_seconds(lambda: measure.measure_plants(image, mask), args.rounds),
        "measure_plants_grid_4x6": _median_seconds(
            lambda: measure.measure_plants(image, mask, grid=(4, 6)), args.rounds
        ),
        "draw_plants": _median_seconds(lambda: measure.draw_plants(image, result), args.rounds),
    }
    for method in ("network", "network-fast", "exg"):
        tools.segment_image(image, method=method)  # warm-up: weights loaded, caches filled
        seconds[f"segment_{method}"] = _median_seconds(
            lambda m=method: tools.segment_image(image, method=m), 3
        )
    out = {
        "benchmark": "measure_plants",
        "photo": source,
        "size": [int(image.shape[1]), int(image.shape[0])],
        "plants": len(result.plants),
        "specks": result.specks,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
