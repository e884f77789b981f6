"""Training throughput of DPP's example network: this library against Keras 3 on TensorFlow (``make bench-peers``).

DPP was built on TensorFlow; a user moving here wants to know the PyTorch engine is not the slow option. The
same network (three 'same' convolutions 3x3x16, 3x3x32, 5x5x32 with relu, then a 1x1 output; truncated
normal 0.05 weights, biases 0.1, as DPP's 'normal' initialiser), the same 256x256 inputs decoded once from
the same PNG files and standardised per image, batch 4, Adam 1e-4, sigmoid cross entropy, fp32:

- ``library``: ``begin_training()`` (the ``train_throughput.py`` worker, this environment's Python);
- ``keras``: ``model.fit`` of the equivalent ``keras.Sequential``, run by the Python of an environment that has
  ``tensorflow-cpu`` (``--keras-python``; ``make bench-peers`` creates ``.venv-peers`` for it). TensorFlow is not
  a dependency of this project and never imported by it.

Each case runs in a fresh process, interleaved over ``--rounds`` rounds; the median is reported. Both time the
steps after ``--warmup`` untimed ones (Keras: its batch-end callback; the library: the optimizer-step hook).

Usage: ``python bench/peers_keras.py --keras-python .venv-peers/bin/python [--rounds 5]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, report_worker, run_worker, spread  # noqa: E402

SCRIPT = Path(__file__).resolve()
SOURCE_SIZE = (384, 512)


def keras_worker(args: argparse.Namespace) -> dict:
    """DPP's example network in Keras 3 (TensorFlow backend), timed per batch. Imports no torch."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf
    from PIL import Image

    data = Path(args.data)
    files = sorted((data / "images").glob("*.png"))
    images, masks = [], []
    for path in files:  # decode, resize (antialiased bilinear) and standardise once, as the library does
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        pixels = tf.image.resize(pixels, (args.size, args.size), antialias=True).numpy()
        pixels = (pixels - pixels.mean()) / max(float(pixels.std()), 1.0 / math.sqrt(pixels.size))
        mask = (np.asarray(Image.open(data / "masks" / path.name)) > 127).astype(np.float32)[..., None]
        mask = tf.image.resize(mask, (args.size, args.size), method="nearest").numpy()
        images.append(pixels)
        masks.append(mask)
    x, y = np.stack(images), np.stack(masks)

    keras.utils.set_random_seed(0)

    def conv(filters: int, kernel: int, activation: str | None) -> keras.layers.Layer:
        return keras.layers.Conv2D(
            filters,
            kernel,
            padding="same",
            activation=activation,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.05, seed=0),
            bias_initializer=keras.initializers.Constant(0.1),
        )

    model = keras.Sequential(
        [
            keras.Input((args.size, args.size, 3)),
            conv(16, 3, "relu"),
            conv(32, 3, "relu"),
            conv(32, 5, "relu"),
            conv(1, 1, None),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.BinaryCrossentropy(from_logits=True)
    )
    stamps: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    total = args.warmup + args.steps + 1
    epochs = math.ceil(total * args.batch / len(x))
    model.fit(x, y, batch_size=args.batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])
    timed = stamps[args.warmup : total]
    images_per_s = args.batch * (len(timed) - 1) / (timed[-1] - timed[0])
    return {
        "images_per_s": images_per_s,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "threads": [tf.config.threading.get_intra_op_parallelism_threads(), os.cpu_count()],
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras-python", default=".venv-peers/bin/python", help="Python that has tensorflow")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--source-size", type=int, nargs=2, default=SOURCE_SIZE, metavar=("H", "W"))
    parser.add_argument("--worker", choices=["keras"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        report_worker(keras_worker(args))
        return
    python = Path(args.keras_python)
    if not python.is_file():
        raise SystemExit(
            f"No Python with TensorFlow at '{python}'. Run `make bench-peers` (it creates .venv-peers), or pass "
            "--keras-python PATH."
        )
    from _common import machine, write_images

    results: dict[str, list[dict]] = {"library": [], "keras": []}
    with tempfile.TemporaryDirectory(prefix="dpp-bench-peers-") as tmp:
        data = Path(tmp) / "data"
        write_images(data, args.images, *args.source_size)
        common = ["--data", str(data), "--size", str(args.size), "--batch", str(args.batch)]
        common += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
        train_script = SCRIPT.parent / "train_throughput.py"
        for _ in range(args.rounds):
            work = ["--work", str(Path(tmp) / "library")]
            results["library"].append(
                run_worker(train_script, ["--worker", "library", "--network", "seed", *work, *common])
            )
            results["keras"].append(
                run_worker(
                    SCRIPT, ["--worker", "keras", *common], {"TF_CPP_MIN_LOG_LEVEL": "2"}, python=str(python)
                )
            )
    rates = {name: [r["images_per_s"] for r in rows] for name, rows in results.items()}
    out = {
        "benchmark": "peers_keras",
        "unit": f"training images/s (wall clock), DPP's example network, {args.size}x{args.size}, "
        f"batch {args.batch}, fp32",
        "rounds": args.rounds,
        "machine": machine(),
        "tensorflow": results["keras"][0]["tensorflow"],
        "keras": results["keras"][0]["keras"],
        "seed": {
            "library": round(median(rates["library"]), 3),
            "keras": round(median(rates["keras"]), 3),
            "spread": {name: spread(values) for name, values in rates.items()},
            "ratio_library_keras": round(median(rates["library"]) / median(rates["keras"]), 3),
        },
    }
    emit(out)


if __name__ == "__main__":
    main()
