"""``SemanticSegmentationModel``: DPP's builder facade. It validates what users set and delegates the work.

Scripts written for Deep Plant Phenomics' semantic segmentation run unchanged; see docs/migrating.md for
what goes beyond DPP.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepplantphenomics import distributed, state
from deepplantphenomics.architectures import PREDEFINED, predefined_layer_specs
from deepplantphenomics.data.dataset import InMemoryData, pair_folders
from deepplantphenomics.data.training_data import TrainingData
from deepplantphenomics.inference import check_files, interpret, predict_files, stack_or_list
from deepplantphenomics.layers import layer_kind, layer_name
from deepplantphenomics.losses import canonical_loss_name
from deepplantphenomics.network import (
    SKIP_SEMANTICS_DPP,
    NetworkBuilder,
    SegmentationNetwork,
    initialize_weights,
)
from deepplantphenomics.runtime import prepare_module
from deepplantphenomics.settings import (
    Settings,
    check_setting,
)
from deepplantphenomics.training import (
    TrainingRun,
    choose_device,
    epochs_per_decay,
    evaluate_test_split,
    grid_search,
    hold_save_dir,
    prepare_training_devices,
    search_values,
)
from deepplantphenomics.validation import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_mask_threshold,
    check_num_classes,
)

_MAX_SEED = 2**32 - 1  # np.random.seed's upper bound

# DPPModel methods of DPP's other model types (classification, regression, detection, counting).
_OTHER_PROBLEM_TYPE_METHODS = frozenset(
    {
        "load_dataset_from_directory_with_csv_labels",
        "load_dataset_from_directory_with_auto_labels",
        "load_ippn_dataset_from_directory",
        "load_ippn_tray_dataset_from_directory",
        "load_ippn_leaf_count_dataset_from_directory",
        "load_inra_dataset_from_directory",
        "load_cifar10_dataset_from_directory",
        "load_lemnatec_images_from_directory",
        "load_multiple_labels_from_csv",
        "load_images_with_ids_from_directory",
        "load_training_augmentation_dataset_from_directory_with_csv_labels",
        "load_pascal_voc_labels_from_directory",
        "load_json_labels_from_file",
        "load_yolo_dataset_from_directory",
        "load_dataset_from_pkl_file",
        "load_heatmap_dataset_with_csv_from_directory",
        "load_heatmap_dataset_with_json_files_from_directory",
        "set_num_regression_outputs",
        "set_yolo_parameters",
        "set_yolo_thresholds",
        "set_density_map_sigma",
        "set_problem_type",
    }
)


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
        self._data: TrainingData | None = None  # the paired files, their split, decoded images and patches
        self._device = torch.device("cpu")
        self._closed = False
        self._global_step = 0  # training batches done, the x axis of TensorBoard's test scalars
        self._batches_per_decay: int | None = None  # set_learning_rate_decay(..., batches_per_decay=n)
        # How skip connections compute: DPP's rule, or the older one of a state loaded from disk.
        self._skip_semantics = SKIP_SEMANTICS_DPP

    @property
    def save_dir(self) -> Path:
        """Where the trained state is written."""
        return self._save_dir

    # ================================================================== read-only views for other modules
    @property
    def debug(self) -> bool:
        """Whether progress and decisions are logged (the constructor's ``debug``)."""
        return self._debug

    @property
    def save_checkpoints(self) -> bool:
        """Whether a resumable checkpoint is written after each epoch (the constructor's ``save_checkpoints``)."""
        return self._save_checkpoints

    @property
    def report_rate(self) -> int:
        """Training batches between two progress lines (the constructor's ``report_rate``)."""
        return self._report_rate

    @property
    def paired_files(self) -> list[tuple[Path, Path]]:
        """(image, mask) paths of the loaded dataset, in loading order (empty before a dataset is loaded)."""
        return list(self._data.pairs) if self._data is not None else []

    @property
    def split(self) -> dict[str, list[str]] | None:
        """Copies of the image names per part (``train``, ``validation``, ``test``) of the last training run's
        split, as ``split.json`` records them; None before ``begin_training`` has split the data."""
        if self._data is None or self._data.split is None:
            return None
        return {part: list(names) for part, names in self._data.split.items()}

    @property
    def settings(self) -> Settings:
        """A copy of every hyperparameter set so far (change them with the ``set_*`` methods)."""
        return copy.deepcopy(self._settings)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the network input: the image size, or the patch size when patching.

        Raises:
            RuntimeError: ``set_image_dimensions`` has not been called yet.
        """
        return self._input_shape()

    @property
    def layer_specs(self) -> list[dict[str, Any]]:
        """Copies of the layer specs declared so far, input layer first (empty before ``add_input_layer``)."""
        return copy.deepcopy(self._builder.specs) if self._builder is not None else []

    @property
    def layer_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) after each declared layer, as ``debug=True`` prints them (the output layer's
        channels are 1 for binary models, else the number of classes)."""
        if self._builder is None:
            return []
        shapes = list(self._builder.shapes)
        if self._builder.finished:
            shapes[-1] = (self._out_channels(), *shapes[-1][1:])
        return shapes

    def build_network(self) -> SegmentationNetwork:
        """The complete network: built on first use (with the saved weights when ``load_from_saved`` or
        ``dpp.load_model`` gave a state), the same module afterwards.

        Raises:
            RuntimeError: the network is not complete (no output layer yet), or the model was shut down.
        """
        return self._build_network()

    # ================================================================== logging
    def _log(self, message: str) -> None:
        if self._debug and distributed.is_main():
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp}: {message}", file=sys.stdout, flush=True)

    def _changed(self) -> None:
        """Settings changed: cached decoded data and any built network no longer apply."""
        if self._data is not None:
            self._data.clear()

    # ================================================================== setters (API.md section 3)
    def set_batch_size(self, size: int) -> None:
        """Images per training batch (default 1)."""
        self._settings.batch_size = check_setting("batch_size", size, "size")

    def set_image_dimensions(self, image_height: int, image_width: int, image_depth: int) -> None:
        """Network input size; depth is the channel count, 1 (grey) or 3 (colour), any int >= 1 accepted."""
        self._settings.image_height = check_int("image_height", image_height)
        self._settings.image_width = check_int("image_width", image_width)
        self._settings.image_depth = check_int("image_depth", image_depth)
        self._changed()

    def set_original_image_dimensions(self, image_height: int, image_width: int) -> None:
        """Accepted for DPP compatibility: DPP used it only to rescale bounding-box labels, so it changes
        nothing for segmentation (masks are resized with their images)."""
        check_int("image_height", image_height)
        check_int("image_width", image_width)
        self._log(
            "set_original_image_dimensions() only matters for bounding-box labels; ignored for segmentation"
        )

    def set_resize_images(self, resize: bool) -> None:
        """Resize every image (bilinear) and mask (nearest) to the network size."""
        self._settings.resize_images = check_setting("resize_images", resize, "resize")
        self._changed()

    def set_crop_or_pad_images(self, crop_or_pad: bool) -> None:
        """Centre-crop or zero-pad images to the network size instead of resizing (padding is ignored in the loss)."""
        self._settings.crop_or_pad_images = check_setting("crop_or_pad_images", crop_or_pad, "crop_or_pad")
        self._changed()

    def set_test_split(self, ratio: float) -> None:
        """Fraction of images held out for the final test evaluation, in [0, 1); 0 turns it off."""
        self._settings.test_split = check_setting("test_split", ratio, "ratio")

    def set_validation_split(self, ratio: float) -> None:
        """Fraction of images held out for validation after each epoch, in [0, 1); 0 turns it off."""
        self._settings.validation_split = check_setting("validation_split", ratio, "ratio")

    def force_split_shuffle(self, force_split: bool) -> None:
        """Re-draw the saved train/validation/test partition instead of reusing it."""
        self._settings.force_split_shuffle = check_setting("force_split_shuffle", force_split, "force_split")

    def set_random_seed(self, seed: int) -> None:
        """Makes splits, shuffling, augmentation and weight initialisation reproducible.

        As DPP did, it also seeds Python's ``random`` and numpy's global generator (``np.random.seed``) now, so
        user code that draws from them repeats; torch's global generator is seeded too.

        Args:
            seed: int in [0, 2**32 - 1] (numpy's range; numpy integers are accepted).

        Raises:
            TypeError: ``seed`` is not an int.
            ValueError: ``seed`` is outside [0, 2**32 - 1].
        """
        seed = check_int("seed", seed, minimum=0)
        if seed > _MAX_SEED:
            raise ValueError(
                f"Invalid value for argument `seed`: expected an int in [0, {_MAX_SEED}] (numpy's seed range), "
                f"received {seed}."
            )
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002 - DPP seeded the global generator that user code draws from
        torch.manual_seed(seed)
        self._settings.random_seed = seed

    def set_learning_rate(self, rate: float) -> None:
        """Learning rate of the optimiser (default 0.001)."""
        self._settings.learning_rate = check_setting("learning_rate", rate, "rate")

    def set_optimizer(self, optimizer: str) -> None:
        """'adam' (default), 'sgd', 'sgd_momentum', 'adadelta' or 'adagrad'; case-insensitive."""
        self._settings.optimizer = check_setting("optimizer", optimizer)

    def set_learning_rate_decay(
        self,
        decay_factor: float,
        epochs_per_decay: int | None = None,
        *,
        batches_per_decay: int | None = None,
    ) -> None:
        """Multiply the learning rate by ``decay_factor`` every ``epochs_per_decay`` epochs (step decay).

        Args:
            decay_factor: float in (0, 1].
            epochs_per_decay: int >= 1, the name DPP's documentation uses.
            batches_per_decay: instead of ``epochs_per_decay``, the name of DPP's last release, where the decay
                stepped every that many batches. The learning rate here changes once per epoch, so it is
                converted to whole epochs (at least 1) when training starts, and the debug log says so.

        Raises:
            TypeError: if both or neither of ``epochs_per_decay`` and ``batches_per_decay`` are given, or a
                value has the wrong type.
            ValueError: a value out of range.
        """
        factor = check_float("decay_factor", decay_factor, 0.0, 1.0, low_inclusive=False)
        if (epochs_per_decay is None) == (batches_per_decay is None):
            raise TypeError(
                "set_learning_rate_decay() takes one of `epochs_per_decay` and `batches_per_decay`, "
                f"received epochs_per_decay={epochs_per_decay!r}, batches_per_decay={batches_per_decay!r}."
            )
        if epochs_per_decay is not None:
            epochs = check_int("epochs_per_decay", epochs_per_decay)
            batches = None
        else:
            batches = check_int("batches_per_decay", batches_per_decay)
            epochs = None  # converted in begin_training(), once the batches per epoch are known
        self._settings.lr_decay_factor = factor
        self._settings.epochs_per_decay = epochs
        self._batches_per_decay = batches

    def set_regularization_coefficient(self, lamb: float) -> None:
        """L2 weight decay coefficient (>= 0) of every layer without its own ``regularization_coefficient``."""
        self._settings.regularization_coefficient = check_setting("regularization_coefficient", lamb, "lamb")

    def set_weight_initializer(self, initializer: str) -> None:
        """'xavier' (default, Glorot uniform) or 'normal' (truncated normal, std 0.05); case-insensitive."""
        self._settings.weight_initializer = check_setting("weight_initializer", initializer, "initializer")

    def set_maximum_training_epochs(self, epochs: int) -> None:
        """Number of epochs; an epoch is one full pass over the training split."""
        self._settings.maximum_training_epochs = check_setting("maximum_training_epochs", epochs, "epochs")

    def set_loss_function(self, loss_fn: str) -> None:
        """'sigmoid cross entropy', 'softmax cross entropy', 'dice', 'focal', 'cross entropy + dice',
        'focal + dice' (case-insensitive). Cross entropy follows the class count (sigmoid for 2 classes)."""
        self._settings.loss_function = canonical_loss_name(loss_fn, "loss_fn")

    def set_num_segmentation_classes(self, num_class: int) -> None:
        """Number of classes (>= 2): 2 = binary (sigmoid, one output channel), more = softmax over classes.

        Switches a cross-entropy loss to the matching kind.
        """
        n = check_num_classes("num_class", num_class)
        self._settings.num_classes = n
        loss = self._settings.loss_function
        if loss in ("sigmoid cross entropy", "softmax cross entropy"):
            self._settings.loss_function = "sigmoid cross entropy" if n == 2 else "softmax cross entropy"
        self._changed()

    def set_class_weights(self, weights: list[float] | None) -> None:
        """Per-class loss weights (one positive float per class), for rare classes such as crop in weeds."""
        self._settings.class_weights = check_setting("class_weights", weights, "weights")

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
        self._settings.gen_data_overwrite = check_setting("gen_data_overwrite", overwrite, "overwrite")

    def set_precision(self, precision: str) -> None:
        """'fp32' (default) or 'bf16' (autocast; faster on recent CPUs/GPUs, slightly less exact)."""
        self._settings.precision = check_setting("precision", precision)

    # The flags' odd names (contr, flip, rot, resize) are DPP's, so DPP scripts passing them by keyword run.
    def set_augmentation_brightness_and_contrast(self, contr: bool) -> None:
        """Random brightness and contrast on training images only (masks unchanged)."""
        self._settings.augmentation_brightness_contrast = check_setting(
            "augmentation_brightness_contrast", contr, "contr"
        )

    def set_augmentation_flip_horizontal(self, flip: bool) -> None:
        """Random left-right flips of image and mask together."""
        self._settings.augmentation_flip_horizontal = check_setting(
            "augmentation_flip_horizontal", flip, "flip"
        )

    def set_augmentation_flip_vertical(self, flip: bool) -> None:
        """Random top-bottom flips of image and mask together."""
        self._settings.augmentation_flip_vertical = check_setting("augmentation_flip_vertical", flip, "flip")

    def set_augmentation_rotation(self, rot: bool, crop_borders: bool = False) -> None:
        """Random rotations of image and mask together; ``crop_borders`` crops away the empty corners."""
        self._settings.augmentation_rotation = check_bool("rot", rot)
        self._settings.augmentation_rotation_crop_borders = check_bool("crop_borders", crop_borders)

    def set_augmentation_crop(self, resize: bool, crop_ratio: float = 0.75) -> None:
        """Random crops of ``crop_ratio`` of each side, scaled back to the network size (``resize`` turns the
        augmentation on, as in DPP)."""
        self._settings.augmentation_crop = check_bool("resize", resize)
        self._settings.augmentation_crop_ratio = check_float(
            "crop_ratio", crop_ratio, 0.0, 1.0, low_inclusive=False
        )

    # ================================================================== layers (API.md section 4)
    def _input_shape(self) -> tuple[int, int, int]:
        s = self._settings
        if s.image_height is None:
            raise RuntimeError(
                "Call set_image_dimensions(image_height, image_width, image_depth) before adding layers."
            )
        if s.patching:
            return s.image_depth, s.patch_height, s.patch_width
        return s.image_depth, s.image_height, s.image_width

    def _check_order(self, kind: str) -> None:
        """Raise RuntimeError if a layer of ``kind`` cannot come next; layer methods call it before they look at
        their arguments, so a layer added before the input layer says so whatever its arguments (as in DPP)."""
        if self._builder is not None:
            self._builder.check_order(kind)
        elif kind != "input":
            raise RuntimeError(
                f"Cannot add a {layer_name(kind)} before the input layer: call add_input_layer() first."
            )

    def _add(self, spec: dict[str, Any]) -> None:
        self._check_order(spec["kind"])
        if spec["kind"] == "input":
            self._builder = NetworkBuilder(self._input_shape())
        marks_source = spec["kind"] == "skip" and self._builder.skip_source is None
        shape = self._builder.add(spec)
        self._network = None
        index = len(self._builder.specs) - 1
        batch = self._settings.batch_size
        channels = self._out_channels() if spec["kind"] == "output" else shape[0]
        self._log(
            f"Adding {layer_name(spec['kind'])} {index}: output shape [{batch}, {shape[1]}, {shape[2]}, {channels}] "
            "(batch, height, width, channels)"
            + ("; the first skip connection only marks the residual source" if marks_source else "")
        )

    def add_layer(self, kind: str, **arguments: Any) -> None:
        """Add a layer of any registered kind: a built-in one or one added with ``layers.register_layer_kind``.

        DPP's ``add_*`` methods call this with their kind; a layer spec (``layer_specs``, ``architecture.json``)
        is its own declaration, ``add_layer(**spec)``.

        Args:
            kind: the kind, e.g. 'conv', 'pool', or a registered one (``layers.layer_kinds()`` lists them).
            **arguments: the kind's arguments (those of its ``LayerKind.build``).

        Raises:
            RuntimeError: before the input layer or after the output layer (checked before the arguments).
            TypeError: an argument the kind does not take, a missing one, or one of the wrong type.
            ValueError: an unknown kind, a value out of range, or a layer that does not fit the current shape.
        """
        record = layer_kind(kind)
        self._check_order(kind)
        in_shape = self._builder.current_shape if self._builder is not None else self._input_shape()
        self._add(record.make_spec(in_shape, arguments))

    def add_input_layer(self) -> None:
        """The first layer: takes images of the size set by set_image_dimensions (or set_patch_size)."""
        self.add_layer("input")

    def add_convolutional_layer(
        self,
        filter_dimension: list[int],
        stride_length: int,
        activation_function: str | None,
        padding: int | str | None = None,
        batch_norm: bool = False,
        use_bias: bool = True,
        epsilon: float = 1e-5,
        decay: float = 0.9,
    ) -> None:
        """A 2-D convolution.

        Args:
            filter_dimension: [height, width, in_channels, out_channels]; in_channels is taken from the previous
                layer (DPP's convention), whatever is written there.
            stride_length: stride in both directions.
            activation_function: 'relu', 'tanh', 'lrelu', 'selu', or None / 'linear'.
            padding: None or 'same' keeps ceil(size / stride) (TensorFlow 'SAME'); 'valid' or an int pads that much.
            batch_norm: batch normalisation between the convolution and the activation.
            use_bias: give the convolution a bias (False is usual before batch norm, whose shift replaces it).
            epsilon: float >= 0 added to the variance by the batch norm (only with ``batch_norm=True``).
            decay: float in [0, 1], the batch norm's moving-average decay (torch momentum = 1 - decay).

        Raises:
            RuntimeError: before the input layer or after the output layer (checked before the arguments).
            TypeError: an argument of the wrong type, e.g. a float in ``filter_dimension``.
            ValueError: a value out of range.
        """
        self.add_layer(
            "conv",
            filter_dimension=filter_dimension,
            stride_length=stride_length,
            activation_function=activation_function,
            padding=padding,
            batch_norm=batch_norm,
            use_bias=use_bias,
            epsilon=epsilon,
            decay=decay,
        )

    def add_pooling_layer(self, kernel_size: int, stride_length: int, pooling_type: str = "max") -> None:
        """Max or average pooling with 'SAME' padding (output ceil(size / stride))."""
        self.add_layer(
            "pool", kernel_size=kernel_size, stride_length=stride_length, pooling_type=pooling_type
        )

    def add_upsampling_layer(
        self,
        filter_size: int,
        num_filters: int,
        upscale_factor: int = 2,
        activation_function: str | None = None,
        use_bias: bool = True,
        regularization_coefficient: float | None = None,
    ) -> None:
        """A transposed convolution multiplying height and width by ``upscale_factor``.

        Args:
            filter_size: side of the square kernel.
            num_filters: output channels.
            upscale_factor: int >= 1 multiplying height and width.
            activation_function: as for ``add_convolutional_layer``.
            use_bias: give the transposed convolution a bias.
            regularization_coefficient: None, or this layer's own L2 coefficient (float >= 0), which overrides
                ``set_regularization_coefficient`` for its weights and bias (an optimizer parameter group).
        """
        self.add_layer(
            "upsample",
            filter_size=filter_size,
            num_filters=num_filters,
            upscale_factor=upscale_factor,
            activation_function=activation_function,
            use_bias=use_bias,
            regularization_coefficient=regularization_coefficient,
        )

    def add_batch_norm_layer(self) -> None:
        """Batch normalisation over channels (DPP's epsilon 1e-5 and moving-average decay 0.9)."""
        self.add_layer("batchnorm")

    def add_dropout_layer(self, p: float) -> None:
        """Dropout during training; ``p`` is the KEEP probability, as in DPP (off at inference)."""
        self.add_layer("dropout", p=p)

    def add_normalization_layer(self) -> None:
        """Local response normalisation (TensorFlow's tf.nn.lrn defaults)."""
        self.add_layer("lrn")

    def add_skip_connection(self, downsampled: bool = False) -> None:
        """Residual connection, as in DPP: the first one marks the residual source, each later one adds it.

        The first ``add_skip_connection()`` only remembers the current activation (``downsampled`` has no effect
        there). Each later one adds the remembered activation to the current one and the sum becomes the next
        source. ``downsampled=True`` when exactly one halving lies in between: the residual then passes a 1x1
        convolution of stride 2 (no bias). Differing channels are matched by a 1x1 convolution as well.

        Raises:
            RuntimeError: before the input layer or after the output layer.
            TypeError: ``downsampled`` is not a bool.
            ValueError: the residual's size does not match the current activation's (after the halving for
                ``downsampled=True``).
        """
        self.add_layer("skip", downsampled=downsampled)

    def add_copy_connection(self, mode: str) -> None:
        """'save' remembers the current activation; 'load' concatenates the last saved one (U-Net)."""
        self._check_order(
            "copy_load" if isinstance(mode, str) and mode.strip().lower() == "load" else "copy_save"
        )
        mode = check_choice("mode", mode, ("save", "load"))
        self.add_layer(f"copy_{mode}")

    def add_paral_conv_block(self, filter_dimension_1: list[int], filter_dimension_2: list[int]) -> None:
        """Two parallel 'SAME' convolutions (relu) of the same input, concatenated along channels.

        Raises:
            RuntimeError: before the input layer or after the output layer (checked before the arguments).
            TypeError: a filter dimension that is not 4 ints (a list, tuple or 1-D numpy integer array).
            ValueError: a dimension < 1.
        """
        self.add_layer(
            "paral_conv", filter_dimension_1=filter_dimension_1, filter_dimension_2=filter_dimension_2
        )

    def add_output_layer(
        self, regularization_coefficient: float | None = None, output_size: int | None = None
    ) -> None:
        """1x1 convolution to 1 channel (binary) or one per class; output at the input's height and width.

        Args:
            regularization_coefficient: None, or this layer's own L2 coefficient (float >= 0) overriding
                ``set_regularization_coefficient`` (DPP accepted and ignored it for segmentation).
            output_size: must stay None: the channel count follows ``set_num_segmentation_classes`` (DPP raised
                for segmentation too, a RuntimeError where this is a ValueError; see docs/migrating.md).

        Raises:
            RuntimeError: before the input layer or after the output layer (checked before the arguments).
            ValueError: ``output_size`` is not None.
        """
        self.add_layer(
            "output", regularization_coefficient=regularization_coefficient, output_size=output_size
        )

    def use_predefined_model(self, model_name: str) -> None:
        """Declare a predefined architecture: 'u-net' or 'fcn-18' (case-insensitive)."""
        name = check_choice("model_name", model_name, tuple(PREDEFINED))
        if self._builder is not None:
            raise RuntimeError(
                "use_predefined_model() declares the whole network: call it instead of adding layers."
            )
        # The specs are computed (and the size checked) before any layer is added: nothing is half-declared.
        for spec in predefined_layer_specs(name, self._input_shape(), self._settings.patching):
            self.add_layer(**spec)

    # ================================================================== data (API.md section 5)
    def load_dataset_from_directory_with_segmentation_masks(
        self, dirname: str | os.PathLike, seg_dirname: str | os.PathLike, mask_suffix: str | None = None
    ) -> None:
        """Pair images in ``dirname`` with masks in ``seg_dirname`` (the same folder is allowed).

        By file name or name stem, else by one mask-name suffix for the whole folder (``001.png`` with
        ``001_mask.png``: ``_mask``, ``_masks``, ``_fg``, ``_label``, ``_labels``, ``_seg``, ``_gt``,
        ``_annotation``; photos may carry ``_rgb``, ``_img`` or ``_image``); the debug log says which.

        Args:
            dirname: folder of images.
            seg_dirname: folder of masks.
            mask_suffix: any other mask-name suffix (``'-m'`` for ``a-m.png`` beside ``a.jpg``); None finds it.

        Raises:
            FileNotFoundError: a folder does not exist.
            ValueError: an image without a mask or a mask without an image (named, with the suffix the names
                suggest), an empty folder, an ambiguous name or convention.
        """
        self.load_image_mask_folders(
            dirname, seg_dirname, ("dirname", "seg_dirname", "mask_suffix"), mask_suffix
        )

    def load_image_mask_folders(
        self,
        dirname: str | os.PathLike,
        seg_dirname: str | os.PathLike,
        arguments: tuple[str, ...] = ("dirname", "seg_dirname", "mask_suffix"),
        mask_suffix: str | None = None,
    ) -> None:
        """``load_dataset_from_directory_with_segmentation_masks`` with the folders' (and the suffix's) names in
        error messages chosen by the caller (the TOML config passes its own keys, e.g.
        ``("data.images", "data.masks", "data.mask_suffix")``).

        Raises:
            FileNotFoundError, ValueError: as ``load_dataset_from_directory_with_segmentation_masks``.
        """
        pairing = pair_folders(dirname, seg_dirname, arguments, mask_suffix)
        self._data = TrainingData(pairing.pairs, pairing.skipped, log=self._log)
        self._log(
            f"Found {len(pairing.pairs)} image/mask pairs in '{dirname}' and '{seg_dirname}', paired by "
            f"{pairing.convention}"
            + (f" ({pairing.skipped} non-image entries skipped)" if pairing.skipped else "")
        )

    def _subset(self, names: list[str]) -> InMemoryData | None:
        return self._data.subset(names, self._settings, self._save_dir)

    # ================================================================== network and state
    def _specs(self) -> list[dict[str, Any]]:
        if self._builder is None or not self._builder.finished:
            raise RuntimeError(
                "The network is not complete: add an input layer, layers, then add_output_layer()."
            )
        return self._builder.specs

    def _out_channels(self) -> int:
        return 1 if self._settings.binary else self._settings.num_classes

    def _build_network(self, partial: bool = False) -> SegmentationNetwork:
        """The network, built (and loaded from ``load_from_saved``) on first use.

        Args:
            partial: allow a network without output layer (``forward_pass`` only); training, saving and
                loading weights still need a complete one.
        """
        if not partial or self._load_from is not None:
            self._specs()  # "The network is not complete" unless it is
        elif self._builder is None:
            raise RuntimeError("There is no network yet: add an input layer and layers first.")
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
        specs = self._builder.specs
        if self._load_from is not None:
            # One save's architecture and weights, never those of two runs (state.read_state_files).
            arch, _, saved_weights = state.read_state_files(self._load_from, with_settings=False)
            state.check_architecture(arch["layers"], specs, self._load_from)
            # A state saved before DPP's skip rule keeps its own rule, so it computes what it computed.
            self._skip_semantics = state.skip_semantics_of(arch)
        network = SegmentationNetwork(
            specs, self._input_shape(), self._out_channels(), self._skip_semantics, complete=not partial
        )
        generator = torch.Generator().manual_seed(s.random_seed) if s.random_seed is not None else None
        initialize_weights(network, s.weight_initializer, generator)
        if self._load_from is not None:
            path = self._load_from / state.WEIGHTS
            state.load_state_dict_checked(network, saved_weights, path)
            self._log(f"Loaded weights from '{path}'")
        self._network = network
        return network

    def save_state(self, directory: str | os.PathLike | None = None) -> Path:
        """Write weights (safetensors), architecture and settings (JSON) to ``directory`` (default save_dir)."""
        directory = Path(directory) if directory is not None else self._save_dir
        network = self._build_network()
        state.save_state_files(
            directory,
            state.architecture_record(
                self._specs(), self._input_shape(), self._out_channels(), self._settings, self._skip_semantics
            ),
            self._settings.to_dict(),
            network,
            {"format": "pt", "library": "deepplantphenomics"},
        )
        return directory

    # ================================================================== training (API.md section 6)
    def _check_ready_to_train(self) -> None:
        if self._data is None:
            raise RuntimeError(
                "No data: call load_dataset_from_directory_with_segmentation_masks(dirname, seg_dirname) first."
            )
        if self._settings.image_height is None:
            raise RuntimeError(
                "Call set_image_dimensions(image_height, image_width, image_depth) before training."
            )
        self._specs()

    def begin_training(self, return_test_loss: bool = False, resume: bool = False) -> float | None:
        """Train for the set number of epochs, save the state, then evaluate on the test split.

        Args:
            return_test_loss: return the test loss instead of None.
            resume: continue from the checkpoint in save_dir (same data and settings).

        Returns:
            The test loss when ``return_test_loss``, else None.

        Raises:
            TrainingInterrupted: Ctrl-C (SIGINT) or SIGTERM stopped training; the batch under way was finished and
                the state saved in save_dir first. A ``KeyboardInterrupt``, as in Keras: a script that does not
                catch it stops (exit status 1) instead of going on as if training had finished;
                ``begin_training(resume=True)`` continues the run.
            RuntimeError: another training run is using save_dir.
        """
        check_bool("return_test_loss", return_test_loss)
        check_bool("resume", resume)
        self._check_ready_to_train()
        if resume and not (self._save_dir / state.CHECKPOINT).is_file():
            raise FileNotFoundError(
                f"Cannot resume: no checkpoint at '{self._save_dir / state.CHECKPOINT}'. "
                "Train with save_checkpoints=True (the default) first, or interrupt a run with Ctrl-C."
            )
        self._device = prepare_training_devices(self._settings)
        with hold_save_dir(self._save_dir):  # one training run per save_dir at a time
            return self._train_and_test(return_test_loss, resume)

    def _train_and_test(self, return_test_loss: bool, resume: bool) -> float | None:
        """begin_training() once the save_dir is this run's."""
        split = self._data.split = self._data.resolve_split(self._settings, self._save_dir)
        train = self._subset(split["train"])
        validation = self._subset(split["validation"])
        self._log(
            f"Training on {len(train)} {'patches' if self._settings.patching else 'images'} for "
            f"{self._settings.maximum_training_epochs} epochs (batch size {self._settings.batch_size}, "
            f"device {self._device})"
        )
        if self._batches_per_decay is not None:
            self._settings.epochs_per_decay = epochs_per_decay(
                self._batches_per_decay, len(train), self._settings.batch_size, self._log
            )
        if resume:
            self._adopt_saved_skip_semantics(self._save_dir)
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
        try:
            run.run()
        finally:  # also when interrupted: `history` holds the epochs that were completed
            self.history = run.history
            self._global_step = run.global_step
        self._log(f"Training finished; state saved to '{self._save_dir}'")
        if not split["test"]:
            self._log("No test split (set_test_split(0)): skipping the test evaluation")
            return None
        metrics = self.compute_full_test_accuracy()
        return metrics["loss"] if return_test_loss else None

    def _adopt_saved_skip_semantics(self, directory: Path) -> None:
        """Resuming a run saved under the older skip rule continues it under that rule."""
        path = directory / state.ARCHITECTURE
        if self._load_from is None and path.is_file():
            semantics = state.skip_semantics_of(state.read_json(path))
            if semantics != self._skip_semantics:
                self._skip_semantics = semantics
                self._network = None

    def compute_full_test_accuracy(self) -> dict[str, Any]:
        """Evaluate on the test split: loss, pixel accuracy, IoU and Dice (per class for multi-class).

        Returns:
            The metrics dict (also printed).
        """
        self._check_ready_to_train()
        split = self._data.split or self._data.resolve_split(self._settings, self._save_dir)
        test = self._subset(split["test"])
        if test is None:
            raise RuntimeError("There is no test split: set_test_split(r) with r > 0 and train again.")
        network = prepare_module(self._build_network(), self._device)
        self.test_metrics = evaluate_test_split(
            network, test, self._settings, self._device, self._tensorboard_dir, self._global_step
        )
        return self.test_metrics

    # ================================================================== inference
    def forward_pass_with_file_inputs(
        self, images: list[str | os.PathLike] | str | os.PathLike, recursive: bool = False
    ) -> np.ndarray:
        """Probabilities for image files.

        Args:
            images: image file paths; a folder stands for its image files, sorted.
            recursive: folders also give the image files of their sub-folders.

        Returns:
            float32 (N, H, W, 1) foreground probabilities for binary models, (N, H, W, C) class probabilities for
            multi-class; H, W = the network size, or each image's own size with a patch size (a list of arrays
            when those sizes differ).
        """
        return stack_or_list(self._predict(images, "images", recursive))

    def forward_pass_with_interpreted_outputs(
        self,
        x: list[str | os.PathLike] | str | os.PathLike,
        threshold: float | str | None = None,
        recursive: bool = False,
    ) -> np.ndarray:
        """Masks for image files ``x`` (DPP's argument name).

        Args:
            x: Image files; a folder stands for its image files, sorted.
            threshold: Binary models only. None (default) applies DPP's rule: each probability map is
                stretched to its own [min, max] range and cut at the middle, so an under-trained model that
                is not yet confident (every p < 0.5) still gives masks, but an image with no plant at all
                still gets some foreground. A float t in (0, 1) cuts at ``p > t`` (0.5 suits images that
                may hold no plant); 'otsu' uses Otsu's threshold of each map.
            recursive: folders also give the image files of their sub-folders.

        Returns:
            uint8 (N, H, W): 0/255 for binary models, class indices (arg-max) for multi-class ones.

        Raises:
            TypeError, ValueError: ``threshold`` is not None, 'otsu' or a float in (0, 1).
        """
        threshold = check_mask_threshold("threshold", threshold)
        return stack_or_list([interpret(p, threshold) for p in self._predict(x, "x", recursive)])

    def _predict(
        self, images: list[str | os.PathLike] | str | os.PathLike, argument: str, recursive: bool
    ) -> list[np.ndarray]:
        """Per-file probabilities; under torchrun each rank predicts its share and all ranks get every result."""
        files = check_files(images, argument, recursive)
        if distributed.initialize() and self._device.type == "cpu":
            self._device = choose_device(self._settings)
        network = prepare_module(self._build_network(), self._device)
        mine = predict_files(network, distributed.shard(files), self._settings, self._device, log=self._log)
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

    def forward_pass(
        self, x: np.ndarray | torch.Tensor, deterministic: bool = False, moderation_features: None = None
    ) -> np.ndarray | torch.Tensor:
        """The network on a batch that is already preprocessed, as DPP's ``forward_pass`` on a graph tensor.

        Nothing is resized or standardised here (``forward_pass_with_file_inputs`` does that for files).

        Args:
            x: float (N, H, W, C) batch, channels last as in DPP, C = the image depth; a numpy array or a torch
                tensor. A tensor keeps its autograd graph, so the output can be trained through.
            deterministic: True for inference behaviour (dropout off, batch norm with its moving averages);
                False, DPP's default, runs them in training mode (batch statistics, which also update the
                moving averages).
            moderation_features: must be None (moderation layers do not exist for segmentation).

        Returns:
            Logits (N, H, W, K), K = 1 for binary models and the class count otherwise, of the type of ``x``
            (a tensor on the network's device). On a network without output layer yet (as DPP allowed, to
            inspect intermediate activations) the last layer's activations (N, h, w, C), at that layer's own
            size; training and saving still need the output layer.

        Raises:
            TypeError: ``x`` is neither a numpy array nor a tensor.
            ValueError: ``x`` is not 4-D with C channels.
            RuntimeError: there is no input layer yet, or a partial network with ``load_from_saved`` (the saved
                weights belong to the complete network).
            NotImplementedError: ``moderation_features`` is given.
        """
        check_bool("deterministic", deterministic)
        if moderation_features is not None:
            raise NotImplementedError(
                "forward_pass(moderation_features=...): moderation features feed DPP's fully connected layers, "
                "which semantic segmentation networks do not have; leave it None."
            )
        is_numpy = isinstance(x, np.ndarray)
        if not is_numpy and not isinstance(x, torch.Tensor):
            raise TypeError(
                "Invalid value for argument `x`: expected a numpy array or torch tensor of shape (N, H, W, C), "
                f"received {type(x).__name__}."
            )
        depth = self._settings.image_depth
        if x.ndim != 4 or (depth is not None and x.shape[-1] != depth):
            raise ValueError(
                f"Invalid value for argument `x`: expected a batch of shape (N, H, W, {depth or 'C'}) (channels "
                f"last), received shape {tuple(x.shape)}."
            )
        network = self._build_network(partial=True)
        device = next(network.parameters(), torch.empty(0)).device
        batch = torch.from_numpy(np.ascontiguousarray(x)) if is_numpy else x
        batch = batch.to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
        was_training = network.training
        network.train(not deterministic)
        try:
            with torch.no_grad() if is_numpy else contextlib.nullcontext():
                out = network(batch).permute(0, 2, 3, 1)
        finally:
            network.train(was_training)
        return out.cpu().numpy() if is_numpy else out

    def load_state(self) -> None:
        """Load the weights from the ``load_from_saved`` folder into the declared network (DPP's ``load_state``).

        Training and forward passes load them on their own; this only makes it happen now, so a mismatch
        between the saved and the declared layers shows here.

        Raises:
            RuntimeError: the model was made without ``load_from_saved``, or its network is not complete.
            ValueError: the declared layers differ from the saved ones (the first differing layer is named).
        """
        if self._load_from is None:
            raise RuntimeError(
                "load_state() loads the folder given as `load_from_saved`, and this model was made without one: "
                "pass SemanticSegmentationModel(load_from_saved='saved_state'), or use dpp.load_model(directory)."
            )
        self._network = None
        self._build_network()

    def begin_training_with_hyperparameter_search(
        self,
        l2_reg_limits: list[float] | None = None,
        lr_limits: list[float] | None = None,
        num_steps: int = 3,
    ) -> np.ndarray:
        """Grid search over L2 coefficient and learning rate, as DPP's: one full training per grid point.

        Each run starts from freshly initialised weights (the same ones with ``set_random_seed``), or from
        ``load_from_saved``, on the same saved split, and its test loss is recorded; a run that raises records
        NaN. The grid is logged with ``debug=True``. Afterwards the model holds the last run's network and
        ``save_dir`` its state (as in DPP); the learning rate and coefficient are restored.

        Args:
            l2_reg_limits: None (keep ``set_regularization_coefficient``) or [low, high], floats >= 0.
            lr_limits: None (keep ``set_learning_rate``) or [low, high], floats > 0.
            num_steps: int >= 1, grid points per given range, evenly spaced from low to high.

        Returns:
            float (len(l2 values), len(learning rates)) array of test losses (beyond DPP, which returned None).

        Raises:
            RuntimeError: there is no test split to compare the runs on, no data, or no complete network.
        """
        steps = check_int("num_steps", num_steps)
        s = self._settings
        l2_values = search_values("l2_reg_limits", l2_reg_limits, s.regularization_coefficient, steps, True)
        lr_values = search_values("lr_limits", lr_limits, s.learning_rate, steps, False)
        if s.test_split == 0:
            raise RuntimeError(
                "The hyperparameter search compares test losses: set_test_split(r) with r > 0 first."
            )
        self._check_ready_to_train()  # missing data or layers fail now, not as a grid of NaNs
        saved = (s.learning_rate, s.regularization_coefficient, self._tensorboard_dir)

        def train(l2: float, lr: float) -> float | None:
            s.learning_rate, s.regularization_coefficient = lr, l2
            if saved[2] is not None:
                self._tensorboard_dir = str(Path(saved[2]) / f"lr_{lr:g}_l2_{l2:g}")
            self._network = None  # a fresh start for every grid point
            return self.begin_training(return_test_loss=True)

        try:
            return grid_search(l2_values, lr_values, train, self._log)
        finally:
            s.learning_rate, s.regularization_coefficient, self._tensorboard_dir = saved

    # ------------------------------------------------------------ DPP methods that do not apply to segmentation
    def add_fully_connected_layer(
        self,
        output_size: int,
        activation_function: str | None,
        regularization_coefficient: float | None = None,
    ) -> None:
        """Not available: a fully connected layer flattens the image away.

        Raises:
            NotImplementedError: always, naming the per-pixel equivalent.
        """
        raise NotImplementedError(
            "add_fully_connected_layer() flattens the image, so a segmentation network cannot use it; the per-pixel "
            "equivalent is a 1x1 convolution: add_convolutional_layer(filter_dimension=[1, 1, 0, output_size], "
            "stride_length=1, activation_function=...)."
        )

    def add_global_average_pooling_layer(self) -> None:
        """Not available: it collapses every channel to one value, leaving nothing to segment.

        Raises:
            NotImplementedError: always, naming what to use instead.
        """
        raise NotImplementedError(
            "add_global_average_pooling_layer() collapses the image to 1x1, which a segmentation network cannot "
            "use; downsample with add_pooling_layer(kernel_size, stride_length, pooling_type='avg') instead."
        )

    def add_moderation_layer(self) -> None:
        """Not available: DPP's moderation features join fully connected layers (classification/regression).

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            "add_moderation_layer(): moderation features join DPP's fully connected layers (classification and "
            "regression models); semantic segmentation networks have none."
        )

    def add_moderation_features(self, moderation_features: Any) -> None:
        """Not available, see ``add_moderation_layer``.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            "add_moderation_features(): moderation features join DPP's fully connected layers (classification "
            "and regression models); semantic segmentation networks have none."
        )

    def load_images_from_list(self, image_files: list[str | os.PathLike]) -> None:
        """Not available: DPP loaded unlabelled images this way; here they go straight to a forward pass.

        Raises:
            NotImplementedError: always, naming the methods to use.
        """
        raise NotImplementedError(
            "load_images_from_list() loads images without masks, which segmentation cannot train on: predict "
            "them with forward_pass_with_file_inputs(images) or forward_pass_with_interpreted_outputs(x), and "
            "load training data with load_dataset_from_directory_with_segmentation_masks(dirname, seg_dirname)."
        )

    def __getattr__(self, name: str) -> Any:
        # Only reached for missing attributes: a DPP method of another problem type gets a message saying so.
        if name in _OTHER_PROBLEM_TYPE_METHODS:
            raise AttributeError(
                f"'SemanticSegmentationModel' has no method '{name}': in Deep Plant Phenomics it belongs to "
                "classification, regression, object detection or counting models, and this package implements "
                "semantic segmentation only (load data with load_dataset_from_directory_with_segmentation_masks)."
            )
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def shut_down(self) -> None:
        """Release the network and cached data (safe to call twice)."""
        self._network = None
        self._changed()
        self._closed = True

    # ================================================================== loading without re-declaration
    @classmethod
    def from_saved_state(cls, directory: str | os.PathLike, debug: bool = False) -> SemanticSegmentationModel:
        """Rebuild a trained model from its state directory alone (see ``dpp.load_model``)."""
        directory = Path(directory)
        saved = state.read_saved_state(directory)
        model = cls(debug=debug, save_dir=directory, save_checkpoints=False)
        model._settings = saved.settings
        model._skip_semantics = saved.skip_semantics
        model._builder = NetworkBuilder(saved.input_shape, saved.skip_semantics)
        for spec in saved.layers:
            model._builder.add(spec)
        network = SegmentationNetwork(
            saved.layers, saved.input_shape, saved.out_channels, saved.skip_semantics
        )
        state.load_state_dict_checked(network, saved.weights, directory / state.WEIGHTS)
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
