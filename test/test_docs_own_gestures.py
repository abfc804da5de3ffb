"""docs/own-gestures.md, run as written: every command of the page on tiny recordings.

The commands and the set config are read from the page itself (its ```bash
and ```yaml blocks, in order), so the page cannot drift from the code. The
one change: the fine-tuning's `iterations=` is lowered (plus a few speed
settings appended), since tiny recordings need only a few steps to show the
flow works. What a user does by hand between commands (editing the template
labels) is done here.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers_bag import START_NS, TOPIC
from helpers_motion import write_motion_tree

from mtl_perception.bag.evaluate import main as evaluate_bag
from mtl_perception.bag.types import IMAGE
from mtl_perception.bag.writer import BagWriter, image_message
from mtl_perception.checkpoint import CheckpointInfo, read_checkpoint_info, save_checkpoint
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig
from training.__main__ import main as training

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "own-gestures.md"
FAST = ["val_every=2", "save_every=2", "workers=0", "batch_size=4", "val_max_per_task=2",
        "log_every=1"]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


def recording(path: Path, moves: list[tuple[float, float, int]], seconds: float = 12.0) -> Path:
    """25 fps images of a still texture that moves (dy, 3 px a frame) inside `moves`."""
    base = np.random.default_rng(len(moves)).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    shift = np.zeros(2, int)
    with BagWriter(path, "mcap") as writer:  # type: ignore[arg-type]
        for i in range(round(seconds * 25)):
            t = i / 25
            for a, b, dy in moves:
                if a <= t < b:
                    shift += (dy, 3)
            stamp = START_NS + i * 40_000_000
            frame = np.roll(base, tuple(shift), axis=(0, 1))
            writer.write(TOPIC, IMAGE, stamp, image_message(frame, stamp, "cam"))
    return path


def demo_model(root: Path) -> None:
    """What `make demo` leaves: its set (motion videos) and a checkpoint of cpu_small's shape."""
    write_motion_tree(root / "synthetic" / "action", ["left", "right"], 3, 1)
    write_motion_tree(root / "synthetic" / "action_test", ["left", "right"], 1, 2)
    write_motion_tree(root / "synthetic" / "gesture", ["up", "down"], 3, 3)
    write_motion_tree(root / "synthetic" / "gesture_test", ["up", "down"], 1, 4)
    set_path = root / "synthetic" / "set.yaml"
    set_path.write_text(yaml.safe_dump({"class_merge": "none", "tasks": {
        "action": [{"format": "folders", "root": "action", "test_root": "action_test"}],
        "gesture": [{"format": "folders", "root": "gesture", "test_root": "gesture_test"}]}}))
    config = ModelConfig(method="hps", width=16, trainable_stages=5, frame_differences=True,
                         task_names=("action", "gesture"), num_classes=(2, 2))
    torch.manual_seed(0)
    (root / "model").mkdir(parents=True)
    save_checkpoint(root / "model" / "best.safetensors", build_model(config).eval(),
                    CheckpointInfo(config, (("left", "right"), ("down", "up")),
                                   PreprocessConfig(clip_length=8, resize=(48, 64),
                                                    crop=(48, 64)),
                                   {"config": {"set": str(set_path.resolve()),
                                               "clip": {"frame_step": 4}}}))


def run(command: str) -> int:
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "training"]:
        if words[3] == "train":
            words = [re.sub(r"^iterations=\d+$", "iterations=2", w) for w in words] + FAST
        return training(words[3:])
    if words[0] == "evaluate_bag":
        return evaluate_bag([*words[1:], "--no-progress", "--threads", "1"])
    raise AssertionError(f"the page runs a command this test does not know: {command}")


def test_the_pages_commands_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "config" / "train").mkdir(parents=True)
    shutil.copy(REPO / "config" / "train" / "cpu_small.yaml", tmp_path / "config" / "train")
    demo_model(tmp_path / "demo")
    gestures = [(1.0, 2.4, -2), (4.0, 5.4, 0), (8.0, 9.4, -2)]  # up, zigzag, up
    (tmp_path / "recordings").mkdir()
    for take in ("take1", "take2"):
        recording(Path("recordings") / take, gestures)
    commands = [line for block in blocks("bash") for line in block.splitlines()
                if line.strip()]
    assert [c.split()[:4] for c in commands][:2] == [["python", "-m", "training", "label-bag"]] * 2
    Path("my_set.yaml").write_text(blocks("yaml")[0])
    with caplog.at_level("INFO"):
        for command in commands:
            assert run(command) == 0, command
            if "label-bag" in command:  # the user's edit: a class on each proposal
                out = Path(shlex.split(command)[shlex.split(command).index("--out") + 1])
                assert out.read_text().count("TODO") >= 1
                out.write_text("start,end,task,label\n1.0,2.4,gesture,up\n"
                               "4.0,5.4,gesture,zigzag\n8.0,9.4,gesture,up\n")
    gated = read_checkpoint_info(Path("runs/mine/gated.safetensors"))
    assert gated.model.gate and gated.model.task_names == ("action", "gesture")
    assert gated.class_names == (("left", "right"), ("down", "up", "zigzag"))  # nothing lost
    assert gated.provenance["stream"] == {"source_fps": 25.0, "frame_step": 4,
                                          "clip_span_s": 1.12, "target_fps": 6.25}
    assert "target_fps 6.25 (not" in caplog.text  # evaluate_bag took the recorded rate
    assert "init: task action kept" in caplog.text and "1 new (zigzag)" in caplog.text
    assert Path("runs/mine/eval/metrics.json").is_file()
