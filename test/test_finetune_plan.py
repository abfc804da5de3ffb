"""Fine-tuning keeps what the checkpoint knows: tasks, classes, typos caught, paths, replay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers_bag import ACTIONS, GESTURES, tiny_checkpoint

from mtl_perception.checkpoint import read_checkpoint_info
from mtl_perception.settings import SettingsError
from training.datasets.sample import LabelledSplit, VideoSample
from training.train.config import load_train_config
from training.train.finetune import InitError
from training.train.finetune_plan import Origin, Plan, plan_classes, remap, sample_per_class

CPU_SMALL = Path(__file__).resolve().parents[1] / "config" / "train" / "cpu_small.yaml"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "base.safetensors")


def _plan(ckpt: Path, set_classes: dict[str, list[str]], drop: tuple[str, ...] = (),
          new: tuple[str, ...] = (), replay: set[str] | None = None) -> Plan:
    return plan_classes(Origin.from_info(read_checkpoint_info(ckpt)).classes, ckpt, set_classes,
                        drop, new, replay or set())


def test_classes_the_set_lacks_are_kept_in_the_checkpoints_order(ckpt: Path) -> None:
    plan = _plan(ckpt, {"gesture": ["zigzag", GESTURES[0]]}, new=("gesture/zigzag",),
                 replay={"action"})
    assert plan.task_names == ("action", "gesture")
    assert plan.class_names == (tuple(ACTIONS), (*GESTURES, "zigzag"))
    gesture = plan.tasks[1]
    assert (gesture.status, gesture.new, gesture.dropped) == ("extended", ("zigzag",), ())
    assert gesture.line("9 from the set") == (
        f"init: task gesture extended: classes {len(GESTURES)} kept; 1 new (zigzag); "
        "samples: 9 from the set")


def test_a_class_the_checkpoint_lacks_is_a_typo_until_new_classes_lists_it(ckpt: Path) -> None:
    with pytest.raises(InitError) as error:
        _plan(ckpt, {"action": list(ACTIONS), "gesture": ["swipe-left"]})
    message = str(error.value)
    assert "\n" not in message and "['swipe-left'] are not in the checkpoint" in message
    assert "a typo? else list them in new_classes: [gesture/swipe-left]" in message
    # bare class names are accepted too; an unused new_classes entry is itself refused
    assert _plan(ckpt, {"action": list(ACTIONS), "gesture": ["up"]}, new=("up",)).tasks[1].new \
        == ("up",)
    with pytest.raises(InitError, match=r"new_classes: \['gesture/zigzg'\] name no class"):
        _plan(ckpt, {"action": list(ACTIONS), "gesture": ["zigzag"]},
              new=("gesture/zigzag", "gesture/zigzg"))


def test_a_task_the_set_does_not_feed_is_kept_untrained_unless_dropped(ckpt: Path) -> None:
    plan = _plan(ckpt, {"gesture": list(GESTURES)})
    assert plan.task_names == ("action", "gesture") and plan.unfed == ("action",)
    action = plan.tasks[0]
    assert (action.status, action.fed, action.classes) == ("kept", False, tuple(ACTIONS))
    assert action.line("") == (f"init: task action kept (not trained: no samples in the set): "
                               f"classes {len(ACTIONS)} kept")
    # fed by replay: trained as before
    assert _plan(ckpt, {"gesture": list(GESTURES)}, replay={"action"}).unfed == ()
    plan = _plan(ckpt, {"gesture": list(GESTURES)}, drop=("action",))
    assert plan.task_names == ("gesture",) and plan.dropped_tasks == ("action",)
    assert plan.tasks[0].status == "kept" and plan.unfed == ()
    # the set's only task dropped: nothing left to train
    with pytest.raises(InitError, match=r"^init: the set feeds none of the run's tasks "
                                        r"\['action'\].*nothing to train$"):
        _plan(ckpt, {"gesture": list(GESTURES)}, drop=("gesture",))


def test_drop_removes_a_class_and_a_drop_typo_is_refused(ckpt: Path) -> None:
    wave = GESTURES[0]
    plan = _plan(ckpt, {"action": list(ACTIONS), "gesture": list(GESTURES[1:])},
                 drop=(f"gesture/{wave}",))
    assert plan.class_names[1] == tuple(GESTURES[1:])
    assert plan.tasks[1].dropped == (wave,) and plan.tasks[1].status == "extended"
    with pytest.raises(InitError, match=r"drop: 'gesture/wav' names no task or class"):
        _plan(ckpt, {"action": list(ACTIONS)}, drop=("gesture/wav",))


def test_a_new_task_needs_its_classes_listed(ckpt: Path) -> None:
    with pytest.raises(InitError, match=r"has no task 'pointing'.*\[pointing/\*\]"):
        _plan(ckpt, {"action": list(ACTIONS), "gesture": list(GESTURES), "pointing": ["left"]})
    plan = _plan(ckpt, {"action": list(ACTIONS), "gesture": list(GESTURES),
                        "pointing": ["left", "right"]}, new=("pointing/*",))
    assert plan.tasks[2].status == "new" and plan.class_names[2] == ("left", "right")


def test_remap_moves_labels_by_name_and_leaves_dropped_classes_out() -> None:
    split = LabelledSplit([VideoSample(Path(f"v{i}"), i % 3) for i in range(6)], ["a", "b", "c"])
    out = remap(split, ("c", "x", "a"))
    assert [(s.path.name, s.label) for s in out.samples] == [("v0", 2), ("v2", 0), ("v3", 2),
                                                              ("v5", 0)]
    few = sample_per_class(split, 1, seed=0)
    assert sorted(s.label for s in few.samples) == [0, 1, 2]
    assert sample_per_class(split, 1, seed=0).samples == few.samples  # seeded


def test_override_paths_are_relative_to_the_working_folder(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_train_config(CPU_SMALL, ["set=my_set.yaml", "init=runs/a/best.safetensors",
                                           "replay=init"])
    assert config.set == tmp_path / "my_set.yaml"
    assert config.init == str(tmp_path / "runs" / "a" / "best.safetensors")
    assert config.replay == "init"
    # the file's own set: stays relative to the file
    plain = load_train_config(CPU_SMALL)
    assert plain.set == (CPU_SMALL.parent / "../../demo/synthetic/set.yaml").resolve()
    with pytest.raises(SettingsError, match="drop, new_classes and replay apply to fine-tuning"):
        load_train_config(CPU_SMALL, ["drop=[action]"])


def test_a_wrong_init_is_refused_before_the_set_is_read(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from training.train.data import build_data

    monkeypatch.chdir(tmp_path)
    (tmp_path / "set.yaml").write_text("tasks: {gesture: [{format: bag, bag: nowhere, "
                                       "labels: nowhere.csv}]}\n")
    config = load_train_config(CPU_SMALL, ["set=set.yaml", "init=missing.safetensors"])
    with pytest.raises(InitError, match=r"^init: checkpoint not found"):
        build_data(config)
    assert os.listdir(tmp_path) == ["set.yaml"]  # nothing else was written or decoded
