"""Video files: decoding frames for clips, and encoding (stand-ins, synthetic data).

Decoded with PyAV (FFmpeg's libraries as a maintained Python binding, wheels
with codecs included on every platform we target), which gives frame-exact
decoding and keyframe seeking without a separate ffmpeg binary; OpenCV's
VideoCapture would pull in a far larger dependency and seeks less reliably.
Every failure to open or decode a file becomes `VideoReadError` naming the
file, so that a dataset can skip it and count it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoReadError(RuntimeError):
    """A video that cannot be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, rate and size; counts by demuxing when the header has no count."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            count = stream.frames
            if count <= 0:
                count = sum(1 for packet in container.demux(stream) if packet.size > 0)
            return VideoInfo(count, fps, stream.codec_context.width, stream.codec_context.height)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoReadError(f"cannot read video {path}: {exc}") from exc


def read_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """Decode the frames at `indices` (any order, repeats allowed) as RGB uint8 (N, H, W, 3).

    Decodes sequentially up to the last index needed; an index past the end of
    the stream is an error naming the file.
    """
    path = Path(path)
    if len(indices) == 0:
        raise ValueError("read_frames needs at least one frame index")
    wanted = sorted(set(int(i) for i in indices))
    if wanted[0] < 0:
        raise ValueError(f"negative frame index {wanted[0]}")
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            stream.thread_type = "AUTO"
            last = wanted[-1]
            wanted_lookup = set(wanted)
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted_lookup:
                    found[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoReadError(f"cannot decode video {path}: {exc}") from exc
    missing = [i for i in wanted if i not in found]
    if missing:
        raise VideoReadError(
            f"video {path} ended before frame {missing[0]} ({len(found)} of {len(wanted)} frames read)"
        )
    return np.stack([found[int(i)] for i in indices])


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
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.bit_rate = bit_rate
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoReadError(f"{path} has no video stream")
    return container.streams.video[0]
