"""Do a split's files exist (and decode)? Checked before training, reported by `summarize`.

A training run that meets its first missing video an hour in, or a loader
that silently skips a tenth of a dataset, wastes far more than a scan of the
file system up front; so the training side calls `require_files` before it
starts, and the message says how many are missing and names the first few.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mtl_perception.exits import one_line
from training.datasets.listfile import DatasetError, shown
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
    reasons: list[str] = field(default_factory=list)  # per path in `first`, when known

    def message(self, what: str = "missing", where: str = "") -> str:
        """`12 of 1050 files missing (nvgesture ...): a.avi, b.avi, ...`

        Escaped (`shown`): the paths come from list lines, which may hold control
        characters, and the message is logged as well as raised.
        """
        if not self.count:
            return shown(f"all {self.total} files present{f' ({where})' if where else ''}")
        named = ", ".join(f"{p} ({r})" if r else str(p)
                          for p, r in zip(self.first, self.reasons or [""] * len(self.first)))
        more = ", ..." if self.count > len(self.first) else ""
        hint = f" ({self.hint})" if self.hint else ""
        return shown(f"{self.count} of {self.total} files {what}"
                     f"{f' ({where})' if where else ''}: {named}{more}{hint}")


def sample_exists(sample: VideoSample) -> bool:
    """Something is at the sample's path (`wrong_kind` says whether it is the right thing)."""
    try:
        os.stat(sample.path)
    except (OSError, ValueError):
        return False
    return True


def wrong_kind(sample: VideoSample) -> str | None:
    """Why the entry at the sample's path cannot be its video or frame folder, or None.

    Only `os.stat` is used: opening a FIFO or a device to find out would hang.
    """
    from mtl_perception.fileio import file_kind

    try:
        mode = os.stat(sample.path).st_mode
    except (OSError, ValueError):
        return None  # missing: find_missing's business
    if sample.bag is not None and not sample.cached:  # a bag: checked when it is opened
        return None
    if sample.frames_dir:
        if stat.S_ISDIR(mode):
            return None
        kind = "a file" if stat.S_ISREG(mode) else file_kind(mode)
        return f"{kind}, not a frame folder"
    return None if stat.S_ISREG(mode) else f"{file_kind(mode)}, not a video file"


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
        if os.path.exists(parent):  # unlike Path.exists, False for a NUL byte
            break
        absent = parent
    return f"folder {absent} does not exist" if absent is not None else ""


def find_wrong_kind(split: LabelledSplit, limit: int = SHOWN) -> FileReport:
    """Count sample paths that exist but are not a regular file / folder as needed."""
    samples = [s for s in _unique_paths(split.samples) if sample_exists(s)]
    bad = [(s.path, why) for s in samples if (why := wrong_kind(s))]
    return FileReport(total=len(samples), count=len(bad), first=[p for p, _ in bad[:limit]],
                      reasons=[r for _, r in bad[:limit]])


def require_files(splits: dict[str, LabelledSplit], limit: int = SHOWN) -> None:
    """Raise `MissingFilesError` (one message for all tasks) if any sample file is missing
    or is not a file of the right kind (a directory named like a video, a FIFO)."""
    problems = []
    for task, split in splits.items():
        report = find_missing(split, limit)
        if report.count:
            problems.append(f"{task}: {report.message(where=split.source)}")
        odd = find_wrong_kind(split, limit)
        if odd.count:
            problems.append(f"{task}: {odd.message('of the wrong kind', split.source)}")
    if problems:
        raise MissingFilesError("; ".join(problems))


def check_sample(sample: VideoSample) -> tuple[str, str] | None:
    """None when the sample's first labelled frame decodes; else (kind, reason).

    kind is "past_end" when the segment starts after the last frame the video
    (or frame folder) holds, "unreadable" when the content does not decode,
    "short" when the container's header claims more frames than decode (a
    cut download: training uses the frames it has and counts the file,
    `ClipDataset.short_paths`).
    Decoding one frame, not just reading the header, is what catches a file cut
    off after its header; a frame folder is checked frame by frame (see
    `frames.check_frame_folder`).
    """
    from training.datasets.frames import check_frame_folder
    from training.datasets.video import VideoReader, VideoReadError, VideoTooShortError

    if sample.frames_dir:
        return check_frame_folder(sample.path, sample.start, sample.end)
    try:
        with VideoReader(sample.path) as reader:
            reader.read([sample.start])
            claimed = reader.num_frames
            if claimed > sample.start + 1:
                try:  # the last frame the header claims (one seek, one GOP decoded)
                    reader.read([claimed - 1])
                except VideoTooShortError as exc:
                    return "short", (f"its header claims {claimed} frames, "
                                     f"{exc.available} decode")
    except VideoTooShortError as exc:
        if 0 < exc.available <= sample.start:
            return "past_end", (f"segment starts at frame {sample.start}, the video holds "
                                f"{exc.available} frames")
        return "unreadable", one_line(exc)
    except VideoReadError as exc:
        log.debug("%s", exc)
        return "unreadable", one_line(exc)
    return None


def is_readable(sample: VideoSample) -> bool:
    """`check_sample` found nothing that stops the sample's use (a short video is usable)."""
    found = check_sample(sample)
    return found is None or found[0] == "short"


def check_videos(
    split: LabelledSplit, limit: int = SHOWN, workers: int = 8
) -> dict[str, FileReport]:
    """Decode-check every present sample of the right kind: reports "unreadable", "past_end".

    Each distinct (file, segment) is checked once. Probing is I/O-bound and
    PyAV releases the GIL while demuxing, so a few threads make checking a
    100k-video dataset bearable.
    """
    distinct: dict[tuple[Path, int, int | None, bool], VideoSample] = {}
    for s in split.samples:
        distinct.setdefault((s.path, s.start, s.end, s.frames_dir), s)
    present = [s for s in distinct.values()
               if sample_exists(s) and not wrong_kind(s) and s.bag is None]  # bags: no video
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(check_sample, present))
    reports = {}
    for kind in ("unreadable", "past_end", "short"):
        bad = [(s.path, r[1]) for s, r in zip(present, results, strict=True) if r and r[0] == kind]
        reports[kind] = FileReport(total=len(present), count=len(bad),
                                   first=[p for p, _ in bad[:limit]],
                                   reasons=[r for _, r in bad[:limit]])
    return reports


def find_unreadable(split: LabelledSplit, limit: int = SHOWN, workers: int = 8) -> FileReport:
    """The "unreadable" report of `check_videos` (missing and past-end ones not counted)."""
    return check_videos(split, limit, workers)["unreadable"]
