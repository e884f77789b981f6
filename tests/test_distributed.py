"""Issue 6: the same script under `torchrun --nproc_per_node=2` trains with DDP (gloo on CPU)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import deepplantphenomics as dpp
from deepplantphenomics import distributed
from deepplantphenomics.synthetic import write_synthetic_dataset

TORCHRUN = Path(sys.executable).with_name("torchrun")

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from safetensors.torch import save_file
    import deepplantphenomics as dpp
    from deepplantphenomics import distributed

    torch.set_num_threads(1)
    out, images, masks = sys.argv[1:4]
    model = dpp.SemanticSegmentationModel(debug=True, save_checkpoints=False, report_rate=1000, save_dir=out)
    model.set_batch_size(4)
    model.set_image_dimensions(48, 48, 3)
    model.set_resize_images(True)
    model.set_test_split(0.2)
    model.set_validation_split(0.1)
    model.set_random_seed(5)
    model.set_maximum_training_epochs(3)
    model.set_augmentation_flip_horizontal(True)
    model.load_dataset_from_directory_with_segmentation_masks(images, masks)
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, 3, 8], 1, "relu", batch_norm=True)
    model.add_convolutional_layer([3, 3, 8, 8], 1, "relu")
    model.add_output_layer()
    model.begin_training()
    weights = {k: v.detach().contiguous() for k, v in model._network.state_dict().items()}
    save_file(weights, f"{out}/rank{distributed.rank()}.safetensors")
    probs = model.forward_pass_with_file_inputs(sorted(__import__("glob").glob(images + "/*.png"))[:5])
    print(f"PREDICTED rank={distributed.rank()} shape={tuple(probs.shape)}", flush=True)
    """
)


def test_shard_and_unshard_round_trip():
    items = list(range(11))
    parts = [items[r::3] for r in range(3)]
    assert distributed.unshard(parts) == items
    assert distributed.shard(items) == items  # single process: everything
    assert distributed.world_size() == 1 and distributed.is_main()


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this Python")
def test_torchrun_two_processes_train_identical_weights(tmp_path):
    images, masks = write_synthetic_dataset(tmp_path / "data", 20, 48, 48, seed=11)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "state"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), str(out), str(images), str(masks)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert output.count("distributed training: world size 2") == 1
    assert output.count("Test loss") == 1  # metrics reported once, by rank 0
    assert "PREDICTED rank=0 shape=(5, 48, 48, 1)" in output
    assert "PREDICTED rank=1 shape=(5, 48, 48, 1)" in output  # every rank gets every result

    a, b = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    saved = load_file(str(out / "model.safetensors"))
    for key in saved:
        assert torch.equal(saved[key], a[key]), key
    model = dpp.load_model(out)  # one saved state that loads and predicts
    probs = model.forward_pass_with_file_inputs([next(images.glob("*.png"))])
    assert probs.shape == (1, 48, 48, 1)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this Python")
def test_torchrun_sharded_segment_writes_one_row_per_image(tmp_path):
    images, _ = write_synthetic_dataset(tmp_path / "data", 7, 40, 56, seed=4)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "deepplantphenomics",
            "segment",
            str(images),
            "--out",
            str(out),
            "--method",
            "exg",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    lines = (out / "results.csv").read_text().splitlines()
    files = sorted(str(p) for p in images.glob("*.png"))
    assert lines[0].startswith("file,")
    assert [line.split(",")[0] for line in lines[1:]] == files  # exactly one row per image, in input order
    assert not list(out.glob(".results.csv.rank*"))  # the per-rank parts were merged and removed
    assert len(list(out.glob("*_mask.png"))) == 7


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this Python")
def test_two_nodes_on_one_host_exit_cleanly_run_after_run(tmp_path):
    """Issue 20.16: `torchrun --nnodes=2 --node_rank=0/1` on one host; every run exits 0 on both nodes.

    DPP_DISTRIBUTED_EXIT_RUNS sets how many runs (default 5; `python bench/distributed_exit.py --runs 20` is the
    acceptance loop, figure in docs/benchmarks.md).
    """
    bench = _bench_module("distributed_exit")
    images, masks = write_synthetic_dataset(tmp_path / "data", 20, 48, 48, seed=11)
    runs = int(os.environ.get("DPP_DISTRIBUTED_EXIT_RUNS", "5"))
    results = [bench.run_once(tmp_path, images, masks, index) for index in range(runs)]
    unclean = [r for r in results if r["codes"] != [0, 0] or not r["loads"]]
    assert not unclean, unclean
