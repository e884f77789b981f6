"""End to end, as a user runs it: seconds from starting Python to a saved result, in fresh processes.

- ``train``: import, decode 32 photos (384x512 PNG, resized to 256x256), build DPP's example network (the
  ``seed`` network of bench/train_throughput.py, batch 4), train 3 epochs, save. The library does what
  ``begin_training()`` does (state files, metrics.csv, the training-curves PNG); the hand-written loop
  (``train_throughput.naive_worker``'s: PIL decoding, NCHW fp32, Adam, BCE) saves a ``state_dict``.
- ``infer``: import, load the saved network, predict the 32 photos (decode, resize, standardise, forward
  in batches of 4, probabilities as numpy): ``forward_pass_with_file_inputs`` against the loop by hand.

Library cases run with the memory-layout cache (``DPP_CACHE_DIR``) warmed by an untimed first run, as on a
user's machine after the first training; ``train/library_cold_cache`` starts each run with an empty cache,
so it includes the layout measurement. Each case runs in a fresh process, interleaved over ``--rounds``
rounds; the median wall time of the whole process (interpreter start included) is reported, with the
phases the worker timed itself (``import_s``: importing the library or torch) and the library / hand-written
speed ratios (hand-written seconds / library seconds: above 1 means the library is faster).

``layout_decisions``: the memory layouts the library measured and chose. ``decode_s``: decoding the photos
(``load_pairs``) in this process, one thread against the thread pool.

``--profile`` runs one library training worker under cProfile and prints its 30 most expensive calls
(cumulative) instead.

Before the runs the library's and these scripts' bytecode is written (``_common.compile_bytecode``): with
``PYTHONDONTWRITEBYTECODE`` set, every fresh process would otherwise compile the library's source again, which
an installed package never does (``machine.dont_write_bytecode`` says whether the variable was set).

Usage: ``python bench/end_to_end.py [--rounds 3] [--epochs 3] [--images 32]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()  # before any heavy import: the worker's own import time is measured from here

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    compile_bytecode,
    emit,
    machine,
    median,
    report_worker,
    run_worker,
    spread,
    threads_env,
    write_images,
)

SCRIPT = Path(__file__).resolve()
SOURCE_SIZE = (384, 512)
CASES: dict[str, tuple[str, str]] = {  # name -> (worker, cache: warm / cold / none)
    "train/library": ("train_library", "warm"),
    "train/library_cold_cache": ("train_library", "cold"),
    "train/naive": ("train_naive", "none"),
    "infer/library": ("infer_library", "warm"),
    "infer/naive": ("infer_naive", "none"),
}


# ------------------------------------------------------------------------------------------- workers
def train_library(args: argparse.Namespace) -> dict:
    from train_throughput import declare_library_network

    import deepplantphenomics as dpp

    imported = time.perf_counter()
    data = Path(args.data)
    model = dpp.SemanticSegmentationModel(debug=False, save_checkpoints=False, save_dir=args.state)
    model.set_batch_size(args.batch)
    model.set_image_dimensions(args.size, args.size, 3)
    model.set_resize_images(True)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.set_random_seed(0)
    model.set_learning_rate(1e-4)
    model.set_weight_initializer("normal")
    model.set_maximum_training_epochs(args.epochs)
    model.load_dataset_from_directory_with_segmentation_masks(str(data / "images"), str(data / "masks"))
    declare_library_network(model, "seed")
    model.begin_training()
    return {"import_s": imported - START}


def train_naive(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F
    from train_throughput import init_like_library, load_by_hand, seed_network_by_hand

    imported = time.perf_counter()
    images, masks = load_by_hand(Path(args.data), args.size)
    torch.manual_seed(0)
    network = seed_network_by_hand()
    init_like_library(network, "normal", seed=0)
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), args.batch):
            rows = order[start : start + args.batch]
            optimizer.zero_grad(set_to_none=True)
            loss = F.binary_cross_entropy_with_logits(network(images[rows])[:, 0], masks[rows])
            loss.backward()
            optimizer.step()
            loss.item()  # a real loop looks at the loss
    Path(args.state).mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), Path(args.state) / "naive.pt")
    return {"import_s": imported - START}


def photo_files(args: argparse.Namespace) -> list[Path]:
    return sorted((Path(args.data) / "images").glob("*.png"))


def infer_library(args: argparse.Namespace) -> dict:
    import deepplantphenomics as dpp

    imported = time.perf_counter()
    model = dpp.load_model(args.state)
    probabilities = model.forward_pass_with_file_inputs([str(p) for p in photo_files(args)])
    assert probabilities.shape == (args.images, args.size, args.size, 1)
    return {"import_s": imported - START}


def infer_naive(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from train_throughput import seed_network_by_hand

    imported = time.perf_counter()
    network = seed_network_by_hand()
    network.load_state_dict(torch.load(Path(args.state) / "naive.pt"))
    network.eval()
    outputs = []
    files = photo_files(args)
    with torch.no_grad():
        for start in range(0, len(files), args.batch):
            batch = []
            for path in files[start : start + args.batch]:
                pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
                pixels = F.interpolate(
                    pixels[None].float() / 255, size=(args.size, args.size), mode="bilinear", antialias=True
                )[0]
                std = pixels.std(unbiased=False).clamp_min(1 / math.sqrt(pixels.numel()))
                batch.append((pixels - pixels.mean()) / std)
            probs = torch.sigmoid(network(torch.stack(batch)))
            outputs.extend(p.permute(1, 2, 0).numpy() for p in probs)
    assert len(outputs) == args.images
    return {"import_s": imported - START}


WORKERS = {f.__name__: f for f in (train_library, train_naive, infer_library, infer_naive)}


def decode_seconds(data: Path, size: int, rounds: int) -> dict:
    """Median seconds of ``load_pairs`` (decode, check, resize) over the photos, one thread against the pool."""
    from deepplantphenomics.data import dataset

    pairs = dataset.pair_files(data / "images", data / "masks")[0]
    threads = dataset.DECODE_THREADS
    times: dict[str, list[float]] = {"one_thread": [], f"{threads}_threads": []}
    for _ in range(rounds):
        for name, count in (("one_thread", 1), (f"{threads}_threads", threads)):
            dataset.DECODE_THREADS = count
            start = time.perf_counter()
            dataset.load_pairs(pairs, 3, 2, (size, size), True, False)
            times[name].append(time.perf_counter() - start)
    dataset.DECODE_THREADS = threads
    return {name: round(median(values), 3) for name, values in times.items()}


def layout_decisions(cache: Path) -> list[dict]:
    """The layouts the library chose (``runtime.choose_layout``), with the step times it measured."""
    import json

    from deepplantphenomics.runtime import LAYOUT_CACHE_FILE

    path = cache / LAYOUT_CACHE_FILE
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
    return [{"key": key.split("|", 1)[1], **entry} for key, entry in sorted(entries.items())]


def profile_worker(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(train_library, args)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


# ------------------------------------------------------------------------------------------- parent
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case (median reported)")
    parser.add_argument("--cases", default="", help="comma-separated case names to run (default: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=32, help="PNG photos to train on and predict")
    parser.add_argument("--size", type=int, default=256, help="network input height and width")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--source-size", type=int, nargs=2, default=SOURCE_SIZE, metavar=("H", "W"))
    parser.add_argument("--threads", type=int, help="intra-op threads of every worker (default: torch's)")
    parser.add_argument("--profile", action="store_true", help="profile one library training run instead")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker_args(args: argparse.Namespace, worker: str, data: Path, state: Path) -> list[str]:
    common = ["--epochs", str(args.epochs), "--images", str(args.images), "--size", str(args.size)]
    return [
        "--worker",
        worker,
        "--data",
        str(data),
        "--state",
        str(state),
        "--batch",
        str(args.batch),
        *common,
    ]


def timed_run(args: argparse.Namespace, worker: str, data: Path, state: Path, env: dict[str, str]) -> dict:
    start = time.perf_counter()
    result = run_worker(SCRIPT, worker_args(args, worker, data, state), env)
    return {**result, "process_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        report_worker(WORKERS[args.worker](args))
        return
    wanted = [c for c in args.cases.split(",") if c]
    cases = {name: case for name, case in CASES.items() if not wanted or name in wanted}
    info = {**machine(), "dont_write_bytecode": compile_bytecode()}
    results: dict[str, list[dict]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory(prefix="dpp-bench-e2e-") as tmp:
        root = Path(tmp)
        data = root / "data"
        write_images(data, args.images, *args.source_size)
        if args.profile:
            args.data, args.state = str(data), str(root / "profiled")
            profile_worker(args)
            return
        decode = decode_seconds(data, args.size, max(args.rounds, 3))
        base = {**threads_env(args.threads), "DPP_CACHE_DIR": str(root / "cache-warm")}
        # Untimed: warms the layout cache, and writes the states the inference cases load.
        timed_run(args, "train_library", data, root / "state-library", base)
        timed_run(args, "train_naive", data, root / "state-naive", base)
        for round_ in range(args.rounds):
            for name, (worker, cache) in cases.items():
                env = dict(base)
                if cache == "cold":
                    env["DPP_CACHE_DIR"] = str(root / f"cache-cold-{round_}")
                kind = "library" if "library" in worker else "naive"
                state = root / f"state-{kind}" if name.startswith("infer/") else root / f"out-{round_}-{kind}"
                results[name].append(timed_run(args, worker, data, state, env))
        layouts = layout_decisions(root / "cache-warm")
    out: dict = {
        "benchmark": "end_to_end",
        "unit": "seconds per fresh process (wall clock, interpreter start to saved result); median of rounds",
        "rounds": args.rounds,
        "task": f"{args.images} photos {args.source_size[0]}x{args.source_size[1]} PNG -> {args.size}x{args.size}, "
        f"seed network, batch {args.batch}, {args.epochs} epochs",
        "machine": info,
        "decode_s": decode,
        "layout_decisions": layouts,
    }
    for name, runs in results.items():
        out[name] = {
            "process_s": round(median([r["process_s"] for r in runs]), 3),
            "import_s": round(median([r["import_s"] for r in runs]), 3),
            "spread": spread([r["process_s"] for r in runs]),
        }
    for task in ("train", "infer"):
        lib, naive = out.get(f"{task}/library"), out.get(f"{task}/naive")
        if lib and naive:
            out[f"{task}_ratio_naive_over_library"] = round(naive["process_s"] / lib["process_s"], 3)
    emit(out)


if __name__ == "__main__":
    main()
