"""Tiled inference's memory savings: decoding in row bands into a caller's array, and the photo held inside
the buffer of its own probabilities. Every saving must leave the results bit for bit as they were."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import make_model
from PIL import Image

from deepplantphenomics.data import io
from deepplantphenomics.data.dataset import pixel_statistics
from deepplantphenomics.data.io import ImageReadError, match_depth, pixel_scale, read_image, read_image_into
from deepplantphenomics.data.patches import predict_tiled
from deepplantphenomics.inference import as_numpy, read_into_result


def _files(folder: Path) -> dict[str, Path]:
    """Small files of every kind ``read_image`` accepts, 37 x 29 pixels (odd, so strips do not divide it)."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (37, 29), dtype=np.uint8)
    files = {}

    def save(name: str, image: Image.Image, **kwargs) -> None:
        files[name] = folder / name
        image.save(files[name], **kwargs)

    save("rgb.png", Image.fromarray(colour))
    save("grey.png", Image.fromarray(grey))
    save("rgba.png", Image.fromarray(rng.integers(0, 256, (37, 29, 4), dtype=np.uint8)))
    save("grey_alpha.png", Image.fromarray(rng.integers(0, 256, (37, 29, 2), dtype=np.uint8)))
    save("grey16.png", Image.fromarray(rng.integers(0, 65536, (37, 29), dtype=np.uint16)))
    save("bits.png", Image.fromarray(grey > 127))
    save("palette.png", Image.fromarray(grey % 4).convert("P"))
    save("cmyk.jpg", Image.fromarray(colour).convert("CMYK"), quality=95)
    save("rgb.jpg", Image.fromarray(colour), quality=95)
    save("rgb.bmp", Image.fromarray(colour))
    # Pillow opens 16-bit PGM as 32-bit "I", converted by its range: read whole.
    save("int32.pgm", Image.fromarray(grey.astype(np.uint16) * 3))
    save("int32_small.pgm", Image.fromarray(grey.astype(np.uint16) * 3 // 3))  # range fits in 8 bits
    files["rgb16.tif"] = folder / "rgb16.tif"  # tifffile: read whole
    tifffile.imwrite(files["rgb16.tif"], rng.integers(0, 65536, (37, 29, 3), dtype=np.uint16))
    return files


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setattr(io, "_STRIP_PIXELS", 29 * 5)  # bands of 5 rows: 8 bands, the last one of 2 rows
    return _files(tmp_path)


def _into(path: Path, depth: int | None = None) -> tuple[np.ndarray, list]:
    calls = []

    def allocate(shape, dtype):
        calls.append((shape, np.dtype(dtype)))
        return np.full(shape, 7, dtype=dtype)

    return read_image_into(path, allocate, depth), calls


@pytest.mark.parametrize("depth", [None, 1, 3])
def test_read_image_into_equals_read_image(files, depth):
    for name, path in files.items():
        want = read_image(path) if depth is None else match_depth(read_image(path), depth, path)
        got, calls = _into(path, depth)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), name
        assert calls == [(want.shape, want.dtype)], name  # called once, with the final shape and dtype


def test_read_image_into_errors(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        _into(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match="Cannot read image file '.*broken.png'"):
        _into(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="has 3 channels but the network expects 4"):
        _into(files["rgb.png"], depth=4)
    with pytest.raises(ValueError, match="argument `allocate`: expected it to return an array of shape"):
        read_image_into(files["rgb.png"], lambda shape, dtype: np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="argument `allocate`"):
        read_image_into(files["rgb.png"], lambda shape, dtype: None)


def test_read_image_into_makes_no_image_sized_copy(tmp_path, monkeypatch):
    """``read_image`` holds 2 image-sized copies at once (``tobytes`` chunks and their join); bands do not."""
    monkeypatch.setattr(io, "_STRIP_PIXELS", 64 * 16)
    path = tmp_path / "big.png"
    image = np.random.default_rng(1).integers(0, 256, (512, 640, 3), dtype=np.uint8)
    Image.fromarray(image).save(path)
    out = np.empty(image.shape, np.uint8)

    def peak(read) -> int:
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(lambda: read_image(path)) > 2 * image.nbytes
    assert peak(lambda: read_image_into(path, lambda shape, dtype: out)) < image.nbytes / 4
    assert np.array_equal(out, image)


@pytest.mark.parametrize(
    ("name", "depth", "channels", "inside"),
    [
        ("rgb.png", 3, 1, True),  # 3 bytes per pixel in 4
        ("grey.png", 3, 1, True),
        ("rgb.png", 1, 1, True),
        ("grey16.png", 1, 1, True),  # 2 in 4
        ("rgb16.tif", 3, 1, False),  # 6 bytes per pixel do not fit in 4: an array of its own
        ("rgb16.tif", 3, 2, True),  # 6 in 8
    ],
)
def test_read_into_result_holds_the_image_at_the_end_of_the_result(files, name, depth, channels, inside):
    result, image = read_into_result(files[name], depth, channels)
    want = match_depth(read_image(files[name]), depth)
    assert result.shape == (*want.shape[:2], channels) and result.dtype == np.float32
    assert result.flags.c_contiguous
    assert image.dtype == want.dtype and np.array_equal(image, want)
    assert image.flags.c_contiguous and image.flags.writeable
    assert np.shares_memory(result, image) == inside
    if inside:  # the image ends where the result ends
        end = result.__array_interface__["data"][0] + result.nbytes
        assert image.__array_interface__["data"][0] + image.nbytes == end


def _predict_for(channels: int):
    weight = torch.rand((channels, 3, 1, 1), generator=torch.Generator().manual_seed(channels))

    def predict(tiles):  # position-dependent and mixes the input channels: any misplaced pixel shows
        tiles = tiles.expand(-1, 3, -1, -1) if tiles.shape[1] == 1 else tiles
        logits = (tiles[:, None] * weight[None]).sum(2) + tiles[:, :1].cumsum(-1) / 50
        return torch.sigmoid(logits) if channels == 1 else torch.softmax(logits, dim=1)

    return predict


@pytest.mark.parametrize(
    ("dtype", "depth", "channels"),
    [(np.uint8, 3, 1), (np.uint8, 1, 1), (np.uint16, 1, 1), (np.uint8, 3, 3), (np.uint16, 3, 2)],
)
@pytest.mark.parametrize(("height", "width", "batch_size"), [(150, 97, 3), (64, 200, 4), (33, 129, 5)])
def test_tiled_result_written_over_the_image_it_reads_is_unchanged(
    dtype, depth, channels, height, width, batch_size
):
    """The image stored in the result's last bytes is overwritten row by row only after it has been read."""
    rng = np.random.default_rng(height + channels)
    raw = rng.integers(0, np.iinfo(dtype).max + 1, (height, width, depth)).astype(dtype)
    scale = pixel_scale(raw.dtype)
    stats = pixel_statistics(torch.from_numpy(raw).permute(2, 0, 1), scale)

    def prepare(tiles):
        return tiles.float().div_(scale).sub_(stats[0]).div_(stats[1])

    predict = _predict_for(channels)
    want = predict_tiled(
        predict, torch.from_numpy(raw).permute(2, 0, 1), 32, 48, batch_size=batch_size, prepare=prepare
    )

    result = np.empty((height, width, channels), np.float32)
    size = raw.nbytes
    assert size <= result.nbytes
    inside = result.reshape(-1).view(np.uint8)[result.nbytes - size :].view(dtype).reshape(raw.shape)
    inside[...] = raw
    out = torch.from_numpy(result).permute(2, 0, 1)
    got = predict_tiled(
        predict,
        torch.from_numpy(inside).permute(2, 0, 1),
        32,
        48,
        batch_size=batch_size,
        prepare=prepare,
        out=out,
    )
    assert got is out
    assert np.array_equal(result, as_numpy(want))


def test_predict_tiled_out_validation():
    image = torch.rand(3, 40, 50)
    predict = _predict_for(2)
    with pytest.raises(TypeError, match="argument `out`: expected a floating-point torch.Tensor"):
        predict_tiled(predict, image, 16, 16, out=torch.zeros(2, 40, 50, dtype=torch.int32))
    with pytest.raises(TypeError, match="argument `out`"):
        predict_tiled(predict, image, 16, 16, out=np.zeros((2, 40, 50), np.float32))
    with pytest.raises(ValueError, match=r"argument `out`: expected a tensor of shape \(K, 40, 50\)"):
        predict_tiled(predict, image, 16, 16, out=torch.zeros(2, 40, 51))
    with pytest.raises(ValueError, match="argument `out`: expected 2 channels"):
        predict_tiled(predict, image, 16, 16, out=torch.zeros(3, 40, 50))
    out = torch.zeros(2, 40, 50, dtype=torch.float64)
    assert predict_tiled(predict, image, 16, 16, out=out) is out
    assert torch.equal(out.float(), predict_tiled(predict, image, 16, 16))


@pytest.mark.parametrize(
    ("name", "depth", "classes"), [("rgb.png", 3, 2), ("grey16.png", 1, 2), ("rgb.png", 3, 3)]
)
def test_tiled_forward_pass_returns_the_blend_of_the_decoded_image(tmp_path, files, name, depth, classes):
    """The public result is the same float32 array as tiling a separately decoded image (the old way)."""
    model = make_model(tmp_path / "state", size=16, channels=depth, network=False, debug=False)
    model.set_patch_size(16, 16)
    if classes > 2:
        model.set_num_segmentation_classes(classes)
    model.use_predefined_model("u-net")
    got = model.forward_pass_with_file_inputs([files[name]])

    network = model.build_network().eval()
    raw = match_depth(read_image(files[name]), depth)
    scale = pixel_scale(raw.dtype)
    pixels = torch.from_numpy(raw).permute(2, 0, 1)
    stats = pixel_statistics(pixels, scale)

    def predict(tiles):
        logits = network(tiles).float()
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    def prepare(tiles):
        return tiles.float().div_(scale).sub_(stats[0]).div_(stats[1])

    with torch.inference_mode():
        want = predict_tiled(predict, pixels, 16, 16, batch_size=4, prepare=prepare)
    channels = 1 if classes == 2 else classes
    assert got.shape == (1, *raw.shape[:2], channels) and got.dtype == np.float32
    assert np.array_equal(got[0], as_numpy(want))


_MAPPED_PROBE = """
import ctypes, ctypes.util, sys
import numpy as np
from deepplantphenomics import runtime

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2, all ten fields: it is returned by value
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(name, ctypes.c_size_t) for name in names.split()]

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
if not runtime.tune_allocator() or not hasattr(libc, "mallinfo2"):
    print("skip")
    sys.exit()
libc.mallinfo2.restype = MallInfo2

def mapped():  # whether a block larger than the heap's free memory is mapped
    before = libc.mallinfo2().hblkhd
    block = np.ones(512 << 20, np.uint8)
    grown = libc.mallinfo2().hblkhd - before
    del block
    return grown >= 512 << 20

results = []
with runtime.mapped_allocations():
    with runtime.mapped_allocations():
        results.append(mapped())
    results.append(mapped())  # the inner exit does not end the outer one
results.append(mapped())  # the heap grows (and, untrimmed, keeps the room afterwards)
print(results)
"""


def test_mapped_allocations_map_blocks_the_heap_cannot_hold_only_inside_and_nest():
    """Tuned, a block too large for the heap's free memory grows the heap; within the context it is mapped.

    In a fresh process: once the heap has grown, its free memory would serve the next block either way."""
    env = {**os.environ, "DPP_MALLOC_TUNING": "1"}
    proc = subprocess.run([sys.executable, "-c", _MAPPED_PROBE], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if proc.stdout.strip() == "skip":
        pytest.skip("malloc tuning is not available here (not glibc 2.33+)")
    assert proc.stdout.strip() == "[True, True, False]"
