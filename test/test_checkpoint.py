"""Checkpoints: identical outputs after a round trip, and one clear refusal per bad file."""

import json
import pickle
import struct

import pytest
import torch
from helpers_models import tiny_config
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
    with pytest.raises(CheckpointError, match="fail their checksum"):
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


def test_class_names_must_match_the_model() -> None:
    with pytest.raises(ValueError, match="task 'gesture': 2 class names for 7 classes"):
        CheckpointInfo(model=tiny_config("hps"), class_names=(CLASSES[0], ("a", "b")))
