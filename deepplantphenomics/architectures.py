"""Predefined architectures for ``use_predefined_model('u-net' | 'fcn-18')``.

Each architecture is a list of layer specs (``{"kind": ..., **arguments}``, input layer first, output layer last)
computed from the input shape alone; ``use_predefined_model`` declares them one by one with
``SemanticSegmentationModel.add_layer(**spec)``, so the result is an ordinary layer list: it prints its shapes with
``debug=True``, is checked by the same builder, and saves, loads (``dpp.load_model``) and resumes like a network
declared by hand. This module knows nothing of the model.

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

from typing import Any

from deepplantphenomics.layers import Shape

__all__ = ["FCN18_WIDTHS", "PREDEFINED", "UNET_WIDTHS", "predefined_layer_specs", "vegetation_layer_specs"]

PREDEFINED: tuple[str, ...] = ("u-net", "fcn-18")

# Channels per encoder level; the last entry is the bottleneck (the level below the fourth pooling).
UNET_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256)
FCN18_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256)

_DOWNSAMPLINGS = 4  # 2x2 poolings in both networks

Spec = dict[str, Any]


def conv(in_channels: int, out_channels: int, stride: int = 1, epsilon: float = 1e-5) -> Spec:
    """3x3 'SAME' convolution + batch norm + relu, the building block of the predefined networks."""
    return {
        "kind": "conv",
        "filter_dimension": [3, 3, in_channels, out_channels],
        "stride_length": stride,
        "activation_function": "relu",
        "padding": None,
        "batch_norm": True,
        "use_bias": True,
        "epsilon": epsilon,
        "decay": 0.9,
    }


def max_pool() -> Spec:
    """2x2 max pooling of stride 2."""
    return {"kind": "pool", "kernel_size": 2, "stride_length": 2, "pooling_type": "max"}


def upsample(width: int) -> Spec:
    """2x2 transposed convolution doubling height and width (relu, as in DPP)."""
    return {
        "kind": "upsample",
        "filter_size": 2,
        "num_filters": width,
        "upscale_factor": 2,
        "activation_function": "relu",
        "use_bias": True,
    }


def _unet(channels: int, widths: tuple[int, ...]) -> list[Spec]:
    """U-Net (Ronneberger et al., 2015): contracting path, bottleneck, expanding path with copy connections.

    Per encoder level: two 3x3 conv + BN + relu, 'save' the activation, 2x2 max pooling. Bottleneck: two
    3x3 convs. Per decoder level: a 2x2 transposed convolution (upsampling x2, relu, as in DPP) to the level's
    width, 'load' (concatenate the saved encoder activation), two 3x3 convs. Then the 1x1 output layer.
    """
    specs: list[Spec] = [{"kind": "input"}]
    for width in widths[:-1]:
        specs += [conv(channels, width), conv(width, width), {"kind": "copy_save"}, max_pool()]
        channels = width
    specs += [conv(channels, widths[-1]), conv(widths[-1], widths[-1])]
    for width in reversed(widths[:-1]):
        specs += [upsample(width), {"kind": "copy_load"}, conv(2 * width, width), conv(width, width)]
    return specs + [{"kind": "output"}]


def _fcn18(channels: int, widths: tuple[int, ...]) -> list[Spec]:
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
    specs: list[Spec] = [{"kind": "input"}]
    for width in widths[:-1]:
        specs += [
            conv(channels, width),
            conv(width, width),
            max_pool(),
            {"kind": "skip", "downsampled": True},
        ]
        channels = width
    specs += [conv(channels, widths[-1]), conv(widths[-1], widths[-1])]
    for width in reversed(widths[:-1]):
        specs += [upsample(width), conv(width, width), conv(width, width)]
    return specs + [{"kind": "output"}]


def _check_unet_size(input_shape: Shape, patching: bool) -> None:
    _, height, width = input_shape
    factor = 2**_DOWNSAMPLINGS
    if height % factor or width % factor:
        where = "set_patch_size" if patching else "set_image_dimensions"
        raise ValueError(
            f"use_predefined_model('u-net') needs an input height and width that are multiples of {factor} "
            f"(it pools {_DOWNSAMPLINGS} times and concatenates each level with the same-sized encoder "
            f"activation), received {height}x{width}. Choose sizes such as "
            f"{max(factor, height // factor * factor)}x{max(factor, width // factor * factor)} with {where}, "
            "or use 'fcn-18', which accepts any size."
        )


def predefined_layer_specs(name: str, input_shape: Shape, patching: bool = False) -> list[Spec]:
    """The layer specs of a predefined architecture for a network input of ``input_shape``.

    Args:
        name: canonical (lower-case) name, one of :data:`PREDEFINED`.
        input_shape: (channels, height, width) the network is fed (``SemanticSegmentationModel.input_shape``).
        patching: the input is a training patch (only changes which setter a size error names).

    Returns:
        Specs ``{"kind": ..., **arguments}``, input layer first: ``add_layer(**spec)`` declares each.

    Raises:
        ValueError: unknown name, or 'u-net' with an input size that is not a multiple of 16.
    """
    if name not in PREDEFINED:
        raise ValueError(
            f"Invalid value for argument `model_name`: expected one of {list(PREDEFINED)}, received {name!r}."
        )
    if name == "u-net":
        _check_unet_size(input_shape, patching)
        return _unet(input_shape[0], UNET_WIDTHS)
    return _fcn18(input_shape[0], FCN18_WIDTHS)


def vegetation_layer_specs(
    widths: tuple[int, ...] = (16, 32, 64, 96), head: int = 8, epsilon: float = 1e-3, channels: int = 3
) -> list[Spec]:
    """The network of the shipped vegetation tool (``train_vegetation.py``, docs/vegetation.md).

    The first convolution has stride 2 and no other convolution runs at the input resolution: that level
    only gets a transposed convolution, the input image itself (copy connection) and one light 3x3 block,
    which keeps CPU inference cheap while edges stay at input resolution. Below it, four levels of
    (conv, conv) with max pooling, ``widths`` channels, and a mirrored decoder with copy connections.

    Args:
        widths: encoder channels per level (the last is the bottom level); the decoder mirrors them.
        head: channels of the last block, at input resolution.
        epsilon: the batch norms' epsilon (the shipped weights were trained with DPP's 1e-3).
        channels: input channels.
    """
    specs: list[Spec] = [{"kind": "input"}, {"kind": "copy_save"}]  # the image itself feeds the last block
    specs.append(conv(channels, widths[0], stride=2, epsilon=epsilon))
    previous = widths[0]
    for level, width in enumerate(widths[:-1]):
        specs.append(conv(previous, width, epsilon=epsilon))
        specs += [conv(width, width, epsilon=epsilon)] if level else []
        specs += [{"kind": "copy_save"}, max_pool()]
        previous = width
    specs += [conv(widths[-2], widths[-1], epsilon=epsilon), conv(widths[-1], widths[-1], epsilon=epsilon)]
    for width in reversed(widths[:-1]):
        specs += [upsample(width), {"kind": "copy_load"}, conv(2 * width, width, epsilon=epsilon)]
    specs += [upsample(head), {"kind": "copy_load"}, conv(head + channels, head, epsilon=epsilon)]
    return specs + [{"kind": "output"}]
