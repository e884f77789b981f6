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
    .dpp-training.lock  held by the training run writing into the folder (one at a time)

The weights' metadata and settings.json carry the digest of the network in architecture.json (its layers and
shapes), so a state is only ever loaded as one save, never as the weights of one run with the architecture of
another.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from deepplantphenomics._version import __version__
from deepplantphenomics.layers import comparable_spec
from deepplantphenomics.network import SKIP_SEMANTICS_LEGACY, check_skip_semantics, layer_label

# The key tying model.safetensors (metadata) and settings.json to the architecture.json they were saved with.
from deepplantphenomics.settings import ARCHITECTURE_DIGEST, Settings

WEIGHTS = "model.safetensors"
ARCHITECTURE = "architecture.json"
SETTINGS = "settings.json"
SPLIT = "split.json"
CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1


def _disk_full(exc: BaseException) -> bool:
    """Whether a failed write ran out of space: OSError ENOSPC/EDQUOT, safetensors' wrapped 'os error 28', or
    torch.save's short-write check (which reports neither errno nor cause)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    if isinstance(exc, SafetensorError):
        return f"os error {errno.ENOSPC}" in text or "No space left" in text
    return isinstance(exc, RuntimeError) and "unexpected pos" in text and "inline_container" in text


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

    Raises:
        OSError: "No space left on device while writing '<path>'" (errno ENOSPC) when the disk or quota is full;
            ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        try:
            write(tmp)
            # Without the fsync a crash soon after the rename can leave an empty file where the good one was.
            with open(tmp, "rb+") as written:
                os.fsync(written.fileno())
        except (OSError, RuntimeError, SafetensorError) as exc:
            if not _disk_full(exc):
                raise
            full = OSError(f"No space left on device while writing '{path}'; its previous version is kept.")
            full.errno = errno.ENOSPC
            raise full from exc
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


# ----------------------------------------------------------------------------------- one state, one writer
LOCK = ".dpp-training.lock"


class SaveDirInUseError(RuntimeError):
    """Another training run holds the save_dir."""


class SaveDirLock:
    """An exclusive lock on a state folder, held by one training run at a time.

    It is an OS lock (``flock`` on ``save_dir/.dpp-training.lock``; ``msvcrt.locking`` on Windows) held through an
    open file, so the OS releases it when the process ends however it ends (kill -9 included): a crashed run never
    leaves the folder locked. The lock file itself stays (it says who last trained there).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK
        self._handle = None

    def acquire(self) -> SaveDirLock:
        """Take the lock, or raise at once.

        Raises:
            SaveDirInUseError: another process (or another model in this one) is training into the folder.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open as long as the lock
        try:
            _lock_file(handle)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                # The file system cannot lock (some network mounts): train, but say what is not guarded.
                handle.close()
                warnings.warn(
                    f"Cannot lock save_dir '{self.directory}' ({exc.strerror}): a second training run into it would "
                    "not be refused.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return self
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SaveDirInUseError(
                f"Another training run is using save_dir '{self.directory}' ({holder}). Two runs in one folder "
                "would overwrite each other's model: wait for that run to finish, or give this one another "
                "save_dir. (The lock is released when that process ends, even if it crashes.)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the lock
            self._handle = None

    def __enter__(self) -> SaveDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_file(handle) -> None:
    """Lock an open file without waiting; OSError when someone else holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


# What the weights belong to: the network's layers and shapes. Other keys of architecture.json (library version,
# preprocessing notes, skip_semantics) may differ between versions or be edited without making weights unfit.
DIGEST_KEYS = ("layers", "input_shape", "out_channels", "num_classes")


def architecture_digest(architecture: dict[str, Any]) -> str:
    """SHA-256 of the network an architecture.json describes (its ``DIGEST_KEYS``; key order does not matter)."""
    network = {key: architecture.get(key) for key in DIGEST_KEYS}
    text = json.dumps(network, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def architecture_record(
    specs: list[dict[str, Any]],
    input_shape: tuple[int, int, int],
    out_channels: int,
    settings: Settings,
    skip_semantics: str,
) -> dict[str, Any]:
    """The content of architecture.json: the network (layers, input shape, outputs) and its preprocessing.

    Args:
        specs: the complete network's layer specs.
        input_shape: (channels, height, width) the network is fed.
        out_channels: 1 for binary models, else the number of classes.
        settings: the model's ``Settings`` (classes, normalisation, image and patch size).
        skip_semantics: the skip-connection rule the network computes with.
    """
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "skip_semantics": skip_semantics,
        "layers": specs,
        "input_shape": list(input_shape),
        "out_channels": out_channels,
        "num_classes": settings.num_classes,
        "preprocessing": {
            "scale": "pixel / 255 (8-bit) or / 65535 (16-bit)",
            "normalization": settings.input_normalization,
            "image_size": [settings.image_height, settings.image_width],
            "resize_images": settings.resize_images,
            "crop_or_pad_images": settings.crop_or_pad_images,
            "patch_size": [settings.patch_height, settings.patch_width] if settings.patching else None,
        },
    }


