"""Tests for automatic image patching: tile placement, training patches and seamless tiled inference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from deepplantphenomics.data.patches import (
    IGNORE_INDEX,
    blend_window,
    extract_training_patches,
    predict_tiled,
    tile_starts,
)

# Receptive-field radius of `_conv_net`: two 3x3 convolutions, so an output pixel sees inputs up to 2 away.
_RADIUS = 2


def _conv_net(padding_mode: str = "zeros", out_channels: int = 2) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode=padding_mode),
        nn.ReLU(),
        nn.Conv2d(8, out_channels, 3, padding=1, padding_mode=padding_mode),
        nn.Softmax(dim=1),
    )
    return net.eval()


def _whole(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(image.unsqueeze(0)).squeeze(0)


class _Recorder:
    """Identity predictor that remembers every batch it was given."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        self.batches.append(tiles.clone())
        return tiles


# ----------------------------------------------------------------------------------------------- tile_starts


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "expected"),
    [
        (10, 4, 1, [0, 3, 6]),
        (10, 4, 0, [0, 3, 6]),  # 3 tiles are needed; spread evenly they overlap by 1 and 1
        (8, 4, 0, [0, 4]),
        (11, 4, 1, [0, 2, 4, 7]),
        (100, 32, 8, [0, 22, 45, 68]),
        (64, 16, 4, [0, 12, 24, 36, 48]),
        (5, 1, 0, [0, 1, 2, 3, 4]),
        (4, 4, 3, [0]),
        (3, 4, 0, [0]),
        (1, 1, 0, [0]),
        (5, 4, 3, [0, 1]),
    ],
)
def test_tile_starts_table(length: int, tile: int, overlap: int, expected: list[int]) -> None:
    assert tile_starts(length, tile, overlap) == expected


