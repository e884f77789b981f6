"""Shared fixtures: tiny generated datasets, the shared real-data folder, and the seed network.

Everything here is small (64x64 images, a handful of files) so that each test runs in well under a second
on one core; the end-to-end test builds its own, larger dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import deepplantphenomics as dpp
from deepplantphenomics.synthetic import write_synthetic_dataset

SIZE = 64
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    # Other jobs share the machine's cores; one intra-op thread also makes CPU results reproducible.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Memory-layout decisions (runtime.choose_layout) are cached per machine: tests keep theirs in a folder of
    # their own, never in the user's home (subprocesses inherit the variable).
    previous = os.environ.get("DPP_CACHE_DIR")
    os.environ["DPP_CACHE_DIR"] = str(tmp_path_factory.mktemp("dpp-cache"))
    yield
    if previous is None:
        os.environ.pop("DPP_CACHE_DIR", None)
    else:
        os.environ["DPP_CACHE_DIR"] = previous


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """Eight generated 64x64 RGB images and their 0/255 masks: (images_dir, masks_dir)."""
    return write_synthetic_dataset(tmp_path / "tiny", n_images=8, height=SIZE, width=SIZE, seed=0)


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the repository (``../shared/data``); skips when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real datasets not available: '{SHARED_DATA}' does not exist (only on the project's machines)"
        )
    return SHARED_DATA


def add_seed_network(
    model: dpp.SemanticSegmentationModel, channels: int = 3, batch_norm: bool = False
) -> None:
    """Declare the network of DPP's semantic segmentation example (three 'SAME' convolutions + output).

    ``model`` must already have its image dimensions set.
    """
    model.add_input_layer()
    model.add_convolutional_layer([3, 3, channels, 16], 1, "relu", batch_norm=batch_norm)
    model.add_convolutional_layer([3, 3, 16, 32], 1, "relu", batch_norm=batch_norm)
    model.add_convolutional_layer([5, 5, 32, 32], 1, "relu", batch_norm=batch_norm)
    model.add_output_layer()


def make_model(
    save_dir: Path,
    size: int = SIZE,
    channels: int = 3,
    seed: int = 0,
    network: bool = True,
    **kwargs,
) -> dpp.SemanticSegmentationModel:
    """A model configured like the seed example on ``size`` x ``size`` images, saving into ``save_dir``."""
    kwargs.setdefault("save_checkpoints", False)
    model = dpp.SemanticSegmentationModel(save_dir=save_dir, **kwargs)
    model.set_random_seed(seed)
    model.set_batch_size(4)
    model.set_image_dimensions(size, size, channels)
    model.set_maximum_training_epochs(1)
    if network:
        add_seed_network(model, channels)
    return model
