"""Checkpoints: identical outputs after a round trip, and one clear refusal per bad file."""

import json
import os
import pickle
import stat
import struct

import pytest
import torch
from helpers_models import tiny_config
from safetensors import safe_open
from safetensors.torch import save_file

from mtl_perception.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from mtl_perception.models import build_model
from mtl_perception.preprocess import PreprocessConfig

CLIPS = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(5))
CLASSES = (
    ("drink", "walk", "sit", "stand", "jump"),
    ("wave", "stop", "up", "down", "left", "right", "ok"),
)


def saved(tmp_path, method: str = "lws"):
    config = tiny_config(method)
    model = build_model(config).eval()
    if method == "lws":  # non-trivial routing must survive the round trip
        with torch.no_grad():
            model.routing_probs[0, 2] = torch.tensor([0.1, 0.9])
    info = CheckpointInfo(
        model=config,
        class_names=CLASSES,
        preprocess=PreprocessConfig(clip_length=8, resize=(36, 48), crop=(32, 32)),
        provenance={"iterations": 10, "metrics": {"action": 0.5}},
    )
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, info)
    return path, model, info


def rewrite(path, tensors=None, **changes) -> None:
    """Re-save a checkpoint with edited metadata and/or tensors (no checksum: it would
    refuse the edit before the check under test)."""
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["mtl_perception"])
        if tensors is None:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    document.pop("weights_sha256", None)
    document.pop("sha256", None)
    document.update(changes)
    save_file(tensors, str(path), metadata={"mtl_perception": json.dumps(document)})


def tensors_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_round_trip_gives_identical_outputs(tmp_path, method: str) -> None:
    config = tiny_config(method)
    model = build_model(config).eval()
    names = CLASSES[: config.num_tasks] if method != "stl" else (CLASSES[0],)
    info = CheckpointInfo(model=config, class_names=names)
    path = tmp_path / f"{method}.safetensors"
    save_checkpoint(path, model, info)
    loaded = load_checkpoint(path)
    assert loaded.info == info
    with torch.no_grad():
        for ours, theirs in zip(model.score_all(CLIPS), loaded.model.score_all(CLIPS)):
            assert torch.equal(ours, theirs)


def test_metadata_alone_describes_the_model(tmp_path) -> None:
    path, _, info = saved(tmp_path)
    read = read_checkpoint_info(path)
    assert read == info
    assert read.classes_of("gesture")[1] == "stop"
    assert read.preprocess.clip_length == 8
    loaded = load_checkpoint(path)
    assert loaded.model.argmax_assignment()[0, 2] == 1
    assert not loaded.model.training


def test_missing_file_is_refused(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nothing.safetensors"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_truncated_file_is_refused(tmp_path) -> None:
    path, _, _ = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_flipped_weight_byte_is_refused(tmp_path) -> None:
    path, _, _ = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the tensor data, where the header cannot notice
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="edited: weights changed since it was saved"):
        load_checkpoint(path)


def test_garbage_header_is_refused(tmp_path) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(struct.pack("<Q", 40) + b"{not json" + b"\0" * 40)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_pickle_files_are_never_unpickled(tmp_path, kind: str) -> None:
    path = tmp_path / "model.pth"
    model = build_model(tiny_config("hps"))
    if kind == "torch.save":
        torch.save(model.state_dict(), path)
    else:
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="is a pickle .* never unpickles"):
        load_checkpoint(path)


