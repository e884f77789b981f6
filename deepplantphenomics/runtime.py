"""Process-level speed settings applied when training or inference starts, so users get them for free.

- glibc's malloc serves every buffer above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns
  it with ``munmap`` on free. A convolution network's activations are exactly such buffers, so each step maps and
  unmaps them again: millions of minor page faults and much system time (measured in bench/; the figures are in
  docs/benchmarks.md). Keeping large blocks in the heap and not trimming it makes the allocator reuse them, as
  tcmalloc or jemalloc would. Set ``DPP_MALLOC_TUNING=0`` to leave malloc alone.
- Memory layout: channels-last on CUDA (cuDNN's fast path). On CPUs the default stays NCHW: measured on an
  AVX2 CPU (bench/, docs/benchmarks.md) with the allocator tuned, oneDNN's blocked NCHW kernels train 1.4x
  faster than channels-last (whose weight-gradient kernels are slow there) and infer as fast. Channels-last
  helps on CPUs only when malloc is left untuned, by avoiding the reorder buffers glibc maps and unmaps.
  ``DPP_CHANNELS_LAST=1`` (or ``0``) forces the layout either way, e.g. to try it on another CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch
from torch import nn

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep large allocations in the malloc heap (glibc only). Returns whether the tuning is active.

    Called once per process; does nothing on other C libraries or when ``DPP_MALLOC_TUNING=0``.
    """
    global _tuned
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
    return _tuned


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
