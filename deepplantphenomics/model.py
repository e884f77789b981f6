"""``SemanticSegmentationModel``: DPP's builder facade. It validates what users set and delegates the work.

Scripts written for Deep Plant Phenomics' semantic segmentation run unchanged; see docs/migrating.md for
what goes beyond DPP.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepplantphenomics import distributed, state
from deepplantphenomics.data.dataset import (
    InMemoryData,
    LoadReport,
    as_float,
    image_statistics,
    load_pairs,
    make_split,
    pair_files,
    reuse_split,
    stack,
)
from deepplantphenomics.inference import check_files, interpret, predict_files, stack_or_list
from deepplantphenomics.losses import build_loss, canonical_loss_name
from deepplantphenomics.network import NetworkBuilder, SegmentationNetwork, initialize_weights
from deepplantphenomics.runtime import prepare_module
from deepplantphenomics.settings import (
    INITIALIZERS,
    OPTIMIZERS,
    PRECISIONS,
    Settings,
    check_activation,
    check_bool,
    check_choice,
    check_dims,
    check_float,
    check_int,
)
from deepplantphenomics.training import (
    TrainingRun,
    choose_device,
    evaluate,
    headline_scores,
    report_test_metrics,
    write_tensorboard_scalars,
)

__version__ = "0.1.0"


class SemanticSegmentationModel:
    """A fully convolutional network for semantic segmentation, configured DPP's way.

    Args:
        debug: print progress: layer shapes as they are added, data counts, losses, final metrics.
        load_from_saved: False, or a directory written by an earlier training run; the layers declared
            afterwards must match the saved ones.
        save_checkpoints: also write a resumable checkpoint after every epoch, not only the final state.
        initialize: accepted for DPP compatibility (TensorFlow session set-up); nothing to do in PyTorch.
        tensorboard_dir: write TensorBoard scalars and mask images there (needs the 'tensorboard' extra).
        report_rate: report (console and TensorBoard) every ``report_rate`` training batches.
        save_dir: where the trained state goes; default ``./saved_state``.
    """

    def __init__(
        self,
        debug: bool = False,
        load_from_saved: str | os.PathLike | bool = False,
        save_checkpoints: bool = True,
        initialize: bool = True,
        tensorboard_dir: str | os.PathLike | None = None,
        report_rate: int = 100,
        save_dir: str | os.PathLike | None = None,
    ):
        self._debug = check_bool("debug", debug)
        self._save_checkpoints = check_bool("save_checkpoints", save_checkpoints)
        check_bool("initialize", initialize)
        self._report_rate = check_int("report_rate", report_rate)
        if load_from_saved is True:
            raise TypeError(
                "Invalid value for argument `load_from_saved`: expected False or a directory path, received True."
            )
        if load_from_saved is not False and not isinstance(load_from_saved, (str, os.PathLike)):
            raise TypeError(
                "Invalid value for argument `load_from_saved`: expected False or a directory path, "
                f"received {load_from_saved!r}."
            )
        self._load_from = Path(load_from_saved) if load_from_saved is not False else None
        if self._load_from is not None and not self._load_from.is_dir():
            raise FileNotFoundError(f"Folder given as `load_from_saved` does not exist: '{self._load_from}'.")
        if tensorboard_dir is not None and not isinstance(tensorboard_dir, (str, os.PathLike)):
            raise TypeError(
                f"Invalid value for argument `tensorboard_dir`: expected a folder path, received {tensorboard_dir!r}."
            )
        self._tensorboard_dir = tensorboard_dir
        if save_dir is not None and not isinstance(save_dir, (str, os.PathLike)):
            raise TypeError(
                f"Invalid value for argument `save_dir`: expected a folder path, received {save_dir!r}."
            )
        self._save_dir = Path(save_dir) if save_dir is not None else Path("saved_state")
        self._settings = Settings()
        self._builder: NetworkBuilder | None = None
        self._network: SegmentationNetwork | None = None
        self._pairs: list[tuple[Path, Path]] | None = None
        self._skipped_files = 0
        self._data_cache: dict[str, Any] = {}
        self._split: dict[str, list[str]] | None = None
        self._device = torch.device("cpu")
        self._closed = False
        self._global_step = 0  # training batches done, the x axis of TensorBoard's test scalars

    @property
    def save_dir(self) -> Path:
        """Where the trained state is written."""
        return self._save_dir

    # ================================================================== logging
    def _log(self, message: str) -> None:
        if self._debug and distributed.is_main():
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp}: {message}", file=sys.stdout, flush=True)

    def _changed(self) -> None:
        """Settings changed: cached decoded data and any built network no longer apply."""
        self._data_cache.clear()

    # ================================================================== setters (API.md section 3)
    def set_batch_size(self, size: int) -> None:
        """Images per training batch (default 1)."""
        self._settings.batch_size = check_int("size", size)

    def set_image_dimensions(self, image_height: int, image_width: int, image_channels: int) -> None:
        """Network input size; channels 1 (grey) or 3 (colour), any int >= 1 accepted."""
        self._settings.image_height = check_int("image_height", image_height)
        self._settings.image_width = check_int("image_width", image_width)
        self._settings.image_depth = check_int("image_channels", image_channels)
        self._changed()

    def set_resize_images(self, resize: bool) -> None:
        """Resize every image (bilinear) and mask (nearest) to the network size."""
        self._settings.resize_images = check_bool("resize", resize)
        self._changed()

    def set_crop_or_pad_images(self, crop_or_pad: bool) -> None:
        """Centre-crop or zero-pad images to the network size instead of resizing (padding is ignored in the loss)."""
        self._settings.crop_or_pad_images = check_bool("crop_or_pad", crop_or_pad)
        self._changed()

    def set_test_split(self, ratio: float) -> None:
        """Fraction of images held out for the final test evaluation, in [0, 1); 0 turns it off."""
        self._settings.test_split = check_float("ratio", ratio, 0.0, 1.0, high_inclusive=False)

    def set_validation_split(self, ratio: float) -> None:
        """Fraction of images held out for validation after each epoch, in [0, 1); 0 turns it off."""
        self._settings.validation_split = check_float("ratio", ratio, 0.0, 1.0, high_inclusive=False)

    def force_split_shuffle(self, force: bool) -> None:
        """Re-draw the saved train/validation/test partition instead of reusing it."""
        self._settings.force_split_shuffle = check_bool("force", force)

    def set_random_seed(self, seed: int) -> None:
        """Makes splits, shuffling, augmentation and weight initialisation reproducible."""
        self._settings.random_seed = check_int("seed", seed, minimum=0)

    def set_learning_rate(self, rate: float) -> None:
        """Learning rate of the optimiser (default 0.001)."""
        self._settings.learning_rate = check_float("rate", rate, 0.0, None, low_inclusive=False)

    def set_optimizer(self, optimizer: str) -> None:
        """'adam' (default), 'sgd', 'sgd_momentum', 'adadelta' or 'adagrad'; case-insensitive."""
        self._settings.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)

    def set_learning_rate_decay(self, decay_factor: float, epochs_per_decay: int) -> None:
        """Multiply the learning rate by ``decay_factor`` every ``epochs_per_decay`` epochs."""
        self._settings.lr_decay_factor = check_float(
            "decay_factor", decay_factor, 0.0, 1.0, low_inclusive=False
        )
        self._settings.epochs_per_decay = check_int("epochs_per_decay", epochs_per_decay)

    def set_regularization_coefficient(self, coefficient: float) -> None:
        """L2 weight decay coefficient (>= 0)."""
        self._settings.regularization_coefficient = check_float("coefficient", coefficient, 0.0, None)

    def set_weight_initializer(self, initializer: str) -> None:
        """'xavier' (default, Glorot uniform) or 'normal' (truncated normal, std 0.05); case-insensitive."""
        self._settings.weight_initializer = check_choice("initializer", initializer, INITIALIZERS)

    def set_maximum_training_epochs(self, epochs: int) -> None:
        """Number of epochs; an epoch is one full pass over the training split."""
        self._settings.maximum_training_epochs = check_int("epochs", epochs)

    def set_loss_function(self, loss_function: str) -> None:
        """'sigmoid cross entropy', 'softmax cross entropy', 'dice', 'focal', 'cross entropy + dice',
        'focal + dice' (case-insensitive). Cross entropy follows the class count (sigmoid for 2 classes)."""
        self._settings.loss_function = canonical_loss_name(loss_function)

    def set_num_segmentation_classes(self, num_classes: int) -> None:
        """Number of classes (>= 2): 2 = binary (sigmoid, one output channel), more = softmax over classes.

        Switches a cross-entropy loss to the matching kind.
        """
        n = check_int("num_classes", num_classes)
        if n < 2:
            raise ValueError(f"Invalid value for argument `num_classes`: expected an int >= 2, received {n}.")
        self._settings.num_classes = n
        loss = self._settings.loss_function
        if loss in ("sigmoid cross entropy", "softmax cross entropy"):
            self._settings.loss_function = "sigmoid cross entropy" if n == 2 else "softmax cross entropy"
        self._changed()

    def set_class_weights(self, weights: list[float] | None) -> None:
        """Per-class loss weights (one positive float per class), for rare classes such as crop in weeds."""
        if weights is None:
            self._settings.class_weights = None
            return
        if not isinstance(weights, (list, tuple)):
            raise TypeError(
                f"Invalid value for argument `weights`: expected a list of floats, received {weights!r}."
            )
        self._settings.class_weights = [
            check_float("weights", w, 0.0, None, low_inclusive=False) for w in weights
        ]

    def set_number_of_threads(self, num_threads: int) -> None:
        """CPU threads for compute (torch intra-op threads)."""
        self._settings.num_threads = check_int("num_threads", num_threads)

    def set_number_of_gpus(self, num_gpus: int) -> None:
        """Devices to train on; more than available means all available, 0 means CPU."""
        self._settings.num_gpus = check_int("num_gpus", num_gpus, minimum=0)

    def set_patch_size(self, height: int, width: int) -> None:
        """Train on tiles of this size cut from full-resolution images; infer tile by tile at full size."""
        self._settings.patch_height = check_int("height", height)
        self._settings.patch_width = check_int("width", width)
        self._changed()

    def set_gen_data_overwrite(self, overwrite: bool) -> None:
        """Regenerate cached derived data (patches) instead of reusing it."""
        self._settings.gen_data_overwrite = check_bool("overwrite", overwrite)

    def set_precision(self, precision: str) -> None:
        """'fp32' (default) or 'bf16' (autocast; faster on recent CPUs/GPUs, slightly less exact)."""
        self._settings.precision = check_choice("precision", precision, PRECISIONS)

    def set_augmentation_brightness_and_contrast(self, augment: bool) -> None:
        """Random brightness and contrast on training images only (masks unchanged)."""
        self._settings.augmentation_brightness_contrast = check_bool("augment", augment)

    def set_augmentation_flip_horizontal(self, augment: bool) -> None:
        """Random left-right flips of image and mask together."""
        self._settings.augmentation_flip_horizontal = check_bool("augment", augment)

    def set_augmentation_flip_vertical(self, augment: bool) -> None:
        """Random top-bottom flips of image and mask together."""
        self._settings.augmentation_flip_vertical = check_bool("augment", augment)

    def set_augmentation_rotation(self, augment: bool, crop_borders: bool = False) -> None:
        """Random rotations of image and mask together; ``crop_borders`` crops away the empty corners."""
        self._settings.augmentation_rotation = check_bool("augment", augment)
        self._settings.augmentation_rotation_crop_borders = check_bool("crop_borders", crop_borders)

    def set_augmentation_crop(self, augment: bool, crop_ratio: float = 0.75) -> None:
        """Random crops of ``crop_ratio`` of each side, scaled back to the network size."""
        self._settings.augmentation_crop = check_bool("augment", augment)
        self._settings.augmentation_crop_ratio = check_float(
            "crop_ratio", crop_ratio, 0.0, 1.0, low_inclusive=False
        )

    # ================================================================== layers (API.md section 4)
    def _input_shape(self) -> tuple[int, int, int]:
        s = self._settings
        if s.image_height is None:
            raise RuntimeError("Call set_image_dimensions(height, width, channels) before adding layers.")
        if s.patching:
            return s.image_depth, s.patch_height, s.patch_width
        return s.image_depth, s.image_height, s.image_width

    def _add(self, spec: dict[str, Any]) -> None:
        if spec["kind"] == "input":
            if self._builder is not None:
                raise RuntimeError("The input layer must be the first layer and can only be added once.")
            self._builder = NetworkBuilder(self._input_shape())
        elif self._builder is None:
            from deepplantphenomics.layers import LAYER_NAMES

            raise RuntimeError(
                f"Cannot add a {LAYER_NAMES[spec['kind']]} before the input layer: call add_input_layer() first."
            )
        shape = self._builder.add(spec)
        self._network = None
        index = len(self._builder.specs) - 1
        from deepplantphenomics.layers import LAYER_NAMES

        batch = self._settings.batch_size
        channels = self._out_channels() if spec["kind"] == "output" else shape[0]
        self._log(
            f"Adding {LAYER_NAMES[spec['kind']]} {index}: output shape [{batch}, {shape[1]}, {shape[2]}, {channels}] "
            "(batch, height, width, channels)"
        )

    def add_input_layer(self) -> None:
        """The first layer: takes images of the size set by set_image_dimensions (or set_patch_size)."""
        self._add({"kind": "input"})

    def add_convolutional_layer(
        self,
        filter_dimension: list[int],
        stride_length: int,
        activation_function: str | None,
        padding: int | str | None = None,
        batch_norm: bool = False,
    ) -> None:
        """A 2-D convolution.

        Args:
            filter_dimension: [height, width, in_channels, out_channels]; in_channels is taken from the previous
                layer (DPP's convention), whatever is written there.
            stride_length: stride in both directions.
            activation_function: 'relu', 'tanh', 'lrelu', 'selu', or None / 'linear'.
            padding: None or 'same' keeps ceil(size / stride) (TensorFlow 'SAME'); 'valid' or an int pads that much.
            batch_norm: batch normalisation between the convolution and the activation.
        """
        dims = check_dims("filter_dimension", filter_dimension, 4)
        stride = check_int("stride_length", stride_length)
        activation = check_activation("activation_function", activation_function)
        if padding is not None and padding not in ("same", "valid"):
            padding = check_int("padding", padding, minimum=0)
        check_bool("batch_norm", batch_norm)
        if self._builder is not None:
            dims[2] = self._builder.current_shape[0]
        self._add(
            {
                "kind": "conv",
                "filter_dimension": dims,
                "stride_length": stride,
                "activation_function": activation,
                "padding": padding,
                "batch_norm": batch_norm,
            }
        )

    def add_pooling_layer(self, kernel_size: int, stride_length: int, pooling_type: str = "max") -> None:
        """Max or average pooling with 'SAME' padding (output ceil(size / stride))."""
        self._add(
            {
                "kind": "pool",
                "kernel_size": check_int("kernel_size", kernel_size),
                "stride_length": check_int("stride_length", stride_length),
                "pooling_type": check_choice("pooling_type", pooling_type, ("max", "avg")),
            }
        )

    def add_upsampling_layer(
        self,
        filter_size: int,
        num_filters: int,
        upscale_factor: int = 2,
        activation_function: str | None = None,
    ) -> None:
        """A transposed convolution multiplying height and width by ``upscale_factor``."""
        self._add(
            {
                "kind": "upsample",
                "filter_size": check_int("filter_size", filter_size),
                "num_filters": check_int("num_filters", num_filters),
                "upscale_factor": check_int("upscale_factor", upscale_factor),
                "activation_function": check_activation("activation_function", activation_function),
            }
        )

    def add_batch_norm_layer(self) -> None:
        """Batch normalisation over channels."""
        self._add({"kind": "batchnorm"})

    def add_dropout_layer(self, p: float) -> None:
        """Dropout during training; ``p`` is the KEEP probability, as in DPP (off at inference)."""
        self._add({"kind": "dropout", "p": check_float("p", p, 0.0, 1.0, low_inclusive=False)})

    def add_normalization_layer(self) -> None:
        """Local response normalisation (TensorFlow's tf.nn.lrn defaults)."""
        self._add({"kind": "lrn"})

    def add_skip_connection(self, downsampled: bool = False) -> None:
        """Residual connection: adds the activation at the previous skip connection (or the input layer).

        Channels are matched by a 1x1 projection; ``downsampled=True`` when one stride-2 step lies between.
        """
        self._add({"kind": "skip", "downsampled": check_bool("downsampled", downsampled)})

    def add_copy_connection(self, mode: str) -> None:
        """'save' remembers the current activation; 'load' concatenates the last saved one (U-Net)."""
        mode = check_choice("mode", mode, ("save", "load"))
        self._add({"kind": f"copy_{mode}"})

    def add_paral_conv_block(self, filter_dimension_1: list[int], filter_dimension_2: list[int]) -> None:
        """Two parallel 'SAME' convolutions (relu) of the same input, concatenated along channels."""
        d1 = check_dims("filter_dimension_1", filter_dimension_1, 4)
        d2 = check_dims("filter_dimension_2", filter_dimension_2, 4)
        if self._builder is not None:
            d1[2] = d2[2] = self._builder.current_shape[0]
        self._add({"kind": "paral_conv", "filter_dimension_1": d1, "filter_dimension_2": d2})

    def add_output_layer(self) -> None:
        """1x1 convolution to 1 channel (binary) or one per class; output at the input's height and width."""
        self._add({"kind": "output"})

    def use_predefined_model(self, model_type: str) -> None:
        """Declare a predefined architecture: 'u-net' or 'fcn-18' (case-insensitive)."""
        from deepplantphenomics.architectures import PREDEFINED, declare

        name = check_choice("model_type", model_type, tuple(PREDEFINED))
        if self._builder is not None:
            raise RuntimeError(
                "use_predefined_model() declares the whole network: call it instead of adding layers."
            )
        declare(self, name)

    # ================================================================== data (API.md section 5)
    def load_dataset_from_directory_with_segmentation_masks(
        self, dirname: str | os.PathLike, seg_dirname: str | os.PathLike
    ) -> None:
        """Pair images in ``dirname`` with masks in ``seg_dirname`` by file name (or name stem).

        Raises:
            FileNotFoundError: a folder does not exist.
            ValueError: an image without a mask or a mask without an image (named), an empty folder, an
                ambiguous name stem.
        """
        self._pairs, self._skipped_files = pair_files(dirname, seg_dirname)
        self._changed()
        self._log(
            f"Found {len(self._pairs)} image/mask pairs in '{dirname}' and '{seg_dirname}'"
            + (f" ({self._skipped_files} non-image entries skipped)" if self._skipped_files else "")
        )

    def _names(self) -> list[str]:
        return [image.name for image, _ in self._pairs]

    def _decoded(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Decode every pair once per settings (cached): images and masks by image name."""
        if "decoded" not in self._data_cache:
            s = self._settings
            size = None if s.patching else (s.image_height, s.image_width)
            images, masks, report = load_pairs(
                self._pairs, s.image_depth, s.num_classes, size, s.resize_images, s.crop_or_pad_images
            )
            self._report_load(report, masks)
            names = self._names()
            self._data_cache["decoded"] = (dict(zip(names, images)), dict(zip(names, masks)))
        return self._data_cache["decoded"]

    def _report_load(self, report: LoadReport, masks: list[torch.Tensor]) -> None:
        self._log(f"Decoded {report.pairs} image/mask pairs")
        if report.zero_one_masks:
            self._log(
                f"{report.zero_one_masks} mask(s) hold only the values 0 and 1: read as 0 = background, "
                "1 = foreground"
            )
        if self._settings.binary and all(not bool((m == 1).any()) for m in masks):
            # Training on all-background masks silently yields a model that predicts nothing.
            raise ValueError(
                "Every mask is entirely background: foreground pixels must be > 127 (0/255 masks) or 1 (0/1 masks)."
            )

    def _subset(self, names: list[str]) -> InMemoryData | None:
        if not names:
            return None
        s = self._settings
        if not s.patching:
            images, masks = self._decoded()
            return stack(names, [images[n] for n in names], [masks[n] for n in names])
        return self._patches(names)

    def _patch_cache_path(self, names: list[str]) -> Path:
        """Cache file for the patches of ``names``: keyed by the files (name, size, mtime) and the settings."""
        s = self._settings
        by_name = {image.name: (image, mask) for image, mask in self._pairs}
        files = []
        for name in names:
            for path in by_name[name]:
                info = path.stat()
                files.append([str(path), info.st_size, info.st_mtime_ns])
        key = json.dumps([files, s.patch_height, s.patch_width, s.image_depth, s.num_classes, __version__])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return self._save_dir / "patch_cache" / f"patches-{digest}.pt"

    def _patches(self, names: list[str]) -> InMemoryData:
        """Patches covering each full-resolution image, cached on disk and reused (unless set_gen_data_overwrite).

        Each patch carries the mean/std of its whole image, so it is standardised as tiled inference will.
        """
        s = self._settings
        cache = self._patch_cache_path(names)
        if cache.exists() and not s.gen_data_overwrite:
            try:
                saved = state.load_checkpoint(cache)
                self._log(f"Reusing {len(saved['names'])} cached patches from '{cache}'")
                return InMemoryData(saved["names"], saved["images"], saved["masks"], saved["statistics"])
            except (ValueError, KeyError):
                self._log(f"Patch cache '{cache}' is unreadable; regenerating it")
        from deepplantphenomics.data.patches import extract_training_patches

        images, masks = self._decoded()
        patch_images, patch_masks, patch_names, patch_stats = [], [], [], []
        for name in names:
            full = images[name]
            stats = image_statistics(as_float(full)[None])[0]
            pi, pm = extract_training_patches(
                full.permute(1, 2, 0).numpy(), masks[name].numpy(), s.patch_height, s.patch_width
            )
            patch_images.extend(torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1) for p in pi)
            patch_masks.extend(torch.from_numpy(np.ascontiguousarray(m)) for m in pm)
            patch_names.extend(f"{name}#{i}" for i in range(len(pi)))
            patch_stats.extend([stats] * len(pi))
        data = stack(patch_names, patch_images, patch_masks, torch.stack(patch_stats))
        if distributed.is_main():
            state.save_torch(
                cache,
                {
                    "names": data.names,
                    "images": data.images,
                    "masks": data.masks,
                    "statistics": data.statistics,
                },
            )
        self._log(f"Cut {len(data)} patches of {s.patch_height}x{s.patch_width} from {len(names)} images")
        return data

    def _resolve_split(self) -> dict[str, list[str]]:
        s = self._settings
        names = self._names()
        path = self._save_dir / state.SPLIT
        if not distributed.is_main():  # under torchrun rank 0 decides and writes; the others receive it
            return distributed.broadcast_object(None)
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

    # ================================================================== network and state
    def _specs(self) -> list[dict[str, Any]]:
        if self._builder is None or not self._builder.finished:
            raise RuntimeError(
                "The network is not complete: add an input layer, layers, then add_output_layer()."
            )
        return self._builder.specs

    def _out_channels(self) -> int:
        return 1 if self._settings.binary else self._settings.num_classes

    def _build_network(self) -> SegmentationNetwork:
        if self._network is not None:
            return self._network
        if self._closed:
            # Rebuilding here would silently predict with freshly initialised weights.
            raise RuntimeError(
                "The model was shut down (shut_down() released its network); load the trained state again "
                f"with dpp.load_model('{self._save_dir}')."
            )
        s = self._settings
        if s.random_seed is not None:
            torch.manual_seed(s.random_seed)
        network = SegmentationNetwork(self._specs(), self._input_shape(), self._out_channels())
        generator = torch.Generator().manual_seed(s.random_seed) if s.random_seed is not None else None
        initialize_weights(network, s.weight_initializer, generator)
        if self._load_from is not None:
            self._load_weights_from(self._load_from, network)
        self._network = network
        return network

    def _load_weights_from(self, directory: Path, network: SegmentationNetwork) -> None:
        arch = state.read_json(directory / state.ARCHITECTURE)
        state.check_architecture(arch["layers"], self._specs(), directory)
        path = directory / state.WEIGHTS
        state.load_state_dict_checked(network, state.load_weights(path), path)
        self._log(f"Loaded weights from '{path}'")

    def _architecture(self) -> dict[str, Any]:
        return {
            "format_version": state.FORMAT_VERSION,
            "library_version": __version__,
            "layers": self._specs(),
            "input_shape": list(self._input_shape()),
            "out_channels": self._out_channels(),
            "num_classes": self._settings.num_classes,
            "preprocessing": {
                "scale": "pixel / 255 (8-bit) or / 65535 (16-bit)",
                "normalization": self._settings.input_normalization,
                "image_size": [self._settings.image_height, self._settings.image_width],
                "resize_images": self._settings.resize_images,
                "crop_or_pad_images": self._settings.crop_or_pad_images,
                "patch_size": [self._settings.patch_height, self._settings.patch_width]
                if self._settings.patching
                else None,
            },
        }

    def save_state(self, directory: str | os.PathLike | None = None) -> Path:
        """Write weights (safetensors), architecture and settings (JSON) to ``directory`` (default save_dir)."""
        directory = Path(directory) if directory is not None else self._save_dir
        network = self._build_network()
        state.write_json(directory / state.ARCHITECTURE, self._architecture())
        state.write_json(directory / state.SETTINGS, self._settings.to_dict())
        state.save_weights(
            directory / state.WEIGHTS, network, {"format": "pt", "library": "deepplantphenomics"}
        )
        return directory

    # ================================================================== training (API.md section 6)
    def _prepare_runtime(self) -> None:
        distributed.initialize()
        s = self._settings
        if s.num_threads is not None:
            torch.set_num_threads(s.num_threads)
        self._device = choose_device(s)
        available = torch.cuda.device_count() if self._device.type == "cuda" else 0
        if s.num_gpus:
            if available == 0:
                warnings.warn(
                    f"set_number_of_gpus({s.num_gpus}): no GPU is available; training on the CPU.",
                    UserWarning,
                    stacklevel=3,
                )
            else:
                used = min(s.num_gpus, available)
                if s.batch_size % used:
                    raise RuntimeError(
                        f"The batch size ({s.batch_size}) must split evenly over {used} GPUs; "
                        f"use a multiple of {used} with set_batch_size."
                    )

    def _check_ready_to_train(self) -> None:
        if self._pairs is None:
            raise RuntimeError(
                "No data: call load_dataset_from_directory_with_segmentation_masks(images_dir, masks_dir) first."
            )
        if self._settings.image_height is None:
            raise RuntimeError("Call set_image_dimensions(height, width, channels) before training.")
        self._specs()

    def begin_training(self, return_test_loss: bool = False, resume: bool = False) -> float | None:
        """Train for the set number of epochs, save the state, then evaluate on the test split.

        Args:
            return_test_loss: return the test loss instead of None.
            resume: continue from the checkpoint in save_dir (same data and settings).

        Returns:
            The test loss when ``return_test_loss``, else None.
        """
        check_bool("return_test_loss", return_test_loss)
        check_bool("resume", resume)
        self._check_ready_to_train()
        if resume and not (self._save_dir / state.CHECKPOINT).is_file():
            raise FileNotFoundError(
                f"Cannot resume: no checkpoint at '{self._save_dir / state.CHECKPOINT}'. "
                "Train with save_checkpoints=True (the default) first, or interrupt a run with Ctrl-C."
            )
        self._prepare_runtime()
        split = self._resolve_split()
        self._split = split
        train = self._subset(split["train"])
        validation = self._subset(split["validation"])
        self._log(
            f"Training on {len(train)} {'patches' if self._settings.patching else 'images'} for "
            f"{self._settings.maximum_training_epochs} epochs (batch size {self._settings.batch_size}, "
            f"device {self._device})"
        )
        network = self._build_network()
        if resume:
            path = self._save_dir / state.WEIGHTS
            state.load_state_dict_checked(network, state.load_weights(path), path)
        run = TrainingRun(
            network=network,
            settings=self._settings,
            train_data=train,
            validation_data=validation,
            save_dir=self._save_dir,
            save_state=lambda net: self.save_state(),
            debug=self._debug,
            report_rate=self._report_rate,
            save_checkpoints=self._save_checkpoints,
            tensorboard_dir=self._tensorboard_dir,
            resume=resume,
            device=self._device,
        )
        self.history = run.run()
        self._global_step = run.global_step
        if run.interrupted:
            return None
        self._log(f"Training finished; state saved to '{self._save_dir}'")
        if not split["test"]:
            self._log("No test split (set_test_split(0)): skipping the test evaluation")
            return None
        metrics = self.compute_full_test_accuracy()
        return metrics["loss"] if return_test_loss else None

    def compute_full_test_accuracy(self) -> dict[str, Any]:
        """Evaluate on the test split: loss, pixel accuracy, IoU and Dice (per class for multi-class).

        Returns:
            The metrics dict (also printed).
        """
        self._check_ready_to_train()
        split = self._split or self._resolve_split()
        test = self._subset(split["test"])
        if test is None:
            raise RuntimeError("There is no test split: set_test_split(r) with r > 0 and train again.")
        network = prepare_module(self._build_network(), self._device)
        s = self._settings
        loss_fn = build_loss(s.loss_function, s.num_classes, s.class_weights)
        metrics = evaluate(network, test, s, loss_fn, self._device)
        self.test_metrics = metrics
        if distributed.is_main():
            print(report_test_metrics(metrics), flush=True)
            if self._tensorboard_dir:
                iou, dice = headline_scores(metrics)
                scalars = {"test/loss": metrics["loss"], "test/iou": iou, "test/dice": dice}
                write_tensorboard_scalars(self._tensorboard_dir, scalars, self._global_step)
        return metrics

    # ================================================================== inference
    def forward_pass_with_file_inputs(self, images: list[str | os.PathLike]) -> np.ndarray:
        """Probabilities for image files.

        Args:
            images: image file paths.

        Returns:
            float32 (N, H, W, 1) foreground probabilities for binary models, (N, H, W, C) class probabilities for
            multi-class; H, W = the network size, or each image's own size with a patch size (a list of arrays
            when those sizes differ).
        """
        return stack_or_list(self._predict(images))

    def forward_pass_with_interpreted_outputs(self, images: list[str | os.PathLike]) -> np.ndarray:
        """Masks for image files: uint8 (N, H, W), 0/255 for binary, class indices for multi-class."""
        return stack_or_list([interpret(p) for p in self._predict(images)])

    def _predict(self, images: list[str | os.PathLike]) -> list[np.ndarray]:
        """Per-file probabilities; under torchrun each rank predicts its share and all ranks get every result."""
        files = check_files(images, "images")
        if distributed.initialize() and self._device.type == "cpu":
            self._device = choose_device(self._settings)
        network = prepare_module(self._build_network(), self._device)
        mine = predict_files(network, distributed.shard(files), self._settings, self._device)
        return distributed.unshard(distributed.gather_objects(mine))

    def export_onnx(self, path: str | os.PathLike, probabilities: bool = True) -> Path:
        """Write the network as an ONNX file for deployment (needs the 'onnx' extra); see docs/export.md.

        The graph includes the input normalisation: it takes float32 (N, C, H, W) images in [0, 1] (pixel /
        255 for 8-bit) and returns float32 (N, K, H, W) probabilities (sigmoid, K = 1, for binary models;
        softmax over K classes otherwise), or logits with ``probabilities=False``. Batch, height and width are
        dynamic; height and width must be multiples of the network's total stride (metadata ``size_multiple``).

        Returns:
            The path written.
        """
        from deepplantphenomics.export import export_onnx

        return export_onnx(self._build_network(), self._settings, self._specs(), path, probabilities)

    def shut_down(self) -> None:
        """Release the network and cached data (safe to call twice)."""
        self._network = None
        self._data_cache.clear()
        self._closed = True

    # ================================================================== loading without re-declaration
    @classmethod
    def from_saved_state(cls, directory: str | os.PathLike, debug: bool = False) -> SemanticSegmentationModel:
        """Rebuild a trained model from its state directory alone (see ``dpp.load_model``)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"Saved state folder does not exist: '{directory}'.")
        arch = state.read_json(directory / state.ARCHITECTURE)
        try:
            saved_settings = state.read_json(directory / state.SETTINGS)
            # States written before input normalisation was a setting fed the network [0, 1] pixels.
            saved_settings.setdefault("input_normalization", "none")
            settings = Settings.from_dict(saved_settings)
            layers = arch["layers"]
            input_shape = tuple(arch["input_shape"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"Saved state in '{directory}' is incomplete: missing {exc}.") from None
        model = cls(debug=debug, save_dir=directory, save_checkpoints=False)
        model._settings = settings
        model._builder = NetworkBuilder(input_shape)
        for spec in layers:
            model._builder.add(spec)
        network = SegmentationNetwork(layers, input_shape, int(arch["out_channels"]))
        path = directory / state.WEIGHTS
        state.load_state_dict_checked(network, state.load_weights(path), path)
        model._network = network
        return model


def load_model(directory: str | os.PathLike, debug: bool = False) -> SemanticSegmentationModel:
    """Rebuild a trained model, architecture and settings included, from a saved state directory.

    Args:
        directory: a ``save_dir`` written by ``begin_training()``.

    Returns:
        A model ready for ``forward_pass_with_file_inputs`` and friends.

    Raises:
        FileNotFoundError: the directory or one of its files is missing (named).
        ValueError: a file is corrupt (named).
    """
    return SemanticSegmentationModel.from_saved_state(directory, debug=debug)
