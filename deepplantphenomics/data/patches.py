"""Automatic image patching: train on tiles of large images, infer tile by tile and stitch without seams.

``set_patch_size(height, width)`` lets a network built for small inputs work on full-resolution images. For
training, each image is cut into patches that cover every pixel (:func:`extract_training_patches`). For
inference, :func:`predict_tiled` runs the network on overlapping tiles and blends the overlaps with a smooth
window (:func:`blend_window`): a plain cut-and-paste would leave visible seams where the zero padding of the
network's convolutions changes the prediction near every tile edge, while blending lets the tile whose centre
is nearer a pixel dominate there.

Both accept any image size: tiles are placed by :func:`tile_starts` so that the last tile ends exactly at the
border (no pixel lost, none predicted twice without blending), and an image smaller than a tile is padded up
to the tile and the result cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepplantphenomics.settings import check_int
from deepplantphenomics.validation import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "blend_window", "extract_training_patches", "predict_tiled", "tile_starts"]

# Keeps every pixel's blending weight positive, so pixels on the image border (covered by the edge of a
# single tile, where a raised cosine would be ~0) are still normalised by a non-zero weight.
_WINDOW_FLOOR = 1e-3
# Rows whose blending weights `predict_tiled` sums at a time when it finishes them (a small temporary).
_FINISH_ROWS = 32


def _check_overlap(overlap: Any, tile: int, tile_argument: str) -> int:
    overlap = check_int("overlap", overlap, minimum=0)
    if overlap >= tile:
        raise ValueError(
            f"Invalid value for argument `overlap`: expected an int in [0, {tile_argument}) = [0, {tile}), "
            f"received {overlap!r}."
        )
    return overlap


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)`` with neighbours sharing at least ``overlap`` pixels.

    The first tile starts at 0 and the last ends exactly at ``length``; the tiles in between are spread
    evenly, so the overlaps differ by at most one pixel instead of the last one being much larger.

    Args:
        length: Size of the image along one axis (pixels).
        tile: Size of a tile along that axis (pixels).
        overlap: Minimum number of pixels shared by neighbouring tiles, in ``[0, tile)``.

    Returns:
        Sorted start offsets. ``[0]`` when ``length <= tile`` (the caller pads the image up to ``tile``).

    Raises:
        TypeError: An argument is not an int.
        ValueError: ``length`` or ``tile`` is not positive, or ``overlap`` is outside ``[0, tile)``.
    """
    length = check_int("length", length)
    tile = check_int("tile", tile)
    overlap = _check_overlap(overlap, tile, "tile")
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    span = length - tile
    # Floor of i * span / (count - 1): gaps are <= ceil(span / (count - 1)) <= stride, so every overlap is
    # at least `overlap`, and the last start is exactly `span`.
    return [i * span // (count - 1) for i in range(count)]


def extract_training_patches(
    image: np.ndarray, mask: np.ndarray, patch_height: int, patch_width: int, overlap: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cut an image and its mask into patches that together cover every pixel.

    Patches are laid out on the grid of :func:`tile_starts` in each direction (row-major order), so the last
    row and column of patches are aligned to the image border. An image smaller than a patch in a direction
    is padded at the bottom/right: the image with zeros, the mask with ``IGNORE_INDEX`` (255) so that the
    padding is not learnt as background.

    Args:
        image: Array (H, W, C) of any dtype.
        mask: Array (H, W) of class indices or 0/1 labels; a bool mask is returned as uint8.
        patch_height: Patch height in pixels.
        patch_width: Patch width in pixels.
        overlap: Minimum number of pixels shared by neighbouring patches, smaller than both patch sizes.

    Returns:
        ``(image_patches, mask_patches)``: arrays (P, patch_height, patch_width, C) with ``image``'s dtype
        and (P, patch_height, patch_width) with ``mask``'s dtype (uint8 for a bool mask).

    Raises:
        TypeError: ``image`` or ``mask`` is not a numpy array, or a size is not an int.
        ValueError: Wrong number of dimensions, image/mask size mismatch, or an out-of-range size/overlap.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"Invalid value for argument `image`: expected a numpy array, received {type(image).__name__}."
        )
    if not isinstance(mask, np.ndarray):
        raise TypeError(
            f"Invalid value for argument `mask`: expected a numpy array, received {type(mask).__name__}."
        )
    if image.ndim != 3:
        raise ValueError(
            f"Invalid value for argument `image`: expected an array of shape (H, W, C), received shape "
            f"{image.shape}."
        )
    if mask.ndim != 2:
        raise ValueError(
            f"Invalid value for argument `mask`: expected an array of shape (H, W), received shape "
            f"{mask.shape}."
        )
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"Invalid value for argument `mask`: expected the image's height and width {image.shape[:2]}, "
            f"received shape {mask.shape}."
        )
    patch_height = check_int("patch_height", patch_height)
    patch_width = check_int("patch_width", patch_width)
    overlap = _check_overlap(overlap, min(patch_height, patch_width), "min(patch_height, patch_width)")

    if mask.dtype == np.bool_:
        # A bool mask cannot hold IGNORE_INDEX; uint8 keeps 0/1 and the padding distinguishable.
        mask = mask.astype(np.uint8)

    height, width = mask.shape
    pad_h, pad_w = max(0, patch_height - height), max(0, patch_width - width)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="constant", constant_values=0)
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), mode="constant", constant_values=IGNORE_INDEX)
        height, width = mask.shape

    rows = tile_starts(height, patch_height, overlap)
    cols = tile_starts(width, patch_width, overlap)
    count = len(rows) * len(cols)
    image_patches = np.empty((count, patch_height, patch_width, image.shape[2]), dtype=image.dtype)
    mask_patches = np.empty((count, patch_height, patch_width), dtype=mask.dtype)
    index = 0
    for y in rows:
        for x in cols:
            image_patches[index] = image[y : y + patch_height, x : x + patch_width]
            mask_patches[index] = mask[y : y + patch_height, x : x + patch_width]
            index += 1
    return image_patches, mask_patches


