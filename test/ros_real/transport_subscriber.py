"""Subscriber of bench/ros_transport.py: where 640x480 frames wait, without a model.

A ROS process, kept with the real-DDS suite's (camera.py, driver.py).

    transport_subscriber.py CAMS SECONDS

Runs under the ROS environment's Python (rclpy Iron or later: the callback
gets the message info). Per frame: image stamp -> DDS receive (transport),
DDS receive -> callback (the executor's queue), stamp -> callback (both).
Prints one JSON line of p50/p95 and the count of frames received.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1) \
        if ordered else None


def main() -> int:
    cams, seconds = int(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("transport_probe")
    ms: dict[str, list[float]] = {"transport": [], "queue": [], "total": []}

    def on_image(msg: Any, info: Any) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        received = info["received_timestamp"]
        ms["transport"].append((received - stamp) / 1e6)
        ms["queue"].append((now - received) / 1e6)
        ms["total"].append((now - stamp) / 1e6)

    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    keep = [node.create_subscription(Image, f"/probe_cam{i}/image_raw", on_image, qos)
            for i in range(cams)]
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    out: dict[str, Any] = {"frames": len(ms["total"]), "subscriptions": len(keep)}
    for name, values in ms.items():
        out[f"{name}_ms_p50"], out[f"{name}_ms_p95"] = (percentile(values, 0.5),
                                                        percentile(values, 0.95))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