@given(
    length=st.integers(1, 300),
    tile=st.integers(1, 64),
    data=st.data(),
)
def test_tile_starts_properties(length: int, tile: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, tile - 1))
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length
    stride = tile - overlap
    gaps = np.diff(starts)
    assert np.all(gaps > 0)  # no duplicate tiles
    assert np.all(gaps <= stride)  # neighbours share at least `overlap` pixels, and so no pixel is missed
    # Minimal number of tiles for that overlap.
    assert len(starts) == -(-(length - tile) // stride) + 1


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 4, 0), ValueError, "`length`"),
        ((10, 0, 0), ValueError, "`tile`"),
        ((10, 4, 4), ValueError, r"`overlap`.*\[0, 4\)"),
        ((10, 4, -1), ValueError, "`overlap`"),
        ((10.0, 4, 0), TypeError, "`length`"),
        ((10, True, 0), TypeError, "`tile`"),
        ((10, 4, "1"), TypeError, "`overlap`"),
    ],
)
def test_tile_starts_validation(args: tuple, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        tile_starts(*args)


def test_tile_starts_accepts_numpy_ints() -> None:
    assert tile_starts(np.int64(10), np.int32(4), np.int64(1)) == [0, 3, 6]


# ----------------------------------------------------------------------------------------------- blend_window


@pytest.mark.parametrize(("height", "width"), [(16, 24), (7, 5), (1, 1), (1, 9), (64, 64)])
def test_blend_window_shape_positive_centre_symmetric(height: int, width: int) -> None:
    window = blend_window(height, width)
    assert window.shape == (height, width)
    assert window.dtype == torch.float32
    assert window.device.type == "cpu"
    assert float(window.min()) >= 1e-3
    assert float(window.max()) <= 1.0
    assert float(window[(height - 1) // 2, (width - 1) // 2]) == float(window.max())
    torch.testing.assert_close(window, window.flip(0), rtol=0, atol=1e-7)
    torch.testing.assert_close(window, window.flip(1), rtol=0, atol=1e-7)


def test_blend_window_decreases_from_centre_to_border() -> None:
    row = blend_window(1, 33)[0]
    assert torch.all(row[1:17] >= row[:16])  # non-decreasing to the centre
    assert float(row[0]) < 0.01 < float(row[16])


def test_blend_window_device_argument() -> None:
    assert blend_window(4, 4, device="cpu").device.type == "cpu"
    assert blend_window(4, 4, device=torch.device("cpu")).device.type == "cpu"


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [((0, 4), ValueError, "`height`"), ((4, -2), ValueError, "`width`"), ((4.5, 4), TypeError, "`height`")],
)
def test_blend_window_validation(args: tuple, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        blend_window(*args)


# ----------------------------------------------------------------------------------- extract_training_patches


@pytest.mark.parametrize(
    ("height", "width", "patch_height", "patch_width", "overlap"),
    [(37, 53, 16, 24, 0), (37, 53, 16, 24, 5), (64, 64, 16, 16, 0), (32, 48, 16, 16, 4)],
)
def test_training_patches_cover_every_pixel(
    height: int, width: int, patch_height: int, patch_width: int, overlap: int
) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65535, size=(height, width, 3), dtype=np.uint16)
    mask = rng.integers(0, 4, size=(height, width), dtype=np.uint8)
    images, masks = extract_training_patches(image, mask, patch_height, patch_width, overlap=overlap)

    rows = tile_starts(height, patch_height, overlap)
    cols = tile_starts(width, patch_width, overlap)
    assert images.shape == (len(rows) * len(cols), patch_height, patch_width, 3)
    assert masks.shape == (len(rows) * len(cols), patch_height, patch_width)
    assert images.dtype == np.uint16 and masks.dtype == np.uint8

    rebuilt_image = np.zeros_like(image)
    rebuilt_mask = np.zeros_like(mask)
    covered = np.zeros((height, width), dtype=bool)
    for index, (y, x) in enumerate(itertools.product(rows, cols)):  # row-major order
        np.testing.assert_array_equal(images[index], image[y : y + patch_height, x : x + patch_width])
        np.testing.assert_array_equal(masks[index], mask[y : y + patch_height, x : x + patch_width])
        rebuilt_image[y : y + patch_height, x : x + patch_width] = images[index]
        rebuilt_mask[y : y + patch_height, x : x + patch_width] = masks[index]
        covered[y : y + patch_height, x : x + patch_width] = True
    assert covered.all()
    np.testing.assert_array_equal(rebuilt_image, image)
    np.testing.assert_array_equal(rebuilt_mask, mask)


def test_training_patches_known_count() -> None:
    image = np.arange(100, dtype=np.float32).reshape(10, 10, 1)
    mask = np.zeros((10, 10), dtype=np.int64)
    images, _ = extract_training_patches(image, mask, 4, 4, overlap=1)
    assert images.shape == (9, 4, 4, 1)  # starts [0, 3, 6] in each direction
    assert [float(p[0, 0, 0]) for p in images] == [0, 3, 6, 30, 33, 36, 60, 63, 66]


def test_training_patches_pad_small_image_with_zeros_and_ignore_index() -> None:
    assert IGNORE_INDEX == 255
    rng = np.random.default_rng(1)
    image = rng.integers(1, 256, size=(5, 30, 3), dtype=np.uint8)  # no zeros, so padding is visible
    mask = rng.integers(0, 2, size=(5, 30), dtype=np.uint8)
    images, masks = extract_training_patches(image, mask, 8, 16)
    starts = tile_starts(30, 16, 0)
    assert images.shape == (len(starts), 8, 16, 3)
    for index, x in enumerate(starts):
        np.testing.assert_array_equal(images[index, :5], image[:, x : x + 16])
        np.testing.assert_array_equal(masks[index, :5], mask[:, x : x + 16])
        assert np.all(images[index, 5:] == 0)
        assert np.all(masks[index, 5:] == 255)


def test_training_patches_image_smaller_than_patch_in_both_directions() -> None:
    image = np.ones((3, 2, 1), dtype=np.float32)
    mask = np.array([[0, 1], [1, 0], [0, 0]], dtype=np.int64)
    images, masks = extract_training_patches(image, mask, 4, 4)
    assert images.shape == (1, 4, 4, 1) and masks.shape == (1, 4, 4)
    expected_mask = np.full((4, 4), 255, dtype=np.int64)
    expected_mask[:3, :2] = mask
    np.testing.assert_array_equal(masks[0], expected_mask)
    assert float(images.sum()) == 6.0  # the 3x2 ones, everything else zero


def test_training_patches_bool_mask_becomes_uint8() -> None:
    image = np.zeros((3, 3, 1), dtype=np.uint8)
    mask = np.eye(3, dtype=bool)
    _, masks = extract_training_patches(image, mask, 4, 4)
    assert masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[0, :3, :3], np.eye(3, dtype=np.uint8))
    assert np.all(masks[0, 3, :] == 255) and np.all(masks[0, :, 3] == 255)


@pytest.mark.parametrize(
    ("image", "mask", "kwargs", "error", "match"),
    [
        (np.zeros((8, 8)), np.zeros((8, 8)), {}, ValueError, r"`image`.*\(H, W, C\)"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8, 1)), {}, ValueError, r"`mask`.*\(H, W\)"),
        (np.zeros((8, 8, 3)), np.zeros((8, 9)), {}, ValueError, "`mask`.*height and width"),
        ([[0]], np.zeros((8, 8)), {}, TypeError, "`image`.*numpy array"),
        (np.zeros((8, 8, 3)), None, {}, TypeError, "`mask`.*numpy array"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8)), {"patch_height": 0}, ValueError, "`patch_height`"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8)), {"patch_width": 2.0}, TypeError, "`patch_width`"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8)), {"overlap": 4}, ValueError, "`overlap`"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8)), {"overlap": -1}, ValueError, "`overlap`"),
    ],
)
def test_training_patches_validation(
    image: object, mask: object, kwargs: dict, error: type[Exception], match: str
) -> None:
    arguments = {"patch_height": 4, "patch_width": 8, **kwargs}
    with pytest.raises(error, match=match):
        extract_training_patches(image, mask, **arguments)


