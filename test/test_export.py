"""ONNX export of every method, checked against PyTorch in ONNX Runtime and OpenVINO."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers_export import CROP, FRAMES, clips, tiny_model

from mtl_perception.checkpoint import CheckpointError, checkpoint_sha256, save_checkpoint
from mtl_perception.deploy.export import export_onnx, max_difference, with_metadata
from mtl_perception.deploy.onnx_file import (
    CHECKSUM_KEY,
    EXPORT_KEY,
    content_checksum,
    read_onnx_model,
)
from mtl_perception.deploy.registry import build_engine
from training.__main__ import main as training_main

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# fp32 ONNX Runtime / OpenVINO vs PyTorch eager on these models: ~1e-7 measured.
PARITY = 1e-4


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _reference(model: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in model.score_all(x)]  # type: ignore[operator]


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_export_matches_pytorch_in_every_cpu_engine(method: str) -> None:
    model, info = tiny_model(method)
    exported = export_onnx(model, info, source_sha256="ab" * 32)
    assert exported.export.outputs == info.model.task_names
    x = clips(3)
    assert max_difference(model, exported, x) < PARITY
    expected = _reference(model, x)
    backends = ["onnxruntime"]
    if importlib.util.find_spec("openvino") is not None:
        backends.append("openvino")
    for backend in backends:
        got = build_engine(exported, backend, "cpu")(x.numpy()).as_list()
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e in zip(got, expected):
            assert float(np.abs(g - e).max()) < PARITY, backend
    assert model.training is False  # export leaves the model in its mode


def test_lws_routing_is_frozen_into_the_graph() -> None:
    model, info = tiny_model("lws")
    exported = export_onnx(model, info)
    x = clips(2)
    before = _reference(model, x)
    model.routing_probs.fill_(0.5)  # type: ignore[operator]  # back to the own copies
    after = _reference(model, x)
    assert float(np.abs(before[1] - after[1]).max()) > 1e-3  # the route matters here...
    got = build_engine(exported, "onnxruntime", "cpu")(x.numpy()).as_list()
    assert float(np.abs(got[1] - before[1]).max()) < PARITY  # ...and the export kept it


def test_fixed_batch_pads_and_splits() -> None:
    model, info = tiny_model("hps")
    exported = export_onnx(model, info, batch=2)
    engine = build_engine(exported, "onnxruntime", "cpu")
    x = clips(5)
    got = engine(x.numpy()).as_list()
    assert [g.shape[0] for g in got] == [5, 5]
    for g, e in zip(got, _reference(model, x)):
        assert float(np.abs(g - e).max()) < PARITY


def test_cli_writes_a_checked_file_with_the_checkpoint_metadata(tmp_path: Path) -> None:
    model, info = tiny_model("sps")
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, model, info)
    out = tmp_path / "deploy" / "m.onnx"
    code = training_main(["export", "--checkpoint", str(checkpoint), "--out", str(out),
                          "--batch", "3", "--opset", "18"])
    assert code == 0
    exported = read_onnx_model(out)
    assert exported.info == info
    assert exported.export.source_sha256 == checkpoint_sha256(checkpoint)
    assert exported.export.batch == 3 and exported.export.opset == 18
    assert exported.export.frames == FRAMES
    assert 0 <= exported.export.max_abs_diff < PARITY
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 18
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 3, FRAMES, *CROP]
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]  # no temporary left


def test_cli_refuses_an_export_that_differs_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model, info = tiny_model("hps")
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, model, info)
    monkeypatch.setattr("training.tools.export.max_difference", lambda *a: 0.5)
    assert training_main(["export", "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert "differs from PyTorch by 0.5 > --tolerance 0.001; nothing written" in err
    assert "\n" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_frames_narrow_the_clip(tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, model, info)
    assert training_main(["export", "--checkpoint", str(checkpoint), "--frames", "3"]) == 0
    exported = read_onnx_model(tmp_path / "m.onnx")
    assert exported.export.frames == exported.info.preprocess.clip_length == 3


def test_cli_frames_never_widen_the_clip(tmp_path: Path, capsys) -> None:
    model, info = tiny_model("hps")
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, model, info)
    wider = str(info.preprocess.clip_length + 1)
    assert training_main(["export", "--checkpoint", str(checkpoint), "--frames", wider]) == 2
    assert f"export frames {wider} > the {info.preprocess.clip_length} the model was trained " \
        "on" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_int8_keeps_outputs_and_metadata() -> None:
    from training.tools.quantize import quantize_int8

    model, info = tiny_model("hps")
    exported = export_onnx(model, info)
    quantized = quantize_int8(exported, iter([clips(4, seed=s).numpy() for s in range(4)]))
    assert quantized.export.precision == "int8" and quantized.info == info
    assert len(quantized.data) != len(exported.data)
    got = build_engine(quantized, "onnxruntime", "cpu")(clips(2).numpy()).as_list()
    assert [g.shape for g in got] == [(2, 5), (2, 7)]


# ----------------------------------------------------------------- refused files
def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    return path


def _refused(path: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        read_onnx_model(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_refuses_a_damaged_file(tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    data = export_onnx(model, info).data
    assert "not a readable ONNX file" in _refused(_file(tmp_path, data[: len(data) // 2]))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40  # inside the weights: still parses
    message = _refused(_file(tmp_path, bytes(flipped)))
    assert "graph changed since export" in message or "not a readable ONNX file" in message
    assert "not a readable ONNX file" in _refused(_file(tmp_path, b"\x00garbage" * 10))


def _reseal(proto: onnx.ModelProto) -> bytes:
    """An edited file with its checksum recomputed (a forger's; the graph checks remain)."""
    kept = [p for p in proto.metadata_props if p.key != CHECKSUM_KEY]
    del proto.metadata_props[:]
    for prop in kept:
        proto.metadata_props.add().CopyFrom(prop)
    checksum = content_checksum(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = CHECKSUM_KEY, checksum
    return proto.SerializeToString()


def _edit(data: bytes, key: str, change: Any) -> bytes:
    proto = onnx.load_from_string(data)
    prop = next(p for p in proto.metadata_props if p.key == key)
    document = json.loads(prop.value)
    change(document)
    prop.value = json.dumps(document)
    return proto.SerializeToString()


@pytest.mark.parametrize(("key", "change", "named"), [
    ("mtl_perception", lambda d: d["class_names"][0].reverse(), "mtl_perception.class_names"),
    ("mtl_perception", lambda d: d["preprocess"]["std"].__setitem__(0, 0.5),
     "mtl_perception.preprocess.std"),
    ("mtl_perception", lambda d: d["model"]["task_names"].reverse(),
     "mtl_perception.model.task_names"),
    ("mtl_perception", lambda d: d["model"].__setitem__("gate", True),
     "mtl_perception.model.gate"),
    ("mtl_perception", lambda d: d["preprocess"].__setitem__("temporal_sampling", "uniform"),
     "mtl_perception.preprocess.temporal_sampling"),
    ("mtl_perception", lambda d: d.__setitem__("thresholds", {"event": 0.9}),
     "mtl_perception.thresholds"),  # a key added later is covered too
    ("mtl_perception_export", lambda d: d.__setitem__("precision", "int8"),
     "mtl_perception_export.precision"),
])
def test_every_metadata_edit_is_refused_naming_what_changed(
        tmp_path: Path, key: str, change: Any, named: str) -> None:
    model, info = tiny_model("hps")
    data = export_onnx(model, info).data
    message = _refused(_file(tmp_path, _edit(data, key, change)))
    assert message.endswith(f"is corrupt or was edited: {named} changed since export"), message


def test_an_added_removed_or_unsealed_property_is_refused(tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    data = export_onnx(model, info).data
    proto = onnx.load_from_string(data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "event_threshold", "0.9"
    assert _refused(_file(tmp_path, proto.SerializeToString())).endswith(
        "event_threshold changed since export")
    proto = onnx.load_from_string(data)
    kept = [p for p in proto.metadata_props if p.key != CHECKSUM_KEY]
    del proto.metadata_props[:]
    for prop in kept:
        proto.metadata_props.add().CopyFrom(prop)
    assert f"has no {CHECKSUM_KEY} metadata" in _refused(_file(tmp_path,
                                                                proto.SerializeToString()))
    proto = onnx.load_from_string(data)
    proto.opset_import[0].version += 1  # the header, not a property: still refused
    assert "metadata edited" in _refused(_file(tmp_path, proto.SerializeToString()))


def test_refuses_a_plain_onnx_file(tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    proto = onnx.load_from_string(export_onnx(model, info).data)
    del proto.metadata_props[:]
    assert "not exported by" in _refused(_file(tmp_path, proto.SerializeToString()))


def test_refuses_metadata_that_does_not_match_the_graph(tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    exported = export_onnx(model, info)
    proto = onnx.load_from_string(exported.data)
    meta = next(p for p in proto.metadata_props if p.key == "mtl_perception")
    document = json.loads(meta.value)
    document["model"]["num_classes"] = [6, 7]  # one more action class than the graph has
    document["class_names"][0].append("extra")
    meta.value = json.dumps(document)
    message = _refused(_file(tmp_path, _reseal(proto)))
    assert "output 'action' is shaped [None, 5], expected [N, 6]" in message

    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "mtl_perception", "{not json"
    entry = proto.metadata_props.add()
    entry.key, entry.value = EXPORT_KEY, exported.export.to_json()
    assert "invalid metadata" in _refused(_file(tmp_path, _reseal(proto)))


def test_refuses_outputs_other_than_the_tasks(tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    exported = export_onnx(model, info)
    proto = onnx.load_from_string(exported.data)
    old = proto.graph.output[1].name
    proto.graph.output[1].name = "hand"
    for node in proto.graph.node:
        node.output[:] = ["hand" if o == old else o for o in node.output]
    with pytest.raises(CheckpointError, match=r"outputs \['action', 'hand'\] do not match"):
        with_metadata(proto.SerializeToString(), info, exported.export)
    del proto.graph.output[1]
    with pytest.raises(CheckpointError, match=r"outputs \['action'\] do not match"):
        with_metadata(proto.SerializeToString(), info, exported.export)


def test_a_gate_the_metadata_does_not_describe_is_refused() -> None:
    from mtl_perception.deploy.export import ExportError

    model, info = tiny_model("hps")
    model.gate = torch.nn.Linear(32, 3)
    with pytest.raises(ExportError, match="task gate and its metadata's model config disagree"):
        export_onnx(model, info)


def test_an_exported_model_refuses_another_clip_length_at_load(tmp_path: Path) -> None:
    """Its graph takes one clip length: a narrower `clip_length` used to fail in the
    inference worker, every clip, and the run then blamed the bag's stamps."""
    pytest.importorskip("onnxruntime")
    from mtl_perception.deploy.errors import BackendError
    from mtl_perception.deploy.load import load_engine

    model, info = tiny_model("hps")
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, model, info)
    assert training_main(["export", "--checkpoint", str(checkpoint)]) == 0
    frames = info.preprocess.clip_length
    with pytest.raises(BackendError, match=f"exported for clips of {frames} frames; "
                                           f"clip_length {frames - 1} needs"):
        load_engine(tmp_path / "m.onnx", "onnxruntime", clip_length=frames - 1)
    assert load_engine(tmp_path / "m.onnx", "onnxruntime", clip_length=frames).info == info
