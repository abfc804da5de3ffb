"""Exported ONNX files: the metadata they carry and the checks before one is used.

An exported file holds, in its `metadata_props`:
- `mtl_perception`: the same JSON document a checkpoint carries (model config,
  class names, preprocessing, provenance), read by the same parser, so an
  exported file describes its model exactly as the checkpoint did;
- `mtl_perception_export`: the export itself: the source checkpoint's
  checksum, output names, batch (0 = dynamic), frames, opset, precision, the
  largest difference from PyTorch measured before writing (int8: agreement
  with fp32), and a SHA-256 of the serialised graph (weights included);
- `mtl_perception_sha256`: one SHA-256 over everything that changes a
  result: the model without its metadata (graph, weights, opsets) and every
  other metadata property (class lists, preprocessing, task names, gate,
  sampling, whatever key is added later), plus one digest per part (the
  graph, each property, each top-level key of a JSON property), so an edit is
  refused in one line naming what changed. A file without it is refused.

The graph has one input `clips` (N, 3, T, H, W) and one output per task,
named by task, then `gate` when the model has a task gate; each output is
(N, classes) logits, in `score_all`'s order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_perception.checkpoint import METADATA_KEY, CheckpointError, CheckpointInfo
from mtl_perception.checkpoint import info_from_metadata as _info_from_metadata
from mtl_perception.deploy.errors import BackendError, require
from mtl_perception.digest import changed_parts, document_parts, sha256
from mtl_perception.exits import one_line
from mtl_perception.fileio import require_regular_file
from mtl_perception.models.gate import gate_output_shape

EXPORT_KEY = "mtl_perception_export"
CHECKSUM_KEY = "mtl_perception_sha256"
EXPORT_VERSION = 1
INPUT_NAME = "clips"
GATE_OUTPUT = "gate"
PRECISIONS = ("fp32", "int8")


__all__ = ["BackendError", "require"]  # re-exported: their home is deploy/errors.py


def output_names(info: CheckpointInfo) -> tuple[str, ...]:
    """The graph's outputs: one per task, then `gate` when the model config has one."""
    gate = (GATE_OUTPUT,) if getattr(info.model, "gate", False) else ()
    return (*info.model.task_names, *gate)


def output_sizes(info: CheckpointInfo) -> tuple[tuple[int, ...], ...]:
    """Each output's shape after the batch: a task's classes, then the gate's tasks + 1
    ("none" last), or (k + 1, tasks + 1) for a gate with memory (models/gate.py)."""
    tasks = tuple((c,) for c in info.model.num_classes)
    if not getattr(info.model, "gate", False):
        return tasks
    context = int(getattr(info.model, "gate_context", 0))
    return (*tasks, gate_output_shape(info.model.num_tasks, context))


@dataclass(frozen=True)
class ExportInfo:
    """What `python -m training export` recorded about one export."""

    source_sha256: str
    outputs: tuple[str, ...]
    batch: int  # 0 = dynamic
    frames: int
    opset: int
    precision: str  # fp32 | int8
    max_abs_diff: float  # against PyTorch on the clips checked before writing
    graph_sha256: str = ""
    # int8 only: top-1 agreement with fp32 (every output, every clip) on held-out (test
    # split) and calibration clips, and how many held-out clips; -1 = not measured.
    int8_agreement: float = -1.0
    int8_agreement_calibration: float = -1.0
    int8_clips: int = 0

    def to_json(self) -> str:
        document = {"format_version": EXPORT_VERSION, **self.__dict__,
                    "outputs": list(self.outputs)}
        return json.dumps(document, sort_keys=True)


@dataclass(frozen=True)
class OnnxModel:
    """An exported model, checked, in memory: what the ONNX engines take."""

    data: bytes
    info: CheckpointInfo
    export: ExportInfo
    path: Path | None = None  # None: exported in memory from a checkpoint

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<exported in memory>"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read_onnx_model(path: str | Path) -> OnnxModel:
    """Read and check an exported file; one CheckpointError line for anything off."""
    path = Path(path)
    require_regular_file(path, "model file", CheckpointError)  # a FIFO would block the read
    return parse_onnx(path.read_bytes(), path)