# ---------------------------------------------------------------------------------------------- predict_tiled


@pytest.mark.parametrize(
    ("height", "width", "tile_height", "tile_width"),
    [
        (37, 53, 16, 24),  # not divisible, non-square
        (32, 48, 16, 16),  # divisible
        (64, 64, 16, 24),
        (5, 7, 16, 24),  # smaller than the tile in both directions (reflect padding)
        (5, 53, 16, 24),  # smaller in one direction only
        (1, 1, 16, 24),  # too small to reflect: zero padding
        (16, 24, 16, 24),  # exactly one tile
    ],
)
def test_identity_predictor_returns_image_exactly(
    height: int, width: int, tile_height: int, tile_width: int
) -> None:
    torch.manual_seed(0)
    image = torch.rand(3, height, width)
    result = predict_tiled(lambda tiles: tiles, image, tile_height, tile_width)
    assert result.shape == image.shape and result.dtype == torch.float32
    assert torch.equal(result, image)  # blending weights normalise to exactly 1


def test_identity_predictor_float64() -> None:
    image = torch.rand(2, 20, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = predict_tiled(lambda tiles: tiles, image, 8, 8, overlap=3, batch_size=5)
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, image, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("height", "width"), [(37, 53), (64, 64), (9, 13), (16, 24)])
def test_constant_image_gives_constant_output(height: int, width: int) -> None:
    # Replicate padding makes the net position independent on a constant image, so any seam would show.
    # (9, 13) is smaller than the tile but big enough for reflect padding, which keeps the tile constant.
    net = _conv_net(padding_mode="replicate")
    image = torch.full((3, height, width), 0.3)
    result = predict_tiled(net, image, 16, 24, overlap=6, batch_size=3)
    assert result.shape == (2, height, width)
    expected = _whole(net, torch.full((3, 1, 1), 0.3))[:, 0, 0]
    torch.testing.assert_close(result, expected[:, None, None].expand_as(result), rtol=0, atol=1e-6)


