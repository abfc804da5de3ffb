"""Untrimmed videos: where the task gate's `none` clips come from.

Two kinds of source, both listed in a set config beside `tasks:`:

```yaml
untrimmed:                    # long videos with labelled intervals (the synthetic sessions)
  - {root: sessions}          # root/train/*.avi + *.csv, root/test/...
background:                   # videos in which nothing listed happens
  - {root: sessions/background}
```

A session video `root/<split>/NAME.avi` (any video extension) comes with
`NAME.csv`, its labelled intervals in the `evaluate_bag` labels format
(`start,end,task,label`, seconds from the video's first frame, frame i at
i / fps), read by the same parser: intervals of one task may not overlap,
and each must lie within the video (one frame of slack). The task and class
names are checked by the command that knows them (`check_classes`: the
checkpoint's for fit-gate, the set's for to-bag). A background folder holds
videos only. `none` clips are drawn from every stretch outside all labelled
intervals, `margin_s` away from them (a clip's edges are fuzzy: the hand
rising before a gesture is not "nothing"), and from the frames around a trimmed sample's segment
(NVGesture's `color:` range inside its longer video).

Frame counts and rates come from the files' headers (`VideoReader`), read
when the folder is read: a video whose header cannot be read, or that has no
frames, is one `DatasetError` naming it before any work starts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtl_perception.bag.labels import ANY_CLASSES, LabelsError, class_problem, read_labels
from training.datasets.listfile import DatasetError
from training.datasets.mmaction import VIDEO_EXTENSIONS
from training.datasets.sample import VideoSample
from training.datasets.video import VideoReader, VideoReadError


@dataclass
class UntrimmedSource:
    """One folder of untrimmed videos: `root/train/`, `root/test/` (see the module docstring)."""

    root: Path
    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))


@dataclass(frozen=True)
class LabelledInterval:
    start: float  # seconds from the video's first frame
    end: float
    task: str
    label: str
    line: int = 0  # its line in the labels file, for messages (0: made in code)


@dataclass(frozen=True)
class UntrimmedVideo:
    """One video and its labelled intervals (none for a background video); `frames` and
    `fps` from its header (0 when made in code without reading it)."""

    path: Path
    intervals: tuple[LabelledInterval, ...] = ()
    frames: int = 0
    fps: float = 0.0

    @property
    def labels(self) -> Path:
        return self.path.with_suffix(".csv")

    def header(self) -> tuple[int, float]:
        """(frames, fps): as read with the folder, else from the file (made in code)."""
        return (self.frames, self.fps) if self.frames else _header(self.path)


def read_untrimmed(source: UntrimmedSource, split: str, background: bool) -> list[UntrimmedVideo]:
    """The videos of `root/<split>/` (none when that folder is absent), each with its labels
    CSV unless `background`."""
    folder = source.root / split
    if not source.root.is_dir():
        raise DatasetError(f"untrimmed source: folder not found: {source.root}")
    if not folder.is_dir():
        return []  # a split without untrimmed videos (e.g. test sessions only)
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}"
                       for e in source.extensions)
    videos = sorted(p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in extensions)
    if not videos:
        raise DatasetError(f"{folder}: no videos with extensions {list(extensions)}")
    out = []
    for video in videos:
        labels = video.with_suffix(".csv")
        if not background and not labels.is_file():
            raise DatasetError(f"{video}: no labels file {labels.name} beside it (a video in "
                               "which nothing listed happens belongs under background:)")
        if background and labels.is_file():  # its labelled motions would be taught as none
            raise DatasetError(f"{video}: a labels file {labels.name} lies beside it (a video "
                               "with labelled intervals belongs under untrimmed:, not "
                               "background:)")
        frames, fps = _header(video)
        if frames < 1:
            raise DatasetError(f"untrimmed video {video} has no frames")
        intervals = () if background else tuple(read_intervals(labels, frames / fps, fps))
        out.append(UntrimmedVideo(video, intervals, frames, fps))
    return out


def read_intervals(path: Path, span_s: float | None = None, fps: float | None = None
                   ) -> list[LabelledInterval]:
    """The intervals of one labels CSV, checked by `evaluate_bag`'s parser (numbers,
    overlaps within a task; with `span_s`, the video's length, each within it and
    one frame at `fps`). Names are not checked here: see `check_classes`."""
    slack = 1.0 / fps if fps else 0.0
    try:
        rows = read_labels(path, ANY_CLASSES, span_s, slack, allow_empty=True,
                           within="the video")
    except LabelsError as exc:
        raise DatasetError(str(exc)) from exc
    return [LabelledInterval(i.start, i.end, i.task, i.label, i.line) for i in rows]


def check_classes(videos: Sequence[UntrimmedVideo], classes: Mapping[str, Sequence[str]],
                  whose: str) -> None:
    """Every labelled interval names a task of `classes` and one of its classes
    (`whose`: where they come from, for the message: "the checkpoint's")."""
    for video in videos:
        for interval in video.intervals:
            if (problem := class_problem(interval.task, interval.label, classes, whose)):
                raise DatasetError(f"{video.labels}:{interval.line}: {problem}")


def gaps(num_frames: int, busy: Iterable[tuple[int, int]], margin: int, min_frames: int
         ) -> list[tuple[int, int]]:
    """Frame ranges [a, b) of a `num_frames` video outside every busy [start, end) range
    widened by `margin` frames on both sides, at least `min_frames` long."""
    taken = sorted((max(0, s - margin), min(num_frames, e + margin)) for s, e in busy)
    out, cursor = [], 0
    for start, end in taken:
        if start - cursor >= min_frames:
            out.append((cursor, start))
        cursor = max(cursor, end)
    if num_frames - cursor >= min_frames:
        out.append((cursor, num_frames))
    return out


def _header(path: Path) -> tuple[int, float]:
    try:
        with VideoReader(path) as reader:
            return reader.num_frames, reader.fps
    except VideoReadError as exc:
        raise DatasetError(f"cannot read untrimmed video {path}: {exc}") from exc


def none_from_untrimmed(videos: Sequence[UntrimmedVideo], margin_s: float, min_frames: int,
                        piece_frames: int = 0) -> list[VideoSample]:
    """`none` segments (label 0: the gate's label is the task id) of sessions and backgrounds.

    `piece_frames` > 0 cuts a longer stretch into pieces of about that many frames (at
    least `min_frames`), so a long background video gives clips in proportion to its
    length instead of as many as a short gap."""
    samples = []
    for video in videos:
        frames, fps = video.header()
        busy = [(math.floor(i.start * fps), math.ceil(i.end * fps)) for i in video.intervals]
        for a, b in gaps(frames, busy, math.ceil(margin_s * fps), min_frames):
            count = max(1, (b - a) // max(piece_frames, min_frames)) if piece_frames else 1
            cuts = [a + (b - a) * k // count for k in range(count + 1)]
            samples += [VideoSample(video.path, 0, x, y) for x, y in itertools.pairwise(cuts)]
    return samples


def none_around_segments(samples: Sequence[VideoSample], margin_s: float, min_frames: int,
                         max_overlap: float = 0.0) -> list[VideoSample]:
    """`none` segments before and after trimmed samples that cover part of their video
    (NVGesture's frames around the gesture). Videos of frames (folders) are left out.

    `max_overlap` > 0 (a fraction of `min_frames`, one clip's span, below one half): the
    lead-in and lead-out themselves, which are mostly shorter than a clip, as clips that
    reach that far into the segment instead of keeping `margin_s` away from it: a clip
    less than half on the gesture is `none` to the untrimmed metrics too, and such
    clips are what the gate meets when a gesture begins."""
    out = []
    for sample in samples:
        if sample.frames_dir or (sample.start == 0 and sample.end is None):
            continue
        frames, fps = _header(sample.path)
        end = frames if sample.end is None else sample.end
        if max_overlap > 0:
            reach = math.floor(max_overlap * min_frames)
            for a, b in ((0, min(sample.start + reach, frames)), (max(end - reach, 0), frames)):
                if b - a >= min_frames:
                    out.append(VideoSample(sample.path, 0, a, b))
            continue
        for a, b in gaps(frames, [(sample.start, end)], math.ceil(margin_s * fps), min_frames):
            out.append(VideoSample(sample.path, 0, a, b))
    return out


def tasks_from_untrimmed(videos: Sequence[UntrimmedVideo], task_names: Sequence[str],
                         min_frames: int, reach: float = 0.25) -> list[tuple[VideoSample, int]]:
    """(segment, task id) pairs of the sessions' labelled intervals of known tasks.

    The segment is the interval widened by `reach` of a clip span (`min_frames`)
    on both sides (and to one span at least), so its clips include the ones that
    begin before or end after the motion, as the stream's clips do, each with at
    least 1 - `reach` of itself on the motion when the motion lasts a span or
    more. Intervals of other tasks are left out."""
    if not 0 <= reach < 0.5:
        raise ValueError(f"reach must be in [0, 0.5), got {reach}")
    out = []
    for video in videos:
        labelled = [i for i in video.intervals if i.task in task_names]
        if not labelled:
            continue
        frames, fps = video.header()
        widen = math.floor(reach * min_frames)
        for interval in labelled:
            a = max(0, math.floor(interval.start * fps) - widen)
            b = min(frames, math.ceil(interval.end * fps) + widen)
            if b - a < min_frames:  # shorter than a clip: centred on it
                a = max(0, min(frames - min_frames, (a + b - min_frames) // 2))
                b = min(frames, a + min_frames)
            if b - a >= min_frames:
                task = list(task_names).index(interval.task)
                out.append((VideoSample(video.path, 0, a, b), task))
    return out
