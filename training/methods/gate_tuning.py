"""Choosing the gesture events' decision settings on validation sessions (`fit-gate`).

The gated model is run over held-out validation videos exactly as the live
node runs it (`StreamPipeline`, offline, at the stream rate the model was
trained for: `stream_for`), once; the events are then re-derived from the
recorded clip results under every candidate setting (`CANDIDATES`: the
event threshold and hysteresis, the activity's smoothing, the class
weighting) by the node's own rule (`detect_events`), and scored with the
untrimmed metrics (`mtl_perception.bag.untrimmed`). The choice: the
highest event F1 with the right class among the candidates with at most
`max_false_per_min` false events per minute of `none` (all candidates when
none keeps to it), ties to fewer false events. The chosen settings go into
the checkpoint (`mtl_perception.stream.decisions`).

Validation videos: the train split's untrimmed sessions, in two halves
(`split_validation`, pairs of sessions in turn); fit-gate scores each half
with a gate fitted without that half's `none` clips (cross-fitting), so
neither the task heads nor the gate that scores them saw them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.bag.labels import Interval
from mtl_perception.bag.untrimmed import GESTURE, emitted, gesture_event_metrics
from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.stream import ClipResult, FrameHeader, StreamConfig, StreamPipeline
from mtl_perception.stream.decisions import candidates
from mtl_perception.stream.events import detect_events
from training.datasets.untrimmed import UntrimmedVideo
from training.datasets.video import VideoReader, VideoReadError

LOG = logging.getLogger(__name__)

_CHUNK = 64  # frames decoded at a time

def split_validation(sessions: Sequence[UntrimmedVideo]
                     ) -> tuple[list[UntrimmedVideo], list[UntrimmedVideo]]:
    """(for fitting the gate, for choosing the settings): every other pair of sessions
    (the synthetic ones alternate gesture and action framing, so both get both)."""
    fit = [s for i, s in enumerate(sessions) if (i // 2) % 2 == 0]
    held = [s for i, s in enumerate(sessions) if (i // 2) % 2 == 1]
    return fit, held


def stream_for(info: CheckpointInfo, fps: float, frame_step: int,
               inference_stride: int = 2) -> StreamConfig:
    """The stream settings the model was trained for on `fps` video: a frame every
    `frame_step` (the trained step), a clip every `inference_stride` sampled frames."""
    return StreamConfig(target_fps=round(fps / frame_step, 3), inference_stride=inference_stride,
                        max_gap_s=max(0.5, 2.0 * frame_step / fps), event_source="gate")


@dataclass
class Recorded:
    """One validation video's clip results (stamps from 0 at its first frame)."""

    path: Path
    results: list[ClipResult]
    intervals: list[Interval]
    end_s: float


def stream_results(model: Any, info: CheckpointInfo, config: StreamConfig,
                   frames: Iterable[tuple[np.ndarray, int]]) -> list[ClipResult]:
    """The clip results of `frames` (RGB, header stamp in ns) run through one offline
    stream, the node's code path."""
    results: list[ClipResult] = []
    pipeline = StreamPipeline(model, info, config, on_result=results.append, realtime=False)
    for frame, stamp_ns in frames:
        pipeline.push_frame("val", frame, FrameHeader(stamp_ns))
    pipeline.flush()
    return results


def record(model: Any, info: CheckpointInfo, config: StreamConfig,
           videos: Sequence[UntrimmedVideo]) -> list[Recorded]:
    """Run every video through the offline stream once, stamps from 0 at its first frame.
    A video that does not decode to its end (its header over-counts, a damaged file) is
    left out with a warning: its labels past the damage would count as missed."""
    out = []
    for video in videos:
        try:
            with VideoReader(video.path) as reader:
                total, fps = reader.num_frames, reader.fps
                chunks = (list(range(begin, min(begin + _CHUNK, total)))
                          for begin in range(0, total, _CHUNK))
                results = stream_results(model, info, config, (
                    (frame, round(i * 1e9 / fps))
                    for indices in chunks for i, frame in zip(indices, reader.read(indices))))
        except VideoReadError as exc:
            LOG.warning("left out of choosing the event settings: %s", exc)
            continue
        intervals = [Interval(i.start, i.end, i.task, i.label, 0) for i in video.intervals]
        out.append(Recorded(video.path, results, intervals, (total - 1) / fps))
    return out


def score(recorded: Sequence[Recorded], class_names: Sequence[str], config: StreamConfig,
          late_s: float = 2.0) -> dict[str, Any]:
    """Event F1 with the right class and false events per minute over all videos."""
    events = right = gestures = false = 0
    none_min = 0.0
    for video in recorded:
        found = detect_events(video.results, class_names, config)
        metrics = gesture_event_metrics(emitted(found, 0), video.intervals, video.end_s, late_s)
        events += metrics["events"]
        right += metrics["event_f1"]["right_class"]
        gestures += metrics["true_gestures"]
        false += metrics["false_events"]
        none_min += metrics["none_minutes"]
    precision = right / events if events else 0.0
    recall = right / gestures if gestures else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"event_f1": f1, "precision": precision, "recall": recall, "events": events,
            "gestures": gestures, "false_events": false, "none_minutes": none_min,
            "false_events_per_minute": false / none_min if none_min > 0 else 0.0}


def choose(recorded: Sequence[Recorded], class_names: Sequence[str], base: StreamConfig,
           max_false_per_min: float = 1.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the chosen settings, their validation figures) by the module doc's rule."""
    rows = []
    for settings in candidates():
        figures = score(recorded, class_names, dataclasses.replace(base, **settings))
        rows.append((settings, figures))
    allowed = [r for r in rows if r[1]["false_events_per_minute"] <= max_false_per_min] or rows
    best = max(allowed, key=lambda r: (round(r[1]["event_f1"], 9),
                                       -r[1]["false_events_per_minute"]))
    return best


def stream_defaults(settings: dict[str, Any], figures: dict[str, Any], base: StreamConfig,
                    videos: Sequence[Recorded], max_false_per_min: float) -> dict[str, Any]:
    """The checkpoint provenance's `stream_defaults` (mtl_perception/stream/decisions.py)."""
    gestures = sum(1 for v in videos for i in v.intervals if i.task == GESTURE)
    return {"event_source": "gate", **settings, "chosen_on": {
        "videos": [v.path.name for v in videos], "gestures": gestures,
        "rule": f"best event F1 with <= {max_false_per_min} false events per minute of none",
        "stream": {"target_fps": base.target_fps, "inference_stride": base.inference_stride},
        "figures": figures}}
