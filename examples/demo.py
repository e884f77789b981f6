"""The demo behind `make demo`: DPP's semantic segmentation example on generated plant images.

It writes a small dataset of procedural seedling photos with exact masks, trains the network of DPP's own example
(three convolutions, sigmoid cross entropy) with the library, prints the test metrics, then segments images the
model never saw and writes masks, mask-on-image overlays and a report. Last, it measures every plant of a
generated tray photographed on three days (`dpp measure` with the pretrained vegetation tool) and draws their
growth curves (`dpp growth`).

    python examples/demo.py --out demo_output [--epochs 30] [--images 48] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import deepplantphenomics as dpp
from deepplantphenomics.data.io import read_binary_mask, read_image
from deepplantphenomics.metrics import binary_scores
from deepplantphenomics.postprocess import overlay_mask
from deepplantphenomics.synthetic import write_synthetic_dataset, write_tray_series


def measure_trays(out: Path, seed: int = 0) -> dict[str, Path]:
    """Three daily photos of a 4x6 tray (pot B3 empty) -> per-plant CSV and overlays -> growth curves.

    Runs the two commands as a user types them (`dpp measure`, `dpp growth`), in this process.
    """
    from deepplantphenomics.cli import main as dpp_command

    images_dir, _ = write_tray_series(out / "tray", days=3, seed=seed, empty=("B3",))
    results, growth = out / "tray_measured", out / "tray_growth"
    for args in (
        ["measure", str(images_dir), "--grid", "4x6", "--method", "network-fast", "--out", str(results)],
        ["growth", str(results / "plants.csv"), "--time-from-name", r"day(\d+)", "--out", str(growth)],
    ):
        print("$ dpp " + " ".join(args))
        dpp_command(args, standalone_mode=False)
    return {
        "plants_csv": results / "plants.csv",
        "growth_csv": growth / "growth.csv",
        "growth_html": growth / "growth.html",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="demo_output", help="folder for data, state, masks and report")
    parser.add_argument("--images", type=int, default=48, help="generated training images")
    parser.add_argument("--unseen", type=int, default=8, help="generated images never shown to the model")
    parser.add_argument("--size", type=int, default=128, help="image and network size (pixels)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    out = Path(args.out)
    started = time.time()
    images_dir, masks_dir = write_synthetic_dataset(
        out / "data", args.images, args.size, args.size, seed=args.seed
    )
    unseen_images, unseen_masks = write_synthetic_dataset(
        out / "unseen", args.unseen, args.size, args.size, seed=args.seed + 1000, prefix="unseen"
    )
    print(
        f"Generated {args.images} training images in '{images_dir}' and {args.unseen} unseen ones in "
        f"'{unseen_images}'."
    )

    # --- DPP's example, as users write it (size, epochs and learning rate scaled to a CPU demo) -----------------
    model = dpp.SemanticSegmentationModel(
        debug=True, save_checkpoints=False, report_rate=20, save_dir=out / "saved_state"
    )
    channels = 3
    model.set_batch_size(4)
    model.set_image_dimensions(args.size, args.size, channels)
    model.set_resize_images(True)
    model.set_test_split(0.2)
    model.set_validation_split(0.0)
    model.set_learning_rate(0.001)
    model.set_random_seed(args.seed)
    model.set_maximum_training_epochs(args.epochs)
    model.set_augmentation_brightness_and_contrast(True)
    model.load_dataset_from_directory_with_segmentation_masks(images_dir, masks_dir)
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
    model.begin_training()
    test_metrics = model.test_metrics

    # --- Segment images the model never saw ----------------------------------------------------------------------
    files = sorted(unseen_images.glob("*.png"))
    masks = model.forward_pass_with_interpreted_outputs(files)
    predictions = out / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, mask in zip(files, masks):
        image = read_image(path)
        truth = read_binary_mask(unseen_masks / path.name)[0]
        Image.fromarray(mask).save(predictions / f"{path.stem}_mask.png")
        Image.fromarray(overlay_mask(image, mask > 0)).save(predictions / f"{path.stem}_overlay.png")
        scores = binary_scores(mask > 0, truth)
        rows.append({"file": path.name, **{k: round(v, 4) for k, v in scores.items()}})
    mean_dice = float(np.mean([r["dice"] for r in rows]))
    mean_iou = float(np.mean([r["iou"] for r in rows]))

    report = out / "report.md"
    lines = [
        "# deepplantphenomics demo report",
        "",
        f"Trained DPP's example network on {args.images} generated images ({args.size}x{args.size}) for "
        f"{args.epochs} epochs in {time.time() - started:.0f} s.",
        "",
        "## Test split",
        "",
        f"- loss {test_metrics['loss']:.4f}, pixel accuracy {test_metrics['pixel_accuracy']:.4f}, "
        f"plant IoU {test_metrics['foreground_iou']:.4f}, plant Dice {test_metrics['foreground_dice']:.4f}",
        "",
        f"## Images the model never saw (mean Dice {mean_dice:.4f}, mean IoU {mean_iou:.4f})",
        "",
        "| file | Dice | IoU | precision | recall | mask | overlay |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        stem = Path(row["file"]).stem
        lines.append(
            f"| {row['file']} | {row['dice']} | {row['iou']} | {row['precision']} | {row['recall']} | "
            f"![](predictions/{stem}_mask.png) | ![](predictions/{stem}_overlay.png) |"
        )
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "unseen_scores.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")

    print()
    trays = measure_trays(out, seed=args.seed)
    print()
    print(f"Unseen images: mean Dice {mean_dice:.4f}, mean IoU {mean_iou:.4f} over {len(rows)} images")
    print(f"Trained state:        {model.save_dir}")
    print(f"Masks and overlays:   {predictions}")
    print(f"Report:               {report}")
    print(f"Plants of the tray:   {trays['plants_csv']}; growth: {trays['growth_html']}")
    print(f"Done in {time.time() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
