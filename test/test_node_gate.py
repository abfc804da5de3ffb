"""The node's task-gate outputs (gate: off | publish | filter), on the rclpy stand-in
(test/test_node_standin.py) with the real streaming core and a tiny model given a fake
gate whose answer per forward pass the test sets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import test_node_standin as ros
import torch
from test_node import (  # noqa: F401  (fixtures)
    STEP_NS,
    checkpoint,
    image,
    make_node,
    node_module,
    state,
    wait_for,
)

from mtl_perception.checkpoint import CheckpointInfo, load_checkpoint
from mtl_perception.deploy.engine import Engine
from mtl_perception.deploy.torch_engine import TorchEngine

ACTION, GESTURE, NONE = 0, 1, 2


class GatedModel(torch.nn.Module):
    """The checkpoint's model plus a fake gate: forward pass k answers `tasks[k]`
    (pass 0 is configure's warm-up)."""

    def __init__(self, inner: torch.nn.Module, tasks: list[int]) -> None:
        super().__init__()
        self.inner = inner
        self.tasks = list(tasks)
        self.calls = 0

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        task = self.tasks[min(self.calls, len(self.tasks) - 1)]
        self.calls += 1
        gate = torch.full((clips.shape[0], 3), -10.0)
        gate[:, task] = 10.0
        return [*self.inner.score_all(clips), gate]


@pytest.fixture
def gated(node_module: ModuleType, checkpoint: Path,  # noqa: F811
          monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The node loads the tiny checkpoint wrapped in GatedModel, its metadata saying it has
    a gate (an engine has a gate when its metadata says so); yields its task schedule."""
    schedule: list[int] = [NONE]

    def load(path: Any, backend: str = "torch", device: Any = "cpu", **_: Any) -> Engine:
        loaded = load_checkpoint(path)
        info = loaded.info
        gated_info = CheckpointInfo(replace(info.model, gate=True), info.class_names,
                                    info.preprocess, info.provenance)
        return TorchEngine(GatedModel(loaded.model, schedule), gated_info,
                           torch.device("cpu"))

    import mtl_perception.ros.loading as loading

    monkeypatch.setattr(loading, "load_engine", load)
    yield schedule


def run_clips(node: Any, clips: int) -> list[Any]:
    """Feed frames one at a time (clip length 4, stride 1), each clip scored before the
    next frame arrives (so the realtime core drops none); the frames fed."""
    (subscription,) = node.subscriptions
    task = node.publisher("/human/task")
    frames = []
    for i in range(clips + 3):
        frames.append(image(10**9 + i * STEP_NS, value=i))
        subscription.callback(frames[-1])
        if i >= 3:
            wait_for(lambda n=i - 2: len(task.sent) == n)
    return frames


def stamp(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def test_filter_publishes_nothing_for_a_none_clip(node_module: ModuleType,  # noqa: F811
                                                  checkpoint: Path,  # noqa: F811
                                                  gated: list[int]) -> None:
    gated[:] = [NONE, NONE, ACTION, GESTURE]  # warm-up, then one clip each
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu",
                     inference_stride=1, gate="filter")
    node.on_configure(state("unconfigured"))
    node.on_activate(state("inactive"))
    run_clips(node, 3)
    node.on_deactivate(state("active"))  # joins the worker
    action, gesture = node.publisher("/human/action"), node.publisher("/human/gesture")
    task = node.publisher("/human/task")
    node.release()
    assert [len(m.results) > 0 for m in action.sent] == [False, True, False]
    assert [len(m.results) > 0 for m in gesture.sent] == [False, False, True]
    assert [m.results[0].class_id for m in task.sent] == ["none", "action", "gesture"]
    assert sorted(h.class_id for h in task.sent[0].results) == ["action", "gesture", "none"]
    assert sum(h.score for h in task.sent[0].results) == pytest.approx(1.0)
    assert [stamp(m) for m in task.sent] == [stamp(m) for m in action.sent]


def test_publish_sends_one_event_per_gesture_and_off_sends_nothing(
    node_module: ModuleType, checkpoint: Path, gated: list[int]  # noqa: F811
) -> None:
    gated[:] = [NONE, NONE, GESTURE, GESTURE, GESTURE, NONE, NONE]  # warm-up first
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu", inference_stride=1,
                     gate="publish", event_min_s=0.1, event_refractory_s=0.0)
    node.on_configure(state("unconfigured"))
    node.on_activate(state("inactive"))
    frames = run_clips(node, 6)
    events = node.publisher("/human/gesture/events")
    (event,) = events.sent
    # Decided at the 5th clip (the first "none" after the gesture): it ends on frame 7.
    assert stamp(event) == stamp(frames[7]) and event.header.frame_id == "cam"
    assert len(event.results) == 1 and 0.0 < event.results[0].score <= 1.0
    assert all(len(m.results) > 0 for m in node.publisher("/human/action").sent)  # not filtered
    # Live: gate off stops both gate topics at once.
    (ok,) = node.set_parameters([ros.Parameter("gate", None, "off")])
    assert ok.successful and node._pipeline.config.gate == "off"
    task = node.publisher("/human/task")
    before = len(task.sent)
    (subscription,) = node.subscriptions
    subscription.callback(image(10**9 + 10 * STEP_NS))
    wait_for(lambda: len(node.publisher("/human/action").sent) == 7)
    assert len(task.sent) == before
    node.release()


def test_a_checkpoint_without_a_gate_runs_as_before_with_one_warning(
    node_module: ModuleType, checkpoint: Path  # noqa: F811
) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu", gate="filter")
    assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.SUCCESS
    topics = {p.topic for p in node.publishers}
    assert "/human/task" not in topics and "/human/gesture/events" not in topics
    (warning,) = node.logger.of("warning")
    assert "gate: filter" in warning and "fit-gate" in warning
    node.release()


def test_a_gate_with_memory_reads_the_cameras_last_clips_on_the_node(
    node_module: ModuleType, checkpoint: Path, tmp_path: Path  # noqa: F811
) -> None:
    """A checkpoint whose gate reads the 2 clips before each one (fit-gate --context 2): the
    node's /human/task scores are the offline stream's on the same messages (configure's
    warm-up never enters the memory), and differ from each clip's logits alone."""
    import numpy as np

    from mtl_perception.checkpoint import save_checkpoint
    from mtl_perception.models import build_model
    from mtl_perception.stream import StreamConfig, StreamPipeline
    from mtl_perception.stream.results import softmax

    loaded = load_checkpoint(checkpoint)
    config = replace(loaded.info.model, gate=True, gate_hidden=0, gate_context=2)
    model = build_model(config)
    model.load_state_dict(loaded.model.state_dict(), strict=False)
    torch.manual_seed(1)
    with torch.no_grad():
        assert model.gate is not None
        model.gate.last_layer.weight.normal_(0, 5.0)
    path = tmp_path / "memory.safetensors"
    info = CheckpointInfo(config, loaded.info.class_names, loaded.info.preprocess)
    save_checkpoint(path, model.eval(), info)

    node = make_node(node_module, checkpoint=str(path), device="cpu", inference_stride=1,
                     gate="publish")
    node.on_configure(state("unconfigured"))
    node.on_activate(state("inactive"))
    frames = run_clips(node, 5)
    node.on_deactivate(state("active"))
    task = node.publisher("/human/task")
    said = [{h.class_id: h.score for h in m.results} for m in task.sent]
    node.release()

    alone: list[Any] = []  # each clip's gate logits alone, as the engine gives them

    class Recording(TorchEngine):
        def __call__(self, clips: Any) -> Any:
            scores = super().__call__(clips)
            alone.extend(softmax(row) for row in scores.gate)
            return scores

    results: list[Any] = []
    offline = StreamPipeline(Recording(model, info, torch.device("cpu")),
                             config=StreamConfig(target_fps=15.0, inference_stride=1),
                             realtime=False, on_result=results.append)
    for frame in frames:
        offline.push("cam", frame)
    offline.flush()
    names = ["action", "gesture", "none"]
    assert len(said) == len(results) == len(alone) == 5
    for heard, result in zip(said, results, strict=True):
        assert [heard[n] for n in names] == pytest.approx(result.gate.tolist(), abs=1e-6)
    # the first clip has no clips before it (read as itself: its logits alone); the later
    # ones read the clips before them (near-alike frames: a small but real difference).
    # The first is the sum of 3 float32 shares against one product: equal to float32
    # rounding, which differs between CPUs (1.7e-9 on an Intel Xeon; 1e-9 was too tight)
    assert results[0].gate == pytest.approx(alone[0], abs=1e-6)
    assert max(float(np.abs(r.gate - a).max()) for r, a in zip(results[1:], alone[1:])) > 1e-4
