"""Standing bad-input suite: hostile checkpoint metadata and weights through the loader.

Each example starts from a good checkpoint and edits its JSON metadata (values
of every type, huge numbers, NaN, deleted keys) and sometimes its tensors. The
contract: `load_checkpoint` returns a model whose info equals what the edited
document says (an independent reading of the JSON), or one `CheckpointError`
line; never another exception, never a hang; a checksum that is kept refuses
every edit. `save_checkpoint` of what loaded round-trips.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_hostile import HOSTILE, one_line, untouched  # noqa: F401 (autouse fixture)
from helpers_models import tiny_config
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

from mtl_perception.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    load_checkpoint,
    save_checkpoint,
)
from mtl_perception.models import build_model
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.settings import to_dict

pytestmark = pytest.mark.timeout(180)

CLASSES = (("a", "b", "c", "d", "e"), ("p", "q", "r", "s", "t", "u", "v"))


def _good() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model(tiny_config("hps")).eval()
    info = CheckpointInfo(model=model.config, class_names=CLASSES,
                          preprocess=PreprocessConfig(clip_length=4, resize=(36, 48),
                                                      crop=(32, 32)),
                          provenance={"iterations": 1})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "good.safetensors"
        save_checkpoint(path, model, info)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            document = json.loads(handle.metadata()["mtl_perception"])
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    return document, tensors


GOOD_DOCUMENT, GOOD_TENSORS = _good()
PLACES = [("format_version",), ("model",), ("model", "width"), ("model", "method"),
          ("model", "num_classes"), ("model", "task_names"), ("model", "arch"),
          ("model", "trainable_stages"), ("model", "cross_stitch_share"), ("class_names",),
          ("class_names", 0), ("class_names", 1, 0), ("preprocess",), ("preprocess", "std"),
          ("preprocess", "mean"), ("preprocess", "crop"), ("preprocess", "resize"),
          ("preprocess", "clip_length"), ("preprocess", "antialias"), ("provenance",),
          ("model", "unknown_key"), ("model", "gate"),
          ("model", "gate_context"), ("preprocess", "std", 1), ("preprocess", "crop", 0)]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 70),
    st.sampled_from([0, 10**6, 10**18, 2**64, -(10**9), 0.0, -0.5, 1e300, math.nan, math.inf,
                     "", "hps", "lws", "r3d_34", "action", "a"]),
    st.floats(allow_nan=True), st.text(max_size=5))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)
edits = st.lists(st.tuples(st.sampled_from(PLACES),
                           st.one_of(json_values, st.just("<delete>"))), max_size=3)
tensor_edits = st.sampled_from(["none", "none", "drop", "extra", "reshape", "half", "nan"])


def _apply(document: dict[str, Any], place: tuple, value: Any) -> None:
    node: Any = document
    for key in place[:-1]:
        if not _has(node, key):
            return
        node = node[key]
    last = place[-1]
    if value == "<delete>":
        if isinstance(node, dict):
            node.pop(last, None)
    elif isinstance(node, dict) or _has(node, last):
        node[last] = value


def _has(node: Any, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and key < len(node)


def _tensors(kind: str) -> dict[str, torch.Tensor]:
    tensors = {k: v.clone() for k, v in GOOD_TENSORS.items()}
    name = "heads.1.bias"
    if kind == "drop":
        del tensors[name]
    elif kind == "extra":
        tensors["stolen.weight"] = torch.zeros(3)
    elif kind == "reshape":
        tensors[name] = torch.zeros(70)
    elif kind == "half":
        tensors[name] = tensors[name].half()
    elif kind == "nan":
        tensors[name][0] = math.nan
    return tensors


def _expected_ok(document: dict[str, Any], tensor_kind: str, kept_checksum: bool) -> bool | None:
    """An independent verdict where one is cheap to give: False = must refuse, None = either."""
    if tensor_kind != "none":
        return False
    if kept_checksum:
        original = {k: v for k, v in GOOD_DOCUMENT.items()}
        return document == original  # any edit at all must fail the checksum
    return None


@HOSTILE
@given(edits, tensor_edits, st.booleans())
def test_hostile_metadata_loads_as_written_or_fails_in_one_line(
        changes: list, tensor_kind: str, keep_checksum: bool) -> None:
    document = copy.deepcopy(GOOD_DOCUMENT)
    if not keep_checksum:
        document.pop("sha256")
    for place, value in changes:
        _apply(document, place, value)
    verdict = _expected_ok(document, tensor_kind, keep_checksum and "sha256" in document)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "hostile.safetensors"
        save_file(_tensors(tensor_kind), str(path),
                  metadata={"mtl_perception": json.dumps(document)})
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as exc:
            one_line(str(exc))
            assert verdict is not True, f"a good checkpoint was refused: {exc}"
            return
        assert verdict is not False, "a checkpoint that must be refused loaded"
        info = loaded.info
        # independent reading: what the JSON says is what was loaded
        assert [list(n) for n in info.class_names] == document["class_names"]
        for section, value in (("model", info.model), ("preprocess", info.preprocess)):
            for key, written in document[section].items():
                assert to_dict(value)[key] == written, (section, key)
        assert all(torch.isfinite(p).all() for p in loaded.model.state_dict().values()
                   if p.is_floating_point())
        again = Path(folder) / "again.safetensors"  # what loads, saves and loads again
        save_checkpoint(again, loaded.model, info)
        assert load_checkpoint(again).info == info


@HOSTILE
@given(st.binary(min_size=0, max_size=64), st.integers(0, 400))
def test_damaged_bytes_fail_in_one_line(junk: bytes, where: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.safetensors"
        good = Path(folder) / "good.safetensors"
        save_file(GOOD_TENSORS, str(good),
                  metadata={"mtl_perception": json.dumps(GOOD_DOCUMENT)})
        data = good.read_bytes()
        where = min(where, len(data))
        path.write_bytes(data[:where] + junk + data[where + len(junk):])
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            one_line(str(exc))
        else:
            assert path.read_bytes() == data or not junk or junk == data[where:where + len(junk)]


def _saved(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "edited.safetensors"
    document = {k: v for k, v in document.items() if k != "sha256"}  # a hand-edited file
    save_file(GOOD_TENSORS, str(path), metadata={"mtl_perception": json.dumps(document)})
    return path


def test_provenance_nested_past_64_is_refused_at_load(tmp_path: Path) -> None:
    """700 deep loaded, then overflowed Python's recursion when export copied it."""
    from mtl_perception.checkpoint import CheckpointError, read_checkpoint_info

    document = copy.deepcopy(GOOD_DOCUMENT)
    deep: Any = 1
    for _ in range(700):
        deep = [deep]
    document["provenance"] = {"note": deep}
    with pytest.raises(CheckpointError, match="provenance nested more than 64 deep"):
        read_checkpoint_info(_saved(tmp_path, document))
    document["provenance"] = {"note": [[[[1]]]]}
    assert read_checkpoint_info(_saved(tmp_path, document)).provenance == {"note": [[[[1]]]]}


