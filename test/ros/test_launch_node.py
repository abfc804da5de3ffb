"""The real node under real ROS 2: launch it, publish synthetic images, expect results.

Runs where ROS 2 (rclpy, launch_testing, vision_msgs) is sourced and this
package is built into the workspace (`colcon build`, then `colcon test
--packages-select mtl_perception` or `python -m pytest test/ros`); skipped
cleanly everywhere else, e.g. on the build machines of this project, where
test/test_node.py covers the node's logic against an rclpy stand-in.

Launches launch/perception.launch.py as a user would (autostart configures and
activates the lifecycle node) with a tiny checkpoint written here, publishes
frames at 15 frames/s of stamp time, and checks that Classification messages
arrive on /human/action and /human/gesture carrying the stamps and frame id of
published images.
"""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("launch_testing")
rclpy = pytest.importorskip("rclpy")
pytest.importorskip("launch_ros")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("sensor_msgs.msg")
ament_index = pytest.importorskip("ament_index_python.packages")
try:
    ament_index.get_package_prefix("mtl_perception")
except ament_index.PackageNotFoundError:
    pytest.skip("mtl_perception is not built into the sourced workspace (colcon build)",
                allow_module_level=True)

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Classification  # noqa: E402

from launch import LaunchDescription  # noqa: E402
from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint  # noqa: E402
from mtl_perception.models import ModelConfig, build_model  # noqa: E402
from mtl_perception.preprocess import PreprocessConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "/test_camera/image_raw"
FPS = 15
HEIGHT, WIDTH = 48, 64


def _tiny_checkpoint() -> str:
    config = ModelConfig(width=4, task_names=("action", "gesture"), num_classes=(3, 4))
    info = CheckpointInfo(
        model=config,
        class_names=(("wave", "walk", "sit"), ("one", "two", "three", "four")),
        preprocess=PreprocessConfig(clip_length=4, resize=(32, 32), crop=(32, 32)),
    )
    path = Path(tempfile.mkdtemp(prefix="mtl_perception_launch_")) / "best.safetensors"
    save_checkpoint(path, build_model(config), info)
    return str(path)


@pytest.mark.launch_test
def generate_test_description() -> tuple[LaunchDescription, dict]:
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(ROOT / "launch" / "perception.launch.py")),
        launch_arguments={
            "config": str(ROOT / "config" / "perception.yaml"),
            "checkpoint": _tiny_checkpoint(),
            "image_topic": TOPIC,
            "device": "cpu",
        }.items(),
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()]), {}


def _image(index: int) -> Image:
    msg = Image()
    msg.header.stamp.sec = 100 + index // FPS
    msg.header.stamp.nanosec = (index % FPS) * (1_000_000_000 // FPS)
    msg.header.frame_id = "test_camera"
    msg.height, msg.width, msg.encoding, msg.is_bigendian = HEIGHT, WIDTH, "rgb8", 0
    msg.step = WIDTH * 3
    msg.data = bytes([(index * 7) % 256]) * (HEIGHT * WIDTH * 3)
    return msg


class TestResultsCarryImageStamps(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()

    @classmethod
    def tearDownClass(cls) -> None:
        rclpy.shutdown()

    def test_classification_on_both_topics(self) -> None:
        node = rclpy.create_node("perception_launch_probe")
        received: dict[str, list[Classification]] = {"action": [], "gesture": []}
        for task in received:
            node.create_subscription(
                Classification, f"/human/{task}", received[task].append, 10
            )
        publisher = node.create_publisher(Image, TOPIC, 10)
        sent: set[tuple[int, int]] = set()
        deadline = time.monotonic() + 120.0  # configure loads the model first
        index = 0
        try:
            while time.monotonic() < deadline and not all(received.values()):
                msg = _image(index)
                publisher.publish(msg)
                sent.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
                index += 1
                rclpy.spin_once(node, timeout_sec=1.0 / FPS)
        finally:
            node.destroy_node()
        for task, messages in received.items():
            self.assertTrue(messages, f"no Classification on /human/{task}")
            for result in messages:
                stamp = (result.header.stamp.sec, result.header.stamp.nanosec)
                self.assertIn(stamp, sent, f"/human/{task}: stamp {stamp} was never published")
                self.assertEqual(result.header.frame_id, "test_camera")
                self.assertTrue(result.results, "top_k results with threshold 0 are never empty")


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    def test_exit_code(self, proc_info: Any) -> None:
        # SIGINT from launch at the end: the node joins its worker and exits 0.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
