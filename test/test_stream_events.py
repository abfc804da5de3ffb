"""The gesture event rule (mtl_perception/stream/events.py) on hand-built score sequences."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.stream import EventSettings, FrameHeader, GestureEventDetector
from mtl_perception.stream.events import weighted_mean

CLASSES = ("left", "right", "stop")
STEP_NS = 100_000_000  # one clip every 0.1 s
LEFT, RIGHT = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.8, 0.1])


def settings(**changes: float) -> EventSettings:
    values = {"threshold": 0.5, "hysteresis": 0.1, "min_s": 0.2, "max_s": 5.0,
              "refractory_s": 0.5, **changes}
    return EventSettings(threshold=values["threshold"], hysteresis=values["hysteresis"],
                         min_ns=round(values["min_s"] * 1e9), max_ns=round(values["max_s"] * 1e9),
                         refractory_ns=round(values["refractory_s"] * 1e9))


def run(activity: list[float], probs: list[np.ndarray] | np.ndarray, rule: EventSettings,
        finish: bool = True) -> list[tuple[int, str, str]]:
    """(clip index at which it was decided, label, reason) of every event."""
    detector = GestureEventDetector(CLASSES)
    rows = probs if isinstance(probs, list) else [probs] * len(activity)
    out = []
    for i, (level, p) in enumerate(zip(activity, rows, strict=True)):
        event = detector.update(FrameHeader(i * STEP_NS, "cam"), level, p, rule)
        if event is not None:
            out.append((event.decision_ns // STEP_NS, event.label, event.reason))
    if finish and (event := detector.finish(rule)) is not None:
        out.append((event.decision_ns // STEP_NS, event.label, event.reason))
    return out


def test_one_event_per_gesture_decided_when_the_activity_falls() -> None:
    #            0    1    2    3    4    5    6    7    8    9   10   11   12   13   14
    activity = [0.0, 0.1, 0.9, 0.95, 0.9, 0.8, 0.2, 0.0, 0.1, 0.7, 0.9, 0.9, 0.8, 0.3, 0.0]
    probs = [LEFT] * 8 + [RIGHT] * 7
    # Gesture 1: clips 2..5 (0.3 s), decided at clip 6; gesture 2: clips 9..12, decided at 13.
    assert run(activity, probs, settings()) == [(6, "left", "fell"), (13, "right", "fell")]


def test_no_event_within_the_refractory_time() -> None:
    activity = [0.9, 0.9, 0.9, 0.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9, 0.0]
    # Decisions at clips 3, 7 and 13: 7 comes 0.4 s after 3 (< 1 s refractory): dropped;
    # 13 comes 1.0 s after 3 (the last emitted one): emitted.
    assert run(activity, LEFT, settings(refractory_s=1.0)) == [(3, "left", "fell"),
                                                             (13, "left", "fell")]
    assert len(run(activity, LEFT, settings(refractory_s=0.0))) == 3


def test_a_too_short_burst_gives_no_event() -> None:
    activity = [0.0, 0.9, 0.0, 0.0, 0.9, 0.9, 0.0]  # 0 s, then 0.1 s of activity
    assert run(activity, LEFT, settings(min_s=0.2)) == []
    assert run(activity, LEFT, settings(min_s=0.1)) == [(6, "left", "fell")]
    assert run(activity, LEFT, settings(min_s=0.0, refractory_s=0.0)) == [
        (2, "left", "fell"), (6, "left", "fell")]


def test_hysteresis_keeps_a_dip_inside_one_gesture() -> None:
    activity = [0.9, 0.9, 0.45, 0.9, 0.9, 0.0]
    assert run(activity, LEFT, settings(min_s=0.0, refractory_s=0.0)) == [(5, "left", "fell")]
    # Without hysteresis the dip below 0.5 ends the first gesture at clip 2.
    assert run(activity, LEFT, settings(min_s=0.0, refractory_s=0.0, hysteresis=0.0)) == [
        (2, "left", "fell"), (5, "left", "fell")]


def test_a_long_activity_is_decided_once_at_max_duration() -> None:
    activity = [0.9] * 20 + [0.0, 0.9, 0.9, 0.9, 0.0]
    events = run(activity, LEFT, settings(max_s=0.5, refractory_s=0.0))
    # Started at clip 0, 0.5 s reached at clip 5; the rest of the activity is spent;
    # after it falls (clip 20) a new gesture (21..23) is decided at 24.
    assert events == [(5, "left", "max_duration"), (24, "left", "fell")]


def test_an_open_gesture_is_decided_when_the_stream_ends() -> None:
    activity = [0.0, 0.9, 0.9, 0.9]
    assert run(activity, LEFT, settings(), finish=True) == [(3, "left", "end_of_stream")]
    assert run(activity, LEFT, settings(), finish=False) == []


def test_class_is_the_mean_with_later_clips_weighted_more() -> None:
    detector = GestureEventDetector(CLASSES)
    rule = settings(min_s=0.0)
    rows = [np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0])]
    for i, p in enumerate(rows):
        assert detector.update(FrameHeader(i * STEP_NS), 0.9, p, rule) is None
    event = detector.update(FrameHeader(3 * STEP_NS, "cam"), 0.1, LEFT, rule)  # not averaged
    assert event is not None
    # weights 1, 2, 3: right = (2 + 3) / 6, left = 1 / 6
    assert (event.label, event.index, event.score) == ("right", 1, pytest.approx(5 / 6))
    np.testing.assert_allclose(event.probabilities, [1 / 6, 5 / 6, 0.0])
    assert (event.start_ns, event.end_ns, event.clips) == (0, 2 * STEP_NS, 3)
    assert event.header == FrameHeader(3 * STEP_NS, "cam")
    # An unweighted mean would say the same class here, but not the same score.
    assert weighted_mean(rows)[1] != pytest.approx(np.mean(rows, axis=0)[1])


def test_reset_forgets_an_undecided_gesture() -> None:
    detector = GestureEventDetector(CLASSES)
    rule = settings(min_s=0.0)
    detector.update(FrameHeader(0), 0.9, LEFT, rule)
    detector.update(FrameHeader(STEP_NS), 0.9, LEFT, rule)
    detector.reset()
    assert detector.update(FrameHeader(2 * STEP_NS), 0.0, LEFT, rule) is None
    assert detector.finish(rule) is None
