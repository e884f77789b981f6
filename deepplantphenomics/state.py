"""Saving and loading a trained state: weights as safetensors, architecture/settings/split as JSON.

Every write goes through :func:`atomic_write` (the package's one atomic writer, also used for reports, ONNX
files and ``metrics.csv``): a temporary file in the same folder, flushed to disk and renamed into place, so an
interrupted save never leaves a half-written file where a good one was.

A state directory holds:
    model.safetensors   the network weights
    architecture.json   layer specs, input shape, output channels, preprocessing (what inference needs), and
                        ``skip_semantics``: how its skip connections compute (absent: saved before DPP's rule)
    settings.json       every hyperparameter
    split.json          the train/validation/test partition by file name
    checkpoint.pt       (optional) optimiser/scheduler state and epoch, for resuming
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepplantphenomics.layers import comparable_spec
from deepplantphenomics.network import SKIP_SEMANTICS_LEGACY, check_skip_semantics, layer_label

WEIGHTS = "model.safetensors"
ARCHITECTURE = "architecture.json"
SETTINGS = "settings.json"
SPLIT = "split.json"
CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Write a file so that readers see the old file or the new one, never half of either.

    ``write(tmp)`` writes the content to a temporary file in the same folder; it is flushed to disk (fsync)
    and renamed over ``path``, and removed again if anything fails. The file gets the permissions any new
    file would get (the umask's), not ``mkstemp``'s private 0600, so a model folder or a report on a shared
    server can be read by colleagues. Every file this package writes goes through here.

    Args:
        path: the file to (re)place; missing parent folders are created.
        write: called with the temporary file's path.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(tmp)
        # Without the fsync a crash soon after the rename can leave an empty file where the good one was.
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (see :func:`atomic_write`); returns ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically write ``text`` to ``path`` (see :func:`atomic_write`); returns ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding=encoding))


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, allow_nan=True)
            handle.write("\n")

    atomic_write(path, write)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Saved state is missing '{path}'.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"Saved state file '{path}' is corrupt: {exc}") from None


def save_weights(
    path: str | os.PathLike, network: torch.nn.Module, metadata: dict[str, str] | None = None
) -> None:
    """Atomically write the network's state dict as safetensors (contiguous CPU tensors)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata or {}))


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Saved state is missing its weights file '{path}'.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"Weights file '{path}' is corrupt or truncated: {exc}") from None


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many kinds for a damaged pickle/zip
        raise ValueError(f"Checkpoint file '{path}' is corrupt or truncated: {exc}") from None


def skip_semantics_of(architecture: dict[str, Any]) -> str:
    """The skip-connection rule a saved network was trained with.

    States written before the rule was recorded used ``SKIP_SEMANTICS_LEGACY`` (the input layer as the first
    residual source), so a missing key means that rule.

    Raises:
        ValueError: the state names a rule this version does not know.
    """
    return check_skip_semantics(architecture.get("skip_semantics", SKIP_SEMANTICS_LEGACY))


def check_architecture(saved: list[dict[str, Any]], declared: list[dict[str, Any]], directory: Path) -> None:
    """Raise ValueError naming the first layer where a declared network differs from the saved one.

    Keys missing from an older saved spec take the values that state was trained with, and options that only
    affect training (batch norm decay, per-layer regularisation) may differ.
    """
    for index, (a, b) in enumerate(zip(saved, declared)):
        if comparable_spec(a) != comparable_spec(b):
            raise ValueError(
                f"The network declared now differs from the one saved in '{directory}' at "
                f"{layer_label(index, b)}: saved {a}, declared {b}."
            )
    if len(saved) != len(declared):
        shorter = "fewer" if len(declared) < len(saved) else "more"
        index = min(len(saved), len(declared))
        raise ValueError(
            f"The network declared now has {shorter} layers ({len(declared)}) than the one saved in "
            f"'{directory}' ({len(saved)}); the first difference is at layer {index}."
        )


def load_state_dict_checked(network: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load weights, turning torch's key/shape errors into a ValueError that names the file and layer."""
    own = network.state_dict()
    for key, value in own.items():
        if key not in weights:
            raise ValueError(
                f"Weights file '{path}' has no tensor '{key}': it was saved from another network."
            )
        if tuple(weights[key].shape) != tuple(value.shape):
            raise ValueError(
                f"Weights file '{path}': tensor '{key}' has shape {tuple(weights[key].shape)} but the network "
                f"expects {tuple(value.shape)}."
            )
    extra = sorted(set(weights) - set(own))
    if extra:
        raise ValueError(f"Weights file '{path}' has tensors the network lacks, e.g. '{extra[0]}'.")
    network.load_state_dict(weights)
