"""The task gate in the streaming core: splitting its logits off, `filter`, events per clip.

The fake models read the grey value v of a clip's last frame: the gate says
"gesture" for v >= 200, "action" for 100 <= v < 200 and "none" below; the
gesture head names class v % 3.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream import (
    ClipResult,
    FrameHeader,
    GestureEvent,
    StreamConfig,
    StreamPipeline,
    detect_events,
)

SIDE, LENGTH, STEP_NS = 8, 2, 100_000_000
GESTURES = ("left", "right", "stop")
INFO = CheckpointInfo(
    ModelConfig(num_classes=(2, 3)),
    (("walk", "sit"), GESTURES),
    PreprocessConfig(clip_length=LENGTH, resize=(SIDE, SIDE), crop=(SIDE, SIDE),
                     mean=(0, 0, 0), std=(1, 1, 1)),
)

# The same model with a task gate: whether a model has one is its metadata's word.
GATED = CheckpointInfo(replace(INFO.model, gate=True), INFO.class_names, INFO.preprocess)


class PlainModel(torch.nn.Module):
    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        last = (clips[:, 0, -1].mean(dim=(1, 2)) * 255).round()
        action = torch.stack([last / 255, 1 - last / 255], dim=1)
        gesture = 5 * torch.nn.functional.one_hot(last.long() % 3, 3).float()
        return [action, gesture]


class GateModel(PlainModel):
    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        last = (clips[:, 0, -1].mean(dim=(1, 2)) * 255).round()
        task = torch.where(last >= 200, 1, torch.where(last >= 100, 0, 2))
        return [*super().score_all(clips), 10 * torch.nn.functional.one_hot(task, 3).float()]


class BrokenModel(PlainModel):
    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        out = super().score_all(clips)
        return [*out, torch.zeros(clips.shape[0], 2)]  # not (N, tasks + 1)


def run(model: torch.nn.Module, values: list[int], **settings: object) -> list[ClipResult]:
    results: list[ClipResult] = []
    config = StreamConfig(target_fps=10, inference_stride=1, **settings)  # type: ignore[arg-type]
    info = INFO if isinstance(model, PlainModel) and not isinstance(model, GateModel) else GATED
    pipeline = StreamPipeline(model, info, config, realtime=False, on_result=results.append)
    for i, v in enumerate(values):
        pipeline.push_frame("cam", np.full((SIDE, SIDE, 3), v, np.uint8),
                            FrameHeader(10**9 + i * STEP_NS, "cam"))
    assert pipeline.flush(timeout=10)
    return results


def test_gate_logits_are_split_off_and_tasks_score_as_without_a_gate() -> None:
    values = [10, 150, 250, 20]
    gated, plain = run(GateModel(), values), run(PlainModel(), values)
    assert len(gated) == len(plain) == 3
    for g, p in zip(gated, plain, strict=True):
        for task in ("action", "gesture"):
            np.testing.assert_array_equal(g.tasks[task].probabilities, p.tasks[task].probabilities)
            assert g.tasks[task].top == p.tasks[task].top
        assert p.gate is None and p.event is None
        assert g.gate is not None and g.gate.dtype == np.float64 and g.gate.shape == (3,)
        assert g.gate.sum() == pytest.approx(1.0)
    # Clips end on 150 (action), 250 (gesture), 20 (none).
    assert [int(np.argmax(g.gate)) for g in gated] == [0, 1, 2]  # type: ignore[arg-type]
    assert gated[0].gate[0] == pytest.approx(1 / (1 + 2 * np.exp(-10)))  # type: ignore[index]


def test_filter_publishes_nothing_for_a_none_clip() -> None:
    values = [10, 150, 250, 20]
    action_clip, gesture_clip, none_clip = run(GateModel(), values, gate="filter")
    assert none_clip.tasks["action"].top == () and none_clip.tasks["gesture"].top == ()
    assert action_clip.tasks["action"].top and action_clip.tasks["gesture"].top == ()
    assert gesture_clip.tasks["action"].top == () and gesture_clip.tasks["gesture"].top
    # The probabilities stay (smoothing and metrics see every clip).
    assert none_clip.tasks["gesture"].probabilities.sum() == pytest.approx(1.0)
    # publish (and off) leave the results alone; a model without a gate ignores filter.
    for clip in [*run(GateModel(), values, gate="publish"), *run(PlainModel(), values,
                                                                 gate="filter")]:
        assert clip.tasks["action"].top and clip.tasks["gesture"].top
    # Below gate_threshold 1e-4 the gate "supports" every task a little: nothing is filtered.
    assert all(c.tasks["gesture"].top for c in run(GateModel(), values, gate="filter",
                                                  gate_threshold=1e-5))


def test_gate_settings_change_live() -> None:
    pipeline = StreamPipeline(GateModel(), GATED, StreamConfig(), realtime=False)
    config = pipeline.update_settings(gate="filter", gate_threshold=0.7, event_threshold=0.6)
    assert (config.gate, config.gate_threshold, config.event_threshold) == ("filter", 0.7, 0.6)
    with pytest.raises(ValueError, match="gate must be one of"):
        pipeline.update_settings(gate="on")
    with pytest.raises(ValueError, match="event_max_s"):
        pipeline.update_settings(event_min_s=10.0)


def test_a_malformed_gate_output_fails_the_batch_not_the_pipeline() -> None:
    results: list[ClipResult] = []
    pipeline = StreamPipeline(BrokenModel(), GATED, StreamConfig(target_fps=10), realtime=False,
                              on_result=results.append)
    for i in range(LENGTH):
        pipeline.push_frame("cam", np.zeros((SIDE, SIDE, 3), np.uint8), FrameHeader(i * STEP_NS))
    assert pipeline.flush(timeout=10)
    assert results == [] and pipeline.stats().inference_errors == 1


def test_pipeline_events_equal_the_offline_replay() -> None:
    # none, a "right" gesture (250 % 3 = 1), none, a one-clip burst (too short), none, a
    # "stop" gesture (254 % 3 = 2), none. A clip ends on every frame from the 2nd on.
    values = [0] * 3 + [250] * 6 + [0] * 4 + [251] + [0] * 10 + [254] * 5 + [0] * 3
    results = run(GateModel(), values, event_min_s=0.2, event_refractory_s=0.5)
    online = [r.event for r in results if r.event is not None]
    assert [(e.label, e.clips, e.reason) for e in online] == [("right", 6, "fell"),
                                                             ("stop", 5, "fell")]
    # Decided at the first clip whose last frame is grey 0 after each gesture.
    assert [e.decision_ns for e in online] == [10**9 + 9 * STEP_NS, 10**9 + 29 * STEP_NS]
    config = StreamConfig(event_min_s=0.2, event_refractory_s=0.5)
    def key(e: GestureEvent) -> tuple:
        return (e.label, e.score, e.header, e.start_ns, e.end_ns, e.clips, e.reason, e.camera)

    assert [key(e) for e in detect_events(results, GESTURES, config)] == [key(e) for e in online]
    # The same model run, the max-softmax baseline: the gesture head is always confident,
    # so activity never falls and one gesture lasts until the end of the stream.
    baseline = detect_events(results, GESTURES, replace(config, event_source="max_softmax"))
    assert [(e.reason, e.clips) for e in baseline] == [("end_of_stream", len(results))]


def test_a_bare_yaml_off_means_off() -> None:
    from mtl_perception.settings import apply_overrides, from_dict

    data = apply_overrides({}, ["gate=off"])  # YAML 1.1: `off` is false
    assert data == {"gate": False}
    assert from_dict(StreamConfig, data).gate == "off"
