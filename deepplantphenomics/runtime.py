"""Process-level speed settings applied when training or inference starts, so users get them for free.

- glibc's malloc serves every buffer above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns
  it with ``munmap`` on free. A convolution network's activations are exactly such buffers, so each step maps and
  unmaps them again: millions of minor page faults and much system time (measured in bench/; the figures are in
  docs/benchmarks.md). Keeping large blocks in the heap and not trimming it makes the allocator reuse them, as
  tcmalloc or jemalloc would. Set ``DPP_MALLOC_TUNING=0`` to leave malloc alone. Buffers as large as a whole
  image are the exception (:func:`mapped_allocations`): in the heap, a freed one would leave a hole that the
  step loop's differently sized buffers fragment, and the heap would keep a returned result's memory after the
  caller drops it.
- Memory layout: channels-last on CUDA (cuDNN's fast path). On CPUs the faster layout depends on the machine:
  on an AVX2 CPU with the allocator tuned, oneDNN's blocked NCHW kernels trained DPP's example network 1.4x
  faster than channels-last; on an AVX-512 CPU with native bf16, channels-last was 1.2x faster (bench/,
  docs/benchmarks.md). So :func:`choose_layout` times a few steps of the real network on a real batch in each
  layout at the start of training (and of large inference), keeps the faster, and caches the decision per
  machine and network shape in ``layouts.json`` under :func:`cache_dir` (``DPP_CACHE_DIR``), like
  ``torch.backends.cudnn.benchmark``. ``DPP_CHANNELS_LAST=1`` (or ``0``) forces the layout either way.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import datetime
import functools
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536  # glibc's own default
# Blocks from this size up are mapped within `mapped_allocations`: image-sized buffers and Pillow's 16 MiB blocks
# of decoded rows, not the few-MiB buffers converted band by band.
_MAPPED_THRESHOLD = 8 << 20

_tuned: bool | None = None
_mallopt: Callable[[int, int], int] | None = None
_mapped_depth = 0


def tune_allocator() -> bool:
    """Keep large allocations in the malloc heap (glibc only). Returns whether the tuning is active.

    Called once per process; does nothing on other C libraries or when ``DPP_MALLOC_TUNING=0``.
    """
    global _tuned, _mallopt
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("DPP_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return _tuned
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0)  # never mmap: freed activation buffers are reused from the heap
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**30)  # do not hand the heap top back to the OS after every step
    ok &= mallopt(_M_TOP_PAD, 64 * 2**20)  # grow the heap in 64 MiB steps
    _tuned = bool(ok)
    _mallopt = mallopt if _tuned else None
    return _tuned


@contextlib.contextmanager
def mapped_allocations() -> Iterator[None]:
    """Within, a large block that the heap's free memory cannot hold is mapped instead of growing the heap.

    For image-sized buffers made outside the step loop (a decoded photo, the array of results): with
    :func:`tune_allocator` active they would grow the heap, where a freed one leaves a hole that the loop's
    buffers of other sizes then fragment (so the heap grows again), and which keeps a result's memory after the
    caller drops it. Mapped, each goes back to the system when freed. This is glibc's own rule, untuned, for
    blocks from its mmap threshold up; the threshold is set to ``_MAPPED_THRESHOLD`` (8 MiB) here, since left
    alone it depends on what the process freed before the tuning. Free heap memory is still used first, and
    smaller blocks come from the heap. Nests; does nothing when the tuning is not active.
    """
    global _mapped_depth
    if _mallopt is None:
        yield
        return
    if _mapped_depth == 0:
        # Outside, the threshold does not matter: with M_MMAP_MAX = 0 nothing is mapped.
        _mallopt(_M_MMAP_THRESHOLD, _MAPPED_THRESHOLD)
        _mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    _mapped_depth += 1
    try:
        yield
    finally:
        _mapped_depth -= 1
        if _mapped_depth == 0:
            _mallopt(_M_MMAP_MAX, 0)


# ------------------------------------------------------------------------------------------- layout
LAYOUT_CACHE_FILE = "layouts.json"
_LAYOUT_CACHE_VERSION = 1
# A run of fewer steps than this is not worth measuring for (the measurement takes about 8 steps' time): it
# uses a cached decision when there is one and NCHW otherwise, and caches nothing.
MIN_MEASURED_STEPS = 16
_TIMED_ROUNDS = 3  # after one untimed warm-up step per layout; the fastest round counts (robust to load)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# CPU decisions in this process, by network signature: prepare_module puts a network in the layout chosen for
# it, and prepare_input follows the network prepare_module prepared last.
_chosen: dict[str, bool] = {}
_current_channels_last = False


@dataclass(frozen=True)
class LayoutChoice:
    """The memory layout a network runs in, and how it was decided.

    Attributes:
        channels_last: True for channels-last (NHWC), False for NCHW.
        source: 'forced' (DPP_CHANNELS_LAST), 'device' (CUDA: channels-last), 'measured', 'cached' (measured
            before on this machine), 'related' (a short run: measured before for this network in another batch
            shape or mode), or 'default' (NCHW: a short run, and nothing measured for this network).
        timings_ms: the fastest measured step per layout ('nchw', 'channels_last'), when measured or cached.
    """

    channels_last: bool
    source: str
    timings_ms: dict[str, float] | None = None

    def describe(self) -> str:
        """One line for the debug log."""
        name = "channels-last" if self.channels_last else "NCHW"
        why = {
            "forced": "forced by DPP_CHANNELS_LAST",
            "device": "the CUDA default",
            "measured": "measured now",
            "cached": "measured before on this machine",
            "related": "measured before on this machine for this network in another batch shape or mode",
            "default": f"the CPU default; a run of under {MIN_MEASURED_STEPS} steps is not measured",
        }[self.source]
        timings = ""
        if self.timings_ms:
            timings = " (step: NCHW {nchw:.1f} ms, channels-last {channels_last:.1f} ms)".format(
                **self.timings_ms
            )
        return f"memory layout: {name}, {why}{timings}"


def cache_dir() -> Path:
    """Where per-machine decisions are cached: ``DPP_CACHE_DIR``, else ``$XDG_CACHE_HOME/deepplantphenomics``
    (``~/.cache/deepplantphenomics``)."""
    chosen = os.environ.get("DPP_CACHE_DIR")
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepplantphenomics"


@functools.lru_cache(maxsize=1)
def cpu_description() -> tuple[str, frozenset[str]]:
    """(CPU model name, instruction-set flags) from /proc/cpuinfo; the platform's processor name elsewhere."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def native_bf16() -> str | None:
    """The CPU flag that gives native bf16 arithmetic (``amx_bf16``, ``avx512_bf16``), or None."""
    flags = cpu_description()[1]
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


