"""Do a split's files exist (and decode)? Checked before training, reported by `summarize`.

A training run that meets its first missing video an hour in, or a loader
that silently skips a tenth of a dataset, wastes far more than a scan of the
file system up front; so the training side calls `require_files` before it
starts, and the message says how many are missing and names the first few.
"""

from __future__ import annotations

import logging
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

    def message(self, what: str = "missing", where: str = "") -> str:
        """`12 of 1050 files missing (nvgesture ...): a.avi, b.avi, ...`"""
        if not self.count:
            return f"all {self.total} files present{f' ({where})' if where else ''}"
        named = ", ".join(str(p) for p in self.first)
        more = ", ..." if self.count > len(self.first) else ""
        return (f"{self.count} of {self.total} files {what}{f' ({where})' if where else ''}: "
                f"{named}{more}")


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
    return FileReport(total=len(samples), count=len(missing), first=missing[:limit])


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
    """The file opens as a video (or the frame folder holds its first frame)."""
    if sample.frames_dir:
        return (sample.path / f"img_{sample.start + 1:05d}.jpg").is_file()
    from training.datasets.video import VideoReadError, probe_video  # PyAV only when checking

    try:
        info = probe_video(sample.path)
    except VideoReadError as exc:
        log.debug("%s", exc)
        return False
    return info.num_frames > 0


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
