"""An image topic whose publishers publish another message type (a camera_info topic,
an image_transport theora topic, raw images on a `/compressed` name): DDS never
connects them and no frame arrives. The node says which type it found, once, and
/diagnostics shows an ERROR for that camera instead of "no frames received yet";
on the rclpy stand-in (test/test_node_standin.py)."""

from __future__ import annotations

import types
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import test_node_standin as ros
from test_node import checkpoint, make_node, node_module, state  # noqa: F401

from mtl_perception.ros.cameras import COMPRESSED_TYPE, IMAGE_TYPE, image_type


def active_node(node_module: ModuleType, checkpoint: Path, topic: str,  # noqa: F811
                published: list[str]) -> Any:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu",
                     image_topics=[topic])

    def publishers(name: str) -> list[Any]:  # what rclpy's TopicEndpointInfo tells
        qos = ros.QoSProfile(reliability=ros.ReliabilityPolicy.RELIABLE)
        return [types.SimpleNamespace(qos_profile=qos, topic_type=t) for t in published]

    node.get_publishers_info_by_topic = publishers
    assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.SUCCESS
    assert node.on_activate(state("inactive")) is ros.TransitionCallbackReturn.SUCCESS
    return node


def camera_status(node: Any, topic: str) -> Any:
    node.diagnostics_cb()
    (status,) = [s for s in node.publisher("/diagnostics").sent[-1].status
                 if s.hardware_id == topic]
    return status


@pytest.mark.parametrize(
    ("topic", "published"),
    [("/camera/camera_info", "sensor_msgs/msg/CameraInfo"),
     ("/camera/image_raw/theora", "theora_image_transport/msg/Packet"),
     ("/camera/image_raw/compressed", IMAGE_TYPE)],
)
def test_publishers_of_another_type_are_an_error_said_once(
        node_module: ModuleType, checkpoint: Path,  # noqa: F811
        topic: str, published: str) -> None:
    node = active_node(node_module, checkpoint, topic, [published])
    for _ in range(3):
        status = camera_status(node, topic)
        assert status.level == b"\x02"
        assert published in status.message and image_type(topic) in status.message
    (line,) = [m for m in node.logger.of("warning") if published in m]
    assert line.startswith(f"{topic}: ") and "\n" not in line
    node.release()


@pytest.mark.parametrize(("topic", "published"),
                         [("/camera/image_raw", IMAGE_TYPE),
                          ("/camera/image_raw/compressed", COMPRESSED_TYPE)])
def test_publishers_of_the_read_type_still_wait_for_frames(
        node_module: ModuleType, checkpoint: Path,  # noqa: F811
        topic: str, published: str) -> None:
    node = active_node(node_module, checkpoint, topic, [published])
    status = camera_status(node, topic)
    assert status.level == b"\x01" and status.message.startswith("no frames received yet")
    assert not [m for m in node.logger.of("warning") if "publish" in m and "reads" in m]
    node.release()
