"""``TrainingData``: a model's paired files and what training makes of them.

The facade (``SemanticSegmentationModel``) pairs the folders and hands the pairs here; this class makes or reuses
the train/validation/test split (``split.json``), decodes every pair once per settings (in memory), and cuts and
caches training patches (``patch_cache/``) when a patch size is set. It knows nothing of the model: the settings,
the save folder and the debug log come with each call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deepplantphenomics import distributed, state
from deepplantphenomics._version import __version__
from deepplantphenomics.data.dataset import (
    InMemoryData,
    LoadReport,
    as_float,
    image_statistics,
    load_pairs,
    make_split,
    mode_counts,
    reuse_split,
    stack,
)
from deepplantphenomics.settings import Settings

Log = Callable[[str], None]


def _no_log(message: str) -> None:
    pass


class TrainingData:
    """The (image, mask) pairs of one ``load_dataset_from_directory_with_segmentation_masks`` call.

    Args:
        pairs: (image path, mask path) per pair, as ``data.dataset.pair_folders`` found them.
        skipped: non-image entries left out of the folders (for the log).
        log: where progress lines go (the model's debug log).
    """

    def __init__(self, pairs: list[tuple[Path, Path]], skipped: int = 0, log: Log = _no_log) -> None:
        self.pairs = pairs
        self.skipped = skipped
        self.split: dict[str, list[str]] | None = (
            None  # the split of the last training run (set by the model)
        )
        self._log = log
        self._decoded_cache: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None

    @property
    def names(self) -> list[str]:
        """The image file names, which name the pairs in the split."""
        return [image.name for image, _ in self.pairs]

    def clear(self) -> None:
        """Forget the decoded images (a setting that changes decoding changed, or the model was shut down)."""
        self._decoded_cache = None

    # ------------------------------------------------------------------ the split
    def resolve_split(self, settings: Settings, save_dir: Path) -> dict[str, list[str]]:
        """The split saved in ``save_dir`` when it still fits the files (unless ``force_split_shuffle``), else a
        new one; written to ``split.json``. Under torchrun rank 0 decides and writes; the others receive it."""
        if not distributed.is_main():
            return distributed.broadcast_object(None)
        s, names, path = settings, self.names, save_dir / state.SPLIT
        if path.exists() and not s.force_split_shuffle:
            saved = state.read_json(path)
            split, notes = reuse_split(saved, names, s.test_split, s.validation_split, s.random_seed)
            self._log(
                f"Reusing the train/validation/test split saved in '{path}'"
                + (f" ({'; '.join(notes)})" if notes else "")
            )
        else:
            split = make_split(names, s.test_split, s.validation_split, s.random_seed)
        state.write_json(path, split)
        self._log(
            f"Split: {len(split['train'])} training, {len(split['validation'])} validation, "
            f"{len(split['test'])} test images"
        )
        return distributed.broadcast_object(split)

    def subset(self, names: list[str], settings: Settings, save_dir: Path) -> InMemoryData | None:
        """The images and masks of ``names`` ready for training (patches when a patch size is set); None when
        ``names`` is empty."""
        if not names:
            return None
        if not settings.patching:
            images, masks = self.decoded(settings)
            return stack(names, [images[n] for n in names], [masks[n] for n in names])
        return self.patches(names, settings, save_dir)

    # ------------------------------------------------------------------ decoding
    def decoded(self, settings: Settings) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Every pair decoded once (cached until ``clear``): images and masks by image name."""
        if self._decoded_cache is None:
            s = settings
            size = None if s.patching else (s.image_height, s.image_width)
            images, masks, report = load_pairs(
                self.pairs, s.image_depth, s.num_classes, size, s.resize_images, s.crop_or_pad_images
            )
            self._report_load(report, masks, settings)
            names = self.names
            self._decoded_cache = (dict(zip(names, images)), dict(zip(names, masks)))
        return self._decoded_cache

    def _report_load(self, report: LoadReport, masks: list[torch.Tensor], settings: Settings) -> None:
        self._log(
            f"Decoded {report.pairs} image/mask pairs; images by colour mode: {mode_counts(report.modes)}"
        )
        if report.ignore_masks:
            self._log(
                f"{report.ignore_masks} mask(s) hold exactly the values 0, 1 and 255: read as 0 = background, "
                "1 = foreground, 255 = ignore"
            )
        if report.zero_one_masks:
            self._log(
                f"{report.zero_one_masks} mask(s) hold only the values 0 and 1: read as 0 = background, "
                "1 = foreground"
            )
        if settings.binary and all(not bool((m == 1).any()) for m in masks):
            # Training on all-background masks silently yields a model that predicts nothing.
            raise ValueError(
                "Every mask is entirely background: foreground pixels must be > 127 (0/255 masks) or 1 (0/1 masks)."
            )

    # ------------------------------------------------------------------ patches
    def patch_cache_path(self, names: list[str], settings: Settings, save_dir: Path) -> Path:
        """Cache file for the patches of ``names``: keyed by the files (name, size, mtime) and the settings."""
        s = settings
        by_name = {image.name: (image, mask) for image, mask in self.pairs}
        files = []
        for name in names:
            for path in by_name[name]:
                info = path.stat()
                files.append([str(path), info.st_size, info.st_mtime_ns])
        key = json.dumps([files, s.patch_height, s.patch_width, s.image_depth, s.num_classes, __version__])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return save_dir / "patch_cache" / f"patches-{digest}.pt"

    def patches(self, names: list[str], settings: Settings, save_dir: Path) -> InMemoryData:
        """Patches covering each full-resolution image, cached on disk and reused (unless set_gen_data_overwrite).

        Each patch carries the mean/std of its whole image, so it is standardised as tiled inference will.
        """
        cache = self.patch_cache_path(names, settings, save_dir)
        if cache.exists() and not settings.gen_data_overwrite:
            try:
                saved = state.load_checkpoint(cache)
                self._log(f"Reusing {len(saved['names'])} cached patches from '{cache}'")
                return InMemoryData(saved["names"], saved["images"], saved["masks"], saved["statistics"])
            except (ValueError, KeyError):
                self._log(f"Patch cache '{cache}' is unreadable; regenerating it")
        data = self._cut_patches(names, settings)
        if distributed.is_main():
            fields = {
                "names": data.names,
                "images": data.images,
                "masks": data.masks,
                "statistics": data.statistics,
            }
            state.save_torch(cache, fields)
        self._log(
            f"Cut {len(data)} patches of {settings.patch_height}x{settings.patch_width} from {len(names)} images"
        )
        return data

    def _cut_patches(self, names: list[str], settings: Settings) -> InMemoryData:
        # Imported here: only patch training needs it, so plain training does not load it.
        from deepplantphenomics.data.patches import extract_training_patches

        images, masks = self.decoded(settings)
        patch_images, patch_masks, patch_names, patch_stats = [], [], [], []
        for name in names:
            full = images[name]
            stats = image_statistics(as_float(full)[None])[0]
            pi, pm = extract_training_patches(
                full.permute(1, 2, 0).numpy(),
                masks[name].numpy(),
                settings.patch_height,
                settings.patch_width,
            )
            patch_images.extend(torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1) for p in pi)
            patch_masks.extend(torch.from_numpy(np.ascontiguousarray(m)) for m in pm)
            patch_names.extend(f"{name}#{i}" for i in range(len(pi)))
            patch_stats.extend([stats] * len(pi))
        return stack(patch_names, patch_images, patch_masks, torch.stack(patch_stats))
