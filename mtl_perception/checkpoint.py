"""Model checkpoints: safetensors weights + JSON metadata, never a pickle.

One `.safetensors` file holds the weights and, in its header metadata, a JSON
document with everything needed to use the model without any other file: the
model config, task and class names, input preprocessing and training
provenance. Loading rebuilds the model from that metadata alone. A SHA-256 of
the metadata and the weights is stored too, so a flipped byte inside the tensor
data (which the safetensors header cannot notice) or an edited class name is
refused rather than silently used.

Loading (and `read_checkpoint_info`) checks: the file kind, then the
checksum over metadata and weights before anything reads the metadata (an
edited class name is a changed checkpoint, not a labels problem), then the
metadata (the same dataclass checks as every other consumer), the tensor
shapes and dtypes against a model built on the `meta` device (no memory) and
the values. Only then is the real model built, so an inflated width in the
metadata is refused before anything is allocated.
Saving refuses whatever loading would refuse, before the file is touched, and
reads the written file's header back before the rename: a diverged run can
never replace a good checkpoint. Writes are atomic: a crash mid-save leaves
the previous file intact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mtl_perception.checkpoint_tensors import (
    check_finite,
    check_float32,
    check_shapes,
    header_shapes,
)
from mtl_perception.digest import (
    canonical,
    changed_parts,
    content_digest,
    document_parts,
    file_sha256,
    weights_digest,
)
from mtl_perception.exits import one_line, os_error_line
from mtl_perception.fileio import atomic_write, regular_file_problem
from mtl_perception.models import ModelConfig, MultiTaskModel, build_model
from mtl_perception.models.archs import clip_length_problem
from mtl_perception.names import class_name_problem
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.settings import SettingsError, from_dict, to_dict

METADATA_KEY = "mtl_perception"
PARTS_KEY = "mtl_perception_parts"  # which section an edit changed (names it in the refusal)
FORMAT_VERSION = 1
# The metadata document's keys in format 1: what save_checkpoint writes, and the
# weights-only digest of early files.
_DOCUMENT_KEYS = frozenset(("format_version", "model", "class_names", "preprocess",
                            "provenance", "sha256", "weights_sha256"))
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save zip archives, raw pickles


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint that cannot be used (or saved); the message names the file and the problem.

    A ValueError too, so that callers that caught the ValueError `save_checkpoint`
    used to raise for a bad model or info keep working.
    """


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its model, read without loading the weights."""

    model: ModelConfig
    class_names: tuple[tuple[str, ...], ...]
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = clip_length_problem(self.model.arch, self.model.frame_differences,
                                      self.preprocess.clip_length)
        if problem is not None:
            raise ValueError(problem)
        if len(self.class_names) != self.model.num_tasks:
            raise ValueError(
                f"class names for {len(self.class_names)} tasks, model has {self.model.num_tasks}"
            )
        for task, names, count in zip(
            self.model.task_names, self.class_names, self.model.num_classes
        ):
            if len(names) != count:
                raise ValueError(f"task {task!r}: {len(names)} class names for {count} classes")
            if len(set(names)) != len(names):
                twice = next(n for n in names if names.count(n) > 1)
                raise ValueError(f"task {task!r}: class name {twice!r} appears twice")
            for name in names:  # the one class-name check (mtl_perception.names)
                if (problem := class_name_problem(name)) is not None:
                    raise ValueError(f"task {task!r}: {problem}")

    def classes_of(self, task: str) -> tuple[str, ...]:
        return self.class_names[self.model.task_names.index(task)]


@dataclass
class LoadedCheckpoint:
    model: MultiTaskModel
    info: CheckpointInfo


def save_checkpoint(path: str | Path, model: MultiTaskModel, info: CheckpointInfo) -> None:
    """Write weights + metadata atomically (temporary file in the same folder, then rename).

    Everything `load_checkpoint` would refuse is refused first, as a
    `CheckpointError`, with the existing file untouched.
    """
    path = Path(path)
    if model.config != info.model:
        raise CheckpointError(
            f"not saving {path}: the model's config differs from the checkpoint info's"
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_float32(path, tensors)
    check_finite(path, tensors, "not saving ")
    document = {
        "format_version": FORMAT_VERSION,
        "model": model_metadata(info.model),
        "class_names": to_dict(info.class_names),
        "preprocess": to_dict(info.preprocess),
        "provenance": to_dict(info.provenance),
    }
    try:
        canonical(document)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"not saving {path}: metadata is not plain JSON: {exc}") from exc
    # The per-section digests sit beside the document (under PARTS_KEY), so earlier
    # releases, which hash the whole document, still read the checkpoint.
    parts = json.dumps(_parts(document, tensors), sort_keys=True)
    document["sha256"] = _digest(document, tensors)
    text = json.dumps(document, sort_keys=True)
    # The metadata as `load_checkpoint` will read it: what it refuses is refused now.
    parsed = _parse_info(path, {METADATA_KEY: text}, "not saving ")
    if (parsed.model, parsed.class_names, parsed.preprocess) != (
        info.model, info.class_names, info.preprocess
    ):
        raise CheckpointError(f"not saving {path}: its metadata does not read back unchanged")
    check_shapes(path, parsed.model, {k: (list(v.shape), v.dtype) for k, v in tensors.items()})

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: text, PARTS_KEY: parts})
        read_checkpoint_info(tmp)  # the header as written reads back (before the rename)

    atomic_write(path, write)


# Fields added after the first checkpoints were written: left out of the metadata while
# they hold their defaults, so a model without a task gate is stored exactly as before
# (and earlier releases still read it).
_LATER_FIELDS = ("gate", "gate_hidden", "gate_context")


def model_metadata(config: ModelConfig) -> dict[str, Any]:
    """The model config as stored in the metadata (see `_LATER_FIELDS`)."""
    data = dict(to_dict(config))
    defaults = to_dict(ModelConfig())
    for key in _LATER_FIELDS:
        if data.get(key) == defaults[key]:
            del data[key]
    return data


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """The metadata of a checkpoint, without reading the weights.

    Refuses what `load_checkpoint` refuses about the file and its metadata;
    only `load_checkpoint` checks the weights themselves.
    """
    path = Path(path)
    with _open(path) as handle:
        metadata, _ = _verified(path, handle)
        return _parse_info(path, metadata)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from the metadata and load its weights; refuse anything off."""
    path, target = Path(path), torch.device(device)  # a bad device name fails before any work
    with _open(path) as handle:
        metadata, tensors = _verified(path, handle)
        info = _parse_info(path, metadata)
        check_shapes(path, info.model, header_shapes(path, handle))  # before building
    check_finite(path, tensors)
    model = build_model(info.model)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return LoadedCheckpoint(model.to(target), info)


