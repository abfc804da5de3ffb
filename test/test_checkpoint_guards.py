"""Checkpoint guards of issue 7: nothing bad is written, metadata is checked like weights.

Each test fails on the code before the issue: NaN weights were saved, an edited
class name loaded, an inflated width built the full model before refusing it,
and a zero std or an empty crop went through.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers_models import tiny_config
from safetensors import safe_open
from safetensors.torch import save_file

import mtl_perception.checkpoint as checkpoint
import mtl_perception.checkpoint_tensors as checkpoint_tensors
from mtl_perception.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from mtl_perception.models import build_model
from mtl_perception.preprocess import PreprocessConfig

CLASSES = (("drink", "walk", "sit", "stand", "jump"),
           ("wave", "stop", "up", "down", "left", "right", "ok"))
SMALL = PreprocessConfig(clip_length=8, resize=(36, 48), crop=(32, 32))


def _saved(tmp_path, method: str = "hps"):
    model = build_model(tiny_config(method)).eval()
    info = CheckpointInfo(model=model.config, class_names=CLASSES, preprocess=SMALL,
                          provenance={"iterations": 3})
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model, info)
    return path, model, info


def _document(path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["mtl_perception"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    return document, tensors


def _write(path, document: dict, tensors: dict) -> None:
    save_file(tensors, str(path), metadata={"mtl_perception": json.dumps(document)})


# -- class 2: no bad checkpoint is ever written --------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_save_refuses_non_finite_weights_and_keeps_the_good_file(tmp_path, value) -> None:
    path, model, info = _saved(tmp_path)
    before = path.read_bytes()
    with torch.no_grad():
        model.heads[1].bias[2] = value  # a diverged run
    with pytest.raises(CheckpointError, match=r"not saving .*last.safetensors.* non-finite"):
        save_checkpoint(path, model, info)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_save_refuses_metadata_that_is_not_json_before_touching_the_file(tmp_path) -> None:
    path, model, info = _saved(tmp_path)
    before = path.read_bytes()
    bad = CheckpointInfo(model=info.model, class_names=CLASSES, provenance={"run": object()})
    with pytest.raises(CheckpointError, match="not saving .* not plain JSON"):
        save_checkpoint(path, model, bad)
    assert path.read_bytes() == before


def test_save_reads_the_written_header_back_before_the_rename(tmp_path, monkeypatch) -> None:
    path, model, info = _saved(tmp_path)
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):  # a writer that drops the metadata
        save_file(tensors, filename)

    monkeypatch.setattr(checkpoint, "save_file", broken_save)
    with pytest.raises(CheckpointError, match="no mtl_perception metadata"):
        save_checkpoint(path, model, info)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_class_names_must_be_distinct_and_non_empty() -> None:
    with pytest.raises(ValueError, match="class name 'walk' appears twice"):
        CheckpointInfo(model=tiny_config("hps"),
                       class_names=(("drink", "walk", "walk", "a", "b"), CLASSES[1]))
    with pytest.raises(ValueError, match="non-empty strings"):
        CheckpointInfo(model=tiny_config("hps"), class_names=(("", "a", "b", "c", "d"), CLASSES[1]))


# -- class 3: metadata validated like the weights --------------------------------------


@pytest.mark.parametrize(("changes", "message"), [
    ({"std": (0.2, 0.0, 0.2)}, "std must be > 0"),
    ({"std": (0.2, -0.1, 0.2)}, "std must be > 0"),
    ({"std": (0.2, math.nan, 0.2)}, "std must be finite"),
    ({"mean": (0.2, math.inf, 0.2)}, "mean must be finite"),
    ({"crop": (0, 32)}, r"crop must be in 1\.\.4096"),
    ({"crop": (40, 32)}, "larger than resize"),
    ({"resize": (10**6, 48), "crop": (32, 32)}, r"resize must be in 1\.\.4096"),
    ({"clip_length": 0}, r"clip_length must be in 1\.\.1024"),
    ({"clip_length": "8"}, "clip_length must be an integer"),
    ({"clip_length": True}, "clip_length must be an integer"),
    ({"crop": (32.5, 32)}, "crop must be an integer"),
    ({"crop": (32, 32, 3)}, r"crop must be a \(height, width\) pair"),
    ({"std": (0.2, 0.2)}, "std must be three numbers"),
    ({"antialias": "yes"}, "antialias must be true or false"),
])
def test_preprocess_config_refuses_values_that_cannot_work(changes, message) -> None:
    settings = {"clip_length": 8, "resize": (36, 48), "crop": (32, 32), **changes}
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**settings)


def test_preprocess_config_accepts_lists_as_tuples() -> None:
    config = PreprocessConfig(resize=[36, 48], crop=[32, 32])  # type: ignore[arg-type]
    assert config == PreprocessConfig(resize=(36, 48), crop=(32, 32))


@pytest.mark.parametrize(("preprocess", "message"), [
    ({"std": [0.0, 0.2, 0.2]}, "std must be > 0"),
    ({"crop": [0, 0]}, "crop must be in"),
    ({"clip_length": 0}, "clip_length must be in"),
    ({"crop": [64, 64], "resize": [36, 48]}, "larger than resize"),
])
def test_checkpoint_with_unusable_preprocessing_is_refused(tmp_path, preprocess, message) -> None:
    path, _, _ = _saved(tmp_path)
    document, tensors = _document(path)
    document.pop("sha256")  # hand-built: the value check, not the checksum, must refuse it
    document["preprocess"].update(preprocess)
    _write(path, document, tensors)
    for read in (read_checkpoint_info, load_checkpoint):
        with pytest.raises(CheckpointError, match=f"invalid metadata: .*{message}"):
            read(path)


def test_an_edited_class_name_fails_the_checksum(tmp_path) -> None:
    path, _, _ = _saved(tmp_path)
    document, tensors = _document(path)
    document["class_names"][1][0] = "attack"  # same shapes, different meaning
    _write(path, document, tensors)
    with pytest.raises(CheckpointError, match="corrupt or was edited: its metadata and weights"):
        load_checkpoint(path)


@pytest.mark.parametrize(("edit", "named"), [
    (lambda d: d["class_names"][0].reverse(), "class_names"),  # reordered: relabels
    (lambda d: d["preprocess"].__setitem__("std", [0.5, 0.5, 0.5]), "preprocess"),
    (lambda d: d["model"].__setitem__("task_names", ["gesture", "action"]), "model"),
    (lambda d: d["model"].__setitem__("gate", True), "model"),
    (lambda d: d.__setitem__("thresholds", {"event": 0.9}), "thresholds"),  # a later key
])
def test_every_metadata_edit_is_refused_naming_the_section(tmp_path, edit, named) -> None:
    path, _, _ = _saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    document, tensors = _document(path)
    edit(document)
    save_file(tensors, str(path), metadata={**metadata, "mtl_perception": json.dumps(document)})
    for read in (read_checkpoint_info, load_checkpoint):
        with pytest.raises(CheckpointError) as caught:
            read(path)
        assert str(caught.value) == (f"checkpoint {path} is corrupt or was edited: {named} "
                                     "changed since it was saved")


def test_checksum_ignores_key_order_and_whitespace_but_not_values(tmp_path) -> None:
    path, _, _ = _saved(tmp_path)
    document, tensors = _document(path)
    text = json.dumps(document, indent=3, sort_keys=False)  # the same values, spelled otherwise
    save_file(tensors, str(path), metadata={"mtl_perception": text})
    assert load_checkpoint(path).info.class_names == CLASSES
    document["provenance"]["iterations"] = 4
    _write(path, document, tensors)
    with pytest.raises(CheckpointError, match="fail their checksum"):
        load_checkpoint(path)


def test_hand_built_checkpoint_without_checksum_still_loads(tmp_path) -> None:
    path, _, _ = _saved(tmp_path)
    document, tensors = _document(path)
    document.pop("sha256")
    document["class_names"][1][0] = "hello"
    _write(path, document, tensors)
    assert load_checkpoint(path).info.class_names[1][0] == "hello"


@pytest.mark.parametrize("width", [64, 100_000, 10**15])
def test_inflated_width_is_refused_from_the_header_before_any_model_is_built(
        tmp_path, monkeypatch, width: int) -> None:
    path, _, _ = _saved(tmp_path)
    document, tensors = _document(path)
    document.pop("sha256")
    document["model"]["width"] = width
    _write(path, document, tensors)
    devices = []
    real_build = checkpoint.build_model

    def watched(config):
        devices.append(torch.get_default_device().type)
        if devices[-1] != "meta":
            raise AssertionError("a real model was built before the shapes were checked")
        return real_build(config)

    monkeypatch.setattr(checkpoint, "build_model", watched)
    monkeypatch.setattr(checkpoint_tensors, "build_model", watched)  # the shape check's
    with pytest.raises(CheckpointError, match=r"(do not match|cannot build)"):
        load_checkpoint(path)
    assert devices and set(devices) == {"meta"}


def test_weights_of_a_dtype_no_model_uses_are_refused_from_the_header(tmp_path) -> None:
    path, _, _ = _saved(tmp_path)
    document, tensors = _document(path)
    document.pop("sha256")
    tensors["heads.0.bias"] = tensors["heads.0.bias"].to(torch.float64)
    _write(path, document, tensors)
    with pytest.raises(CheckpointError, match=r"wrong dtype \(first: heads.0.bias"):
        load_checkpoint(path)


def test_a_normal_round_trip_still_loads_with_the_checksum(tmp_path) -> None:
    path, model, info = _saved(tmp_path, "lws")
    document, _ = _document(path)
    assert len(document["sha256"]) == 64 and "weights_sha256" not in document
    loaded = load_checkpoint(path)
    assert loaded.info == info
    clips = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for ours, theirs in zip(model.score_all(clips), loaded.model.score_all(clips)):
            assert torch.equal(ours, theirs)
