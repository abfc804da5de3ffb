"""Recorded bags as a training source: labelled intervals of an image topic.

```yaml
tasks:
  gesture:
    - format: bag
      bag: recordings/take1          # rosbag2 folder, .mcap/.db3 file or ROS 1 .bag
      labels: recordings/take1.csv   # evaluate_bag's start,end,task,label
      image_topic: /camera/image_raw # default: the bag's only image topic
      split: train                   # train | test: the whole recording; column: a 5th
                                     # CSV column `split` (train/test) per interval
      target_fps: 15.0               # the stream's sampling: what the node will run at
```

A labels file is checked against the bag before any image is decoded
(`mtl_perception.bag.labels.read_labels`, evaluate_bag's own parser): an
unknown topic, an interval outside the bag or two overlapping intervals of
one task are refused in one line. Times are seconds from the bag's first
image's header stamp. A source reads the rows of the task it is listed
under; its classes are `classes` when given, else the task's labels in the
CSV, sorted (both splits, so train and test share class ids).

The frames are the streaming core's (`bag_cache.py`): a sample is one
labelled interval, cut at the stream's buffer resets, and its clips are the
sampled frames inside it. Clips are never flipped (the cache holds frames
after the crop). `unlabelled_intervals` gives a task's unlabelled time (the
`none` of a task gate); `none_class: true` adds it as a class `none`.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from mtl_perception.bag.labels import ANY_CLASSES, HEADER, Interval, LabelsError, read_labels
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream.config import StreamConfig, StreamConfigError
from mtl_perception.stream.decode import header_of
from training.datasets.bag_cache import FRAMES, default_cache_root, open_cache, read_cached
from training.datasets.listfile import DatasetError
from training.datasets.sample import BagRef, LabelledSplit, VideoSample

LOG = logging.getLogger(__name__)
NONE_CLASS = "none"
_WARNED: set[Path] = set()  # labels files already warned about (once per process)
SPLIT_COLUMN = "split"


@dataclass
class BagSource:
    """Settings of one bag source in a set config (see the module docstring)."""

    bag: Path
    labels: Path
    task: str = ""  # filled in by the set loader: the task the source is listed under
    image_topic: str = ""
    split: Literal["train", "test", "column"] = "train"
    target_fps: float = 15.0
    max_gap_s: float = 0.5
    classes: list[str] = field(default_factory=list)
    none_class: bool = False
    min_none_s: float = 1.0  # unlabelled stretches shorter than this are not `none` samples
    cache: Path | None = None  # default: $XDG_CACHE_HOME/mtl_perception/bags

    def __post_init__(self) -> None:
        try:  # the stream's own checks on its sampling settings
            StreamConfig(target_fps=self.target_fps, max_gap_s=self.max_gap_s)
        except StreamConfigError as exc:
            raise DatasetError(f"bag source: {exc}") from exc
        if self.split not in ("train", "test", "column"):
            raise DatasetError(f"bag source: split must be train, test or column, "
                               f"got {self.split!r}")


@dataclass(frozen=True)
class BagLabels:
    """A bag's checked intervals, with what the split rule needs."""

    intervals: list[Interval]
    splits: dict[int, str]  # CSV line -> train/test (column mode only)
    topic: str
    span_s: float | None


def read_bag_labels(source: BagSource) -> BagLabels:
    """Open the bag (topic, first image, end) and check its labels against it; one line."""
    from mtl_perception.bag.reader import Bag, BagError  # rosbags: the [bag] extra

    try:
        with Bag(source.bag, source.image_topic or None) as bag:
            first = next(bag.images(), None)
            if first is None:
                raise DatasetError(f"bag {source.bag} has no readable image on {bag.image_topic}")
            start_ns = header_of(first[1]).stamp_ns
            end = bag.end_time_ns
            topic = bag.image_topic
    except BagError as exc:
        raise DatasetError(f"{exc}") from exc
    span = None if end is None else (end - start_ns) / 1e9
    intervals, splits = _read(source, span)
    return BagLabels(intervals, splits, topic, span)


def _read(source: BagSource, span: float | None) -> tuple[list[Interval], dict[int, str]]:
    path = source.labels
    if source.split != "column":
        try:
            return read_labels(path, ANY_CLASSES, span), {}
        except LabelsError as exc:
            raise DatasetError(str(exc)) from exc
    # Column mode: evaluate_bag's parser on the first four columns (lines kept in place,
    # so its messages name the right line), the split column read here.
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"labels file {path}: {exc}") from exc
    if not rows or tuple(c.strip() for c in rows[0]) != (*HEADER, SPLIT_COLUMN):
        raise DatasetError(f"{path}:1: split: column needs the header "
                           f"{','.join((*HEADER, SPLIT_COLUMN))}")
    splits: dict[int, str] = {}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    for number, row in enumerate(rows[1:], start=2):
        if row and any(c.strip() for c in row):
            value = row[-1].strip() if len(row) == 5 else ""
            if value not in ("train", "test"):
                raise DatasetError(f"{path}:{number}: split {value!r} is not train or test")
            splits[number] = value
            row = row[:4]
        writer.writerow(row)
    if set(splits.values()) == {"train", "test"} and path not in _WARNED:
        _WARNED.add(path)
        LOG.warning("%s: training and test rows come from the same recording %s: its held-out "
                    "accuracy flatters the model (same person, room, light); test on another "
                    "recording", path, source.bag)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(text.getvalue(), encoding="utf-8")
        try:
            intervals = read_labels(copy, ANY_CLASSES, span)
        except LabelsError as exc:
            raise DatasetError(str(exc).replace(str(copy), str(path))) from exc
    return intervals, splits


