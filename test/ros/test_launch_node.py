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
import queue
import shutil
import signal
import subprocess
import threading
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


def _wait_for_line(launch: subprocess.Popen, marker: str, timeout: float) -> str:
    """The output up to the first line holding `marker`; a launch that ends or stays
    silent first is a broken test set-up, not a pass."""
    assert launch.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in launch.stdout:  # type: ignore[union-attr]
            lines.put(line)
            if marker in line:
                return
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            os.killpg(launch.pid, signal.SIGKILL)
            pytest.fail(f"test set-up: no {marker!r} in {timeout:.0f} s:\n{''.join(seen)}")
        seen.append(line)
        if marker in line:
            return "".join(seen)
        if not line:
            pytest.fail(f"test set-up: the launch ended before {marker!r}:\n{''.join(seen)}")


def test_ctrl_c_ends_the_launch_with_0(tmp_path: Path) -> None:
    from helpers_models import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.safetensors")
    launch = _launch(f"checkpoint:={checkpoint}")
    seen = _wait_for_line(launch, "active: reading", timeout=120.0)  # autostart's marker
    os.killpg(launch.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
    output, _ = launch.communicate(timeout=60)
    output = seen + output
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
