"""The training loop, shared by ``SemanticSegmentationModel.begin_training()`` and the ``dpp train`` command.

One epoch is one full pass over the training split (the last, smaller batch included). Randomness (shuffle,
augmentation, dropout) comes from generators seeded by ``set_random_seed``, and their state is checkpointed
with the weights, so an interrupted run resumed from its checkpoint ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from deepplantphenomics import distributed, runtime, state
from deepplantphenomics.data.augment import AugmentationConfig, augment_batch
from deepplantphenomics.data.dataset import InMemoryData, normalize
from deepplantphenomics.losses import build_loss
from deepplantphenomics.metrics import ConfusionMatrix, format_metrics, predictions_from_logits
from deepplantphenomics.runtime import prepare_input, prepare_module, tune_allocator
from deepplantphenomics.settings import Settings
from deepplantphenomics.validation import check_float, check_sequence

METRICS_CSV = "metrics.csv"


def headline_scores(metrics: dict[str, Any]) -> tuple[float, float]:
    """(IoU, Dice) users look at: of the foreground for binary models, the mean over classes otherwise."""
    if "foreground_iou" in metrics:
        return metrics["foreground_iou"], metrics["foreground_dice"]
    return metrics["mean_iou"], metrics["mean_dice"]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def choose_device(settings: Settings) -> torch.device:
    """CUDA when present (and GPUs were not set to 0; this rank's GPU under torchrun), else CPU."""
    return distributed.device_for_rank(prefer_cuda=settings.num_gpus != 0)


def prepare_training_devices(settings: Settings) -> torch.device:
    """Join the process group under torchrun, set the thread count, and choose the training device.

    Warns (``UserWarning``, pointing at the caller of ``begin_training``) when GPUs were asked for and none is
    available.

    Raises:
        RuntimeError: the batch size does not split evenly over the GPUs used.
    """
    distributed.initialize()
    if settings.num_threads is not None:
        torch.set_num_threads(settings.num_threads)
    device = choose_device(settings)
    available = torch.cuda.device_count() if device.type == "cuda" else 0
    if settings.num_gpus:
        if available == 0:
            warnings.warn(
                f"set_number_of_gpus({settings.num_gpus}): no GPU is available; training on the CPU.",
                UserWarning,
                stacklevel=3,
            )
        else:
            used = min(settings.num_gpus, available)
            if settings.batch_size % used:
                raise RuntimeError(
                    f"The batch size ({settings.batch_size}) must split evenly over {used} GPUs; "
                    f"use a multiple of {used} with set_batch_size."
                )
    return device


def wrap_for_devices(network: nn.Module, settings: Settings, device: torch.device) -> nn.Module:
    """DistributedDataParallel under torchrun; DataParallel over several local GPUs in one process
    (DPP's set_number_of_gpus); the network itself otherwise. The batch is split over the devices."""
    if distributed.active():
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(network, device_ids=ids)
    if (
        device.type == "cuda"
        and settings.num_gpus
        and settings.num_gpus > 1
        and torch.cuda.device_count() > 1
    ):
        used = min(settings.num_gpus, torch.cuda.device_count())
        return nn.DataParallel(network, device_ids=list(range(used)))
    return network


def make_optimizer(settings: Settings, parameters) -> torch.optim.Optimizer:
    # foreach=True: one multi-tensor kernel per update instead of a Python loop over the parameters. PyTorch
    # turns it on by default only on CUDA; on CPU it is bit-identical and, for the predefined U-Net's Adam
    # step, 4.5 ms instead of 7.6 ms (2 threads). (fused=True is faster still but differs by an ulp.)
    lr, decay = settings.learning_rate, settings.regularization_coefficient
    common = {"lr": lr, "weight_decay": decay, "foreach": True}
    name = settings.optimizer
    if name == "adam":
        return torch.optim.Adam(parameters, **common)
    if name == "sgd":
        return torch.optim.SGD(parameters, **common)
    if name == "sgd_momentum":
        return torch.optim.SGD(parameters, momentum=0.9, **common)
    if name == "adadelta":
        return torch.optim.Adadelta(parameters, **common)
    if name == "adagrad":
        return torch.optim.Adagrad(parameters, **common)
    raise ValueError(f"Unknown optimizer {name!r}.")


def optimizer_parameters(network: nn.Module, settings: Settings):
    """The network's parameters, in groups when layers carry their own ``regularization_coefficient``.

    Without per-layer coefficients this is ``network.parameters()``, so checkpoints keep one parameter group.
    """
    specs = getattr(network, "specs", None) or []
    if not any(spec.get("regularization_coefficient") is not None for spec in specs):
        return network.parameters()
    return network.parameter_groups(settings.regularization_coefficient)


def make_scheduler(settings: Settings, optimizer: torch.optim.Optimizer):
    if settings.lr_decay_factor is None:
        return None
    # DPP's staircase exponential decay every `epochs_per_decay` epochs, stepped once per epoch here.
    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.epochs_per_decay, gamma=settings.lr_decay_factor
    )


