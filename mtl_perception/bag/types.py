"""Message types for bags: the ROS 2 store plus vision_msgs, registered from `.msg` text.

`rosbags` ships the standard ROS 2 message types (sensor_msgs, std_msgs, ...)
but not `vision_msgs`; the package carries the four `.msg` definitions it
publishes (`msg/*.msg`, copied from vision_msgs 4.x, the Humble/Jazzy
release) and registers them here, so bags written by `evaluate_bag --write-bag`
carry the same definitions (and type hashes) a ROS 2 recorder would, and
`ros2 bag info`, Foxglove and `ros2 bag play` read them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from mtl_perception.names import TOPIC_PATTERN, topic_problem  # noqa: F401 (re-exported)

MSG_DIR = Path(__file__).with_name("msg")
VISION_PACKAGE = "vision_msgs"
# Registration order does not matter to rosbags; listed for the readers of this file.
VISION_TYPES = ("ObjectHypothesis", "VisionClass", "Classification", "LabelInfo")


IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
CLASSIFICATION = "vision_msgs/msg/Classification"
LABEL_INFO = "vision_msgs/msg/LabelInfo"


def msg_text(name: str) -> str:
    """The `.msg` definition of one vision_msgs type shipped with the package."""
    return (MSG_DIR / f"{name}.msg").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """ROS 2 Humble's standard types plus the vision_msgs types (built once)."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    types: dict[str, Any] = {}
    for name in VISION_TYPES:
        types.update(get_types_from_msg(msg_text(name), f"{VISION_PACKAGE}/msg/{name}"))
    store.register(types)
    return store


def header(stamp_ns: int, frame_id: str) -> Any:
    """A `std_msgs/Header` with the stamp split into seconds and nanoseconds."""
    store = typestore()
    time_cls = store.types["builtin_interfaces/msg/Time"]
    header_cls = store.types["std_msgs/msg/Header"]
    return header_cls(time_cls(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id)


def classification(stamp_ns: int, frame_id: str, results: Sequence[tuple[str, float]]) -> Any:
    """`vision_msgs/Classification` with `results` (class name, score) in the given order."""
    store = typestore()
    hypothesis = store.types[f"{VISION_PACKAGE}/msg/ObjectHypothesis"]
    cls = store.types[CLASSIFICATION]
    return cls(
        header=header(stamp_ns, frame_id),
        results=[hypothesis(class_id=name, score=float(score)) for name, score in results],
    )


def label_info(stamp_ns: int, frame_id: str, class_names: Sequence[str], threshold: float) -> Any:
    """`vision_msgs/LabelInfo`: class index -> name, and the score threshold."""
    store = typestore()
    vision_class = store.types[f"{VISION_PACKAGE}/msg/VisionClass"]
    cls = store.types[LABEL_INFO]
    return cls(
        header=header(stamp_ns, frame_id),
        class_map=[vision_class(class_id=i, class_name=n) for i, n in enumerate(class_names)],
        threshold=float(threshold),
    )


def stamp_ns(msg: Any) -> int:
    """A message's header stamp in nanoseconds (ROS 1 and ROS 2 field names alike)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 10**9 + int(stamp.nanosec)
