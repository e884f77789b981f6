"""Binary segmentation of large images with automatic patching (``set_patch_size``).

A network never sees a whole 1024x768 image: training runs on patches cut from the full-resolution images
(every pixel covered), and inference cuts each image into overlapping tiles, predicts them and blends the
overlaps so no seams show, returning a mask of the image's own size, whatever that size is.

The data are synthetic field images (``deepplantphenomics.synthetic``: rosettes on soil with stones and leaf
litter) written to ``OUT/data``; the unseen images used for scoring are generated with another seed and at
another size than the training images, to show that inference does not care about the training size.

    python examples/large_image_patching.py --out large_images
    python examples/large_image_patching.py --quick   # a few seconds: small images, one epoch

Writes the trained state (``OUT/model``), the predicted masks and overlays (``OUT/predictions``) and the
scores (``OUT/results.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import deepplantphenomics as dpp
from deepplantphenomics.data.io import read_binary_mask, read_image
from deepplantphenomics.metrics import binary_scores
from deepplantphenomics.postprocess import overlay_mask
from deepplantphenomics.synthetic import write_synthetic_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("large_images"), help="output folder")
    parser.add_argument("--images", type=int, default=None, help="training images (default 6; --quick: 2)")
    parser.add_argument("--height", type=int, default=None, help="training image height (default 768)")
    parser.add_argument("--width", type=int, default=None, help="training image width (default 1024)")
    parser.add_argument("--patch-size", type=int, default=None, help="square patch side (default 128)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 3; --quick: 1)")
    parser.add_argument("--model", choices=("u-net", "fcn-18"), default="u-net", help="predefined network")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a shortened run for tests")
    args = parser.parse_args(argv)
    quick = {"images": 2, "height": 192, "width": 256, "patch_size": 64, "epochs": 1}
    full = {"images": 6, "height": 768, "width": 1024, "patch_size": 128, "epochs": 3}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("images", "height", "width", "patch_size", "epochs", "threads"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be a positive int, received {getattr(args, key)}")
    if args.model == "u-net" and args.patch_size % 16:
        parser.error(f"--patch-size must be a multiple of 16 for the U-Net, received {args.patch_size}")
    return args


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out
    images_dir, masks_dir = write_synthetic_dataset(
        out / "data", args.images, height=args.height, width=args.width, seed=args.seed
    )
    # Unseen images: another seed, and a size that is neither the training size nor a multiple of the patch.
    unseen_h, unseen_w = args.height + args.height // 4 + 3, args.width - args.width // 8 + 5
    unseen_images, unseen_masks = write_synthetic_dataset(
        out / "unseen", 2, height=unseen_h, width=unseen_w, seed=args.seed + 1000
    )
    print(
        f"{args.images} training images of {args.width}x{args.height}, patches {args.patch_size}x{args.patch_size}; "
        f"2 unseen images of {unseen_w}x{unseen_h}",
        flush=True,
    )

    model = dpp.SemanticSegmentationModel(
        debug=True, save_dir=out / "model", report_rate=20, save_checkpoints=False
    )
    model.set_random_seed(args.seed)
    model.set_number_of_threads(args.threads)
    model.set_image_dimensions(args.height, args.width, 3)
    model.set_patch_size(args.patch_size, args.patch_size)
    model.set_batch_size(4)
    model.set_maximum_training_epochs(args.epochs)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.set_loss_function("cross entropy + dice")
    model.set_augmentation_flip_horizontal(True)
    model.set_augmentation_flip_vertical(True)
    model.load_dataset_from_directory_with_segmentation_masks(images_dir, masks_dir)
    model.use_predefined_model(args.model)

    start = time.perf_counter()
    model.begin_training()
    train_seconds = time.perf_counter() - start

    files = sorted(unseen_images.iterdir())
    start = time.perf_counter()
    predicted = model.forward_pass_with_interpreted_outputs(files)  # full-size 0/255 masks, tiled inference
    infer_seconds = time.perf_counter() - start
    model.shut_down()

    predictions = out / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    per_image = {}
    for path, mask in zip(files, predicted):
        truth = read_binary_mask(unseen_masks / path.name)[0]  # the library's reader: the loader's mask rules
        image = read_image(path)
        if mask.shape != truth.shape:
            raise RuntimeError(f"predicted mask is {mask.shape}, expected the image size {truth.shape}")
        Image.fromarray(mask).save(predictions / f"{path.stem}_mask.png")
        Image.fromarray(overlay_mask(image, mask)).save(predictions / f"{path.stem}_overlay.png")
        per_image[path.name] = binary_scores(mask, truth)
        print(f"{path.name}: {mask.shape[1]}x{mask.shape[0]} mask, Dice {per_image[path.name]['dice']:.4f}")

    results = {
        "mean_dice": float(np.mean([s["dice"] for s in per_image.values()])),
        "per_image": per_image,
        "train_size": [args.height, args.width],
        "unseen_size": [unseen_h, unseen_w],
        "patch_size": args.patch_size,
        "epochs": args.epochs,
        "model": args.model,
        "train_seconds": round(train_seconds, 1),
        "inference_seconds": round(infer_seconds, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"mean Dice on unseen images: {results['mean_dice']:.4f}; results in '{out / 'results.json'}'")
    return results


if __name__ == "__main__":
    main()
