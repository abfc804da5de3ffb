"""StreamPipeline: camera messages in, ClipResults out; the node and bag evaluation share it.

Threads: `push()` runs in the caller's thread (a subscription callback, a bag
reader loop) and only samples, decodes, preprocesses and buffers; the model
runs in one worker thread (`start()` / `stop()`).

The two modes (`realtime=True`: the robot, the newest clip per camera;
`realtime=False`: bag evaluation, every clip in order, with back-pressure)
are two schedules (`mtl_perception.stream.scheduling`); offline without a
started worker, `push()` and `flush()` score the clips themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.deploy.engine import Engine, Scores
from mtl_perception.models.archs import clip_length_problem
from mtl_perception.stream.camera import CameraState, ErrorCallback, Queued
from mtl_perception.stream.config import (
    FIXED_REASONS,
    LIVE_SETTINGS,
    StreamConfig,
    StreamConfigError,
)
from mtl_perception.stream.decode import ImageDecodeError, header_of
from mtl_perception.stream.events import GESTURE_TASK
from mtl_perception.stream.frame_reuse import FrameReuse
from mtl_perception.stream.gate_memory import stride_warning
from mtl_perception.stream.inference import engine_from_model, score_clips
from mtl_perception.stream.results import ClipResult, FrameHeader, postprocess, softmax
from mtl_perception.stream.scheduling import Offline, Realtime, Schedule
from mtl_perception.stream.stats import CameraStats, LatencyWindow, StreamStats

log = logging.getLogger(__name__)

ResultCallback = Callable[[ClipResult], None]


class StreamPipeline:
    """Per-camera sampling and buffering, batched inference, post-processing.

    `engine` runs the forward pass (`mtl_perception.deploy.load_engine`): per-task
    logits, and the task gate's (`ClipResult.gate`) when its model has one; its
    `info` supplies task and class names and the preprocessing. (A module with
    `score_all` or an exported `OnnxModel` plus `info`, `device` and `autocast`
    is still taken: an engine is built for it on `config.backend`.) `on_result`
    is called from the worker thread (or, offline without a worker, from the
    thread that calls `push`/`flush`) once per scored clip; `on_error(camera,
    error)` once per camera and kind of decode problem (default: one `logging`
    error line), the frames themselves are counted in `frames_dropped` /
    `decode_errors`.
    """

    def __init__(
        self,
        engine: Engine | nn.Module | Any,
        info: CheckpointInfo | None = None,
        config: StreamConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        autocast: str = "none",
        on_result: ResultCallback | None = None,
        on_error: ErrorCallback | None = None,
        realtime: bool = True,
    ) -> None:
        self._config = config or StreamConfig()
        if not isinstance(engine, Engine):
            if info is None:
                raise TypeError("a model without an engine needs its CheckpointInfo")
            clip_length = self._config.resolved_clip_length(info.preprocess.clip_length)
            engine = engine_from_model(engine, info, self._config, device, autocast, clip_length)
        self._engine = engine
        self.info = engine.info
        warning = stride_warning(engine.gate_context, self.info.provenance,
                                 self._config.inference_stride)
        if warning is not None:
            log.warning("%s", warning)
        self.clip_length = self._config.resolved_clip_length(self.info.preprocess.clip_length)
        problem = clip_length_problem(self.info.model.arch, self.info.model.frame_differences,
                                      self.clip_length)
        if problem is not None:
            raise StreamConfigError(problem)
        # A causal model in PyTorch: each frame computed once per camera, same results.
        self._reuse = FrameReuse(engine, self.clip_length) if FrameReuse.applies(engine) else None
        if self._reuse is not None:
            log.info("causal arch %s on PyTorch: each frame is computed once per camera and "
                     "reused by every clip that holds it (stream/frame_reuse.py)",
                     self.info.model.arch)
        self.device = engine.device
        self.model = getattr(engine, "model", None)  # the module or OnnxModel it runs
        self.autocast = getattr(engine, "autocast", "none")
        self.realtime = realtime
        self._cameras: dict[str, CameraState] = {}
        self._schedule: Schedule = (Realtime if realtime else Offline)(self._cameras)
        self.on_result = on_result
        self.on_error = on_error or _log_decode_error
        self._cond = threading.Condition()
        self._in_flight = 0
        self._stopping = False
        self._flushing = False  # flush() asks the offline worker for partial batches
        self._worker: threading.Thread | None = None
        self._inference_ms = LatencyWindow()
        self._latency_ms = LatencyWindow()
        self._batches = 0
        self._errors = 0  # batches whose forward pass raised
        self._nonfinite_said = False  # the NaN/inf output error is logged once

    # ----------------------------------------------------------------- settings
    @property
    def config(self) -> StreamConfig:
        return self._config

    @property
    def engine(self) -> str:
        """Which engine runs the forward pass, on which device, at which precision."""
        return self._engine.describe()

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.info.model.task_names

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def update_settings(self, **changes: Any) -> StreamConfig:
        """Change live settings (LIVE_SETTINGS); anything else is refused with the reason.

        All changes are validated together before any applies; the new config
        is used from the next scored clip on.
        """
        for name in changes:
            if name not in LIVE_SETTINGS:
                reason = FIXED_REASONS.get(name)
                if reason is None:
                    raise StreamConfigError(f"unknown stream setting {name!r}")
                raise StreamConfigError(f"{name} cannot change while running: {reason}")
        with self._cond:
            self._config = replace(self._config, **changes)  # __post_init__ validates
            return self._config

    # -------------------------------------------------------------------- input
    def push(self, camera: str, msg: Any) -> bool:
        """Offer one Image/CompressedImage message; True when it was sampled into the buffer.

        Stamps are checked before decoding, so frames that the target rate does
        not need cost nothing but the check. A stamp that is no valid time is refused
        as an undecodable frame is (counted, reported once per camera).
        """
        try:
            header = header_of(msg)
        except ImageDecodeError as exc:
            (self._cameras.get(camera) or self._add_camera(camera)).refuse(msg, exc)
            return False
        return self._push(camera, header, msg, None)

    def push_frame(self, camera: str, rgb: np.ndarray, header: FrameHeader) -> bool:
        """Offer an already decoded RGB uint8 frame (H, W, 3) (video files, tests, benchmarks)."""
        return self._push(camera, header, None, rgb)

    def _push(self, camera: str, header: FrameHeader, msg: Any, rgb: np.ndarray | None) -> bool:
        cam = self._cameras.get(camera) or self._add_camera(camera)
        sampled, item = cam.offer(header, msg, rgb, time.monotonic())
        if item is not None:
            self._submit(cam, item)
        return sampled

    def _add_camera(self, camera: str) -> CameraState:
        with self._cond:
            cam = self._cameras.get(camera)
            if cam is None:
                cam = self._cameras[camera] = CameraState(
                    camera,
                    self._config,
                    self.clip_length,
                    len(self.task_names),
                    self.info.preprocess,
                    self.on_error,
                    self.info.classes_of(GESTURE_TASK) if GESTURE_TASK in self.task_names else (),
                    self._engine.gate_context,
                )
            return cam

    def clips_made(self, camera: str) -> int:
        """Clips cut so far from one camera's frames (the next clip's `sequence`)."""
        cam = self._cameras.get(camera)
        if cam is None:
            return 0
        with cam.lock:
            return cam.counts["clips_made"]

    def latest_frame(self, camera: str) -> tuple[np.ndarray, FrameHeader] | None:
        """The newest sampled RGB frame (H, W, 3) of a camera and its header (annotated images)."""
        cam = self._cameras.get(camera)
        return None if cam is None else cam.latest_frame()

    def reset(self, camera: str | None = None) -> None:
        """Empty the buffer (and restart smoothing) of one camera, or of all."""
        names = list(self._cameras) if camera is None else [camera]
        for name in names:
            cam = self._cameras.get(name)
            if cam is None:
                continue
            with cam.lock:
                cam.restart()
            with self._cond:
                self._schedule.discard(cam)

    # ------------------------------------------------------------- scheduling
    def _submit(self, cam: CameraState, item: Queued) -> None:
        batch: list[Queued] = []
        with self._cond:
            self._schedule.put(cam, item)
            self._cond.notify_all()
            while self._schedule.must_wait(self._config, self._on_gpu):  # offline only
                if not self.running:
                    batch = self._take()
                    break
                self._cond.wait()
        self._run(batch)  # offline without a worker: score in the caller's thread

    @property
    def _on_gpu(self) -> bool:
        return self.device.type != "cpu"

    def _take(self) -> list[Queued]:
        """The next batch (under the lock); it counts as in flight until scored."""
        batch = self._schedule.take(self._config, self._on_gpu)
        self._in_flight += len(batch)
        return batch

    def _has_work(self, all_now: bool) -> bool:
        return self._schedule.ready(self._config, self._on_gpu, all_now or self._stopping)

    def start(self) -> None:
        """Start the inference worker (idempotent)."""
        with self._cond:
            if self.running:
                return
            self._stopping = False
            self._worker = threading.Thread(target=self._work, name="stream-inference", daemon=True)
            self._worker.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the worker; realtime drops unscored clips, offline scores them first."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        self._worker = None
        with self._cond:
            self._schedule.drop_all()  # realtime: unscored clips are dropped

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the worker and let go of every frame and clip (and cached GPU memory).

        The node calls this on cleanup/shutdown; drop the pipeline (and the model)
        afterwards so their memory can go too. A forward pass still running after
        `timeout` seconds finishes on its own; its results are dropped.
        """
        self.stop(timeout)
        with self._cond:
            self._cameras.clear()
            self._schedule.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every clip cut so far is scored; False on timeout.

        Offline without a worker, the remaining clips are scored in this thread.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flushing = True
        try:
            with self._cond:
                self._cond.notify_all()
                while True:
                    idle = not self._has_work(True) and self._in_flight == 0
                    if idle:
                        return True
                    if not self.running:
                        batch = self._take()
                        self._cond.release()
                        try:
                            self._run(batch)
                        finally:
                            self._cond.acquire()
                        continue
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
        finally:
            self._flushing = False

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._has_work(self._flushing) and not self._stopping:
                    self._cond.wait()
                if self._stopping and self._schedule.done_when_stopping():
                    return
                batch = self._take()
            self._run(batch)

    # -------------------------------------------------------------- inference
    def _run(self, batch: list[Queued]) -> None:
        """Score one batch and hand out its results; never raises into the worker loop."""
        if not batch:
            return
        try:
            results = self._score(batch)
        except Exception:  # a failed batch must not kill the robot's worker
            with self._cond:
                self._errors += 1
                first = self._errors == 1
            if first:  # later failures are counted (stats().inference_errors), not logged again
                log.exception("inference failed on a batch of %d clips; dropped", len(batch))
            results = []
        finally:
            with self._cond:
                self._in_flight -= len(batch)
                self._cond.notify_all()
        for result in results:
            if self.on_result is not None:
                try:
                    self.on_result(result)
                except Exception:  # a consumer's bug must not stop inference
                    log.exception("on_result callback failed")

    def _score(self, batch: list[Queued]) -> list[ClipResult]:
        scores, inference_ms = score_clips(self._engine, [item.clip for item in batch],
                                           self._reuse)
        per_task, gate_logits, gate_parts = scores.tasks, scores.gate, scores.gate_parts
        config = self._config
        results = []
        with self._cond:
            self._batches += 1
            self._inference_ms.add(inference_ms)
        for n, item in enumerate(batch):
            cam = self._cameras.get(item.clip.camera)
            if cam is None:  # close() gave up joining this forward pass: nobody to tell
                continue
            if not scores_finite(scores, n):
                self._skip_nonfinite(cam)
                continue
            smoothers = cam.smoothers_for(item, config)
            gate: np.ndarray | None = None
            if gate_parts is not None:  # a gate with memory: this camera's last clips too
                gate = softmax(cam.gate_logits(gate_parts[n]))
            elif gate_logits is not None:
                gate = softmax(gate_logits[n])
            tasks = postprocess([task[n] for task in per_task], self.task_names,
                                self.info.class_names, smoothers, config, gate)
            latency_ms = (time.monotonic() - item.clip.frames[-1].arrival) * 1e3
            result = ClipResult(
                camera=item.clip.camera, sequence=item.clip.sequence,
                first_stamp_ns=item.clip.first_stamp_ns, last_stamp_ns=item.clip.header.stamp_ns,
                header=item.clip.header, tasks=tasks, inference_ms=inference_ms,
                latency_ms=latency_ms, gate=gate, epoch=item.epoch,
            )
            results.append(cam.with_event(result, config))
            with self._cond:
                cam.counts["clips_run"] += 1
                self._latency_ms.add(latency_ms)
        return results

    def _skip_nonfinite(self, cam: CameraState) -> None:
        """Count a clip whose outputs hold NaN or inf; say so once per pipeline. Smoothing
        would carry one such clip into every later result (an EMA of NaN stays NaN), and its
        top-k would be empty without a word."""
        with self._cond:
            cam.counts["clips_nonfinite"] += 1
            first = not self._nonfinite_said
            self._nonfinite_said = True
        if first:
            log.error("camera %s: the model's output for a clip is not finite (NaN or inf: an "
                      "fp16 overflow under autocast, or damaged weights); such clips are skipped "
                      "and counted (clips_nonfinite in the stream statistics and /diagnostics); "
                      "said once", cam.name)

    def warmup(self, batch: int = 1) -> float:
        """One forward pass on zeros of the input shape (cuDNN autotuning, lazy init); ms."""
        return self._engine.warmup(batch, self.clip_length)

    # ---------------------------------------------------------------- stats
    def stats(self) -> StreamStats:
        """A snapshot of counters and latency percentiles (for /diagnostics)."""
        with self._cond:
            cameras = {
                name: CameraStats(input_fps=cam.rate.rate(), **cam.counts)
                for name, cam in self._cameras.items()
            }
            return StreamStats(
                cameras=cameras,
                inference_ms=self._inference_ms.percentiles(),
                latency_ms=self._latency_ms.percentiles(),
                batches_run=self._batches,
                inference_errors=self._errors,
                device=str(self.device),
                realtime=self.realtime,
            )

    def __enter__(self) -> StreamPipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.realtime and exc[0] is None:
            self.flush()
        self.stop()


def scores_finite(scores: Scores, n: int) -> bool:
    """Whether every output of clip `n` of a batch (each task's logits, the gate's) is finite."""
    return all(bool(np.isfinite(np.asarray(part[n], dtype=np.float64)).all())
               for part in scores.as_list())


def _log_decode_error(camera: str, error: ImageDecodeError) -> None:
    log.error("camera %s: %s (further frames like this are skipped silently)", camera, error)
