"""Scores of a bag's clips against its labels: clip and segment accuracy, per class.

- A clip is scored for a task when one label interval of that task covers at
  least half of the clip's time span (first to last frame stamp); the
  interval covering most of it gives the true class. Clip accuracy: the
  argmax of the published (smoothed, if smoothing is on) probabilities.
- Segment accuracy (one prediction per labelled interval, like video
  accuracy in training): the argmax of the mean raw softmax over the clips
  inside the interval (first and last frame in it); for an interval shorter
  than a clip, the clips scored for it. An interval no clip reaches (beyond a
  truncation, or shorter than half a clip) is counted in `segments_unscored`
  and left out of the accuracy.
- Per class (segments): precision, recall, F1, support; confusion
  `[true][predicted]` for clips and for segments.
- Cumulative accuracy (the paper's Table 2): correct segments over both tasks
  / all scored segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtl_perception.bag.labels import Interval

_EPS = 1e-6  # seconds: stamps written from frame indices round to the nanosecond


@dataclass
class ClipRecord:
    """One scored clip: its time span (seconds from the first image) and probabilities."""

    first_s: float
    last_s: float
    probs: dict[str, np.ndarray]  # task -> published probabilities (after smoothing)
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # task -> raw softmax
    gate: np.ndarray | None = None  # the task gate's softmax (tasks..., none), if any


def true_interval(clip: ClipRecord, intervals: Sequence[Interval]) -> Interval | None:
    """The interval covering most of the clip, if it covers at least half of its span."""
    span = clip.last_s - clip.first_s
    best, best_cover = None, -1.0
    for interval in intervals:
        if span <= _EPS:
            cover = 1.0 if interval.start - _EPS <= clip.first_s <= interval.end + _EPS else -1.0
            needed = 0.0
        else:
            cover = interval.overlap(clip.first_s, clip.last_s)
            needed = 0.5 * span - _EPS
        if cover >= needed and cover > best_cover:
            best, best_cover = interval, cover
    return best


def compute(
    clips: Sequence[ClipRecord],
    intervals: Sequence[Interval],
    classes: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """metrics.json's per-task sections plus `cumulative_accuracy` (see the module doc)."""
    result: dict[str, Any] = {}
    correct_total = scored_total = 0
    for task, names in classes.items():
        mine = [i for i in intervals if i.task == task]
        section = _task(clips, mine, task, list(names))
        result[task] = section
        correct_total += section["segments_correct"]
        scored_total += section["segments_scored"]
    result["cumulative_accuracy"] = correct_total / scored_total if scored_total else None
    return result


def _task(clips: Sequence[ClipRecord], intervals: list[Interval], task: str,
          names: list[str]) -> dict[str, Any]:
    index = {name: n for n, name in enumerate(names)}
    n = len(names)
    clip_confusion = np.zeros((n, n), dtype=np.int64)
    members: dict[int, list[ClipRecord]] = {id(i): [] for i in intervals}
    for clip in clips:
        interval = true_interval(clip, intervals)
        if interval is None:
            continue
        members[id(interval)].append(clip)
        clip_confusion[index[interval.label], int(np.argmax(clip.probs[task]))] += 1
    segment_confusion = np.zeros((n, n), dtype=np.int64)
    unscored = 0
    for interval in intervals:
        chosen = _inside(members[id(interval)], interval)
        if not chosen:
            unscored += 1
            continue
        mean = np.mean([c.raw.get(task, c.probs[task]) for c in chosen], axis=0)
        segment_confusion[index[interval.label], int(np.argmax(mean))] += 1
    clips_scored = int(clip_confusion.sum())
    segments_scored = int(segment_confusion.sum())
    return {
        "clip_accuracy": _accuracy(clip_confusion),
        "segment_accuracy": _accuracy(segment_confusion),
        "per_class": per_class(segment_confusion, names),
        "clips_scored": clips_scored,
        "segments": len(intervals),
        "segments_scored": segments_scored,
        "segments_correct": int(np.trace(segment_confusion)),
        "segments_unscored": unscored,
        "class_names": names,
        "confusion_clips": clip_confusion.tolist(),
        "confusion_segments": segment_confusion.tolist(),
    }


def _inside(clips: list[ClipRecord], interval: Interval) -> list[ClipRecord]:
    """Clips wholly inside the interval; all of the interval's clips when none is."""
    inside = [c for c in clips
              if c.first_s >= interval.start - _EPS and c.last_s <= interval.end + _EPS]
    return inside or clips


def _accuracy(confusion: np.ndarray) -> float | None:
    total = int(confusion.sum())
    return float(np.trace(confusion)) / total if total else None


def per_class(confusion: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support per class from `confusion[true][predicted]`.

    A class never predicted has precision None (no division by zero dressed as 0);
    a class never present has recall None. F1 is None unless both exist.
    """
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        tp = int(confusion[k, k])
        predicted, support = int(confusion[:, k].sum()), int(confusion[k, :].sum())
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        if precision is None or recall is None:
            f1 = None
        else:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out
