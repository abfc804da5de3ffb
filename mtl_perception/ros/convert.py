"""Core values -> ROS 2 messages (message packages only; rclpy stays in node.py).

The parsing helpers of the node, in the manner of yolo_ros: each builds one
message from the streaming core's plain results, so the node itself only
wires subscriptions, publishers and lifecycle together.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, LabelInfo, ObjectHypothesis, VisionClass

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.ros import messages
from mtl_perception.ros.params import ParamSpec
from mtl_perception.stream import ClipResult, FrameHeader, GestureEvent

_TYPE_IDS = {
    "string": ParameterType.PARAMETER_STRING,
    "string_array": ParameterType.PARAMETER_STRING_ARRAY,
    "bool": ParameterType.PARAMETER_BOOL,
    "integer": ParameterType.PARAMETER_INTEGER,
    "double": ParameterType.PARAMETER_DOUBLE,
}


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """The ParameterDescriptor of one parameter-table row: type, description, range."""
    descriptor = ParameterDescriptor()
    descriptor.name = spec.name
    descriptor.type = _TYPE_IDS[spec.type]
    descriptor.description = spec.description
    descriptor.additional_constraints = spec.constraints
    if spec.low is not None and spec.high is not None:
        if spec.type == "double":
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
            ]
        elif spec.type == "integer":
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)
            ]
    return descriptor


def header_msg(frame: FrameHeader) -> Header:
    """A frame's header as a message (results carry their clip's last frame's)."""
    header = Header()
    header.stamp.sec = frame.sec
    header.stamp.nanosec = frame.nanosec
    header.frame_id = frame.frame_id
    return header


def classification_msg(result: ClipResult, task: str) -> Classification:
    """One task's top-k of one clip, stamped with the clip's last image's header."""
    msg = Classification()
    msg.header = header_msg(result.header)
    msg.results = [
        ObjectHypothesis(class_id=name, score=score)
        for name, score in messages.hypotheses(result, task)
    ]
    return msg


def hypotheses_msg(frame: FrameHeader, pairs: Sequence[tuple[str, float]]) -> Classification:
    """A Classification with `pairs` (class_id, score) in the given order."""
    msg = Classification()
    msg.header = header_msg(frame)
    msg.results = [ObjectHypothesis(class_id=name, score=score) for name, score in pairs]
    return msg


def task_msg(result: ClipResult) -> Classification:
    """`/human/task`: the gate's action / gesture / none probabilities of one clip."""
    return hypotheses_msg(result.header, messages.task_hypotheses(result))


def event_msg(event: GestureEvent) -> Classification:
    """`/human/gesture/events`: one gesture, stamped with the image it was decided at."""
    return hypotheses_msg(event.header, messages.event_hypotheses(event))


def label_info_msg(info: CheckpointInfo, task: str, threshold: float, stamp: Any) -> LabelInfo:
    return classes_label_info_msg(info.classes_of(task), threshold, stamp)


def classes_label_info_msg(classes: Sequence[str], threshold: float, stamp: Any) -> LabelInfo:
    """LabelInfo: class index (the model's output order) -> name, and the threshold."""
    msg = LabelInfo()
    msg.header.stamp = stamp
    msg.class_map = [
        VisionClass(class_id=index, class_name=name) for index, name in enumerate(classes)
    ]
    msg.threshold = float(threshold)
    return msg


def diagnostics_msg(statuses: Sequence[messages.StatusData], stamp: Any) -> DiagnosticArray:
    out = DiagnosticArray()
    out.header.stamp = stamp
    for data in statuses:
        status = DiagnosticStatus()
        status.level = bytes([data.level])  # a `byte` field: bytes of length 1 in rclpy
        status.name, status.message, status.hardware_id = data.name, data.message, data.hardware_id
        status.values = [KeyValue(key=k, value=v) for k, v in data.values]
        out.status.append(status)
    return out


def rgb_image_msg(rgb: np.ndarray, frame: FrameHeader) -> Image:
    """An RGB uint8 (H, W, 3) array as an rgb8 Image."""
    out = Image()
    out.header = header_msg(frame)
    out.height, out.width = rgb.shape[0], rgb.shape[1]
    out.encoding, out.is_bigendian, out.step = "rgb8", 0, rgb.shape[1] * 3
    # array('B') is how rclpy stores uint8[]; handing it bytes would make the
    # setter check every byte in Python.
    out.data = array.array("B", np.ascontiguousarray(rgb).tobytes())
    return out
