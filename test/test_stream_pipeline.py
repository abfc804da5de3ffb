"""StreamPipeline end to end with fake and tiny real models: stamps, scheduling, drops, memory.

The fake models read the clip they are given: the "action" logits peak at the
grey value of the clip's LAST frame, so a result that names class "v" proves
it scored the clip ending with the frame whose pixels are v.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from helpers_models import tiny_config
from rosbags.typesys import Stores, get_typestore

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream import (
    ClipResult,
    FrameHeader,
    ImageDecodeError,
    StreamConfig,
    StreamConfigError,
    StreamPipeline,
)
from mtl_perception.stream import camera as camera_module

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
MS = 1_000_000
SIDE = 8
LENGTH = 4
IDENTITY = PreprocessConfig(
    clip_length=LENGTH, resize=(SIDE, SIDE), crop=(SIDE, SIDE), mean=(0, 0, 0), std=(1, 1, 1)
)
INFO = CheckpointInfo(
    ModelConfig(num_classes=(256, 2)),
    (tuple(str(v) for v in range(256)), ("first_dark", "first_bright")),
    IDENTITY,
)


class EchoModel(torch.nn.Module):
    """action: peaks at the last frame's grey value; gesture: brightness of the first frame."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        self.batch_sizes.append(clips.shape[0])
        last = (clips[:, 0, -1].mean(dim=(1, 2)) * 255).round()
        first = clips[:, 0, 0].mean(dim=(1, 2))
        classes = torch.arange(256, dtype=torch.float32)
        action = -20 * (classes[None, :] - last[:, None]) ** 2
        gesture = torch.stack([1 - first, first], dim=1) * 4
        return [action, gesture]


