"""Counters and latency statistics of the streaming core, for /diagnostics.

Every window here is bounded (a deque with maxlen), so a node that runs for
weeks keeps constant memory.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

LATENCY_WINDOW = 512  # recent samples the percentiles are taken over
RATE_WINDOW = 64  # recent arrivals the input frame rate is taken over


@dataclass(frozen=True)
class Percentiles:
    """p50 / p95 in milliseconds over the recent window; NaN before any sample."""

    p50: float = float("nan")
    p95: float = float("nan")
    count: int = 0


@dataclass(frozen=True)
class CameraStats:
    """Per camera (the pipeline's `camera` key, e.g. the topic name).

    - `input_fps`: arrival rate of frames over the recent window (wall clock).
    - `frames_received`: every `push()`.
    - `frames_sampled`: frames kept by the target_fps sampler (decoded, buffered).
    - `frames_dropped`: frames that could not be used: undecodable (bad size,
      unsupported encoding), stamped at/before the last kept frame
      (duplicate or out of order), or of another frame_id. Frames skipped to reach target_fps are
      not dropped: they are `frames_received - frames_sampled - frames_dropped`.
    - `decode_errors`: the undecodable part of `frames_dropped`.
    - `resets`: buffer resets because of a stamp gap longer than max_gap_s.
    - `clips_made`, `clips_run`, `clips_dropped`: clips cut from the buffer,
      scored, and replaced by a newer clip before the worker reached them.
    - `frames_late`, `frames_repeated`: the out-of-order part of
      `frames_dropped`: stamped before the last kept frame (arrived late), or
      with its very stamp (all-equal stamps, a publisher that does not stamp).
    - `frames_other_frame_id`: the part of `frames_dropped` whose frame_id is
      not the one of the frames buffered (two cameras on one topic).
    - `clips_nonfinite`: clips whose model outputs held NaN or inf (fp16
      overflow, damaged weights): skipped, never published nor smoothed.
    """

    input_fps: float = 0.0
    frames_received: int = 0
    frames_sampled: int = 0
    frames_dropped: int = 0
    decode_errors: int = 0
    resets: int = 0
    clips_made: int = 0
    clips_run: int = 0
    clips_dropped: int = 0
    frames_late: int = 0
    frames_repeated: int = 0
    clips_nonfinite: int = 0
    frames_other_frame_id: int = 0


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of the whole pipeline (`StreamPipeline.stats()`)."""

    cameras: dict[str, CameraStats] = field(default_factory=dict)
    inference_ms: Percentiles = field(default_factory=Percentiles)
    latency_ms: Percentiles = field(default_factory=Percentiles)
    batches_run: int = 0
    inference_errors: int = 0  # batches whose forward pass raised (their clips are lost)
    device: str = "cpu"
    realtime: bool = True

    @property
    def clips_run(self) -> int:
        return sum(c.clips_run for c in self.cameras.values())

    @property
    def clips_dropped(self) -> int:
        return sum(c.clips_dropped for c in self.cameras.values())

    @property
    def frames_dropped(self) -> int:
        return sum(c.frames_dropped for c in self.cameras.values())


class LatencyWindow:
    """The last `size` samples; percentiles on demand."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def percentiles(self) -> Percentiles:
        if not self._values:
            return Percentiles()
        values = np.fromiter(self._values, dtype=np.float64)
        p50, p95 = np.percentile(values, [50, 95])
        return Percentiles(float(p50), float(p95), len(values))


class RateMeter:
    """Arrival rate over the last `size` arrivals (monotonic seconds)."""

    def __init__(self, size: int = RATE_WINDOW) -> None:
        self._times: deque[float] = deque(maxlen=size)

    def tick(self, now: float) -> None:
        self._times.append(now)

    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
