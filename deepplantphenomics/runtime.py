"""Process-level speed settings applied when training or inference starts, so users get them for free.

- glibc's malloc serves every buffer above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns
  it with ``munmap`` on free. A convolution network's activations are exactly such buffers, so each step maps and
  unmaps them again: millions of minor page faults and much system time (measured in bench/; the figures are in
  docs/benchmarks.md). Keeping large blocks in the heap and not trimming it makes the allocator reuse them, as
  tcmalloc or jemalloc would. Set ``DPP_MALLOC_TUNING=0`` to leave malloc alone. Buffers as large as a whole
  image are the exception (:func:`mapped_allocations`): in the heap, a freed one would leave a hole that the
  step loop's differently sized buffers fragment, and the heap would keep a returned result's memory after the
  caller drops it.
- Memory layout: channels-last on CUDA (cuDNN's fast path). On CPUs the default stays NCHW: measured on an
  AVX2 CPU (bench/, docs/benchmarks.md) with the allocator tuned, oneDNN's blocked NCHW kernels train 1.4x
  faster than channels-last (whose weight-gradient kernels are slow there) and infer as fast. Channels-last
  helps on CPUs only when malloc is left untuned, by avoiding the reorder buffers glibc maps and unmaps.
  ``DPP_CHANNELS_LAST=1`` (or ``0``) forces the layout either way, e.g. to try it on another CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Iterator

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


def use_channels_last(device: torch.device) -> bool:
    """Channels-last on CUDA, NCHW on CPU (see the module docstring); ``DPP_CHANNELS_LAST=1``/``0`` overrides."""
    forced = os.environ.get("DPP_CHANNELS_LAST")
    if forced in ("0", "1"):
        return forced == "1"
    return device.type == "cuda"


def prepare_module(network: nn.Module, device: torch.device) -> nn.Module:
    """Move a network to ``device`` in the fastest memory layout (numerics are unchanged)."""
    network = network.to(device)
    if use_channels_last(device):
        network = network.to(memory_format=torch.channels_last)
    return network


def prepare_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a (N, C, H, W) batch to ``device`` in the layout ``prepare_module`` chose."""
    images = images.to(device, non_blocking=True)
    if use_channels_last(device):
        images = images.contiguous(memory_format=torch.channels_last)
    return images