def _exact_pixels(height: int, width: int, tile_height: int, tile_width: int, overlap: int) -> np.ndarray:
    """Pixels whose every covering tile sees the whole receptive field as in whole-image inference.

    A tile's prediction at a pixel equals the whole-image one when the pixel is at least `_RADIUS` away
    from each tile edge that lies inside the image (a tile edge on the image border pads with zeros exactly
    like the whole-image convolution does).
    """
    exact = np.ones((height, width), dtype=bool)
    ys, xs = np.mgrid[0:height, 0:width]
    for y, x in itertools.product(
        tile_starts(height, tile_height, overlap), tile_starts(width, tile_width, overlap)
    ):
        inside = (ys >= y) & (ys < y + tile_height) & (xs >= x) & (xs < x + tile_width)
        ok = np.ones_like(exact)
        if y > 0:
            ok &= ys - y >= _RADIUS
        if y + tile_height < height:
            ok &= y + tile_height - 1 - ys >= _RADIUS
        if x > 0:
            ok &= xs - x >= _RADIUS
        if x + tile_width < width:
            ok &= x + tile_width - 1 - xs >= _RADIUS
        exact &= ~inside | ok
    return exact


def _coverage(height: int, width: int, tile_height: int, tile_width: int, overlap: int) -> np.ndarray:
    count = np.zeros((height, width), dtype=int)
    for y, x in itertools.product(
        tile_starts(height, tile_height, overlap), tile_starts(width, tile_width, overlap)
    ):
        count[y : y + tile_height, x : x + tile_width] += 1
    return count


@pytest.mark.parametrize(
    ("height", "width", "tile_height", "tile_width", "overlap"),
    [(40, 56, 16, 24, 8), (37, 53, 16, 24, 6), (64, 64, 24, 16, 8)],
)
def test_tiled_matches_whole_image_inference(
    height: int, width: int, tile_height: int, tile_width: int, overlap: int
) -> None:
    net = _conv_net()
    torch.manual_seed(1)
    image = torch.rand(3, height, width)
    tiled = predict_tiled(net, image, tile_height, tile_width, overlap=overlap, batch_size=3)
    whole = _whole(net, image)
    assert tiled.shape == whole.shape == (2, height, width)

    exact = torch.from_numpy(_exact_pixels(height, width, tile_height, tile_width, overlap))
    coverage = torch.from_numpy(_coverage(height, width, tile_height, tile_width, overlap))
    # The comparison must include blended pixels (covered by 2 and by 4 tiles) and most of the image.
    assert bool((exact & (coverage >= 2)).any()) and bool((exact & (coverage >= 4)).any())
    assert float(exact.float().mean()) > 0.5
    # Every pixel whose covering tiles all see its full receptive field equals whole-image inference.
    torch.testing.assert_close(tiled[:, exact], whole[:, exact], rtol=0, atol=1e-5)
    # Sanity of the set-up: the net's receptive field really does make tile edges differ elsewhere, so the
    # comparison above is not vacuous.
    assert float((tiled[:, ~exact] - whole[:, ~exact]).abs().max()) > 1e-4


def test_pointwise_net_matches_whole_image_everywhere() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sigmoid()).eval()
    image = torch.rand(3, 37, 53)
    tiled = predict_tiled(net, image, 16, 24, overlap=4)
    torch.testing.assert_close(tiled, _whole(net, image), rtol=0, atol=1e-6)


def test_small_image_is_reflect_padded_then_cropped() -> None:
    net = _conv_net()
    torch.manual_seed(2)
    image = torch.rand(3, 5, 7)
    recorder = _Recorder()
    predict_tiled(recorder, image, 8, 10)
    expected_tile = F.pad(image.unsqueeze(0), (0, 3, 0, 3), mode="reflect")
    assert len(recorder.batches) == 1
    torch.testing.assert_close(recorder.batches[0], expected_tile, rtol=0, atol=0)

    result = predict_tiled(net, image, 8, 10)
    torch.testing.assert_close(result, _whole(net, expected_tile[0])[:, :5, :7], rtol=0, atol=1e-6)


def test_too_thin_image_is_zero_padded_in_that_direction_only() -> None:
    torch.manual_seed(3)
    image = torch.rand(3, 2, 7) + 1.0  # no zeros, so padding is visible
    recorder = _Recorder()
    result = predict_tiled(recorder, image, 8, 10)
    assert torch.equal(result, image)
    tile = recorder.batches[0][0]
    assert tile.shape == (3, 8, 10)
    torch.testing.assert_close(tile[:, :2], F.pad(image.unsqueeze(0), (0, 3, 0, 0), mode="reflect")[0])
    assert torch.all(tile[:, 2:] == 0)


