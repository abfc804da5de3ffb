"""Video files: decoding frames for clips, and encoding (stand-ins, synthetic data).

Decoded with PyAV (FFmpeg's libraries as a maintained Python binding, wheels
with codecs included on every platform we target), which gives frame-exact
decoding and keyframe seeking without a separate ffmpeg binary; OpenCV's
VideoCapture would pull in a far larger dependency and seeks less reliably.
Every failure to open or decode a file becomes `VideoReadError` naming the
file, so that a dataset can skip it and count it.

Speed: a 32-frame clip from a 7 s UCF-101 video needs about a fifth of its
frames, so `VideoReader` seeks to the keyframe before the first frame needed
(and again across a gap that holds a keyframe) instead of decoding from frame
0, and converts to RGB only the frames asked for. Frame identity comes from
each frame's pts (pts * time_base * fps), never from where a seek claims to
land; when pts are missing or not one frame apart (variable frame rate), the
seek overshoots, or the container has no index, it decodes from the start and
counts frames, which is always exact. Decoding is single-threaded by default:
DataLoader workers give the parallelism, and FFmpeg's own threads would only
compete with them for the same cores.

Frame folders (mmaction2's `img_00001.jpg`, 1-based) are read by `frames.py`.

Only regular files are opened: a FIFO, a device or a socket where a video or
a frame is expected would block `open` forever (or read a device), so it is
refused by `os.stat` first, as a `VideoReadError` saying what it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from mtl_perception import fileio
from mtl_perception.fileio import file_kind  # noqa: F401  (re-exported for the readers)

LOG = logging.getLogger(__name__)

# Only look for a keyframe to jump to across a gap of more than this many
# frames: a shorter gap is cheaper to decode through than to seek across.
_MIN_SEEK_GAP = 8
_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError)


class VideoReadError(RuntimeError):
    """A video that cannot be opened or decoded."""


class VideoTooShortError(VideoReadError):
    """The stream ended before a requested frame; `available` frames were decodable."""

    def __init__(self, message: str, available: int) -> None:
        super().__init__(message)
        self.available = available


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int


@dataclass
class DecodeStats:
    """Where a reader's time went: for benchmarks and for spotting slow files."""

    frames_decoded: int = 0
    frames_converted: int = 0
    seeks: int = 0
    fallbacks: int = 0  # reads that had to decode from the start
    decode_s: float = 0.0  # demux + decode
    convert_s: float = 0.0  # YUV -> RGB24 numpy

    def add(self, other: DecodeStats) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class _SeekUnreliable(Exception):
    """The seeking path cannot guarantee frame identity for this file."""


