"""Writing one evaluation's files into the staging folder (see `outputs.py`)."""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtl_perception.bag.outputs import BAG, METRICS, PREDICTIONS, REPORT, TOOL
from mtl_perception.bag.reader import Bag, RawMessage
from mtl_perception.bag.report import plot_confusions, write_report
from mtl_perception.bag.run import Evaluation
from mtl_perception.bag.timeline import plot_timeline
from mtl_perception.bag.types import (
    CLASSIFICATION,
    IMAGE_TYPES,
    LABEL_INFO,
    classification,
    label_info,
)
from mtl_perception.bag.writer import BagWriter, Storage, ros2_image
from mtl_perception.ros.messages import EVENTS_TOPIC, TASK_TOPIC, event_hypotheses, task_hypotheses
from mtl_perception.settings import to_dict
from mtl_perception.stream.config import publishes_gate

if TYPE_CHECKING:
    from mtl_perception.stream.events import GestureEvent

LOG = logging.getLogger("evaluate_bag")
PREDICTION_TOPIC = "/human/{task}"
LABEL_INFO_TOPIC = "/human/{task}/label_info"


def write_outputs(stage: Path, evaluation: Evaluation, args: argparse.Namespace) -> None:
    document = metrics_document(evaluation, args)
    evaluation.plots = plot_confusions(stage, evaluation.tasks, document)
    if "frame_ap" in document:  # --unlabelled none
        evaluation.timeline = plot_timeline(
            stage, evaluation.records(), evaluation.intervals, evaluation.emitted_events(),
            evaluation.tasks, evaluation.config.event_threshold)
    write_report(stage / REPORT, document, evaluation.tasks, evaluation.plots,
                 evaluation.timeline)
    _predictions_csv(stage / PREDICTIONS, evaluation)
    if args.write_bag:
        write_prediction_bag(stage / BAG, evaluation, args.bag, args.image_topic)
    (stage / METRICS).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def metrics_document(evaluation: Evaluation, args: argparse.Namespace) -> dict[str, Any]:
    """INTERFACES.md's keys first, then the extras (what was read, timing, settings)."""
    m = evaluation.metrics
    document: dict[str, Any] = {t: m[t] for t in evaluation.tasks}
    for key in ("cumulative_accuracy", "clips", "latency_ms", "frames_per_second"):
        document[key] = m[key]
    for key in ("task_confusion", "none_recall", "gesture_events", "frame_ap"):  # untrimmed
        if key in m:
            document[key] = m[key]
    stats = evaluation.stats
    camera = stats.cameras.get(evaluation.read.topic)
    document.update(
        tool=TOOL,
        checkpoint=str(args.checkpoint),
        labels=str(args.labels),
        unlabelled=getattr(args, "unlabelled", "ignore"),
        read=evaluation.read.as_dict(),
        warnings=list(evaluation.warnings),
        images=evaluation.images,
        stamp_order={"reorder_window_s": evaluation.order.window_s,
                     "reordered": evaluation.order.reordered, "late": evaluation.order.late,
                     "jumps_back": evaluation.order.jumps_back},
        frames=to_dict(camera) if camera is not None else {},
        timing={k: round(v, 4) for k, v in evaluation.timing.items()},
        frame_to_result_ms={"p50": _nan_none(stats.latency_ms.p50),
                            "p95": _nan_none(stats.latency_ms.p95)},
        device=evaluation.device,
        engine=evaluation.engine,
        settings=to_dict(evaluation.config),
    )
    if evaluation.config.gate == "filter":  # say what each output scores
        document["gate_filter"] = (
            "applied to the published results only (the --write-bag copy's messages: a task "
            "the gate gives less than gate_threshold publishes an empty list); the "
            "accuracies and predictions.csv score every clip's task scores, unfiltered")
    return document


def _nan_none(value: float) -> float | None:
    return None if value != value else value


def _predictions_csv(path: Path, evaluation: Evaluation) -> None:
    """One row per clip: its span (s from the first image) and each task's best class."""
    t0 = evaluation.first_stamp_ns
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        header = ["first_s", "last_s"]
        for task in evaluation.tasks:
            header += [f"{task}", f"{task}_score"]
        writer.writerow(header)
        for result in evaluation.results:
            row: list[Any] = [f"{(result.first_stamp_ns - t0) / 1e9:.6f}",
                              f"{(result.last_stamp_ns - t0) / 1e9:.6f}"]
            for task in evaluation.tasks:
                smoothed = result.tasks[task].smoothed
                best = int(smoothed.argmax())
                row += [evaluation.class_names[task][best], f"{float(smoothed[best]):.6f}"]
            writer.writerow(row)


