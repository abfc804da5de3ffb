"""Model outputs that are not finite (fp16 overflow under autocast, damaged weights) and a
pipeline closed while a forward pass still runs: the streaming core skips, counts and says
so once; later clips score as if the bad one never happened."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.ros.messages import ERROR, diagnostic_statuses
from mtl_perception.stream import ClipResult, FrameHeader, StreamConfig, StreamPipeline

INFO = CheckpointInfo(ModelConfig(num_classes=(3, 2)), (("a", "b", "c"), ("x", "y")),
                      PreprocessConfig(clip_length=2, resize=(8, 8), crop=(8, 8)))
STEP_NS = 1_000_000_000 // 15


class OneBadForward(torch.nn.Module):
    """Fixed logits; the `bad`-th forward pass (1-based) gives `value` in one logit."""

    def __init__(self, bad: int, value: float) -> None:
        super().__init__()
        self.bad, self.value, self.calls = bad, value, 0

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        self.calls += 1
        action = torch.tensor([[2.0, 0.0, 0.0]]).repeat(clips.shape[0], 1)
        if self.calls == self.bad:
            action[:, 1] = self.value
        return [action, torch.zeros(clips.shape[0], 2)]


def run(model: torch.nn.Module, frames: int, **settings: object) -> tuple[list[ClipResult],
                                                                          StreamPipeline]:
    results: list[ClipResult] = []
    pipeline = StreamPipeline(model, INFO, StreamConfig(inference_stride=1, **settings),
                              realtime=False, on_result=results.append)
    for i in range(frames):
        pipeline.push_frame("cam", np.zeros((8, 8, 3), np.uint8),
                            FrameHeader(10**9 + i * STEP_NS, "cam"))
    pipeline.flush()
    return results, pipeline


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("smoothing", ["ema", "mean", "none"])
def test_a_nonfinite_clip_is_skipped_and_later_clips_score_as_before(
        value: float, smoothing: str, caplog: pytest.LogCaptureFixture) -> None:
    clean, _ = run(OneBadForward(bad=0, value=0.0), 8, smoothing=smoothing)
    with caplog.at_level(logging.ERROR):
        results, pipeline = run(OneBadForward(bad=2, value=value), 8, smoothing=smoothing)
    # Clip 1 is gone; every other clip equals the clean run's (ema/mean saw no NaN).
    assert [r.sequence for r in results] == [r.sequence for r in clean if r.sequence != 1]
    by_sequence = {r.sequence: r for r in clean}
    for result in results:
        assert result.tasks["action"].top  # never emptied by a poisoned smoother
        expected = by_sequence[result.sequence].tasks["action"].smoothed
        np.testing.assert_allclose(result.tasks["action"].smoothed, expected, atol=1e-12)
    camera = pipeline.stats().cameras["cam"]
    assert camera.clips_nonfinite == 1 and camera.clips_run == len(results)
    (line,) = [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()]
    assert "cam" in line and "clips_nonfinite" in line and "\n" not in line


def test_nonfinite_clips_are_said_once_and_counted_each(
        caplog: pytest.LogCaptureFixture) -> None:
    class AlwaysNan(torch.nn.Module):
        def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
            return [torch.full((clips.shape[0], 3), float("nan")), torch.zeros(clips.shape[0], 2)]

    with caplog.at_level(logging.ERROR):
        results, pipeline = run(AlwaysNan(), 6)
    assert results == []
    assert pipeline.stats().cameras["cam"].clips_nonfinite == 5
    assert sum("not finite" in r.getMessage() for r in caplog.records) == 1


def test_diagnostics_flag_the_period_with_nonfinite_clips() -> None:
    _, pipeline = run(OneBadForward(bad=2, value=float("nan")), 5)
    stats = pipeline.stats()
    camera = diagnostic_statuses(stats, None, "node", "m")[1]
    assert camera.level == ERROR and "NaN or inf for 1 clips" in camera.message
    assert dict(camera.values)["clips_nonfinite"] == "1"
    assert diagnostic_statuses(stats, stats, "node", "m")[1].level != ERROR  # the next period


def test_close_while_a_forward_pass_runs_drops_its_results_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    started, release = threading.Event(), threading.Event()

    class Blocking(torch.nn.Module):
        def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
            started.set()
            release.wait(30)
            return [torch.zeros(clips.shape[0], 3), torch.zeros(clips.shape[0], 2)]

    results: list[ClipResult] = []
    pipeline = StreamPipeline(Blocking(), INFO, StreamConfig(inference_stride=1),
                              on_result=results.append)
    pipeline.start()
    worker = pipeline._worker
    assert worker is not None
    for i in range(2):
        pipeline.push_frame("cam", np.zeros((8, 8, 3), np.uint8),
                            FrameHeader(10**9 + i * STEP_NS, "cam"))
    assert started.wait(30)
    with caplog.at_level(logging.ERROR):
        pipeline.close(timeout=0.05)  # gives up joining the forward pass
        release.set()
        worker.join(30)
    assert not worker.is_alive()
    assert results == [] and pipeline.stats().inference_errors == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
