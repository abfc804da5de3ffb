"""The node's camera inputs: one subscription per image topic (no rclpy here).

QoS that matches the camera. A reliable subscription never connects to a
best-effort publisher (sensor-data QoS, what many camera drivers offer): no
frame arrives and DDS reports an incompatible QoS. A best-effort subscription
connects to everyone but lets DDS drop frames a reliable publisher would
resend. Under `qos_reliability: auto` (the default) each topic's reliability
therefore follows what its publishers offer, as rosbag2's recorder adapts:
reliable when every publisher offers it, best effort when any does not. A
topic is subscribed once it has a publisher (as rosbag2 does) and matched
again whenever its publishers offer otherwise (`rematch`, from the node's
timer); while a topic has no publisher its subscription stays as it was. An
incompatible-QoS event is an ERROR in that camera's /diagnostics status with
the fix in its message.

Latency as users see it: for each camera, the time from the image's stamp
to its arrival in the node (`stamp_to_receive`: transport and the executor's
queue) and to the publication of the result of the clip it ends
(`stamp_to_publish`: the number a subscriber to /human/* measures).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtl_perception.ros.messages import ERROR, WARN, StatusData
from mtl_perception.stream.stats import LatencyWindow

# subscribe(topic, reliable) -> subscription; the node builds the QoS and the
# incompatible-QoS event callback (which calls `CameraInputs.incompatible`).
Subscribe = Callable[[str, bool], Any]
Unsubscribe = Callable[[Any], Any]
# offered(topic) -> one bool per publisher of the topic: whether it offers reliable.
Offered = Callable[[str], list[bool]]
REMATCH_PERIOD_S = 0.5  # how soon a new or changed publisher is matched (auto)
# publisher_types(topic) -> the message type each publisher of the topic declares.
PublisherTypes = Callable[[str], list[str]]
IMAGE_TYPE, COMPRESSED_TYPE = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"


def image_type(topic: str) -> str:
    """The message type the node reads on `topic`: CompressedImage for `.../compressed`."""
    return COMPRESSED_TYPE if topic.endswith("/compressed") else IMAGE_TYPE


def named_twice(topics: tuple[str, ...] | list[str], resolve: Callable[[str], str]
                ) -> str | None:
    """Why `image_topics` names one topic twice once each name is resolved (a relative and
    an absolute name, `~/...`, a remapping), or None: the node would subscribe twice and
    score and publish every frame twice. `resolve`: the node's `resolve_topic_name`."""
    seen: dict[str, str] = {}
    for topic in topics:
        try:
            full = resolve(topic)
        except Exception:  # an invalid name: its own check names it
            continue
        if full in seen:
            return (f"image_topics: {seen[full]!r} and {topic!r} are one topic, {full}, in "
                    "this node's namespace: every frame would be scored and published twice")
        seen[full] = topic
    return None


def matching_reliability(mode: str, offered: list[bool]) -> bool:
    """Whether to subscribe reliably: the setting, or under auto the publishers' offer."""
    if mode == "reliable":
        return True
    if mode == "best_effort":
        return False
    return bool(offered) and all(offered)


def _name(reliable: bool) -> str:
    return "reliable" if reliable else "best_effort"


@dataclass
class _Camera:
    subscription: Any = None
    reliable: bool = True
    publishers: tuple[bool, ...] = ()
    incompatible: str = ""  # the policy DDS named in the last incompatible-QoS event
    receive_ms: LatencyWindow = field(default_factory=LatencyWindow)
    publish_ms: LatencyWindow = field(default_factory=LatencyWindow)


