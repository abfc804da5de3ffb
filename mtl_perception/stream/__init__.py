"""Streaming core: camera images -> per-frame preprocessing -> clips -> scores.

No ROS import anywhere in this package: the live node (`mtl_perception.ros`)
and offline bag evaluation (`mtl_perception.bag`) both drive the same
`StreamPipeline`, so an accuracy measured on a bag is the accuracy the robot
gets.
"""

from mtl_perception.stream.config import (
    FIXED_REASONS,
    LIVE_SETTINGS,
    StreamConfig,
    StreamConfigError,
)
from mtl_perception.stream.decode import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_image,
    header_of,
    prepare_frame,
)
from mtl_perception.stream.events import (
    EventSettings,
    GestureEvent,
    GestureEventDetector,
    activity,
    detect_events,
)
from mtl_perception.stream.pipeline import StreamPipeline
from mtl_perception.stream.results import ClipResult, FrameHeader, TaskResult
from mtl_perception.stream.stats import CameraStats, Percentiles, StreamStats

__all__ = [
    "FIXED_REASONS",
    "LIVE_SETTINGS",
    "SUPPORTED_ENCODINGS",
    "CameraStats",
    "ClipResult",
    "EventSettings",
    "FrameHeader",
    "GestureEvent",
    "GestureEventDetector",
    "ImageDecodeError",
    "Percentiles",
    "StreamConfig",
    "StreamConfigError",
    "StreamPipeline",
    "StreamStats",
    "TaskResult",
    "activity",
    "decode_image",
    "detect_events",
    "header_of",
    "prepare_frame",
]
