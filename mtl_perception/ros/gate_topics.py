"""The node's task-gate outputs: `/human/task` and `/human/gesture/events` (no rclpy here).

Created at configure when the checkpoint has a task gate; what they publish
follows the live `gate` setting:
- off: nothing (the node behaves as without a gate);
- publish / filter (`stream.config.publishes_gate`, the rule result bags follow
  too): every clip's gate probabilities on `/human/task`
  (`vision_msgs/Classification`, classes action, gesture, none, best first),
  and each gesture event the streaming core decided
  (`mtl_perception/stream/events.py`) on `/human/gesture/events`, stamped
  with the image at which it was decided. `filter`'s empty action/gesture
  results are made by the core itself (`StreamConfig.gate`).
`/human/task/label_info` (transient local, from configure on) names the
gate's classes, as each task's `label_info` names its classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vision_msgs.msg import Classification, LabelInfo

from mtl_perception.ros import convert, messages
from mtl_perception.stream import ClipResult
from mtl_perception.stream.config import GateMode, publishes_gate
from mtl_perception.stream.events import GESTURE_TASK

# The node's create_lifecycle_publisher(msg_type, topic, qos_depth) and destroy_publisher;
# create_latched(msg_type, topic): a transient-local publisher (LabelInfo).
Create = Callable[[Any, str, int], Any]
CreateLatched = Callable[[Any, str], Any]
Destroy = Callable[[Any], Any]


def no_gate_warning(mode: str) -> str:
    return (f"gate: {mode} asked for, but the checkpoint has no task gate: results as with "
            "gate off (add one to a checkpoint with `python -m training fit-gate`)")


class GateTopics:
    """The two publishers; `publish(result, mode)` from the core's worker thread."""

    def __init__(self, create: Create, create_latched: CreateLatched,
                 task_names: tuple[str, ...]) -> None:
        self.task = create(Classification, messages.TASK_TOPIC, 10)
        gesture_task = GESTURE_TASK in task_names
        self.events = create(Classification, messages.EVENTS_TOPIC, 10) if gesture_task else None
        # /human/task's classes (the tasks, then none), as each task's results have theirs.
        self.label_info = create_latched(LabelInfo, f"{messages.TASK_TOPIC}/label_info")
        self.classes = messages.gate_classes(task_names)

    def publish_label_info(self, threshold: float, stamp: Any) -> None:
        self.label_info.publish(convert.classes_label_info_msg(self.classes, threshold, stamp))

    def publish(self, result: ClipResult, mode: GateMode) -> None:
        if not publishes_gate(mode, result.gate is not None):
            return
        self.task.publish(convert.task_msg(result))
        if result.event is not None and self.events is not None:
            self.events.publish(convert.event_msg(result.event))

    def destroy(self, destroy: Destroy) -> None:
        for publisher in (self.task, self.events, self.label_info):
            if publisher is not None:
                destroy(publisher)