def augmentation_config(settings: Settings) -> AugmentationConfig:
    return AugmentationConfig(
        brightness_contrast=settings.augmentation_brightness_contrast,
        flip_horizontal=settings.augmentation_flip_horizontal,
        flip_vertical=settings.augmentation_flip_vertical,
        rotation=settings.augmentation_rotation,
        rotation_crop_borders=settings.augmentation_rotation_crop_borders,
        crop=settings.augmentation_crop,
        crop_ratio=settings.augmentation_crop_ratio,
    )


def autocast(settings: Settings, device: torch.device):
    """bf16 autocast when asked for (``set_precision('bf16')``); fp32 otherwise."""
    if settings.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_tensors(
    data: InMemoryData, rows: torch.Tensor | slice, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] (augmentation works on these) and int64 masks, on ``device``."""
    images = data.float_images(rows).to(device, non_blocking=True)
    masks = data.masks[rows].to(device, non_blocking=True).long()
    return images, masks


def network_input(
    images: torch.Tensor,
    data: InMemoryData,
    rows: torch.Tensor | slice,
    settings: Settings,
    device: torch.device,
) -> torch.Tensor:
    """Normalise a [0, 1] batch as the settings say and put it in the network's memory layout."""
    stats = None if data.statistics is None else data.statistics[rows]
    return prepare_input(normalize(images, settings.input_normalization, stats), device)


