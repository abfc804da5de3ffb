"""Fine-tuning on a set that feeds only some of the checkpoint's tasks: the others are kept.

The checkpoint knows `action` (up, down) and `gesture` (left, right); the set
has gestures only. The action task stays in the model with its own weights
bitwise the checkpoint's (HPS: its head; SPS: head, column and cross-stitch
rows; LWS: head and routing), trains nothing, and is still scored.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import pytest
import torch
from helpers_motion import write_motion_tree

from mtl_perception.checkpoint import (
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig
from training.datasets.sets import build_task_split, load_set
from training.evaluation.scoring import EvalConfig, Evaluator
from training.train.config import load_train_config
from training.train.finetune import InitError, init_from_checkpoint
from training.train.trainer import train

CPU_SMALL = Path(__file__).resolve().parents[1] / "config" / "train" / "cpu_small.yaml"
ACTIONS, GESTURES = ("up", "down"), ("left", "right")
COMMON = ["model.width=4", "model.trainable_stages=2", "clip.clip_length=8",
          "clip.resize=[32,32]", "clip.crop=[32,32]", "clip.frame_step=1", "workers=0",
          "log_every=100", "batch_size=4", "val_max_per_task=2", "lr=0.01",
          "lws.nes_samples=2", "lws.sgd_samples=1"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint of both tasks, a gesture-only set and a set of both tasks."""
    root = tmp_path_factory.mktemp("unfed")
    torch.manual_seed(3)
    config = ModelConfig(method="hps", width=4, trainable_stages=2, frame_differences=True,
                         task_names=("action", "gesture"), num_classes=(2, 2))
    ckpt = root / "base.safetensors"
    save_checkpoint(ckpt, build_model(config), CheckpointInfo(
        config, (ACTIONS, GESTURES), PreprocessConfig(clip_length=8, resize=(32, 32),
                                                      crop=(32, 32))))
    trees = {name: write_motion_tree(root / name, classes, 3, seed)
             for name, classes, seed in (("gestures", GESTURES, 1), ("actions", ACTIONS, 2))}
    gestures = root / "gestures.yaml"
    gestures.write_text(f"class_merge: none\ntasks:\n  gesture:\n    - format: folders\n"
                        f"      root: {trees['gestures']}\n")
    both = root / "both.yaml"
    both.write_text(gestures.read_text() + f"  action:\n    - format: folders\n"
                    f"      root: {trees['actions']}\n")
    return {"ckpt": ckpt, "gestures": gestures, "both": both, "root": root}


def _tune(world: dict[str, Path], name: str, *more: str) -> Path:
    config = load_train_config(CPU_SMALL, [f"set={world['gestures']}", *COMMON, "iterations=4",
                                           "val_every=4", "val_split=train",
                                           f"init={world['ckpt']}", *more])
    return train(config, world["root"] / name, tensorboard=False, progress=False).best


def _at_start(tuned: Path, base: Path) -> dict[str, torch.Tensor]:
    """The tuned run's model as `init:` made it, before its first step."""
    info = read_checkpoint_info(tuned)
    model = build_model(info.model)
    init_from_checkpoint(model, info.class_names, base)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_hps_keeps_the_unfed_task_bitwise_and_scores_both(
        world: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        tuned = _tune(world, "hps")
    assert ("init: task action kept (not trained: no samples in the set): classes 2 kept"
            in caplog.text)
    assert "init: task gesture kept: classes 2 kept; samples: 6 from the set" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "not trained" in r.getMessage()]
    assert len(warnings) == 1 and "shared backbone still trains" in warnings[0]
    assert "replay: init" in warnings[0]
    info = read_checkpoint_info(tuned)
    assert info.model.task_names == ("action", "gesture")
    assert info.class_names == (ACTIONS, GESTURES)
    assert info.provenance["init"]["not_trained"] == ["action"]
    assert set(info.provenance["metrics"]["accuracy"]) == {"gesture"}  # nothing to score
    base, after = load_checkpoint(world["ckpt"]).model.state_dict(), \
        load_checkpoint(tuned).model.state_dict()
    assert torch.equal(after["heads.0.weight"], base["heads.0.weight"])
    assert torch.equal(after["heads.0.bias"], base["heads.0.bias"])
    assert not torch.equal(after["heads.1.weight"], base["heads.1.weight"])  # gesture trained
    changed = [k for k in base if not k.startswith("heads.") and base[k].is_floating_point()
               and not torch.equal(base[k], after[k])]
    assert changed  # the shared backbone trained (the drift the warning is about)
    val = (world["root"] / "hps" / "val.csv").read_text().splitlines()
    assert val[0] == "iteration,clip_accuracy/action,clip_accuracy/gesture,cumulative"
    assert val[1].split(",")[1] == ""  # action: no figure, not a fake 0
    # evaluate scores both tasks of the fine-tuned checkpoint
    loaded = load_checkpoint(tuned)
    both = load_set(world["both"])
    splits = {t: build_task_split(both, t, "train") for t in ("action", "gesture")}
    result = Evaluator(splits, ["action", "gesture"], loaded.info.preprocess,
                       EvalConfig(video_accuracy=False, frame_step=1))(loaded.model)
    assert [(t.task, t.clip.total) for t in result.tasks] == [("action", 6), ("gesture", 6)]


@pytest.mark.parametrize("method, weighting", [("sps", "dwa"), ("lws", "automatic")])
def test_sps_and_lws_keep_the_unfed_tasks_own_weights(world: dict[str, Path], method: str,
                                                      weighting: str) -> None:
    tuned = _tune(world, method, f"method={method}", f"weighting.method={weighting}",
                  "weighting.dwa_window=1")
    start, after = _at_start(tuned, world["ckpt"]), load_checkpoint(tuned).model.state_dict()
    own = [k for k in start if k.startswith(("heads.0.", "columns.0."))]
    for key in own:
        assert torch.equal(after[key], start[key]), key
    if method == "sps":
        assert any(k.startswith("columns.0.") and k.endswith("running_mean") for k in own)
        stitches = [k for k in start if k.startswith("stitches.")]
        assert stitches
        for key in stitches:
            assert torch.equal(after[key][0], start[key][0]), key  # action's row
        assert any(not torch.equal(after[k][1], start[k][1]) for k in stitches)
        trained = [k for k in start if k.startswith("columns.1.")]
    else:
        assert torch.equal(after["routing_probs"][0], start["routing_probs"][0])
        trained = [k for k in start if k.startswith("units.")]
    assert any(not torch.equal(after[k], start[k]) for k in trained)
    with (world["root"] / method / "train.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    assert last["loss/action"] == last["weight/action"] == ""  # absent: no loss, no weight
    assert math.isfinite(float(last["loss/gesture"])) and math.isfinite(float(last["loss"]))
    if weighting == "dwa":  # K and the softmax over the fed task only: lambda = 1 * 1
        assert float(last["weight/gesture"]) == 1.0


def test_a_jointly_trained_gate_with_an_unfed_task_is_refused(world: dict[str, Path]) -> None:
    with pytest.raises(InitError, match=r"^gate.enabled: task 'action' has no samples in .* "
                                        r"fit-gate .*`replay: init`$"):
        _tune(world, "gated", "gate.enabled=true")