def forced_channels_last() -> bool | None:
    """``DPP_CHANNELS_LAST=1`` -> True, ``=0`` -> False, unset (or anything else) -> None."""
    forced = os.environ.get("DPP_CHANNELS_LAST")
    return forced == "1" if forced in ("0", "1") else None


def network_signature(network: nn.Module) -> str:
    """A short hash of a network's structure (module tree and parameter shapes), not of its weights."""
    shapes = [(name, tuple(p.shape)) for name, p in network.named_parameters()]
    return hashlib.sha256(f"{network!r}|{shapes}".encode()).hexdigest()[:16]


def _machine_key() -> str:
    """What a layout decision depends on besides the network: CPU, ISA flags, the ISA torch's kernels use
    (``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA`` can lower it), torch, threads, allocator."""
    model, flags = cpu_description()
    flag_hash = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:12]
    kernels = torch.backends.cpu.get_cpu_capability()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if onednn:
        kernels += f", oneDNN {onednn}"
    tuned = "tuned" if _tuned else "untuned"
    return (
        f"{model}|{flag_hash}|{kernels}|torch {torch.__version__}|{torch.get_num_threads()} threads|"
        f"malloc {tuned}"
    )


def _layout_key(network: nn.Module, shape: tuple[int, ...], training: bool, precision: str) -> str:
    mode = "train" if training else "infer"
    batch = "x".join(str(n) for n in shape)
    return f"{_machine_key()}|{network_signature(network)}|{batch}|{mode}|{precision}"


