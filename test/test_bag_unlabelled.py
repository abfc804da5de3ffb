"""evaluate_bag --unlabelled none end to end: what it adds, and that it changes nothing else.

A real bag and tiny checkpoint (test/helpers_bag.py); for the task gate the
loaded model is wrapped in a fake gate whose answer per clip the test sets
(the model side of the gate is another module's; the contract is one extra
output after the task logits).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_bag import START_NS, tiny_checkpoint, write_image_bag

from mtl_perception.bag import evaluate as evaluate_module
from mtl_perception.checkpoint import CheckpointInfo, load_checkpoint
from mtl_perception.deploy.engine import Engine
from mtl_perception.deploy.torch_engine import TorchEngine

SETTINGS = ["--set", "target_fps=10", "inference_stride=2"]
ACTION, GESTURE, NONE = 0, 1, 2
# 40 frames at 10 fps, clips of 4 frames every 2: clip k ends at frame 3 + 2k (0.3 + 0.2k s).
SCHEDULE = [NONE] * 3 + [GESTURE] * 4 + [NONE] * 4 + [ACTION] * 4 + [NONE] * 4
LABELS = "start,end,task,label\n0.6,1.5,gesture,wave\n2.2,3.0,action,walk\n"


class FakeGate(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, schedule: list[int]) -> None:
        super().__init__()
        self.inner, self.gate, self.schedule, self.calls = inner, torch.nn.Identity(), schedule, 0

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        gate = torch.full((clips.shape[0], 3), -10.0)
        for n in range(clips.shape[0]):
            gate[n, self.schedule[min(self.calls, len(self.schedule) - 1)]] = 10.0
            self.calls += 1
        return [*self.inner.score_all(clips), gate]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("untrimmed")
    (root / "labels.csv").write_text(LABELS, encoding="utf-8")
    (root / "empty.csv").write_text("start,end,task,label\n", encoding="utf-8")
    return {"checkpoint": tiny_checkpoint(root / "model.safetensors"),
            "bag": write_image_bag(root / "bag", count=40, fps=10.0), "root": root}


def run(files: dict[str, Path], out: Path, *extra: str, labels: str = "labels.csv") -> int:
    return evaluate_module.main([
        "--bag", str(files["bag"]), "--checkpoint", str(files["checkpoint"]),
        "--labels", str(files["root"] / labels), "--out", str(out), "--no-progress",
        *SETTINGS, *extra])


def test_unlabelled_none_only_adds_sections(files: dict[str, Path], tmp_path: Path) -> None:
    assert run(files, tmp_path / "a") == 0
    assert run(files, tmp_path / "b", "--unlabelled", "none") == 0
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in "ab")
    added = set(b) - set(a)
    assert added == {"task_confusion", "gesture_events", "frame_ap", "none_recall"}
    timed = {"timing", "frames_per_second", "latency_ms", "frame_to_result_ms", "frames"}
    for key in set(a) - timed - {"unlabelled"}:
        assert a[key] == b[key], key  # the trimmed metrics do not move
    a["frames"].pop("input_fps"), b["frames"].pop("input_fps")  # a measured rate
    assert a["frames"] == b["frames"]
    assert (a["unlabelled"], b["unlabelled"]) == ("ignore", "none")
    assert b["task_confusion"] is None  # no gate in this checkpoint
    assert b["gesture_events"]["source"] == "max_softmax"
    assert b["gesture_events"]["true_gestures"] == 1
    assert (tmp_path / "a/predictions.csv").read_bytes() == (tmp_path / "b/predictions.csv"
                                                              ).read_bytes()
    assert not (tmp_path / "a/timeline.png").exists()
    assert (tmp_path / "b/timeline.png").read_bytes()[:4] == b"\x89PNG"
    report = (tmp_path / "b/report.md").read_text()
    assert "Untrimmed stream" in report and "timeline.png" in report
    assert "Untrimmed" not in (tmp_path / "a/report.md").read_text()
    # An earlier output with a timeline is still recognised as ours (--overwrite).
    assert run(files, tmp_path / "b", "--unlabelled", "none", "--overwrite") == 0


def test_a_background_only_recording_needs_unlabelled_none(files: dict[str, Path],
                                                           tmp_path: Path) -> None:
    assert run(files, tmp_path / "a", labels="empty.csv") == 2
    assert run(files, tmp_path / "b", "--unlabelled", "none", labels="empty.csv") == 0
    events = json.loads((tmp_path / "b/metrics.json").read_text())["gesture_events"]
    assert events["true_gestures"] == 0 and events["levenshtein_accuracy"] is None
    assert events["none_minutes"] == pytest.approx(3.9 / 60)  # up to the last clip's end


def test_gate_metrics_events_and_bag_topics(files: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def load(path: Any, backend: str = "torch", device: Any = "cpu", **_: Any) -> Engine:
        loaded = load_checkpoint(path)
        info = loaded.info  # a gate is the metadata's word: this model says it has one
        gated = CheckpointInfo(replace(info.model, gate=True), info.class_names,
                               info.preprocess, info.provenance)
        return TorchEngine(FakeGate(loaded.model, SCHEDULE), gated, torch.device("cpu"))

    monkeypatch.setattr(evaluate_module, "load_engine", load)
    out = tmp_path / "out"
    assert run(files, out, "--unlabelled", "none", "--write-bag",
               "--set", "gate=publish") == 0  # the node's topics need publish
    m = json.loads((out / "metrics.json").read_text())
    # Clips 0-2 end at 0.3-0.7 s; clip 2 (0.4-0.7) lies half in the gesture [0.6, 1.5]? 0.1 of
    # 0.3 s: none. Clips 3-6 (0.6-1.5) are gesture clips; 7 (1.2-1.5 +): 0.3 of 0.3 in it.
    confusion = m["task_confusion"]
    assert confusion["classes"] == ["action", "gesture", "none"] and confusion["clips"] == 19
    assert sum(map(sum, confusion["matrix"])) == 19
    assert confusion["matrix"][1][1] == 4  # the four gesture clips the gate called gesture
    events = m["gesture_events"]
    assert events["source"] == "gate" and events["events"] == 1 and events["detected"] == 1
    # Gesture clips 3..6 end at 0.9..1.5 s (0.6 s >= event_min_s); decided at clip 7, 1.7 s.
    assert events["emitted"][0]["time_s"] == pytest.approx(1.7)
    assert events["detection_delay_s"]["p50"] == pytest.approx(0.2)
    assert events["false_events"] == 0 and events["missed"] == 0
    from rosbags.highlevel import AnyReader

    with AnyReader([out / "bag"]) as reader:
        topics = {name: info.msgcount for name, info in reader.topics.items()}
        (event,) = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(
            [c for c in reader.connections if c.topic == "/human/gesture/events"])]
    assert topics["/human/task"] == 19
    stamp = event.header.stamp.sec * 10**9 + event.header.stamp.nanosec
    assert stamp == START_NS + 17 * 100_000_000 and len(event.results) == 1
    # gate off (the default), as on the robot: no gate topics in the copy.
    assert run(files, tmp_path / "off", "--unlabelled", "none", "--write-bag") == 0
    with AnyReader([tmp_path / "off" / "bag"]) as reader:
        assert not {"/human/task", "/human/gesture/events"} & set(reader.topics)
