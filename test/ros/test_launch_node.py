"""The launch file under real ROS 2: runs where ROS 2 with launch is sourced.

`launch`, `launch_ros` and `launch_testing` have no PyPI wheels, so CI cannot
run them (the node itself is tested over real DDS in every CI run by
test/ros_real/, the launch file's arguments by test/test_launch_config.py).
On a robot or a ROS 2 machine, after `colcon build`:

    colcon test --packages-select mtl_perception --python-testing pytest \\
        --pytest-args test/ros
    # or, from the source folder: python -m pytest test/ros

runs the launch check (launch_check_perception.py, through the `launch_test`
command, not launch_testing's pytest plugin, which pytest 9 cannot load) and
`ros2 launch` itself: Ctrl-C ends it with 0, a node that cannot run ends it
with its exit 2 reported once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _ros_launch_available() -> str | None:
    """Why the launch tests cannot run here, or None."""
    for command in ("launch_test", "ros2"):
        if shutil.which(command) is None:
            return f"`{command}` not found: source a ROS 2 install with launch_testing"
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return "ament_index_python not importable: source a ROS 2 install"
    try:
        get_package_prefix("mtl_perception")
    except PackageNotFoundError:
        return "mtl_perception is not built into the sourced workspace (colcon build)"
    return None


pytestmark = pytest.mark.skipif(_ros_launch_available() is not None,
                                reason=str(_ros_launch_available()))


def _env(domain: int) -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1",
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def test_launch_check() -> None:
    done = subprocess.run(["launch_test", str(HERE / "launch_check_perception.py")],
                          env=_env(61), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _launch(*arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["ros2", "launch", "mtl_perception", "perception.launch.py", "device:=cpu", *arguments],
        env=_env(62), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def test_ctrl_c_ends_the_launch_with_0(tmp_path: Path) -> None:
    from helpers_models import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.safetensors")
    launch = _launch(f"checkpoint:={checkpoint}")
    time.sleep(20.0)  # configured and active by autostart
    os.killpg(launch.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
    output, _ = launch.communicate(timeout=60)
    assert launch.returncode == 0, output
    assert "Cannot shutdown" not in output


def test_node_exit_2_is_reported_once(tmp_path: Path) -> None:
    launch = _launch(f"checkpoint:={tmp_path / 'none.safetensors'}")
    output, _ = launch.communicate(timeout=120)
    assert output.count("exit code 2") == 1, output
    assert "Cannot shutdown" not in output
    # The node configures itself (autostart): launch sends no lifecycle event that
    # could reach a node that has already gone.
    assert "Caught exception" not in output
    assert "checkpoint not found" in output
