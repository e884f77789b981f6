"""Training throughput (images/s): the library against an equivalent hand-written PyTorch loop.

Two networks, both on 256x256 RGB inputs decoded once from PNG files (384x512 photos, resized):

- ``seed``: DPP's example network (batch 4; three 'SAME' convolutions 3x3x16, 3x3x32, 5x5x32 with relu, then
  the 1x1 output layer), declared exactly as in DPP's documentation;
- ``unet``: ``use_predefined_model('u-net')`` (16-32-64-128-256 channels, batch norm; batch 4).

Cases, each run in a fresh process and interleaved over ``--rounds`` rounds (the median is reported):

- ``library``: ``begin_training()`` with default settings (fp32);
- ``naive``: the loop a PyTorch user writes by hand over the same files: decode, resize and standardise every
  image once, then NCHW fp32 batches, plain Adam, the same weight initialisation, BCE-with-logits;
- what each part of the fast path buys: ``library_malloc_tuning_off`` (``DPP_MALLOC_TUNING=0``),
  ``library_channels_last`` (``DPP_CHANNELS_LAST=1``: channels-last memory instead of the CPU default NCHW,
  both networks), ``naive_channels_last`` (the hand-written loop with ``channels_last``), ``library_bf16``
  (``set_precision('bf16')``: not fp32 numerics, so not part of the ratio) and, for the U-Net,
  ``naive_malloc_tuned`` (the hand-written loop with the library's allocator setting, ``runtime.tune_allocator``:
  the same kernels with nothing else different, so it is the most the library can reach with them).

Only the training loop is timed, identically on both sides, by PyTorch's global optimizer-step hook: from
the end of the ``--warmup``-th step to the last step (data decoding, construction and saving excluded).

Usage: ``python bench/train_throughput.py [--rounds 7] [--models seed,unet]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    StepTimer,
    emit,
    machine,
    peak_rss_mb,
    report_worker,
    run_worker,
    summarize,
    threads_env,
    write_images,
)

SCRIPT = Path(__file__).resolve()
SOURCE_SIZE = (384, 512)  # the PNG files on disk (height, width); the networks see --size x --size

# name -> (network, worker arguments, extra environment)
CASES: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "seed/library": ("seed", ["library"], {}),
    "seed/naive": ("seed", ["naive"], {}),
    "seed/library_malloc_tuning_off": ("seed", ["library"], {"DPP_MALLOC_TUNING": "0"}),
    "seed/library_channels_last": ("seed", ["library"], {"DPP_CHANNELS_LAST": "1"}),
    "seed/library_nchw": ("seed", ["library"], {"DPP_CHANNELS_LAST": "0"}),
    "seed/naive_channels_last": ("seed", ["naive", "--channels-last"], {}),
    "seed/library_bf16": ("seed", ["library", "--bf16"], {}),
    "unet/library": ("unet", ["library"], {}),
    "unet/library_channels_last": ("unet", ["library"], {"DPP_CHANNELS_LAST": "1"}),
    "unet/library_malloc_tuning_off": ("unet", ["library"], {"DPP_MALLOC_TUNING": "0"}),
    "unet/naive": ("unet", ["naive"], {}),
    "unet/naive_malloc_tuned": ("unet", ["naive", "--malloc-tuned"], {}),
}
TARGETS = {"seed": 1.6, "unet": 1.3}


# ------------------------------------------------------------------------------------------- networks
def seed_network_by_hand(channels: int = 3):
    """DPP's example network written directly in PyTorch (padding keeps the size, as 'SAME' does)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 1, 1),
    )


