"""Everything the node publishes, created at configure, destroyed at cleanup (no rclpy here).

- `/human/<task>` per task (`vision_msgs/Classification`), lifecycle
  publishers: silent until the node is active;
- `/human/<task>/label_info` (and `/human/task/label_info` with a task gate):
  transient local, published once at configure, so a late subscriber gets it;
- `/diagnostics`, and `~/annotated_image` when `publish_annotated` is set;
- the task gate's topics (`GateTopics`) for a model that has a gate.
The node hands in its publisher factories, so rclpy stays in node.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification, LabelInfo

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.ros import convert, messages
from mtl_perception.ros.annotate import draw_lines, result_lines
from mtl_perception.ros.gate_topics import Create, CreateLatched, GateTopics
from mtl_perception.stream import ClipResult, ImageDecodeError, StreamConfig, StreamPipeline
from mtl_perception.stream.config import publishes_gate


class Publishers:
    """The node's publishers for one configured model."""

    def __init__(self, create: Create, create_latched: CreateLatched,
                 destroy: Callable[[Any], Any], info: CheckpointInfo, annotate: bool,
                 gate: bool) -> None:
        self._destroy = destroy
        self.info = info
        tasks = info.model.task_names
        self.results = {task: create(Classification, messages.result_topic(task), 10)
                        for task in tasks}
        self.labels = {task: create_latched(LabelInfo, f"{messages.result_topic(task)}/label_info")
                       for task in tasks}
        self.diagnostics = create(DiagnosticArray, "/diagnostics", 10)
        self.annotated = create(Image, "~/annotated_image", 2) if annotate else None
        self.gate = GateTopics(create, create_latched, tasks) if gate else None
        # Newest result per camera not yet drawn (written by the worker thread).
        self._to_draw: dict[str, ClipResult] = {}
        self._lock = threading.Lock()

    def label_info(self, stream: StreamConfig, stamp: Any) -> None:
        for task, publisher in self.labels.items():
            publisher.publish(convert.label_info_msg(self.info, task, stream.score_threshold,
                                                     stamp))
        if self.gate is not None:
            self.gate.publish_label_info(stream.gate_threshold, stamp)

    def result(self, result: ClipResult, stream: StreamConfig) -> None:
        """From the core's worker thread; the image drawn is the camera's next frame."""
        if self.annotated is not None:
            with self._lock:
                self._to_draw[result.camera] = result
        for task, publisher in self.results.items():
            publisher.publish(convert.classification_msg(result, task))
        if self.gate is not None:
            self.gate.publish(result, stream.gate)

    def status(self, statuses: Sequence[messages.StatusData], stamp: Any) -> None:
        self.diagnostics.publish(convert.diagnostics_msg(statuses, stamp))

    def annotate(self, pipeline: StreamPipeline, camera: str) -> None:
        """The camera's newest sampled frame with its newest result not yet drawn."""
        if self.annotated is None:
            return
        with self._lock:
            result = self._to_draw.pop(camera, None)
        if result is None:
            return
        try:
            latest = pipeline.latest_frame(result.camera)
        except ImageDecodeError:  # already reported once by the core's on_error
            return
        if latest is None:
            return
        frame, header = latest
        shown = [(task, r.top) for task, r in result.tasks.items()]
        if publishes_gate(pipeline.config.gate, self.gate is not None):
            shown.append(("task", tuple(messages.task_hypotheses(result))))
        lines = result_lines(shown)
        self.annotated.publish(convert.rgb_image_msg(draw_lines(frame, lines), header))

    def destroy(self) -> None:
        for publisher in [*self.results.values(), *self.labels.values(), self.diagnostics,
                          self.annotated]:
            if publisher is not None:
                self._destroy(publisher)
        if self.gate is not None:
            self.gate.destroy(self._destroy)