def _position_image(height: int, width: int) -> torch.Tensor:
    return torch.arange(height * width, dtype=torch.float32).reshape(1, height, width)


@pytest.mark.parametrize(("overlap", "expected_overlaps"), [(None, (4, 6)), (2, (2, 2)), (0, (0, 0))])
def test_tiles_placed_at_tile_starts(overlap: int | None, expected_overlaps: tuple[int, int]) -> None:
    height, width, tile_height, tile_width = 37, 53, 16, 24
    recorder = _Recorder()
    predict_tiled(recorder, _position_image(height, width), tile_height, tile_width, overlap=overlap)
    tiles = torch.cat(recorder.batches)
    starts = [divmod(int(tile[0, 0, 0]), width) for tile in tiles]
    expected = list(
        itertools.product(
            tile_starts(height, tile_height, expected_overlaps[0]),
            tile_starts(width, tile_width, expected_overlaps[1]),
        )
    )
    assert starts == expected


@pytest.mark.parametrize("batch_size", [1, 2, 5, 100])
def test_batch_size_does_not_change_result_and_bounds_memory(batch_size: int) -> None:
    net = _conv_net()
    torch.manual_seed(4)
    image = torch.rand(3, 37, 53)
    reference = predict_tiled(net, image, 16, 16, overlap=4, batch_size=1)

    sizes: list[int] = []

    def counting(tiles: torch.Tensor) -> torch.Tensor:
        sizes.append(tiles.shape[0])
        return net(tiles)

    result = predict_tiled(counting, image, 16, 16, overlap=4, batch_size=batch_size)
    torch.testing.assert_close(result, reference, rtol=0, atol=1e-6)
    tile_count = len(tile_starts(37, 16, 4)) * len(tile_starts(53, 16, 4))
    assert sum(sizes) == tile_count
    assert max(sizes) == min(batch_size, tile_count)  # never more than one batch of tiles at once
    assert len(sizes) == -(-tile_count // batch_size)


def test_output_channels_may_differ_from_input_channels() -> None:
    image = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(5))
    result = predict_tiled(lambda t: t.mean(dim=1, keepdim=True), image, 8, 8)
    torch.testing.assert_close(result, image.mean(dim=0, keepdim=True), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"predict": "net"}, TypeError, "`predict`.*callable"),
        ({"image": torch.zeros(3, 8, 8, dtype=torch.uint8)}, TypeError, "`image`.*floating-point"),
        ({"image": np.zeros((3, 8, 8), dtype=np.float32)}, TypeError, "`image`.*floating-point"),
        ({"image": torch.zeros(1, 3, 8, 8)}, ValueError, r"`image`.*\(C, H, W\)"),
        ({"tile_height": 0}, ValueError, "`tile_height`"),
        ({"tile_width": 4.0}, TypeError, "`tile_width`"),
        ({"overlap": 4}, ValueError, r"`overlap`.*\[0, 4\)"),
        ({"overlap": -1}, ValueError, "`overlap`"),
        ({"batch_size": 0}, ValueError, "`batch_size`"),
        ({"predict": lambda t: t[:, :, :2]}, ValueError, "`predict`.*shape"),
        ({"predict": lambda t: t[0]}, ValueError, "`predict`.*shape"),
        ({"predict": lambda t: t[:1]}, ValueError, "`predict`.*shape"),
        ({"predict": lambda t: t.numpy()}, ValueError, "`predict`"),
    ],
)
def test_predict_tiled_validation(kwargs: dict, error: type[Exception], match: str) -> None:
    arguments = {"predict": lambda t: t, "image": torch.zeros(3, 12, 12), "tile_height": 4, "tile_width": 6}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        predict_tiled(**arguments)


