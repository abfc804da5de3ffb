"""Do a split's files exist (and decode)? Checked before training, reported by `summarize`.

A training run that meets its first missing video an hour in, or a loader
that silently skips a tenth of a dataset, wastes far more than a scan of the
file system up front; so the training side calls `require_files` before it
starts, and the message says how many are missing and names the first few.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from training.datasets.listfile import DatasetError
from training.datasets.sample import LabelledSplit, VideoSample

log = logging.getLogger(__name__)

SHOWN = 5  # how many paths a report names


class MissingFilesError(DatasetError):
    """Some samples of a split have no file on disk."""


@dataclass
class FileReport:
    """How many of a split's samples fail a check, and the first few of them."""

    total: int
    count: int
    first: list[Path] = field(default_factory=list)
    hint: str = ""  # the likely cause, e.g. a dataset root that does not exist

    def message(self, what: str = "missing", where: str = "") -> str:
        """`12 of 1050 files missing (nvgesture ...): a.avi, b.avi, ...`"""
        if not self.count:
            return f"all {self.total} files present{f' ({where})' if where else ''}"
        named = ", ".join(str(p) for p in self.first)
        more = ", ..." if self.count > len(self.first) else ""
        hint = f" ({self.hint})" if self.hint else ""
        return (f"{self.count} of {self.total} files {what}{f' ({where})' if where else ''}: "
                f"{named}{more}{hint}")


def sample_exists(sample: VideoSample) -> bool:
    """A video file, or a folder of extracted frames, is on disk."""
    return sample.path.is_dir() if sample.frames_dir else sample.path.is_file()


def _unique_paths(samples: Iterable[VideoSample]) -> list[VideoSample]:
    """One sample per file: NVGesture-like lists may cut several segments from one video."""
    seen: dict[Path, VideoSample] = {}
    for sample in samples:
        seen.setdefault(sample.path, sample)
    return list(seen.values())


def find_missing(split: LabelledSplit, limit: int = SHOWN) -> FileReport:
    """Count the split's sample files that do not exist; name the first `limit`."""
    samples = _unique_paths(split.samples)
    missing = [s.path for s in samples if not sample_exists(s)]
    hint = ""
    if missing and len(missing) == len(samples):
        hint = missing_folder_hint(missing[0])
    return FileReport(total=len(samples), count=len(missing), first=missing[:limit], hint=hint)


def missing_folder_hint(path: Path) -> str:
    """`folder X does not exist` for the outermost absent folder above `path`, or ''.

    When every file of a split is missing, the cause is nearly always a root
    that points nowhere (a typo, an unmounted disk): say so, rather than leave
    the user to spot it in a list of file names.
    """
    absent = None
    for parent in path.parents:
        if parent.exists():
            break
        absent = parent
    return f"folder {absent} does not exist" if absent is not None else ""


def require_files(splits: dict[str, LabelledSplit], limit: int = SHOWN) -> None:
    """Raise `MissingFilesError` (one message for all tasks) if any sample file is missing."""
    problems = []
    for task, split in splits.items():
        report = find_missing(split, limit)
        if report.count:
            problems.append(f"{task}: {report.message(where=split.source)}")
    if problems:
        raise MissingFilesError("; ".join(problems))


def is_readable(sample: VideoSample) -> bool:
    """The sample's first labelled frame decodes (a frame folder: all its frames exist).

    Decoding one frame, not just reading the header, is what catches a file
    cut off after its header; decoding the segment's first frame (not frame 0)
    also catches a segment that lies past the end of the video.
    """
    if sample.frames_dir:
        return _frames_complete(sample)
    from training.datasets.video import VideoReader, VideoReadError  # PyAV only when checking

    try:
        with VideoReader(sample.path) as reader:
            reader.read([sample.start])
    except VideoReadError as exc:
        log.debug("%s", exc)
        return False
    return True


def _frames_complete(sample: VideoSample) -> bool:
    """Every frame file `img_{start+1:05d}.jpg`... of the sample is in its folder."""
    from training.datasets.video import FRAME_TEMPLATE, VideoReadError, count_image_frames

    try:
        present = set(os.listdir(sample.path))
        # the whole folder: its frames must be one unbroken run from 1
        end = sample.end if sample.end is not None else count_image_frames(sample.path)
    except (OSError, VideoReadError):
        return False
    wanted = range(sample.start, end)
    return len(wanted) > 0 and all(FRAME_TEMPLATE.format(i + 1) in present for i in wanted)


def find_unreadable(split: LabelledSplit, limit: int = SHOWN, workers: int = 8) -> FileReport:
    """Count existing sample files that cannot be opened as video (missing ones not counted).

    Probing is I/O-bound and PyAV releases the GIL while demuxing, so a few
    threads make checking a 100k-video dataset bearable.
    """
    present = [s for s in _unique_paths(split.samples) if sample_exists(s)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        readable = list(pool.map(is_readable, present))
    bad = [s.path for s, ok in zip(present, readable, strict=True) if not ok]
    return FileReport(total=len(present), count=len(bad), first=bad[:limit])