def parse_onnx(data: bytes, path: Path | None = None) -> OnnxModel:
    """Check ONNX bytes against the metadata they carry (see the module docstring)."""
    onnx = require("onnx", "onnx", "reading an exported .onnx model")
    where = str(path) if path is not None else "<exported in memory>"
    if not data:  # protobuf reads no bytes as an empty model: "no metadata" misled
        raise CheckpointError(f"model {where} is empty (0 bytes): damaged, or never written")
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise CheckpointError(
            f"model {where} is not a readable ONNX file (damaged or truncated): "
            f"{one_line(exc)}"
        ) from exc
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props or EXPORT_KEY not in props:
        raise CheckpointError(
            f"model {where} has no {METADATA_KEY} metadata: not exported by "
            "`python -m training export`"
        )
    _check_checksum(where, proto, props)
    info = _info_from_metadata(Path(where), {METADATA_KEY: props[METADATA_KEY]})
    export = _export_info(where, props[EXPORT_KEY])
    if export.graph_sha256 and _graph_digest(proto) != export.graph_sha256:
        raise CheckpointError(
            f"model {where} is corrupt or was edited: its graph fails its checksum"
        )
    _check_graph(where, proto, info, export)
    return OnnxModel(data=data, info=info, export=export, path=path)


def content_checksum(proto: Any) -> str:
    """The `mtl_perception_sha256` document for an ONNX model: its content digest (the
    model without metadata, then every property but this one, by key) and its parts."""
    props = {p.key: p.value for p in proto.metadata_props if p.key != CHECKSUM_KEY}
    return json.dumps({"content": _content(proto, props), "parts": _parts(proto, props)},
                      sort_keys=True)


def _content(proto: Any, props: dict[str, str]) -> str:
    bare = type(proto)()
    bare.CopyFrom(proto)
    del bare.metadata_props[:]
    digest = hashlib.sha256(b"mtl_perception onnx\0")
    body = bare.SerializeToString(deterministic=True)
    digest.update(len(body).to_bytes(8, "little") + body)
    for key in sorted(props):
        for part in (key.encode(), props[key].encode()):
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()


def _parts(proto: Any, props: dict[str, str]) -> dict[str, str]:
    """What a refusal can name: the graph, each property, each JSON property's keys."""
    parts = {"graph": _graph_digest(proto)}
    for key, value in props.items():
        parts[key] = sha256(value.encode())
        try:
            document = json.loads(value)
        except (ValueError, RecursionError):
            continue
        if isinstance(document, dict):
            parts.update(document_parts(key, document))
            for section in ("model", "preprocess"):  # task names, gate, std: named alone
                if isinstance(document.get(section), dict):
                    parts.update(document_parts(f"{key}.{section}", document[section]))
    return parts


