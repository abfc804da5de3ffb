"""The node's image QoS (qos_reliability auto | reliable | best_effort), its QoS
diagnostics, autostart, `gate:=off` from the command line and the task gate's
LabelInfo, on the rclpy stand-in (test/test_node_standin.py); the real-DDS
counterparts are in test/ros_real/test_ros_real_qos.py."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import test_node_standin as ros
from test_node import (  # noqa: F401
    STEP_NS,
    checkpoint,
    feed,
    make_node,
    node_module,
    state,
    wait_for,
)
from test_node_gate import gated  # noqa: F401

from mtl_perception.ros.cameras import matching_reliability

RELIABLE, BEST_EFFORT = ros.ReliabilityPolicy.RELIABLE, ros.ReliabilityPolicy.BEST_EFFORT
TOPIC = "/camera/image_raw"


def test_auto_follows_the_publishers_offer() -> None:
    assert matching_reliability("auto", [True, True]) is True
    assert matching_reliability("auto", [True, False]) is False  # one best-effort camera
    assert matching_reliability("auto", []) is False  # nobody yet: connect to anyone
    assert matching_reliability("reliable", [False]) is True  # the user's word stands
    assert matching_reliability("best_effort", [True]) is False


def active_node(node_module: ModuleType, checkpoint: Path, offered: list[Any],  # noqa: F811
                **params: Any) -> Any:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu", **params)
    node.offered[TOPIC] = offered
    assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.SUCCESS
    assert node.on_activate(state("inactive")) is ros.TransitionCallbackReturn.SUCCESS
    return node


def tick(node: Any) -> None:
    """The QoS timer (auto only) and the diagnostics timer, once each."""
    for timer in sorted(node.timers, key=lambda t: t.period):
        timer.callback()


def camera_status(node: Any) -> Any:
    tick(node)
    array = node.publisher("/diagnostics").sent[-1]
    (status,) = [s for s in array.status if s.hardware_id == TOPIC]
    return status


def test_auto_waits_for_a_publisher_then_matches_it(
        node_module: ModuleType, checkpoint: Path) -> None:  # noqa: F811
    node = active_node(node_module, checkpoint, [])
    assert node.subscriptions == []
    assert "no publisher" in camera_status(node).message
    node.offered[TOPIC] = [RELIABLE, RELIABLE]
    tick(node)
    (subscription,) = node.subscriptions
    assert subscription.qos.reliability is RELIABLE
    node.offered[TOPIC] = []  # the camera restarts: the subscription stays for it
    tick(node)
    assert node.subscriptions == [subscription]
    node.release()


def test_auto_matches_a_best_effort_camera_and_rematches_when_publishers_change(
        node_module: ModuleType, checkpoint: Path) -> None:  # noqa: F811
    node = active_node(node_module, checkpoint, [BEST_EFFORT])
    (subscription,) = node.subscriptions
    assert subscription.qos.reliability is BEST_EFFORT
    node.offered[TOPIC] = [RELIABLE]  # the camera restarts with reliable QoS
    status = camera_status(node)
    (again,) = node.subscriptions
    assert again is not subscription and again.qos.reliability is RELIABLE
    assert dict((kv.key, kv.value) for kv in status.values)["qos_reliability"] == "reliable"
    assert any("subscribing reliable" in line for line in node.logger.of("warning"))
    camera_status(node)  # nothing changed: the subscription stays
    assert node.subscriptions == [again]
    node.release()


def test_incompatible_qos_is_an_error_for_that_camera_with_the_fix(
        node_module: ModuleType, checkpoint: Path) -> None:  # noqa: F811
    node = active_node(node_module, checkpoint, [BEST_EFFORT], qos_reliability="reliable")
    (subscription,) = node.subscriptions
    assert subscription.qos.reliability is RELIABLE
    status = camera_status(node)  # no frame yet: the camera still has a status
    assert status.level == b"\x01" and "no frames" in status.message
    policy = type("Kind", (), {"name": "RMW_QOS_POLICY_RELIABILITY"})()
    subscription.event_callbacks.incompatible_qos(type("Info", (), {"last_policy_kind": policy}))
    status = camera_status(node)
    assert status.level == b"\x02"
    assert "incompatible QoS" in status.message and "RELIABILITY" in status.message
    assert "qos_reliability auto" in status.message  # the fix
    node.release()


def test_diagnostics_report_stamp_latencies_per_camera(
        node_module: ModuleType, checkpoint: Path) -> None:  # noqa: F811
    node = active_node(node_module, checkpoint, [RELIABLE])
    frames = feed(node, TOPIC, 3)
    values = dict((kv.key, kv.value) for kv in camera_status(node).values)
    # The stand-in's clock reads 1.000000002 s; the frames are stamped 1 s + i / 15 s.
    expected = sorted((1_000_000_002 - (f.header.stamp.sec * 10**9 + f.header.stamp.nanosec))
                      / 1e6 for f in frames)
    assert float(values["stamp_to_receive_ms_p50"]) == round(expected[1], 1)
    assert values["stamp_to_publish_ms_p95"] == "n/a"  # no clip of 4 frames yet
    feed(node, TOPIC, 1, start_ns=10**9 + 3 * STEP_NS)  # the 4th frame ends the first clip
    wait_for(lambda: len(node.publisher("/human/action").sent) == 1)
    tick(node)
    array = node.publisher("/diagnostics").sent[-1]
    (inference,) = [s for s in array.status if s.name.endswith(": inference")]
    # The clip's last frame is stamped 1.2 s, the stand-in clock stands at 1 s: -200 ms.
    assert "stamp to result published p95 -200.0 ms" in inference.message
    node.release()


def test_gate_off_from_the_command_line_is_accepted(node_module: ModuleType,  # noqa: F811
                                                   checkpoint: Path) -> None:  # noqa: F811
    # rcl reads `-p gate:=off` as YAML 1.1: the boolean false.
    ros.NODE_LOGGERS.clear()
    args = ["--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "gate:=off"]
    assert node_module.main(args) == 0
    assert ros.errors_logged() == []


def test_autostart_configures_and_activates(node_module: ModuleType,  # noqa: F811
                                            checkpoint: Path) -> None:  # noqa: F811
    ros.NODE_LOGGERS.clear()
    args = ["--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "autostart:=true"]
    assert node_module.main(args) == 0
    (logger,) = ros.NODE_LOGGERS
    assert any(line.startswith("active: reading /camera/image_raw") for line in logger.of("info"))


def test_the_task_gate_has_label_info(node_module: ModuleType, checkpoint: Path,  # noqa: F811
                                      gated: list[int]) -> None:  # noqa: F811
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu", gate="filter",
                     gate_threshold=0.7)
    node.on_configure(state("unconfigured"))
    publisher = node.publisher("/human/task/label_info")
    (info,) = publisher.sent
    assert [(c.class_id, c.class_name) for c in info.class_map] == [
        (0, "action"), (1, "gesture"), (2, "none")]
    assert info.threshold == 0.7
    assert publisher.qos.durability is ros.DurabilityPolicy.TRANSIENT_LOCAL
    node.release()
    assert publisher.destroyed