def info_from_metadata(path: Path, metadata: Mapping[str, str] | None) -> CheckpointInfo:
    """The checks `read_checkpoint_info` applies, on metadata carried elsewhere
    (an exported ONNX file carries the same document under the same key)."""
    return _parse_info(path, metadata)


def info_metadata(info: CheckpointInfo) -> str:
    """The JSON document a checkpoint's metadata holds for `info` (no checksum)."""
    document = {
        "format_version": FORMAT_VERSION,
        "model": to_dict(info.model),
        "class_names": to_dict(info.class_names),
        "preprocess": to_dict(info.preprocess),
        "provenance": to_dict(info.provenance),
    }
    return json.dumps(document, sort_keys=True)


def checkpoint_sha256(path: str | Path) -> str:
    """SHA-256 of a checkpoint file's bytes: what an export records as its source."""
    return file_sha256(path)


def _open(path: Path) -> Any:
    """A `safe_open` handle on `path`, or one CheckpointError saying what the file is."""
    problem = regular_file_problem(path, "checkpoint")  # a FIFO would block the read forever
    if problem is not None:
        raise CheckpointError(problem)
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as exc:  # unreadable (permissions, I/O error): one line
        raise CheckpointError(f"checkpoint {path}: cannot read it: {os_error_line(exc)}"
                              ) from exc
    # A safetensors file starts with an 8-byte header length, then its JSON header.
    looks_like_safetensors = len(head) == 9 and head[8:9] == b"{"
    if not looks_like_safetensors and head.startswith(_PICKLE_MAGIC):
        raise CheckpointError(
            f"checkpoint {path} is a pickle (torch.save) file, not safetensors; "
            "mtl_perception never unpickles checkpoints"
        )
    if not looks_like_safetensors and _looks_like_onnx(head):
        raise CheckpointError(
            f"checkpoint {path} is an ONNX model (an export), not a safetensors checkpoint: "
            "give it its .onnx name, which the engines load as an exported model"
        )
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated (not valid safetensors): {exc}"
        ) from exc


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto's first bytes: field 1 (ir_version, a small varint), then
    producer_name (2), graph (7) or opset_import (8). A renamed export was reported as
    "corrupt or truncated", which sends a user looking for damage that is not there."""
    return (len(head) >= 3 and head[0] == 0x08 and 3 <= head[1] <= 15
            and head[2] in (0x12, 0x3A, 0x42))


def _verified(path: Path, handle: Any) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and tensors, checksum verified before anything reads the metadata.

    An edited class name is thus reported as a changed checkpoint, not as
    whatever the edited value would upset later (a labels file, a report).
    Tensors come from the file itself, so their size is bounded by it.
    """
    metadata = dict(handle.metadata() or {})
    if METADATA_KEY not in metadata:
        raise CheckpointError(
            f"checkpoint {path} has no {METADATA_KEY} metadata: not one of our checkpoints"
        )
    try:
        document = _json(metadata[METADATA_KEY])
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeply
        what = "nested too deeply" if isinstance(exc, RecursionError) else one_line(exc)
        raise CheckpointError(f"checkpoint {path} has invalid metadata: {what}") from exc
    try:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except SafetensorError as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {exc}") from exc
    if isinstance(document, dict):
        _check_digest(path, document, tensors, metadata.get(PARTS_KEY))
    return metadata, tensors