def unet_by_hand(channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128, 256)):
    """The library's predefined U-Net written directly in PyTorch (same layers, same order)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU(inplace=True)
        )

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.ModuleList()
            c = channels
            for w in widths[:-1]:
                self.down.append(nn.Sequential(block(c, w), block(w, w)))
                c = w
            self.bottom = nn.Sequential(block(c, widths[-1]), block(widths[-1], widths[-1]))
            c = widths[-1]
            self.up, self.decode = nn.ModuleList(), nn.ModuleList()
            for w in reversed(widths[:-1]):
                self.up.append(nn.Sequential(nn.ConvTranspose2d(c, w, 2, stride=2), nn.ReLU(inplace=True)))
                self.decode.append(nn.Sequential(block(2 * w, w), block(w, w)))
                c = w
            self.out = nn.Conv2d(c, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            saved = []
            for level in self.down:
                x = level(x)
                saved.append(x)
                x = F.max_pool2d(x, 2)
            x = self.bottom(x)
            for up, level in zip(self.up, self.decode):
                x = level(torch.cat([up(x), saved.pop()], dim=1))
            return self.out(x)

    return UNet()


def init_like_library(network, initializer: str, seed: int) -> None:
    """The library's initialisers ('xavier': Glorot uniform, 'normal': truncated normal 0.05; biases 0.1)."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if initializer == "xavier":
                nn.init.xavier_uniform_(module.weight, generator=generator)
            else:
                nn.init.trunc_normal_(module.weight, std=0.05, a=-0.1, b=0.1, generator=generator)
            nn.init.constant_(module.bias, 0.1)


def declare_library_network(model, network: str, channels: int = 3) -> None:
    if network == "seed":  # verbatim from DPP's semantic segmentation example
        model.add_input_layer()
        model.add_convolutional_layer(
            filter_dimension=[3, 3, channels, 16], stride_length=1, activation_function="relu"
        )
        model.add_convolutional_layer(
            filter_dimension=[3, 3, 16, 32], stride_length=1, activation_function="relu"
        )
        model.add_convolutional_layer(
            filter_dimension=[5, 5, 32, 32], stride_length=1, activation_function="relu"
        )
        model.add_output_layer()
    else:
        model.use_predefined_model("u-net")


# Seed example: normal init, learning rate 1e-4 (DPP's page); U-Net: the library's defaults.
HYPER = {"seed": ("normal", 1e-4), "unet": ("xavier", 1e-3)}


# ------------------------------------------------------------------------------------------- workers
def library_worker(args: argparse.Namespace) -> dict:
    import deepplantphenomics as dpp

    data = Path(args.data)
    n_images = len(list((data / "images").glob("*.png")))
    epochs = math.ceil((args.warmup + args.steps + 1) * args.batch / n_images)
    initializer, lr = HYPER[args.network]
    timer = StepTimer()
    model = dpp.SemanticSegmentationModel(
        debug=False, save_checkpoints=False, report_rate=10**9, save_dir=str(Path(args.work) / "state")
    )
    model.set_batch_size(args.batch)
    model.set_image_dimensions(args.size, args.size, 3)
    model.set_resize_images(True)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.set_random_seed(0)
    model.set_learning_rate(lr)
    model.set_weight_initializer(initializer)
    model.set_maximum_training_epochs(epochs)
    if args.bf16:
        model.set_precision("bf16")
    model.load_dataset_from_directory_with_segmentation_masks(str(data / "images"), str(data / "masks"))
    declare_library_network(model, args.network)
    model.begin_training()
    return {**timer.rates(args.batch, args.warmup), "peak_rss_mb": peak_rss_mb()}