def _read_layout_cache(path: Path) -> dict[str, dict]:
    """The cached decisions; an unreadable, corrupt or older-format file counts as empty (it is rewritten)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _LAYOUT_CACHE_VERSION:
        return {}
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {
        k: v for k, v in entries.items() if isinstance(v, dict) and isinstance(v.get("channels_last"), bool)
    }


def _write_layout_cache(path: Path, entries: dict[str, dict]) -> str | None:
    """Store the decisions; returns why it could not (a read-only home, a full disk), else None."""
    from deepplantphenomics.state import atomic_write_text

    text = json.dumps({"version": _LAYOUT_CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text + "\n")
    except OSError as exc:
        return str(exc)
    return None


def _layout_step(network: nn.Module, images: torch.Tensor, training: bool, precision: str) -> None:
    """One forward (and backward when ``training``) pass, as training or inference runs it."""
    bf16 = precision == "bf16"
    cast = torch.autocast(images.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    if not training:
        with torch.inference_mode(), cast:
            network(images)
        return
    with cast:
        logits = network(images)
    # The loss's kind does not change the cost of the network's backward pass.
    logits.float().square().mean().backward()
    for parameter in network.parameters():
        parameter.grad = None


def measure_layouts(
    network: nn.Module, sample: torch.Tensor, training: bool = True, precision: str = "fp32"
) -> dict[str, float]:
    """The fastest of a few steps (milliseconds) in NCHW and in channels-last, on copies of ``network``.

    The network's weights, buffers (batch-norm statistics) and the random number streams are left as they
    were: each layout runs on a deep copy, nothing is optimised, and the RNG state is restored afterwards.
    Steps alternate between the layouts so that a burst of load on the machine slows both alike.
    """
    formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    copies, inputs, best = {}, {}, {}
    with torch.random.fork_rng(devices=[]):
        for name, memory_format in formats.items():
            trial = copy.deepcopy(network).to(sample.device).train(training)
            copies[name] = trial.to(memory_format=memory_format)
            inputs[name] = sample.detach().contiguous(memory_format=memory_format)
            best[name] = float("inf")
        for round_ in range(1 + _TIMED_ROUNDS):  # round 0 warms up (oneDNN picks and builds its kernels)
            for name in formats:
                start = time.perf_counter()
                _layout_step(copies[name], inputs[name], training, precision)
                if round_:
                    best[name] = min(best[name], (time.perf_counter() - start) * 1000.0)
    return best


def choose_layout(
    network: nn.Module,
    sample: torch.Tensor,
    device: torch.device | str = "cpu",
    *,
    training: bool = True,
    precision: str = "fp32",
    planned_steps: int | None = None,
    log: Callable[[str], None] | None = None,
) -> LayoutChoice:
    """Decide the memory layout ``network`` runs in on ``device``, measuring it once per machine and shape.

    ``DPP_CHANNELS_LAST=1``/``0`` forces it; on CUDA it is channels-last. On a CPU a decision cached in
    ``layouts.json`` (see :func:`cache_dir`) for this machine (CPU model and flags, torch version, threads),
    network structure, batch shape, mode and precision is reused; otherwise both layouts are timed
    (:func:`measure_layouts`) and the faster kept and cached, unless ``planned_steps`` is under
    ``MIN_MEASURED_STEPS``: such a short run takes a decision measured for the same network in another batch
    shape or mode (e.g. training's, for a prediction), else NCHW, and caches nothing.
    :func:`prepare_module` and :func:`prepare_input` then use the decision for this network.

    Args:
        network: the network as it will run (its weights are not changed).
        sample: a batch of the shape the run uses, (N, C, H, W), already normalised.
        device: where the network runs.
        training: time forward and backward passes (training) or forward passes only (inference).
        precision: 'fp32', or 'bf16' (timed under bf16 autocast, as ``set_precision('bf16')`` trains).
        planned_steps: how many steps the run will take; None measures whatever the length.
        log: called with one line saying the decision (the debug log).

    Returns:
        The decision.
    """
    device = torch.device(device)
    forced = forced_channels_last()
    if forced is not None:
        choice = LayoutChoice(forced, "forced")
    elif device.type != "cpu":
        choice = LayoutChoice(device.type == "cuda", "device")
    else:
        choice = _cpu_layout(network, sample, training, precision, planned_steps, log)
        # Only a CPU decision is remembered: a forced layout is read from the environment each time.
        adopt_layout(network, choice.channels_last)
    if log is not None:
        log(choice.describe())
    return choice


def _cpu_layout(
    network: nn.Module,
    sample: torch.Tensor,
    training: bool,
    precision: str,
    planned_steps: int | None,
    log: Callable[[str], None] | None,
) -> LayoutChoice:
    """The cached CPU decision, or a new measurement (cached), or NCHW for a short run."""
    key = _layout_key(network, tuple(sample.shape), training, precision)
    path = cache_dir() / LAYOUT_CACHE_FILE
    entries = _read_layout_cache(path)
    entry = entries.get(key)
    if entry is not None:
        return LayoutChoice(entry["channels_last"], "cached", entry.get("timings_ms"))
    if planned_steps is not None and planned_steps < MIN_MEASURED_STEPS:
        # Too short to measure for: a decision measured for the same network in another mode or batch shape
        # (a prediction after training) is a better guess than the default.
        related = _related_entry(entries, key)
        if related is not None:
            return LayoutChoice(related["channels_last"], "related", related.get("timings_ms"))
        return LayoutChoice(False, "default")
    timings = measure_layouts(network, sample.to("cpu"), training, precision)
    choice = LayoutChoice(timings["channels_last"] < timings["nchw"], "measured", timings)
    entries[key] = {
        "channels_last": choice.channels_last,
        "timings_ms": {name: round(ms, 3) for name, ms in timings.items()},
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    problem = _write_layout_cache(path, entries)
    if problem is not None and log is not None:
        log(f"could not cache the layout decision in '{path}' ({problem}); it will be measured again")
    return choice


def _related_entry(entries: dict[str, dict], key: str) -> dict | None:
    """A decision cached for the same machine and network in another batch shape, mode or precision (the
    same mode, then the same precision, preferred), or None."""
    machine_and_network, _, mode, precision = key.rsplit("|", 3)
    related = [k for k in sorted(entries) if k.startswith(machine_and_network + "|")]
    related.sort(key=lambda k: (k.rsplit("|", 2)[1] != mode, k.rsplit("|", 1)[1] != precision))
    return entries[related[0]] if related else None


def adopt_layout(network: nn.Module, channels_last: bool) -> None:
    """Record ``channels_last`` as the CPU layout of ``network`` (e.g. rank 0's decision, under torchrun)."""
    _chosen[network_signature(network)] = channels_last


def use_channels_last(device: torch.device, network: nn.Module | None = None) -> bool:
    """Whether ``network`` (default: the network :func:`prepare_module` prepared last) runs channels-last.

    ``DPP_CHANNELS_LAST=1``/``0`` decides when set; else channels-last on CUDA; on a CPU the layout
    :func:`choose_layout` chose for the network, NCHW when none was chosen.
    """
    forced = forced_channels_last()
    if forced is not None:
        return forced
    if device.type == "cuda":
        return True
    if network is None:
        return _current_channels_last
    return _chosen.get(network_signature(network), False)


def prepare_module(network: nn.Module, device: torch.device) -> nn.Module:
    """Move a network to ``device`` in its memory layout (numerics are unchanged up to float rounding)."""
    global _current_channels_last
    network = network.to(device)
    _current_channels_last = use_channels_last(device, network)
    if _current_channels_last:
        network = network.to(memory_format=torch.channels_last)
    return network


def prepare_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a (N, C, H, W) batch to ``device`` in the layout ``prepare_module`` chose for its network."""
    images = images.to(device, non_blocking=True)
    if use_channels_last(device):
        images = images.contiguous(memory_format=torch.channels_last)
    return images
