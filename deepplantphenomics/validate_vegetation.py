"""Validation of the vegetation tool per setting: where its masks can be trusted, and how far (issue 15).

Run from the repository root, beside the shared data folder:

    python -m deepplantphenomics.validate_vegetation --data ../shared/data

Scores, per setting, the shipped network (``method='network'`` and ``'network-fast'``) and the two colour-index
baselines (ExG + Otsu, CIVE + Otsu) on images the network never trained on:

- **field (real)**: the held-out photos of each dataset in ``--data`` that the model card names (never trained
  on, nor used for any choice);
- **lab composites** (``deepplantphenomics.synthetic.generate_lab_image``, seeds of their own): rosettes in pots
  on trays, seedlings on white paper, plants on dark cloth, and pots with real plant cut-outs taken from the
  held-out photos only (``load_cutouts``);
- **generated trays of seedlings** (``generate_tray_image``, 4x6 pots, 0-1 days old, seeds ``LAB_SEED * 100 + i``):
  plants of 30-170 pixels, as on the first days of a growth series;
- **no-plant scenes**: the same lab settings with no plant (often with green objects that are not plants).

It prints, per setting, the mean per-image Dice of each method, the median over images of the network's
predicted / true plant area, and the share of images the quality check flags (``tools.quality_flags``); for
no-plant scenes, the mean percentage of pixels each method leaves as background. ``--all-photos`` adds the
flag counts on every photo in ``--data`` (the false-flag rate on real field photos). ``--json`` saves it all.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from deepplantphenomics.data.dataset import pair_files
from deepplantphenomics.data.io import read_binary_mask, read_image
from deepplantphenomics.metrics import binary_scores
from deepplantphenomics.synthetic import generate_lab_image, generate_tray_image, load_cutouts
from deepplantphenomics.tools import METHODS, model_card, quality_flags, segment_image

__all__ = ["LAB_SETTINGS", "TRAY_SETTING", "format_tables", "main", "validate", "write_card_block"]

# Lab composite settings: (label, scene, use held-out real cut-outs).
LAB_SETTINGS = (
    ("lab: rosettes in pots on trays", "pots", False),
    ("lab: pots, real held-out plant cut-outs", "pots", True),
    ("lab: seedlings on white paper", "paper", False),
    ("lab: plants on dark cloth", "cloth", False),
)
TRAY_SETTING = "generated trays: seedlings 0-1 days old (4x6 pots)"
NO_PLANT_SETTING = "no plant: lab scenes, often with green objects"
# The lab composites' seeds: [LAB_SEED, setting, image]; no training recipe draws from this family.
LAB_SEED = 1515


def _rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) from what read_image returns."""
    if image.dtype != np.uint8:
        image = np.rint(image / 257.0).astype(np.uint8)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]


def _score_image(image: np.ndarray, truth: np.ndarray, row: dict[str, Any]) -> dict[str, np.ndarray]:
    """Add one image's Dice per method, the network's area ratio and its quality flags to ``row``.

    Returns:
        Each method's (H, W) bool mask of the image.
    """
    truth = truth > 0
    masks = {}
    for method in METHODS:
        mask = masks[method] = segment_image(image, method) > 0
        if truth.any():
            row.setdefault(method, []).append(binary_scores(mask, truth)["dice"])
        else:
            row.setdefault(method, []).append(100.0 * (1.0 - float(mask.mean())))
        if method == "network":
            if truth.any():
                row.setdefault("area_ratio", []).append(float(mask.sum()) / float(truth.sum()))
            row.setdefault("flags", []).append(quality_flags(image, mask))
    return masks


def _summarise(label: str, row: dict[str, Any], no_plant: bool = False) -> dict[str, Any]:
    flags = row.pop("flags", [])
    ratios = row.pop("area_ratio", [])
    summary: dict[str, Any] = {"setting": label, "images": len(row["network"]), "no_plant": no_plant}
    for method in METHODS:
        summary[method] = round(float(np.mean(row[method])), 4 if not no_plant else 2)
    summary["area_ratio_median"] = round(float(np.median(ratios)), 3) if ratios else None
    summary["flagged_share"] = round(sum(1 for f in flags if f) / max(len(flags), 1), 3)
    summary["flag_counts"] = dict(Counter(flag for f in flags for flag in f))
    return summary


