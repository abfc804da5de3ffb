"""Issue 15 (hardening, round 2): checksums first, one validator per value, clean stops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_bag import tiny_checkpoint
from safetensors import safe_open
from safetensors.torch import save_file

from mtl_perception.checkpoint import CheckpointError, read_checkpoint_info


def _edit_class_name(good: Path, path: Path, old: str, new: str) -> Path:
    with safe_open(str(good), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    document = json.loads(metadata["mtl_perception"])
    document["class_names"] = [[new if n == old else n for n in names]
                               for names in document["class_names"]]
    save_file(tensors, str(path), metadata={"mtl_perception": json.dumps(document)})
    return path


def test_an_edited_class_name_is_a_changed_checkpoint_before_anything_reads_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mtl_perception.bag.evaluate import main

    good = tiny_checkpoint(tmp_path / "good.safetensors")
    names = read_checkpoint_info(good).class_names
    edited = _edit_class_name(good, tmp_path / "edited.safetensors", names[0][0], "renamed")
    with pytest.raises(CheckpointError, match="corrupt or was edited"):
        read_checkpoint_info(edited)
    labels = tmp_path / "labels.csv"  # names the original class: a labels problem otherwise
    labels.write_text(f"start,end,task,label\n0,1,action,{names[0][0]}\n")
    code = main(["--bag", str(tmp_path / "nobag"), "--checkpoint", str(edited), "--labels",
                 str(labels), "--out", str(tmp_path / "out"), "--no-progress"])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and len(errors) == 1 and "corrupt or was edited" in errors[0]
