"""Metrics of an untrimmed stream (`evaluate_bag --unlabelled none`): time no label covers is
`none`, and the robot is judged on what it would do with it.

- `task_confusion`: per clip, the true task (a gesture interval covering at
  least half of the clip, else an action interval doing so, else `none`)
  against the gate's argmax, rows true, columns predicted, classes
  (tasks..., none). Only for a model with a task gate.
- `gesture_events` (events from `mtl_perception.stream.events`, the node's
  rule): `levenshtein_accuracy` = 1 - edit distance(emitted labels, true
  gesture labels, both in time order) / number of true gestures (negative
  when the robot emits more wrong events than there are gestures; it
  ignores timing: a quiet detector scores well). The matching rule (events
  in decision order, each true gesture matched at most once): an event
  *detects* a not yet detected true gesture whose window [start, end +
  `late_s`] holds its decision time, the earliest such gesture of the
  event's class if there is one, else the earliest of any class (detected,
  wrong class); `missed` = true gestures no event detects; `false_events`
  = events that detect none, `false_events_per_minute` = those / minutes
  of `none` time; `detection_delay_s` = decision time - end of the
  detected gesture (negative: decided before the gesture ended), median
  and p95. Time-matched detection with the right class (`event_f1`):
  true positives = events that detect a gesture of their own class;
  precision = those / events, recall = those / true gestures, F1 their
  harmonic mean (a wrong-class event counts against both).
- `none_recall`: of the clips whose true task is `none`, the share the
  gate calls `none` (argmax of its probabilities), overall and split by
  what was shown (`shown.csv` beside a bag from `to-bag --untrimmed`:
  idle, gap = within `GAP_S` of a task motion, distractor motions, scene
  distractors, lead-in/out of trimmed videos, real footage; the kind
  covering most of the clip). Only for a model with a task gate.
- `frame_ap`: per-frame average precision per class with `none` left out
  (online action detection's measure): at every sampled frame time between
  the first and the last clip, the newest clip ending at or before it gives
  each class a score (the head's probability, times the gate's probability
  of the task when the model has a gate: a class is only as likely as its
  task); a frame is positive for a class when an interval of that class
  holds it. AP = sum over score thresholds of (recall step x precision), as
  scikit-learn's `average_precision_score`; `mean` over classes with
  positives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtl_perception.bag.labels import Interval
from mtl_perception.bag.metrics import ClipRecord, true_interval
from mtl_perception.bag.shown import ShownSpan, none_recall
from mtl_perception.stream.events import GestureEvent

NONE = "none"
GESTURE = "gesture"


@dataclass(frozen=True)
class EmittedEvent:
    """A gesture event in seconds from the first image (its decision time)."""

    time_s: float
    label: str
    score: float = 1.0


def emitted(events: Sequence[GestureEvent], first_stamp_ns: int) -> list[EmittedEvent]:
    """The stream's gesture events in seconds from the first image's stamp."""
    return [EmittedEvent((e.decision_ns - first_stamp_ns) / 1e9, e.label, e.score)
            for e in events]


def clip_task(clip: ClipRecord, intervals: Sequence[Interval], tasks: Sequence[str]) -> str:
    """The clip's true task: gesture first (a gesture made while walking is a gesture
    clip), then the other tasks in order, `none` when no interval covers half of it."""
    order = sorted(tasks, key=lambda t: t != GESTURE)
    for task in order:
        if true_interval(clip, [i for i in intervals if i.task == task]) is not None:
            return task
    return NONE


def task_confusion(clips: Sequence[ClipRecord], intervals: Sequence[Interval],
                   tasks: Sequence[str]) -> dict[str, Any] | None:
    """Per-clip true task against the gate's argmax; None without gate probabilities."""
    gated = [c for c in clips if c.gate is not None]
    if not gated:
        return None
    classes = [*tasks, NONE]
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for clip in gated:
        truth = classes.index(clip_task(clip, intervals, tasks))
        predicted = int(np.argmax(np.asarray(clip.gate)))
        matrix[truth, predicted] += 1
    total = int(matrix.sum())
    recall = {name: (int(matrix[k, k]) / int(matrix[k].sum()) if matrix[k].sum() else None)
              for k, name in enumerate(classes)}
    return {"classes": classes, "matrix": matrix.tolist(), "clips": total,
            "accuracy": float(np.trace(matrix)) / total, "recall": recall}


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance: fewest insertions, deletions and substitutions from a to b."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def levenshtein_accuracy(emitted: Sequence[str], true: Sequence[str]) -> float | None:
    """1 - edit_distance(emitted, true) / len(true); None without true gestures."""
    if not true:
        return None
    return 1.0 - edit_distance(emitted, true) / len(true)


def match_events(events: Sequence[EmittedEvent], gestures: Sequence[Interval],
                 late_s: float) -> dict[int, int]:
    """event index -> index of the true gesture it detects (the module doc's rule)."""
    order = sorted(range(len(gestures)), key=lambda k: gestures[k].start)
    taken: set[int] = set()
    matched: dict[int, int] = {}
    for e in sorted(range(len(events)), key=lambda k: events[k].time_s):
        t = events[e].time_s
        open_ = [g for g in order
                 if g not in taken and gestures[g].start <= t <= gestures[g].end + late_s]
        if not open_:
            continue
        same = [g for g in open_ if gestures[g].label == events[e].label]
        g = (same or open_)[0]
        matched[e] = g
        taken.add(g)
    return matched


