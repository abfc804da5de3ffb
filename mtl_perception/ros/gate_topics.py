"""The node's task-gate outputs: `/human/task` and `/human/gesture/events` (no rclpy here).

Created at configure when the checkpoint has a task gate; what they publish
follows the live `gate` setting:
- off: nothing (the node behaves as without a gate);
- publish / filter: every clip's gate probabilities on `/human/task`
  (`vision_msgs/Classification`, classes action, gesture, none, best first),
  and each gesture event the streaming core decided
  (`mtl_perception/stream/events.py`) on `/human/gesture/events`, stamped
  with the image at which it was decided. `filter`'s empty action/gesture
  results are made by the core itself (`StreamConfig.gate`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vision_msgs.msg import Classification

from mtl_perception.ros import convert, messages
from mtl_perception.stream import ClipResult

# The node's create_lifecycle_publisher(msg_type, topic, qos_depth) and destroy_publisher.
Create = Callable[[Any, str, int], Any]
Destroy = Callable[[Any], Any]


def no_gate_warning(mode: str) -> str:
    return (f"gate: {mode} asked for, but the checkpoint has no task gate: results as with "
            "gate off (add one to a checkpoint with `python -m training fit-gate`)")


class GateTopics:
    """The two publishers; `publish(result, mode)` from the core's worker thread."""

    def __init__(self, create: Create, gesture_task: bool) -> None:
        self.task = create(Classification, messages.TASK_TOPIC, 10)
        self.events = create(Classification, messages.EVENTS_TOPIC, 10) if gesture_task else None

    def publish(self, result: ClipResult, mode: str) -> None:
        if mode == "off" or result.gate is None:
            return
        self.task.publish(convert.task_msg(result))
        if result.event is not None and self.events is not None:
            self.events.publish(convert.event_msg(result.event))

    def destroy(self, destroy: Destroy) -> None:
        for publisher in (self.task, self.events):
            if publisher is not None:
                destroy(publisher)
