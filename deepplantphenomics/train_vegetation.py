"""Training recipe of the shipped vegetation network (``deepplantphenomics/weights/vegetation``).

Run from the repository root, beside the shared data folder:

    python -m deepplantphenomics.train_vegetation --data ../shared/data \\
        --out deepplantphenomics/weights/vegetation --seed 0

What it does:

1. Finds every dataset under ``--data``: each sub-folder with ``images/`` and ``masks/`` (paired by file name
   or name stem, masks 0 = background, > 127 = plant), read at run time, so new folders join automatically.
2. Splits each dataset with a fixed seed (``--split-seed``, independent of the training seed): a held-out
   part (20 %, at least 8 images) that is never trained on nor used for any decision, a validation part
   (10 %, at least 3 images) that picks the checkpoint, the inference scale and the threshold, and the rest
   for training. The held-out names go into the model card.
3. Trains a small U-Net (built with the library's layer specs, so the result is an ordinary saved state) on
   random patches of the real images and of generated ones (``deepplantphenomics.synthetic``), with scale
   jitter, flips, rotations, white-balance, brightness, contrast, gamma, hue and saturation jitter, noise,
   blur, and background replacement (plants composited on plain, dark, white or coloured backdrops).
4. Chooses, on the validation images, the inference scheme (one reduced size, an average over several sizes
   and the mirrored image, or full resolution) and between the 0.5 threshold and Otsu's, then scores the
   network and the ExG/CIVE + Otsu baselines on the held-out images and writes the state, the model card
   (``model_card.json``) and a log.

Training runs through the library's own loop (``deepplantphenomics.training.TrainingRun``, as
``begin_training`` and ``dpp train`` do), step-based: ``--steps`` batches from ``PatchSampler``, the recipe's
augmentation as the loop's ``transform``, AdamW with warm-up and cosine decay (the model's settings, so the
saved ``settings.json`` says how the weights were trained), validation every ``--eval-every`` steps keeping the
best weights. ``--work-dir`` holds an ordinary saved state (the latest weights), ``checkpoint.pt`` (optimiser,
schedule, random state, history), ``best.safetensors`` and ``metrics.csv``; ``--resume`` continues from there.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import math
import os
import platform
import shlex
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from deepplantphenomics import state
from deepplantphenomics.architectures import vegetation_layer_specs
from deepplantphenomics.data.augment import AugmentationConfig, augment_batch
from deepplantphenomics.data.dataset import pair_files
from deepplantphenomics.data.io import read_binary_mask, read_image
from deepplantphenomics.indices import index_mask
from deepplantphenomics.inference_scheme import InferenceScheme
from deepplantphenomics.metrics import binary_scores
from deepplantphenomics.settings import Settings
from deepplantphenomics.tools import MODEL_CARD, fold_batch_norm, network_probabilities

if TYPE_CHECKING:  # the model is imported when a run starts (make_model), so importing the recipe stays light
    from deepplantphenomics.model import SemanticSegmentationModel
    from deepplantphenomics.training import TrainingRun

# ------------------------------------------------------------------------------------------ data terms
# Terms and citations of the datasets known when this recipe was written (from their SOURCE.md). A new
# folder gets its SOURCE.md title and a pointer to it; add its terms here before shipping weights.
KNOWN_DATASETS: dict[str, dict[str, str]] = {
    "cwfid": {
        "title": "CWFID - Crop/Weed Field Image Dataset (carrot field with weeds, robot camera)",
        "terms": "Copyright of the authors; non-commercial research use only; cite the publication. "
        "Weights trained on it inherit this restriction: the shipped network is for non-commercial "
        "research use.",
        "citation": "Haug S., Ostermann J. A Crop/Weed Field Image Dataset for the Evaluation of Computer "
        "Vision Based Precision Agriculture Tasks. CVPPP 2014 workshop, ECCV 2014 Workshops, pp. 105-116. "
        "doi:10.1007/978-3-319-16220-1_8",
        "source": "https://github.com/cwfid/dataset",
    },
    "peanut_field_vn": {
        "title": "Peanut-dataset - peanut crop and weeds, open field, Da Nang, Vietnam",
        "terms": "CC BY-SA 4.0 (Copyright (c) 2023 Thi Hoang Yen Tran, Tran Dang Khoa Phan); attribution, "
        "share-alike.",
        "citation": "Tran T. H. Y., Phan T. D. K. Dense Multi-Scale Convolutional Network for Plant "
        "Segmentation. IEEE Access 11 (2023) 82640-82651.",
        "source": "https://github.com/ptdkhoa/Peanut-dataset (commit ec8e68d1)",
    },
    "ews_wheat_field": {
        "title": "EWS - Eschikon Wheat Segmentation, winter-wheat field plots, Switzerland",
        "terms": "CC BY-SA 4.0; attribution, share-alike.",
        "citation": "Zenkl R., Timofte R., Kirchgessner N., Roth L., Hund A., Van Gool L., Walter A., Aasen H. "
        "Outdoor Plant Segmentation With Deep Learning for High-Throughput Field Phenotyping on a Diverse "
        "Wheat Dataset. Front. Plant Sci. 12:774068 (2022). doi:10.3389/fpls.2021.774068",
        "source": "https://github.com/supervisely-ecosystem/EWS-Dataset-training-data (commit aa946061); "
        "original data https://doi.org/10.3929/ethz-b-000512332",
    },
}

# ------------------------------------------------------------------------------------------ recipe constants
MULTIPLE = 16  # four halvings in the network: inputs are padded to multiples of 16
WIDTHS = (16, 32, 64, 96)  # encoder channels per level; the decoder mirrors them
HEAD = 8  # channels of the last, working-resolution block
SYNTHETIC_SHARE = 0.12  # fraction of patches drawn from generated images
SYNTHETIC_POOL = 240  # generated 256x256 images
# Every TRAY_EVERY-th of them is a tray of 4x4 pots with seedlings a few days old (synthetic.generate_tray_image):
# without small plants in training, a fine-tune on lab scenes (whose empty scenes hold small green objects)
# learnt to drop 20-60 pixel seedlings (the demo's day-0 tray: median area error 0.28, 3 of 23 missed).
TRAY_EVERY = 4
TRAY_DAYS = (0.0, 4.0)  # seedling age range of the training trays
LAB_SHARE = 0.4  # default fraction of patches drawn as lab scenes (pots, paper, cloth; a quarter empty)
LAB_ZOOM = (0.5, 1.0)  # a lab patch is drawn at patch / zoom pixels and shrunk: objects vary in size
LAB_VALIDATION_SEED = (
    2929  # seeds [this, i] of the recipe's lab validation scenes (validate_vegetation: 1515)
)
LAB_VALIDATION_SIZE = (384, 512)  # (height, width) of a lab validation scene
LAB_VALIDATION_SCENES = ("pots", "paper", "cloth")  # four each, drawn plants and validation cut-outs in turn
LAB_VALIDATION_NAME = "lab composites"  # its key among the validation sets
BACKGROUND_SWAP = 0.15  # fraction of patches whose background is replaced by a plain backdrop
ARBITRARY_ROTATION = 0.25  # fraction of patches rotated by any angle (others by multiples of 90 degrees)
SCALE_RANGE = (0.3, 1.0)  # patch scale relative to the original photo (log-uniform)
TILE = 256  # tile for full-resolution inference (also the saved state's patch size)
# Batch norm epsilon the shipped weights were trained with (DPP's value, 1e-3), not the layer default 1e-5:
# folding and inference must use the same one.
BN_EPSILON = 1e-3
# Margin a cheaper inference scheme may lose against the best one. Every candidate segments a 1296x966 photo
# in well under a second, so accuracy comes first: 0.001 (it was 0.003 with five single-size candidates; with
# the ensembles most candidates fall within 0.003 and the rule would just pick the cheapest).
CHOICE_TOLERANCE = 0.001


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"{stamp} {message}", flush=True)


# ------------------------------------------------------------------------------------------ datasets
@dataclass
class Dataset:
    """One dataset folder split into held-out, validation and training pairs."""

    name: str
    root: Path
    pairs: list[tuple[Path, Path]]
    held_out: list[tuple[Path, Path]] = field(default_factory=list)
    validation: list[tuple[Path, Path]] = field(default_factory=list)
    train: list[tuple[Path, Path]] = field(default_factory=list)


def discover_datasets(root: Path) -> list[Path]:
    """Sub-folders of ``root`` holding ``images/`` and ``masks/``, sorted by name.

    Raises:
        FileNotFoundError: ``root`` is not a folder, or holds no such sub-folder.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder does not exist: '{root}'.")
    found = sorted(p for p in root.iterdir() if (p / "images").is_dir() and (p / "masks").is_dir())
    if not found:
        raise FileNotFoundError(f"No dataset (a folder with images/ and masks/) in '{root}'.")
    return found