class GatedModel(EchoModel):
    """Blocks in its first forward until `release` is set; `entered` says it got there."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        self.entered.set()
        assert self.release.wait(10)
        return super().score_all(clips)


class SleepyModel(EchoModel):
    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        time.sleep(0.02)
        return super().score_all(clips)


def frame(value: int) -> np.ndarray:
    return np.full((SIDE, SIDE, 3), value % 256, np.uint8)


def message(value: int, stamp_ns: int, frame_id: str = "optical", encoding: str = "rgb8") -> Any:
    Header, Time = TYPES["std_msgs/msg/Header"], TYPES["builtin_interfaces/msg/Time"]
    stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return TYPES["sensor_msgs/msg/Image"](
        header=Header(stamp=stamp, frame_id=frame_id),
        height=SIDE,
        width=SIDE,
        encoding=encoding,
        is_bigendian=0,
        step=3 * SIDE,
        data=frame(value).reshape(-1),
    )


def collect(pipeline_kwargs: dict[str, Any]) -> tuple[StreamPipeline, list[ClipResult]]:
    results: list[ClipResult] = []
    pipeline = StreamPipeline(on_result=results.append, **pipeline_kwargs)
    return pipeline, results


def test_results_carry_the_clip_stamps_and_the_last_frame_header() -> None:
    config = StreamConfig(target_fps=10, inference_stride=2)
    pipeline, results = collect(
        {"engine": EchoModel(), "info": INFO, "config": config, "realtime": False}
    )
    for i in range(10):
        assert pipeline.push("front", message(i, 5 * 10**9 + i * 100 * MS))
    assert pipeline.flush(timeout=10)
    assert [r.sequence for r in results] == [0, 1, 2, 3]
    for r, last in zip(results, (3, 5, 7, 9)):
        assert r.camera == "front"
        assert r.last_stamp_ns == r.header.stamp_ns == 5 * 10**9 + last * 100 * MS
        assert r.first_stamp_ns == r.last_stamp_ns - 300 * MS
        assert r.header.frame_id == "optical"
        assert r.tasks["action"].best == (str(last), pytest.approx(1.0))
        assert list(r.tasks) == ["action", "gesture"]
        assert r.tasks["gesture"].probabilities.shape == (2,)


def test_newest_clip_wins_drops_are_counted_and_push_never_waits() -> None:
    model = GatedModel()
    pipeline, results = collect(
        {"engine": model, "info": INFO, "config": StreamConfig(target_fps=10, inference_stride=1)}
    )
    pipeline.start()
    try:
        for i in range(LENGTH):  # clip 0 (frames 0..3): the worker takes it and blocks
            pipeline.push_frame("cam", frame(i), FrameHeader(i * 100 * MS))
        assert model.entered.wait(10)
        for i in range(LENGTH, LENGTH + 3):  # clips 1, 2, 3 while the model is busy
            pipeline.push_frame("cam", frame(i), FrameHeader(i * 100 * MS))
        model.release.set()
        assert pipeline.flush(timeout=10)
    finally:
        pipeline.stop()
    assert [r.sequence for r in results] == [0, 3]
    assert [r.tasks["action"].best[0] for r in results if r.tasks["action"].best] == ["3", "6"]
    stats = pipeline.stats().cameras["cam"]
    assert (stats.clips_made, stats.clips_run, stats.clips_dropped) == (4, 2, 2)


def test_slow_model_faster_frames_memory_bounded_right_stamps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alive: weakref.WeakSet[torch.Tensor] = weakref.WeakSet()
    peak = 0
    real_preprocess = camera_module.preprocess_frame

    def tracked(image: np.ndarray, config: PreprocessConfig) -> torch.Tensor:
        nonlocal peak
        out = real_preprocess(image, config)
        alive.add(out)
        peak = max(peak, len(alive))
        return out

    monkeypatch.setattr(camera_module, "preprocess_frame", tracked)
    cameras = ["a", "b", "c", "d"]
    config = StreamConfig(target_fps=30, inference_stride=1, max_batch=4)
    pipeline, results = collect({"engine": SleepyModel(), "info": INFO, "config": config})
    with pipeline:
        for i in range(150):  # ~150 clips per camera offered, far faster than 20 ms per batch
            for camera in cameras:
                pipeline.push_frame(camera, frame(i), FrameHeader(i * 33_333_333, camera))
        pipeline.flush(timeout=10)
    stats = pipeline.stats()
    # Per camera at most: the buffer, one pending clip, one clip in the forward pass.
    assert peak <= len(cameras) * 3 * LENGTH + len(cameras)
    assert stats.clips_dropped > 0 and stats.batches_run < 150
    for camera in cameras:
        cam = stats.cameras[camera]
        assert cam.clips_made == 150 - LENGTH + 1
        assert cam.clips_made == cam.clips_run + cam.clips_dropped
    assert max(pipeline.model.batch_sizes) == len(cameras)  # one clip per camera per batch
    for r in results:
        last_index = round(r.last_stamp_ns / 33_333_333)
        assert r.tasks["action"].best[0] == str(last_index)  # type: ignore[index]
        assert r.header.frame_id == r.camera
        assert r.last_stamp_ns - r.first_stamp_ns == pytest.approx(3 * 33_333_333, abs=2)
    by_camera = {c: [r.sequence for r in results if r.camera == c] for c in cameras}
    assert all(seq == sorted(seq) and seq for seq in by_camera.values())


def run_offline(
    model: torch.nn.Module, info: CheckpointInfo, frames: np.ndarray, worker: bool
) -> list:
    results: list[ClipResult] = []
    pipeline = StreamPipeline(
        model,
        info,
        StreamConfig(
            target_fps=10, inference_stride=2, max_batch=2, offline_queue=3, smoothing="ema"
        ),
        on_result=results.append,
        realtime=False,
    )
    if worker:
        pipeline.start()
    for i, image in enumerate(frames):
        for camera in ("left", "right"):
            pipeline.push_frame(
                camera, image if camera == "left" else image[:, ::-1], FrameHeader(i * 100 * MS)
            )
    assert pipeline.flush(timeout=60)
    pipeline.stop()
    stats = pipeline.stats()
    assert stats.clips_dropped == 0 and stats.clips_run == sum(
        c.clips_made for c in stats.cameras.values()
    )
    return [
        (
            r.camera,
            r.sequence,
            r.last_stamp_ns,
            *(t.probabilities.tobytes() for t in r.tasks.values()),
            *(t.smoothed.tobytes() for t in r.tasks.values()),
        )
        for r in results
    ]


def test_offline_mode_is_deterministic_and_never_drops() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = tiny_config()
    model = build_model(config).eval()
    info = CheckpointInfo(
        config,
        (tuple(f"a{i}" for i in range(5)), tuple(f"g{i}" for i in range(7))),
        PreprocessConfig(clip_length=4, resize=(20, 26), crop=(16, 16)),
    )
    frames = np.random.default_rng(0).integers(0, 256, (16, 24, 32, 3), dtype=np.uint8)
    first = run_offline(model, info, frames, worker=True)
    second = run_offline(model, info, frames, worker=True)
    inline = run_offline(model, info, frames, worker=False)
    assert len(first) == 2 * 7  # clips after frames 4, 6, ..., 16 for each camera
    assert first == second == inline


def test_a_decode_problem_is_reported_once_per_camera_and_kind() -> None:
    reports: list[tuple[str, ImageDecodeError]] = []
    pipeline = StreamPipeline(EchoModel(), INFO, on_error=lambda c, e: reports.append((c, e)))
    for i in range(5):
        assert not pipeline.push("a", message(i, i * 100 * MS, encoding="bayer_rggb8"))
    for i in range(2):
        assert not pipeline.push("b", message(i, i * 100 * MS, encoding="bayer_rggb8"))
    assert pipeline.push("a", message(9, 900 * MS))  # a good frame still gets through
    assert [(camera, e.kind) for camera, e in reports] == [
        ("a", "unsupported"),
        ("b", "unsupported"),
    ]
    stats = pipeline.stats().cameras
    assert (stats["a"].decode_errors, stats["a"].frames_dropped, stats["a"].frames_sampled) == (
        5,
        5,
        1,
    )
    assert stats["b"].decode_errors == 2


def test_a_stamp_with_nanosec_past_a_second_is_refused_not_renormalised() -> None:
    # ROS 2 keeps whole seconds in sec: nanosec 1.5e9 is no valid time, and read as
    # sec + nanosec it would have stamped results 1.5 s after a frame no one sent
    reports: list[tuple[str, ImageDecodeError]] = []
    pipeline = StreamPipeline(EchoModel(), INFO, on_error=lambda c, e: reports.append((c, e)))
    for i in range(3):
        bad = message(i, 0)
        bad.header.stamp.sec, bad.header.stamp.nanosec = i, 1_500_000_000
        assert not pipeline.push("a", bad)
    assert pipeline.push("a", message(9, 900 * MS))  # a good frame still gets through
    assert [(camera, e.kind) for camera, e in reports] == [("a", "stamp")]
    assert "nanosec 1500000000 is not in 0..999999999" in str(reports[0][1])
    stats = pipeline.stats().cameras["a"]
    assert (stats.decode_errors, stats.frames_dropped, stats.frames_received,
            stats.frames_sampled) == (3, 3, 4, 1)


def test_live_settings_apply_others_are_refused_with_a_reason() -> None:
    config = StreamConfig(target_fps=10, inference_stride=1)
    pipeline, results = collect(
        {"engine": EchoModel(), "info": INFO, "config": config, "realtime": False}
    )
    for i in range(LENGTH):
        pipeline.push_frame("cam", frame(i), FrameHeader(i * 100 * MS))
    pipeline.flush()
    assert results[-1].tasks["action"].top  # threshold 0: something listed
    pipeline.update_settings(score_threshold=1.0, top_k=3, smoothing="mean")
    pipeline.push_frame("cam", frame(LENGTH), FrameHeader(LENGTH * 100 * MS))
    pipeline.flush()
    # mean of two clips peaking at different classes: best is 0.5 < 1.0 -> empty.
    assert results[-1].tasks["action"].top == ()
    with pytest.raises(StreamConfigError, match="target_fps cannot change while running: "):
        pipeline.update_settings(target_fps=5.0)
    with pytest.raises(StreamConfigError, match="unknown stream setting 'fps'"):
        pipeline.update_settings(fps=5.0)
    with pytest.raises(StreamConfigError, match=r"top_k must be in \[1, 1000\]"):
        pipeline.update_settings(top_k=0, score_threshold=0.5)
    assert (pipeline.config.top_k, pipeline.config.score_threshold) == (3, 1.0)  # all or nothing


def test_a_gap_restarts_smoothing_and_reports_a_reset() -> None:
    config = StreamConfig(target_fps=10, inference_stride=1, smoothing="ema", smoothing_window=9)
    pipeline, results = collect(
        {"engine": EchoModel(), "info": INFO, "config": config, "realtime": False}
    )
    stamps = [i * 100 * MS for i in range(5)] + [5_000 * MS + i * 100 * MS for i in range(4)]
    for i, stamp in enumerate(stamps):
        pipeline.push_frame("cam", frame(10 * i), FrameHeader(stamp))
    pipeline.flush()
    assert [r.sequence for r in results] == [0, 1, 2]
    assert results[2].first_stamp_ns == 5_000 * MS  # no clip spans the gap
    gesture = results[2].tasks["gesture"]
    np.testing.assert_array_equal(gesture.smoothed, gesture.probabilities)  # fresh start
    assert not np.array_equal(
        results[1].tasks["gesture"].smoothed, results[1].tasks["gesture"].probabilities
    )
    stats = pipeline.stats().cameras["cam"]
    assert stats.resets == 1 and stats.frames_sampled == 9


def test_device_autocast_and_model_checks() -> None:
    with pytest.raises(ValueError, match="autocast must be one of"):
        StreamPipeline(EchoModel(), INFO, autocast="fp8")
    with pytest.raises(TypeError, match="has no score_all"):
        StreamPipeline(torch.nn.Linear(2, 2), INFO)
    with pytest.raises(StreamConfigError, match="longer than the checkpoint's 4"):
        StreamPipeline(EchoModel(), INFO, StreamConfig(clip_length=8))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            StreamPipeline(EchoModel(), INFO, device="cuda")
        assert StreamPipeline(EchoModel(), INFO, device="auto", autocast="fp16").autocast == "none"


class FlakyModel(EchoModel):
    """Raises on its first two forward passes, then works."""

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        if len(self.batch_sizes) < 2:
            self.batch_sizes.append(-1)
            raise RuntimeError("CUDA out of memory (pretend)")
        return super().score_all(clips)


def test_a_failing_forward_is_logged_once_counted_and_the_worker_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = StreamConfig(target_fps=10, inference_stride=1)
    pipeline, results = collect(
        {"engine": FlakyModel(), "info": INFO, "config": config, "realtime": False}
    )
    pipeline.start()
    for i in range(LENGTH + 3):  # 4 clips: the first two fail
        pipeline.push_frame("cam", frame(i), FrameHeader(i * 100 * MS))
    assert pipeline.flush(timeout=10)
    assert [r.sequence for r in results] == [2, 3]
    assert pipeline.stats().inference_errors == 2
    assert sum("inference failed" in r.getMessage() for r in caplog.records) == 1
    pipeline.close()
    assert not pipeline.running and pipeline.latest_frame("cam") is None


def test_on_the_cpu_cameras_take_turns_one_clip_per_forward() -> None:
    config = StreamConfig(target_fps=30, inference_stride=1)  # max_batch 0: automatic
    model = SleepyModel()
    pipeline = StreamPipeline(model, INFO, config)
    with pipeline:
        for i in range(60):
            for camera in "abcd":
                pipeline.push_frame(camera, frame(i), FrameHeader(i * 33_333_333, camera))
            time.sleep(0.005)
        pipeline.flush(timeout=10)
    assert set(model.batch_sizes) == {1}
    runs = [pipeline.stats().cameras[c].clips_run for c in "abcd"]
    assert min(runs) >= 3 and max(runs) - min(runs) <= 2  # round robin, nobody starves


def test_compressed_messages_and_the_latest_frame() -> None:

    Header, Time = TYPES["std_msgs/msg/Header"], TYPES["builtin_interfaces/msg/Time"]
    config = StreamConfig(target_fps=10, inference_stride=1)
    pipeline, results = collect(
        {"engine": EchoModel(), "info": INFO, "config": config, "realtime": False}
    )
    for i in range(LENGTH):
        ok, png = cv2.imencode(".png", frame(40 + i))
        assert ok
        msg = TYPES["sensor_msgs/msg/CompressedImage"](
            header=Header(stamp=Time(sec=1, nanosec=i * 100 * MS), frame_id="c"),
            format="png",
            data=png.reshape(-1),
        )
        assert pipeline.push("cam/compressed", msg)
    assert pipeline.flush(timeout=10)
    assert [r.tasks["action"].best[0] for r in results if r.tasks["action"].best] == ["43"]
    # A raw message pushed next: latest_frame decodes it in full on demand.
    assert pipeline.push("raw", message(7, 0))
    latest = pipeline.latest_frame("raw")
    assert (
        latest is not None
        and latest[0].shape == (SIDE, SIDE, 3)
        and latest[1].frame_id == "optical"
    )
    assert int(latest[0][0, 0, 0]) == 7 and pipeline.latest_frame("nobody") is None
