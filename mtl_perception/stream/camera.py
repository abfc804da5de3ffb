"""One camera's state in the pipeline: sampling, buffer, counters, smoothing, newest frame.

`CameraState.offer` is the input side of `StreamPipeline.push`: check the
stamp, decode and preprocess a sampled frame, buffer it, and cut a clip when
one is due. It runs in the caller's thread under the camera's own lock, so
cameras pushed from different threads never wait for each other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mtl_perception.preprocess import PreprocessConfig, preprocess_frame
from mtl_perception.stream.buffer import BufferedFrame, CameraBuffer, Clip, Decision
from mtl_perception.stream.config import StreamConfig
from mtl_perception.stream.decode import (
    ImageDecodeError,
    decode_image,
    is_compressed,
    prepare_frame,
)
from mtl_perception.stream.events import GESTURE_TASK, GestureEventDetector, step
from mtl_perception.stream.gate_memory import GateMemory
from mtl_perception.stream.results import ClipResult, FrameHeader, Smoother
from mtl_perception.stream.stats import RateMeter

COUNTERS: tuple[str, ...] = (
    "frames_received",
    "frames_sampled",
    "frames_dropped",
    "decode_errors",
    "resets",
    "clips_made",
    "clips_run",
    "clips_dropped",
    "frames_late",
    "frames_repeated",
    "clips_nonfinite",
    "frames_other_frame_id",
)
log = logging.getLogger(__name__)

ErrorCallback = Callable[[str, ImageDecodeError], None]


@dataclass(frozen=True)
class Queued:
    """A clip waiting for the model, with the buffer epoch it was cut in."""

    clip: Clip
    epoch: int


class CameraState:
    """Everything the pipeline keeps per camera."""

    def __init__(
        self,
        name: str,
        config: StreamConfig,
        clip_length: int,
        tasks: int,
        preprocess: PreprocessConfig,
        on_error: ErrorCallback,
        gesture_classes: tuple[str, ...] = (),
        gate_context: int = 0,
    ) -> None:
        self.name = name
        self.buffer = CameraBuffer(
            name, config.target_fps, clip_length, config.inference_stride, config.max_gap_s
        )
        self.smoothers = [Smoother(config.smoothing, config.smoothing_window) for _ in range(tasks)]
        # Gesture events (stream/events.py); None for a model without a gesture task.
        self.events = GestureEventDetector(gesture_classes, name) if gesture_classes else None
        # A gate with memory's last clips (stream/gate_memory.py); restarts with the smoothing.
        self.gate_memory = GateMemory(gate_context) if gate_context else None
        self.preprocess = preprocess
        self.on_error = on_error
        self.lock = threading.Lock()
        self.rate = RateMeter()
        self.pending: Queued | None = None  # realtime: newest unscored clip
        self.epoch = 0  # buffer resets so far; smoothing restarts with a new epoch
        self.smoothed_epoch = 0
        self.served = -1  # index of the last batch that scored one of its clips
        self.latest: tuple[Any, FrameHeader] | None = None  # newest sampled message or frame
        self.errors_reported: set[tuple[str, str]] = set()
        self.counts = dict.fromkeys(COUNTERS, 0)

    def offer(
        self, header: FrameHeader, msg: Any, rgb: np.ndarray | None, now: float
    ) -> tuple[bool, Queued | None]:
        """(sampled?, the clip now due or None) for one frame; the caller holds no lock."""
        with self.lock:
            self.rate.tick(now)
            self.counts["frames_received"] += 1
            decision = self.buffer.decide(header.stamp_ns)
            if decision is not Decision.RESET and self._other_frame_id(header.frame_id):
                return False, None
            if decision is Decision.SKIP:
                return False, None
            if decision is Decision.DROP:
                self._out_of_order(header.stamp_ns)
                return False, None
            try:
                if rgb is None:
                    tensor = prepare_frame(msg, self.preprocess)
                else:
                    tensor = preprocess_frame(rgb, self.preprocess)
            except ImageDecodeError as exc:
                self._decode_failed(msg, exc)
                return False, None
            except ValueError as exc:  # a frame preprocessing refuses (shape, dtype)
                self._decode_failed(msg, ImageDecodeError(str(exc), "size"))
                return False, None
            if decision is Decision.RESET:
                self.restart()
                self.counts["resets"] += 1
            self.latest = (msg if rgb is None else rgb, header)
            self.counts["frames_sampled"] += 1
            clip = self.buffer.add(BufferedFrame(tensor, header, now))
            if clip is None:
                return True, None
            self.counts["clips_made"] += 1
            return True, Queued(clip, self.epoch)

    def refuse(self, msg: Any, exc: ImageDecodeError) -> None:
        """Count a frame refused before sampling (its header); report its kind once."""
        with self.lock:
            self.counts["frames_received"] += 1
            self._decode_failed(msg, exc)

    def restart(self) -> None:
        """Empty the buffer; clips cut from now on start smoothing afresh. Hold `lock`."""
        self.buffer.reset()
        self.epoch += 1

    def smoothers_for(self, item: Queued, config: StreamConfig) -> list[Smoother]:
        """The smoothers to score `item` with: reset at a new epoch (the gate's memory
        and the event detector too), configured live."""
        if item.epoch != self.smoothed_epoch:
            for smoother in self.smoothers:
                smoother.reset()
            if self.events is not None:
                self.events.reset()
            if self.gate_memory is not None:
                self.gate_memory.reset()
            self.smoothed_epoch = item.epoch
        for smoother in self.smoothers:
            smoother.configure(config.smoothing, config.smoothing_window)
        return self.smoothers

    def gate_logits(self, shares: np.ndarray) -> np.ndarray:
        """A gate with memory's logits for this camera's newest clip (after `smoothers_for`)."""
        assert self.gate_memory is not None, "a camera without a gate with memory"
        return self.gate_memory.logits(shares)

    def with_event(self, result: ClipResult, config: StreamConfig) -> ClipResult:
        """`result` with the gesture event decided at it (call after `smoothers_for`)."""
        if self.events is None:
            return result
        event = step(self.events, result, config, GESTURE_TASK)
        return result if event is None else replace(result, event=event)

    def latest_frame(self) -> tuple[np.ndarray, FrameHeader] | None:
        if self.latest is None:
            return None
        source, header = self.latest
        # Messages are decoded in full only when asked (push decodes just the rows it needs).
        return (source if isinstance(source, np.ndarray) else decode_image(source)), header

    def _other_frame_id(self, frame_id: str) -> bool:
        """Drop (count, warn once) a frame of another frame_id than the buffer's frames.

        A clip never mixes two cameras that publish on one topic: the topic follows
        the frame_id it has, until that one is silent for longer than `max_gap_s`
        (the buffer then resets and the next frame, whichever its frame_id, anchors it).
        """
        frames = self.buffer.frames
        if not frames or frames[-1].header.frame_id == frame_id:
            return False
        self.counts["frames_dropped"] += 1
        self.counts["frames_other_frame_id"] += 1
        if ("order", "frame_id") not in self.errors_reported:  # one line per camera
            self.errors_reported.add(("order", "frame_id"))
            log.warning("camera %s: a frame with frame_id %r while its clips hold frame_id %r "
                        "(two cameras on one topic?); such frames are dropped and counted "
                        "(frames_other_frame_id in the stream statistics and /diagnostics) "
                        "until %r is silent for max_gap_s; give each camera its own topic; "
                        "said once", self.name, frame_id, frames[-1].header.frame_id,
                        frames[-1].header.frame_id)
        return True

    def _out_of_order(self, stamp_ns: int) -> None:
        """Count a frame stamped at (repeated) or before (late) the last kept one; warn once."""
        self.counts["frames_dropped"] += 1
        last = self.buffer.last_stamp_ns
        repeated = stamp_ns == last
        self.counts["frames_repeated" if repeated else "frames_late"] += 1
        key = ("order", "repeated" if repeated else "late")
        if key not in self.errors_reported:
            self.errors_reported.add(key)
            what = ("repeats the stamp of the last kept frame (a publisher that does not set "
                    "header.stamp, or a looping clock?)" if repeated else
                    f"is stamped {((last or 0) - stamp_ns) / 1e9:.3f} s before the last kept "
                    "frame (it arrived late)")
            log.warning("camera %s: a frame %s; such frames are dropped and counted "
                        "(frames_%s in the stream statistics and /diagnostics); said once",
                        self.name, what, "repeated" if repeated else "late")

    def _decode_failed(self, msg: Any, exc: ImageDecodeError) -> None:
        self.counts["frames_dropped"] += 1
        self.counts["decode_errors"] += 1
        source = "" if msg is None else str(msg.format if is_compressed(msg) else msg.encoding)
        key = (exc.kind, source)
        if key not in self.errors_reported:
            self.errors_reported.add(key)
            self.on_error(self.name, exc)