def _window_1d(length: int) -> torch.Tensor:
    # Raised cosine sampled at pixel centres: symmetric, peaks in the middle, small but not zero at the ends.
    positions = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    return torch.sin(math.pi * positions) ** 2


def blend_window(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Weights for blending overlapping tiles: a separable raised-cosine window with a small floor.

    Args:
        height: Window height in pixels.
        width: Window width in pixels.
        device: Device of the returned tensor (default: CPU).

    Returns:
        Float32 tensor (height, width), at least ``1e-3`` everywhere, largest in the centre, symmetric.

    Raises:
        TypeError: ``height`` or ``width`` is not an int.
        ValueError: ``height`` or ``width`` is not positive.
    """
    height = check_int("height", height)
    width = check_int("width", width)
    window = torch.outer(_window_1d(height), _window_1d(width)).clamp_min(_WINDOW_FLOOR)
    return window.to(device=device, dtype=torch.float32)


def _pad_to(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (C, H, W) at the bottom/right up to (C, height, width): reflect where it fits, zeros otherwise."""
    batch = image.unsqueeze(0)
    pad_h, pad_w = max(0, height - image.shape[1]), max(0, width - image.shape[2])
    # Reflect padding needs pad < size along that axis; each axis is padded on its own so that one too-thin
    # axis does not force zero padding on the other.
    if pad_w:
        mode = "reflect" if pad_w < image.shape[2] else "constant"
        batch = F.pad(batch, (0, pad_w, 0, 0), mode=mode)
    if pad_h:
        mode = "reflect" if pad_h < image.shape[1] else "constant"
        batch = F.pad(batch, (0, 0, 0, pad_h), mode=mode)
    return batch.squeeze(0)


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    # float64 sums make the normalised blend of identical tile outputs round back to the exact float32
    # value (an identity predictor returns the image bit for bit); MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _check_tiled_inputs(predict: Any, prepare: Any, image: Any) -> None:
    if not callable(predict):
        raise TypeError(f"Invalid value for argument `predict`: expected a callable, received {predict!r}.")
    if prepare is not None and not callable(prepare):
        raise TypeError(f"Invalid value for argument `prepare`: expected a callable, received {prepare!r}.")
    if not isinstance(image, torch.Tensor) or (prepare is None and not image.is_floating_point()):
        received = image.dtype if isinstance(image, torch.Tensor) else type(image)
        raise TypeError(
            f"Invalid value for argument `image`: expected a floating-point torch.Tensor (or any tensor with "
            f"`prepare`), received {received}."
        )
    if image.ndim != 3:
        raise ValueError(
            f"Invalid value for argument `image`: expected a tensor of shape (C, H, W), received shape "
            f"{tuple(image.shape)}."
        )


def _check_tiling(
    tile_height: Any, tile_width: Any, batch_size: Any, overlap: Any
) -> tuple[int, int, int, int, int]:
    """(tile height, tile width, batch size, vertical overlap, horizontal overlap), checked; the overlap
    defaults to a quarter of the tile in each direction."""
    tile_height = check_int("tile_height", tile_height)
    tile_width = check_int("tile_width", tile_width)
    batch_size = check_int("batch_size", batch_size)
    if overlap is None:
        return tile_height, tile_width, batch_size, tile_height // 4, tile_width // 4
    overlap = _check_overlap(overlap, min(tile_height, tile_width), "min(tile sizes)")
    return tile_height, tile_width, batch_size, overlap, overlap


def _check_out(out: Any, image: torch.Tensor) -> None:
    _, height, width = image.shape
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        received = out.dtype if isinstance(out, torch.Tensor) else type(out)
        raise TypeError(
            f"Invalid value for argument `out`: expected a floating-point torch.Tensor, received {received}."
        )
    if out.ndim != 3 or tuple(out.shape[1:]) != (height, width) or out.device != image.device:
        raise ValueError(
            f"Invalid value for argument `out`: expected a tensor of shape (K, {height}, {width}) on "
            f"{image.device}, received shape {tuple(out.shape)} on {out.device}."
        )


def _check_tile_output(
    output: Any, tiles: torch.Tensor, count: int, tile_height: int, tile_width: int
) -> None:
    """``predict`` must map ``count`` tiles to a (count, K, tile_height, tile_width) tensor."""
    if (
        not isinstance(output, torch.Tensor)
        or output.ndim != 4
        or output.shape[0] != count
        or tuple(output.shape[2:]) != (tile_height, tile_width)
    ):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
        raise ValueError(
            f"Invalid value for argument `predict`: expected it to map a batch of shape "
            f"{tuple(tiles.shape)} to a tensor of shape ({count}, K, {tile_height}, "
            f"{tile_width}), received {shape}."
        )


class _TileBlender:
    """Accumulates windowed tile outputs in a band of ``tile_height`` rows and writes finished rows out.

    The band covers one row of tiles, not the whole image: tiles come row by row, so once the next row of tiles
    starts at y', every row above y' has all its contributions and is finished (divided and written to the
    result). Memory stays one band plus the result, whatever the image height; the sums per pixel are the same,
    in the same order, as with full-size accumulators. The weights need no accumulator: they depend on the tile
    positions only, and are summed again, in the same order, for the rows being finished (``weights_of_rows``).
    """

    def __init__(
        self,
        size: tuple[int, int],
        padded_width: int,
        tile_rows: list[int],
        tile_cols: list[int],
        tile: tuple[int, int],
        device: torch.device,
        out: torch.Tensor | None,
    ) -> None:
        self.height, self.width = size
        self.padded_width = padded_width
        self.tile_rows, self.tile_cols = tile_rows, tile_cols
        self.tile_height, self.tile_width = tile
        self.device = device
        self.acc_dtype = _accumulator_dtype(device)
        self.window = blend_window(*tile, device=device).to(self.acc_dtype)
        self.band_total: torch.Tensor | None = None
        self.result: torch.Tensor | None = out
        self.band_top = tile_rows[0]

    def add(self, output: torch.Tensor, positions: list[tuple[int, int]]) -> None:
        """Add the (B, K, h, w) ``output`` of the tiles at ``positions``, finishing the rows above a new row."""
        self._start_or_check(output)
        output = output.to(device=self.device, dtype=self.acc_dtype)
        for tile_output, (y, x) in zip(output, positions):
            if y != self.band_top:
                self.finish_rows(y)
                self.band_top = y
            self.band_total[:, :, x : x + self.tile_width] += tile_output * self.window

    def _start_or_check(self, output: torch.Tensor) -> None:
        """On the first batch, allocate the band (and the result unless ``out`` was given); afterwards, check
        that the channel count stays the same."""
        channels = output.shape[1]
        if self.band_total is None:
            if self.result is not None and self.result.shape[0] != channels:
                raise ValueError(
                    f"Invalid value for argument `out`: expected {channels} channels (the output of "
                    f"`predict`), received shape {tuple(self.result.shape)}."
                )
            self.band_total = torch.zeros(
                (channels, self.tile_height, self.padded_width), dtype=self.acc_dtype, device=self.device
            )
            if self.result is None:
                self.result = torch.empty(
                    (channels, self.height, self.width), dtype=output.dtype, device=self.device
                )
        elif channels != self.band_total.shape[0]:
            raise ValueError(
                f"Invalid value for argument `predict`: expected the same number of output channels for "
                f"every batch ({self.band_total.shape[0]}), received {channels}."
            )

    def weights_of_rows(self, top: int, count: int) -> torch.Tensor:
        """Summed windows of the tiles covering padded rows [top, top + count), added tile by tile in the order
        the tiles are accumulated (row of tiles by row, left to right), so the float sums are the same."""
        weights = torch.zeros((count, self.padded_width), dtype=self.acc_dtype, device=self.device)
        for y in self.tile_rows:
            low, high = max(top, y), min(top + count, y + self.tile_height)
            if low < high:
                for x in self.tile_cols:
                    weights[low - top : high - top, x : x + self.tile_width] += self.window[
                        low - y : high - y
                    ]
        return weights

    def finish_rows(self, stop: int) -> None:
        """Write rows [band_top, stop) of the band to the result and move the rest of the band up."""
        band_total, result, band_top = self.band_total, self.result, self.band_top
        assert band_total is not None and result is not None
        rows = stop - band_top
        last = min(stop, self.height) - band_top  # padded rows below the image are dropped
        # In place, without temporaries of the band's size: their width grows with the image's, and image-sized
        # transients fragment the heap. The division and the cast to the result's dtype are the same operations
        # as `(total / weights).to(dtype)`, so the values are too.
        for start in range(0, last, _FINISH_ROWS):
            count = min(_FINISH_ROWS, last - start)
            band_total[:, start : start + count].div_(self.weights_of_rows(band_top + start, count))
        if last > 0:
            result[:, band_top : band_top + last] = band_total[:, :last, : self.width]
        keep = self.tile_height - rows
        for start in range(0, keep, rows):  # move the rest up in pieces that do not overlap their source
            count = min(rows, keep - start)
            band_total[:, start : start + count] = band_total[:, start + rows : start + rows + count]
        band_total[:, keep:] = 0

    def finish(self) -> torch.Tensor:
        """Finish the last band; the result."""
        assert self.band_total is not None and self.result is not None  # there is always at least one tile
        self.finish_rows(self.band_top + self.tile_height)
        return self.result


@torch.inference_mode()
def predict_tiled(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tile_height: int,
    tile_width: int,
    overlap: int | None = None,
    batch_size: int = 4,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run ``predict`` on overlapping tiles of ``image`` and blend the outputs into a full-size result.

    Tiles are placed at :func:`tile_starts` offsets, predicted ``batch_size`` at a time, weighted by
    :func:`blend_window` and accumulated; the sum is divided by the accumulated weights, so each output pixel
    is a weighted average of the tiles covering it (weights sum to 1). An image smaller than a tile in a
    direction is padded at the bottom/right (reflect when the image is big enough, zeros otherwise) and the
    result cropped back. Memory: the (K, H, W) result, an accumulator for one band of tile rows
    (K x tile_height x W float64 values), and one batch of tiles.

    Rows of the result are finished and written top to bottom, each only once every tile that reads the rows
    of ``image`` up to it has been cut. So ``image`` may be stored at the end of ``out``'s own buffer, as
    ``inference.predict_files`` does to hold a large photo and its probabilities in the memory of the
    probabilities alone: this is safe when ``out`` is a (K, H, W) view of a C-contiguous (H, W, K) array
    and ``image`` a view of that array's last H x W x C elements of its own dtype, C-contiguous (H, W, C),
    taking no more bytes per pixel than the result (rows of the result then never reach rows of the image
    still to be read).

    Args:
        predict: Maps a batch (B, C, tile_height, tile_width) to (B, K, tile_height, tile_width), e.g. class
            probabilities. Put a module in ``eval()`` mode first; it is called under ``torch.inference_mode``.
        image: Float tensor (C, H, W).
        tile_height: Tile height in pixels (the network's input height).
        tile_width: Tile width in pixels (the network's input width).
        overlap: Minimum overlap between neighbouring tiles in pixels, smaller than both tile sizes. Default:
            a quarter of the tile in each direction.
        batch_size: Number of tiles per call to ``predict``.
        prepare: Optional map applied to each batch of tiles before ``predict`` (e.g. integer pixels to
            standardised floats). With it, ``image`` may be an integer tensor such as the decoded 8-bit photo,
            and no full-size float copy of a large image is ever made.
        out: Optional floating-point tensor (K, H, W) on ``image``'s device to write the result into (it
            may be a non-contiguous view, such as an (H, W, K) array permuted); values are cast to its dtype.

    Returns:
        Tensor (K, H, W) on ``image``'s device, with the dtype of ``predict``'s output; ``out`` when given.

    Raises:
        TypeError: ``predict`` is not callable, ``image`` is not a float tensor, or a size is not an int.
        ValueError: ``image`` is not 3-D, a size/overlap is out of range, ``predict`` returns a tensor of
            the wrong shape, or ``out`` has the wrong shape or device.
    """
    _check_tiled_inputs(predict, prepare, image)
    tile_height, tile_width, batch_size, overlap_h, overlap_w = _check_tiling(
        tile_height, tile_width, batch_size, overlap
    )
    _, height, width = image.shape
    if out is not None:
        _check_out(out, image)
    if prepare is not None and (height < tile_height or width < tile_width):
        # Padding needs floats; an image smaller than one tile is small, so convert it whole.
        image, prepare = prepare(image[None])[0], None
    padded = _pad_to(image, tile_height, tile_width)
    padded_height, padded_width = padded.shape[1:]
    tile_rows = tile_starts(padded_height, tile_height, overlap_h)
    tile_cols = tile_starts(padded_width, tile_width, overlap_w)
    positions = [(y, x) for y in tile_rows for x in tile_cols]
    blender = _TileBlender(
        (height, width), padded_width, tile_rows, tile_cols, (tile_height, tile_width), image.device, out
    )
    for first in range(0, len(positions), batch_size):
        batch_positions = positions[first : first + batch_size]
        tiles = torch.stack([padded[:, y : y + tile_height, x : x + tile_width] for y, x in batch_positions])
        if prepare is not None:
            tiles = prepare(tiles)
        output = predict(tiles)
        _check_tile_output(output, tiles, len(batch_positions), tile_height, tile_width)
        blender.add(output, batch_positions)
    return blender.finish()
