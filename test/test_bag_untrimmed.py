"""Untrimmed-stream metrics (mtl_perception/bag/untrimmed.py) with hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.bag.labels import Interval
from mtl_perception.bag.metrics import ClipRecord
from mtl_perception.bag.untrimmed import (
    EmittedEvent,
    average_precision,
    edit_distance,
    frame_ap,
    gesture_event_metrics,
    levenshtein_accuracy,
    none_seconds,
    task_confusion,
)


def test_edit_distance_counts_insertions_deletions_substitutions() -> None:
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], ["a", "b"]) == 2 and edit_distance(["a"], []) == 1
    assert edit_distance(["a", "b"], ["b", "a"]) == 2  # no transpositions in Levenshtein


@pytest.mark.parametrize(
    ("emitted", "expected"),
    [
        (["left", "right", "stop"], 1.0),
        (["left", "wave", "right", "stop"], 1 - 1 / 3),  # one inserted
        (["left", "stop"], 1 - 1 / 3),  # one deleted (missed)
        (["left", "right", "wave"], 1 - 1 / 3),  # one substituted (wrong class)
        (["wave", "left", "stop"], 1 - 2 / 3),  # one inserted, one deleted
        ([], 0.0),  # nothing emitted: every gesture deleted
        (["wave"] * 7, 1 - 7 / 3),  # more wrong events than gestures: negative
    ],
)
def test_levenshtein_accuracy(emitted: list[str], expected: float) -> None:
    assert levenshtein_accuracy(emitted, ["left", "right", "stop"]) == pytest.approx(expected)


def test_levenshtein_accuracy_without_true_gestures_is_undefined() -> None:
    assert levenshtein_accuracy(["left"], []) is None


def test_gesture_event_metrics_by_hand() -> None:
    intervals = [Interval(1, 2, "gesture", "left", 2), Interval(5, 6, "gesture", "right", 3),
                 Interval(8, 12, "action", "walk", 4), Interval(15, 16, "gesture", "stop", 5)]
    events = [EmittedEvent(2.5, "left"), EmittedEvent(4.0, "stop"),  # right; false (none)
              EmittedEvent(6.4, "left"), EmittedEvent(10.0, "right"),  # wrong class; false
              EmittedEvent(19.0, "stop")]  # 3 s after "stop" ended: too late, false
    m = gesture_event_metrics(events, intervals, end_s=20.0, late_s=2.0)
    assert (m["true_gestures"], m["events"], m["detected"], m["missed"]) == (3, 5, 2, 1)
    assert m["detected_right_class"] == 1 and m["false_events"] == 3
    # left stop left right stop -> left right stop: delete "stop" and "left": 2 of 3.
    assert m["edit_distance"] == 2 and m["levenshtein_accuracy"] == pytest.approx(1 / 3)
    # none: 20 s minus gestures (3 s) and the action (4 s) = 13 s
    assert m["none_minutes"] == pytest.approx(13 / 60)
    assert m["false_events_per_minute"] == pytest.approx(3 / (13 / 60))
    # delays 0.5 and 0.4 s: median 0.45, p95 (linear) 0.4 + 0.95 * 0.1
    assert m["detection_delay_s"]["p50"] == pytest.approx(0.45)
    assert m["detection_delay_s"]["p95"] == pytest.approx(0.495)
    assert [e["label"] for e in m["emitted"]] == ["left", "stop", "left", "right", "stop"]


def test_one_event_detects_one_gesture_and_an_empty_run_has_no_delay() -> None:
    intervals = [Interval(1, 2, "gesture", "left", 2)]
    m = gesture_event_metrics([EmittedEvent(2.2, "left"), EmittedEvent(2.6, "left")],
                              intervals, end_s=10.0)
    assert (m["detected"], m["false_events"]) == (1, 1)  # the repeat is a false event
    empty = gesture_event_metrics([], intervals, end_s=10.0)
    assert empty["detection_delay_s"] == {"p50": None, "p95": None}
    assert (empty["missed"], empty["false_events_per_minute"]) == (1, 0.0)


def test_none_seconds_merges_overlapping_intervals() -> None:
    intervals = [Interval(0, 4, "action", "walk", 2), Interval(1, 2, "gesture", "left", 3),
                 Interval(3, 6, "gesture", "stop", 4), Interval(9, 30, "action", "sit", 5)]
    assert none_seconds(intervals, 10.0) == pytest.approx(3.0)  # 6..9


def test_average_precision_by_hand() -> None:
    # ranks: + - + -: precision 1, 1/2, 2/3, 2/4 at recall .5, .5, 1, 1
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]),
                             np.array([1, 0, 1, 0])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a tie is one threshold: precision 1/2 at recall 1
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert average_precision(np.array([0.2, 0.1]), np.array([0, 0])) is None


def _clip(last: float, walk: float, gate_action: float | None = None) -> ClipRecord:
    gate = None if gate_action is None else np.array([gate_action, 0.0, 1 - gate_action])
    return ClipRecord(last - 0.5, last, {"action": np.array([walk, 1 - walk])}, gate=gate)


def test_per_frame_ap_holds_the_newest_clip_and_leaves_none_out() -> None:
    classes = {"action": ("walk", "sit")}
    walk = [Interval(0.5, 2.5, "action", "walk", 2)]
    # Frames at 1 fps: t = 0, 1, 2; frame 1 has no clip of its own: clip 0 holds.
    clips = [_clip(0.0, 0.9), _clip(2.0, 0.3)]
    # walk scores (0.9, 0.9, 0.3), positives (0, 1, 1): tie at 0.9 -> P 1/2 R 1/2; then P 2/3 R 1
    ap = frame_ap(clips, walk, classes, fps=1.0)
    assert ap["frames"] == 3
    assert ap["action"]["walk"] == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert ap["action"]["sit"] is None  # never true: left out of the mean, like none
    assert ap["mean"] == pytest.approx(ap["action"]["walk"])
    # With a gate the class score is P(task) x P(class): clip 0's action probability 0.2
    # puts frame 2 (0.3) first: P 1 R 1/2, then the tie (0.18): P 2/3 R 1.
    gated = frame_ap([_clip(0.0, 0.9, 0.2), _clip(2.0, 0.3, 1.0)], walk, classes, fps=1.0)
    assert gated["action"]["walk"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_task_confusion_by_hand() -> None:
    intervals = [Interval(0, 2, "action", "walk", 2), Interval(1, 2, "gesture", "left", 3)]
    clips = [
        ClipRecord(0.0, 1.0, {}, gate=np.array([0.8, 0.1, 0.1])),  # action, right
        ClipRecord(1.0, 2.0, {}, gate=np.array([0.6, 0.3, 0.1])),  # gesture first; said action
        ClipRecord(3.0, 4.0, {}, gate=np.array([0.1, 0.1, 0.8])),  # none, right
        ClipRecord(1.6, 2.6, {}, gate=np.array([0.1, 0.1, 0.8])),  # 0.4 of 1 s: none, right
    ]
    m = task_confusion(clips, intervals, ["action", "gesture"])
    assert m is not None and m["classes"] == ["action", "gesture", "none"]
    assert m["matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 2]]
    assert m["accuracy"] == pytest.approx(3 / 4) and m["recall"]["gesture"] == 0.0
    assert task_confusion([ClipRecord(0, 1, {})], intervals, ["action", "gesture"]) is None
