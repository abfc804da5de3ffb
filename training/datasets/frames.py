"""Folders of extracted frames (mmaction2's `img_00001.jpg`, 1-based), read with Pillow.

`check_frame_folder` is what `summarize --check-videos` runs on a frame-folder
sample: every frame of the segment must be there, be a regular file, decode
completely and have the size of the first, which is what training will need.
JPEGs are decoded at 1/8 scale (Pillow's draft mode): the whole entropy-coded
stream is still read, so a cut or corrupt file fails, at a fraction of the cost.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mtl_perception.exits import one_line
from training.datasets.video import VideoReadError, VideoTooShortError, require_regular_file

FRAME_TEMPLATE = "img_{:05d}.jpg"  # mmaction2's rawframe names; frame index i -> i + 1
# What Pillow raises on damaged or hostile files: its plugins use SyntaxError, EOFError,
# struct.error, IndexError; a decompression bomb is an Exception of its own.
_IMAGE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
                 IndexError, TypeError, struct.error, Image.DecompressionBombError)


def count_image_frames(directory: str | Path, template: str = FRAME_TEMPLATE) -> int:
    """Frames in a folder of extracted frames: the length of the run img_00001.jpg, ..."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VideoReadError(f"frame folder not found: {directory}")
    pattern = template.split("{")[0] + "*" + template.rsplit("}", 1)[-1]
    count = sum(1 for _ in directory.glob(pattern))
    if count == 0:
        raise VideoReadError(f"frame folder {directory} holds no {pattern} files")
    return count


def read_image_frames(
    directory: str | Path, indices: Sequence[int], template: str = FRAME_TEMPLATE
) -> np.ndarray:
    """Frames at 0-based `indices` from a frame folder as RGB uint8 (N, H, W, 3)."""
    directory = Path(directory)
    if len(indices) == 0:
        raise ValueError("read_image_frames needs at least one frame index")
    cache: dict[int, np.ndarray] = {}
    for index in sorted({int(i) for i in indices}):
        if index < 0:
            raise ValueError(f"negative frame index {index}")
        path = directory / template.format(index + 1)
        try:
            require_regular_file(path, "frame")
        except VideoReadError as exc:
            if not os.path.lexists(path):  # False for a name with a NUL byte too
                raise VideoTooShortError(f"frame file not found: {path}", index) from exc
            raise
        try:
            with Image.open(path) as image:
                cache[index] = np.asarray(image.convert("RGB"))
        except FileNotFoundError as exc:
            raise VideoTooShortError(f"frame file not found: {path}", index) from exc
        except _IMAGE_ERRORS as exc:
            raise VideoReadError(f"cannot decode frame {path}: {exc}") from exc
    try:
        return np.stack([cache[int(i)] for i in indices])
    except ValueError as exc:  # frames of different sizes
        raise VideoReadError(f"frames in {directory} differ in size: {exc}") from exc


def check_frame_folder(
    directory: Path, start: int, end: int | None, template: str = FRAME_TEMPLATE
) -> tuple[str, str] | None:
    """None when frames [start, end) all decode at one size; else (kind, reason).

    kind is "past_end" when the segment starts after the folder's last frame,
    "unreadable" for a missing, damaged or differently sized frame.
    """
    try:
        present = count_image_frames(directory, template)
    except VideoReadError as exc:
        return "unreadable", str(exc)
    stop = end if end is not None else present
    if start >= present:
        return "past_end", f"segment starts at frame {start}, the folder holds {present} frames"
    size = None
    for index in range(start, stop):
        path = directory / template.format(index + 1)
        try:
            require_regular_file(path, "frame")
            with Image.open(path) as image:
                if size is None:
                    size = image.size
                elif image.size != size:
                    return "unreadable", (f"{path.name} is {image.size[0]}x{image.size[1]}, "
                                          f"{template.format(start + 1)} {size[0]}x{size[1]}")
                image.draft("RGB", (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
                image.load()
        except VideoReadError as exc:
            return "unreadable", str(exc)
        except _IMAGE_ERRORS as exc:
            return "unreadable", f"cannot decode {path.name}: {one_line(exc)}"
    return None

