"""Seconds per photo of bulk segmentation: the vegetation tool alone against ``dpp segment`` and its outputs.

All cases segment the same folder of 1296x966 PNG photos (synthetic plants, the size of CWFID's) with the
shipped network (``--method``, default 'network'), decoding included:

- ``tool``: ``tools.segment_vegetation(folder)``, masks kept in memory, nothing written: the floor.
- ``cli_default``: ``dpp segment folder --out DIR``: masks, cut-outs, overlays and results.csv.
- ``cli_mask_csv``: ``dpp segment folder --out DIR --outputs mask,csv``.
- ``cli_default_baseline`` (with ``--baseline DIR``): ``dpp segment`` of another copy of the package (e.g.
  ``git archive main deepplantphenomics | tar -x -C DIR``), to compare before and after on the same machine
  and load.

Reported: wall-clock seconds per photo (median, [min, max]) and the process's CPU seconds per photo (all its
threads; less sensitive to other jobs on the machine). Each case runs in a fresh process; the network is
loaded and run once on one photo before the clock starts. Cases are interleaved over ``--rounds`` rounds, so a
burst of load on the machine hits them alike. ``dpp segment`` runs in-process through ``cli.main``.

Usage: ``python bench/segment_speed.py [--photos 16] [--rounds 3] [--baseline DIR]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, image_files, machine, median, report_worker, run_worker, spread, write_images  # noqa: E402

SCRIPT = Path(__file__).resolve()
SIZE = (966, 1296)  # (height, width)
CASES = {
    "tool": None,
    "cli_default": [],
    "cli_mask_csv": ["--outputs", "mask,csv"],
    "cli_default_baseline": [],
}


def worker(args: argparse.Namespace) -> dict:

    from deepplantphenomics import tools

    files = image_files(Path(args.data))
    tools.segment_vegetation(files[:1], method=args.method)  # weights read, kernels chosen: not timed
    start, cpu = time.perf_counter(), time.process_time()
    if CASES[args.case] is None:
        tools.segment_vegetation(files, method=args.method)
    else:
        from deepplantphenomics.cli import main

        command = ["segment", args.data, "--out", args.out, "--method", args.method, *CASES[args.case]]
        try:
            main(command, standalone_mode=False)
        except SystemExit as exit_:
            if exit_.code:
                raise
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds_per_photo": seconds / len(files), "cpu_seconds_per_photo": cpu / len(files)}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--method", default="network")
    parser.add_argument("--height", type=int, default=SIZE[0])
    parser.add_argument("--width", type=int, default=SIZE[1])
    parser.add_argument("--baseline", help="folder holding another copy of the deepplantphenomics package")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.case:
        report_worker(worker(args))
        return
    cases = [c for c in CASES if c != "cli_default_baseline" or args.baseline]
    results: dict[str, list[float]] = {case: [] for case in cases}
    cpu: dict[str, list[float]] = {case: [] for case in cases}
    out: dict = {"benchmark": "segment_speed", "unit": "seconds per photo", "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="dpp-bench-segment-") as tmp:
        images_dir, _ = write_images(Path(tmp) / "data", args.photos, args.height, args.width, masks=False)
        for round_ in range(args.rounds):
            for case in cases:
                env = {}
                if case == "cli_default_baseline":
                    env["PYTHONPATH"] = os.pathsep.join([args.baseline, os.environ.get("PYTHONPATH", "")])
                target = Path(tmp) / f"out_{case}_{round_}"
                command = [
                    "--case",
                    case,
                    "--data",
                    str(images_dir),
                    "--out",
                    str(target),
                    "--method",
                    args.method,
                ]
                result = run_worker(SCRIPT, command, env=env)
                results[case].append(result["seconds_per_photo"])
                cpu[case].append(result["cpu_seconds_per_photo"])
    out.update({case: round(median(values), 3) for case, values in results.items()})
    out["spread"] = {case: spread(values) for case, values in results.items()}
    # CPU seconds of the whole process (all threads) per photo: less sensitive to other jobs on the machine.
    out["cpu_seconds_per_photo"] = {case: round(median(values), 3) for case, values in cpu.items()}
    out["photos"] = args.photos
    out["size"] = f"{args.width}x{args.height}"
    out["load_1min_at_end"] = round(os.getloadavg()[0], 2)
    emit(out)


if __name__ == "__main__":
    main()