def _check_checksum(where: str, proto: Any, props: dict[str, str]) -> None:
    """Refuse a file whose graph or metadata changed after export, naming what changed."""
    if CHECKSUM_KEY not in props:
        raise CheckpointError(
            f"model {where} has no {CHECKSUM_KEY} metadata (exported before metadata was "
            "checksummed, or the checksum was removed): export it again"
        )
    try:
        recorded = json.loads(props[CHECKSUM_KEY])
        content, parts = recorded["content"], recorded["parts"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise CheckpointError(f"model {where} has an unreadable {CHECKSUM_KEY}") from None
    others = {k: v for k, v in props.items() if k != CHECKSUM_KEY}
    if _content(proto, others) == content:
        return
    changed = changed_parts(parts, _parts(proto, others)) if isinstance(parts, dict) else []
    # A named JSON key implies its property changed: name the most specific parts.
    specific = [p for p in changed if not any(q.startswith(p + ".") for q in changed)]
    what = (f"{', '.join(specific)} changed since export" if specific
            else "metadata edited (the model header or the checksum record)")
    raise CheckpointError(f"model {where} is corrupt or was edited: {what}")


def graph_digest(data: bytes) -> str:
    """SHA-256 of the serialised graph of ONNX bytes (what `graph_sha256` records)."""
    onnx = require("onnx", "onnx", "exporting to ONNX")
    return _graph_digest(onnx.load_from_string(data))


def _graph_digest(proto: Any) -> str:
    return hashlib.sha256(proto.graph.SerializeToString(deterministic=True)).hexdigest()


def _export_info(where: str, text: str) -> ExportInfo:
    try:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("expected a JSON object")
        version = document.pop("format_version", None)
        if version != EXPORT_VERSION:
            raise ValueError(f"export format version {version}; this reads {EXPORT_VERSION}")
        document["outputs"] = tuple(document["outputs"])
        export = ExportInfo(**document)
        if export.precision not in PRECISIONS:
            raise ValueError(f"precision {export.precision!r} is not one of {PRECISIONS}")
        if export.batch < 0 or export.frames < 1:
            raise ValueError(f"batch {export.batch} / frames {export.frames} out of range")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"model {where} has invalid {EXPORT_KEY} metadata: {one_line(exc)}"
        ) from exc
    return export


def _check_graph(where: str, proto: Any, info: CheckpointInfo, export: ExportInfo) -> None:
    """The graph's input and outputs are the ones the metadata describes."""
    expected = output_names(info)
    names = tuple(o.name for o in proto.graph.output)
    if names != expected or export.outputs != expected:
        raise CheckpointError(
            f"model {where}: outputs {list(names)} do not match the model its metadata "
            f"describes (expected {list(expected)})"
        )
    batch = export.batch or None
    for output, size in zip(proto.graph.output, output_sizes(info)):
        dims = _dims(output)
        if tuple(dims[1:]) != size or (batch and dims[0] != batch):
            raise CheckpointError(
                f"model {where}: output {output.name!r} is shaped {dims}, expected "
                f"[{', '.join(map(str, [batch or 'N', *size]))}] for the model its metadata "
                "describes"
            )
    initializers = {init.name for init in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    crop = info.preprocess.crop
    want = [batch, 3, export.frames, crop[0], crop[1]]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or _dims(inputs[0]) != want:
        got = [(i.name, _dims(i)) for i in inputs]
        raise CheckpointError(
            f"model {where}: inputs {got} do not match the metadata "
            f"(expected one input {INPUT_NAME!r} shaped {want})"
        )
    if info.preprocess.clip_length != export.frames:
        raise CheckpointError(
            f"model {where}: metadata clip length {info.preprocess.clip_length} differs from "
            f"the graph's {export.frames} frames"
        )


def _dims(value_info: Any) -> list[int | None]:
    """A tensor's dimensions; None for a symbolic (dynamic) one."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def quantization_zero_points(data: bytes) -> tuple[int, int]:
    """(asymmetric, total) QuantizeLinear nodes of ONNX bytes: asymmetric = a uint8 or a
    non-zero zero point (TensorRT takes only signed int8 with zero point 0)."""
    onnx = require("onnx", "onnx", "reading an exported .onnx model")
    numpy_helper = require("onnx.numpy_helper", "onnx", "reading an exported .onnx model")
    proto = onnx.load_from_string(data)
    constants = {init.name: init for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = attribute.t
    asymmetric = total = 0
    for node in proto.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        total += 1
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is None:  # no zero point: uint8 with zero point 0 by the ONNX default
            asymmetric += 1
            continue
        values = numpy_helper.to_array(zero)
        if values.dtype.kind == "u" or bool((values != 0).any()):
            asymmetric += 1
    return asymmetric, total