def load_by_hand(data: Path, size: int):
    """Decode, resize (antialiased bilinear) and standardise every image once; masks to {0, 1}."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    images, masks = [], []
    for path in sorted((data / "images").glob("*.png")):
        pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
        pixels = F.interpolate(pixels[None], size=(size, size), mode="bilinear", antialias=True)[0]
        pixels = (pixels - pixels.mean()) / pixels.std(unbiased=False).clamp_min(
            1 / math.sqrt(pixels.numel())
        )
        mask = torch.from_numpy((np.asarray(Image.open(data / "masks" / path.name)) > 127).astype(np.float32))
        mask = F.interpolate(mask[None, None], size=(size, size), mode="nearest-exact")[0, 0]
        images.append(pixels)
        masks.append(mask)
    return torch.stack(images), torch.stack(masks)


def naive_worker(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    if args.malloc_tuned:  # diagnostic: the hand-written loop with the library's allocator setting
        from deepplantphenomics.runtime import tune_allocator

        tune_allocator()
    images, masks = load_by_hand(Path(args.data), args.size)
    torch.manual_seed(0)
    network = seed_network_by_hand() if args.network == "seed" else unet_by_hand()
    initializer, lr = HYPER[args.network]
    init_like_library(network, initializer, seed=0)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    network = network.to(memory_format=layout).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    timer = StepTimer()
    total = args.warmup + args.steps + 1
    step = 0
    while step < total:
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), args.batch):
            if step == total:
                break
            rows = order[start : start + args.batch]
            x = images[rows].contiguous(memory_format=layout)
            optimizer.zero_grad(set_to_none=True)
            loss = F.binary_cross_entropy_with_logits(network(x)[:, 0], masks[rows])
            loss.backward()
            optimizer.step()
            loss.item()  # a real loop looks at the loss; it also waits for the step to finish
            step += 1
    return {**timer.rates(args.batch, args.warmup), "peak_rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------------------------------- parent
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case (median reported)")
    parser.add_argument("--models", default="seed,unet", help="comma-separated: seed, unet")
    parser.add_argument("--cases", default="", help="comma-separated case names to run (default: all)")
    parser.add_argument("--size", type=int, default=256, help="network input height and width")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the seed network")
    parser.add_argument("--unet-steps", type=int, default=10, help="timed steps of the U-Net")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    parser.add_argument("--images", type=int, default=32, help="PNG files in the training set")
    parser.add_argument("--source-size", type=int, nargs=2, default=SOURCE_SIZE, metavar=("H", "W"))
    parser.add_argument("--threads", type=int, help="intra-op threads of every worker (default: torch's)")
    # worker-only arguments
    parser.add_argument("--worker", choices=["library", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--network", choices=["seed", "unet"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--malloc-tuned", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        worker = library_worker if args.worker == "library" else naive_worker
        report_worker(worker(args))
        return
    models = [m for m in args.models.split(",") if m]
    wanted = [c for c in args.cases.split(",") if c]
    cases = {
        name: case for name, case in CASES.items() if case[0] in models and (not wanted or name in wanted)
    }
    results: dict[str, list[dict]] = {name: [] for name in cases}
    info = machine()
    if args.threads:
        info["torch_threads"] = args.threads
    with tempfile.TemporaryDirectory(prefix="dpp-bench-train-") as tmp:
        data = Path(tmp) / "data"
        write_images(data, args.images, *args.source_size)
        for _ in range(args.rounds):
            for name, (network, worker_args, env) in cases.items():
                steps = args.steps if network == "seed" else args.unet_steps
                work = Path(tmp) / name.replace("/", "-")
                worker = ["--worker", worker_args[0], *worker_args[1:], "--network", network]
                common = ["--data", str(data), "--work", str(work), "--size", str(args.size)]
                common += ["--batch", str(args.batch), "--steps", str(steps), "--warmup", str(args.warmup)]
                results[name].append(
                    run_worker(SCRIPT, worker + common, {**env, **threads_env(args.threads)})
                )
    out: dict = {
        "benchmark": "train_throughput",
        "unit": "images/s (wall clock); per_cpu_second: images per CPU-second of the process",
        "rounds": args.rounds,
        "input": f"{args.size}x{args.size}x3 from {args.source_size[0]}x{args.source_size[1]} PNG",
        "batch": args.batch,
        "machine": info,
    }
    for network in models:
        if any(n.startswith(network + "/") for n in results):
            out[network] = summarize(results, network, TARGETS[network])
    emit(out)


if __name__ == "__main__":
    main()
