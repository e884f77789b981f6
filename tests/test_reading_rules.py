"""Issues 17 (points 2, 6) and 20 (points 1-6, 14): every photo and mask is read as a viewer shows it.

Each file is made here with Pillow or tifffile; each test asserts the pixels, masks or messages the user gets,
through ``read_image`` / ``read_binary_mask`` (the readers everything uses), the loader, the tool and the CLI.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from conftest import make_model
from PIL import Image, ImageOps

from deepplantphenomics import tools
from deepplantphenomics.cli import main
from deepplantphenomics.data.dataset import load_pairs, pair_files
from deepplantphenomics.data.io import (
    IGNORE_INDEX,
    image_size,
    read_binary_mask,
    read_class_mask,
    read_image,
    read_image_and_mode,
    read_image_into,
)

GREEN, SOIL = (40, 170, 50), (120, 85, 50)


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def plant_photo(height: int = 32, width: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A green plant block on soil: (RGB photo, 0/1 plant mask)."""
    plant = np.zeros((height, width), dtype=np.uint8)
    plant[height // 8 : height // 2, width // 8 : width // 2] = 1
    photo = np.where(plant[:, :, None] == 1, np.array(GREEN, np.uint8), np.array(SOIL, np.uint8))
    return photo.astype(np.uint8), plant


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    predicted, true = mask > 0, truth > 0
    return 2 * np.count_nonzero(predicted & true) / (np.count_nonzero(predicted) + np.count_nonzero(true))


def into(path: Path) -> np.ndarray:
    return read_image_into(path, lambda shape, dtype: np.empty(shape, dtype))


# ------------------------------------------------------------------------------------- 17.2 EXIF orientation
def exif_jpeg(path: Path, photo: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(path, photo, exif=exif, quality=100, subsampling=0)  # 4:4:4: colour edges stay sharp


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_show_it(tmp_path, orientation):
    photo, _ = plant_photo(24, 40)
    path = exif_jpeg(tmp_path / "phone.jpg", photo, orientation)
    with Image.open(path) as image:
        shown = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))  # what a viewer shows
    turned = orientation in (5, 6, 7, 8)
    assert shown.shape[:2] == ((40, 24) if turned else (24, 40))
    assert np.array_equal(read_image(path), shown)
    assert np.array_equal(into(path), shown)  # the tiled-inference reader
    assert image_size(path) == shown.shape[:2]


def test_exif_rotated_phone_photo_trains_tool_and_cli_upright(tmp_path):
    # Stored 32x48 with "rotate 90° clockwise" (6): every viewer shows 48x32, and so must masks and outputs.
    photo, plant = plant_photo(32, 48)
    exif_jpeg(tmp_path / "photos" / "p.jpg", photo, 6)
    upright_plant = np.rot90(plant, -1)
    save(tmp_path / "masks" / "p.png", upright_plant * np.uint8(255))  # drawn on the photo as shown
    pairs, _ = pair_files(tmp_path / "photos", tmp_path / "masks")
    images, masks, _ = load_pairs(pairs, 3, 2, None, False, False)
    assert tuple(images[0].shape) == (3, 48, 32) and np.array_equal(masks[0].numpy(), upright_plant)

    mask = tools.segment_vegetation(tmp_path / "photos" / "p.jpg", method="exg")[0]
    assert mask.shape == (48, 32) and dice(mask, upright_plant) > 0.98

    result = run("segment", tmp_path / "photos", "--out", tmp_path / "out", "--method", "exg")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "p_mask.png") as written:
        assert written.size == (32, 48) and dice(np.asarray(written), upright_plant) > 0.98
    with Image.open(tmp_path / "out" / "p_overlay.png") as overlay:
        assert overlay.size == (32, 48)  # (width, height): upright


def test_exif_orientation_of_a_tiff_is_applied(tmp_path):
    photo, _ = plant_photo(8, 12)
    tifffile.imwrite(tmp_path / "t.tif", photo, photometric="rgb", extratags=[(274, "H", 1, 8, True)])
    assert np.array_equal(read_image(tmp_path / "t.tif"), np.rot90(photo, 1))  # 8: 90° counter-clockwise


