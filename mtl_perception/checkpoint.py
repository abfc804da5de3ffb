"""Model checkpoints: safetensors weights + JSON metadata, never a pickle.

One `.safetensors` file holds the weights and, in its header metadata, a JSON
document with everything needed to use the model without any other file: the
model config, task and class names, input preprocessing and training
provenance. Loading rebuilds the model from that metadata alone. A SHA-256 of
the weights is stored too, so a flipped byte inside the tensor data (which the
safetensors header cannot notice) is refused rather than silently used.
Writes are atomic: a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mtl_perception.models import ModelConfig, MultiTaskModel, build_model
from mtl_perception.models.state import state_mismatch
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.settings import SettingsError, from_dict, to_dict

METADATA_KEY = "mtl_perception"
FORMAT_VERSION = 1
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save zip archives, raw pickles


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its model, read without loading the weights."""

    model: ModelConfig
    class_names: tuple[tuple[str, ...], ...]
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.model.num_tasks:
            raise ValueError(
                f"class names for {len(self.class_names)} tasks, model has {self.model.num_tasks}"
            )
        for task, names, count in zip(
            self.model.task_names, self.class_names, self.model.num_classes
        ):
            if len(names) != count:
                raise ValueError(f"task {task!r}: {len(names)} class names for {count} classes")

    def classes_of(self, task: str) -> tuple[str, ...]:
        return self.class_names[self.model.task_names.index(task)]


@dataclass
class LoadedCheckpoint:
    model: MultiTaskModel
    info: CheckpointInfo


def save_checkpoint(path: str | Path, model: MultiTaskModel, info: CheckpointInfo) -> None:
    """Write weights + metadata atomically (temporary file in the same folder, then rename)."""
    if model.config != info.model:
        raise ValueError("the model's config differs from the checkpoint info's model config")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _check_float32(tensors)
    document = {
        "format_version": FORMAT_VERSION,
        "model": to_dict(info.model),
        "class_names": to_dict(info.class_names),
        "preprocess": to_dict(info.preprocess),
        "provenance": to_dict(info.provenance),
        "weights_sha256": _weights_digest(tensors),
    }
    metadata = {METADATA_KEY: json.dumps(document, sort_keys=True)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """The metadata of a checkpoint, without reading the weights.

    Refuses what `load_checkpoint` refuses about the file and its metadata;
    only `load_checkpoint` checks the weights themselves.
    """
    path = Path(path)
    with _open(path) as handle:
        return _parse_info(path, handle.metadata())


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from the metadata and load its weights; refuse anything off."""
    path, target = Path(path), torch.device(device)  # a bad device name fails before any work
    with _open(path) as handle:
        metadata = handle.metadata()
        info = _parse_info(path, metadata)
        try:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        except SafetensorError as exc:
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {exc}") from exc
    # Optional so that hand-assembled checkpoints (converters, tests) still load;
    # save_checkpoint always writes it.
    expected_digest = json.loads(metadata[METADATA_KEY]).get("weights_sha256")
    if expected_digest is not None and _weights_digest(tensors) != expected_digest:
        raise CheckpointError(f"checkpoint {path} is corrupt: its weights fail their checksum")
    model = build_model(info.model)
    _check_weights_fit(path, model, tensors)
    _check_finite(path, tensors)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return LoadedCheckpoint(model.to(target), info)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`; clean up on failure.

    The folder is fsynced after the rename too: without it a power cut can
    forget the rename and leave the old file (or none) in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    # O_EXCL: never reuse someone else's file. Creating it with 0o666 tells us the
    # usual mode (0o666 minus the umask) without setting the process umask, which
    # other threads share.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    try:
        write(tmp)
        tmp.chmod(mode)  # safetensors' save_file leaves its output 0600
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is done
    finally:
        os.close(fd)


def _open(path: Path) -> Any:
    """A `safe_open` handle on `path`, or one CheckpointError saying what the file is."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    with open(path, "rb") as handle:
        head = handle.read(9)
    # A safetensors file starts with an 8-byte header length, then its JSON header.
    looks_like_safetensors = len(head) == 9 and head[8:9] == b"{"
    if not looks_like_safetensors and head.startswith(_PICKLE_MAGIC):
        raise CheckpointError(
            f"checkpoint {path} is a pickle (torch.save) file, not safetensors; "
            "mtl_perception never unpickles checkpoints"
        )
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated (not valid safetensors): {exc}"
        ) from exc


def _parse_info(path: Path, metadata: Mapping[str, str] | None) -> CheckpointInfo:
    if not metadata or METADATA_KEY not in metadata:
        raise CheckpointError(
            f"checkpoint {path} has no {METADATA_KEY} metadata: not one of our checkpoints"
        )
    try:
        document = json.loads(metadata[METADATA_KEY])
        if not isinstance(document, dict):
            raise ValueError(f"expected a JSON object, got {type(document).__name__}")
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {path} has format version {version}; "
                f"this mtl_perception reads {FORMAT_VERSION}"
            )
        return CheckpointInfo(
            model=from_dict(ModelConfig, _section(document, "model"), "model"),
            class_names=_class_names(document["class_names"]),
            preprocess=from_dict(PreprocessConfig, _section(document, "preprocess"), "preprocess"),
            provenance=dict(_section(document, "provenance", required=False)),
        )
    except CheckpointError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, SettingsError) as exc:
        raise CheckpointError(f"checkpoint {path} has invalid metadata: {exc}") from exc


def _section(document: Mapping[str, Any], key: str, required: bool = True) -> Mapping[str, Any]:
    """A JSON object inside the metadata. `from_dict` would read null as "all defaults",
    which for a checkpoint would rebuild some other model than the one saved."""
    if key not in document:
        if required:
            raise KeyError(key)
        return {}
    value = document[key]
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a JSON object, got {type(value).__name__}")
    return value


def _class_names(value: Any) -> tuple[tuple[str, ...], ...]:
    """A list of lists of strings; a bare string would otherwise count as its letters."""
    if not isinstance(value, list) or not all(isinstance(names, list) for names in value):
        raise ValueError("class_names: expected a list of lists of class names per task")
    for names in value:
        for name in names:
            if not isinstance(name, str):
                raise ValueError(f"class_names: expected strings, got {name!r}")
    return tuple(tuple(names) for names in value)


def _check_weights_fit(
    path: Path, model: MultiTaskModel, tensors: Mapping[str, torch.Tensor]
) -> None:
    problems = state_mismatch(model.state_dict(), tensors)
    if problems:
        raise CheckpointError(
            f"checkpoint {path}: weights do not match the model its metadata describes: "
            + "; ".join(problems)
        )


def _check_finite(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """A diverged training run saves NaN weights; the node would publish NaN scores."""
    bad = sorted(
        k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())
    )
    if bad:
        raise CheckpointError(
            f"checkpoint {path} has non-finite (NaN or infinite) weights: "
            f"{len(bad)} tensors (first: {bad[:3]})"
        )


def _check_float32(tensors: Mapping[str, torch.Tensor]) -> None:
    """Checkpoints hold float32 weights, the dtype `build_model` rebuilds on load.

    Half precision is an inference-time choice (autocast), not a checkpoint format.
    """
    other = sorted(
        k for k, v in tensors.items() if v.is_floating_point() and v.dtype != torch.float32
    )
    if other:
        raise ValueError(
            f"checkpoints hold float32 weights; {other[0]} is {tensors[other[0]].dtype}: "
            "call model.float() before saving"
        )


def _weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
