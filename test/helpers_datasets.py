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

import numpy as np
import yaml

from training.datasets.sample import VideoSample
from training.datasets.video import write_video


def stand_in_video(path: Path, frames: int = 8, width: int = 64, height: int = 48) -> Path:
    """A small real video (moving gradient) at `path`."""
    t = np.arange(frames, dtype=np.uint8)[:, None, None, None]
    x = np.arange(width, dtype=np.uint8)[None, None, :, None]
    images = np.broadcast_to((t * 16 + x * 3) % 255, (frames, height, width, 3)).astype(np.uint8)
    write_video(path, np.ascontiguousarray(images), fps=25.0)
    return path


def corrupt_video(path: Path, size: int = 4096, seed: int = 0) -> Path:
    """A file named like a video holding random bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def populate(samples: Iterable[VideoSample], every: int) -> set[Path]:
    """Write a stand-in for every `every`-th distinct sample file; return the paths written."""
    written: set[Path] = set()
    for i, path in enumerate(dict.fromkeys(s.path for s in samples)):
        if i % every == 0:
            stand_in_video(path)
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
