"""Accuracy of ``set_precision('bf16')`` against fp32: Dice and IoU on unseen CWFID images, same seeds.

DPP's seed example (tests/test_seed_example_cwfid.py, the example's own settings: 256x256, batch 4,
learning rate 1e-4, 'normal' initialisation, brightness/contrast augmentation, test split 0.2) is trained on
the first ``--train-images`` CWFID photos (sorted by name) with each precision and each seed, in fresh
processes. ``--models seed,unet`` adds the predefined U-Net on the same split (the library's defaults
otherwise). Each trained model predicts the remaining photos (``forward_pass_with_interpreted_outputs``,
DPP's rule), the masks are brought back to the photos' size and scored against the ground truth: the
per-image foreground Dice and IoU, averaged. Reported per model and precision: mean Dice, mean IoU and
training seconds (``begin_training``, its test evaluation included) over the seeds, and the bf16 - fp32
differences (the issue's bar: within 0.01).

The default run is short (5 epochs, one seed): it checks the pipeline, not the trade-off. The measurement
for docs/benchmarks.md is ``--epochs 100 --seeds 0 1 2 --models seed,unet`` (the example's 100 epochs;
about 2 minutes per seed-network training on 2 quiet cores, the U-Net much longer), on a quiet machine.
Needs ../shared/data/cwfid (or ``--data``); without it the JSON line says the run was skipped.

Usage: ``python bench/bf16_accuracy.py [--epochs 100] [--seeds 0 1 2] [--models seed,unet]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine, median, report_worker, run_worker, threads_env  # noqa: E402

SCRIPT = Path(__file__).resolve()
CWFID = Path(__file__).resolve().parents[2] / "shared" / "data" / "cwfid"
PRECISIONS = ("fp32", "bf16")


# ------------------------------------------------------------------------------------------- worker
def configure(model, args: argparse.Namespace) -> None:
    """The seed example's settings (or the U-Net's), with a seed so both precisions see the same run."""
    channels = 3
    model.set_random_seed(args.seed)
    model.set_batch_size(4)
    model.set_image_dimensions(args.size, args.size, channels)
    model.set_resize_images(True)
    model.set_test_split(0.2)
    model.set_validation_split(0.0)
    model.set_maximum_training_epochs(args.epochs)
    model.set_augmentation_brightness_and_contrast(True)
    model.set_precision(args.precision)
    if args.network == "unet":
        model.use_predefined_model("u-net")
        return
    model.set_learning_rate(0.0001)
    model.set_weight_initializer("normal")
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


def split_names(data: Path, train: int, unseen: int | None) -> tuple[list[str], list[str]]:
    names = sorted(p.name for p in (data / "images").glob("*.png"))
    rest = names[train:]
    return names[:train], rest if unseen is None else rest[:unseen]


def worker(args: argparse.Namespace) -> dict:
    import numpy as np

    import deepplantphenomics as dpp
    from deepplantphenomics.data.io import read_binary_mask
    from deepplantphenomics.metrics import binary_scores
    from deepplantphenomics.postprocess import resize_mask

    data, work = Path(args.data), Path(args.work)
    train, unseen = split_names(data, args.train_images, args.unseen_images)
    for folder in ("images", "masks"):
        (work / folder).mkdir(parents=True, exist_ok=True)
        for name in train:  # links, not copies: the data stays in ../shared
            os.symlink(data / folder / name, work / folder / name)
    model = dpp.SemanticSegmentationModel(debug=False, save_checkpoints=False, save_dir=str(work / "state"))
    configure(model, args)
    model.load_dataset_from_directory_with_segmentation_masks(str(work / "images"), str(work / "masks"))
    start = time.perf_counter()
    model.begin_training()
    seconds = time.perf_counter() - start
    masks = model.forward_pass_with_interpreted_outputs([str(data / "images" / name) for name in unseen])
    dice, iou = [], []
    for name, mask in zip(unseen, masks):
        truth = read_binary_mask(data / "masks" / name)[0]
        scores = binary_scores(resize_mask(mask, *truth.shape) > 0, truth)
        dice.append(scores["dice"])
        iou.append(scores["iou"])
    return {"dice": float(np.mean(dice)), "iou": float(np.mean(iou)), "train_s": seconds}


# ------------------------------------------------------------------------------------------- parent
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(CWFID), help="CWFID folder (images/, masks/)")
    parser.add_argument("--models", default="seed", help="comma-separated: seed, unet")
    parser.add_argument("--epochs", type=int, default=5, help="the example trains 100")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--size", type=int, default=256, help="network input height and width")
    parser.add_argument("--train-images", type=int, default=12, help="first N photos (by name) to train on")
    parser.add_argument("--unseen-images", type=int, help="how many of the rest to score (default: all)")
    parser.add_argument("--threads", type=int, help="intra-op threads of every worker (default: torch's)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--network", choices=["seed", "unet"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker_command(
    args: argparse.Namespace, network: str, precision: str, seed: int, work: Path
) -> list[str]:
    command = ["--worker", "--network", network, "--precision", precision, "--seed", str(seed)]
    command += [
        "--data",
        args.data,
        "--work",
        str(work),
        "--epochs",
        str(args.epochs),
        "--size",
        str(args.size),
    ]
    command += ["--train-images", str(args.train_images)]
    if args.unseen_images is not None:
        command += ["--unseen-images", str(args.unseen_images)]
    return command


def summary(runs: list[dict]) -> dict:
    keys = ("dice", "iou", "train_s")
    out = {key: round(sum(r[key] for r in runs) / len(runs), 4) for key in keys}
    out["per_seed"] = [{key: round(r[key], 4) for key in keys} for r in runs]
    out["median_train_s"] = round(median([r["train_s"] for r in runs]), 2)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        report_worker(worker(args))
        return
    out: dict = {"benchmark": "bf16_accuracy", "machine": machine()}
    if not (Path(args.data) / "images").is_dir():
        out["skipped"] = f"no CWFID data at '{args.data}' (pass --data)"
        emit(out)
        return
    out["setup"] = {
        "epochs": args.epochs,
        "seeds": args.seeds,
        "train_images": args.train_images,
        "size": args.size,
        "unseen_images": len(split_names(Path(args.data), args.train_images, args.unseen_images)[1]),
    }
    env = threads_env(args.threads)
    with tempfile.TemporaryDirectory(prefix="dpp-bench-bf16-") as tmp:
        for network in [m for m in args.models.split(",") if m]:
            section: dict = {}
            for precision in PRECISIONS:
                runs = []
                for seed in args.seeds:
                    work = Path(tmp) / f"{network}-{precision}-{seed}"
                    runs.append(run_worker(SCRIPT, worker_command(args, network, precision, seed, work), env))
                section[precision] = summary(runs)
            section["bf16_minus_fp32"] = {
                key: round(section["bf16"][key] - section["fp32"][key], 4) for key in ("dice", "iou")
            }
            section["speedup_bf16"] = round(section["fp32"]["train_s"] / section["bf16"]["train_s"], 3)
            out[network] = section
    emit(out)


if __name__ == "__main__":
    main()