def split_names(
    names: list[str],
    dataset: str,
    seed: int,
    held_out: float = 0.2,
    min_held_out: int = 8,
    validation: float = 0.1,
    min_validation: int = 3,
) -> dict[str, list[str]]:
    """Seeded held-out / validation / train partition of one dataset's file names.

    The draw depends only on the sorted names, the dataset's name and ``seed``, so it is the same on every
    machine and for every training seed.

    Returns:
        ``{'held_out': [...], 'validation': [...], 'train': [...]}``, each sorted.

    Raises:
        ValueError: the dataset is too small to leave training images.
    """
    names = sorted(names)
    n_held = max(min_held_out, round(held_out * len(names)))
    n_val = max(min_validation, round(validation * len(names)))
    if n_held + n_val >= len(names):
        raise ValueError(
            f"Dataset '{dataset}' has {len(names)} pairs: too few for {n_held} held-out and {n_val} validation "
            "images plus training images."
        )
    order = np.random.default_rng([seed, zlib.crc32(dataset.encode("utf-8"))]).permutation(len(names))
    shuffled = [names[i] for i in order]
    return {
        "held_out": sorted(shuffled[:n_held]),
        "validation": sorted(shuffled[n_held : n_held + n_val]),
        "train": sorted(shuffled[n_held + n_val :]),
    }


def load_datasets(root: Path, split_seed: int) -> list[Dataset]:
    datasets = []
    for folder in discover_datasets(root):
        pairs, _ = pair_files(folder / "images", folder / "masks")
        by_name = {image.name: (image, mask) for image, mask in pairs}
        split = split_names(list(by_name), folder.name, split_seed)
        datasets.append(
            Dataset(
                folder.name,
                folder,
                pairs,
                [by_name[n] for n in split["held_out"]],
                [by_name[n] for n in split["validation"]],
                [by_name[n] for n in split["train"]],
            )
        )
    return datasets


def dataset_info(dataset: Dataset) -> dict[str, Any]:
    """Card entry of a dataset: where from, terms, citation, split sizes and held-out names."""
    info = dict(KNOWN_DATASETS.get(dataset.name, {}))
    if not info:
        source = dataset.root / "SOURCE.md"
        title = source.read_text(encoding="utf-8").splitlines()[0].lstrip("# ") if source.is_file() else ""
        info = {"title": title, "terms": f"see {dataset.name}/SOURCE.md", "citation": "", "source": ""}
    sizes = sorted({read_image_size(p) for p, _ in dataset.pairs[:5]})
    info.update(
        folder=dataset.name,
        pairs=len(dataset.pairs),
        image_sizes_hw=[list(s) for s in sizes],
        train=len(dataset.train),
        validation=len(dataset.validation),
        held_out=len(dataset.held_out),
        held_out_files=[image.name for image, _ in dataset.held_out],
        validation_files=[image.name for image, _ in dataset.validation],
    )
    return info


def read_image_size(path: Path) -> tuple[int, int]:
    from deepplantphenomics.data.io import image_size

    return image_size(path)


def read_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB and (H, W) uint8 0/1 mask."""
    image = read_image(image_path)
    if image.dtype != np.uint8:
        image = np.rint(image / 257.0).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    mask, _ = read_binary_mask(mask_path)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"Image '{image_path}' and mask '{mask_path}' differ in size.")
    return image, mask


# ------------------------------------------------------------------------------------------ the network
def declare_network(model: SemanticSegmentationModel) -> None:
    """The vegetation U-Net (``architectures.vegetation_layer_specs``), declared with the library's layer API."""
    for spec in vegetation_layer_specs(WIDTHS, HEAD, BN_EPSILON):
        model.add_layer(**spec)


