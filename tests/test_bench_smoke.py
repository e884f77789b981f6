"""The benchmark scripts keep working: each runs once on tiny sizes and prints one parsable JSON line.

Benchmarks are not tests: nothing here looks at a timing. Each script runs in its own process with the same
tiny arguments ``make bench`` would use with ``--quick`` (``bench/run_all.py``'s ``QUICK_ARGS``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run_all_module():
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUN_ALL = _run_all_module()


def run_quick(name: str) -> dict[str, Any]:
    """Run one benchmark with its quick arguments on one thread; return its (only) JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        RUN_ALL.command(name, quick=True), capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_every_script_has_quick_arguments() -> None:
    assert set(RUN_ALL.QUICK_ARGS) == set(RUN_ALL.SCRIPTS)
    assert all((BENCH / f"{name}.py").is_file() for name in RUN_ALL.SCRIPTS)


def test_train_throughput() -> None:
    out = run_quick("train_throughput")
    assert out["benchmark"] == "train_throughput"
    assert positive(out["seed"]["library_channels_last"]) and positive(out["seed"]["library_nchw"])
    assert positive(out["seed"]["naive_channels_last"])
    assert positive(out["unet"]["library"]) and positive(out["unet"]["naive"])
    assert positive(out["unet"]["ratio_library_naive"])
    assert positive(out["unet"]["naive_malloc_tuned"])
    assert positive(out["unet"]["ratio_naive_malloc_tuned_naive"])
    assert out["machine"]["cores"] >= 1


def test_infer_throughput() -> None:
    out = run_quick("infer_throughput")
    assert out["benchmark"] == "infer_throughput"
    assert positive(out["seed"]["library_channels_last"])
    assert positive(out["seed"]["naive_channels_last"])
    assert positive(out["unet"]["ratio_library_naive"])


def test_end_to_end() -> None:
    out = run_quick("end_to_end")
    assert out["benchmark"] == "end_to_end"
    for case in ("train/library", "train/library_cold_cache", "train/naive", "infer/library", "infer/naive"):
        assert positive(out[case]["process_s"]) and positive(out[case]["import_s"])
    assert positive(out["train_ratio_naive_over_library"]) and positive(out["infer_ratio_naive_over_library"])
    assert all(positive(seconds) for seconds in out["decode_s"].values())


def test_bf16_accuracy() -> None:
    out = run_quick("bf16_accuracy")
    assert out["benchmark"] == "bf16_accuracy"
    if "skipped" in out:  # no CWFID beside the repository
        assert out["skipped"].startswith("no CWFID data")
        return
    for precision in ("fp32", "bf16"):
        assert 0 <= out["seed"][precision]["dice"] <= 1 and 0 <= out["seed"][precision]["iou"] <= 1
    assert set(out["seed"]["bf16_minus_fp32"]) == {"dice", "iou"}


def test_tiled_inference() -> None:
    out = run_quick("tiled_inference")
    assert out["benchmark"] == "tiled_inference"
    assert positive(out["tiled_unet"]["megapixels_per_s"])
    vegetation = out["vegetation_tool"]
    # Either measured or skipped with the reason: never silently absent.
    assert (isinstance(vegetation, str) and vegetation.startswith("skipped")) or positive(
        vegetation["megapixels_per_s"]
    )


def test_memory() -> None:
    out = run_quick("memory")
    assert out["benchmark"] == "memory"
    assert positive(out["train"]["8"]["peak_rss_mb"]) and positive(out["train"]["8"]["seconds"])
    assert positive(out["infer"]["peak_rss_mb"])
    assert positive(out["tiled"]["0.005"]["peak_rss_mb"])
    assert out["tiled"]["0.005"]["size"] == "82x62"
    for case in ("network", "exg", "dpp_segment"):
        assert positive(out["segment"]["0.01"][case]["peak_rss_mb"])


def test_segment_speed() -> None:
    out = run_quick("segment_speed")
    assert out["benchmark"] == "segment_speed" and out["size"] == "64x48"
    for case in ("tool", "cli_default", "cli_mask_csv"):
        assert isinstance(out[case], float) and out[case] >= 0  # tiny photos: may round to 0.0


def test_memory_runs_only_the_cases_asked_for() -> None:
    args = [*RUN_ALL.QUICK_ARGS["memory"], "--cases", "tiled"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / "memory.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "train" not in out and "infer" not in out
    assert positive(out["tiled"]["0.005"]["peak_rss_mb"])
    assert out["tiled"]["0.005"]["unavoidable_mb"] == pytest.approx(82 * 62 * 4 / 2**20, abs=1e-3)


_PEAK_PROBE = """
import subprocess, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "parent":
    block = np.ones(400 << 20, np.uint8)  # a 400 MiB peak, gone before the child starts
    del block
    print(subprocess.run([sys.executable, "-c", PROBE, sys.argv[1], "child"], capture_output=True, text=True).stdout)
else:
    from _common import peak_rss_mb
    print(peak_rss_mb())
"""


def test_peak_rss_is_the_workers_own_not_its_parents() -> None:
    probe = f"PROBE = {_PEAK_PROBE!r}\n{_PEAK_PROBE}"
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(BENCH), "parent"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 0 < float(proc.stdout) < 200


def test_flops() -> None:
    out = run_quick("flops")
    assert out["benchmark"] == "flops"
    # 32x32 inputs: the example network's training step is a known number of FLOPs per image, to within the
    # few non-convolution operations the counter also sees.
    per_pixel = 2 * 3 * (3 * 9 * 16 + 16 * 9 * 32 + 32 * 25 * 32 + 32 * 1)
    expected = 32 * 32 * per_pixel / 1e9
    assert out["gflop_per_image"] == pytest.approx(expected, rel=0.1)
    assert positive(out["matmul_peak_gflops"])
    assert positive(out["library"]["gflops"]) and positive(out["naive"]["gflops"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_peers_keras_names_the_missing_tensorflow_python(tmp_path) -> None:
    """`make bench-peers` needs a Python with TensorFlow (its own venv); without one the script says how to get it."""
    missing = tmp_path / "no-venv" / "bin" / "python"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "peers_keras.py"), "--keras-python", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "make bench-peers" in proc.stderr


@pytest.mark.skipif(
    not (BENCH.parent / ".venv-peers" / "bin" / "python").is_file(),
    reason="no .venv-peers (make bench-peers)",
)
def test_peers_keras_quick() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "peers_keras.py"),
            "--keras-python",
            str(BENCH.parent / ".venv-peers/bin/python"),
            *"--rounds 1 --size 32 --steps 2 --warmup 1 --images 8 --source-size 48 64".split(),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert positive(out["seed"]["library"]) and positive(out["seed"]["keras"])
