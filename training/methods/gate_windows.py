"""Training windows for a gate with memory: each video's clips as the stream cuts them.

A gate that reads the previous k clips (`fit-gate --context k`,
mtl_perception/models/gate.py) must be fitted on what the stream shows it:
a clip and the k clips before it, `inference_stride` sampled frames apart.
So every video of the set (sessions, background videos, trimmed samples with
their lead-in and lead-out) is cut into clips exactly that way, each clip's
pooled features are computed once, and each clip becomes one window: its own
row, then the rows of the k clips before it. Before a video's first clips,
the missing ones count as the oldest there is, as the stream pads its memory
(mtl_perception/stream/gate_memory.py).

A clip's label comes from how much of its time span lies on a labelled
motion of one of the model's tasks: at least `TASK_SHARE` (half) of it, that
task; less than `none_share` on every motion (of any task), `none`; in
between, the clip is left out of the fit (it still serves as context for the
clips after it). The untrimmed metrics count a clip as a motion's when half
of it lies on it (mtl_perception/bag/untrimmed.py); `none_share` is
fit-gate's `--lead-overlap` (0.4), the share of a clip that the one-clip
gate's lead-in and lead-out clips may reach into a gesture. With 0.25
instead, the short lead-in and lead-out of trimmed gesture videos (mostly
under a clip's span) gave no `none` clip at all, and the gate called every
lead clip of the held-out bag a gesture (bench set, 3 seeds).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtl_perception.models import MultiTaskModel
from mtl_perception.preprocess import PreprocessConfig, preprocess_frame
from mtl_perception.stream.buffer import BufferedFrame, CameraBuffer, Clip, Decision
from mtl_perception.stream.results import FrameHeader
from training.datasets.sample import VideoSample
from training.datasets.untrimmed import UntrimmedVideo
from training.datasets.video import VideoReader, VideoReadError

LOG = logging.getLogger(__name__)
TASK_SHARE = 0.5  # of a clip's span on one task's motion: that task
NONE_SHARE = 0.4  # below this on every motion: none (the default; fit-gate --lead-overlap)
UNUSED = -1  # a clip between the two: context only
_CHUNK = 64  # frames decoded at a time


@dataclass(frozen=True)
class TimedVideo:
    """A video and its labelled motions: (start, end, gate label), gate label `UNUSED`
    for a motion of a task the model lacks; in seconds from its first frame, or, in
    `frame_motions`, in frames (end exclusive, None: to the end; trimmed samples). The
    rest of the video is `none`."""

    path: Path
    motions: tuple[tuple[float, float, int], ...] = ()
    frame_motions: tuple[tuple[int, int | None, int], ...] = ()

    def in_seconds(self, fps: float) -> list[tuple[float, float, int]]:
        return [*self.motions, *((a / fps, math.inf if b is None else b / fps, label)
                                 for a, b, label in self.frame_motions)]


def session_videos(videos: Sequence[UntrimmedVideo], task_names: Sequence[str]
                   ) -> list[TimedVideo]:
    """Untrimmed sessions (or background videos: no intervals) as timed videos."""
    return [TimedVideo(v.path, tuple(
        (i.start, i.end, list(task_names).index(i.task) if i.task in task_names else UNUSED)
        for i in v.intervals)) for v in videos]


def sample_videos(samples: Sequence[tuple[VideoSample, int]]) -> list[TimedVideo]:
    """Trimmed samples (sample, task id) as timed videos, one per file (a file with
    several segments keeps them all); their lead-in and lead-out are `none`."""
    motions: dict[Path, list[tuple[int, int | None, int]]] = {}
    for sample, task in samples:
        motions.setdefault(sample.path, []).append((sample.start, sample.end, task))
    return [TimedVideo(path, frame_motions=tuple(m)) for path, m in motions.items()]


@dataclass
class StreamWindows:
    """Clips of several videos: `features` (R, D) every clip, `windows` (M, k + 1) the
    rows of a labelled clip and of the k clips before it, `labels` (M,) its gate label."""

    features: torch.Tensor
    windows: torch.Tensor
    labels: torch.Tensor

    @staticmethod
    def join(parts: Sequence[StreamWindows]) -> StreamWindows:
        """One set of windows from several (row numbers shifted to the joined features)."""
        offsets = np.cumsum([0, *(len(p.features) for p in parts)])
        return StreamWindows(
            torch.cat([p.features for p in parts]),
            torch.cat([p.windows + int(o) for p, o in zip(parts, offsets, strict=False)]),
            torch.cat([p.labels for p in parts]))

    def __len__(self) -> int:
        return len(self.labels)


def clip_label(t0: float, t1: float, motions: Sequence[tuple[float, float, int]],
               none_label: int, none_share: float = NONE_SHARE) -> int:
    """The gate label of a clip spanning [t0, t1] s (module docstring)."""
    span = max(t1 - t0, 1e-9)
    shares = [(max(0.0, min(end, t1) - max(start, t0)) / span, label)
              for start, end, label in motions]
    best, label = max(shares, default=(0.0, none_label))
    if best >= TASK_SHARE:
        return label
    return none_label if best < none_share else UNUSED


def lag_rows(count: int, context: int) -> np.ndarray:
    """(count, context + 1): row i, then the rows 1..k clips before it; before the
    first clip, the oldest there is (row 0)."""
    rows = np.arange(count)
    return np.stack([np.maximum(rows - lag, 0) for lag in range(context + 1)], axis=1)


def stream_windows(model: MultiTaskModel, videos: Sequence[TimedVideo],
                   preprocess: PreprocessConfig, frame_step: int, stride: int, context: int,
                   none_label: int, batch_size: int = 16,
                   device: str | torch.device = "cpu",
                   none_share: float = NONE_SHARE) -> StreamWindows:
    """Every video's clips as the stream cuts them (about a frame every `frame_step`, a
    clip every `stride` sampled frames), as windows of `context` + 1 clips; a video that
    cannot be read is left out with a warning, videos shorter than a clip with one
    warning for all."""
    parts = []
    short: list[Path] = []
    for video in videos:
        try:
            features, spans, fps = _video_features(model, video.path, preprocess, frame_step,
                                               stride, batch_size, device)
        except (VideoReadError, ValueError) as exc:  # undecodable, or frames it cannot use
            LOG.warning("left out of the gate's windows: %s", str(exc).splitlines()[0])
            continue
        if not spans:
            short.append(video.path)
            continue
        motions = video.in_seconds(fps)
        labels = np.array([clip_label(a, b, motions, none_label, none_share)
                           for a, b in spans])
        keep = labels != UNUSED
        windows = lag_rows(len(spans), context)[keep]
        parts.append(StreamWindows(features, torch.from_numpy(windows),
                                   torch.from_numpy(labels[keep])))
    if short:
        LOG.warning("%d video(s) shorter than one clip at this rate left out of the gate's "
                    "windows (the first: %s)", len(short), short[0])
    if not parts:
        raise ValueError("no video could be read to cut the gate's stream windows from")
    return StreamWindows.join(parts)


def _video_features(model: MultiTaskModel, path: Path, preprocess: PreprocessConfig,
                    frame_step: int, stride: int, batch_size: int,
                    device: str | torch.device
                    ) -> tuple[torch.Tensor, list[tuple[float, float]], float]:
    """(features (R, D), each clip's (first, last) frame time in s, fps) of one video.

    The frames are stamped as `fit-gate`'s tuning stream stamps them and sampled and cut
    by the stream's own buffer (`CameraBuffer`, target rate fps / `frame_step`), so the
    clips are the node's, its sampling phase included. A decode failure after some clips
    keeps them (a header that overstates the frame count), with a warning."""
    features: list[torch.Tensor] = []
    spans: list[tuple[float, float]] = []
    pending: list[Clip] = []

    def run() -> None:
        clips = torch.stack([torch.stack([f.tensor for f in c.frames], dim=1) for c in pending])
        with torch.no_grad():
            features.append(model.gate_features(clips.to(device)).float().cpu())
        spans.extend((c.first_stamp_ns / 1e9, c.header.stamp_ns / 1e9) for c in pending)
        pending.clear()

    with VideoReader(path) as reader:
        fps, total = reader.fps, reader.num_frames
        buffer = CameraBuffer(str(path), round(fps / frame_step, 3), preprocess.clip_length,
                              stride, max(0.5, 2.0 * frame_step / fps))
        try:
            for begin in range(0, total, _CHUNK):
                indices = range(begin, min(begin + _CHUNK, total))
                for i, frame in zip(indices, reader.read(list(indices)), strict=True):
                    stamp = round(i * 1e9 / fps)
                    if buffer.decide(stamp) is not Decision.KEEP:
                        continue  # the stream skips it; regular stamps never reset
                    header = FrameHeader(stamp)
                    clip = buffer.add(BufferedFrame(preprocess_frame(frame, preprocess),
                                                    header, 0.0))
                    if clip is not None:
                        pending.append(clip)
                    if len(pending) >= batch_size:
                        run()
        except VideoReadError as exc:
            if not (features or pending):
                raise
            LOG.warning("%s: clips up to the frame that failed kept (%s)", path,
                        str(exc).splitlines()[0])
        if pending:
            run()
    if not features:
        return torch.empty(0), [], fps
    return torch.cat(features), spans, fps
