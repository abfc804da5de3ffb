"""Gesture events: one message per gesture instead of one classification per clip.

The rule (one implementation, used by the live node through the pipeline and
by `evaluate_bag` / benchmarks through `detect_events`):

1. Each scored clip gives an *activity* in [0, 1]: with `event_source` "gate"
   the task gate's probability of the gesture task; with "max_softmax" the
   gesture head's largest softmax probability (the baseline a model without
   a gate can use); "auto" is "gate" when the model has a gate. The clip's
   own probabilities are used (not the published, smoothed ones); with
   `event_smoothing` the activity is smoothed over time first, causally:
   "ema" s_t = alpha a_t + (1 - alpha) s_{t-1} (`event_ema_alpha`); "hmm"
   the forward filter of a two-state chain (gesture / not) that switches
   with probability `event_switch_prob` per clip and reads a_t as the
   clip's probability of "gesture": prior_t = s_{t-1} (1 - p) + (1 - s_{t-1}) p,
   s_t = prior_t a_t / (prior_t a_t + (1 - prior_t)(1 - a_t)). Both start
   at the first clip's activity; "none" (s_t = a_t) is the rule before
   issue 24. Steps 2-4 read s_t.
2. A gesture *starts* at the first clip whose activity is >= `event_threshold`
   and *lasts* while the activity stays >= `event_threshold -
   event_hysteresis` (the hysteresis keeps one dip from splitting a gesture).
3. It is *decided* at the first clip whose activity falls below that level
   (the fall after the peak), or at the clip at which it has lasted
   `event_max_s` (then the rest of that activity is ignored until it falls),
   or when the stream ends (`finish`). Its duration is the time between the
   last-frame stamps of its first and last active clips (one clip: 0 s).
4. It is *emitted* when it lasted at least `event_min_s` and its decision
   comes at least `event_refractory_s` after the previous emitted event of
   the camera; otherwise it is dropped.
5. Its class: the gesture head's probabilities averaged over its active clips,
   with `event_class_weights` "linear": weights 1, 2, ..., n (later clips,
   which have seen more of the gesture, count more), "mean": equal weights
   (what fit-gate searches: it named the right class more often than the
   other two in each of 6 measured training runs, bench/results/gate.md
   item 13), or "activity": the
   odds a_t / (1 - a_t) of each clip's own unsmoothed activity (the clips
   the gate is sure lie on the gesture dominate: 0.99 weighs 99 times 0.5,
   so the lead-in clips a smoothed activity drags along count little);
   label = the argmax, score = that averaged probability.
6. The event's header is the header of the clip at which it was decided (the
   image at which the decision was taken). A camera's buffer reset (a stamp
   gap) forgets an undecided gesture.

Actions are not events: they stay a per-clip state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mtl_perception.stream.config import EventClassWeights, EventSmoothing, StreamConfig
from mtl_perception.stream.results import ClipResult, FrameHeader

GESTURE_TASK = "gesture"
Reason = Literal["fell", "max_duration", "end_of_stream"]


@dataclass(frozen=True)
class EventSettings:
    """The event rule's settings: StreamConfig's `event_*` fields (their defaults are
    there), durations in nanoseconds."""

    threshold: float
    hysteresis: float
    min_ns: int
    max_ns: int
    refractory_ns: int
    smoothing: EventSmoothing = "none"
    ema_alpha: float = 0.5
    switch_prob: float = 0.1
    class_weights: EventClassWeights = "linear"

    @classmethod
    def of(cls, config: StreamConfig) -> EventSettings:
        return cls(
            threshold=config.event_threshold,
            hysteresis=config.event_hysteresis,
            min_ns=round(config.event_min_s * 1e9),
            max_ns=round(config.event_max_s * 1e9),
            refractory_ns=round(config.event_refractory_s * 1e9),
            smoothing=config.event_smoothing,
            ema_alpha=config.event_ema_alpha,
            switch_prob=config.event_switch_prob,
            class_weights=config.event_class_weights,
        )

    @property
    def release(self) -> float:
        """Activity below which a started gesture ends."""
        return self.threshold - self.hysteresis


@dataclass(frozen=True)
class GestureEvent:
    """One detected gesture.

    `header`: the clip at which it was decided (publish with this header);
    `start_ns` / `end_ns`: last-frame stamps of its first and last active clips;
    `probabilities`: the weighted mean of the gesture head's softmax (C,);
    `label` / `score`: its argmax and that probability; `clips`: active clips.
    """

    label: str
    score: float
    index: int
    probabilities: np.ndarray
    header: FrameHeader
    start_ns: int
    end_ns: int
    clips: int
    reason: Reason
    camera: str = ""

    @property
    def decision_ns(self) -> int:
        return self.header.stamp_ns


@dataclass
class _Open:
    start_ns: int
    end_ns: int
    probabilities: list[np.ndarray] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)  # odds of each clip's raw activity


class GestureEventDetector:
    """The rule above for one camera, fed one clip at a time (in stamp order)."""

    def __init__(self, class_names: Sequence[str], camera: str = "") -> None:
        self.class_names = tuple(class_names)
        self.camera = camera
        self._open: _Open | None = None
        self._spent = False  # decided at max duration; waiting for the activity to fall
        self._last_header: FrameHeader | None = None
        self._last_event_ns: int | None = None
        self._level: float | None = None  # the smoothed activity of the last clip

    def reset(self) -> None:
        """A scene cut: forget the undecided gesture, the refractory clock and the smoothing."""
        self._open, self._spent, self._last_header, self._last_event_ns = None, False, None, None
        self._level = None

    @property
    def level(self) -> float | None:
        """The smoothed activity after the last clip (None before the first)."""
        return self._level

    def update(self, header: FrameHeader, activity: float, probabilities: np.ndarray,
               settings: EventSettings) -> GestureEvent | None:
        """One clip: its header, activity and gesture probabilities; the event decided now."""
        stamp = header.stamp_ns
        self._last_header = header
        raw, activity = activity, smooth_activity(self._level, activity, settings)
        self._level = activity
        if self._spent:
            if activity < settings.release:
                self._spent = False
            return None
        current = self._open
        if current is None:
            if activity < settings.threshold:
                return None
            current = self._open = _Open(stamp, stamp)
        elif activity < settings.release:
            self._open = None
            return self._decide(current, header, "fell", settings)
        current.end_ns = stamp
        current.probabilities.append(np.asarray(probabilities, dtype=np.float64))
        current.weights.append(odds(raw))
        if current.end_ns - current.start_ns >= settings.max_ns:
            self._open, self._spent = None, True
            return self._decide(current, header, "max_duration", settings)
        return None

    def finish(self, settings: EventSettings) -> GestureEvent | None:
        """The stream ended: decide an open gesture at the last clip."""
        current, header = self._open, self._last_header
        self._open = None
        if current is None or header is None:
            return None
        return self._decide(current, header, "end_of_stream", settings)

    def _decide(self, gesture: _Open, header: FrameHeader, reason: Reason,
                settings: EventSettings) -> GestureEvent | None:
        if gesture.end_ns - gesture.start_ns < settings.min_ns:
            return None  # too short: a flicker, not a gesture
        last = self._last_event_ns
        if last is not None and 0 <= header.stamp_ns - last < settings.refractory_ns:
            return None
        self._last_event_ns = header.stamp_ns
        if settings.class_weights == "activity" and sum(gesture.weights) > 0:
            probabilities = weighted_mean(gesture.probabilities, gesture.weights)
        elif settings.class_weights == "mean":
            probabilities = weighted_mean(gesture.probabilities,
                                          [1.0] * len(gesture.probabilities))
        else:
            probabilities = weighted_mean(gesture.probabilities)
        index = int(np.argmax(probabilities))
        return GestureEvent(
            label=self.class_names[index], score=float(probabilities[index]), index=index,
            probabilities=probabilities, header=header, start_ns=gesture.start_ns,
            end_ns=gesture.end_ns, clips=len(gesture.probabilities), reason=reason,
            camera=self.camera,
        )


def weighted_mean(probabilities: Sequence[np.ndarray],
                  weights: Sequence[float] | None = None) -> np.ndarray:
    """Mean with `weights`, by default 1, 2, ..., n (later rows count more)."""
    stacked = np.stack(probabilities)
    w = (np.arange(1, len(stacked) + 1, dtype=np.float64) if weights is None
         else np.asarray(weights, dtype=np.float64))
    return np.asarray((w[:, None] * stacked).sum(axis=0) / w.sum())


_CLAMP = 1e-6  # keeps the filter able to leave a state after an activity of exactly 0 or 1


def odds(activity: float) -> float:
    """a / (1 - a), with a clamped into [1e-6, 1 - 1e-6]."""
    a = min(max(activity, _CLAMP), 1.0 - _CLAMP)
    return a / (1.0 - a)


def smooth_activity(previous: float | None, activity: float, settings: EventSettings) -> float:
    """The smoothed activity after one more clip (rule step 1; `previous` None: the first)."""
    if previous is None or settings.smoothing == "none":
        return activity
    if settings.smoothing == "ema":
        return settings.ema_alpha * activity + (1.0 - settings.ema_alpha) * previous
    p = settings.switch_prob
    prior = previous * (1.0 - p) + (1.0 - previous) * p
    a = min(max(activity, _CLAMP), 1.0 - _CLAMP)
    return prior * a / (prior * a + (1.0 - prior) * (1.0 - a))


def resolve_source(source: str, has_gate: bool) -> str:
    """"auto" -> "gate" when the model has a gate, else "max_softmax"."""
    if source == "auto":
        return "gate" if has_gate else "max_softmax"
    return source


def activity(result: ClipResult, source: str, task: str = GESTURE_TASK) -> float | None:
    """The clip's activity for `task` (see the module doc), or None when it has none
    (no such task; source "gate" on a clip without gate probabilities)."""
    scores = result.tasks.get(task)
    if scores is None:
        return None
    source = resolve_source(source, result.gate is not None)
    if source == "gate":
        if result.gate is None:
            return None
        return float(result.gate[list(result.tasks).index(task)])
    return float(np.max(scores.probabilities))


def step(detector: GestureEventDetector, result: ClipResult, config: StreamConfig,
         task: str = GESTURE_TASK) -> GestureEvent | None:
    """Feed one scored clip to a camera's detector (what the pipeline does per clip)."""
    level = activity(result, config.event_source, task)
    if level is None:
        return None
    return detector.update(result.header, level, result.tasks[task].probabilities,
                           EventSettings.of(config))


def detect_events(results: Sequence[ClipResult], class_names: Sequence[str],
                  config: StreamConfig, task: str = GESTURE_TASK) -> list[GestureEvent]:
    """The rule replayed over recorded results (every camera; a new buffer epoch
    resets, the end of the list finishes): the events in decision order.

    Equal to the events the pipeline attached to the same results, plus the
    one an open gesture gives at the end. Change `config` (e.g.
    `dataclasses.replace(config, event_source="max_softmax", event_threshold=t)`)
    to compare sources or thresholds on one run of the model.
    """
    settings = EventSettings.of(config)
    by_camera: dict[str, list[ClipResult]] = {}
    for result in results:
        by_camera.setdefault(result.camera, []).append(result)
    events: list[GestureEvent] = []
    for camera, clips in by_camera.items():
        detector = GestureEventDetector(class_names, camera)
        epoch = None
        for result in sorted(clips, key=lambda r: r.sequence):
            if epoch is not None and result.epoch != epoch:
                detector.reset()
            epoch = result.epoch
            event = step(detector, result, config, task)
            if event is not None:
                events.append(event)
        event = detector.finish(settings)
        if event is not None:
            events.append(event)
    return sorted(events, key=lambda e: (e.decision_ns, e.camera))