def test_safetensors_without_our_metadata_is_refused(tmp_path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no mtl_perception metadata"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_metadata_are_refused(tmp_path) -> None:
    path, _, info = saved(tmp_path)
    # Same metadata, weights of a model twice as wide.
    wide = build_model(tiny_config("lws", width=8))
    document = json.dumps(
        {
            "format_version": 1,
            "model": json.loads(json.dumps(info.model.__dict__)),
            "class_names": [list(c) for c in CLASSES],
            "preprocess": {},
            "provenance": {},
        }
    )
    tensors = {k: v.contiguous() for k, v in wide.state_dict().items()}
    save_file(tensors, str(path), metadata={"mtl_perception": document})
    with pytest.raises(
        CheckpointError, match=r"weights do not match .* wrong shape \(first: heads.0.weight"
    ):
        load_checkpoint(path)
    del tensors["routing_probs"]
    save_file(tensors, str(path), metadata={"mtl_perception": document})
    with pytest.raises(CheckpointError, match=r"1 missing \(first: \['routing_probs'\]\)"):
        load_checkpoint(path)


def test_invalid_metadata_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.safetensors"
    document = json.dumps({"format_version": 1, "model": {"method": "magic"}, "class_names": []})
    save_file({"w": torch.zeros(1)}, str(path), metadata={"mtl_perception": document})
    with pytest.raises(CheckpointError, match="invalid metadata: .*magic"):
        load_checkpoint(path)
    document = json.dumps({"format_version": 99})
    save_file({"w": torch.zeros(1)}, str(path), metadata={"mtl_perception": document})
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_save_is_atomic_and_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch) -> None:
    path, _, _ = saved(tmp_path)
    before = path.read_bytes()
    import mtl_perception.checkpoint as checkpoint

    def failing_save(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", failing_save)
    model = build_model(tiny_config("lws"))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, read_checkpoint_info(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_saved_file_has_the_usual_permissions(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        path, _, _ = saved(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 minus the umask, not 0o600


def test_class_names_must_match_the_model() -> None:
    with pytest.raises(ValueError, match="task 'gesture': 2 class names for 7 classes"):
        CheckpointInfo(model=tiny_config("hps"), class_names=(CLASSES[0], ("a", "b")))


def test_empty_file_directory_and_huge_header_length_are_refused(tmp_path) -> None:
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt or truncated .*header too small"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="is a directory, not a regular file"):
        load_checkpoint(tmp_path)
    huge = tmp_path / "huge.safetensors"  # a header length of 2^62 bytes must not be trusted
    huge.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(huge)


@pytest.mark.parametrize("document", ["[1, 2]", '"hps"', "null"])
def test_metadata_that_is_not_a_json_object_is_refused(tmp_path, document: str) -> None:
    path = tmp_path / "odd.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"mtl_perception": document})
    with pytest.raises(CheckpointError, match="invalid metadata: expected a JSON object"):
        load_checkpoint(path)


def test_null_model_section_is_not_read_as_the_default_model(tmp_path) -> None:
    # from_dict reads null as "all defaults": a default-shaped model would load silently.
    path = tmp_path / "default.safetensors"
    default = build_model(tiny_config("hps", width=64, num_classes=(101, 249))).eval()
    names = tuple(tuple(f"c{i}" for i in range(n)) for n in (101, 249))
    save_checkpoint(path, default, CheckpointInfo(model=default.config, class_names=names))
    rewrite(path, model=None)
    with pytest.raises(CheckpointError, match="invalid metadata: model: expected a JSON object"):
        load_checkpoint(path)


def test_class_names_must_be_lists_of_strings(tmp_path) -> None:
    path, _, _ = saved(tmp_path, "hps")
    rewrite(path, class_names=["drink", "wave12"])  # strings would count as their letters
    with pytest.raises(CheckpointError, match="class_names: expected a list of lists"):
        load_checkpoint(path)
    rewrite(path, class_names=[list(CLASSES[0]), [1, 2, 3, 4, 5, 6, 7]])
    with pytest.raises(CheckpointError, match="class_names: expected strings, got 1"):
        load_checkpoint(path)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.int32])
def test_weights_of_another_dtype_are_refused(tmp_path, dtype: torch.dtype) -> None:
    path, model, _ = saved(tmp_path, "hps")
    tensors = {
        k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors_of(model).items()
    }
    rewrite(path, tensors)
    with pytest.raises(
        CheckpointError, match=rf"wrong dtype \(first: .* is {dtype}, the model needs torch.float32"
    ):
        load_checkpoint(path)


def test_non_float32_model_is_not_saved(tmp_path) -> None:
    model = build_model(tiny_config("hps")).half()
    info = CheckpointInfo(model=model.config, class_names=CLASSES)
    with pytest.raises(ValueError, match="checkpoints hold float32 weights.*model.float()"):
        save_checkpoint(tmp_path / "half.safetensors", model, info)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_are_refused(tmp_path) -> None:
    path, model, _ = saved(tmp_path, "hps")
    tensors = tensors_of(model)
    tensors["heads.1.bias"][3] = float("nan")
    rewrite(path, tensors)
    with pytest.raises(CheckpointError, match=r"non-finite .* 1 tensors \(first: \['heads.1.bias'"):
        load_checkpoint(path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_round_trip_from_and_to_a_gpu(tmp_path) -> None:
    config = tiny_config("lws")
    model = build_model(config).eval().cuda()
    path = tmp_path / "gpu.safetensors"
    save_checkpoint(path, model, CheckpointInfo(model=config, class_names=CLASSES))
    on_cpu, on_gpu = load_checkpoint(path).model, load_checkpoint(path, device="cuda").model
    assert all(p.device.type == "cuda" for p in on_gpu.parameters())
    assert on_gpu.routing_probs.device.type == "cuda"
    with torch.no_grad():
        for ours, theirs in zip(model.score_all(CLIPS.cuda()), on_gpu.score_all(CLIPS.cuda())):
            assert torch.equal(ours, theirs)
        for ours, theirs in zip(model.score_all(CLIPS.cuda()), on_cpu.score_all(CLIPS)):
            torch.testing.assert_close(ours.cpu(), theirs, rtol=1e-4, atol=1e-5)


def test_bad_device_name_fails_before_reading_the_file(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="device type at start of device string: gpu"):
        load_checkpoint(tmp_path / "nothing.safetensors", device="gpu")


def test_an_onnx_export_given_as_a_checkpoint_is_named_as_one(tmp_path) -> None:
    """A renamed export was "corrupt or truncated (not valid safetensors)": a hunt for damage
    that is not there. A real ONNX model (torch's exporter writes producer_name first)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, producer_name="pytorch")
    path = tmp_path / "best.safetensors"
    path.write_bytes(model.SerializeToString())
    assert onnx.load(str(path)).producer_name == "pytorch"
    with pytest.raises(CheckpointError, match=r"is an ONNX model \(an export\), not a "
                                              r"safetensors checkpoint: give it its \.onnx name"):
        load_checkpoint(path)
