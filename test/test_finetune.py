"""`init: CHECKPOINT`: what is copied, what starts fresh, provenance, and learning a new class."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from helpers_bag import tiny_checkpoint
from helpers_motion import write_motion_tree

from mtl_perception.checkpoint import load_checkpoint, read_checkpoint_info
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.settings import SettingsError
from training.datasets.sets import build_task_split, load_set
from training.evaluation.scoring import EvalConfig, Evaluator
from training.train.config import load_train_config
from training.train.finetune import InitError, init_from_checkpoint
from training.train.trainer import train

CPU_SMALL = Path(__file__).resolve().parents[1] / "config" / "train" / "cpu_small.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _model(gestures: int, width: int = 4, tasks: tuple[str, ...] = ("action", "gesture"),
           seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    counts = (3, gestures) if len(tasks) == 2 else (gestures,)
    return build_model(ModelConfig(method="hps", width=width, task_names=tasks,
                                   num_classes=counts))


def test_unchanged_heads_and_backbone_bitwise_extended_head_keeps_its_rows(
        tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "base.safetensors")  # action (walk, jump, sit), gesture
    source = load_checkpoint(ckpt).model.state_dict()
    model = _model(3)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    record = init_from_checkpoint(model, (("walk", "jump", "sit"), ("stop", "clap", "wave")),
                                  ckpt)
    state = model.state_dict()
    for key, tensor in state.items():
        if not key.startswith("heads."):
            assert torch.equal(tensor, source[key]), key  # step 0: the checkpoint's weights
    assert torch.equal(state["heads.0.weight"], source["heads.0.weight"])  # same classes
    assert torch.equal(state["heads.0.bias"], source["heads.0.bias"])
    # gesture was (wave, stop): their rows move to their new places, clap is fresh
    assert torch.equal(state["heads.1.weight"][0], source["heads.1.weight"][1])
    assert torch.equal(state["heads.1.weight"][2], source["heads.1.weight"][0])
    assert torch.equal(state["heads.1.weight"][1], fresh["heads.1.weight"][1])
    assert torch.equal(state["heads.1.bias"][1], torch.tensor(0.0))
    assert record["heads"] == {"action": "kept",
                              "gesture": "extended (2 of 2 old classes kept, 1 new)"}
    assert record["tasks"] == ["action", "gesture"] and len(record["sha256"]) == 64
    # the model answers as the checkpoint did for the kept task, before any step
    clip = torch.randn(2, 3, 4, 32, 32)
    model.eval()
    with torch.no_grad():
        ours = model.score_all(clip)
        theirs = load_checkpoint(ckpt).model.score_all(clip)
    assert torch.equal(ours[0], theirs[0])
    assert torch.equal(ours[1][:, [0, 2]], theirs[1][:, [1, 0]])


def test_new_task_gets_a_fresh_head_and_other_widths_are_refused(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "base.safetensors")
    model = _model(2, tasks=("pointing",))
    fresh = model.state_dict()["heads.0.weight"].clone()
    assert init_from_checkpoint(model, (("a", "b"),), ckpt)["heads"] == {"pointing": "new"}
    assert torch.equal(model.state_dict()["heads.0.weight"], fresh)
    with pytest.raises(InitError, match=r"init: .*base.safetensors has model.width 4, this run 8"):
        init_from_checkpoint(_model(2, width=8), (("a", "b"),) * 2, ckpt)
    with pytest.raises(InitError, match="init: checkpoint not found"):
        init_from_checkpoint(_model(2), (("a", "b"),) * 2, tmp_path / "nothing.safetensors")


def _set(root: Path, name: str, classes: list[str], train: int, test: int, seed: int) -> Path:
    write_motion_tree(root / name / "train", classes, train, seed)
    write_motion_tree(root / name / "test", classes, test, seed + 1)
    path = root / f"{name}.yaml"
    path.write_text(f"class_merge: none\ntasks:\n  gesture:\n    - format: folders\n"
                    f"      root: {root / name / 'train'}\n"
                    f"      test_root: {root / name / 'test'}\n")
    return path


def test_a_new_class_is_learned_from_a_few_dozen_clips(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A base model knows left/right motion; fine-tuning adds "up" from 12 training videos.

    Scored on 20 held-out "up" videos (new textures). Why luck cannot pass: a model
    that had not learned "up" scores it at most at chance, 1/3 (it is one of three
    classes); 17 or more of 20 at p = 1/3 has probability 3e-6. The run is seeded,
    so the figure is the same on every run.
    """
    common = ["model.width=4", "clip.clip_length=8", "clip.resize=[32,32]", "clip.crop=[32,32]",
              "clip.frame_step=1", "workers=0", "log_every=100", "pretrained=none",
              "batch_size=8", "val_max_per_task=2",
              "lr_schedule=constant"]  # the rate this test's figure was measured at
    base_set = _set(tmp_path, "base", ["left", "right"], 12, 1, 10)
    base = train(load_train_config(CPU_SMALL, [f"set={base_set}", *common, "iterations=30",
                                               "val_every=30"]),
                 tmp_path / "base_run", tensorboard=False, progress=False)
    new_set = _set(tmp_path, "new", ["left", "right", "up"], 12, 20, 20)
    with caplog.at_level(logging.INFO):
        tuned = train(load_train_config(CPU_SMALL, [f"set={new_set}", *common, "iterations=80",
                                                    "val_every=80", f"init={base.best}",
                                                    "new_classes=[gesture/up]"]),
                      tmp_path / "tuned", tensorboard=False, progress=False)
    assert "heads: gesture extended (2 of 2 old classes kept, 1 new)" in caplog.text
    assert "init: task gesture extended: classes 2 kept; 1 new (up)" in caplog.text
    # class_sampling auto: new classes are taught, so each class gets the same share
    assert ("task gesture's classes share its batch slots evenly (samples per class: "
            "left 12, right 12, up 12)") in caplog.text
    info = read_checkpoint_info(tuned.best)
    origin = info.provenance["init"]
    assert origin["checkpoint"] == str(base.best.resolve())
    assert origin["class_names"] == [["left", "right"]]
    assert origin["origin"]["set"] == str(base_set)
    loaded = load_checkpoint(tuned.best)
    split = build_task_split(load_set(new_set), "gesture", "test")
    result = Evaluator({"gesture": split}, ["gesture"], loaded.info.preprocess,
                       EvalConfig(video_accuracy=False))(loaded.model)
    up = result.tasks[0].clip.per_class["up"]
    assert up is not None and up >= 17 / 20, result.tasks[0].clip.per_class


def test_class_sampling_auto_balances_only_when_new_classes_are_taught(tmp_path: Path) -> None:
    base = [f"set={tmp_path / 'set.yaml'}"]
    teach = [*base, f"init={tmp_path / 'x.safetensors'}", "new_classes=[gesture/up]"]
    assert load_train_config(CPU_SMALL, teach).class_balanced
    assert not load_train_config(CPU_SMALL, [*teach, "class_sampling=uniform"]).class_balanced
    assert not load_train_config(CPU_SMALL, [*base, f"init={tmp_path / 'x.safetensors'}"]
                                 ).class_balanced  # fine-tuning the same classes: the paper's
    assert not load_train_config(CPU_SMALL, base).class_balanced
    assert load_train_config(CPU_SMALL, [*base, "class_sampling=balanced"]).class_balanced
    with pytest.raises(SettingsError, match="class_sampling"):
        load_train_config(CPU_SMALL, [*base, "class_sampling=even"])
