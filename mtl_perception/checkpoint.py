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
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mtl_perception.models import ModelConfig, MultiTaskModel, build_model
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
    """The metadata of a checkpoint, with the same refusals as `load_checkpoint`."""
    path = Path(path)
    with _open(path) as handle:
        return _parse_info(path, handle.metadata())


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from the metadata and load its weights; refuse anything off."""
    path = Path(path)
    with _open(path) as handle:
        metadata = handle.metadata()
        info = _parse_info(path, metadata)
        try:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        except SafetensorError as exc:
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {exc}") from exc
    expected_digest = json.loads(metadata[METADATA_KEY]).get("weights_sha256")
    if expected_digest is not None and _weights_digest(tensors) != expected_digest:
        raise CheckpointError(f"checkpoint {path} is corrupt: its weights fail their checksum")
    model = build_model(info.model)
    _check_weights_fit(path, model, tensors)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return LoadedCheckpoint(model.to(device), info)


def atomic_write(path: Path, write: Any) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`; clean up on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _open(path: Path) -> Any:
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
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {path} has format version {version}; "
                f"this mtl_perception reads {FORMAT_VERSION}"
            )
        return CheckpointInfo(
            model=from_dict(ModelConfig, document["model"], "model"),
            class_names=tuple(tuple(str(n) for n in names) for names in document["class_names"]),
            preprocess=from_dict(PreprocessConfig, document["preprocess"], "preprocess"),
            provenance=dict(document.get("provenance", {})),
        )
    except CheckpointError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, SettingsError) as exc:
        raise CheckpointError(f"checkpoint {path} has invalid metadata: {exc}") from exc


def _check_weights_fit(
    path: Path, model: MultiTaskModel, tensors: Mapping[str, torch.Tensor]
) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first: {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first: {unexpected[:3]})")
    if wrong:
        key = wrong[0]
        problems.append(
            f"{len(wrong)} with wrong shape (first: {key} is {tuple(tensors[key].shape)}, "
            f"metadata says {tuple(own[key].shape)})"
        )
    if problems:
        raise CheckpointError(
            f"checkpoint {path}: weights do not match the model its metadata describes: "
            + "; ".join(problems)
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
