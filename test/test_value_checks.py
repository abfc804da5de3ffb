"""One validator per value, checksums first (class names, threads, overrides, devices, topics,
label seconds, loader processes): each bad value refused in one line where it is read."""

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


# -- class 5: one validator per value, everywhere it enters ----------------------------


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize(("extra", "expected"), [
    (["--threads", "100000"], "--threads 100000: expected 0 (default) to 256"),
    (["--threads", "-1"], "--threads -1: expected"),
    (["--set", "target_fps=10", "--set", "target_fps=5"], "target_fps is already set"),
    (["--set", "target_fps=10", "target_fps=5"], "target_fps is already set"),
])
def test_evaluate_bag_refuses_bad_threads_and_repeated_settings(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, extra: list[str], expected: str
) -> None:
    from mtl_perception.bag.evaluate import main

    code = main(["--bag", str(tmp_path / "b"), "--checkpoint", str(tmp_path / "c"), "--labels",
                 str(tmp_path / "l"), "--out", str(tmp_path / "out"), *extra])
    assert code == 2 and len(_errors(caplog)) == 1 and expected in _errors(caplog)[0]


def test_a_repeated_override_is_refused_everywhere() -> None:
    from mtl_perception.settings import SettingsError, apply_overrides

    assert apply_overrides({}, ["a.b=1", "a.c=2"]) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(SettingsError, match="a.b is already set by 'a.b=1'"):
        apply_overrides({}, ["a.b=1", "a.b=2"])


def test_training_refuses_cuda_without_cuda_at_config_load() -> None:
    import torch

    from mtl_perception.settings import SettingsError
    from training.train.config import load_train_config

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    root = Path(__file__).resolve().parents[1]
    with pytest.raises(SettingsError, match="CUDA is not available"):
        load_train_config(root / "config/train/cpu_small.yaml", ["device=cuda"])


@pytest.mark.parametrize("topic", ["/cam-1", "/cam\n", "/cam/", "/caméra", "1cam"])
def test_one_topic_check_for_the_node_and_dataset_to_bag(topic: str) -> None:
    from mtl_perception.names import topic_problem
    from mtl_perception.ros.params import PARAMS, check_value
    from training.tools.to_bag import ToBagError, _check_numbers

    spec = next(p for p in PARAMS if p.name == "image_topics")
    problem = topic_problem(topic)
    assert problem is not None
    assert check_value(spec, ["/ok", topic]) == f"image_topics: {problem}"
    import argparse

    args = argparse.Namespace(start_s=1.0, gap_s=1.0, jpeg_quality=90, max_videos=0, topic=topic)
    with pytest.raises(ToBagError, match="not a valid ROS 2 topic name"):
        _check_numbers(args)


@pytest.mark.parametrize("value", ["1_0", "0x1", "nan", "inf", "1e999", "1 5", "١"])
def test_labels_seconds_are_strict_decimals(tmp_path: Path, value: str) -> None:
    from mtl_perception.bag.labels import LabelsError, read_labels

    path = tmp_path / "labels.csv"
    path.write_text(f"start,end,task,label\n0,{value},action,walk\n")
    with pytest.raises(LabelsError, match=r"is not a (finite )?number \(decimal seconds"):
        read_labels(path, {"action": ["walk"]})
    path.write_text("start,end,task,label\n 0 ,+1.5e0,action,walk\n.5,2.,action,walk\n")
    with pytest.raises(LabelsError, match="overlaps"):  # both rows parsed as numbers
        read_labels(path, {"action": ["walk"]})


@pytest.mark.parametrize("name", ["walk\nrun", "tab\there", "bell\x07", "line\u2028sep", " "])
def test_class_names_with_control_characters_are_refused(name: str) -> None:
    from mtl_perception.checkpoint import CheckpointInfo
    from mtl_perception.models import ModelConfig
    from mtl_perception.names import class_name_problem

    assert class_name_problem(name) is not None
    config = ModelConfig(method="stl", width=4, task_names=("action",), num_classes=(2,))
    with pytest.raises(ValueError, match="class name"):
        CheckpointInfo(config, (("ok", name),))


@pytest.mark.parametrize("override", ["workers=100000", "workers=-1"])
def test_loader_processes_are_bounded_by_one_check(override: str) -> None:
    from mtl_perception.settings import SettingsError
    from training.evaluation.scoring import EvalConfig
    from training.train.config import load_train_config

    root = Path(__file__).resolve().parents[1]
    with pytest.raises(SettingsError, match=r"workers -?\d+: expected 0 .* to 256"):
        load_train_config(root / "config/train/cpu_small.yaml", [override])
    with pytest.raises(ValueError, match="evaluation.num_workers 100000: expected"):
        EvalConfig(num_workers=100000)