class CameraInputs:
    """The image subscriptions of an active node, their QoS and their stamp latencies."""

    def __init__(self, topics: tuple[str, ...], mode: str, subscribe: Subscribe,
                 unsubscribe: Unsubscribe, offered: Offered,
                 log: Callable[[str], None], publisher_types: PublisherTypes | None = None,
                 ) -> None:
        self.mode = mode
        self._subscribe, self._unsubscribe, self._offered, self._log = (
            subscribe, unsubscribe, offered, log)
        self._publisher_types = publisher_types
        self._wrong_types: dict[str, tuple[str, ...]] = {}  # topics already said, and what
        self._cameras = {topic: _Camera() for topic in topics}
        self._lock = threading.Lock()  # latencies come from the executor and the worker

    def start(self) -> None:
        self.rematch()

    def rematch(self) -> None:
        """Subscribe where a topic's publishers appeared or now offer another reliability
        (the node calls this every `REMATCH_PERIOD_S` under auto)."""
        for topic, camera in self._cameras.items():
            offered = self._offered(topic) if self.mode == "auto" else []
            camera.publishers = tuple(offered)
            if self.mode == "auto" and not offered:
                continue  # nobody to match yet, or a camera restarting: keep what there is
            reliable = matching_reliability(self.mode, offered)
            if camera.subscription is not None:
                if reliable == camera.reliable:
                    continue
                self._unsubscribe(camera.subscription)
                self._log(f"{topic}: its publishers now offer {_offer(offered)}: subscribing "
                          f"{_name(reliable)} (qos_reliability auto)")
            camera.reliable, camera.incompatible = reliable, ""
            camera.subscription = self._subscribe(topic, reliable)

    def stop(self) -> None:
        for camera in self._cameras.values():
            if camera.subscription is not None:
                self._unsubscribe(camera.subscription)
                camera.subscription = None

    def incompatible(self, topic: str, policy: str) -> None:
        """DDS found a publisher on `topic` whose QoS this subscription cannot match."""
        camera = self._cameras[topic]
        camera.incompatible = policy
        self._log(f"{topic}: {self.incompatible_message(topic)}")

    def incompatible_message(self, topic: str) -> str:
        camera = self._cameras[topic]
        return (f"incompatible QoS with a publisher ({camera.incompatible}): no frames arrive "
                f"from it; the subscription is {_name(camera.reliable)}: set "
                "qos_reliability auto (the default) or best_effort, or make the camera "
                "publish reliably")

    def received(self, topic: str, now_ns: int, stamp: Any) -> None:
        """A frame reached the node: the user's latency is the node clock's now minus
        the image's stamp (transport and the executor's queue)."""
        latency_ms = (now_ns - stamp.sec * 1_000_000_000 - stamp.nanosec) / 1e6
        with self._lock:
            self._cameras[topic].receive_ms.add(latency_ms)

    def published(self, topic: str, latency_ms: float) -> None:
        with self._lock:
            camera = self._cameras.get(topic)
            if camera is not None:
                camera.publish_ms.add(latency_ms)

    def amend(self, status: StatusData) -> StatusData:
        """A camera's /diagnostics status with its QoS, its latencies and a QoS error."""
        topic = status.hardware_id
        camera = self._cameras.get(topic)
        if camera is None:
            return status
        with self._lock:
            receive, publish = camera.receive_ms.percentiles(), camera.publish_ms.percentiles()
        values = (*status.values,
                  ("qos_reliability", _name(camera.reliable)),
                  ("publishers", str(len(camera.publishers)) if self.mode == "auto" else "n/a"),
                  ("stamp_to_receive_ms_p50", _ms(receive.p50)),
                  ("stamp_to_receive_ms_p95", _ms(receive.p95)),
                  ("stamp_to_publish_ms_p50", _ms(publish.p50)),
                  ("stamp_to_publish_ms_p95", _ms(publish.p95)))
        level, message = status.level, status.message
        if camera.incompatible:
            level, message = ERROR, self.incompatible_message(topic)
        elif camera.subscription is None:
            message = "no publisher on this topic yet (subscribed once one appears)"
        elif level == 0 and publish.count:
            message = f"{message}, stamp-to-publish p95 {_ms(publish.p95)} ms"
        return StatusData(status.name, level, message, status.hardware_id, values)

    def statuses(self, statuses: list[StatusData], node_name: str) -> list[StatusData]:
        """/diagnostics with every camera amended, and a status for each camera that has
        sent no frame yet (a QoS mismatch shows there, not as silence)."""
        seen = {s.hardware_id for s in statuses}
        missing = [self._silent(topic, node_name) for topic in self._cameras if topic not in seen]
        return [self._end_to_end(s) if s.name.endswith(": inference") else self.amend(s)
                for s in [*statuses, *missing]]

    def _silent(self, topic: str, node_name: str) -> StatusData:
        """The status of a camera without a frame so far: an ERROR naming the type when its
        publishers publish another message type (DDS then never connects them, silently:
        a camera_info or theora topic given as an image topic), else a WARN."""
        name = f"{node_name}: camera {topic}"
        wrong = self._foreign_types(topic)
        if not wrong:
            return StatusData(name, WARN, "no frames received yet", topic, ())
        message = (f"its publishers publish {', '.join(wrong)}, this node reads "
                   f"{image_type(topic)} there: no frame can arrive; give image_topics a "
                   "sensor_msgs/Image topic (a topic ending in /compressed: CompressedImage)")
        if self._wrong_types.get(topic) != wrong:  # said once (again only if it changes)
            self._wrong_types[topic] = wrong
            self._log(f"{topic}: {message}")
        return StatusData(name, ERROR, message, topic, ())

    def _foreign_types(self, topic: str) -> tuple[str, ...]:
        """The message types other than the one read that publishers of `topic` declare."""
        if self._publisher_types is None:
            return ()
        expected = image_type(topic)
        return tuple(sorted({t for t in self._publisher_types(topic) if t and t != expected}))

    def _end_to_end(self, status: StatusData) -> StatusData:
        """The inference status names the latency users see: the worst camera's image
        stamp to result publication, not only the node's frame-to-result."""
        with self._lock:
            worst = max((c.publish_ms.percentiles().p95 for c in self._cameras.values()
                         if c.publish_ms.percentiles().count), default=None)
        if worst is None or status.level != 0:
            return status
        message = f"{status.message}; image stamp to result published p95 {_ms(worst)} ms"
        values = (*status.values, ("stamp_to_publish_ms_p95_worst_camera", _ms(worst)))
        return StatusData(status.name, status.level, message, status.hardware_id, values)


def _offer(offered: list[bool]) -> str:
    if not offered:
        return "nothing (no publisher)"
    return ", ".join(_name(r) for r in offered)


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"