@pytest.mark.parametrize("stored", [None, [], "gate", {"event_threshold": True}])
def test_stored_event_settings_that_are_no_settings_are_one_line(tmp_path: Path,
                                                                 stored: Any) -> None:
    """null crashed evaluate_bag with an AttributeError; true passed as the number 1."""
    from mtl_perception.checkpoint import read_checkpoint_info
    from mtl_perception.stream import StreamConfig
    from mtl_perception.stream.config import StreamConfigError
    from mtl_perception.stream.decisions import with_stored_decisions

    document = copy.deepcopy(GOOD_DOCUMENT)
    document["provenance"] = {"stream_defaults": stored}
    info = read_checkpoint_info(_saved(tmp_path, document))
    with pytest.raises(StreamConfigError, match="stored stream_defaults"):
        with_stored_decisions(StreamConfig(), info, ())


@pytest.mark.parametrize("name", ["a/b", "", "a\nb", "none", "gate", "clips", "1st", "a b"])
def test_a_task_name_that_cannot_name_a_topic_or_output_is_refused(name: str) -> None:
    from mtl_perception.models.config import ModelConfig

    with pytest.raises(ValueError, match="task name"):
        ModelConfig(task_names=("action", name), num_classes=(2, 2))
    assert ModelConfig(task_names=("action", "hand_2"), num_classes=(2, 2)).num_tasks == 2


def test_a_key_given_twice_in_the_metadata_is_refused(tmp_path: Path) -> None:
    """json keeps the last of two equal keys silently: one reader's width, another's."""
    from mtl_perception.checkpoint import CheckpointError, read_checkpoint_info

    text = json.dumps({k: v for k, v in GOOD_DOCUMENT.items() if k != "sha256"})
    text = text.replace('"model": {', '"model": {"width": 64, ', 1)  # width twice
    path = tmp_path / "twice.safetensors"
    save_file(GOOD_TENSORS, str(path), metadata={"mtl_perception": text})
    with pytest.raises(CheckpointError, match="key 'width' appears twice in one object"):
        read_checkpoint_info(path)


def test_a_top_level_key_format_1_does_not_have_is_refused(tmp_path: Path) -> None:
    """Unknown keys were accepted: a file claiming format 1 with more in it is not one
    this reader knows how to trust (what would the key have changed?)."""
    from mtl_perception.checkpoint import CheckpointError, read_checkpoint_info

    document = {k: v for k, v in GOOD_DOCUMENT.items() if k != "sha256"}
    path = tmp_path / "extra.safetensors"
    save_file(GOOD_TENSORS, str(path), metadata={"mtl_perception": json.dumps(document)})
    read_checkpoint_info(path)  # hand-built without a digest: loads
    document["normalize_inputs"] = False
    save_file(GOOD_TENSORS, str(path), metadata={"mtl_perception": json.dumps(document)})
    with pytest.raises(CheckpointError, match=r"key 'normalize_inputs' is not one of format "
                                              r"1's \(class_names, format_version"):
        read_checkpoint_info(path)