def event_f1(events: Sequence[EmittedEvent], gestures: Sequence[Interval],
             matched: Mapping[int, int]) -> dict[str, Any]:
    """Precision, recall and F1 of events with the right class (the module doc's rule)."""
    right = sum(events[e].label == gestures[g].label for e, g in matched.items())
    precision = right / len(events) if events else None
    recall = right / len(gestures) if gestures else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "right_class": right}


def none_seconds(intervals: Sequence[Interval], end_s: float) -> float:
    """Seconds of [0, end_s] that no interval (of any task) covers."""
    covered, reach = 0.0, 0.0
    for interval in sorted(intervals, key=lambda i: i.start):
        start, stop = max(interval.start, reach, 0.0), min(interval.end, end_s)
        if stop > start:
            covered += stop - start
        reach = max(reach, min(interval.end, end_s))
    return max(end_s - covered, 0.0)


def gesture_event_metrics(events: Sequence[EmittedEvent], intervals: Sequence[Interval],
                          end_s: float, late_s: float = 2.0) -> dict[str, Any]:
    """metrics.json's `gesture_events` (see the module doc); `end_s`: the evaluated span."""
    gestures = sorted((i for i in intervals if i.task == GESTURE), key=lambda i: i.start)
    ordered = sorted(events, key=lambda e: e.time_s)
    matched = match_events(ordered, gestures, late_s)
    delays = [ordered[e].time_s - gestures[g].end for e, g in matched.items()]
    false_events = len(ordered) - len(matched)
    none_min = none_seconds(intervals, end_s) / 60.0
    return {
        "true_gestures": len(gestures),
        "events": len(ordered),
        "levenshtein_accuracy": levenshtein_accuracy([e.label for e in ordered],
                                                     [g.label for g in gestures]),
        "edit_distance": edit_distance([e.label for e in ordered], [g.label for g in gestures]),
        "detected": len(matched),
        "detected_right_class": sum(ordered[e].label == gestures[g].label
                                    for e, g in matched.items()),
        "event_f1": event_f1(ordered, gestures, matched),
        "missed": len(gestures) - len(matched),
        "false_events": false_events,
        "none_minutes": none_min,
        "false_events_per_minute": false_events / none_min if none_min > 0 else None,
        "detection_delay_s": {
            "p50": float(np.percentile(delays, 50)) if delays else None,
            "p95": float(np.percentile(delays, 95)) if delays else None,
        },
        "late_s": late_s,
        "emitted": [{"time_s": round(e.time_s, 4), "label": e.label, "score": round(e.score, 4)}
                    for e in ordered],
    }


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Non-interpolated AP (scikit-learn's definition, ties as one threshold); None
    without positives."""
    positives = int(np.sum(positive))
    if positives == 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    ranked, hits = np.asarray(scores)[order], np.asarray(positive, dtype=np.float64)[order]
    tp, fp = np.cumsum(hits), np.cumsum(1.0 - hits)
    last = np.r_[np.nonzero(np.diff(ranked))[0], len(ranked) - 1]  # end of each tie run
    precision, recall = tp[last] / (tp[last] + fp[last]), tp[last] / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def frame_ap(clips: Sequence[ClipRecord], intervals: Sequence[Interval],
             classes: Mapping[str, Sequence[str]], fps: float) -> dict[str, Any]:
    """Per-frame AP per class, `none` left out (see the module doc)."""
    ordered = sorted(clips, key=lambda c: c.last_s)
    if not ordered:
        return {"frames": 0, "mean": None}
    ends = np.array([c.last_s for c in ordered])
    count = int(np.floor((ends[-1] - ends[0]) * fps + 1e-6)) + 1
    times = ends[0] + np.arange(count) / fps
    newest = np.searchsorted(ends, times + 1e-9, side="right") - 1
    tasks = list(classes)
    out: dict[str, Any] = {"frames": count}
    values: list[float] = []
    for t, task in enumerate(tasks):
        probs = np.stack([c.probs[task] for c in ordered])
        if all(c.gate is not None for c in ordered):
            probs = probs * np.array([c.gate[t] for c in ordered])[:, None]  # type: ignore[index]
        scores = probs[newest]
        per_class: dict[str, float | None] = {}
        for k, name in enumerate(classes[task]):
            holds = [i for i in intervals if i.task == task and i.label == name]
            positive = np.zeros(count, dtype=bool)
            for interval in holds:
                positive |= (times >= interval.start) & (times < interval.end)
            ap = average_precision(scores[:, k], positive)
            per_class[name] = ap
            if ap is not None:
                values.append(ap)
        out[task] = per_class
    out["mean"] = float(np.mean(values)) if values else None
    return out


def untrimmed_metrics(clips: Sequence[ClipRecord], intervals: Sequence[Interval],
                      classes: Mapping[str, Sequence[str]], events: Sequence[EmittedEvent],
                      fps: float, late_s: float = 2.0, shown: Sequence[ShownSpan] = ()
                      ) -> dict[str, Any]:
    """The sections metrics.json adds under `--unlabelled none`."""
    end_s = max((c.last_s for c in clips), default=0.0)
    out: dict[str, Any] = {
        "task_confusion": task_confusion(clips, intervals, list(classes)),
        "none_recall": none_recall(clips, intervals, list(classes), shown),
        "frame_ap": frame_ap(clips, intervals, classes, fps),
    }
    if GESTURE in classes:
        out["gesture_events"] = gesture_event_metrics(events, intervals, end_s, late_s)
    return out
