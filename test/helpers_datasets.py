"""Shared helpers for the dataset tests: stand-in videos, fake trees, set configs.

Real list files are used as shipped; videos are generated for a sample of
their entries only (thousands of encodes would make the suite slow), so
tests can count present, missing and unreadable files exactly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import numpy as np
import yaml

from training.datasets.sample import VideoSample
from training.datasets.video import write_video


def stand_in_video(path: Path, frames: int = 8, width: int = 64, height: int = 48) -> Path:
    """A small real video (moving gradient) at `path`."""
    t = np.arange(frames)[:, None, None, None]
    x = np.arange(width)[None, None, :, None]
    images = np.broadcast_to((t * 16 + x * 3) % 255, (frames, height, width, 3)).astype(np.uint8)
    write_video(path, np.ascontiguousarray(images), fps=25.0)
    return path


def corrupt_video(path: Path, size: int = 4096, seed: int = 0) -> Path:
    """A file named like a video holding random bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def populate(samples: Iterable[VideoSample], every: int) -> set[Path]:
    """Write a stand-in for every `every`-th distinct sample file; return the paths written.

    A stand-in is long enough to hold the sample's segment (NVGesture's
    `color:` frames lie around 150..230), so it decodes where the list says.
    """
    length: dict[Path, int] = {}
    for s in samples:
        length[s.path] = max(length.get(s.path, 8), s.end or 0)
    written: set[Path] = set()
    for i, (path, frames) in enumerate(length.items()):
        if i % every == 0:
            stand_in_video(path, frames=frames)
            written.add(path)
    return written


def touch_all(paths: Iterable[Path]) -> None:
    """Empty files with the given names (for readers that only look at names)."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def copy_lists(src: Path, dst: Path, names: Iterable[str], crlf: bool | None = None) -> Path:
    """Copy list files; `crlf=True/False` rewrites their line endings, None keeps them."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if crlf is None:
            shutil.copyfile(src / name, dst / name)
            continue
        lines = (src / name).read_bytes().decode("utf-8").splitlines()
        (dst / name).write_bytes(("\r\n" if crlf else "\n").join(lines).encode() + b"\n")
    return dst


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def ntu_name(setup: int, camera: int, subject: int, replication: int, action: int) -> str:
    return f"S{setup:03d}C{camera:03d}P{subject:03d}R{replication:03d}A{action:03d}_rgb.avi"


def broken_videos(folder: Path) -> dict[str, Path]:
    """Files a user's dataset really holds that open as no usable video, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.avi"
    empty.write_bytes(b"")  # a 0-byte file: an interrupted copy
    good = stand_in_video(folder / "good_source.avi", frames=10)
    data = good.read_bytes()
    unknown = folder / "unknown_codec.avi"
    unknown.write_bytes(data.replace(b"FMP4", b"ZZZZ"))  # a codec FFmpeg has no decoder for
    header_only = folder / "header_only.avi"  # header says 10 frames, none follow
    header_only.write_bytes(data[: data.find(b"movi") + 4])
    no_frames = folder / "no_frames.avi"
    with av.open(str(no_frames), "w") as container:  # a valid file with 0 video frames
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    audio = folder / "audio_only.mp4"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    good.unlink()
    return {"empty": empty, "unknown_codec": unknown, "header_only": header_only,
            "no_frames": no_frames, "audio_only": audio}