def unlabelled_intervals(intervals: Sequence[Interval], task: str, span_s: float,
                         min_s: float = 0.0) -> list[tuple[float, float]]:
    """The stretches of `[0, span_s]` that no interval of `task` covers (at least `min_s`)."""
    gaps, cursor = [], 0.0
    for item in sorted((i for i in intervals if i.task == task), key=lambda i: i.start):
        if item.start - cursor >= max(min_s, 1e-9):
            gaps.append((cursor, item.start))
        cursor = max(cursor, item.end)
    if span_s - cursor >= max(min_s, 1e-9):
        gaps.append((cursor, span_s))
    return gaps


def none_stretches(source: BagSource, split: str, margin_s: float, min_s: float
                   ) -> list[VideoSample]:
    """A task gate's `none` samples of one bag: its time that no row of any task covers,
    `margin_s` away from every row, `min_s` long at least (label 0: the gate's label is the
    task id). A `split: column` bag has no split for its unlabelled time: none given."""
    if source.split != split:
        return []
    labels = read_bag_labels(source)
    if labels.span_s is None:
        return []
    busy = [replace(i, task="", start=max(0.0, i.start - margin_s), end=i.end + margin_s)
            for i in labels.intervals]
    ref = BagRef(source.bag, labels.topic, source.target_fps, source.max_gap_s,
                 source.cache or default_cache_root())
    return [VideoSample(source.bag, 0, round(a * 1e9), round(b * 1e9), bag=ref)
            for a, b in unlabelled_intervals(busy, "", labels.span_s, min_s)]


def none_of_bags(sources: Iterable[BagSource], split: str, margin_s: float, clip_steps: int
                 ) -> list[VideoSample]:
    """`none_stretches` of every bag once (several tasks may list one bag), each at least
    one clip long: `clip_steps` sampled frames ((clip_length - 1) * frame_step) at its rate."""
    seen: dict[tuple[Path, Path], list[VideoSample]] = {}
    for source in sources:
        if (source.bag, source.labels) not in seen:
            seen[(source.bag, source.labels)] = none_stretches(
                source, split, margin_s, clip_steps / source.target_fps)
    return [sample for samples in seen.values() for sample in samples]


def read_split(source: BagSource, split: str) -> LabelledSplit:
    """The task's intervals of `split` as samples referring to the bag (resolved later)."""
    labels = read_bag_labels(source)
    task = source.task
    mine = [i for i in labels.intervals if i.task == task]
    names = list(source.classes) or sorted({i.label for i in mine})
    if source.none_class and NONE_CLASS not in names:
        names.append(NONE_CLASS)
    unknown = sorted({i.label for i in mine} - set(names))
    if unknown:
        raise DatasetError(f"{source.labels}: {task} label(s) {unknown} not in the source's "
                           f"classes {names}")
    cache = source.cache or default_cache_root()
    ref = BagRef(source.bag, labels.topic, source.target_fps, source.max_gap_s, cache)
    chosen = [i for i in mine if _split_of(source, labels, i) == split]
    spans = [(i.start, i.end, names.index(i.label)) for i in chosen]
    if source.none_class and source.split == split and labels.span_s is not None:
        none = names.index(NONE_CLASS)
        spans += [(a, b, none) for a, b in unlabelled_intervals(
            labels.intervals, task, labels.span_s, source.min_none_s)]
    samples = [VideoSample(source.bag, label, round(a * 1e9), round(b * 1e9), bag=ref)
               for a, b, label in sorted(spans)]
    return LabelledSplit(samples, names, f"bag {source.bag} ({task}, {split})")


def _split_of(source: BagSource, labels: BagLabels, interval: Interval) -> str:
    return labels.splits[interval.line] if source.split == "column" else source.split


def resolve_bag_items(items: Sequence[tuple[VideoSample, int]], preprocess: PreprocessConfig
                      ) -> list[tuple[VideoSample, int]]:
    """Bag samples -> samples of the bag's frame cache (built once); others unchanged.

    An interval becomes one sample per buffer segment it overlaps (the stream never
    glues frames across a reset); an interval without a sampled frame is dropped
    with one warning per bag.
    """
    out: list[tuple[VideoSample, int]] = []
    folders: dict[BagRef, Path] = {}
    empty: dict[Path, int] = {}
    for sample, task in items:
        ref = sample.bag
        if ref is None or sample.cached:
            out.append((sample, task))
            continue
        if ref not in folders:
            folders[ref] = open_cache(ref.bag, ref.topic, preprocess, ref.target_fps,
                                      ref.max_gap_s, ref.cache)
        pieces = list(_pieces(folders[ref] / FRAMES, sample))
        if not pieces:
            empty[ref.bag] = empty.get(ref.bag, 0) + 1
        out += [(piece, task) for piece in pieces]
    for bag, count in empty.items():
        LOG.warning("bag %s: %d labelled interval(s) hold no sampled frame; skipped", bag, count)
    return out


def _pieces(frames: Path, sample: VideoSample) -> Iterator[VideoSample]:
    cache = read_cached(frames)
    relative = cache.stamps_ns - cache.first_stamp_ns
    end = sample.end if sample.end is not None else int(relative[-1]) + 1
    inside = np.nonzero((relative >= sample.start) & (relative < end))[0].tolist()
    start = 0
    while start < len(inside):
        stop = start
        while (stop + 1 < len(inside) and inside[stop + 1] == inside[stop] + 1
               and cache.segments[inside[stop + 1]] == cache.segments[inside[start]]):
            stop += 1
        yield replace(sample, path=frames, start=inside[start], end=inside[stop] + 1,
                      cached=True)
        start = stop + 1
