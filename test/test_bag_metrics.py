"""Clip/segment scoring against labels, with hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.bag.labels import Interval
from mtl_perception.bag.metrics import ClipRecord, compute, per_class, true_interval

CLASSES = {"action": ("walk", "jump")}


def _clip(first: float, last: float, probs: list[float], raw: list[float] | None = None
          ) -> ClipRecord:
    raw_probs = np.array(raw if raw is not None else probs)
    return ClipRecord(first, last, {"action": np.array(probs)}, {"action": raw_probs})


def test_a_clip_counts_when_an_interval_covers_at_least_half_its_span() -> None:
    walk = Interval(0.0, 2.0, "action", "walk", 2)
    jump = Interval(2.0, 4.0, "action", "jump", 3)
    assert true_interval(_clip(1.0, 3.0, [1, 0]), [walk, jump]) is walk  # 1 s each: tie -> first
    assert true_interval(_clip(1.5, 3.0, [1, 0]), [walk, jump]) is jump  # 0.5 vs 1.0 s
    assert true_interval(_clip(1.0, 2.0, [1, 0]), [walk]) is walk  # fully inside
    assert true_interval(_clip(1.5, 3.5, [1, 0]), [walk]) is None  # 0.5 of 2.0 s < half
    assert true_interval(_clip(4.5, 5.0, [1, 0]), [walk, jump]) is None
    assert true_interval(_clip(1.0, 1.0, [1, 0]), [walk]) is walk  # one-frame clip: a point


def test_clip_and_segment_accuracy_by_hand() -> None:
    walk = Interval(0.0, 3.0, "action", "walk", 2)
    jump = Interval(4.0, 7.0, "action", "jump", 3)
    clips = [
        _clip(0.0, 1.0, [0.9, 0.1]),  # walk, right
        _clip(1.0, 2.0, [0.4, 0.6]),  # walk, wrong
        _clip(2.0, 3.0, [0.8, 0.2]),  # walk, right -> mean raw walk (0.7, 0.3): right
        _clip(4.0, 5.0, [0.6, 0.4], raw=[0.6, 0.4]),  # jump, wrong
        _clip(5.0, 6.0, [0.45, 0.55], raw=[0.1, 0.9]),  # jump, right (smoothed)
        _clip(3.2, 3.8, [0.5, 0.5]),  # in the gap: not scored
    ]
    m = compute(clips, [walk, jump], CLASSES)["action"]
    assert m["clips_scored"] == 5
    assert m["clip_accuracy"] == pytest.approx(3 / 5)
    assert m["confusion_clips"] == [[2, 1], [1, 1]]
    # Segments use the raw softmax: jump's mean is (0.35, 0.65) -> jump, right.
    assert m["segment_accuracy"] == 1.0
    assert m["confusion_segments"] == [[1, 0], [0, 1]]


def test_segments_use_the_clips_inside_and_fall_back_to_overlapping_ones() -> None:
    long = Interval(0.0, 4.0, "action", "walk", 2)
    short = Interval(5.0, 5.4, "action", "jump", 3)  # shorter than a clip
    clips = [
        _clip(0.0, 1.0, [0.8, 0.2]),
        _clip(3.5, 4.5, [0.0, 1.0]),  # half inside `long`: scored as a clip, not in its mean
        _clip(4.9, 5.5, [0.3, 0.7]),  # covers `short` for 0.4 of 0.6 s
        _clip(9.0, 9.5, [0.3, 0.7]),
    ]
    m = compute(clips, [long, short, Interval(20, 21, "action", "walk", 4)], CLASSES)
    action = m["action"]
    assert action["confusion_segments"] == [[1, 0], [0, 1]]
    assert action["segments_unscored"] == 1 and action["segments"] == 3
    assert m["cumulative_accuracy"] == 1.0


def test_per_class_precision_recall_f1() -> None:
    confusion = np.array([[3, 1, 0], [2, 2, 0], [0, 0, 0]])
    table = per_class(confusion, ["a", "b", "c"])
    assert table["a"] == pytest.approx(
        {"precision": 3 / 5, "recall": 3 / 4, "f1": 2 * 0.6 * 0.75 / 1.35, "support": 4})
    assert table["b"]["precision"] == pytest.approx(2 / 3)
    assert table["b"]["recall"] == pytest.approx(0.5)
    assert table["c"] == {"precision": None, "recall": None, "f1": None, "support": 0}


def test_cumulative_accuracy_pools_both_tasks() -> None:
    classes = {"action": ("walk", "jump"), "gesture": ("wave", "stop")}
    intervals = [Interval(0, 2, "action", "walk", 2), Interval(0, 2, "gesture", "stop", 3),
                 Interval(3, 5, "gesture", "wave", 4)]
    clips = [
        ClipRecord(0.5, 1.5, {"action": np.array([0.9, 0.1]), "gesture": np.array([0.9, 0.1])}),
        ClipRecord(3.5, 4.5, {"action": np.array([0.9, 0.1]), "gesture": np.array([0.9, 0.1])}),
    ]
    m = compute(clips, intervals, classes)
    assert m["action"]["segment_accuracy"] == 1.0
    assert m["gesture"]["segment_accuracy"] == 0.5
    assert m["cumulative_accuracy"] == pytest.approx(2 / 3)