class VideoReader:
    """One open video: its frame count, then frames by index (keyframe seeking).

    Use as a context manager, or call `close()`. `threads=1` decodes on the
    calling thread only; `threads=0` lets FFmpeg choose.
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads
        self.stats = DecodeStats()
        self._container = self._open()
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self._rate = Fraction(rate) if rate else Fraction(25)
        self._time_base = Fraction(stream.time_base) if stream.time_base else None
        self._start_pts = stream.start_time if stream.start_time is not None else 0
        scale = (self._time_base or Fraction(1)) * self._rate  # frames per pts tick
        self._pts_num, self._pts_den = scale.numerator, scale.denominator
        self._num_frames = stream.frames if stream.frames > 0 else None
        self._seekable = self._time_base is not None and len(stream.index_entries) > 0

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    @property
    def fps(self) -> float:
        return float(self._rate)

    @property
    def width(self) -> int:
        return int(self._stream.codec_context.width)

    @property
    def height(self) -> int:
        return int(self._stream.codec_context.height)

    @property
    def num_frames(self) -> int:
        """Frame count from the header; counted by demuxing when the header has none."""
        if self._num_frames is None:
            try:
                self._num_frames = sum(
                    1 for packet in self._container.demux(self._stream) if packet.size > 0
                )
            except _ERRORS as exc:
                raise VideoReadError(f"cannot read video {self.path}: {exc}") from exc
            self._reopen()
        return self._num_frames

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as RGB uint8 (N, H, W, 3)."""
        if len(indices) == 0:
            raise ValueError("read_frames needs at least one frame index")
        wanted = sorted({int(i) for i in indices})
        if wanted[0] < 0:
            raise ValueError(f"negative frame index {wanted[0]}")
        try:
            found = self._read_seeking(wanted) if self._seekable else None
            if found is None:
                self.stats.fallbacks += 1
                self._reopen()
                found = self._read_sequential(wanted)
            # inside the try: a stream whose frame size changes midway cannot stack
            return np.stack([found[int(i)] for i in indices])
        except _ERRORS as exc:  # VideoReadError is none of these: it passes through
            raise VideoReadError(f"cannot decode video {self.path}: {exc}") from exc

    # -- the two decoding paths -------------------------------------------------

    def _read_seeking(self, wanted: list[int]) -> dict[int, np.ndarray] | None:
        """Seek to the keyframe before each run of wanted frames; None if not exact."""
        found: dict[int, np.ndarray] = {}
        frames: Iterator[av.VideoFrame] | None = None
        position = -1  # index of the last frame decoded
        try:
            for target in wanted:
                if target <= position:
                    continue  # already passed: it was stored on the way
                if frames is None or (
                    target - position > _MIN_SEEK_GAP and self._keyframe_after(position, target)
                ):
                    frames, position = self._seek(target)
                position = self._decode_until(frames, position, target, wanted, found)
        except _SeekUnreliable as why:
            LOG.debug("%s: decoding from the start (%s)", self.path, why)
            return None
        return found

    def _seek(self, target: int) -> tuple[Iterator[av.VideoFrame], int]:
        """Seek at or before `target`; returns the decode iterator and position - 1."""
        for margin in (0, 16, 64):
            goal = max(target - margin, 0)
            try:
                self._container.seek(self._pts_of(goal), stream=self._stream, backward=True)
            except av.error.FFmpegError as exc:  # a demuxer that cannot seek here
                raise _SeekUnreliable(f"seek failed: {exc}") from exc
            self.stats.seeks += 1
            frames = self._timed_decode()
            first = next(frames, None)
            if first is None:
                raise _SeekUnreliable("no frame after seeking")
            index = self._index_of(first)
            if index <= target:
                return _prepend(first, frames), index - 1
            # Some demuxers index by dts and land one keyframe late: back off.
        raise _SeekUnreliable(f"seeking for frame {target} lands after it")

    def _decode_until(
        self,
        frames: Iterator[av.VideoFrame],
        position: int,
        target: int,
        wanted: list[int],
        found: dict[int, np.ndarray],
    ) -> int:
        wanted_set = set(wanted)
        for frame in frames:
            index = self._index_of(frame)
            if index != position + 1:
                raise _SeekUnreliable(f"frame pts jump from index {position} to {index}")
            position = index
            if index in wanted_set:
                found[index] = self._convert(frame)
            if index >= target:
                return position
        self._too_short(wanted, found, position + 1)
        return position

    def _read_sequential(self, wanted: list[int]) -> dict[int, np.ndarray]:
        found: dict[int, np.ndarray] = {}
        wanted_set, last = set(wanted), wanted[-1]
        count = 0
        for index, frame in enumerate(self._timed_decode()):
            count = index + 1
            if index in wanted_set:
                found[index] = self._convert(frame)
            if index >= last:
                return found
        self._too_short(wanted, found, count)
        return found

    # -- helpers ------------------------------------------------------------------

    def _too_short(self, wanted: list[int], found: dict[int, np.ndarray], available: int) -> None:
        missing = next(i for i in wanted if i not in found)
        raise VideoTooShortError(
            f"video {self.path} ended before frame {missing} ({len(found)} of {len(wanted)} "
            f"frames read, {available} decodable)",
            available,
        )

    def _timed_decode(self) -> Iterator[av.VideoFrame]:
        decoder = self._container.decode(self._stream)
        while True:
            tic = time.perf_counter()
            frame = next(decoder, None)
            self.stats.decode_s += time.perf_counter() - tic
            if frame is None:
                return
            self.stats.frames_decoded += 1
            yield frame

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        tic = time.perf_counter()
        # Plain rgb24 conversion, as torchvision's read_video does, so the
        # Kinetics-400 weights see the colours they were trained on.
        # threads=1: swscale's default thread pool costs more than it saves on
        # 320x240 frames, and competes with the DataLoader workers.
        image = frame.to_ndarray(format="rgb24", threads=self.threads)
        self.stats.convert_s += time.perf_counter() - tic
        self.stats.frames_converted += 1
        return image

    def _index_of(self, frame: av.VideoFrame) -> int:
        if frame.pts is None or self._time_base is None:
            raise _SeekUnreliable("frame without pts")
        # index = round((pts - start) * time_base * fps), in integers: exact and
        # cheaper than Fraction arithmetic on every frame.
        num = (frame.pts - self._start_pts) * self._pts_num
        index = (2 * num + self._pts_den) // (2 * self._pts_den)
        if index < 0:
            raise _SeekUnreliable(f"frame pts {frame.pts} before the stream start")
        return index

    def _pts_of(self, index: int) -> int:
        assert self._time_base is not None
        return self._start_pts + round(Fraction(index) / self._rate / self._time_base)

    def _keyframe_after(self, position: int, target: int) -> bool:
        """Whether the index has a keyframe after `position` and at or before `target`."""
        entries = self._stream.index_entries
        found = entries.search_timestamp(self._pts_of(target), backward=True)
        return found >= 0 and entries[found].timestamp > self._pts_of(position)

    def _open(self) -> av.container.InputContainer:
        require_regular_file(self.path, "video")
        try:
            container = av.open(str(self.path))
        except _ERRORS as exc:
            raise VideoReadError(f"cannot open video {self.path}: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise VideoReadError(f"{self.path} has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # a damaged header naming no known codec
            container.close()
            raise VideoReadError(f"{self.path}: no decoder for its video stream")
        if self.threads == 1:
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
        else:
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads
        self._stream = stream
        return container

    def _reopen(self) -> None:
        """A fresh demuxer and decoder at frame 0 (more robust than seeking to 0)."""
        self._container.close()
        self._container = self._open()


def _prepend(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest


def require_regular_file(path: Path, what: str) -> None:
    """Raise `VideoReadError` unless `path` is a regular file (links followed); never opens it."""
    fileio.require_regular_file(path, what, VideoReadError)


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, rate and size; counts by demuxing when the header has no count."""
    with VideoReader(path) as reader:
        return VideoInfo(reader.num_frames, reader.fps, reader.width, reader.height)


def read_frames(path: str | Path, indices: Sequence[int], threads: int = 1) -> np.ndarray:
    """Decode the frames at `indices` (any order, repeats allowed) as RGB uint8 (N, H, W, 3).

    Seeks to the keyframe before the first frame needed; an index past the end
    of the stream is a `VideoTooShortError` naming the file.
    """
    with VideoReader(path, threads=threads) as reader:
        return reader.read(indices)


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 25.0,
    codec: str = "mpeg4",
    gop: int = 12,
    bit_rate: int = 1_000_000,
) -> None:
    """Encode RGB uint8 frames (T, H, W, 3) into a real video file.

    `mpeg4` in an `.avi` is what UCF-101, IsoGD and NTU ship (Xvid/DivX);
    `libx264` suits `.mp4`. `gop` is the keyframe interval (what seeking costs).
    Width and height must be even (yuv420p).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frame size {width}x{height} must be even for yuv420p")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        # A video codec gives a video stream; the stubs cannot know `codec` is one.
        stream = cast(
            av.VideoStream,
            container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001)),
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.bit_rate = bit_rate
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
