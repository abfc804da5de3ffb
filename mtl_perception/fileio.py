"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Shared by checkpoints, the synthetic set's files and every summary a command
writes; `mtl_perception.checkpoint.atomic_write` is the same function.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`; clean up on failure.

    The folder is fsynced after the rename too: without it a power cut can
    forget the rename and leave the old file (or none) in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    # O_EXCL: never reuse someone else's file. Creating it with 0o666 tells us the
    # usual mode (0o666 minus the umask) without setting the process umask, which
    # other threads share.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    try:
        write(tmp)
        tmp.chmod(mode)  # safetensors' save_file leaves its output 0600
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """`path.write_text(text)` (UTF-8), atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is done
    finally:
        os.close(fd)