def save_state_files(
    directory: str | os.PathLike,
    architecture: dict[str, Any],
    settings: dict[str, Any],
    network: torch.nn.Module,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write architecture.json, settings.json and model.safetensors, each atomically, tied together.

    The weights' metadata and settings.json record the digest of the architecture they belong to, so a reader
    that catches a save half done (or a folder left holding files of two runs) can tell; see
    ``read_state_files``.
    """
    directory = Path(directory)
    digest = architecture_digest(architecture)
    write_json(directory / ARCHITECTURE, architecture)
    write_json(directory / SETTINGS, {**settings, ARCHITECTURE_DIGEST: digest})
    save_weights(directory / WEIGHTS, network, {**(metadata or {}), ARCHITECTURE_DIGEST: digest})


def read_state_files(
    directory: str | os.PathLike, attempts: int = 25, wait: float = 0.2, with_settings: bool = True
) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """(architecture, settings, weights) of one save, never parts of two.

    Files written before the digest existed are taken as they are. When the digests differ, a save is under way
    (or was cut off): the files are read again, for up to ``attempts * wait`` seconds. With
    ``with_settings=False`` settings.json is not read (an empty dict is returned in its place).

    Raises:
        FileNotFoundError: a file is missing (named).
        ValueError: a file is corrupt, or the files stay from different saves (named).
    """
    directory = Path(directory)
    problem = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(wait)
        architecture = read_json(directory / ARCHITECTURE)
        settings = read_json(directory / SETTINGS) if with_settings else {}
        weights, metadata = load_weights_with_metadata(directory / WEIGHTS)
        if not isinstance(architecture, dict) or not isinstance(settings, dict):
            return architecture, settings, weights  # the caller names what is wrong with them
        digest = architecture_digest(architecture)
        saved = {
            SETTINGS: settings.pop(ARCHITECTURE_DIGEST, None),
            WEIGHTS: metadata.get(ARCHITECTURE_DIGEST),
        }
        stale = [name for name, value in saved.items() if value is not None and value != digest]
        if not stale:
            return architecture, settings, weights
        problem = (
            f"The saved state in '{directory}' mixes files of different saves: {' and '.join(stale)} belong to "
            f"another network than {ARCHITECTURE} (a save by another run was cut off, or files were copied "
            "in from elsewhere). Save or train the model into this folder again, or restore the files together."
        )
    raise ValueError(problem)


@dataclass(frozen=True)
class SavedState:
    """A state folder read and checked: what ``dpp.load_model`` rebuilds a model from."""

    settings: Settings
    layers: list[dict[str, Any]]  # the layer specs, input layer first
    input_shape: tuple[int, ...]  # (channels, height, width) of the network input
    out_channels: int
    skip_semantics: str  # how its skip connections compute (network.SKIP_SEMANTICS_*)
    weights: dict[str, torch.Tensor]


def read_saved_state(directory: str | os.PathLike) -> SavedState:
    """Read the architecture, settings and weights of one save in ``directory`` and check they fit together.

    Raises:
        FileNotFoundError: the folder or one of its files is missing (named).
        ValueError: a file is corrupt, incomplete, of another save, or the settings disagree with the network
            (the file and key are named).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Saved state folder does not exist: '{directory}'.")
    # One save's files, never the weights of one run with the architecture of another.
    arch, saved_settings, weights = read_state_files(directory)
    if not isinstance(saved_settings, dict):
        raise ValueError(
            f"Saved settings '{directory / SETTINGS}' hold {type(saved_settings).__name__}, "
            "not a JSON object of settings."
        )
    # States written before input normalisation was a setting fed the network [0, 1] pixels.
    saved_settings.setdefault("input_normalization", "none")
    # A hand-edited settings.json is held to the setters' rules and must fit the saved network.
    settings = Settings.from_dict(saved_settings, source=directory / SETTINGS)
    try:
        layers = arch["layers"]
        input_shape = tuple(arch["input_shape"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"Saved state in '{directory}' is incomplete: missing {exc}.") from None
    check_settings_match(settings, arch, directory)
    return SavedState(
        settings, layers, input_shape, int(arch["out_channels"]), skip_semantics_of(arch), weights
    )


def load_weights_with_metadata(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, read through one open file (so from one version of it)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Saved state is missing its weights file '{path}'.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"Weights file '{path}' is corrupt or truncated: {exc}") from None


def check_settings_match(settings: Any, architecture: dict[str, Any], directory: Path) -> None:
    """Raise ValueError naming the key when settings.json disagrees with the network in architecture.json.

    Args:
        settings: the ``Settings`` read from settings.json (already checked value by value).
        architecture: the parsed architecture.json.
        directory: the state folder, for the message.
    """
    depth, height, width = (list(architecture.get("input_shape") or []) + [None, None, None])[:3]
    patching = settings.patch_height is not None
    size_keys = ("patch_height", "patch_width") if patching else ("image_height", "image_width")
    expected = {"image_depth": depth, size_keys[0]: height, size_keys[1]: width}
    if "num_classes" in architecture:
        expected["num_classes"] = architecture["num_classes"]
    preprocessing = architecture.get("preprocessing") or {}
    for key, saved_key in (
        ("input_normalization", "normalization"),
        ("resize_images", "resize_images"),
        ("crop_or_pad_images", "crop_or_pad_images"),
    ):
        if saved_key in preprocessing:
            expected[key] = preprocessing[saved_key]
    for key, value in expected.items():
        if getattr(settings, key) != value:
            raise ValueError(
                f"Saved settings '{directory / SETTINGS}' do not match the network in '{directory / ARCHITECTURE}': "
                f"`{key}` is {getattr(settings, key)!r} but the network was built for {value!r}. Correct `{key}` "
                f"in {SETTINGS} (or save the state again from the script that trained it)."
            )
    out_channels = architecture.get("out_channels")
    if out_channels is not None and out_channels != (
        1 if settings.num_classes == 2 else settings.num_classes
    ):
        raise ValueError(
            f"Saved settings '{directory / SETTINGS}' do not match the network in '{directory / ARCHITECTURE}': "
            f"`num_classes` is {settings.num_classes} but the network has {out_channels} output channel(s)."
        )
