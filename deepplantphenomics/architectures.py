"""Predefined architectures for ``use_predefined_model('u-net' | 'fcn-18')``.

Each architecture is declared with the model's own public ``add_*`` methods, input layer first and output layer
last, so the result is an ordinary layer list: it prints its shapes with ``debug=True``, is checked by the same
builder, and saves, loads (``dpp.load_model``) and resumes like a network declared by hand.

Widths. DPP declared both networks with 64 to 1024 channels (the paper widths of U-Net). That is ~31 million
weights and far too slow to train on a CPU, which is where most plant scientists run this library. Both
networks here use 16-32-64-128 channels over the four levels and 256 at the bottom (1/4 of DPP's widths,
~1.9 million weights for U-Net): on one CPU core a 256x256 training patch takes a fraction of a second, and on
CWFID crop/weed segmentation this width reaches the accuracy recorded in ``docs/multiclass.md``. Anyone who needs
the paper widths can declare them layer by layer with the same calls used below.

Sizes. Four 2x2 poolings divide the input by 16. U-Net concatenates each decoder level with the encoder
activation of the same size, so its input height and width (the patch size when patching) must be multiples of
16; the check below says so before any layer is added. FCN-18 has no copy connections: its 'SAME' poolings
round odd sizes up, the upsampled output is resized back to the input size by the network, so it accepts any
size (multiples of 16 avoid that final resize).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepplantphenomics.model import SemanticSegmentationModel

__all__ = ["FCN18_WIDTHS", "PREDEFINED", "UNET_WIDTHS", "declare"]

PREDEFINED: tuple[str, ...] = ("u-net", "fcn-18")

# Channels per encoder level; the last entry is the bottleneck (the level below the fourth pooling).
UNET_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256)
FCN18_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256)

_DOWNSAMPLINGS = 4  # 2x2 poolings in both networks


def _conv(model: SemanticSegmentationModel, out_channels: int, in_channels: int) -> None:
    """3x3 'SAME' convolution + batch norm + relu, the building block of both networks."""
    model.add_convolutional_layer(
        filter_dimension=[3, 3, in_channels, out_channels],
        stride_length=1,
        activation_function="relu",
        batch_norm=True,
    )


def _declare_unet(model: SemanticSegmentationModel, widths: tuple[int, ...]) -> None:
    """U-Net (Ronneberger et al., 2015): contracting path, bottleneck, expanding path with copy connections.

    Per encoder level: two 3x3 conv + BN + relu, 'save' the activation, 2x2 max pooling. Bottleneck: two
    3x3 convs. Per decoder level: a 2x2 transposed convolution (upsampling x2, relu, as in DPP) to the level's
    width, 'load' (concatenate the saved encoder activation), two 3x3 convs. Then the 1x1 output layer.
    """
    channels = model.settings.image_depth
    model.add_input_layer()
    for width in widths[:-1]:
        _conv(model, width, channels)
        _conv(model, width, width)
        model.add_copy_connection("save")
        model.add_pooling_layer(kernel_size=2, stride_length=2, pooling_type="max")
        channels = width
    _conv(model, widths[-1], channels)
    _conv(model, widths[-1], widths[-1])
    channels = widths[-1]
    for width in reversed(widths[:-1]):
        model.add_upsampling_layer(
            filter_size=2, num_filters=width, upscale_factor=2, activation_function="relu"
        )
        model.add_copy_connection("load")
        _conv(model, width, 2 * width)
        _conv(model, width, width)
        channels = width
    model.add_output_layer()


def _declare_fcn18(model: SemanticSegmentationModel, widths: tuple[int, ...]) -> None:
    """FCN-18 as DPP defined it, made residual in the ResNet way and batch-normalised.

    DPP's 'fcn-18' (``use_predefined_model`` in DPP's ``deepplantpheno.py``) has 18 convolutions: four encoder
    levels of two 3x3 convs and a 2x2 max pooling, each followed by a skip connection, two 3x3 convs at the
    bottom, then four decoder levels of a 2x2 transposed convolution (relu) and two 3x3 convs, without copy
    connections (a plain fully convolutional network, unlike U-Net). Skip connections follow DPP's rule: the
    first (after level one) only marks the residual source, and each later one, ``downsampled=True``, adds the
    activation of the previous skip point brought to the new size and width by a stride-2 1x1 projection, a
    ResNet projection shortcut around levels two to four. The first is declared ``downsampled=True`` as well
    (it does nothing on a marker) so that FCN-18 states saved under the earlier rule, where it added a
    projection of the input, match this declaration and load with their own rule. Batch norm follows every
    convolution (DPP had none) because a residual network trained from scratch with small batches is much
    steadier with it.
    """
    channels = model.settings.image_depth
    model.add_input_layer()
    for width in widths[:-1]:
        _conv(model, width, channels)
        _conv(model, width, width)
        model.add_pooling_layer(kernel_size=2, stride_length=2, pooling_type="max")
        model.add_skip_connection(downsampled=True)
        channels = width
    _conv(model, widths[-1], channels)
    _conv(model, widths[-1], widths[-1])
    for width in reversed(widths[:-1]):
        model.add_upsampling_layer(
            filter_size=2, num_filters=width, upscale_factor=2, activation_function="relu"
        )
        _conv(model, width, width)
        _conv(model, width, width)
    model.add_output_layer()


def _check_unet_size(model: SemanticSegmentationModel) -> None:
    channels, height, width = model.input_shape
    factor = 2**_DOWNSAMPLINGS
    if height % factor or width % factor:
        where = "set_patch_size" if model.settings.patching else "set_image_dimensions"
        raise ValueError(
            f"use_predefined_model('u-net') needs an input height and width that are multiples of {factor} "
            f"(it pools {_DOWNSAMPLINGS} times and concatenates each level with the same-sized encoder "
            f"activation), received {height}x{width}. Choose sizes such as "
            f"{max(factor, height // factor * factor)}x{max(factor, width // factor * factor)} with {where}, "
            "or use 'fcn-18', which accepts any size."
        )


def declare(model: SemanticSegmentationModel, name: str) -> None:
    """Declare a predefined architecture on ``model`` with its public ``add_*`` methods.

    Args:
        model: a ``SemanticSegmentationModel`` with image dimensions (and, when patching, a patch size) set and
            no layers yet.
        name: canonical (lower-case) name, one of :data:`PREDEFINED`.

    Raises:
        ValueError: unknown name, or 'u-net' with an input size that is not a multiple of 16.
        RuntimeError: image dimensions not set yet (raised by ``add_input_layer``).
    """
    if name not in PREDEFINED:
        raise ValueError(
            f"Invalid value for argument `model_name`: expected one of {list(PREDEFINED)}, received {name!r}."
        )
    if name == "u-net":
        _check_unet_size(model)
        _declare_unet(model, UNET_WIDTHS)
    else:
        _ = model.input_shape  # raises the usual "set_image_dimensions first" error before any layer is added
        _declare_fcn18(model, FCN18_WIDTHS)
