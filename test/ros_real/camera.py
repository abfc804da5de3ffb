"""Camera stand-in of the real-DDS suite: publishes images over real ROS 2.

    camera.py --frames N --fps 30 --size 64x48 TOPIC:ENCODING[:FRAME_ID] ...

Runs under the ROS environment's Python, as its own process (a camera driver
is one). ENCODING is rgb8 or bgr8 (sensor_msgs/Image) or jpeg
(sensor_msgs/CompressedImage; the topic should end in /compressed). Frame i of
every topic is stamped `start + i / fps` and published at that pace of wall
time, after each topic has a subscriber (so discovery loses none). Prints one
JSON line: each topic's stamps as sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image


def frame(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame that changes from frame to frame (a moving bar)."""
    rgb = np.full((height, width, 3), 40, np.uint8)
    x = (index * 3) % width
    rgb[:, x:x + max(2, width // 8)] = (220, 120, 30)
    return rgb


def message(rgb: np.ndarray, encoding: str) -> Any:
    if encoding == "jpeg":
        msg = CompressedImage()
        msg.format = "jpeg"
        ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1])
        assert ok
        msg.data = data.tobytes()
        return msg
    msg = Image()
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    msg.height, msg.width = rgb.shape[0], rgb.shape[1]
    msg.encoding, msg.is_bigendian, msg.step = encoding, 0, rgb.shape[1] * 3
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("streams", nargs="+", help="TOPIC:ENCODING[:FRAME_ID]")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="64x48")
    parser.add_argument("--start", type=float, default=100.0, help="first stamp, seconds")
    parser.add_argument("--stamp-now", action="store_true",
                        help="stamp each frame with the wall clock (latency benchmarks)")
    parser.add_argument("--reliability", choices=("reliable", "best_effort"),
                        default="reliable")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for readers")
    parser.add_argument("--linger", type=float, default=1.0,
                        help="seconds to stay up after the last frame (reliable resends)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rclpy.init()
    node = rclpy.create_node("mtl_perception_test_camera")
    qos = QoSProfile(depth=args.depth, reliability=(
        ReliabilityPolicy.RELIABLE if args.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT))
    streams = []
    for spec in args.streams:
        topic, encoding, *rest = spec.split(":")
        msg_type = CompressedImage if encoding == "jpeg" else Image
        frame_id = rest[0] if rest else topic.strip("/").split("/")[0]
        streams.append((topic, encoding, frame_id, node.create_publisher(msg_type, topic, qos)))
    deadline = time.monotonic() + args.wait
    while any(p.get_subscription_count() == 0 for *_, p in streams):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no subscriber"}), flush=True)
            return 1
        time.sleep(0.05)
    # Encode first: the pace of publishing must not depend on the encoder. At
    # most 60 distinct frames, cycled (memory at 640x480 and several cameras).
    frames = [frame(i, width, height) for i in range(min(args.frames, 60))]
    encoded = {enc: [message(f, enc) for f in frames] for enc in {s[1] for s in streams}}
    sent: dict[str, list[list[int]]] = {topic: [] for topic, *_ in streams}
    start = time.monotonic()
    for index in range(args.frames):
        ns = round(args.start * 1e9) + round(index * 1e9 / args.fps)
        if args.stamp_now:
            ns = time.time_ns()
        for topic, encoding, frame_id, publisher in streams:
            msg = encoded[encoding][index % len(frames)]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
            msg.header.frame_id = frame_id
            publisher.publish(msg)
            sent[topic].append([msg.header.stamp.sec, msg.header.stamp.nanosec])
        pause = start + (index + 1) / args.fps - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    time.sleep(args.linger)
    print(json.dumps({"sent": sent, "wall_s": time.monotonic() - start}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
