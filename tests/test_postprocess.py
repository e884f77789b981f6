"""Tests for deepplantphenomics.postprocess: Otsu threshold, mask/probability resizing, cut-outs, overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deepplantphenomics.postprocess import (
    apply_mask,
    otsu_mask,
    overlay_mask,
    resize_mask,
    resize_probabilities,
    threshold_otsu,
    to_uint8_rgb,
)


# ------------------------------------------------------------------------------------------------- Otsu
def _otsu_cases():
    rng = np.random.default_rng(0)
    return {
        "bimodal": np.concatenate([rng.normal(0.2, 0.05, 500), rng.normal(0.8, 0.1, 300)]),
        "uniform": rng.random(1000),
        "uint8_image": rng.integers(0, 256, size=(64, 64)).astype(np.uint8),
        "uint8_narrow": rng.integers(40, 60, size=(32, 32)).astype(np.uint8),
        "float32_probs": rng.beta(0.5, 0.5, size=(64, 64)).astype(np.float32),
        "int16_negative": rng.integers(-300, 300, size=(30, 30)).astype(np.int16),
        "uint16_12bit": rng.integers(0, 4096, size=(64, 64)).astype(np.uint16),
        "two_values": np.array([0.0, 1.0, 0.0, 1.0]),
        "constant": np.full((8, 8), 0.25),
    }


@pytest.mark.parametrize("name", list(_otsu_cases()))
def test_threshold_otsu_matches_skimage(name):
    filters = pytest.importorskip("skimage.filters")
    values = _otsu_cases()[name]
    ours = threshold_otsu(values)
    assert isinstance(ours, float)
    assert ours == float(filters.threshold_otsu(values))


def test_threshold_otsu_matches_skimage_with_nbins():
    filters = pytest.importorskip("skimage.filters")
    values = np.random.default_rng(1).random((32, 32))
    for nbins in (2, 16, 100):
        assert threshold_otsu(values, nbins=nbins) == float(filters.threshold_otsu(values, nbins=nbins))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Two values: every cut between them separates the classes equally well; the first bin wins.
        (np.array([10, 10, 200, 200], dtype=np.uint8), 10.0),
        (np.array([[0, 0], [1, 1]], dtype=np.int64), 0.0),
        (np.array([True, False, True]), 0.0),
        # Floats: 256 bins over [0, 1], threshold at the centre of the first bin.
        (np.array([0.0, 1.0]), 0.5 / 256),
        (np.full(5, 7, dtype=np.uint8), 7.0),
        (np.full((3, 3), -0.5, dtype=np.float32), -0.5),
    ],
)
def test_threshold_otsu_known_answers(values, expected):
    assert threshold_otsu(values) == pytest.approx(expected, abs=1e-12)


def test_threshold_otsu_separates_bimodal_data():
    rng = np.random.default_rng(2)
    low = rng.normal(0.2, 0.05, 400)
    high = rng.normal(0.8, 0.05, 400)
    threshold = threshold_otsu(np.concatenate([low, high]))
    # Every cut inside the gap splits the data the same way, so Otsu picks the first one: the centre of the
    # bin holding the largest low value (skimage does the same), which may leave that value above it.
    assert (high > threshold).all()
    assert (low > threshold).sum() <= 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_threshold_otsu_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="`values`.*finite.*1 NaN or infinite"):
        threshold_otsu(np.array([0.1, bad, 0.9]))


def test_threshold_otsu_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`values`.*non-empty"):
        threshold_otsu(np.array([]))
    with pytest.raises(TypeError, match="`values`.*numeric"):
        threshold_otsu(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="`nbins`"):
        threshold_otsu(np.array([0.1, 0.2]), nbins=0)
    with pytest.raises(TypeError, match="`nbins`"):
        threshold_otsu(np.array([0.1, 0.2]), nbins=2.5)


def test_otsu_mask_binary_uint8():
    probabilities = np.full((8, 8), 0.1, dtype=np.float32)
    probabilities[2:5, 3:7] = 0.9
    probabilities[0, 0] = 0.15
    mask = otsu_mask(probabilities)
    assert mask.dtype == np.uint8
    assert mask.shape == (8, 8)
    expected = np.zeros((8, 8), dtype=np.uint8)
    expected[2:5, 3:7] = 1
    np.testing.assert_array_equal(mask, expected)


def test_otsu_mask_accepts_trailing_channel_and_constant():
    probabilities = np.random.default_rng(3).random((6, 5, 1)).astype(np.float32)
    mask = otsu_mask(probabilities)
    assert mask.shape == (6, 5)
    np.testing.assert_array_equal(
        mask, (probabilities[..., 0] > threshold_otsu(probabilities)).astype(np.uint8)
    )
    np.testing.assert_array_equal(otsu_mask(np.full((4, 4), 0.7)), np.zeros((4, 4), dtype=np.uint8))


def test_otsu_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="`probabilities`.*finite"):
        otsu_mask(np.array([[0.1, np.nan], [0.2, 0.3]]))
    with pytest.raises(ValueError, match=r"`probabilities`.*\(H, W\) or \(H, W, 1\).*\(4, 4, 2\)"):
        otsu_mask(np.zeros((4, 4, 2)))


# ----------------------------------------------------------------------------------------------- resize
def test_resize_mask_upscale_known_answer():
    mask = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    expected = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]], dtype=np.uint8)
    np.testing.assert_array_equal(resize_mask(mask, 4, 4), expected)


def test_resize_mask_downscale_takes_nearest_centre():
    mask = np.arange(16, dtype=np.int32).reshape(4, 4)
    np.testing.assert_array_equal(resize_mask(mask, 2, 2), np.array([[5, 7], [13, 15]], dtype=np.int32))


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.uint16])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (17, 90), (5, 3)])
def test_resize_mask_keeps_class_set_and_dtype(dtype, height, width):
    rng = np.random.default_rng(4)
    mask = rng.choice(np.array([0, 1, 2, 255]), size=(37, 53)).astype(dtype)
    resized = resize_mask(mask, height, width)
    assert resized.shape == (height, width)
    assert resized.dtype == dtype
    assert set(np.unique(resized).tolist()) <= {0, 1, 2, 255}
    # Upscaling loses no class.
    if height >= 37 and width >= 53:
        assert set(np.unique(resized).tolist()) == set(np.unique(mask).tolist())


@pytest.mark.parametrize(("height", "width"), [(64, 30), (20, 100), (37, 53)])
def test_resize_mask_matches_pillow_nearest(height, width):
    # Odd source sizes have no exact ties between two source pixels, where Pillow's floating-point
    # arithmetic could pick either one.
    mask = np.random.default_rng(5).integers(0, 4, size=(37, 53)).astype(np.uint8)
    expected = np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(resize_mask(mask, height, width), expected)


def test_resize_mask_bool_and_trailing_channel():
    mask = np.zeros((4, 4, 1), dtype=bool)
    mask[1:3, 1:3, 0] = True
    resized = resize_mask(mask, 8, 8)
    assert resized.shape == (8, 8, 1)
    assert resized.dtype == np.bool_
    assert resized.sum() == 16


def test_resize_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"`mask`.*\(5, 5, 3\)"):
        resize_mask(np.zeros((5, 5, 3), dtype=np.uint8), 4, 4)
    with pytest.raises(ValueError, match="`height`.*positive int"):
        resize_mask(np.zeros((5, 5), dtype=np.uint8), 0, 4)
    with pytest.raises(TypeError, match="`width`"):
        resize_mask(np.zeros((5, 5), dtype=np.uint8), 4, 2.5)
    with pytest.raises(TypeError, match="`mask`.*numeric"):
        resize_mask(np.array([["a"]]), 4, 4)


@pytest.mark.parametrize(("height", "width"), [(14, 18), (20, 5), (3, 4), (7, 9), (1, 1)])
def test_resize_probabilities_matches_torch_bilinear(height, width):
    prob = np.random.default_rng(6).random((7, 9, 2)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(prob).permute(2, 0, 1)[None],
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )[0].permute(1, 2, 0)
    resized = resize_probabilities(prob, height, width)
    assert resized.dtype == np.float32
    assert resized.shape == (height, width, 2)
    np.testing.assert_allclose(resized, expected.numpy(), atol=1e-6)


def test_resize_probabilities_2d_and_integer_input():
    prob = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    resized = resize_probabilities(prob, 4, 4)
    assert resized.shape == (4, 4)
    assert resized.dtype == np.float32
    # Half-pixel centres: the corner output pixels sit beyond the outer input centres.
    assert resized[0, 0] == 0.0
    assert resized[0, 3] == 1.0
    np.testing.assert_allclose(resized[0, 1], 0.25)
    # A constant map stays exactly constant (interpolation as a + (b - a) * t).
    np.testing.assert_array_equal(
        resize_probabilities(np.full((3, 5), 0.4), 9, 2), np.full((9, 2), 0.4, np.float32)
    )
    ones = resize_probabilities(np.ones((3, 3, 1), dtype=np.float32), 7, 11)
    assert (ones == 1.0).all()


def test_resize_probabilities_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"`prob`.*\(H, W\) or \(H, W, C\).*\(2, 2, 2, 2\)"):
        resize_probabilities(np.zeros((2, 2, 2, 2)), 4, 4)


# ---------------------------------------------------------------------------------------------- apply
@pytest.mark.parametrize(
    "mask",
    [
        np.array([[True, False, False], [False, True, True]]),
        np.array([[1, 0, 0], [0, 1, 1]], dtype=np.uint8),
        np.array([[255, 0, 0], [0, 255, 255]], dtype=np.uint8),
        np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=np.float32),
        np.array([[[255], [0], [0]], [[0], [255], [255]]], dtype=np.uint8),
    ],
)
def test_apply_mask_zeroes_outside(mask):
    image = np.arange(1, 19, dtype=np.uint8).reshape(2, 3, 3)
    cut = apply_mask(image, mask)
    assert cut.shape == image.shape
    assert cut.dtype == image.dtype
    expected = image.copy()
    expected[0, 1:] = 0
    expected[1, 0] = 0
    np.testing.assert_array_equal(cut, expected)
    # The input is left untouched.
    np.testing.assert_array_equal(image, np.arange(1, 19, dtype=np.uint8).reshape(2, 3, 3))


def test_apply_mask_grey_and_16_bit_images():
    image = np.full((4, 4), 40000, dtype=np.uint16)
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[:2] = 255
    cut = apply_mask(image, mask)
    assert cut.dtype == np.uint16
    assert (cut[:2] == 40000).all()
    assert (cut[2:] == 0).all()


def test_apply_mask_size_mismatch_names_shapes_and_fix():
    image = np.zeros((64, 48, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"\(32, 32\).*\(64, 48, 3\).*resize_mask\(mask, 64, 48\)"):
        apply_mask(image, mask)


def test_apply_mask_rejects_bad_shapes():
    with pytest.raises(ValueError, match="`image`"):
        apply_mask(np.zeros((2, 2, 2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="`mask`"):
        apply_mask(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)))


# -------------------------------------------------------------------------------------------- overlays
@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.array([[7]], dtype=np.uint8), [7, 7, 7]),
        (np.array([[[7]]], dtype=np.uint8), [7, 7, 7]),
        (np.array([[[7, 99]]], dtype=np.uint8), [7, 7, 7]),
        (np.array([[[1, 2, 3]]], dtype=np.uint8), [1, 2, 3]),
        (np.array([[[1, 2, 3, 0]]], dtype=np.uint8), [1, 2, 3]),
        (np.array([[[65535, 257, 0]]], dtype=np.uint16), [255, 1, 0]),
        (np.array([[[10, 20, 30]]], dtype=np.uint16), [0, 0, 0]),
        (np.array([[[10, 20, 255]]], dtype=np.int32), [10, 20, 255]),
        (np.array([[[2570, 0, 4095]]], dtype=np.int32), [10, 0, 16]),
        (np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32), [0, 128, 255]),
        (np.array([[[0.0, 100.4, 300.0]]]), [0, 100, 255]),
        (np.array([[True]]), [255, 255, 255]),
    ],
)
def test_to_uint8_rgb_table(image, expected):
    rgb = to_uint8_rgb(image)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (*image.shape[:2], 3)
    assert rgb[0, 0].tolist() == expected


def test_to_uint8_rgb_returns_a_copy():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    to_uint8_rgb(image)[0, 0] = 9
    assert image.max() == 0


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((2, 2, 5), dtype=np.uint8), r"`image`.*C in 1\.\.4"),
        (np.array([[-1, 3]], dtype=np.int32), r"`image`.*0\.\.65535.*-1\.\.3"),
        (np.array([[0.1, np.nan]]), "`image`.*finite"),
    ],
)
def test_to_uint8_rgb_rejects(image, match):
    with pytest.raises(ValueError, match=match):
        to_uint8_rgb(image)


def _square_mask():
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:9, 5:10] = 255  # a 5x5 square: 16 boundary pixels around a 3x3 interior
    return mask


def test_overlay_shape_dtype_outline_and_tint():
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    mask = _square_mask()
    out = overlay_mask(image, mask, color=(255, 0, 255), alpha=0.5)
    assert out.shape == (16, 16, 3)
    assert out.dtype == np.uint8
    colour = np.array([255, 0, 255], dtype=np.uint8)
    boundary = np.zeros((16, 16), dtype=bool)
    boundary[4:9, 5:10] = True
    boundary[5:8, 6:9] = False
    assert boundary.sum() == 16
    assert (out[boundary] == colour).all()
    # Interior: half black, half magenta.
    assert (out[5:8, 6:9] == np.array([128, 0, 128], dtype=np.uint8)).all()
    # Outside: untouched.
    assert (out[mask == 0] == 0).all()


def test_overlay_without_outline_only_tints():
    image = np.full((16, 16, 3), 100, dtype=np.uint8)
    out = overlay_mask(image, _square_mask() > 0, color=(0, 200, 0), alpha=0.25, outline=False)
    assert (out[4:9, 5:10] == np.array([75, 125, 75], dtype=np.uint8)).all()
    assert (out[_square_mask() == 0] == 100).all()


def test_overlay_grey_and_16_bit_images():
    grey16 = np.full((16, 16), 65535, dtype=np.uint16)
    out = overlay_mask(grey16, _square_mask(), alpha=0.0, outline=False)
    assert out.shape == (16, 16, 3)
    assert (out == 255).all()


def test_overlay_full_mask_has_no_frame_at_image_border():
    image = np.zeros((8, 8), dtype=np.uint8)
    out = overlay_mask(image, np.ones((8, 8), dtype=np.uint8), color=(255, 0, 0), alpha=0.5)
    assert (out == np.array([128, 0, 0], dtype=np.uint8)).all()


def test_overlay_one_pixel_mask_is_all_outline():
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 2] = True
    out = overlay_mask(np.zeros((5, 5, 3), dtype=np.uint8), mask, color=(1, 2, 3), alpha=0.0)
    assert out[2, 2].tolist() == [1, 2, 3]
    assert out.sum() == 6


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"color": (255, 0)}, ValueError, "`color`.*three ints"),
        ({"color": (255, 0, 256)}, ValueError, "`color`"),
        ({"color": "red"}, ValueError, "`color`"),
        ({"alpha": 1.5}, ValueError, "`alpha`"),
        ({"alpha": "0.5"}, TypeError, "`alpha`"),
        ({"outline": 1}, TypeError, "`outline`"),
    ],
)
def test_overlay_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        overlay_mask(np.zeros((16, 16, 3), dtype=np.uint8), _square_mask(), **kwargs)


def test_overlay_size_mismatch_suggests_resize_mask():
    with pytest.raises(ValueError, match=r"resize_mask\(mask, 16, 16\)"):
        overlay_mask(np.zeros((16, 16, 3), dtype=np.uint8), np.zeros((8, 8), dtype=np.uint8))