# ------------------------------------------------------------------------------------- 20.1 palette photos
def test_palette_photo_is_read_as_its_colours_and_segments_like_the_rgb_photo(tmp_path):
    photo, plant = plant_photo()
    rng = np.random.default_rng(0)
    noisy = np.clip(photo.astype(int) + rng.integers(-20, 21, photo.shape), 0, 255).astype(np.uint8)
    quantized = Image.fromarray(noisy).quantize(64)  # as pngquant / TinyPNG save it
    quantized.save(tmp_path / "palette.png")
    colours = np.asarray(quantized.convert("RGB"))
    save(tmp_path / "rgb.png", colours)
    image, mode = read_image_and_mode(tmp_path / "palette.png")
    assert mode == "palette" and np.array_equal(image, colours)
    assert np.array_equal(into(tmp_path / "palette.png"), colours)
    from_palette, from_rgb = tools.segment_vegetation(
        [tmp_path / "palette.png", tmp_path / "rgb.png"], method="exg"
    )
    assert np.array_equal(from_palette, from_rgb) and from_rgb[plant == 1].mean() > 0.95


def test_palette_masks_keep_their_indices(tmp_path):
    indices = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    mask = Image.new("P", (4, 1))
    mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192])
    mask.putdata(indices.reshape(-1).tolist())
    mask.save(tmp_path / "classes.png")
    assert read_class_mask(tmp_path / "classes.png", 3).tolist() == [[0, 1, 2, IGNORE_INDEX]]
    # the same file as a photo shows its colours
    assert read_image(tmp_path / "classes.png")[0].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [224, 224, 192],
    ]


def test_palette_tiff_photo_is_read_as_its_colours(tmp_path):
    colormap = np.zeros((3, 256), dtype=np.uint16)
    colormap[:, 1] = np.array(GREEN) * 257
    colormap[:, 2] = np.array(SOIL) * 257
    tifffile.imwrite(
        tmp_path / "p.tif", np.array([[1, 2]], np.uint8), photometric="palette", colormap=colormap
    )
    assert read_image(tmp_path / "p.tif").tolist() == [[list(GREEN), list(SOIL)]]


