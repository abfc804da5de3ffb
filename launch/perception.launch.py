"""Launch the perception node: `ros2 launch mtl_perception perception.launch.py`.

A managed (lifecycle) node, as Nav2 and yolo_ros run theirs: with
`autostart:=true` (the default) the node configures itself (loads and warms
up the model) and activates (subscribes and publishes) at start (its
parameter `autostart`), so `ros2 launch` alone gives a running node. Autostart
acts once: after a later `ros2 lifecycle set /perception_node cleanup` and
`... configure` the node stays inactive until you activate it. With
`autostart:=false` it waits for `ros2 lifecycle set /perception_node
configure` and `... activate`. The file itself sends no lifecycle events, so
a node that ends at start (exit 2) cannot leave launch calling a service
that has gone ("Caught exception in launch").

The launch ends with the node: Ctrl-C ends both with exit 0; a node that
cannot run (exit 2: a missing checkpoint, bad parameters) ends the launch,
reported once by launch's "process has died" line.

Launch arguments (all optional):
  config        parameter file (default: the installed config/perception.yaml)
  checkpoint    model checkpoint; overrides the file's `checkpoint`
  image_topic   one camera topic; overrides the file's `image_topics`
  device        auto | cpu | cuda | cuda:N; overrides the file's `device`
  backend       torch | onnxruntime | openvino | tensorrt; overrides the file's `backend`
  namespace     namespace of the node (results stay on /human/*; remap them if needed)
  use_sim_time  true to follow /clock (bag replay)
  autostart     true: configure and activate at launch
  gate          off | publish | filter (task gate); overrides the file's `gate`

Remap a camera without editing the file:
  ros2 launch mtl_perception perception.launch.py image_topic:=/front/color/image_raw
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    OpaqueFunction,
    Shutdown,
)
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchContext, LaunchDescription

PACKAGE = "mtl_perception"
NODE_NAME = "perception_node"

# name -> (default, description). An empty default leaves the parameter file's value.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "config": ("", "Parameter file; empty: the installed config/perception.yaml."),
    "checkpoint": ("", "Model checkpoint (.safetensors) or exported model (.onnx); empty: "
                       "the parameter file's."),
    "image_topic": ("", "Camera image topic (Image, or CompressedImage when it ends in "
                        "/compressed); empty: the parameter file's image_topics."),
    "device": ("", "auto, cpu, cuda or cuda:N; empty: the parameter file's."),
    "backend": ("", "torch, onnxruntime, openvino or tensorrt; empty: the parameter file's."),
    "namespace": ("", "Namespace of the node."),
    "use_sim_time": ("false", "Use /clock (true when replaying a bag with --clock)."),
    "autostart": ("true", "Configure and activate the node at launch."),
    "gate": ("", "Task gate: off, publish (adds /human/task and /human/gesture/events) or "
                 "filter; empty: the parameter file's."),
}


def _is_true(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _end_launch(event: object, context: LaunchContext) -> list | None:
    """The node's on_exit: shut the launch down, unless it is shutting down already
    (Ctrl-C): a second Shutdown then fails with "Cannot shutdown a ROS adapter
    that is not running" and turns launch's exit 0 into 1. Launch itself has
    already logged the node's exit code, once."""
    if context.is_shutdown:
        return None
    return [Shutdown(reason=f"{NODE_NAME} exited")]


def _launch_setup(context: LaunchContext) -> list:
    """Build the node with the arguments' values (resolved here, so that
    `image_topic` can become the one-element list `image_topics`)."""

    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    config = value("config") or os.path.join(
        get_package_share_directory(PACKAGE), "config", "perception.yaml"
    )
    overrides: dict[str, object] = {"use_sim_time": _is_true(value("use_sim_time"))}
    if value("checkpoint"):
        overrides["checkpoint"] = os.path.expanduser(value("checkpoint"))
    if value("image_topic"):
        overrides["image_topics"] = [value("image_topic")]
    if value("device"):
        overrides["device"] = value("device")
    if value("gate"):
        overrides["gate"] = value("gate")
    if value("backend"):
        overrides["backend"] = value("backend")

    overrides["autostart"] = _is_true(value("autostart"))
    node = LifecycleNode(
        package=PACKAGE,
        executable=NODE_NAME,
        name=NODE_NAME,
        namespace=value("namespace"),  # Humble's LifecycleNode requires it
        parameters=[config, overrides],
        output="screen",
        emulate_tty=True,
        # A node that exits (e.g. no usable checkpoint) ends the launch too,
        # instead of leaving `ros2 launch` waiting on nothing.
        on_exit=_end_launch,
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in ARGUMENTS.items()
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_setup)])
