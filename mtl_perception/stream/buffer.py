"""Per-camera sampling by header stamp and the ring buffer of preprocessed frames.

Sampling rule (all times are header stamps, never arrival times):

- The first frame (and the first after a reset) is kept and anchors a grid
  of period P = 1 / target_fps.
- After keeping a frame at stamp t, the next grid point is the first one
  more than 0.4 P after t; a later frame is kept once its stamp reaches that
  grid point minus 0.4 P. So a camera at the target rate keeps every frame
  as long as no frame strays more than 0.4 P from the grid (per-frame jitter
  up to +-P/5 around the true rate), a faster camera is thinned to the target
  rate on average without drift (30 -> 15 fps keeps every other frame,
  30 -> 20 fps keeps 2 of 3), and a slower camera keeps every frame. The
  tolerance stays below P / 2 so that a camera at exactly twice the target
  rate is halved regularly rather than flickering between both phases.
- A stamp at or before the last kept frame's stamp is a duplicate or out of
  order: dropped and counted, the buffer is untouched.
- A stamp more than `max_gap_s` after the last kept frame (a dropped camera,
  a paused bag) or more than `max_gap_s` before it (time jumped back: a
  looping bag, a restarted simulation) resets the buffer: the clip would
  otherwise glue two scenes together. The frame that caused the reset is
  kept as the new anchor.

A clip is the last `clip_length` kept frames, cut once the buffer holds
`clip_length` frames and then every `inference_stride` kept frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import torch

from mtl_perception.stream.results import FrameHeader


class Decision(Enum):
    KEEP = "keep"  # sample it: decode, preprocess, buffer
    SKIP = "skip"  # between grid points: not needed for target_fps
    DROP = "drop"  # duplicate or out-of-order stamp
    RESET = "reset"  # gap: empty the buffer, then keep it


@dataclass(frozen=True)
class BufferedFrame:
    """One preprocessed frame (3, h, w) with its header and arrival time (monotonic s)."""

    tensor: torch.Tensor
    header: FrameHeader
    arrival: float


@dataclass(frozen=True)
class Clip:
    """`clip_length` buffered frames of one camera, oldest first; `sequence` counts clips."""

    camera: str
    sequence: int
    frames: tuple[BufferedFrame, ...]

    @property
    def first_stamp_ns(self) -> int:
        return self.frames[0].header.stamp_ns

    @property
    def header(self) -> FrameHeader:
        return self.frames[-1].header


class CameraBuffer:
    """Sampler + ring buffer of one camera. Not thread-safe: the pipeline locks it."""

    def __init__(
        self,
        camera: str,
        target_fps: float,
        clip_length: int,
        inference_stride: int,
        max_gap_s: float,
    ) -> None:
        self.camera = camera
        self.period_ns = 1e9 / target_fps
        self.tolerance_ns = self.period_ns * 0.4
        self.max_gap_ns = max_gap_s * 1e9
        self.clip_length = clip_length
        self.inference_stride = inference_stride
        self.frames: deque[BufferedFrame] = deque(maxlen=clip_length)
        self._anchor_ns: int | None = None  # stamp of the grid's origin
        self._last_ns: int | None = None  # stamp of the last kept frame
        self._next_index = 0  # grid index of the next frame to keep
        self._since_clip = 0  # kept frames since the last clip
        self._fresh = True  # no clip yet since the start or the last reset
        self._clips = 0

    @property
    def last_stamp_ns(self) -> int | None:
        """Stamp of the last kept frame (None at the start and after a reset)."""
        return self._last_ns

    def decide(self, stamp_ns: int) -> Decision:
        """What to do with a frame stamped `stamp_ns`; changes nothing."""
        if self._last_ns is None or self._anchor_ns is None:
            return Decision.KEEP
        delta = stamp_ns - self._last_ns
        if delta > self.max_gap_ns or -delta > self.max_gap_ns:
            return Decision.RESET
        if delta <= 0:
            return Decision.DROP
        due = self._anchor_ns + self._next_index * self.period_ns - self.tolerance_ns
        return Decision.KEEP if stamp_ns >= due else Decision.SKIP

    def reset(self) -> None:
        """Forget every frame and the sampling grid (the next frame anchors a new one)."""
        self.frames.clear()
        self._anchor_ns = None
        self._last_ns = None
        self._next_index = 0
        self._since_clip = 0
        self._fresh = True

    def add(self, frame: BufferedFrame) -> Clip | None:
        """Buffer a frame that `decide` said to keep; return a clip when one is due."""
        stamp = frame.header.stamp_ns
        if self._anchor_ns is None:
            self._anchor_ns = stamp
        self._last_ns = stamp
        # First grid point more than the tolerance after this frame.
        offset = (stamp - self._anchor_ns + self.tolerance_ns) / self.period_ns
        self._next_index = int(offset // 1) + 1
        self.frames.append(frame)
        self._since_clip += 1
        if len(self.frames) < self.clip_length:
            return None
        if self._fresh or self._since_clip >= self.inference_stride:
            self._fresh = False
            self._since_clip = 0
            clip = Clip(self.camera, self._clips, tuple(self.frames))
            self._clips += 1
            return clip
        return None
