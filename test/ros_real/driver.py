"""Test client of the real-DDS suite: drives the node over real ROS 2 services.

Runs under the ROS environment's Python (`.venv-ros/bin/python`, or a sourced
ROS 2 install), started by test/ros_real/harness.py, never by pytest's own
Python. It reads one JSON request per line on stdin and answers one JSON line
on stdout, so the tests read like a user at `ros2 lifecycle` and `ros2 param`:

    {"op": "wait_services", "node": "/perception_node", "timeout": 30}
    {"op": "transition", "node": ..., "id": 1}           -> {"success": true}
    {"op": "state", "node": ...}                         -> {"label": "inactive"}
    {"op": "set", "node": ..., "params": {"top_k": 2}}   -> {"results": [[ok, reason]]}
    {"op": "get", "node": ..., "names": ["top_k"]}       -> {"values": [2]}
    {"op": "subscribe", "topic": ..., "type": "Classification", "latched": false}
    {"op": "messages", "topic": ...}                     -> {"messages": [...]}
    {"op": "wait", "topic": ..., "count": N, "timeout": 10} -> {"count": n}
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Classification, LabelInfo

TYPES = {"Classification": Classification, "LabelInfo": LabelInfo,
         "DiagnosticArray": DiagnosticArray}


def stamp(header: Any) -> list[int]:
    return [header.stamp.sec, header.stamp.nanosec]


def as_dict(msg: Any) -> dict[str, Any]:
    """The fields the tests check, as JSON."""
    if isinstance(msg, Classification):
        return {"stamp": stamp(msg.header), "frame_id": msg.header.frame_id,
                "results": [[h.class_id, h.score] for h in msg.results],
                "received_ns": time.time_ns()}
    if isinstance(msg, LabelInfo):
        return {"class_map": [[c.class_id, c.class_name] for c in msg.class_map],
                "threshold": msg.threshold}
    return {"status": [{"name": s.name, "level": s.level[0] if isinstance(s.level, bytes)
                        else int(s.level), "message": s.message, "hardware_id": s.hardware_id,
                        "values": {kv.key: kv.value for kv in s.values}}
                       for s in msg.status]}


class Driver:
    def __init__(self) -> None:
        self.node = rclpy.create_node("mtl_perception_test_driver")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.keep: list[Any] = []  # subscriptions and clients stay alive
        self.clients: dict[tuple[str, str], Any] = {}
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def client(self, srv_type: Any, name: str) -> Any:
        key = (srv_type.__name__, name)
        if key not in self.clients:
            self.clients[key] = self.node.create_client(srv_type, name)
        return self.clients[key]

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        client = self.client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available after {timeout} s")
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f"service {name} did not answer in {timeout} s")
        return future.result()

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op, node = req["op"], req.get("node", "/perception_node")
        timeout = float(req.get("timeout", 30.0))
        if op == "wait_services":
            for srv_type, suffix in ((ChangeState, "change_state"), (GetState, "get_state"),
                                     (SetParameters, "set_parameters")):
                if not self.client(srv_type, f"{node}/{suffix}").wait_for_service(
                        timeout_sec=timeout):
                    return {"error": f"{node}/{suffix} not available"}
            return {}
        if op == "transition":
            request = ChangeState.Request()
            request.transition.id = int(req["id"])
            return {"success": bool(self.call(ChangeState, f"{node}/change_state", request,
                                              timeout).success)}
        if op == "state":
            state = self.call(GetState, f"{node}/get_state", GetState.Request(), timeout)
            return {"label": state.current_state.label}
        if op == "set":
            request = SetParameters.Request()
            request.parameters = [Parameter(name, value=value).to_parameter_msg()
                                  for name, value in req["params"].items()]
            answer = self.call(SetParameters, f"{node}/set_parameters", request, timeout)
            return {"results": [[r.successful, r.reason] for r in answer.results]}
        if op == "get":
            request = GetParameters.Request()
            request.names = list(req["names"])
            answer = self.call(GetParameters, f"{node}/get_parameters", request, timeout)
            values = [parameter_value_to_python(v) for v in answer.values]
            return {"values": [list(v) if isinstance(v, (list, tuple)) else v for v in values]}
        if op == "subscribe":
            topic = req["topic"]
            qos = QoSProfile(depth=100)
            if req.get("latched"):
                qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            with self.lock:
                self.received.setdefault(topic, [])

            def keep(msg: Any, topic: str = topic) -> None:
                with self.lock:
                    self.received[topic].append(as_dict(msg))

            self.keep.append(self.node.create_subscription(TYPES[req["type"]], topic, keep, qos))
            return {}
        if op == "messages":
            with self.lock:
                return {"messages": list(self.received.get(req["topic"], []))}
        if op == "wait":
            deadline = time.monotonic() + timeout
            while True:
                with self.lock:
                    count = len(self.received.get(req["topic"], []))
                if count >= int(req["count"]) or time.monotonic() > deadline:
                    return {"count": count}
                time.sleep(0.02)
        return {"error": f"unknown op {op!r}"}


def main() -> int:
    rclpy.init()
    driver = Driver()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = driver.handle(json.loads(line))
        except Exception as exc:  # the test shows it; the driver stays up
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    driver.executor.shutdown()
    driver.node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
