"""Helpers shared by the benchmark scripts: test images, fresh-process workers, timing and memory probes.

Every benchmark measures each case in a fresh Python process (``run_worker``) so that one case's allocator
state, thread pools and oneDNN caches cannot speed up or slow down the next, and interleaves the cases over
several rounds so that a burst of load on the machine hits all of them alike. A worker prints its result as
one line starting with ``RESULT_TAG``; the parent script prints one JSON line with the medians.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULT_TAG = "@@BENCH_RESULT "
BENCH_DIR = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------- images
def plant_image(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic top-down plant photo (H, W, 3) uint8 and its 0/255 mask (H, W) uint8.

    Images larger than 1024 pixels on a side are a 1024x1024 synthetic photo tiled (mirrored) to size:
    drawing a 50-megapixel scene from scratch would take longer than predicting it.
    """
    from deepplantphenomics.synthetic import generate_plant_image

    if height <= 1024 and width <= 1024:
        return generate_plant_image(height, width, rng=seed)
    image, mask = generate_plant_image(1024, 1024, rng=seed)
    reps = (-(-height // 1024), -(-width // 1024))
    image = np.pad(image, ((0, (reps[0] - 1) * 1024), (0, (reps[1] - 1) * 1024), (0, 0)), mode="symmetric")
    mask = np.pad(mask, ((0, (reps[0] - 1) * 1024), (0, (reps[1] - 1) * 1024)), mode="symmetric")
    return np.ascontiguousarray(image[:height, :width]), np.ascontiguousarray(mask[:height, :width])


def write_images(
    directory: Path, count: int, height: int, width: int, distinct: int = 8, masks: bool = True
) -> tuple[Path, Path]:
    """Write ``count`` PNG photos (and masks) of ``height`` x ``width`` into ``directory/{images,masks}``.

    Only ``distinct`` different scenes are drawn; the other files are hard links (or copies) of them, which
    the readers decode again like any other file.

    Returns:
        (images_dir, masks_dir).
    """
    from PIL import Image

    images_dir, masks_dir = directory / "images", directory / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = f"img_{i:05d}.png"
        if i < distinct:
            image, mask = plant_image(height, width, seed=i)
            Image.fromarray(image).save(images_dir / name)
            if masks:
                Image.fromarray(mask).save(masks_dir / name)
            continue
        source = f"img_{i % distinct:05d}.png"
        for folder in (images_dir, masks_dir) if masks else (images_dir,):
            try:
                os.link(folder / source, folder / name)
            except OSError:
                (folder / name).write_bytes((folder / source).read_bytes())
    return images_dir, masks_dir


def image_files(images_dir: Path) -> list[Path]:
    return sorted(images_dir.glob("*.png"))


# ------------------------------------------------------------------------------------------- processes
def run_worker(
    script: Path,
    args: Sequence[str],
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    python: str | None = None,
) -> dict[str, Any]:
    """Run ``script --worker ...`` in a fresh interpreter and return the dict it reported.

    ``python``: the interpreter to use (default: this one), e.g. another venv's for a peer library.

    Raises:
        RuntimeError: the worker failed or reported nothing (its stderr tail is in the message).
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONHASHSEED", "0")
    proc = subprocess.run(
        [python or sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
            # Progress on stderr: a full run takes long enough that one wants to see it move.
            shown = " ".join(a for a in args if not a.startswith("/"))
            print(f"[{script.stem}] {shown} -> {json.dumps(result)}", file=sys.stderr, flush=True)
            return result
    raise RuntimeError(
        f"benchmark worker {script.name} {' '.join(args)} failed (exit {proc.returncode}):\n"
        + "\n".join(proc.stderr.splitlines()[-25:])
    )


def compile_bytecode() -> bool:
    """Write the bytecode (``.pyc``) of the library and of these scripts, as ``pip install`` does for an
    installed package and as Python does on a first import; returns whether ``PYTHONDONTWRITEBYTECODE`` is set.

    With that variable set (as on some CI and development machines) nothing is cached, and every fresh
    process would compile whichever side's source is not yet compiled (the library's ~35 ms, the scripts') —
    a cost no user with an installed package pays. torch's own bytecode was written when it was installed.
    """
    import compileall

    root = Path(__file__).resolve().parents[1]
    for folder in (root / "deepplantphenomics", root / "bench"):
        compileall.compile_dir(str(folder), quiet=1)
    return bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))


def report_worker(result: dict[str, Any]) -> None:
    """Called by a worker: hand its result to the parent."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def emit(result: dict[str, Any]) -> None:
    """Called by a benchmark's parent: print its one JSON line."""
    print(json.dumps(result, sort_keys=False), flush=True)


def threads_env(threads: int | None) -> dict[str, str]:
    """Environment that fixes the workers' intra-op threads (torch reads OMP_NUM_THREADS); {} = default."""
    return {} if not threads else {"OMP_NUM_THREADS": str(threads)}


def summarize(results: dict[str, list[dict[str, float]]], network: str, target: float | None) -> dict:
    """Medians per case of one network's results, [min, max] spreads, and the library / naive ratios."""
    names = [n for n in results if n.startswith(network + "/")]
    short = {n: n.split("/", 1)[1] for n in names}
    section: dict = {short[n]: round(median([r["images_per_s"] for r in results[n]]), 3) for n in names}
    section["spread"] = {short[n]: spread([r["images_per_s"] for r in results[n]]) for n in names}
    section["per_cpu_second"] = {
        short[n]: round(median([r["images_per_cpu_s"] for r in results[n]]), 3) for n in names
    }
    lib, naive = f"{network}/library", f"{network}/naive"
    if results.get(lib) and results.get(naive):
        section["ratio_library_naive"] = round(section["library"] / section["naive"], 3)
        cpu = section["per_cpu_second"]
        section["ratio_library_naive_per_cpu_second"] = round(cpu["library"] / cpu["naive"], 3)
        if target is not None:
            section["target"] = target
    tuned = f"{network}/naive_malloc_tuned"
    if results.get(tuned) and results.get(naive):
        # The same kernels as the library with the same allocator setting: the ratio the library can reach.
        section["ratio_naive_malloc_tuned_naive"] = round(section["naive_malloc_tuned"] / section["naive"], 3)
    return section


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> list[float]:
    """[min, max] rounded, to show how noisy a median is."""
    return [round(min(values), 3), round(max(values), 3)]


# ------------------------------------------------------------------------------------------- probes
class StepTimer:
    """Time stamps of every optimizer step in this process, through PyTorch's global step hook.

    The same probe times the library's training loop and the hand-written one, without any timing code in
    the library: ``images_per_second`` counts from the end of the ``warmup``-th step to the last, so data
    decoding, network construction, the first steps (oneDNN kernel selection, heap growth) and saving are
    excluded on both sides.
    """

    def __init__(self) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self._handle = register_optimizer_step_post_hook(self._hook)

    def _hook(self, optimizer, args, kwargs) -> None:
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())

    def images_per_second(self, batch_size: int, warmup: int, cpu: bool = False) -> float:
        """Images per wall-clock second, or per CPU second of this process (all its threads) with ``cpu``."""
        times = self.cpu_times if cpu else self.times
        if len(times) < warmup + 2:
            raise RuntimeError(f"only {len(times)} optimizer steps were timed; need {warmup + 2}")
        steps = len(times) - 1 - warmup
        return steps * batch_size / (times[-1] - times[warmup])

    def rates(self, batch_size: int, warmup: int) -> dict[str, float]:
        return {
            "images_per_s": self.images_per_second(batch_size, warmup),
            "images_per_cpu_s": self.images_per_second(batch_size, warmup, cpu=True),
        }

    def close(self) -> None:
        self._handle.remove()


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` size (``VmRSS``, ``VmHWM``) in MiB; None where there is no such file."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory so far, in MiB.

    Linux: ``VmHWM``, the high-water mark of the memory this program has had since it started. Not ``ru_maxrss``:
    that also holds the peak of the process that started this one (the kernel carries it over the ``exec``), so
    a worker started by a parent that had just drawn a 50-megapixel test image reported the parent's peak.
    Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform.startswith("linux") else peak / 2**20


def current_rss_mb() -> float:
    """Resident set size now, in MiB (Linux; falls back to the peak elsewhere)."""
    rss = _status_mb("VmRSS")
    return peak_rss_mb() if rss is None else rss


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "load_1min_at_start": load,
    }