@torch.inference_mode()
def evaluate(
    network: nn.Module,
    data: InMemoryData,
    settings: Settings,
    loss_fn: nn.Module,
    device: torch.device,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Loss and confusion-matrix metrics of ``network`` on ``data`` (mean of batch losses weighted by images).

    Under torchrun each rank evaluates its share of ``data`` and the counts are summed over ranks, so every
    rank returns the metrics of the whole set.
    """
    was_training = network.training
    network.eval()
    matrix = ConfusionMatrix(settings.num_classes, device=device)
    total, count = 0.0, 0
    step = batch_size or max(settings.batch_size, 1)
    rows = torch.arange(distributed.rank(), len(data), distributed.world_size())
    for start in range(0, len(rows), step):
        batch_rows = rows[start : start + step]
        images, masks = batch_tensors(data, batch_rows, device)
        images = network_input(images, data, batch_rows, settings, device)
        with autocast(settings, device):
            logits = network(images)
        logits = logits.float()
        total += float(loss_fn(logits, masks)) * images.shape[0]
        count += images.shape[0]
        matrix.update(predictions_from_logits(logits), masks)
    network.train(was_training)
    distributed.all_reduce_sum(matrix.matrix)
    sums = distributed.all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64))
    metrics = matrix.compute()
    metrics["loss"] = float(sums[0] / max(float(sums[1]), 1.0))
    return metrics


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``begin_training()`` when Ctrl-C (SIGINT) or SIGTERM stopped it, after the state was saved.

    It is a ``KeyboardInterrupt``, as in Keras, so a script that does not catch it stops there with a traceback
    (exit status 1) instead of going on as if training had finished, and ``except Exception`` does not swallow
    it. A script that wants to carry on, or to exit with the signal's own code, catches it::

        try:
            model.begin_training()
        except dpp.TrainingInterrupted as stop:
            sys.exit(stop.exit_code)  # 130 for Ctrl-C, 143 for SIGTERM

    Attributes:
        signal: the signal that stopped training (``signal.SIGINT`` or ``signal.SIGTERM``).
        save_dir: where the weights, ``checkpoint.pt`` and ``metrics.csv`` were saved.
        epoch: the epoch (1-based) that was interrupted.
        batch: the last batch (1-based) of that epoch that was trained.
    """

    def __init__(self, signum: int, save_dir: Path, epoch: int, batch: int) -> None:
        self.signal = signal.Signals(signum)
        self.save_dir = Path(save_dir)
        self.epoch = epoch
        self.batch = batch
        super().__init__(
            f"Training interrupted by {self.signal_label} at epoch {epoch}, batch {batch}: the run did not finish. "
            f"Its state is saved in '{self.save_dir}'; continue with begin_training(resume=True)."
        )

    @property
    def signal_label(self) -> str:
        """'SIGINT (Ctrl-C)' or 'SIGTERM'."""
        return "SIGINT (Ctrl-C)" if self.signal == signal.SIGINT else self.signal.name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process stopped by this signal: 128 + its number (130, 143)."""
        return 128 + int(self.signal)


@contextlib.contextmanager
def hold_save_dir(save_dir: Path):
    """Hold ``save_dir`` for this training run: a second run into the same folder is refused at once.

    Under torchrun rank 0 (the rank that writes) takes the lock and every rank learns whether it got it, so all
    of them stop together.

    Raises:
        state.SaveDirInUseError: (a RuntimeError) another run holds the folder; the message names it.
    """
    lock, refused = None, None
    if distributed.is_main():
        try:
            lock = state.SaveDirLock(save_dir).acquire()
        except state.SaveDirInUseError as exc:
            refused = str(exc)
    refused = distributed.broadcast_object(refused)
    if refused is not None:
        raise state.SaveDirInUseError(refused)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked after each batch, so the batch finishes and state is saved."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second Ctrl-C: the user really wants out now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class _Loop:
    """What the steps of one ``TrainingRun.run`` share: made by ``_start_loop``, advanced batch by batch."""

    trainee: nn.Module | None  # the network, or its DataParallel/DDP wrapper
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch.optim.lr_scheduler.StepLR or None
    generator: torch.Generator  # the shuffle (and augmentation on a single process)
    aug_generator: torch.Generator
    augment: AugmentationConfig
    batch_size: int  # per process
    batches_per_epoch: int
    start_epoch: int = 0  # where the run starts (later than 0 when resumed)
    start_batch: int = 0  # in the current epoch; 0 after the first
    order: torch.Tensor | None = None  # the current epoch's shuffle; None: draw a new one
    running: tuple[float, int] = (0.0, 0)  # a resumed epoch's (loss sum, images) so far
    step: int = 0  # training batches done (TensorBoard's x axis)
    writer: Any = None  # TensorBoard SummaryWriter (rank 0, when asked for)
    bar: Any = None  # tqdm


@dataclass
class TrainingRun:
    """Everything one training run needs; ``run()`` trains and returns the per-epoch history."""

    network: nn.Module
    settings: Settings
    train_data: InMemoryData
    validation_data: InMemoryData | None
    save_dir: Path
    save_state: Any  # callable(network) -> None: writes the final/loadable state (weights + JSON)
    debug: bool = False
    report_rate: int = 100
    save_checkpoints: bool = True
    tensorboard_dir: str | None = None
    resume: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    interrupted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    global_step: int = 0  # training batches done when run() returned (TensorBoard's x axis)

    def log(self, message: str) -> None:
        if self.debug and distributed.is_main():
            tqdm.write(message, file=sys.stdout)

    # ----------------------------------------------------------------- checkpoints
    def _checkpoint(
        self,
        optimizer,
        scheduler,
        generator,
        epoch: int,
        batch: int,
        order: torch.Tensor,
        running: tuple[float, int] = (0.0, 0),
    ) -> None:
        """Weights of the last good step plus everything needed to continue exactly from here.

        ``running`` is the partial epoch's (loss sum, images seen), so a resumed epoch reports the same loss.
        """
        self.save_state(self.network)
        state.save_torch(
            self.save_dir / state.CHECKPOINT,
            {
                "epoch": epoch,
                "batch": batch,
                "order": order,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": self.history,
                "running": list(running),
            },
        )

    def _write_metrics_csv(self) -> None:
        if not self.history:
            return
        keys = list(self.history[0].keys())
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        text = buffer.getvalue()
        state.atomic_write_text(self.save_dir / METRICS_CSV, text)

    # ----------------------------------------------------------------- the loop
    def _choose_layout(self) -> None:
        """Pick the network's memory layout for this batch shape (rank 0 decides for all ranks), and say in the
        debug log when the CPU could train in native bf16."""
        settings, world = self.settings, distributed.world_size()
        n, batch = len(self.train_data), max(settings.batch_size // world, 1)
        if n == 0:
            return
        channels_last = None
        if distributed.is_main():
            rows = torch.arange(min(batch, n))
            images = self.train_data.float_images(rows)  # a batch as the loop makes it, on the CPU
            stats = None if self.train_data.statistics is None else self.train_data.statistics[rows]
            sample = normalize(images, settings.input_normalization, stats)
            steps = settings.maximum_training_epochs * math.ceil(math.ceil(n / world) / batch)
            choice = runtime.choose_layout(
                self.network,
                sample,
                self.device,
                precision=settings.precision,
                planned_steps=steps,
                log=self.log,
            )
            channels_last = choice.channels_last
        channels_last = distributed.broadcast_object(channels_last)
        if not distributed.is_main():  # rank 0's choice, so every rank's gradients have the same strides
            runtime.adopt_layout(self.network, channels_last)
        flag = runtime.native_bf16()
        if flag and settings.precision == "fp32" and self.device.type == "cpu":
            self.log(
                f"this CPU computes bf16 natively ({flag}): set_precision('bf16') trains faster, at bf16 "
                "accuracy (figures in docs/benchmarks.md); training in fp32"
            )

    def run(self) -> list[dict[str, Any]]:
        """Train; return one record per epoch.

        Raises:
            TrainingInterrupted: SIGINT or SIGTERM arrived; the batch under way was finished and the state saved.
            TrainingDivergedError: the loss became NaN or infinite (nothing more is saved).
        """
        tune_allocator()
        world = distributed.world_size()
        if self.settings.batch_size % world:
            raise RuntimeError(
                f"The batch size ({self.settings.batch_size}) must split evenly over {world} processes; "
                f"use a multiple of {world} with set_batch_size."
            )
        self._choose_layout()
        self.network = prepare_module(self.network, self.device)
        loop = self._start_loop()
        if self.resume:
            self._resume(loop)
        if world > 1:
            self.log(f"distributed training: world size {world}")
        loop.writer = self._tensorboard() if distributed.is_main() else None
        loop.step = loop.start_epoch * loop.batches_per_epoch + loop.start_batch
        loop.bar = self._progress_bar(loop)
        loop.trainee.train()
        with _StopRequest() as stop:
            for epoch in range(loop.start_epoch, self.settings.maximum_training_epochs):
                running = self._train_epoch(loop, epoch, stop)
                self._end_epoch(loop, epoch, running)
        self._finish(loop)
        return self.history

    def _start_loop(self) -> _Loop:
        """The optimiser, schedule, loss, generators and batch geometry of a fresh run."""
        settings, network = self.settings, self.network
        world, rank = distributed.world_size(), distributed.rank()
        optimizer = make_optimizer(settings, optimizer_parameters(network, settings))
        seed = settings.random_seed
        if seed is None:
            seed = distributed.broadcast_object(int(torch.randint(0, 2**62, (1,)).item()))
        # The shuffle is the same on every rank (each takes its share); augmentation differs per rank.
        generator = torch.Generator().manual_seed(seed)
        aug_generator = generator if world == 1 else torch.Generator().manual_seed(seed + 7919 * (rank + 1))
        batch_size = settings.batch_size // world
        return _Loop(
            trainee=wrap_for_devices(network, settings, self.device),
            loss_fn=build_loss(settings.loss_function, settings.num_classes, settings.class_weights),
            optimizer=optimizer,
            scheduler=make_scheduler(settings, optimizer),
            generator=generator,
            aug_generator=aug_generator,
            augment=augmentation_config(settings),
            batch_size=batch_size,
            batches_per_epoch=math.ceil(math.ceil(len(self.train_data) / world) / batch_size),
        )

    def _resume(self, loop: _Loop) -> None:
        """Continue from ``checkpoint.pt``: optimiser, schedule, random state, history and position."""
        checkpoint_path = self.save_dir / state.CHECKPOINT
        if not checkpoint_path.exists():
            raise FileNotFoundError(
                f"Cannot resume: no checkpoint at '{checkpoint_path}'. Train without resume=True first."
            )
        ckpt = state.load_checkpoint(checkpoint_path)
        loop.optimizer.load_state_dict(ckpt["optimizer"])
        if loop.scheduler is not None and ckpt["scheduler"] is not None:
            loop.scheduler.load_state_dict(ckpt["scheduler"])
        loop.generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        loop.start_epoch, loop.start_batch, loop.order = ckpt["epoch"], ckpt["batch"], ckpt["order"]
        self.history = list(ckpt.get("history", []))
        loop.running = tuple(ckpt.get("running", (0.0, 0)))
        # A checkpoint after an epoch's last batch is either the end-of-epoch one (its record is in the
        # history: go on with the next epoch) or a stop that came during that last batch (no record yet:
        # the batch loop is empty and the epoch is closed from the saved running loss).
        per_epoch = loop.batches_per_epoch
        if loop.start_batch >= per_epoch and len(self.history) > loop.start_epoch:
            loop.start_epoch, loop.start_batch, loop.order = loop.start_epoch + 1, 0, None
        where = f"batch {loop.start_batch + 1}" if loop.start_batch < per_epoch else "its end"
        self.log(f"Resuming from epoch {loop.start_epoch + 1}, {where} ('{checkpoint_path}').")

    def _progress_bar(self, loop: _Loop) -> tqdm:
        """One bar over every batch of the run (rank 0 only), starting where a resumed run starts."""
        return tqdm(
            total=self.settings.maximum_training_epochs * loop.batches_per_epoch,
            initial=loop.step,
            desc="training",
            unit="batch",
            disable=None if distributed.is_main() else True,
            dynamic_ncols=True,
            leave=False,
        )

    def _train_epoch(self, loop: _Loop, epoch: int, stop: _StopRequest) -> tuple[float, int]:
        """Train the epoch's batches (from ``loop.start_batch`` when resumed); return (loss sum, images)."""
        if loop.order is None:
            loop.order = torch.randperm(len(self.train_data), generator=loop.generator)
        mine = distributed.padded_shard(loop.order)
        running, seen = loop.running
        loop.running = (0.0, 0)
        for b in range(loop.start_batch, loop.batches_per_epoch):
            rows = mine[b * loop.batch_size : (b + 1) * loop.batch_size]
            value, count = self._train_batch(loop, rows, epoch, b)
            running += value * count
            seen += count
            if distributed.any_rank(stop.signal is not None):
                self._stop(loop, epoch, b + 1, (running, seen), stop.signal)
        loop.start_batch, loop.order = 0, None
        return running, seen

    def _train_batch(self, loop: _Loop, rows: torch.Tensor, epoch: int, b: int) -> tuple[float, int]:
        """One optimiser step on ``rows``; return (the batch's loss, its number of images)."""
        settings = self.settings
        images, masks = batch_tensors(self.train_data, rows, self.device)
        if loop.augment.any:
            images, masks = augment_batch(images, masks, loop.augment, generator=loop.aug_generator)
        images = network_input(images, self.train_data, rows, settings, self.device)
        loop.optimizer.zero_grad(set_to_none=True)
        with autocast(settings, self.device):
            logits = loop.trainee(images)
        loss = loop.loss_fn(logits.float(), masks)
        if distributed.any_rank(not bool(torch.isfinite(loss))):
            self._diverged(loop, loss, epoch, b)
        loss.backward()
        loop.optimizer.step()
        loop.step += 1
        value = loss.detach().item()
        loop.bar.update(1)
        loop.bar.set_postfix(epoch=epoch + 1, loss=f"{value:.4f}")
        if loop.step % self.report_rate == 0:
            self.log(f"epoch {epoch + 1}, batch {b + 1}/{loop.batches_per_epoch}: loss {value:.4f}")
            if loop.writer is not None:
                self._tensorboard_step(loop.writer, loop.step, value, loop.optimizer, images, masks, logits)
        return value, images.shape[0]

    def _diverged(self, loop: _Loop, loss: torch.Tensor, epoch: int, b: int) -> NoReturn:
        """Stop on a NaN/infinite loss. Nothing is saved from here on: the last checkpoint on disk stays good."""
        loop.bar.close()
        kept = (
            f" The last good checkpoint is kept in '{self.save_dir}'."
            if (self.save_dir / state.CHECKPOINT).exists()
            else ""
        )
        raise TrainingDivergedError(
            f"The training loss became {loss.detach().item()} at epoch {epoch + 1}, batch {b + 1}. "
            f"Try a lower learning rate (set_learning_rate, now {self.settings.learning_rate}).{kept}"
        )

    def _stop(
        self, loop: _Loop, epoch: int, batch: int, running: tuple[float, int], signum: int | None
    ) -> NoReturn:
        """A signal arrived (on some rank): save a checkpoint of this very batch, then raise."""
        self.interrupted = True
        loop.bar.close()
        if distributed.is_main():
            self._checkpoint(
                loop.optimizer, loop.scheduler, loop.generator, epoch, batch, loop.order, running
            )
            if loop.writer is not None:
                loop.writer.close()
            self._write_metrics_csv()
        distributed.barrier()
        self.global_step = loop.step
        # The traceback keeps the loop alive: let go of the DDP wrapper (and through it the process group) now,
        # not at interpreter teardown (see distributed.shutdown).
        loop.trainee = None
        # The rank that got no signal stops with the signal of the one that did.
        raise TrainingInterrupted(
            signum if signum is not None else signal.SIGINT, self.save_dir, epoch + 1, batch
        )

    def _end_epoch(self, loop: _Loop, epoch: int, running: tuple[float, int]) -> None:
        """Step the schedule; record the epoch (with validation), write metrics.csv and the checkpoint."""
        if loop.scheduler is not None:
            loop.scheduler.step()
        totals = distributed.all_reduce_sum(
            torch.tensor([running[0], float(running[1])], dtype=torch.float64)
        )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(totals[0] / max(float(totals[1]), 1.0)),
            "learning_rate": loop.optimizer.param_groups[0]["lr"],
        }
        if self.validation_data is not None and len(self.validation_data):
            self._validate(loop, epoch, record)
        self.history.append(record)
        if distributed.is_main():
            self._write_metrics_csv()
            if self.save_checkpoints:
                order = torch.arange(len(self.train_data))
                self._checkpoint(
                    loop.optimizer, loop.scheduler, loop.generator, epoch, loop.batches_per_epoch, order
                )

    def _validate(self, loop: _Loop, epoch: int, record: dict[str, Any]) -> None:
        """Add the validation loss, IoU and Dice to the epoch's ``record`` (and to TensorBoard)."""
        val = evaluate(self.network, self.validation_data, self.settings, loop.loss_fn, self.device)
        iou, dice = headline_scores(val)
        record.update(val_loss=val["loss"], val_iou=iou, val_dice=dice)
        self.log(
            f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, validation loss "
            f"{val['loss']:.4f}, IoU {iou:.4f}, Dice {dice:.4f}"
        )
        if loop.writer is not None:
            for key in ("val_loss", "val_iou", "val_dice"):
                loop.writer.add_scalar(f"validation/{key[4:]}", record[key], loop.step)

    def _finish(self, loop: _Loop) -> None:
        """After the last epoch: the final state and training curves (rank 0), every rank waiting for them."""
        loop.bar.close()
        if loop.writer is not None:
            loop.writer.close()
        distributed.sync_buffers(self.network)
        self.global_step = loop.step
        if distributed.is_main():
            self.save_state(self.network)
            from deepplantphenomics.report import save_training_curves

            save_training_curves(self.history, self.save_dir)
        distributed.barrier()  # the state is on disk before any rank goes on to use it

    # ----------------------------------------------------------------- tensorboard
    def _tensorboard(self):
        if not self.tensorboard_dir:
            return None
        return summary_writer(self.tensorboard_dir)

    def _tensorboard_step(self, writer, step, loss, optimizer, images, masks, logits) -> None:
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/learning_rate", optimizer.param_groups[0]["lr"], step)
        image = images[0].detach().float().cpu()
        if image.shape[0] not in (1, 3):
            image = image[:1]
        low, high = image.min(), image.max()
        if low < 0 or high > 1:  # the standardised network input: stretched back to [0, 1] to be seen
            image = (image - low) / (high - low).clamp_min(1e-12)
        writer.add_image("input", image, step)
        target = masks[0].detach().cpu().float()
        target[target == 255] = 0
        writer.add_image("target_mask", (target / max(self.settings.num_classes - 1, 1))[None], step)
        pred = predictions_from_logits(logits[:1].detach().float())[0].cpu().float()
        writer.add_image("predicted_mask", (pred / max(self.settings.num_classes - 1, 1))[None], step)