def _parse_info(path: Path, metadata: Mapping[str, str] | None, prefix: str = "") -> CheckpointInfo:
    """The metadata as a `CheckpointInfo`; `prefix` "not saving " when checking a save."""
    if not metadata or METADATA_KEY not in metadata:
        raise CheckpointError(
            f"checkpoint {path} has no {METADATA_KEY} metadata: not one of our checkpoints"
        )
    try:
        document = _json(metadata[METADATA_KEY])
        if not isinstance(document, dict):
            raise ValueError(f"expected a JSON object, got {type(document).__name__}")
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {path} has format version {version}; "
                f"this mtl_perception reads {FORMAT_VERSION}"
            )
        unknown = sorted(set(document) - _DOCUMENT_KEYS)
        if unknown:  # same version, other keys: not what this reader knows how to trust
            raise ValueError(f"key {unknown[0]!r} is not one of format {FORMAT_VERSION}'s "
                             f"({', '.join(sorted(_DOCUMENT_KEYS))})")
        provenance = dict(_section(document, "provenance", required=False))
        if _depth(provenance) > MAX_PROVENANCE_DEPTH:  # copied on by export, recursively
            raise ValueError(f"provenance nested more than {MAX_PROVENANCE_DEPTH} deep")
        return CheckpointInfo(
            model=from_dict(ModelConfig, _section(document, "model"), "model"),
            class_names=_class_names(document["class_names"]),
            preprocess=from_dict(PreprocessConfig, _section(document, "preprocess"), "preprocess"),
            provenance=provenance,
        )
    except CheckpointError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, SettingsError,
            RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        what = "nested too deeply" if isinstance(exc, RecursionError) else what
        raise CheckpointError(
            f"{prefix}checkpoint {path} has invalid metadata: {one_line(what)}"
        ) from exc


def _json(text: str) -> Any:
    """`json.loads`, but a key given twice in one object is refused: json keeps the last
    without a word, so what one reader of the file sees another might not."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            twice = next(k for k in keys if keys.count(k) > 1)
            raise ValueError(f"key {twice!r} appears twice in one object")
        return dict(pairs)
    return json.loads(text, object_pairs_hook=unique)


MAX_PROVENANCE_DEPTH = 64  # ours is 4 deep; 700 overflowed Python's recursion on export


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (without recursion: it may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level <= MAX_PROVENANCE_DEPTH:
            stack += [(child, level + 1) for child in children]
    return deepest


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


def _check_digest(
    path: Path, document: dict[str, Any], tensors: Mapping[str, torch.Tensor],
    parts: str | None = None,
) -> None:
    """The stored SHA-256 over the whole metadata document (every section, those added
    later included: all but the digest itself) and the weights; hand-built files without
    one load. A refusal names the changed sections when the file records their digests.
    `weights_sha256` (weights only) is what early files carry; it is still checked.
    """
    expected = document.pop("sha256", None)
    if expected is not None:
        try:
            actual = _digest(document, tensors)
        except (TypeError, ValueError):
            actual = None
        if actual != expected:
            what = "its metadata and weights fail their checksum"
            try:
                recorded = json.loads(parts or "null")
                changed = (changed_parts(recorded, _parts(document, tensors))
                           if isinstance(recorded, dict) else [])
            except (TypeError, ValueError, RecursionError):
                changed = []
            if changed:
                what = f"{', '.join(changed)} changed since it was saved"
            raise CheckpointError(f"checkpoint {path} is corrupt or was edited: {what}")
        return
    legacy = document.get("weights_sha256")
    if legacy is not None and weights_digest(tensors) != legacy:
        raise CheckpointError(f"checkpoint {path} is corrupt: its weights fail their checksum")


def _digest(document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the canonical metadata (without the digests) and the weights."""
    return content_digest(document, tensors, "mtl_perception checkpoint")


def _parts(document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """One digest per metadata section (every top-level key, later ones too) and the
    weights: what a refusal names."""
    return {**document_parts("", document), "weights": weights_digest(tensors)}
