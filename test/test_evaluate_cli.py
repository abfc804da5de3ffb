"""`python -m training evaluate`: a real checkpoint on a class-folder set, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_datasets import write_yaml

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig
from training.__main__ import main
from training.datasets.clip_dataset import ClipDataset, ClipSamplingConfig
from training.datasets.sets import build_split, load_set
from training.datasets.video import write_video

PRE = PreprocessConfig(clip_length=4, resize=(32, 32), crop=(32, 32))
CLASSES = {"action": ["jump", "run"], "gesture": ["left", "right"]}


def _tree(root: Path, classes: list[str], per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        for i in range(per_class):
            frames = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
            frames[..., label] = 255  # a class cue the rigged head need not find
            write_video(root / name / f"{name}{i}.avi", frames, fps=10.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    tasks = {}
    for n, (task, classes) in enumerate(CLASSES.items()):
        _tree(d / task / "train", classes, 1, n)
        _tree(d / task / "test", classes, 2, 10 + n)
        tasks[task] = [{"format": "folders", "root": f"{task}/train", "test_root": f"{task}/test"}]
    set_file = write_yaml(d / "set.yaml", {"name": "tiny", "class_merge": "none", "tasks": tasks})
    torch.manual_seed(0)
    config = ModelConfig(method="lws", width=4, num_classes=(2, 2))
    model = build_model(config).eval()
    info = CheckpointInfo(model=config, class_names=(("jump", "run"), ("left", "right")),
                          preprocess=PRE)
    save_checkpoint(d / "model.safetensors", model, info)
    return set_file, d / "model.safetensors"


def test_scores_match_the_model_run_by_hand(setup: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    set_file, checkpoint = setup
    out = tmp_path / "result.json"
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--config", str(set_file),
                 "--json", str(out), "--num-eval-clips", "2", "--batch-size", "3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "cumulative" in text and "confusion" in text
    data = json.loads(out.read_text())

    # Recompute clip accuracy with score_all, one centre clip at a time.
    from mtl_perception.checkpoint import load_checkpoint
    model = load_checkpoint(checkpoint).model
    splits = build_split(load_set(set_file), "test")
    correct = total = 0
    for task_id, task in enumerate(CLASSES):
        dataset = ClipDataset.from_splits({task_id: splits[task]}, "centre", PRE,
                                          ClipSamplingConfig(num_eval_clips=2))
        hits = 0
        for i in range(len(dataset)):
            item = dataset[i]
            assert item is not None
            clip, label, _ = item
            with torch.no_grad():
                hits += int(model.score_all(clip[None])[task_id].argmax(1).item() == label)
        assert data["tasks"][task]["clip"]["correct"] == hits
        assert data["tasks"][task]["clip"]["total"] == len(dataset) == 4
        assert sum(map(sum, data["tasks"][task]["video"]["confusion"])) == 4
        correct, total = correct + hits, total + len(dataset)
    assert data["cumulative_clip_accuracy"] == pytest.approx(correct / total)


def test_autocast_is_ignored_on_the_cpu_as_the_node_ignores_it(
        setup: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`evaluate --autocast bf16` on the CPU ran bfloat16 while the node and evaluate_bag
    run float32 there: the same checkpoint scored differently by the two tools."""
    set_file, checkpoint = setup
    results = {}
    for mode in ("none", "bf16"):
        out = tmp_path / f"{mode}.json"
        with caplog.at_level("WARNING"):
            assert main(["evaluate", "--checkpoint", str(checkpoint), "--config",
                         str(set_file), "--json", str(out), "--num-eval-clips", "2",
                         "--autocast", mode]) == 0
        results[mode] = json.loads(out.read_text())
    assert "autocast bf16 ignored on cpu: running float32" in caplog.text
    for task in CLASSES:
        assert results["bf16"]["tasks"][task] == results["none"]["tasks"][task]


def test_refusals_exit_2(setup: tuple[Path, Path], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    set_file, checkpoint = setup

    def refused(*argv: str) -> str:
        assert main(["evaluate", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
        return err

    assert "checkpoint not found" in refused("--checkpoint", str(tmp_path / "no.safetensors"),
                                             "--config", str(set_file))
    # Same tasks, other class names: the checkpoint's labels would be misread.
    config = ModelConfig(method="hps", width=4, num_classes=(2, 2))
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, build_model(config), CheckpointInfo(
        model=config, class_names=(("jump", "run"), ("right", "left")), preprocess=PRE))
    err = refused("--checkpoint", str(other), "--config", str(set_file))
    assert "'gesture' class names differ: class 0 is 'right' in the checkpoint" in err
    # A checkpoint whose task the set lacks.
    stl = ModelConfig(method="stl", width=4, task_names=("pose",), num_classes=(2,))
    lone = tmp_path / "stl.safetensors"
    save_checkpoint(lone, build_model(stl), CheckpointInfo(model=stl, class_names=(("a", "b"),)))
    assert "the set has no task ['pose']" in refused("--checkpoint", str(lone),
                                                    "--config", str(set_file))
    if not torch.cuda.is_available():
        assert "CUDA is not available" in refused("--checkpoint", str(checkpoint), "--config",
                                           str(set_file), "--device", "cuda")
    not_safetensors = tmp_path / "junk.safetensors"
    not_safetensors.write_bytes(b"\x00" * 64)
    assert "corrupt" in refused("--checkpoint", str(not_safetensors), "--config", str(set_file))
    assert "not found" in refused("--checkpoint", str(checkpoint),
                                  "--config", str(tmp_path / "none.yaml"))


def test_frame_step_defaults_to_the_trained_one() -> None:
    """A model trained on every 4th frame is scored on every 4th frame unless told otherwise."""
    from training.evaluation.cli import trained_frame_step

    model = ModelConfig(method="hps", width=2, num_classes=(2, 2))
    names = (("a", "b"), ("c", "d"))

    def info(provenance: dict) -> CheckpointInfo:
        return CheckpointInfo(model, names, provenance=provenance)

    assert trained_frame_step(info({"config": {"clip": {"frame_step": 4}}})) == 4
    for odd in ({}, {"config": []}, {"config": {"clip": {"frame_step": 0}}},
                {"config": {"clip": {"frame_step": True}}}):
        assert trained_frame_step(info(odd)) == 1


@pytest.mark.parametrize("target", ["model.safetensors", "set.yaml", "mine.json"])
def test_json_never_replaces_an_input_or_an_existing_file_before_the_work(
        setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], target: str) -> None:
    set_file, checkpoint = setup
    out = set_file.parent / target
    if target == "mine.json":
        out.write_text("a user's file")
    before = out.read_bytes()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--config", str(set_file),
                 "--json", str(out), "--no-video"]) == 2
    err = capsys.readouterr().err
    assert ("already exists; pass --overwrite" if target == "mine.json"
            else "an input of this run") in err
    assert "score" not in capsys.readouterr().out and out.read_bytes() == before
    if target != "mine.json":  # not even with --overwrite
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--config", str(set_file),
                     "--json", str(out), "--overwrite", "--no-video"]) == 2
        assert out.read_bytes() == before


def test_none_margin_is_a_finite_number_of_seconds(setup: tuple[Path, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    set_file, checkpoint = setup
    for value in ("inf", "nan", "-1"):
        with pytest.raises(SystemExit):
            main(["evaluate", "--checkpoint", str(checkpoint), "--config", str(set_file),
                  "--none-margin-s", value])
        assert "--none-margin-s: must be in 0..3600" in capsys.readouterr().err
