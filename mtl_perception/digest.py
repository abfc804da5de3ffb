"""Content digests of our files: one SHA-256 over everything that changes a result, and
one per part, so that an edit is refused in one line naming what changed.

Used by checkpoints (metadata sections + weights) and exported ONNX files
(graph, model header, every metadata property); a part is a top-level key of
a JSON metadata document or a whole property, so keys added later (say,
stored thresholds) are covered without a change here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def canonical(document: Any) -> bytes:
    """JSON as hashed: key order and whitespace do not matter, values do."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (a large file never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_digest(document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
                   kind: str) -> str:
    """SHA-256 over a JSON document and tensors (name, dtype, shape, bytes); `kind` keeps
    one kind of file from passing for another (checkpoint, training state)."""
    meta = canonical(document)
    digest = hashlib.sha256(kind.encode() + b"\0")
    digest.update(len(meta).to_bytes(8, "little"))
    digest.update(meta)
    hash_weights(digest, tensors)
    return digest.hexdigest()


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    hash_weights(digest, tensors)
    return digest.hexdigest()


def hash_weights(digest: Any, tensors: Mapping[str, torch.Tensor]) -> None:
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def document_parts(prefix: str, document: Mapping[str, Any]) -> dict[str, str]:
    """One digest per top-level key of a JSON document, named `prefix.key`."""
    return {f"{prefix}.{key}" if prefix else key: sha256(canonical(value))
            for key, value in document.items()}


def changed_parts(recorded: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """The parts whose digest differs, appeared or disappeared, sorted."""
    return sorted(k for k in set(recorded) | set(actual) if recorded.get(k) != actual.get(k))
