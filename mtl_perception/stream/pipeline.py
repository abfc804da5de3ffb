"""StreamPipeline: camera messages in, ClipResults out; the node and bag evaluation share it.

Threads: `push()` runs in the caller's thread (a subscription callback, a bag
reader loop) and only samples, decodes, preprocesses and buffers; the model
runs in one worker thread (`start()` / `stop()`).

- realtime=True (the robot): each camera has one slot for its newest ready
  clip; a newer clip replaces an unscored one (counted in `clips_dropped`),
  so the worker always scores the freshest view and nothing queues without
  bound. `push()` never waits for the model.
- realtime=False (bag evaluation): every clip is scored, in the order it was
  cut, in batches of `max_batch` (default 1) clips: the same inputs give the
  same batches and therefore the same predictions every run. `push()` waits
  (back-pressure) while `offline_queue` clips are queued; without a started
  worker it scores them itself. `flush()` returns once all are scored.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.preprocess import (
    PreprocessConfig,
    frame_rows,
    preprocess_frame,
    preprocess_rows,
)
from mtl_perception.stream.buffer import BufferedFrame, CameraBuffer, Clip, Decision
from mtl_perception.stream.config import (
    FIXED_REASONS,
    LIVE_SETTINGS,
    StreamConfig,
    StreamConfigError,
)
from mtl_perception.stream.decode import ImageDecodeError, decode_image, header_of, is_compressed
from mtl_perception.stream.results import ClipResult, FrameHeader, Smoother, postprocess
from mtl_perception.stream.stats import CameraStats, LatencyWindow, RateMeter, StreamStats

log = logging.getLogger(__name__)

AUTOCAST_MODES: dict[str, torch.dtype | None] = {
    "none": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

ResultCallback = Callable[[ClipResult], None]
ErrorCallback = Callable[[str, ImageDecodeError], None]


_COUNTERS: tuple[str, ...] = (
    "frames_received",
    "frames_sampled",
    "frames_dropped",
    "decode_errors",
    "resets",
    "clips_made",
    "clips_run",
    "clips_dropped",
)


@dataclass(frozen=True)
class _Queued:
    clip: Clip
    epoch: int


@dataclass
class _Camera:
    """Everything the pipeline keeps per camera."""

    buffer: CameraBuffer
    smoothers: list[Smoother]
    lock: threading.Lock = field(default_factory=threading.Lock)
    rate: RateMeter = field(default_factory=RateMeter)
    pending: _Queued | None = None  # realtime: newest unscored clip
    epoch: int = 0  # buffer resets so far; smoothing restarts with a new epoch
    smoothed_epoch: int = 0
    served: int = -1  # index of the last batch that scored one of its clips
    latest: tuple[Any, FrameHeader] | None = None  # newest sampled message or RGB frame
    errors_reported: set[tuple[str, str]] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))


class StreamPipeline:
    """Per-camera sampling and buffering, batched inference, post-processing.

    `model` is any module with `score_all(clips) -> list[(N, C_t) logits]`
    (a `MultiTaskModel` from `load_checkpoint`); `info` supplies task and class
    names and the preprocessing. `on_result` is called from the worker thread
    (or, offline without a worker, from the thread that calls `push`/`flush`)
    once per scored clip; `on_error(camera, error)` once per camera and kind of
    decode problem (default: one `logging` error line), the frames themselves
    are counted in `frames_dropped` / `decode_errors`.
    """

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        config: StreamConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        autocast: str = "none",
        on_result: ResultCallback | None = None,
        on_error: ErrorCallback | None = None,
        realtime: bool = True,
    ) -> None:
        self._config = config or StreamConfig()
        self.info = info
        self.clip_length = self._config.resolved_clip_length(info.preprocess.clip_length)
        self.device = _resolve_device(device)
        if autocast not in AUTOCAST_MODES:
            raise StreamConfigError(
                f"autocast must be one of {list(AUTOCAST_MODES)}, got {autocast!r}"
            )
        if autocast != "none" and self.device.type != "cuda":
            log.warning("autocast %s ignored on %s: it is a GPU setting", autocast, self.device)
            autocast = "none"
        self.autocast = autocast
        self.realtime = realtime
        score_all = getattr(model, "score_all", None)
        if not callable(score_all):
            raise TypeError(f"{type(model).__name__} has no score_all(clips) method")
        self.model = model.to(self.device).eval()
        self._score_all = cast(Callable[[torch.Tensor], list[torch.Tensor]], score_all)
        self.on_result = on_result
        self.on_error = on_error or _log_decode_error
        self._cameras: dict[str, _Camera] = {}
        self._cond = threading.Condition()
        self._queue: deque[_Queued] = deque()  # offline: every clip, in order
        self._in_flight = 0
        self._stopping = False
        self._flushing = False  # flush() asks the offline worker for partial batches
        self._worker: threading.Thread | None = None
        self._inference_ms = LatencyWindow()
        self._latency_ms = LatencyWindow()
        self._batches = 0
        self._errors = 0  # batches whose forward pass raised
        self._batches_taken = 0  # realtime batches handed to the forward pass so far

    # ----------------------------------------------------------------- settings
    @property
    def config(self) -> StreamConfig:
        return self._config

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
        not need cost nothing but the check.
        """
        return self._push(camera, header_of(msg), msg, None)

    def push_frame(self, camera: str, rgb: np.ndarray, header: FrameHeader) -> bool:
        """Offer an already decoded RGB uint8 frame (H, W, 3) (video files, tests, benchmarks)."""
        return self._push(camera, header, None, rgb)

    def _push(self, camera: str, header: FrameHeader, msg: Any, rgb: np.ndarray | None) -> bool:
        now = time.monotonic()
        cam = self._camera(camera)
        with cam.lock:
            cam.rate.tick(now)
            cam.counts["frames_received"] += 1
            decision = cam.buffer.decide(header.stamp_ns)
            if decision is Decision.SKIP:
                return False
            if decision is Decision.DROP:
                cam.counts["frames_dropped"] += 1
                return False
            try:
                if rgb is None:
                    tensor = prepare_frame(msg, self.info.preprocess)
                else:
                    tensor = preprocess_frame(rgb, self.info.preprocess)
            except ImageDecodeError as exc:
                self._decode_failed(camera, cam, msg, exc)
                return False
            except ValueError as exc:  # a frame preprocess refuses (shape, dtype)
                self._decode_failed(camera, cam, msg, ImageDecodeError(str(exc), "size"))
                return False
            if decision is Decision.RESET:
                cam.buffer.reset()
                cam.epoch += 1
                cam.counts["resets"] += 1
            cam.latest = (msg if rgb is None else rgb, header)
            cam.counts["frames_sampled"] += 1
            clip = cam.buffer.add(BufferedFrame(tensor, header, now))
            if clip is None:
                return True
            cam.counts["clips_made"] += 1
            epoch = cam.epoch
        self._submit(cam, clip, epoch)
        return True

    def _camera(self, camera: str) -> _Camera:
        cam = self._cameras.get(camera)
        if cam is None:
            with self._cond:
                cam = self._cameras.get(camera)
                if cam is None:
                    config = self._config
                    cam = _Camera(
                        buffer=CameraBuffer(
                            camera,
                            config.target_fps,
                            self.clip_length,
                            config.inference_stride,
                            config.max_gap_s,
                        ),
                        smoothers=[
                            Smoother(config.smoothing, config.smoothing_window)
                            for _ in self.task_names
                        ],
                    )
                    self._cameras[camera] = cam
        return cam

    def _decode_failed(self, camera: str, cam: _Camera, msg: Any, exc: ImageDecodeError) -> None:
        cam.counts["frames_dropped"] += 1
        cam.counts["decode_errors"] += 1
        source = "" if msg is None else str(msg.format if is_compressed(msg) else msg.encoding)
        key = (exc.kind, source)
        if key not in cam.errors_reported:
            cam.errors_reported.add(key)
            self.on_error(camera, exc)

    def latest_frame(self, camera: str) -> tuple[np.ndarray, FrameHeader] | None:
        """The newest sampled RGB frame (H, W, 3) of a camera and its header (annotated images)."""
        cam = self._cameras.get(camera)
        if cam is None or cam.latest is None:
            return None
        source, header = cam.latest
        # Messages are decoded in full only when asked (push decodes just the rows it needs).
        return (source if isinstance(source, np.ndarray) else decode_image(source)), header

    def reset(self, camera: str | None = None) -> None:
        """Empty the buffer (and restart smoothing) of one camera, or of all."""
        names = list(self._cameras) if camera is None else [camera]
        for name in names:
            cam = self._cameras.get(name)
            if cam is None:
                continue
            with cam.lock:
                cam.buffer.reset()
                cam.epoch += 1
            with self._cond:
                if cam.pending is not None:
                    cam.pending = None
                    cam.counts["clips_dropped"] += 1

    # ------------------------------------------------------------- scheduling
    def _submit(self, cam: _Camera, clip: Clip, epoch: int) -> None:
        item = _Queued(clip, epoch)
        batch: list[_Queued] = []
        with self._cond:
            if self.realtime:
                if cam.pending is not None:
                    cam.counts["clips_dropped"] += 1
                cam.pending = item
                self._cond.notify_all()
                return
            self._queue.append(item)
            self._cond.notify_all()
            # Back-pressure, never dropping. The limit is at least one batch, or the
            # worker (waiting for a full batch) and this thread would wait on each other.
            limit = max(self._config.offline_queue, self._batch_size())
            while len(self._queue) >= limit:
                if not self.running:
                    batch = self._take_offline()
                    break
                self._cond.wait()
        self._run(batch)  # offline without a worker: score in the caller's thread

    def _batch_size(self) -> int:
        """Clips per forward pass: `max_batch`, or automatically one per camera on a GPU
        and one on the CPU, where a batch costs more per clip than single clips do
        (bench/results/models.json: 8 r3d_18 clips in one batch take 11x one clip on CPU)."""
        if self._config.max_batch:
            return self._config.max_batch
        if self.realtime and self.device.type != "cpu":
            return max(1, len(self._cameras))
        return 1

    def _take_realtime(self) -> list[_Queued]:
        cams = self._cameras
        waiting = [cam.pending for cam in cams.values() if cam.pending is not None]
        # When more cameras are ready than one batch holds: the camera served longest
        # ago first (round robin), so no camera starves while all produce clips.
        waiting.sort(key=lambda item: (cams[item.clip.camera].served, item.clip.frames[-1].arrival))
        batch = waiting[: self._batch_size()]
        for item in batch:
            cam = cams[item.clip.camera]
            cam.pending = None
            cam.served = self._batches_taken
        self._batches_taken += 1
        self._in_flight += len(batch)
        return batch

    def _take_offline(self) -> list[_Queued]:
        batch = [self._queue.popleft() for _ in range(min(self._batch_size(), len(self._queue)))]
        self._in_flight += len(batch)
        return batch

    def _has_work(self, flushing: bool) -> bool:
        if self.realtime:
            return any(cam.pending is not None for cam in self._cameras.values())
        return len(self._queue) >= (1 if flushing or self._stopping else self._batch_size())

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
        if self.realtime:  # unscored clips are dropped: made == run + dropped afterwards
            with self._cond:
                for cam in self._cameras.values():
                    if cam.pending is not None:
                        cam.pending = None
                        cam.counts["clips_dropped"] += 1

    def close(self) -> None:
        """Stop the worker and let go of every frame and clip (and cached GPU memory).

        The node calls this on cleanup/shutdown; drop the pipeline (and the model)
        afterwards so their memory can go too.
        """
        self.stop()
        with self._cond:
            self._cameras.clear()
            self._queue.clear()
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
                        batch = self._take_realtime() if self.realtime else self._take_offline()
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
                if self._stopping and (self.realtime or not self._queue):
                    return
                batch = self._take_realtime() if self.realtime else self._take_offline()
            self._run(batch)

    # -------------------------------------------------------------- inference
    def _run(self, batch: list[_Queued]) -> None:
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

    def _score(self, batch: list[_Queued]) -> list[ClipResult]:
        clips = [item.clip for item in batch]
        first = clips[0].frames[0].tensor
        x = torch.empty((len(clips), first.shape[0], self.clip_length, *first.shape[1:]))
        for n, clip in enumerate(clips):
            for t, frame in enumerate(clip.frames):
                x[n, :, t] = frame.tensor
        start = time.monotonic()
        with torch.inference_mode(), self._autocast():
            logits = self._score_all(x.to(self.device, non_blocking=True))
            per_task = [task.float().cpu().numpy() for task in logits]
        done = time.monotonic()
        inference_ms = (done - start) * 1e3
        config = self._config
        results = []
        with self._cond:
            self._batches += 1
            self._inference_ms.add(inference_ms)
        for n, item in enumerate(batch):
            cam = self._cameras[item.clip.camera]
            if item.epoch != cam.smoothed_epoch:
                for smoother in cam.smoothers:
                    smoother.reset()
                cam.smoothed_epoch = item.epoch
            for smoother in cam.smoothers:
                smoother.configure(config.smoothing, config.smoothing_window)
            tasks = postprocess(
                [task[n] for task in per_task],
                self.task_names,
                self.info.class_names,
                cam.smoothers,
                config,
            )
            latency_ms = (time.monotonic() - item.clip.frames[-1].arrival) * 1e3
            results.append(
                ClipResult(
                    camera=item.clip.camera,
                    sequence=item.clip.sequence,
                    first_stamp_ns=item.clip.first_stamp_ns,
                    last_stamp_ns=item.clip.header.stamp_ns,
                    header=item.clip.header,
                    tasks=tasks,
                    inference_ms=inference_ms,
                    latency_ms=latency_ms,
                )
            )
            with self._cond:
                cam.counts["clips_run"] += 1
                self._latency_ms.add(latency_ms)
        return results

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = AUTOCAST_MODES[self.autocast]
        if dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    def warmup(self, batch: int = 1) -> float:
        """One forward pass on zeros of the input shape (cuDNN autotuning, lazy init); ms."""
        crop = self.info.preprocess.crop
        x = torch.zeros((batch, 3, self.clip_length, *crop), device=self.device)
        start = time.monotonic()
        with torch.inference_mode(), self._autocast():
            for task in self._score_all(x):
                task.float().cpu()
        return (time.monotonic() - start) * 1e3

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


def prepare_frame(msg: Any, config: PreprocessConfig) -> torch.Tensor:
    """An Image/CompressedImage message -> preprocessed frame (3, crop_h, crop_w), as push() does.

    Raw images convert only the rows preprocessing reads (same bits as
    `preprocess_frame(decode_image(msg), config)`, a fraction of the work).
    """
    if not is_compressed(msg):
        height, width = getattr(msg, "height", None), getattr(msg, "width", None)
        # Sizes that are not positive ints: decode_image below says what is wrong.
        if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            rows = frame_rows(height, width, config)
            if rows is not None:
                return preprocess_rows(decode_image(msg, rows), (height, width), config)
    return preprocess_frame(decode_image(msg), config)


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise StreamConfigError(f"device {device!r} is not auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise StreamConfigError(f"device {device!r} asked for, but CUDA is not available")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise StreamConfigError(f"device {device!r}: this machine has "
                                f"{torch.cuda.device_count()} CUDA device(s)")
    return resolved


def _log_decode_error(camera: str, error: ImageDecodeError) -> None:
    log.error("camera %s: %s (further frames like this are skipped silently)", camera, error)