def summary_writer(directory: str | Path):
    """A TensorBoard ``SummaryWriter`` writing into ``directory``.

    Raises:
        ImportError: tensorboard is not installed; the message names the extra to install.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(
            "tensorboard_dir needs the optional 'tensorboard' extra: pip install 'deepplantphenomics[tensorboard]'."
        ) from None
    return SummaryWriter(log_dir=str(directory))


def write_tensorboard_scalars(directory: str | Path, scalars: dict[str, float], step: int) -> None:
    """Add scalars at ``step`` to the TensorBoard log in ``directory`` (in an event file of their own)."""
    writer = summary_writer(directory)
    try:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
    finally:
        writer.close()


def epochs_per_decay(batches_per_decay: int, images: int, batch_size: int, log: Callable[[str], None]) -> int:
    """The epochs between learning-rate decays that come nearest ``batches_per_decay`` training batches
    (``set_learning_rate_decay(..., batches_per_decay=n)``; the schedule steps once per epoch), at least 1."""
    batches_per_epoch = math.ceil(images / batch_size)
    epochs = max(1, round(batches_per_decay / batches_per_epoch))
    log(
        f"Learning rate decay every {batches_per_decay} batches: every {epochs} epoch(s) of "
        f"{batches_per_epoch} batches (the learning rate changes once per epoch)"
    )
    return epochs


def evaluate_test_split(
    network: nn.Module,
    test: InMemoryData,
    settings: Settings,
    device: torch.device,
    tensorboard_dir: str | Path | None,
    step: int,
) -> dict[str, Any]:
    """``compute_full_test_accuracy``: the test metrics, printed (rank 0) and added to TensorBoard at ``step``
    (the training batches done) when a log folder is set."""
    loss_fn = build_loss(settings.loss_function, settings.num_classes, settings.class_weights)
    metrics = evaluate(network, test, settings, loss_fn, device)
    if distributed.is_main():
        print(report_test_metrics(metrics), flush=True)
        if tensorboard_dir:
            iou, dice = headline_scores(metrics)
            scalars = {"test/loss": metrics["loss"], "test/iou": iou, "test/dice": dice}
            write_tensorboard_scalars(tensorboard_dir, scalars, step)
    return metrics


def search_values(argument: str, limits: Any, current: float, steps: int, low_inclusive: bool) -> list[float]:
    """The grid points of one hyperparameter of ``begin_training_with_hyperparameter_search``.

    Args:
        argument: the argument's name, for errors.
        limits: None (keep ``current``) or [low, high], floats >= 0 (> 0 unless ``low_inclusive``).
        current: the value set now.
        steps: grid points from low to high, evenly spaced.
        low_inclusive: whether 0 is allowed.

    Raises:
        TypeError: ``limits`` is not a pair of floats.
        ValueError: a limit is out of range, or low > high.
    """
    if limits is None:
        return [current]
    items = check_sequence(argument, limits, "[low, high]")
    if len(items) != 2:
        raise TypeError(
            f"Invalid value for argument `{argument}`: expected [low, high], received {limits!r}."
        )
    low, high = (check_float(argument, v, 0.0, None, low_inclusive=low_inclusive) for v in items)
    if low > high:
        raise ValueError(
            f"Invalid value for argument `{argument}`: expected low <= high, received {items!r}."
        )
    return [float(v) for v in np.linspace(low, high, steps)]


def grid_search(
    l2_values: list[float],
    lr_values: list[float],
    train: Callable[[float, float], float | None],
    log: Callable[[str], None],
) -> np.ndarray:
    """DPP's hyperparameter search: ``train(l2, lr)`` (one full training, returning its test loss) per point.

    Returns:
        float (len(l2_values), len(lr_values)) test losses; NaN where a run raised or gave no loss.
    """
    losses = np.full((len(l2_values), len(lr_values)), np.nan)
    for i, l2 in enumerate(l2_values):
        for j, lr in enumerate(lr_values):
            log(f"HYPERPARAMETER SEARCH: l2 coefficient {l2:g}, learning rate {lr:g}")
            try:
                loss = train(l2, lr)
            except Exception as exc:  # DPP's behaviour: a failed run is NaN, the search goes on
                log(f"HYPERPARAMETER SEARCH: the run failed ({type(exc).__name__}: {exc}); NaN")
                continue
            losses[i, j] = np.nan if loss is None else loss
    log(f"Hyperparameter search: l2 coefficients {l2_values}, learning rates {lr_values}")
    log("Test loss grid (rows: l2 coefficient, columns: learning rate):\n" + np.array2string(losses))
    return losses


def report_test_metrics(metrics: dict[str, Any], class_names: list[str] | None = None) -> str:
    """The end-of-training test report: loss then the confusion-matrix metrics."""
    return f"Test loss: {metrics['loss']:.4f}\n" + format_metrics(metrics, class_names)
