"""Issue 24's temporal decisions and untrimmed metrics, on hand-made sequences and lists:
the activity's smoothing, the class weighting, the event matching rule with the right class,
the none recall by kind, and the decision settings a checkpoint stores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtl_perception.bag.labels import Interval
from mtl_perception.bag.metrics import ClipRecord
from mtl_perception.bag.shown import ShownSpan, clip_kind, none_recall, read_shown, write_shown
from mtl_perception.bag.untrimmed import EmittedEvent, gesture_event_metrics, match_events
from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream import FrameHeader, GestureEventDetector, StreamConfig
from mtl_perception.stream.config import StreamConfigError
from mtl_perception.stream.decisions import (
    PROVENANCE_KEY,
    explicit_settings,
    tuned_stride,
    with_stored_decisions,
)
from mtl_perception.stream.events import EventSettings, smooth_activity
from mtl_perception.stream.rate import choose_target_fps, rate_warning, tuned_stream_fps

CLASSES = ("left", "right", "stop")
STEP_NS = 100_000_000
LEFT, RIGHT = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.8, 0.1])


def rule(**changes: object) -> EventSettings:
    base = EventSettings(threshold=0.5, hysteresis=0.1, min_ns=0, max_ns=10**10,
                         refractory_ns=0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def levels(activity: list[float], settings: EventSettings) -> list[float]:
    out, level = [], None
    for a in activity:
        level = smooth_activity(level, a, settings)
        out.append(level)
    return out


# --- smoothing of the activity ---

def test_ema_smoothing_by_hand() -> None:
    got = levels([1.0, 0.0, 0.0, 1.0], rule(smoothing="ema", ema_alpha=0.5))
    assert got == pytest.approx([1.0, 0.5, 0.25, 0.625])


def test_hmm_filter_by_hand() -> None:
    # p = 0.1: prior = 0.8 * 0.9 + 0.2 * 0.1 = 0.74; posterior with a = 0.5 is the prior
    got = levels([0.8, 0.5], rule(smoothing="hmm", switch_prob=0.1))
    assert got == pytest.approx([0.8, 0.74])
    # then a = 0.9: prior = 0.74 * 0.9 + 0.26 * 0.1 = 0.692,
    # posterior = 0.692 * 0.9 / (0.692 * 0.9 + 0.308 * 0.1) = 0.6228 / 0.6536
    assert levels([0.8, 0.5, 0.9], rule(smoothing="hmm", switch_prob=0.1))[2] == pytest.approx(
        0.6228 / 0.6536)
    # switch_prob 0.5 forgets the past: the filter is the raw activity
    assert levels([0.9, 0.2, 0.7], rule(smoothing="hmm", switch_prob=0.5)) == pytest.approx(
        [0.9, 0.2, 0.7])


def test_smoothing_turns_a_flickering_gesture_into_one_event() -> None:
    activity = [0.0, 0.9, 0.2, 0.9, 0.2, 0.9, 0.9, 0.0, 0.0, 0.0]

    def events(settings: EventSettings) -> list[int]:
        detector = GestureEventDetector(CLASSES)
        out = []
        for i, a in enumerate(activity):
            event = detector.update(FrameHeader(i * STEP_NS, "cam"), a, LEFT, settings)
            if event is not None:
                out.append(i)
        return out

    assert events(rule()) == [2, 4, 7]  # raw: the flicker splits it three times
    # ema 0.5: 0, .45, .325, .6125, .40625, .653, .777, .388, .194: starts at clip 3
    # (>= 0.5), stays above the release 0.3 until clip 8: one event, decided at clip 8
    assert events(rule(smoothing="ema", ema_alpha=0.5, hysteresis=0.2)) == [8]


def test_the_class_from_activity_weights_ignores_the_lead_in() -> None:
    # two lead-in clips look like "right" with little gate probability; then "left"
    activity = [0.6, 0.6, 0.95, 0.95, 0.0]
    probs = [RIGHT, RIGHT, np.array([0.5, 0.4, 0.1]),
             np.array([0.5, 0.4, 0.1]), LEFT]

    def label(weights: str) -> str:
        detector = GestureEventDetector(CLASSES)
        found = []
        for i, (a, p) in enumerate(zip(activity, probs)):
            event = detector.update(FrameHeader(i * STEP_NS, "cam"), a, p,
                                    rule(class_weights=weights))
            if event is not None:
                found.append(event.label)
        return found[0]

    # linear weights 1..4 (sum 10): right (.8+1.6+1.2+1.6)/10 = 0.52 > left 0.38
    assert label("linear") == "right"
    # odds 1.5, 1.5, 19, 19 (sum 41): left (.15+.15+9.5+9.5)/41 = 0.471 > right 0.429
    assert label("activity") == "left"


def test_the_class_from_equal_weights_lets_early_clips_count_as_much_as_late_ones() -> None:
    # two clips sure of "left", then two leaning "right"; the gate equally sure of all four
    probs = [np.array([0.9, 0.05, 0.05])] * 2 + [np.array([0.2, 0.7, 0.1])] * 2

    def decided(weights: str) -> tuple[str, float]:
        detector = GestureEventDetector(CLASSES)
        for i, p in enumerate([*probs, RIGHT]):
            event = detector.update(FrameHeader(i * STEP_NS, "cam"), 0.0 if i == 4 else 0.95,
                                    p, rule(class_weights=weights))
        assert event is not None
        return event.label, event.score

    # mean: left (.9 + .9 + .2 + .2) / 4 = 0.55 > right (.05 + .05 + .7 + .7) / 4 = 0.375
    label, score = decided("mean")
    assert label == "left" and score == pytest.approx(0.55)
    # linear 1..4 (sum 10): right (.05 + .1 + 2.1 + 2.8) / 10 = 0.505 > left 0.41
    label, score = decided("linear")
    assert label == "right" and score == pytest.approx(0.505)


# --- the matching rule ---

def gesture(start: float, end: float, label: str) -> Interval:
    return Interval(start, end, "gesture", label, 0)


def test_an_event_is_never_counted_twice() -> None:
    gestures = [gesture(1.0, 2.0, "left")]
    events = [EmittedEvent(1.5, "left"), EmittedEvent(1.9, "left")]
    assert match_events(events, gestures, late_s=1.0) == {0: 0}
    m = gesture_event_metrics(events, gestures, end_s=10.0, late_s=1.0)
    assert (m["detected"], m["false_events"]) == (1, 1)
    f1 = m["event_f1"]
    assert (f1["precision"], f1["recall"], f1["right_class"]) == (0.5, 1.0, 1)
    assert f1["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_a_late_event_counts_within_late_s_only() -> None:
    gestures = [gesture(1.0, 2.0, "left")]
    assert match_events([EmittedEvent(2.8, "left")], gestures, late_s=1.0) == {0: 0}
    assert match_events([EmittedEvent(3.2, "left")], gestures, late_s=1.0) == {}
    assert match_events([EmittedEvent(0.9, "left")], gestures, late_s=1.0) == {}  # too early


def test_a_wrong_class_is_detected_but_not_a_true_positive() -> None:
    gestures = [gesture(1.0, 2.0, "left"), gesture(4.0, 5.0, "right")]
    events = [EmittedEvent(1.5, "stop"), EmittedEvent(4.5, "right")]
    m = gesture_event_metrics(events, gestures, end_s=10.0, late_s=1.0)
    assert (m["detected"], m["detected_right_class"], m["false_events"]) == (2, 1, 0)
    f1 = m["event_f1"]
    assert (f1["precision"], f1["recall"], f1["f1"]) == (0.5, 0.5, 0.5)


def test_an_event_prefers_the_open_gesture_of_its_class() -> None:
    # two gestures whose windows overlap at t = 2.5 (late_s 1): the "right" event takes the
    # right gesture, leaving the left one to the left event that follows
    gestures = [gesture(1.0, 2.0, "left"), gesture(2.2, 3.0, "right")]
    events = [EmittedEvent(2.5, "right"), EmittedEvent(2.6, "left")]
    assert match_events(events, gestures, late_s=1.0) == {0: 1, 1: 0}
    assert gesture_event_metrics(events, gestures, 10.0, 1.0)["event_f1"]["f1"] == 1.0


# --- none recall by what was shown ---

def clip(first: float, last: float, gate: list[float]) -> ClipRecord:
    return ClipRecord(first, last, {"gesture": np.array([1.0, 0.0, 0.0])},
                      gate=np.array(gate))


def test_none_recall_by_kind(tmp_path) -> None:
    spans = [ShownSpan(0.0, 2.0, "idle"), ShownSpan(2.0, 3.0, "gesture"),
             ShownSpan(3.0, 6.0, "walker"), ShownSpan(6.0, 9.0, "real")]
    path = tmp_path / "shown.csv"
    write_shown(path, [(s.start, s.end, s.kind) for s in spans])
    assert read_shown(path) == spans
    intervals = [Interval(2.0, 3.0, "gesture", "left", 2)]
    clips = [clip(0.0, 1.0, [0.1, 0.1, 0.8]),   # idle, said none
             clip(2.0, 2.9, [0.1, 0.8, 0.1]),   # the gesture: not a none clip
             clip(3.0, 4.0, [0.1, 0.8, 0.1]),   # walker, said gesture
             clip(4.5, 5.5, [0.1, 0.1, 0.8]),   # walker, said none
             clip(6.0, 8.5, [0.1, 0.1, 0.8])]   # real, said none
    assert clip_kind(clips[2], spans) == "walker"
    r = none_recall(clips, intervals, ["action", "gesture"], spans)
    assert r is not None
    assert (r["recall"], r["clips"]) == (0.75, 4)
    assert r["by_kind"] == {"idle": {"recall": 1.0, "clips": 1},
                            "real": {"recall": 1.0, "clips": 1},
                            "walker": {"recall": 0.5, "clips": 2}}


def test_a_shown_file_with_an_unknown_kind_is_refused(tmp_path) -> None:
    path = tmp_path / "shown.csv"
    path.write_text("start,end,shown\n0,1,idle\n1,2,dancing\n")
    with pytest.raises(ValueError, match=r"shown.csv:3: unknown kind 'dancing'"):
        read_shown(path)


# --- decision settings stored in a checkpoint ---

def info(stored: dict[str, object] | None) -> CheckpointInfo:
    provenance = {} if stored is None else {PROVENANCE_KEY: stored}
    return CheckpointInfo(ModelConfig(method="hps", width=8, num_classes=(2, 3), gate=True),
                          (("a", "b"), CLASSES), PreprocessConfig(), provenance)


STORED = {"event_source": "gate", "event_threshold": 0.8, "event_smoothing": "hmm",
          "event_switch_prob": 0.05, "event_class_weights": "activity"}


def test_stored_decisions_are_the_defaults_and_an_explicit_setting_wins() -> None:
    config, line = with_stored_decisions(StreamConfig(), info(STORED), set())
    assert (config.event_threshold, config.event_smoothing, config.event_switch_prob,
            config.event_class_weights) == (0.8, "hmm", 0.05, "activity")
    assert line is not None and "event_threshold=0.8" in line
    given = StreamConfig(event_threshold=0.6)
    config, _ = with_stored_decisions(given, info(STORED), explicit_settings(given))
    assert (config.event_threshold, config.event_smoothing) == (0.6, "hmm")
    # named on the command line at its default value: still the user's choice
    config, _ = with_stored_decisions(StreamConfig(), info(STORED), {"event_threshold"})
    assert config.event_threshold == 0.5


def test_stored_decisions_apply_to_their_own_source_only() -> None:
    baseline = StreamConfig(event_source="max_softmax")
    assert with_stored_decisions(baseline, info(STORED), set()) == (baseline, None)
    assert with_stored_decisions(StreamConfig(), info(None), set()) == (StreamConfig(), None)


def test_bad_stored_decisions_are_one_clear_error() -> None:
    with pytest.raises(StreamConfigError, match="stored stream_defaults.*event_threshold"):
        with_stored_decisions(StreamConfig(), info({"event_threshold": 1.7}), set())


@pytest.mark.parametrize("name, value", [("event_smoothing", "kalman"),
                                         ("event_ema_alpha", 0.0),
                                         ("event_switch_prob", 0.6),
                                         ("event_class_weights", "max")])
def test_bad_decision_settings_are_refused(name: str, value: object) -> None:
    with pytest.raises(StreamConfigError, match=name):
        StreamConfig(**{name: value})  # type: ignore[arg-type]


TUNED = {**STORED, "chosen_on": {"stream": {"target_fps": 8.333, "inference_stride": 2}}}


def test_the_rate_and_stride_the_settings_were_chosen_at_are_the_defaults() -> None:
    # fit-gate chose the settings on a stream at 25 fps / frame step 3, a clip every 2
    # sampled frames; StreamConfig's defaults are 15 fps and 8
    config, line = with_stored_decisions(StreamConfig(), info(TUNED), set())
    assert (config.inference_stride, config.event_threshold) == (2, 0.8)
    assert line is not None and "inference_stride=2" in line
    config, line = choose_target_fps(StreamConfig(), info(TUNED), explicit=False)
    assert config.target_fps == 8.333
    assert line is not None and "target_fps 8.333 (not 15)" in line
    assert "3.72 s" in line  # 31 frame periods at 8.333 fps
    # the user's own values win; a max_softmax stream takes neither stored setting
    given = StreamConfig(inference_stride=4)
    assert with_stored_decisions(given, info(TUNED), explicit_settings(given))[0] == \
        dataclasses.replace(given, event_threshold=0.8, event_smoothing="hmm",
                            event_switch_prob=0.05, event_class_weights="activity")
    assert choose_target_fps(StreamConfig(target_fps=25), info(TUNED), True)[0].target_fps == 25
    warning = rate_warning(StreamConfig(target_fps=25), info(TUNED))  # said once, at start
    assert warning is not None and "chosen (fit-gate) on a stream at 8.333 fps" in warning
    assert rate_warning(StreamConfig(target_fps=8.333), info(TUNED)) is None
    baseline = StreamConfig(event_source="max_softmax")
    assert with_stored_decisions(baseline, info(TUNED), set()) == (baseline, None)


@pytest.mark.parametrize("stream", [None, "8.3 fps", {"target_fps": True, "inference_stride": 2.0},
                                    {"target_fps": float("nan"), "inference_stride": 0},
                                    {"target_fps": -6.25, "inference_stride": "2"}])
def test_an_unusable_chosen_on_stream_changes_nothing(stream: object) -> None:
    stored = {**STORED, "chosen_on": {"stream": stream}}
    assert (tuned_stream_fps(info(stored)), tuned_stride(info(stored))) == (None, None)
    config, _ = with_stored_decisions(StreamConfig(), info(stored), set())
    assert config.inference_stride == StreamConfig().inference_stride
    assert choose_target_fps(StreamConfig(), info(stored), explicit=False) == (
        StreamConfig(), None)


def test_stored_decisions_read_back_from_a_checkpoint_file(tmp_path) -> None:
    import json

    from mtl_perception.checkpoint import (
        info_metadata,
        load_checkpoint,
        read_checkpoint_info,
        save_checkpoint,
    )
    from mtl_perception.models import build_model

    written = info(STORED)
    path = tmp_path / "gated.safetensors"
    save_checkpoint(path, build_model(written.model).eval(), written)
    read = read_checkpoint_info(path)
    config, _ = with_stored_decisions(StreamConfig(), read, set())
    assert (config.event_threshold, config.event_smoothing, config.event_switch_prob) == (
        0.8, "hmm", 0.05)
    assert load_checkpoint(path).info.provenance[PROVENANCE_KEY] == STORED
    # what export writes into the .onnx metadata carries them too
    assert json.loads(info_metadata(read))["provenance"][PROVENANCE_KEY] == STORED


def test_a_shown_span_past_the_bags_end_is_refused_with_half_a_second_of_slack(tmp_path) -> None:
    path = tmp_path / "shown.csv"
    path.write_text("start,end,shown\n0,5.8,idle\n5.8,100,real\n")
    with pytest.raises(ValueError, match=r"shown.csv:3: span \[5.8, 100.0\] s lies outside the "
                                         r"bag \(\[0, 5.400\] s"):
        read_shown(path, span_s=5.4)
    path.write_text("start,end,shown\n0,5.8,idle\n")
    assert read_shown(path, span_s=5.4) == [ShownSpan(0.0, 5.8, "idle")]
