"""Core results -> the plain contents of the node's messages (no rclpy here).

The node copies these values into `vision_msgs` / `diagnostic_msgs` objects;
keeping the translation here lets it be tested without ROS 2 and keeps the
node a thin shell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.stream import CameraStats, ClipResult, GestureEvent, StreamStats

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class StatusData:
    """One diagnostic_msgs/DiagnosticStatus, as plain values."""

    name: str
    level: int
    message: str
    hardware_id: str
    values: tuple[tuple[str, str], ...]


def hypotheses(result: ClipResult, task: str) -> list[tuple[str, float]]:
    """`(class_id, score)` pairs of one task, best first (already top-k and thresholded)."""
    return [(name, float(score)) for name, score in result.tasks[task].top]


# The task gate's topic and the gesture events' topic (INTERFACES.md).
TASK_TOPIC = "/human/task"
EVENTS_TOPIC = "/human/gesture/events"
NONE_CLASS = "none"


def gate_classes(task_names: tuple[str, ...]) -> tuple[str, ...]:
    """The gate's classes in its output order: the tasks, then "none"."""
    return (*task_names, NONE_CLASS)


def task_hypotheses(result: ClipResult) -> list[tuple[str, float]]:
    """`/human/task`: every gate class and its probability, best first (empty without a gate)."""
    gate = result.gate
    if gate is None:
        return []
    names = gate_classes(tuple(result.tasks))
    order = sorted(range(len(names)), key=lambda i: -float(gate[i]))
    return [(names[i], float(gate[i])) for i in order]


def event_hypotheses(event: GestureEvent) -> list[tuple[str, float]]:
    """`/human/gesture/events`: the gesture and its score."""
    return [(event.label, float(event.score))]


def label_map(info: CheckpointInfo, task: str) -> list[tuple[int, str]]:
    """LabelInfo's class_map: (index the model outputs, class name)."""
    return list(enumerate(info.classes_of(task)))


def result_topic(task: str) -> str:
    """Where a task's results go: /human/action, /human/gesture, ..."""
    return f"/human/{task}"


def describe_model(info: CheckpointInfo, clip_length: int) -> str:
    """One line naming the model, for the log and /diagnostics."""
    model = info.model
    tasks = ", ".join(f"{t} ({n} classes)" for t, n in zip(model.task_names, model.num_classes))
    return (
        f"{model.method} {model.arch} width {model.width}; {tasks}; clip {clip_length} frames "
        f"of {info.preprocess.crop[0]}x{info.preprocess.crop[1]}"
    )


def diagnostic_statuses(
    stats: StreamStats,
    previous: StreamStats | None,
    node_name: str,
    model: str,
) -> list[StatusData]:
    """One status for inference, one per camera; levels from what changed since `previous`.

    Counters are cumulative; a level reflects the last period only, so a
    camera that dropped frames an hour ago is not flagged forever.
    """
    before = previous.cameras if previous is not None else {}
    failed = stats.inference_errors - (previous.inference_errors if previous else 0)
    statuses = [_inference_status(stats, failed, node_name, model)]
    for camera in sorted(stats.cameras):
        statuses.append(
            _camera_status(camera, stats.cameras[camera], before.get(camera), node_name)
        )
    return statuses


def _inference_status(stats: StreamStats, failed: int, node_name: str, model: str) -> StatusData:
    values = (
        ("device", stats.device),
        ("model", model),
        ("batches_run", str(stats.batches_run)),
        ("clips_run", str(stats.clips_run)),
        ("clips_dropped", str(stats.clips_dropped)),
        ("frames_dropped", str(stats.frames_dropped)),
        ("inference_errors", str(stats.inference_errors)),
        ("inference_ms_p50", _ms(stats.inference_ms.p50)),
        ("inference_ms_p95", _ms(stats.inference_ms.p95)),
        ("frame_to_result_ms_p50", _ms(stats.latency_ms.p50)),
        ("frame_to_result_ms_p95", _ms(stats.latency_ms.p95)),
    )
    level = OK
    if failed > 0:
        level, message = ERROR, f"{failed} forward passes failed (see the log)"
    elif stats.clips_run == 0:
        message = f"waiting for the first clip on {stats.device}"
    else:
        message = (
            f"{stats.clips_run} clips run on {stats.device}, frame-to-result p95 "
            f"{_ms(stats.latency_ms.p95)} ms"
        )
    return StatusData(f"{node_name}: inference", level, message, node_name, values)


def _camera_status(
    camera: str, now: CameraStats, before: CameraStats | None, node_name: str
) -> StatusData:
    before = before or CameraStats()
    new_frames = now.frames_received - before.frames_received
    new_decode_errors = now.decode_errors - before.decode_errors
    new_drops = now.clips_dropped - before.clips_dropped
    new_late = now.frames_late - before.frames_late
    new_repeated = now.frames_repeated - before.frames_repeated
    new_nonfinite = now.clips_nonfinite - before.clips_nonfinite
    new_other = now.frames_other_frame_id - before.frames_other_frame_id
    if new_decode_errors > 0:
        level, message = ERROR, f"{new_decode_errors} frames could not be decoded (see the log)"
    elif new_nonfinite > 0:
        level, message = ERROR, (f"the model gave NaN or inf for {new_nonfinite} clips: "
                                 "skipped (see the log)")
    elif new_frames == 0:
        level, message = WARN, "no frames since the last report"
    elif new_drops > 0:
        level, message = WARN, f"inference falls behind: {new_drops} clips dropped"
    elif new_other > 0:
        level, message = WARN, (f"{new_other} frames with another frame_id than the clips' "
                                "(two cameras on one topic?): dropped")
    elif new_late > 0 or new_repeated > 0:
        level, message = WARN, (f"{new_late} frames arrived late and {new_repeated} repeated "
                                "a stamp: dropped (stamps out of order)")
    else:
        level, message = OK, f"{now.input_fps:.1f} frames/s in"
    values = (
        ("input_fps", f"{now.input_fps:.2f}"),
        ("frames_received", str(now.frames_received)),
        ("frames_sampled", str(now.frames_sampled)),
        ("frames_dropped", str(now.frames_dropped)),
        ("decode_errors", str(now.decode_errors)),
        ("buffer_resets", str(now.resets)),
        ("clips_made", str(now.clips_made)),
        ("clips_run", str(now.clips_run)),
        ("clips_dropped", str(now.clips_dropped)),
        ("frames_late", str(now.frames_late)),
        ("frames_repeated", str(now.frames_repeated)),
        ("clips_nonfinite", str(now.clips_nonfinite)),
        ("frames_other_frame_id", str(now.frames_other_frame_id)),
    )
    return StatusData(f"{node_name}: camera {camera}", level, message, camera, values)


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"