def make_model(args: argparse.Namespace, save_dir: Path):
    """A SemanticSegmentationModel holding the recipe's settings and network (saved as an ordinary state)."""
    from deepplantphenomics.model import SemanticSegmentationModel

    model = SemanticSegmentationModel(debug=False, save_dir=save_dir)
    model.set_image_dimensions(TILE, TILE, 3)
    model.set_patch_size(TILE, TILE)
    model.set_batch_size(args.batch_size)
    model.set_learning_rate(args.lr)
    model.set_optimizer("adamw")
    model.set_regularization_coefficient(args.weight_decay)  # AdamW's (decoupled) weight decay
    model.set_learning_rate_schedule("cosine", warmup_batches=warmup_batches(args.steps))
    model.set_loss_function("cross entropy + dice")
    model.set_input_normalization("none")  # pixels in [0, 1]: what the tool feeds the network
    model.set_random_seed(args.seed)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.set_maximum_training_epochs(1)  # one pass of --steps batches (TrainingRun's step-based run)
    model.set_number_of_threads(args.threads)
    # The settings' own augmentation stays off: the recipe's (augment, below) is TrainingRun's transform.
    declare_network(model)
    return model


def warmup_batches(steps: int) -> int:
    """Linear warm-up length of the cosine schedule: a tenth of the run, at most 300 batches."""
    return min(300, steps // 10)


# ------------------------------------------------------------------------------------------ sampling
class PatchSampler:
    """Random training patches: dataset, image, scale and position drawn per patch.

    Real datasets share ``1 - SYNTHETIC_SHARE - lab_share`` of the patches equally (so a small dataset is not
    drowned by a large one); generated field images ``SYNTHETIC_SHARE``; lab scenes
    (:func:`deepplantphenomics.synthetic.generate_lab_image`, drawn fresh for every patch, half of their plants
    pasted from ``cutouts``) ``lab_share``. Images are kept as uint8 tensors at full resolution.
    """

    def __init__(
        self,
        datasets: list[Dataset],
        patch: int,
        rng: np.random.Generator,
        lab_share: float = 0.0,
        cutouts: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        if not 0.0 <= lab_share <= 1.0 - SYNTHETIC_SHARE - 0.1:
            raise ValueError(
                f"Invalid value for `lab_share`: expected 0 to {1.0 - SYNTHETIC_SHARE - 0.1:.2f} (real photos "
                f"keep at least 10 % of the patches), received {lab_share}."
            )
        self.patch = patch
        self.rng = rng
        self.cutouts = cutouts
        self.sources: list[tuple[str, list[torch.Tensor], list[torch.Tensor]]] = []
        for dataset in datasets:
            images, masks = [], []
            for image_path, mask_path in dataset.train:
                image, mask = read_pair(image_path, mask_path)
                images.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
                masks.append(torch.from_numpy(mask))
            self.sources.append((dataset.name, images, masks))
            log(f"loaded {len(images)} training images of '{dataset.name}'")
        images, masks = [], []
        for i in range(SYNTHETIC_POOL):
            image, mask = pool_image(i, np.random.default_rng([int(rng.integers(2**31)), i]))
            images.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
            masks.append(torch.from_numpy((mask > 127).astype(np.uint8)))
        self.sources.append(("synthetic", images, masks))
        real = len(self.sources) - 1
        self.sources.append(("lab", [], []))  # drawn per patch
        shares = [(1.0 - SYNTHETIC_SHARE - lab_share) / real] * real + [SYNTHETIC_SHARE, lab_share]
        self.weights = np.array(shares)

    def state_dict(self) -> dict[str, Any]:
        """The random state, for TrainingRun's checkpoint (the pools are rebuilt from the data and seed)."""
        return {"numpy_rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.rng.bit_generator.state = json.loads(saved["numpy_rng"])

    def sample(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(count, 3, P, P) float images in [0, 1] and (count, P, P) int64 masks (0/1)."""
        p = self.patch
        images = torch.empty((count, 3, p, p))
        masks = torch.empty((count, p, p), dtype=torch.int64)
        for k in range(count):
            name, pool_images, pool_masks = self.sources[self.rng.choice(len(self.sources), p=self.weights)]
            crop, crop_mask = self._lab_patch() if name == "lab" else self._crop(pool_images, pool_masks)
            if crop.shape[-1] != p:
                crop = F.interpolate(
                    crop[None], size=(p, p), mode="bilinear", antialias=True, align_corners=False
                )[0]
                crop_mask = F.interpolate(
                    crop_mask[None, None], size=(p, p), mode="bilinear", antialias=True, align_corners=False
                )[0, 0]
            images[k] = crop.clamp_(0.0, 1.0)
            masks[k] = (crop_mask > 0.5).long()
        return images, masks

    def _crop(self, pool_images: list[torch.Tensor], pool_masks: list[torch.Tensor]):
        """A square crop of a random pool image at a random scale: (3, S, S) float image, (S, S) float mask."""
        p = self.patch
        index = int(self.rng.integers(len(pool_images)))
        image, mask = pool_images[index], pool_masks[index]
        height, width = mask.shape
        low, high = SCALE_RANGE
        scale = math.exp(self.rng.uniform(math.log(low), math.log(high)))
        scale = min(max(scale, p / min(height, width)), 1.0)  # the crop must fit inside the photo
        side = min(round(p / scale), height, width)
        y = int(self.rng.integers(height - side + 1))
        x = int(self.rng.integers(width - side + 1))
        crop = image[:, y : y + side, x : x + side].float().div_(255.0)
        return crop, mask[y : y + side, x : x + side].float()

    def _lab_patch(self):
        """A freshly drawn lab scene of side patch / zoom: (3, S, S) float image, (S, S) float mask."""
        from deepplantphenomics.synthetic import generate_lab_image

        side = round(self.patch / self.rng.uniform(*LAB_ZOOM))
        image, mask = generate_lab_image(side, side, self.rng, None, self.cutouts)
        crop = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        return crop, torch.from_numpy((mask > 127).astype(np.float32))


def training_cutouts(datasets: list[Dataset], per_dataset: int = 150) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real plant cut-outs from the training photos only (never from validation or held-out photos)."""
    from deepplantphenomics.synthetic import load_cutouts

    cutouts = []
    for dataset in datasets:
        train = {image.name for image, _ in dataset.train}
        others = [image.name for image, _ in dataset.pairs if image.name not in train]
        cutouts += load_cutouts(dataset.root, max_cutouts=per_dataset, min_pixels=200, exclude=others)
    return cutouts


def pool_image(index: int, generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One 256x256 generated training image and its 0/255 mask: a field scene, or every ``TRAY_EVERY``-th a
    tray of seedlings (seeds from 10**6 up: validate_vegetation's trays use 1515xx)."""
    from deepplantphenomics.synthetic import generate_plant_image, generate_tray_image

    if index % TRAY_EVERY == TRAY_EVERY - 1:
        day = float(generator.uniform(*TRAY_DAYS))
        image, mask, _ = generate_tray_image(4, 4, day, seed=int(generator.integers(10**6, 2**31)))
        return image, mask
    return generate_plant_image(256, 256, generator)


def lab_validation(datasets: list[Dataset]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The recipe's lab validation scenes: (image, 0/1 mask) pairs, four per scene of
    ``LAB_VALIDATION_SCENES``, every other one pasting cut-outs of the validation photos (never trained on),
    then four trays of seedlings 0-1.5 days old (seeds ``LAB_VALIDATION_SEED * 100 + i``)."""
    from deepplantphenomics.synthetic import generate_lab_image, generate_tray_image, load_cutouts

    cutouts = []
    for dataset in datasets:
        keep = {image.name for image, _ in dataset.validation}
        others = [image.name for image, _ in dataset.pairs if image.name not in keep]
        cutouts += load_cutouts(dataset.root, max_cutouts=40, min_pixels=200, exclude=others)
    pairs = []
    for i in range(4 * len(LAB_VALIDATION_SCENES)):
        scene = LAB_VALIDATION_SCENES[i % len(LAB_VALIDATION_SCENES)]
        use = cutouts if (i // len(LAB_VALIDATION_SCENES)) % 2 and cutouts else None
        image, mask = generate_lab_image(
            *LAB_VALIDATION_SIZE, np.random.default_rng([LAB_VALIDATION_SEED, i]), scene, use
        )
        pairs.append((image, (mask > 127).astype(np.uint8)))
    for i in range(4):
        image, mask, _ = generate_tray_image(4, 6, 0.5 * i, seed=LAB_VALIDATION_SEED * 100 + i)
        pairs.append((image, (mask > 127).astype(np.uint8)))
    return pairs


# ------------------------------------------------------------------------------------------ augmentation
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def colour_jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-image white balance, exposure, contrast, gamma, hue and saturation changes, noise and blur.

    Hue and saturation are changed by rotating and scaling the chroma plane of YIQ (a linear map, so the
    whole colour change is one 3x3 matrix per image). Hue moves by at most 20 degrees: enough to cover
    cameras and light, not so much that green plants turn red.

    Args:
        images: (N, 3, H, W) float in [0, 1].
        generator: source of randomness.

    Returns:
        (N, 3, H, W) float in [0, 1].
    """
    n = images.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand((n, *shape), generator=generator)

    hue = torch.deg2rad(uniform(-20.0, 20.0))
    saturation = uniform(0.55, 1.5)
    cos, sin = torch.cos(hue) * saturation, torch.sin(hue) * saturation
    chroma = torch.zeros(n, 3, 3)
    chroma[:, 0, 0] = 1.0
    chroma[:, 1, 1], chroma[:, 1, 2], chroma[:, 2, 1], chroma[:, 2, 2] = cos, -sin, sin, cos
    matrix = _YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ  # (N, 3, 3)
    white_balance = uniform(0.82, 1.18, 3)
    matrix = white_balance[:, :, None] * matrix
    out = torch.einsum("nij,njhw->nihw", matrix, images)
    exposure = torch.exp(uniform(math.log(0.55), math.log(1.6))).view(n, 1, 1, 1)
    out = out * exposure
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(0.7, 1.35).view(n, 1, 1, 1)
    out = ((out - mean) * contrast + mean).clamp(0.0, 1.0)
    gamma = torch.exp(uniform(math.log(0.65), math.log(1.5))).view(n, 1, 1, 1)
    out = out.clamp_min(1e-6) ** gamma
    blur = (torch.rand(n, generator=generator) < 0.15).view(n, 1, 1, 1)
    if bool(blur.any()):
        blurred = F.avg_pool2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        out = torch.where(blur, blurred, out)
    noise = uniform(0.0, 0.03).view(n, 1, 1, 1)
    out = out + noise * torch.randn(out.shape, generator=generator)
    return out.clamp(0.0, 1.0)


def backdrop(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Plain backgrounds that are never green: lab white, black cloth, grey, blue or brown trays, any colour.

    A colour with a gradient and mild noise per image; green is capped at the larger of red and blue so a
    backdrop cannot look like a plant.
    """
    palette = torch.tensor(
        [
            [0.92, 0.92, 0.92],  # white
            [0.06, 0.06, 0.07],  # black
            [0.5, 0.5, 0.52],  # grey
            [0.2, 0.3, 0.6],  # blue
            [0.45, 0.32, 0.22],  # brown
            [0.7, 0.62, 0.5],  # sand
        ]
    )
    choice = torch.randint(0, len(palette) + 2, (count,), generator=generator)
    colour = torch.rand(count, 3, generator=generator)
    known = choice < len(palette)
    colour[known] = palette[choice[known]] * (
        0.8 + 0.4 * torch.rand(int(known.sum()), 1, generator=generator)
    )
    colour[:, 1] = torch.minimum(colour[:, 1], torch.maximum(colour[:, 0], colour[:, 2]))
    ramp = torch.linspace(-1.0, 1.0, size)
    direction = torch.rand(count, 2, generator=generator) * 2 - 1
    gradient = (
        direction[:, 0, None, None] * ramp[None, :, None] + direction[:, 1, None, None] * ramp[None, None, :]
    )
    strength = 0.25 * torch.rand(count, 1, 1, generator=generator)
    shade = 1.0 + strength * gradient
    noise = (
        0.03
        * torch.rand(count, 1, 1, 1, generator=generator)
        * torch.randn(count, 3, size, size, generator=generator)
    )
    return (colour[:, :, None, None] * shade[:, None] + noise).clamp(0.0, 1.0)


def augment(
    images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Geometry (flips, 90-degree turns, some arbitrary rotations), backgrounds, then colour (see module doc)."""
    n, _, size, _ = images.shape
    turns = torch.randint(0, 4, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    for k in range(n):
        if flips[k]:
            images[k], masks[k] = images[k].flip(-1), masks[k].flip(-1)
        if turns[k]:
            images[k] = torch.rot90(images[k], int(turns[k]), dims=(-2, -1))
            masks[k] = torch.rot90(masks[k], int(turns[k]), dims=(-2, -1))
    rotate = torch.rand(n, generator=generator) < ARBITRARY_ROTATION
    if bool(rotate.any()):
        rows = rotate.nonzero()[:, 0]
        config = AugmentationConfig(rotation=True)
        images[rows], masks[rows] = augment_batch(images[rows], masks[rows], config, generator=generator)
    swap = (torch.rand(n, generator=generator) < BACKGROUND_SWAP).nonzero()[:, 0]
    if len(swap):
        backgrounds = backdrop(len(swap), size, generator)
        background = (masks[swap] == 0).unsqueeze(1)
        images[swap] = torch.where(background, backgrounds, images[swap])
    return colour_jitter(images, generator), masks


# ------------------------------------------------------------------------------------------ evaluation
def predict_probabilities(network, image: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return network_probabilities(network, [tensor], settings)[0].numpy()


def threshold(probabilities: np.ndarray, rule: float | str) -> np.ndarray:
    """The tool's own cut (Otsu clamped to ``tools.OTSU_BAND``), so validation scores what users get."""
    from deepplantphenomics.tools import cut_probabilities

    return probabilities > cut_probabilities(probabilities, rule)


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = ("dice", "iou", "precision", "recall")
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys} | {"images": len(rows)}


def evaluate_network(
    network, pairs_by_dataset: dict[str, list[tuple[np.ndarray, np.ndarray]]], settings: dict[str, Any], rules
) -> dict[str, dict[Any, dict[str, float]]]:
    """Mean scores per dataset and threshold rule (one network pass per image)."""
    out: dict[str, dict[Any, dict[str, float]]] = {}
    for name, pairs in pairs_by_dataset.items():
        rows: dict[Any, list[dict[str, float]]] = {rule: [] for rule in rules}
        for image, mask in pairs:
            prob = predict_probabilities(network, image, settings)
            for rule in rules:
                rows[rule].append(binary_scores(threshold(prob, rule), mask))
        out[name] = {rule: mean_scores(r) for rule, r in rows.items()}
    return out


def evaluate_baselines(pairs_by_dataset) -> dict[str, dict[str, dict[str, float]]]:
    out = {}
    for name, pairs in pairs_by_dataset.items():
        out[name] = {
            method: mean_scores([binary_scores(index_mask(image, method), mask) for image, mask in pairs])
            for method in ("exg", "cive")
        }
    return out


def best_baseline_dice(scores: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Per dataset, the mean Dice of the better colour index (ExG or CIVE + Otsu)."""
    return {name: max(s["exg"]["dice"], s["cive"]["dice"]) for name, s in scores.items()}


def eval_copy(network):
    """A folded, eval-mode copy for evaluation (the training network keeps its batch norm)."""
    import copy

    return fold_batch_norm(copy.deepcopy(network).eval())


def working_pixels(settings: dict[str, Any], height: int = 966, width: int = 1296) -> int:
    """Pixels the network processes for one (height, width) image under an inference scheme (all views)."""
    from deepplantphenomics.data.patches import tile_starts
    from deepplantphenomics.tools import working_sizes

    scheme = InferenceScheme.from_dict(settings)
    if scheme.mode == "tiled":
        tiles = len(tile_starts(height, TILE, TILE // 4)) * len(tile_starts(width, TILE, TILE // 4))
        return tiles * TILE * TILE
    views = 2 if scheme.flip else 1
    return views * sum(
        (h + (-h) % MULTIPLE) * (w + (-w) % MULTIPLE) for h, w in working_sizes(height, width, scheme)
    )


def inference_candidates() -> dict[str, dict[str, Any]]:
    """The inference schemes compared on validation: one size, or several averaged, with or without the
    mirrored view; and full resolution (whole image or tiles)."""
    limits = {120_000: "0.12", 200_000: "0.2", 350_000: "0.35", 600_000: "0.6"}
    candidates: dict[str, dict[str, Any]] = {
        "resize to half size": {"mode": "resize", "scale": 0.5, "max_pixels": None},
    }
    for flip in (False, True):
        for limit, label in limits.items():
            name = f"resize to at most {label} MP" + (" + mirror" if flip else "")
            candidates[name] = {"mode": "resize", "scale": None, "max_pixels": limit, "flip": flip}
    for count in (2, 3):
        for group in itertools.combinations(limits, count):
            name = "average of " + " + ".join(f"{limits[g]}" for g in group) + " MP + mirror"
            candidates[name] = {"mode": "resize", "scale": None, "max_pixels": list(group), "flip": True}
    candidates["full resolution, whole image"] = {"mode": "resize", "scale": 1.0, "max_pixels": None}
    candidates["full resolution, tiles"] = {"mode": "tiled", "scale": 1.0, "tile": TILE}
    return candidates


def time_inference(
    network, settings: dict[str, Any], height: int = 966, width: int = 1296, threads: int = 2
) -> float:
    """Median seconds to segment one (height, width) image (network and threshold), with ``threads`` threads."""
    from deepplantphenomics.runtime import prepare_module, tune_allocator

    tune_allocator()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = prepare_module(network, torch.device("cpu"))
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        times = []
        for _ in range(6):
            start = time.perf_counter()
            threshold(predict_probabilities(net, image, settings), InferenceScheme.of(settings).threshold)
            times.append(time.perf_counter() - start)
        return float(np.median(times[1:]))
    finally:
        torch.set_num_threads(previous)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepplantphenomics.train_vegetation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder of datasets")
    parser.add_argument("--out", type=Path, default=Path("deepplantphenomics/weights/vegetation"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/vegetation_run"), help="checkpoints")
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights, sampling, augmentation)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the held-out/validation split")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--patch", type=int, default=192, help="training patch side (a multiple of 16)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument(
        "--lab-share",
        type=float,
        default=LAB_SHARE,
        help="fraction of patches drawn as lab scenes (pots on trays, paper, cloth, empty scenes); 0 = none",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="saved state whose weights the run starts from (fine-tuning, e.g. the shipped weights); "
        "default: random initialisation",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--resume", action="store_true", help="continue from --work-dir/checkpoint.pt")
    parser.add_argument(
        "--finish-only",
        action="store_true",
        help="skip training: score the best checkpoint in --work-dir and write --out",
    )
    parser.add_argument(
        "--add-quality",
        action="store_true",
        help="only (re)write the quality-flag block of --out's model card from --data's training photos",
    )
    parser.add_argument(
        "--retime",
        action="store_true",
        help="only re-measure the inference times in --out's model card (run it on a quiet machine)",
    )
    args = parser.parse_args(argv)
    if args.patch % MULTIPLE:
        parser.error(f"--patch must be a multiple of {MULTIPLE}, received {args.patch}")
    return args


def reproduce_command(args: argparse.Namespace) -> str:
    """The command that retrains these weights (every option that changes them spelled out)."""
    options = [
        ("--data", args.data),
        ("--out", args.out),
        ("--seed", args.seed),
        ("--split-seed", args.split_seed),
        ("--steps", args.steps),
        ("--batch-size", args.batch_size),
        ("--patch", args.patch),
        ("--lr", args.lr),
        ("--weight-decay", args.weight_decay),
        ("--eval-every", args.eval_every),
        ("--lab-share", args.lab_share),
    ] + ([("--init", args.init)] if args.init is not None else [])
    return "python -m deepplantphenomics.train_vegetation " + " ".join(
        f"{flag} {shlex.quote(str(value))}" for flag, value in options
    )


def retime(out: Path, threads: int = 2) -> dict[str, Any]:
    """Re-measure the times in the model card at ``out`` (every candidate scheme and the chosen one).

    Times depend on how busy the machine is; the weights, choices and scores do not, so this rewrites only
    the card's time fields (atomically).

    Returns:
        The updated card.
    """
    from deepplantphenomics.model import load_model
    from deepplantphenomics.tools import _read_card

    card = _read_card(out)
    model = load_model(out)
    folded = eval_copy(model.build_network().eval())
    for label, row in card.get("inference_choice", {}).get("candidates", {}).items():
        row["seconds_1296x966_2_threads"] = round(time_inference(folded, row["settings"], threads=threads), 3)
        log(f"{label}: {row['seconds_1296x966_2_threads']} s")
    seconds = time_inference(folded, card["inference"], threads=threads)
    card["timing"] = {
        "seconds_per_1296x966_image": round(seconds, 3),
        "threads": threads,
        "note": "median wall time of segment (network + threshold); load average "
        f"{os.getloadavg()[0]:.1f} at measurement (python -m deepplantphenomics.train_vegetation --retime)",
    }
    state.write_json(out / MODEL_CARD, card)
    log(f"chosen scheme: {seconds:.3f} s per 1296x966 image; wrote {out / MODEL_CARD}")
    return card


def quality_block(datasets: list[Dataset]) -> dict[str, Any]:
    """The card's ``quality`` section: the training images' colour ranges (``mask_quality.colour_ranges``),
    against which ``unfamiliar_colours`` is judged, and what each flag means.

    The training images are the real training photos and generated ones like the recipe's synthetic pool
    (seeded here, so the ranges do not depend on the training seed)."""
    from deepplantphenomics import mask_quality
    from deepplantphenomics.synthetic import generate_plant_image

    statistics = [
        mask_quality.photo_statistics(read_image(image)) for dataset in datasets for image, _ in dataset.train
    ]
    real = len(statistics)
    for i in range(SYNTHETIC_POOL):
        image, _ = generate_plant_image(256, 256, np.random.default_rng([0, i]))
        statistics.append(mask_quality.photo_statistics(image))
    return {
        "colour_ranges": mask_quality.colour_ranges(statistics),
        "ranges_from": f"{real} training photos and {SYNTHETIC_POOL} generated images (0.5th-99.5th "
        f"percentile, widened by {mask_quality.RANGE_MARGIN:.0%} of the span on each side)",
        "flags": dict(mask_quality.FLAG_MEANINGS),
        "thresholds": "deepplantphenomics/mask_quality.py; measured false-flag rates in docs/vegetation.md",
    }


def add_quality(out: Path, data: Path, split_seed: int) -> dict[str, Any]:
    """Rewrite only the ``quality`` section of the model card at ``out`` (weights and scores unchanged)."""
    from deepplantphenomics.tools import _read_card

    card = _read_card(out)
    card["quality"] = quality_block(load_datasets(data, split_seed))
    state.write_json(out / MODEL_CARD, card)
    log(f"wrote the quality block of {out / MODEL_CARD}")
    return card


# ------------------------------------------------------------------------------------------ training
def validation_scores(network, validation: dict[str, list]) -> dict[str, float]:
    """TrainingRun's evaluator: validation Dice per dataset; ``score`` (maximised) is their mean."""
    # Checkpoints are compared at a fixed, cheap scheme; the final scheme is chosen after training.
    track = {"mode": "resize", "scale": None, "max_pixels": 350_000, "multiple": MULTIPLE, "threshold": 0.5}
    scores = evaluate_network(eval_copy(network), validation, track, [0.5])
    dice = {f"dice_{name}": s[0.5]["dice"] for name, s in scores.items()}
    return {"score": float(np.mean(list(dice.values()))), **dice}


def training_run(args: argparse.Namespace, model, network, sampler, validation) -> TrainingRun:
    """The library's training loop, step-based: patches from ``sampler`` (per-source weights), the recipe's
    augmentation as its transform, validation every ``--eval-every`` steps keeping the best weights, and
    checkpoints (``--work-dir/checkpoint.pt`` beside an ordinary saved state) that ``--resume`` continues."""
    from deepplantphenomics.training import TrainingRun

    return TrainingRun(
        network=network,
        settings=model.settings,
        train_data=None,
        validation_data=None,
        save_dir=args.work_dir,
        save_state=lambda net: model.save_state(args.work_dir),
        debug=True,
        report_rate=50,
        resume=args.resume and (args.work_dir / state.CHECKPOINT).exists(),
        transform=augment,
        batches=sampler,
        steps=args.steps,
        evaluate_every=args.eval_every,
        evaluator=lambda net: validation_scores(net, validation),
    )


def train(args: argparse.Namespace, model, network, sampler, validation) -> tuple[list, dict, float]:
    """Train through TrainingRun (holding --work-dir); return (history, best step and score, seconds)."""
    from deepplantphenomics.training import hold_save_dir

    run = training_run(args, model, network, sampler, validation)
    with hold_save_dir(args.work_dir):
        history = run.run()
    return history, run.best, training_seconds(history)


def finished_run(args: argparse.Namespace, network) -> tuple[list, dict, float]:
    """--finish-only: the history and best step of the run in --work-dir, its best weights loaded."""
    from deepplantphenomics.training import BEST_WEIGHTS

    checkpoint = args.work_dir / state.CHECKPOINT
    if not checkpoint.exists():
        raise FileNotFoundError(f"--finish-only needs a checkpoint: '{checkpoint}' does not exist.")
    saved = state.load_checkpoint(checkpoint)
    path = args.work_dir / BEST_WEIGHTS
    state.load_state_dict_checked(network, state.load_weights(path), path)
    return saved["history"], saved["best"], training_seconds(saved["history"])


def start_weights(args: argparse.Namespace, network) -> None:
    """With ``--init``, load that state's weights into ``network`` and note their sha256 in ``args``."""
    if args.init is None:
        return
    path = args.init / state.WEIGHTS
    state.load_state_dict_checked(network, state.load_weights(path), path)
    args.init_sha256 = sha256(path)
    log(f"starting from the weights in {path} (sha256 {args.init_sha256[:12]})")


def training_seconds(history: list[dict[str, Any]]) -> float:
    """Training time of the run (a resumed run's earlier part included), from its last evaluation."""
    return float(history[-1].get("elapsed_seconds", 0.0)) if history else 0.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.add_quality:
        add_quality(args.out, args.data, args.split_seed)
        return 0
    if args.retime:
        torch.set_num_threads(2)
        retime(args.out)
        return 0
    command = reproduce_command(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    datasets = load_datasets(args.data, args.split_seed)
    for d in datasets:
        log(
            f"dataset '{d.name}': {len(d.train)} train, {len(d.validation)} validation, {len(d.held_out)} held out"
        )
    validation = {d.name: [read_pair(*p) for p in d.validation] for d in datasets}
    if args.lab_share > 0:
        validation[LAB_VALIDATION_NAME] = lab_validation(datasets)
    # Made before a checkpoint restores the generator's state: the synthetic pool draws from it.
    sampler = None
    if not args.finish_only:
        cutouts = training_cutouts(datasets) if args.lab_share > 0 else None
        sampler = PatchSampler(datasets, args.patch, rng, args.lab_share, cutouts)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    model = make_model(args, args.work_dir)
    network = model.build_network()
    parameters = sum(p.numel() for p in network.parameters())
    log(f"network: {len(model.layer_specs)} layers, {parameters} parameters")
    start_weights(args, network)
    if sampler is None:  # --finish-only
        history, best, seconds = finished_run(args, network)
    else:  # the network ends with the weights of the best validation score: those are shipped
        history, best, seconds = train(args, model, network, sampler, validation)
    log(
        f"training done in {seconds / 60:.1f} min; best validation mean Dice {best['score']:.4f} "
        f"at step {best['step']}"
    )
    network.eval()
    return finish(args, command, model, network, datasets, validation, history, best, seconds, parameters)


def choose_inference(
    folded, validation: dict[str, list]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """The inference scheme and threshold, chosen on validation: (chosen settings, candidate table, baselines)."""
    candidates = inference_candidates()
    choice_table: dict[str, Any] = {}
    for label, candidate in candidates.items():
        candidate = {"multiple": MULTIPLE, "threshold": 0.5, **candidate}
        scores = evaluate_network(folded, validation, candidate, [0.5, "otsu"])
        seconds = time_inference(folded, candidate)
        choice_table[label] = {
            "settings": candidate,
            "validation_dice": {name: {str(r): s[r]["dice"] for r in s} for name, s in scores.items()},
            "mean_validation_dice": {
                str(r): round(float(np.mean([s[r]["dice"] for s in scores.values()])), 4)
                for r in (0.5, "otsu")
            },
            "network_pixels_for_1296x966": working_pixels(candidate),
            "seconds_1296x966_2_threads": round(seconds, 3),
        }
        log(f"{label}: {choice_table[label]}")

    # The tool must beat the colour indices on every kind of image, so a scheme is judged by its smallest
    # validation margin over the better index across datasets (a mean would let a large lead on one kind of
    # image hide a loss on another). Among schemes within CHOICE_TOLERANCE of the best, the one that feeds
    # the network the fewest pixels (speed, independent of how busy the machine is) wins.
    baselines = best_baseline_dice(evaluate_baselines(validation))
    options = []
    for label, row in choice_table.items():
        for rule in ("0.5", "otsu"):
            margin = min(row["validation_dice"][name][rule] - baselines[name] for name in baselines)
            row.setdefault("smallest_margin_over_best_index", {})[rule] = round(margin, 4)
            options.append((margin, row["network_pixels_for_1296x966"], label, rule))
    best_margin = max(o[0] for o in options)
    _, _, label, rule = min(
        (o for o in options if o[0] >= best_margin - CHOICE_TOLERANCE), key=lambda o: (o[1], -o[0])
    )
    chosen = dict(choice_table[label]["settings"])
    chosen["threshold"] = 0.5 if rule == "0.5" else "otsu"
    log(f"chosen inference: {label}, threshold {chosen['threshold']}")

    return chosen, choice_table, baselines


def score_held_out(folded, datasets: list[Dataset], chosen: dict[str, Any]) -> dict[str, Any]:
    """Held-out scores of the network (chosen scheme) and of the colour indices, per dataset."""
    held_out = {d.name: [read_pair(*p) for p in d.held_out] for d in datasets}
    net_scores = evaluate_network(folded, held_out, chosen, [chosen["threshold"]])
    base_scores = evaluate_baselines(held_out)
    scores = {
        name: {"network": net_scores[name][chosen["threshold"]], **base_scores[name]} for name in held_out
    }
    for name, s in scores.items():
        better = max(s["exg"]["dice"], s["cive"]["dice"])
        s["network_minus_best_baseline_dice"] = round(s["network"]["dice"] - better, 4)
        log(f"held-out {name}: {s}")
    return scores


def card_header(model: SemanticSegmentationModel, parameters: int) -> dict[str, Any]:
    """The model card's opening entries: what the network is, its licence and input."""
    return {
        "name": "deepplantphenomics vegetation segmentation network",
        "version": 1,
        "date": datetime.date.today().isoformat(),
        "task": "binary plant (vegetation) vs background segmentation of RGB photos",
        "license_note": "Trained on CWFID, whose terms allow non-commercial research use only: use these weights "
        "for non-commercial research. The other training data are CC BY-SA 4.0 (attribution, share-alike).",
        "architecture": {
            "summary": f"U-Net-like: stride-2 3x3 conv, 4 levels of 3x3 conv+BN+ReLU with max pooling "
            f"({'-'.join(map(str, WIDTHS))} channels), transposed-conv decoder with copy connections, a "
            f"{HEAD}-channel block at input resolution fed with the image itself, 1x1 sigmoid output",
            "parameters": parameters,
            "layers": len(model.layer_specs),
            "layer_kinds": [spec["kind"] for spec in model.layer_specs],
            "state_files": [state.ARCHITECTURE, state.WEIGHTS, state.SETTINGS],
            "load_with": "dpp.load_model('<this folder>') or deepplantphenomics.tools",
        },
        "input_normalisation": "RGB, pixel / 255 (8-bit) or / 65535 (16-bit), no mean/std; grey images are "
        "repeated to RGB, alpha is dropped",
    }


def training_record(
    args: argparse.Namespace,
    settings: Settings,
    command: str,
    datasets: list[Dataset],
    history: list[dict[str, Any]],
    best: dict[str, Any],
    training_seconds: float,
) -> dict[str, Any]:
    """The model card's ``training`` entry: how to reproduce the run, and what it saw."""
    return {
        "command": command,
        "seed": args.seed,
        "split_seed": args.split_seed,
        "loop": "deepplantphenomics.training.TrainingRun, step-based (batches=PatchSampler, transform=augment, "
        "evaluator=validation Dice; the best-scoring weights are kept)",
        "steps": args.steps,
        "eval_every": args.eval_every,
        "best_step": best["step"],
        "batch_size": settings.batch_size,
        "patch": args.patch,
        "optimizer": f"{settings.optimizer} lr {settings.learning_rate} weight decay "
        f"{settings.regularization_coefficient}",
        "learning_rate_schedule": f"{settings.lr_schedule}, {settings.warmup_batches} warm-up batches, "
        f"decaying to 0 at step {args.steps}",
        "loss": f"{settings.loss_function} (sigmoid cross entropy + soft Dice)",
        "input_normalization": settings.input_normalization,
        "threads": settings.num_threads,
        "training_time_minutes": round(training_seconds / 60, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "validation_history": history,
        "augmentation": {
            "scale_jitter": f"patch scale log-uniform in {list(SCALE_RANGE)} of the photo",
            "geometry": "flips, 90-degree turns, arbitrary rotations for "
            f"{ARBITRARY_ROTATION:.0%} of patches (uncovered corners ignored in the loss)",
            "colour": "white balance x[0.82, 1.18] per channel, exposure x[0.55, 1.6], contrast [0.7, 1.35], "
            "gamma [0.65, 1.5], hue +-20 degrees, saturation x[0.55, 1.5], noise sd <= 0.03, 3x3 blur 15 %",
            "background": f"{BACKGROUND_SWAP:.0%} of patches get a plain non-green backdrop (white, black, "
            "grey, blue, brown, sand or random) instead of their background",
        },
        "synthetic": f"{SYNTHETIC_SHARE:.0%} of patches from {SYNTHETIC_POOL} generated 256x256 images "
        f"(deepplantphenomics.synthetic; every {TRAY_EVERY}th a 4x4 tray of seedlings {TRAY_DAYS[0]:g}-"
        f"{TRAY_DAYS[1]:g} days old)",
        "lab_scenes": f"{args.lab_share:.0%} of patches are lab scenes drawn afresh per patch "
        "(synthetic.generate_lab_image: pots on trays, paper, cloth, a quarter empty; half of their plants "
        f"real cut-outs of the training photos), {LAB_ZOOM[0]}-{LAB_ZOOM[1]} zoom; validation adds "
        f"{4 * len(LAB_VALIDATION_SCENES)} lab scenes (seed family {LAB_VALIDATION_SEED}) and 4 trays of "
        f"seedlings 0-1.5 days old as '{LAB_VALIDATION_NAME}'",
        "initial_weights": "random (the library's initialisers)"
        if args.init is None
        else f"fine-tuned from {args.init} (weights sha256 {getattr(args, 'init_sha256', '?')})",
        "datasets": [dataset_info(d) for d in datasets],
        "split": "per dataset, seeded by split_seed and the folder name: 20 % (at least 8) held out, never "
        "trained on nor used for any choice; 10 % (at least 3) validation, used to pick the checkpoint, "
        "the inference scheme and the threshold; the rest trained on",
    }


def finish(
    args, command, model, network, datasets, validation, history, best, training_seconds, parameters
) -> int:
    """Choose the inference scheme on validation, score the held-out sets, write the state and model card."""
    folded = eval_copy(network)
    chosen, choice_table, baselines = choose_inference(folded, validation)
    scores = score_held_out(folded, datasets, chosen)
    seconds = time_inference(folded, chosen)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in (state.CHECKPOINT, state.SPLIT, "metrics.csv"):
        (out / stale).unlink(missing_ok=True)
    model.save_state(out)
    weights_path = out / state.WEIGHTS
    tensors = state.load_weights(weights_path)
    card = {
        **card_header(model, parameters),
        # Every setting of the scheme, checked as the tool will read it.
        "inference": InferenceScheme.from_dict(chosen).to_dict(),
        "inference_choice": {
            "rule": "largest smallest-over-datasets validation margin (network Dice minus the better colour "
            f"index's Dice), or the scheme with the fewest network pixels within {CHOICE_TOLERANCE} of it",
            "validation_best_index_dice": baselines,
            "candidates": choice_table,
        },
        "threshold": chosen["threshold"],
        "tile_size": TILE,
        "weights": {
            "file": state.WEIGHTS,
            "sha256": sha256(weights_path),
            "bytes": weights_path.stat().st_size,
            "tensors": {key: list(value.shape) for key, value in sorted(tensors.items())},
        },
        "training": training_record(args, model.settings, command, datasets, history, best, training_seconds),
        "scores": {
            "held_out": scores,
            "note": "mean over held-out images of per-image Dice, IoU, precision, recall (plant class); "
            "baselines: index + Otsu's threshold per image (deepplantphenomics.indices)",
        },
        "timing": {
            "seconds_per_1296x966_image": round(seconds, 3),
            "threads": 2,
            "note": "median wall time of segment (network + threshold) on a shared machine; load average "
            f"{os.getloadavg()[0]:.1f} at measurement",
        },
        "quality": quality_block(datasets),
    }
    state.write_json(out / MODEL_CARD, card)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
