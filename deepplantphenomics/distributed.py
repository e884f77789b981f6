"""Multi-process training and inference with torch.distributed, launched by ``torchrun``.

The same user script runs as ``python train.py`` or ``torchrun --nproc_per_node=N train.py``: under torchrun
(RANK / WORLD_SIZE / LOCAL_RANK in the environment) the library joins the process group itself — gloo on CPU,
nccl on CUDA — and every other module asks this one for its rank, its shard and the reductions it needs.
Outside torchrun every helper here is a no-op for a single process.
"""

from __future__ import annotations

import atexit
import datetime
import gc
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def initialize() -> bool:
    """Join the process group when launched by torchrun (once per process). Returns whether distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if not launched_by_torchrun() or not dist.is_available():
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    atexit.register(shutdown)
    return True


def shutdown() -> None:
    """Leave the process group in order, while the interpreter is still whole (safe to call twice).

    ``initialize`` registers this with ``atexit``. A process that left the group to interpreter teardown could end
    with SIGABRT ("terminate called without an active exception") after all its work was done: objects that hold
    the group (a DistributedDataParallel wrapper in a reference cycle, pending work handles) were freed only then,
    and their C++ destructors joined gloo/nccl threads and released tensors while Python was being torn down. So
    those objects are collected first, then the group is destroyed (which closes its connections, worker threads
    and store client), then what it left is collected too.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    try:
        if torch.cuda.is_available() and dist.get_backend() == "nccl":
            torch.cuda.synchronize()  # no kernel still uses a buffer the group is about to free
        dist.destroy_process_group()
    finally:
        gc.collect()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Only the main process prints, writes TensorBoard and saves state."""
    return rank() == 0


def device_for_rank(prefer_cuda: bool = True) -> torch.device:
    if prefer_cuda and torch.cuda.is_available():
        return torch.device("cuda", local_rank() if active() else torch.cuda.current_device())
    return torch.device("cpu")


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (every world_size-th item, starting at its rank)."""
    return list(items[rank() :: world_size()])


def padded_shard(order: torch.Tensor) -> torch.Tensor:
    """This rank's share of an epoch's shuffled indices, padded (by wrapping) so every rank gets the same count.

    DDP needs every rank to run the same number of steps; this is DistributedSampler's rule.
    """
    world = world_size()
    if world == 1:
        return order
    total = -(-len(order) // world) * world
    if total > len(order):
        order = torch.cat([order, order[: total - len(order)]])
    return order[rank() :: world]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (on the backend's device) and return it."""
    if active():
        backend_device = (
            torch.device("cuda", local_rank()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )
        moved = tensor.to(backend_device)
        dist.all_reduce(moved)
        tensor.copy_(moved.to(tensor.device))
    return tensor


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is set on any rank (e.g. Ctrl-C reached one of them)."""
    if not active():
        return flag
    return bool(all_reduce_sum(torch.tensor([1.0 if flag else 0.0])).item() > 0)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a split, a seed)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def sync_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics).

    DDP keeps parameters identical but each rank updates its running statistics from its own batches; at the
    end of training rank 0's (the ones saved) are made everyone's, so all ranks hold the same model.
    """
    if not active():
        return
    for buffer in module.buffers():
        moved = buffer.to("cuda") if dist.get_backend() == "nccl" else buffer
        dist.broadcast(moved, src=0)
        if moved is not buffer:
            buffer.copy_(moved)


def barrier() -> None:
    if active():
        dist.barrier()


def unshard(parts: list[list[T]]) -> list[T]:
    """Undo ``shard``: interleave per-rank lists back into the original order."""
    out: list[T] = []
    longest = max(len(p) for p in parts)
    for i in range(longest):
        for part in parts:
            if i < len(part):
                out.append(part[i])
    return out
