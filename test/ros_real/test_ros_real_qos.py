"""The node's image QoS over real DDS (Fast DDS, real rclpy): a best-effort camera
(sensor-data QoS, what many drivers publish) and a reliable one, the default
`qos_reliability: auto`, the incompatible-QoS error, and the params file
launch_ros writes for list overrides (`!!python/tuple`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from ros_real_harness import Driver, RosPython, camera, camera_result, node

BEST_EFFORT_TOPIC, RELIABLE_TOPIC = "/cam_be/image_raw", "/cam_rel/image_raw"
FRAMES = 40


def launch_ros_params_file(folder: Path, **parameters: Any) -> Path:
    """What launch_ros writes for a node's dict parameters: its
    `Node._create_params_file_from_dict` calls yaml.dump(..., default_flow_style=False)
    on values whose lists `evaluate_parameter_dict` has made tuples, so lists come out
    as `!!python/tuple` (launch_ros has no wheel to run it here)."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in parameters.items()}
    path = folder / "launch_params_x1y2"
    path.write_text(yaml.dump({"/perception_node": {"ros__parameters": values}},
                              default_flow_style=False))
    assert "!!python/tuple" in path.read_text()
    return path


def camera_statuses(driver: Driver, topics: list[str], ready: Any,
                    timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """The newest /diagnostics camera statuses once `ready(statuses)` holds."""
    deadline = time.monotonic() + timeout
    last: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for message in reversed(driver("messages", topic="/diagnostics")["messages"]):
            last = {s["hardware_id"]: s for s in message["status"] if s["hardware_id"] in topics}
            if len(last) == len(topics) and ready(last):
                return last
            break
        time.sleep(0.2)
    raise AssertionError(f"no /diagnostics as expected; last: {last}")


def test_auto_qos_takes_a_best_effort_and_a_reliable_camera_from_a_launch_ros_file(
        ros: RosPython, env: dict[str, str], tmp_path: Path, checkpoint: Path) -> None:
    topics = [BEST_EFFORT_TOPIC, RELIABLE_TOPIC]
    params = launch_ros_params_file(tmp_path, image_topics=topics, use_sim_time=False,
                                    autostart=True)
    # Cameras first, as on a robot: they wait for the node's subscriptions.
    cams = [camera(ros, env, tmp_path / f"{name}.log", [f"{topic}:rgb8"], "--frames",
                   str(FRAMES), "--fps", "30", "--reliability", reliability, "--wait", "120")
            for name, topic, reliability in (("be", BEST_EFFORT_TOPIC, "best_effort"),
                                             ("rel", RELIABLE_TOPIC, "reliable"))]
    proc = node(ros, env, tmp_path / "node.log", "-p", f"checkpoint:={checkpoint}",
                "-p", "device:=cpu", "-p", "diagnostics_period_s:=0.2", "-p", "qos_depth:=100",
                params_file=params)
    driver = Driver(ros, env, tmp_path / "driver.log")
    try:
        driver("subscribe", topic="/diagnostics", type="DiagnosticArray")
        for cam in cams:
            camera_result(cam, timeout=180)
        statuses = camera_statuses(driver, topics, lambda s: all(
            int(v["values"].get("frames_received", "0")) >= FRAMES // 2 for v in s.values()))
        assert statuses[BEST_EFFORT_TOPIC]["values"]["qos_reliability"] == "best_effort"
        assert statuses[RELIABLE_TOPIC]["values"]["qos_reliability"] == "reliable"
        for status in statuses.values():
            assert status["level"] < 2, status
            assert status["values"]["stamp_to_receive_ms_p95"] != "n/a"
        assert proc.popen.poll() is None, proc.output()  # rcl and the node read the file
    finally:
        driver.close()
        for cam in cams:
            cam.close()
        proc.close()


def test_a_reliable_subscription_to_a_best_effort_camera_is_an_error_with_the_fix(
        ros: RosPython, env: dict[str, str], tmp_path: Path, checkpoint: Path) -> None:
    proc = node(ros, env, tmp_path / "node.log", "-p", f"checkpoint:={checkpoint}",
                "-p", "device:=cpu", "-p", "diagnostics_period_s:=0.2", "-p", "autostart:=true",
                "-p", f'image_topics:=["{BEST_EFFORT_TOPIC}"]', "-p", "qos_reliability:=reliable")
    driver = Driver(ros, env, tmp_path / "driver.log")
    cam = camera(ros, env, tmp_path / "be.log", [f"{BEST_EFFORT_TOPIC}:rgb8"], "--frames", "10",
                 "--reliability", "best_effort", "--wait", "60")
    try:
        driver("subscribe", topic="/diagnostics", type="DiagnosticArray")
        (status,) = camera_statuses(driver, [BEST_EFFORT_TOPIC],
                                    lambda s: s[BEST_EFFORT_TOPIC]["level"] == 2).values()
        assert "incompatible QoS" in status["message"] and "RELIABILITY" in status["message"]
        assert "qos_reliability auto" in status["message"]
        assert "frames_received" not in status["values"]  # not one frame came
    finally:
        cam.close()
        driver.close()
        proc.close()
