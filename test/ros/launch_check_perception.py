"""The real node under ros2 launch: launch it, publish images, expect results.

A launch_testing file, run by `launch_test test/ros/launch_check_perception.py`
where ROS 2 (rclpy, launch_testing, vision_msgs) is sourced and this package
is built into the workspace (`colcon build`); test/ros/test_launch_node.py
runs it so from `colcon test` and pytest. Its name keeps pytest from importing
it: launch_testing's pytest plugin does not load under pytest 9 (setup.cfg
turns it off), and without it pytest would import every launch file it finds.
The node itself is tested over real DDS in every CI run by test/ros_real/;
this adds what only launch does: the launch file's arguments, autostart, and
the exit codes under launch.

Launches launch/perception.launch.py as a user would (autostart configures and
activates the lifecycle node) with a tiny checkpoint written here, publishes
frames at 15 frames/s of stamp time, checks that Classification messages
arrive on /human/action and /human/gesture carrying the stamps and frame id of
published images, then that autostart acted once: cleanup and configure by
hand leave the node inactive.
"""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path
from typing import Any

import launch_testing.actions
import launch_testing.asserts
import rclpy
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from lifecycle_msgs.srv import ChangeState, GetState
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification

from launch import LaunchDescription
from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig

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


    def test_autostart_acts_once(self) -> None:
        """cleanup + configure by hand: the node stays inactive (README's sequence)."""
        node = rclpy.create_node("perception_launch_lifecycle")
        try:
            change = node.create_client(ChangeState, "/perception_node/change_state")
            get = node.create_client(GetState, "/perception_node/get_state")
            self.assertTrue(change.wait_for_service(timeout_sec=30.0))
            self.assertTrue(get.wait_for_service(timeout_sec=30.0))

            def call(client: Any, request: Any) -> Any:
                future = client.call_async(request)
                rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
                return future.result()

            def state() -> str:
                return call(get, GetState.Request()).current_state.label

            deadline = time.monotonic() + 60.0
            while state() != "active" and time.monotonic() < deadline:
                time.sleep(0.2)
            for transition in (4, 2, 1):  # deactivate, cleanup, configure
                request = ChangeState.Request()
                request.transition.id = transition
                self.assertTrue(call(change, request).success, transition)
            time.sleep(3.0)  # the old handler activated within milliseconds
            self.assertEqual(state(), "inactive")
            request = ChangeState.Request()
            request.transition.id = 3  # activate by hand, for the other tests
            self.assertTrue(call(change, request).success)
        finally:
            node.destroy_node()


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    def test_exit_code(self, proc_info: Any) -> None:
        # SIGINT from launch at the end: the node joins its worker and exits 0.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
