"""Two cameras on one topic (frames of two frame_ids interleaved): a clip never mixes them.

The topic follows the frame_id its buffer holds; frames of another frame_id are
dropped, counted (`frames_other_frame_id`) and warned about once, until the
buffered one is silent for longer than `max_gap_s`.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.ros.messages import WARN, diagnostic_statuses
from mtl_perception.stream import ClipResult, FrameHeader, StreamConfig, StreamPipeline

INFO = CheckpointInfo(ModelConfig(num_classes=(3, 2)), (("a", "b", "c"), ("x", "y")),
                      PreprocessConfig(clip_length=3, resize=(8, 8), crop=(8, 8)))
STEP_NS = 1_000_000_000 // 30  # each camera at 30 fps, the stream samples 15


class FrameMean(torch.nn.Module):
    """Logits from the clip's frames' mean values: a clip mixing two cameras shows."""

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        per_frame = clips.mean(dim=(1, 3, 4))  # (N, T)
        spread = per_frame.max(dim=1).values - per_frame.min(dim=1).values
        action = torch.stack([spread, torch.zeros_like(spread), torch.zeros_like(spread)], 1)
        return [action, torch.zeros(clips.shape[0], 2)]


def push(pipeline: StreamPipeline, stamp_ns: int, frame_id: str) -> bool:
    value = 0 if frame_id == "left" else 255  # the two cameras see different scenes
    return pipeline.push_frame("/cam", np.full((8, 8, 3), value, np.uint8),
                               FrameHeader(stamp_ns, frame_id))


def pipeline_for(results: list[ClipResult]) -> StreamPipeline:
    return StreamPipeline(FrameMean(), INFO, StreamConfig(inference_stride=1), realtime=False,
                          on_result=results.append)


def test_interleaved_cameras_never_share_a_clip(caplog: pytest.LogCaptureFixture) -> None:
    results: list[ClipResult] = []
    pipeline = pipeline_for(results)
    with caplog.at_level(logging.WARNING):
        for i in range(40):  # left and right alternate, 5 ms apart
            push(pipeline, 10**9 + i * STEP_NS, "left")
            push(pipeline, 10**9 + i * STEP_NS + 5_000_000, "right")
    pipeline.flush()
    assert results and {r.header.frame_id for r in results} == {"left"}
    for result in results:  # every frame of every clip from the one camera: no spread
        assert result.tasks["action"].probabilities[0] == pytest.approx(1 / 3)
    camera = pipeline.stats().cameras["/cam"]
    assert camera.frames_other_frame_id > 0
    assert camera.frames_dropped == camera.frames_other_frame_id
    (line,) = [r.getMessage() for r in caplog.records if "frame_id" in r.getMessage()]
    assert "'right'" in line and "'left'" in line and "/cam" in line and "\n" not in line
    status = diagnostic_statuses(pipeline.stats(), None, "node", "m")[1]
    assert status.level == WARN and "another frame_id" in status.message
    assert dict(status.values)["frames_other_frame_id"] == str(camera.frames_other_frame_id)


def test_a_new_frame_id_takes_over_once_the_old_one_is_silent() -> None:
    results: list[ClipResult] = []
    pipeline = pipeline_for(results)
    for i in range(6):
        push(pipeline, 10**9 + i * 2 * STEP_NS, "left")
    # A driver restarted under another frame_id: dropped at first, then the buffer
    # resets after max_gap_s (0.5 s) of silence from "left" and "right" anchors it.
    last_left = 10**9 + 5 * 2 * STEP_NS
    for i in range(1, 40):
        push(pipeline, last_left + i * 2 * STEP_NS, "right")
    pipeline.flush()
    ids = [r.header.frame_id for r in results]
    assert ids[0] == "left" and ids[-1] == "right"
    assert ids == sorted(ids)  # left's clips, then right's: none mixed (spread 0 checked)
    assert all(r.tasks["action"].probabilities[0] == pytest.approx(1 / 3) for r in results)
    camera = pipeline.stats().cameras["/cam"]
    assert camera.resets == 1 and camera.frames_other_frame_id > 0


def test_one_frame_id_as_before() -> None:
    results: list[ClipResult] = []
    pipeline = pipeline_for(results)
    for i in range(10):
        assert push(pipeline, 10**9 + i * 2 * STEP_NS, "left")
    pipeline.flush()
    assert len(results) == 8 and pipeline.stats().cameras["/cam"].frames_dropped == 0
