"""Two "nodes" x one process on one host: does every run exit 0? (issue 20, point 16)

Each run starts two ``torchrun --nnodes=2 --nproc_per_node=1 --node_rank=0/1 --master_addr=127.0.0.1`` launchers
side by side (as two machines would), which train a tiny network on generated 48x48 images for two epochs with
gloo on the CPU, save the state and report test metrics. A run counts as clean when both launchers exit 0 and
the saved state loads. An unclean exit (e.g. SIGABRT, "terminate called without an active exception") is
printed with the tail of its output.

Usage: ``python bench/distributed_exit.py [--runs 20]``; prints one JSON line:
``{"runs": N, "clean": K, "failures": [...], ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import deepplantphenomics as dpp

    torch.set_num_threads(1)
    out, images, masks = sys.argv[1:4]
    model = dpp.SemanticSegmentationModel(debug=False, save_checkpoints=True, report_rate=1000, save_dir=out)
    model.set_batch_size(4)
    model.set_image_dimensions(48, 48, 3)
    model.set_resize_images(True)
    model.set_test_split(0.2)
    model.set_validation_split(0.1)
    model.set_random_seed(5)
    model.set_maximum_training_epochs(2)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu", batch_norm=True)
    model.add_output_layer()
    model.begin_training()
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_once(work: Path, images: Path, masks: Path, index: int, timeout: float = 600) -> dict:
    """One two-node run; returns both launchers' exit codes and the tail of any failing one's output."""
    script = work / "train.py"
    if not script.exists():
        script.write_text(SCRIPT)
    out = work / f"state{index}"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launchers = []
    for node in (0, 1):
        command = [
            str(TORCHRUN),
            "--nnodes=2",
            "--nproc_per_node=1",
            f"--node_rank={node}",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            str(script),
            str(out),
            str(images),
            str(masks),
        ]
        launchers.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        )
    codes, tails = [], []
    for launcher in launchers:
        output, _ = launcher.communicate(timeout=timeout)
        codes.append(launcher.returncode)
        tails.append(output[-1500:])
    loads = subprocess.run(
        [sys.executable, "-c", f"import deepplantphenomics as dpp; dpp.load_model({str(out)!r})"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    result = {"codes": codes, "loads": loads.returncode == 0}
    if codes != [0, 0] or not result["loads"]:
        result["output"] = [tail for code, tail in zip(codes, tails) if code != 0] or [loads.stderr[-1500:]]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from deepplantphenomics.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images, masks = write_synthetic_dataset(work / "data", 20, 48, 48, seed=11)
        failures, started = [], time.perf_counter()
        for index in range(args.runs):
            result = run_once(work, images, masks, index)
            clean = result["codes"] == [0, 0] and result["loads"]
            print(
                f"run {index + 1}/{args.runs}: exit codes {result['codes']}, state loads: {result['loads']}",
                file=sys.stderr,
                flush=True,
            )
            if not clean:
                failures.append({"run": index + 1, **result})
                print("\n".join(result["output"]), file=sys.stderr, flush=True)
        summary = {
            "benchmark": "distributed_exit",
            "runs": args.runs,
            "clean": args.runs - len(failures),
            "failures": failures,
            "seconds": round(time.perf_counter() - started, 1),
        }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