def _reference_blend(predict, image, tile_h, tile_w, batch_size):
    """predict_tiled as first written: full-size float64 accumulators, divided once at the end."""
    from deepplantphenomics.data.patches import _pad_to, blend_window, tile_starts

    _, height, width = image.shape
    padded = _pad_to(image, tile_h, tile_w)
    ph, pw = padded.shape[1:]
    positions = [
        (y, x) for y in tile_starts(ph, tile_h, tile_h // 4) for x in tile_starts(pw, tile_w, tile_w // 4)
    ]
    window = blend_window(tile_h, tile_w).double()
    total, weights = None, torch.zeros((ph, pw), dtype=torch.float64)
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        out = predict(torch.stack([padded[:, y : y + tile_h, x : x + tile_w] for y, x in chunk])).double()
        if total is None:
            total = torch.zeros((out.shape[1], ph, pw), dtype=torch.float64)
        for o, (y, x) in zip(out, chunk):
            total[:, y : y + tile_h, x : x + tile_w] += o * window
            weights[y : y + tile_h, x : x + tile_w] += window
    return (total / weights)[:, :height, :width].float()


@pytest.mark.parametrize(
    ("height", "width", "batch_size"), [(150, 97, 3), (64, 200, 4), (40, 40, 1), (33, 129, 5)]
)
def test_banded_accumulation_equals_full_size_accumulators(height, width, batch_size):
    """Rows are finished band by band (memory of one band); the result is the full-size blend bit for bit."""
    from deepplantphenomics.data.patches import predict_tiled

    generator = torch.Generator().manual_seed(height * width)
    image = torch.rand((3, height, width), generator=generator)
    weight = torch.rand((2, 3, 1, 1), generator=generator)

    def predict(tiles):  # position-dependent, two channels: any error in the band bookkeeping shows
        return torch.sigmoid((tiles[:, None] * weight[None]).sum(2) + tiles[:, :1].cumsum(-1))

    got = predict_tiled(predict, image, 32, 48, batch_size=batch_size)
    want = _reference_blend(predict, image, 32, 48, batch_size)
    assert got.shape == (2, height, width) and got.dtype == torch.float32
    assert torch.equal(got, want)


@pytest.mark.parametrize(("dtype", "scale"), [(np.uint8, 255.0), (np.uint16, 65535.0)])
@pytest.mark.parametrize(("height", "width", "rows"), [(37, 50, 8), (300, 41, 256), (5, 5, 1)])
def test_pixel_statistics_in_row_blocks_equal_the_whole_image_statistics(dtype, scale, height, width, rows):
    from deepplantphenomics.data.dataset import image_statistics, pixel_statistics, to_tensor_image

    raw = np.random.default_rng(height).integers(0, int(scale) + 1, (height, width, 3)).astype(dtype)
    whole = image_statistics(to_tensor_image(raw)[None])[0]
    pieces = pixel_statistics(torch.from_numpy(raw).permute(2, 0, 1), scale, rows=rows)
    assert pieces.dtype == torch.float32
    assert torch.equal(pieces, whole)


def test_tiles_standardised_from_the_8_bit_image_equal_tiles_of_the_standardised_float_image():
    """Tiled inference converts tiles batch by batch: same result as standardising the whole float image first."""
    from deepplantphenomics.data.dataset import image_statistics, to_tensor_image
    from deepplantphenomics.data.patches import predict_tiled

    raw = np.random.default_rng(0).integers(0, 256, (130, 170, 3), dtype=np.uint8)
    full = to_tensor_image(raw)
    stats = image_statistics(full[None])[0]
    full = (full - stats[0]) / stats[1]

    def predict(tiles):
        return torch.sigmoid(tiles.mean(1, keepdim=True) * 3)

    def prepare(tiles):
        return tiles.float().div_(255.0).sub_(stats[0]).div_(stats[1])

    want = predict_tiled(predict, full, 64, 64, batch_size=3)
    got = predict_tiled(
        predict, torch.from_numpy(raw).permute(2, 0, 1), 64, 64, batch_size=3, prepare=prepare
    )
    assert torch.equal(got, want)
    with pytest.raises(TypeError, match="argument `image`: expected a floating-point torch.Tensor"):
        predict_tiled(predict, torch.from_numpy(raw).permute(2, 0, 1), 64, 64)
    with pytest.raises(TypeError, match="argument `prepare`"):
        predict_tiled(predict, full, 64, 64, prepare=3)