def write_prediction_bag(path: Path, evaluation: Evaluation, source: Path,
                         image_topic: str | None) -> None:
    """The input's messages plus the predictions, merged by log time, as a rosbag2.

    A rosbag2 input is copied message for message (every topic, its own
    definitions) in its own storage format; a ROS 1 input contributes its
    image topic, converted to ROS 2 messages, into an mcap bag. Each
    prediction is logged at the log time of its clip's last image. The input's own
    messages on a topic this run writes (a bag recorded with the node running, or an
    earlier `--write-bag` output) are left out, with a warning: mixed in, they would
    double the predictions, and a topic of another type would make the bag invalid.
    """
    storage: Storage = "sqlite3" if evaluation.read.storage == "sqlite3" else "mcap"
    pending = _prediction_messages(evaluation)
    ours = {item[1] for item in pending} | {LABEL_INFO_TOPIC.format(task=task)
                                              for task in evaluation.tasks}
    dropped: dict[str, int] = {}
    position = 0
    with Bag(source, image_topic) as bag, BagWriter(path, storage) as writer:
        stamp = evaluation.first_stamp_ns
        for task in evaluation.tasks:  # once, at the first image (latched in a live system)
            msg = label_info(stamp, "", evaluation.class_names[task],
                             evaluation.config.score_threshold)
            writer.write(LABEL_INFO_TOPIC.format(task=task), LABEL_INFO,
                         evaluation.first_log_time_ns, msg)
        skipped: set[str] = set()
        for raw in bag.raw_messages():
            while position < len(pending) and pending[position][0] < raw.log_time_ns:
                writer.write(*pending[position][1:])
                position += 1
            if raw.topic in ours:
                dropped[raw.topic] = dropped.get(raw.topic, 0) + 1
            elif raw.topic not in skipped:
                _copy(writer, bag, raw, skipped)
        for item in pending[position:]:
            writer.write(*item[1:])
    if dropped:
        LOG.warning("--write-bag: the input's own %s left out (this run writes those "
                    "topics)", ", ".join(f"{t} ({n} messages)"
                                         for t, n in sorted(dropped.items())))
    if bag.report.warning:
        LOG.warning("--write-bag copy: %s", bag.report.warning)


def _prediction_messages(evaluation: Evaluation) -> list[tuple[int, str, str, int, Any]]:
    """(sort time, topic, msgtype, log time, message) for every clip and task; like the
    node, `/human/task` and `/human/gesture/events` only under `gate` publish or filter
    with a model that has a gate.

    Each clip (and the gesture event decided at it) is logged at the log time of the
    message that completed it (recorded per message by `run_pipeline`, so repeated
    stamps cannot mix them up); an event the end of the bag decided, at its camera's
    last clip.
    """
    out = []
    gate_topics = publishes_gate(evaluation.config.gate,
                                 any(r.gate is not None for r in evaluation.results))
    last_log_time: dict[str, int] = {}
    for result in evaluation.results:
        stamp = result.header.stamp_ns
        log_time = evaluation.log_times[result.sequence]
        last_log_time[result.camera] = log_time
        for task in evaluation.tasks:
            msg = classification(stamp, result.header.frame_id, result.tasks[task].top)
            out.append((log_time, PREDICTION_TOPIC.format(task=task), CLASSIFICATION,
                        log_time, msg))
        if gate_topics and result.gate is not None:
            msg = classification(stamp, result.header.frame_id, task_hypotheses(result))
            out.append((log_time, TASK_TOPIC, CLASSIFICATION, log_time, msg))
        if gate_topics and result.event is not None:
            out.append(_event_message(result.event, log_time))
    for event in evaluation.events if gate_topics else []:
        if event.reason == "end_of_stream":
            out.append(_event_message(event, last_log_time.get(event.camera, event.decision_ns)))
    out.sort(key=lambda item: item[0])  # stable: clips keep their order on equal times
    return out


def _event_message(event: GestureEvent, log_time: int) -> tuple[int, str, str, int, Any]:
    msg = classification(event.decision_ns, event.header.frame_id, event_hypotheses(event))
    return (log_time, EVENTS_TOPIC, CLASSIFICATION, log_time, msg)


def _copy(writer: BagWriter, bag: Bag, raw: RawMessage, skipped: set[str]) -> None:
    """Copy one message; a topic that cannot be copied is left out with one warning."""
    try:
        if raw.cdr:
            writer.write_raw(raw.topic, raw.msgtype, raw.msgdef, raw.digest, raw.log_time_ns,
                             raw.data)
        elif raw.topic == bag.image_topic and raw.msgtype in IMAGE_TYPES:
            msg = bag.deserialize(raw)
            writer.write(raw.topic, raw.msgtype, raw.log_time_ns, ros2_image(msg, raw.msgtype))
        else:
            raise ValueError("ROS 1 messages other than the images are not converted")
    except Exception as exc:  # a type without a definition we can write
        skipped.add(raw.topic)
        LOG.warning("--write-bag: topic %s (%s) left out of the copy: %s", raw.topic,
                    raw.msgtype, exc)