def _held_out(data: Path) -> list[tuple[str, list[tuple[Path, Path]]]]:
    """(dataset, [(image, mask), ...]) of the card's held-out photos found under ``data``."""
    found = []
    for info in model_card()["training"]["datasets"]:
        folder = data / info["folder"]
        if not (folder / "images").is_dir():
            continue
        pairs, _ = pair_files(folder / "images", folder / "masks")
        names = set(info["held_out_files"])
        found.append((info["folder"], [pair for pair in pairs if pair[0].name in names]))
    return found


def _held_out_cutouts(data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real plant cut-outs from the held-out photos only (never from photos the network trained on)."""
    cutouts = []
    for info in model_card()["training"]["datasets"]:
        folder = data / info["folder"]
        if (folder / "images").is_dir():
            held = set(info["held_out_files"])
            others = [p.name for p in (folder / "images").iterdir() if p.name not in held]
            cutouts += load_cutouts(folder, max_cutouts=100, min_pixels=200, exclude=others)
    return cutouts


def _tray_setting(images: int) -> dict[str, Any]:
    """The trays of seedlings, scored per image as the other settings and per plant, for ``network`` and
    ``network-fast``: the share of seedlings found (half of the plant's pixels in the mask) and the median of
    |mask area - true area| / true area over the plants (the mask's pixels in the plant's pot), since a tray's
    Dice hides a missed seedling."""
    rows, cols = 4, 6
    row: dict[str, Any] = {}
    found: dict[str, list[bool]] = {"network": [], "network-fast": []}
    errors: dict[str, list[float]] = {"network": [], "network-fast": []}
    for i in range(images):  # small plants: what growth-curve users measure on their first days
        image, truth, pots = generate_tray_image(rows, cols, 0.5 * (i % 3), seed=LAB_SEED * 100 + i)
        masks = _score_image(image, truth, row)
        cell = image.shape[0] // rows
        for method in found:
            mask = masks[method]
            for pot in np.unique(pots[pots > 0]):
                plant = pots == pot
                top, left = (cell * k for k in divmod(int(pot) - 1, cols))
                inside = float(mask[top : top + cell, left : left + cell].sum())
                found[method].append(bool(mask[plant].mean() >= 0.5))
                errors[method].append(abs(inside - plant.sum()) / plant.sum())
    summary = _summarise(TRAY_SETTING, row)
    summary["plants_found_share"] = {m: round(float(np.mean(v)), 3) for m, v in found.items()}
    summary["plant_area_error_median"] = {m: round(float(np.median(v)), 3) for m, v in errors.items()}
    return summary


def validate(
    data: Path | None, lab_images: int = 24, height: int = 600, width: int = 800, log=print
) -> dict[str, Any]:
    """Scores per setting (see the module's docstring); ``data`` None or missing skips the real photos.

    Returns:
        ``{"settings": [summary, ...], "lab_size": [h, w], "seconds": ...}``, one summary per setting with the
        mean of each method, ``area_ratio_median``, ``flagged_share`` and ``flag_counts``.
    """
    start = time.time()
    summaries = []
    if data is not None and data.is_dir():
        for name, pairs in _held_out(data):
            row: dict[str, Any] = {}
            for image_path, mask_path in pairs:
                _score_image(_rgb(read_image(image_path)), read_binary_mask(mask_path)[0], row)
            summaries.append(_summarise(f"field (real, held-out): {name}", row))
            log(f"{summaries[-1]['setting']}: {len(pairs)} photos, {time.time() - start:.0f} s")
    cutouts = _held_out_cutouts(data) if data is not None and data.is_dir() else []
    for index, (label, scene, real) in enumerate(LAB_SETTINGS):
        if real and not cutouts:
            continue
        row = {}
        for i in range(lab_images):
            generator = np.random.default_rng([LAB_SEED, index, i])
            image, truth = generate_lab_image(height, width, generator, scene, cutouts if real else None)
            _score_image(image, truth, row)
        summaries.append(_summarise(label, row))
        log(f"{label}: {lab_images} images, {time.time() - start:.0f} s")
    summaries.append(_tray_setting(lab_images))
    log(f"{TRAY_SETTING}: {lab_images} images, {time.time() - start:.0f} s")
    row = {}
    for i in range(lab_images):
        image, truth = generate_lab_image(height, width, np.random.default_rng([LAB_SEED, 99, i]), "empty")
        _score_image(image, truth, row)
    summaries.append(_summarise(NO_PLANT_SETTING, row, no_plant=True))
    return {"settings": summaries, "lab_size": [height, width], "seconds": round(time.time() - start)}


def flag_rates(data: Path, log=print) -> list[dict[str, Any]]:
    """Quality flags of the network's masks on every photo of every dataset under ``data``."""
    rows = []
    for folder in sorted(p for p in data.iterdir() if (p / "images").is_dir() and (p / "masks").is_dir()):
        pairs, _ = pair_files(folder / "images", folder / "masks")
        counts: Counter = Counter()
        flagged = []
        for image_path, _ in pairs:
            image = _rgb(read_image(image_path))
            flags = quality_flags(image, segment_image(image, "network"))
            counts.update(flags)
            if flags:
                flagged.append(f"{image_path.name}: {';'.join(flags)}")
        rows.append(
            {"dataset": folder.name, "photos": len(pairs), "flagged": flagged, "flag_counts": dict(counts)}
        )
        log(f"{folder.name}: {len(flagged)} of {len(pairs)} flagged")
    return rows


def format_tables(result: dict[str, Any]) -> str:
    """Markdown tables of :func:`validate`'s result (and ``flag_rates`` under ``result['all_photos']``)."""
    lines = [
        "| setting | images | network | network-fast | ExG + Otsu | CIVE + Otsu | network area / true "
        "(median) | flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in result["settings"]:
        if s["no_plant"]:
            continue
        ratio = "-" if s["area_ratio_median"] is None else f"{s['area_ratio_median']:.2f}"
        lines.append(
            f"| {s['setting']} | {s['images']} | {s['network']:.3f} | {s['network-fast']:.3f} | {s['exg']:.3f} | "
            f"{s['cive']:.3f} | {ratio} | {s['flagged_share']:.0%} |"
        )
    for s in result["settings"]:
        if "plants_found_share" in s:
            for method, share in s["plants_found_share"].items():
                lines.append(
                    f"\n{s['setting']}, {method}: finds {share:.1%} of the seedlings, median plant area "
                    f"error {s['plant_area_error_median'][method]:.1%}"
                )
    lines += [
        "",
        "| no-plant setting | images | % background: network | network-fast | ExG + Otsu | CIVE + Otsu |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for s in result["settings"]:
        if s["no_plant"]:
            lines.append(
                f"| {s['setting']} | {s['images']} | {s['network']:.1f} | {s['network-fast']:.1f} | "
                f"{s['exg']:.1f} | {s['cive']:.1f} |"
            )
    for row in result.get("all_photos", []):
        lines.append(
            f"\n{row['dataset']}: {len(row['flagged'])} of {row['photos']} photos flagged {row['flag_counts']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepplantphenomics.validate_vegetation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder of datasets")
    parser.add_argument("--lab-images", type=int, default=24, help="images per lab setting")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(600, 800), metavar=("H", "W"), help="lab images"
    )
    parser.add_argument("--all-photos", action="store_true", help="flag counts on every photo in --data")
    parser.add_argument("--json", type=Path, help="also save the results as JSON")
    parser.add_argument("--card", type=Path, help="write the results into this folder's model_card.json")
    args = parser.parse_args(argv)
    if args.lab_images < 1 or min(args.size) < 16:
        parser.error("--lab-images must be >= 1 and --size at least 16 16")
    result = validate(args.data, args.lab_images, args.size[0], args.size[1])
    if args.all_photos and args.data.is_dir():
        result["all_photos"] = flag_rates(args.data)
    print(format_tables(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.card:
        write_card_block(result, args.card)
    return 0


def write_card_block(result: dict[str, Any], directory: Path) -> None:
    """Store ``result`` as the ``validation`` section of ``directory/model_card.json`` (nothing else changes)."""
    from deepplantphenomics import state
    from deepplantphenomics.tools import MODEL_CARD

    path = directory / MODEL_CARD
    card = json.loads(path.read_text(encoding="utf-8"))
    card["validation"] = {
        "command": "python -m deepplantphenomics.validate_vegetation --data ../shared/data --all-photos",
        "date": time.strftime("%Y-%m-%d"),
        "note": "mean per-image Dice per setting (no-plant scenes: mean % of pixels left background); "
        "area_ratio_median: median over images of the network's plant area / the true area; flagged_share: "
        "share of images with a quality flag. Lab composites are generated (deepplantphenomics.synthetic, "
        "seeds [1515, setting, image]); real cut-outs come from held-out photos only.",
        **result,
    }
    state.write_json(path, card)


if __name__ == "__main__":
    raise SystemExit(main())