# ------------------------------------------------------------------------------------- 20.2 CMYK TIFF
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_cmyk_tiff_is_converted_to_rgb_as_pillow_converts_cmyk(tmp_path, dtype):
    photo, plant = plant_photo()
    cmyk = np.asarray(Image.fromarray(photo).convert("CMYK"))
    expected = np.asarray(Image.fromarray(cmyk, "CMYK").convert("RGB"))
    scale = 257 if dtype == np.uint16 else 1
    tifffile.imwrite(tmp_path / "c.tif", cmyk.astype(dtype) * scale, photometric="separated")
    image, mode = read_image_and_mode(tmp_path / "c.tif")
    assert mode == "CMYK" and image.dtype == dtype and image.shape == photo.shape
    assert np.abs(image.astype(int) // scale - expected).max() <= 1
    mask = tools.segment_vegetation(tmp_path / "c.tif", method="exg")[0]
    assert np.array_equal(mask, plant.astype(np.float32))


# ------------------------------------------------------------------------------------- 20.14 planar TIFF
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_planar_rgb_tiff_reads_as_the_interleaved_one(tmp_path, dtype):
    photo = np.random.default_rng(1).integers(0, 255, (16, 96, 3)).astype(dtype)
    tifffile.imwrite(
        tmp_path / "planar.tif", np.moveaxis(photo, -1, 0), photometric="rgb", planarconfig="separate"
    )
    assert np.array_equal(read_image(tmp_path / "planar.tif"), photo)
    assert image_size(tmp_path / "planar.tif") == (16, 96)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_min_is_white_tiff_is_inverted_as_viewers_show_it(tmp_path, dtype):
    top = np.iinfo(dtype).max
    tifffile.imwrite(tmp_path / "w.tif", np.array([[0, 200]], dtype), photometric="miniswhite")
    assert read_image(tmp_path / "w.tif")[:, :, 0].tolist() == [[top, top - 200]]
    bilevel = np.array([[True, False]])  # a scanned mask: plant stored as 1 = black
    tifffile.imwrite(tmp_path / "b.tif", bilevel, photometric="miniswhite")
    assert read_binary_mask(tmp_path / "b.tif")[0].tolist() == [[0, 1]]


# ------------------------------------------------------------------------------------- 20.3 float TIFF, inf/NaN
def test_float_tiff_with_inf_and_nan_is_scaled_by_its_finite_values(tmp_path):
    values = np.array([[0.0, 0.5, 1.0, 2.0, np.inf, np.nan, -np.inf]], dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", values)
    with pytest.warns(UserWarning, match=r"'.*f\.tif' holds 3 non-finite pixel value\(s\)"):
        image = read_image(tmp_path / "f.tif")
    # Scaled by the finite maximum 2.0; +inf is full intensity, NaN and -inf are 0.
    assert image[:, :, 0].tolist() == [[0, 16383, 32767, 65535, 65535, 0, 0]]
    with pytest.warns(UserWarning, match="non-finite"):
        assert np.array_equal(into(tmp_path / "f.tif"), image)


def test_float_tiff_in_0_1_is_unchanged_and_quiet(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.array([[0.0, 0.25, 1.0]], dtype=np.float32))
    assert read_image(tmp_path / "f.tif")[:, :, 0].tolist() == [[0, 16383, 65535]]


# ------------------------------------------------------------------------------------- 20.4 16-bit 0/255 masks
def test_16_bit_masks_holding_0_255_are_judged_by_their_values(tmp_path):
    photo, plant = plant_photo(16, 16)
    save(tmp_path / "images" / "a.png", photo)
    save(tmp_path / "images" / "b.png", photo)
    save(tmp_path / "masks" / "b.png", plant * np.uint8(255))
    label_array = plant.astype(np.uint16) * 255  # a label array saved as uint16
    Image.fromarray(label_array).save(tmp_path / "masks" / "a.png")
    assert np.array_equal(read_binary_mask(tmp_path / "masks" / "a.png")[0], plant)
    images, masks, _ = load_pairs(
        pair_files(tmp_path / "images", tmp_path / "masks")[0], 3, 2, None, False, False
    )
    assert np.array_equal(masks[0].numpy(), plant) and np.array_equal(masks[1].numpy(), plant)
    # Values beyond 255 keep the 16-bit rule: above 32767.
    Image.fromarray(np.array([[0, 30000, 40000]], np.uint16)).save(tmp_path / "deep.png")
    assert read_binary_mask(tmp_path / "deep.png")[0].tolist() == [[0, 0, 1]]


# ------------------------------------------------------------------------------------- 20.5 alpha
def test_plant_only_in_the_alpha_channel_counts(tmp_path):
    _, plant = plant_photo(16, 16)
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[:, :, 3] = plant * 255  # black RGB, opaque plant
    assert np.array_equal(read_binary_mask(save(tmp_path / "alpha.png", rgba))[0], plant)
    grey_alpha = np.dstack([np.zeros((16, 16), np.uint8), plant * np.uint8(255)])
    assert np.array_equal(read_binary_mask(save(tmp_path / "la.png", grey_alpha))[0], plant)


def test_opaque_rgba_masks_and_transparent_background_follow_the_colour(tmp_path):
    _, plant = plant_photo(16, 16)
    opaque = np.dstack(
        [np.repeat(plant[:, :, None] * np.uint8(255), 3, axis=2), np.full((16, 16), 255, np.uint8)]
    )
    assert np.array_equal(read_binary_mask(save(tmp_path / "opaque.png", opaque))[0], plant)
    # White everywhere, but only the plant is opaque: transparent pixels are background.
    cut = np.dstack([np.full((16, 16, 3), 255, np.uint8), plant * np.uint8(255)])
    assert np.array_equal(read_binary_mask(save(tmp_path / "cut.png", cut))[0], plant)


# ------------------------------------------------------------------------------------- 20.6 {0, 1, 255} masks
def voc_mask() -> np.ndarray:
    """0 background, 1 plant (left half), 255 'void' band along the outline (columns 14-17)."""
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:, :16] = 1
    mask[:, 14:18] = IGNORE_INDEX
    return mask


def test_0_1_255_masks_are_0_1_with_255_ignored(tmp_path):
    mask, zero_one = read_binary_mask(save(tmp_path / "voc.png", voc_mask()))
    assert zero_one and np.array_equal(mask, voc_mask())
    # 0/255 masks are unchanged: 255 is plant there.
    assert read_binary_mask(save(tmp_path / "plain.png", np.array([[0, 255]], np.uint8)))[0].tolist() == [
        [0, 1]
    ]


def test_0_1_255_masks_train_as_0_1_with_ignore_and_the_log_says_so(tmp_path, capsys):
    photo = np.zeros((64, 64, 3), np.uint8)
    photo[:, :32] = GREEN
    photo[:, 32:] = SOIL
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 1
    mask[:, 30:34] = IGNORE_INDEX
    for name in ("a", "b", "c", "d"):
        save(tmp_path / "images" / f"{name}.png", photo)
        save(tmp_path / "masks" / f"{name}.png", mask)
    model = make_model(tmp_path / "state", debug=True)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(tmp_path / "images", tmp_path / "masks")
    model.begin_training()
    out = capsys.readouterr().out
    assert (
        "4 mask(s) hold exactly the values 0, 1 and 255: read as 0 = background, 1 = foreground, 255 = ignore"
        in out
    )


def test_evaluate_leaves_the_255_band_out_of_the_scores(tmp_path):
    photo = np.zeros((32, 32, 3), np.uint8)
    photo[:, :16] = GREEN
    photo[:, 16:] = SOIL
    save(tmp_path / "images" / "a.png", photo)
    save(tmp_path / "masks" / "a.png", voc_mask())
    result = run(
        "evaluate", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--method", "exg"
    )
    assert result.exit_code == 0, result.output
    # Excess Green finds exactly the left half; the band straddling the edge is ignored, so every score (and
    # the area ratio, counted over the scored pixels too) is 1.
    row = next(line for line in result.output.splitlines() if line.startswith("a.png"))
    assert [float(v) for v in row.split()[1:]] == [1.0, 1.0, 1.0, 1.0, 1.0]


# ------------------------------------------------------------------------------------- 17.6 colour modes
def test_mixed_colour_modes_warn_naming_files_and_conversions(tmp_path, capsys):
    photo, plant = plant_photo(64, 64)
    for name in ("a", "b", "c"):
        save(tmp_path / "images" / f"{name}.png", photo)
    save(tmp_path / "images" / "grey.png", photo[:, :, 1])
    quantized = Image.fromarray(photo).quantize(16)
    quantized.save(tmp_path / "images" / "small.png")
    for name in ("a", "b", "c", "grey", "small"):
        save(tmp_path / "masks" / f"{name}.png", plant * np.uint8(255))
    model = make_model(tmp_path / "state", debug=True)
    model.set_test_split(0.0)
    model.set_validation_split(0.0)
    model.load_dataset_from_directory_with_segmentation_masks(tmp_path / "images", tmp_path / "masks")
    with pytest.warns(UserWarning) as caught:
        model.begin_training()
    message = next(str(w.message) for w in caught if "colour modes" in str(w.message))
    assert message.startswith(
        "The images mix colour modes (RGB 3, grey 1, palette 1); each was converted to 3"
    )
    assert "grey (1): grey repeated into R, G and B: grey.png" in message
    assert "palette (1): palette indices replaced by their colours: small.png" in message
    assert "images by colour mode: RGB 3, grey 1, palette 1" in capsys.readouterr().out


def test_one_colour_mode_does_not_warn(tmp_path):
    photo, plant = plant_photo(16, 16)
    for name in ("a", "b"):
        save(tmp_path / "images" / f"{name}.png", photo)
        save(tmp_path / "masks" / f"{name}.png", plant * np.uint8(255))
    _, _, report = load_pairs(
        pair_files(tmp_path / "images", tmp_path / "masks")[0], 1, 2, None, False, False
    )
    assert report.modes == {"RGB": ["a.png", "b.png"]}


def test_rgb_into_a_grey_network_says_luma(tmp_path):
    photo, plant = plant_photo(16, 16)
    save(tmp_path / "images" / "a.png", photo)
    save(tmp_path / "images" / "b.png", photo[:, :, 0])
    for name in ("a", "b"):
        save(tmp_path / "masks" / f"{name}.png", plant * np.uint8(255))
    pairs = pair_files(tmp_path / "images", tmp_path / "masks")[0]
    with pytest.warns(UserWarning, match=re.escape("RGB (1): converted to grey (ITU-R 601 luma")):
        load_pairs(pairs, 1, 2, None, False, False)
