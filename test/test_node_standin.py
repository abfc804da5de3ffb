"""A small STAND-IN for the part of rclpy and the ROS 2 message packages that
`mtl_perception.ros.node` uses. It is NOT rclpy and runs no middleware: it
records what the node declares, creates and publishes, so that
test/test_node.py can check the node's logic where ROS 2 cannot be installed.
The node's calls are checked against the real (Humble) rclpy signatures by
`make typecheck-node`; the real thing runs in test/ros/test_launch_node.py
where ROS 2 is installed.

`modules()` returns the fake modules; tests put them into `sys.modules`
(temporarily) before importing the node.
"""

from __future__ import annotations

import enum
import itertools
import types
from collections import namedtuple
from typing import Any, ClassVar

import yaml

# ----- messages: plain classes with keyword constructors and defaults ---------


def _message(type_name: str, /, **defaults: Any) -> type:
    def __init__(self: Any, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"{type_name} has no field(s) {sorted(unknown)}")
        for key, default in defaults.items():
            value = kwargs.get(key, default)
            setattr(self, key, value() if callable(value) else value)

    def __repr__(self: Any) -> str:
        return f"{type_name}({', '.join(f'{k}={getattr(self, k)!r}' for k in defaults)})"

    return type(type_name, (), {"__init__": __init__, "__repr__": __repr__, "_fields": defaults})


Time = _message("Time", sec=0, nanosec=0)
Header = _message("Header", stamp=Time, frame_id="")
Image = _message("Image", header=Header, height=0, width=0, encoding="", is_bigendian=0,
                 step=0, data=bytes)
CompressedImage = _message("CompressedImage", header=Header, format="", data=bytes)
ObjectHypothesis = _message("ObjectHypothesis", class_id="", score=0.0)
Classification = _message("Classification", header=Header, results=list)
VisionClass = _message("VisionClass", class_id=0, class_name="")
LabelInfo = _message("LabelInfo", header=Header, class_map=list, threshold=0.0)
KeyValue = _message("KeyValue", key="", value="")
DiagnosticStatus = _message("DiagnosticStatus", level=b"\x00", name="", message="",
                            hardware_id="", values=list)
DiagnosticArray = _message("DiagnosticArray", header=Header, status=list)
FloatingPointRange = _message("FloatingPointRange", from_value=0.0, to_value=0.0, step=0.0)
IntegerRange = _message("IntegerRange", from_value=0, to_value=0, step=0)
ParameterDescriptor = _message(
    "ParameterDescriptor", name="", type=0, description="", additional_constraints="",
    read_only=False, dynamic_typing=False, floating_point_range=list, integer_range=list,
)
SetParametersResult = _message("SetParametersResult", successful=False, reason="")


class ParameterType:
    PARAMETER_NOT_SET, PARAMETER_BOOL, PARAMETER_INTEGER, PARAMETER_DOUBLE = 0, 1, 2, 3
    PARAMETER_STRING, PARAMETER_STRING_ARRAY = 4, 9


# ----- rclpy ---------------------------------------------------------------


class Parameter:
    def __init__(self, name: str, type_: Any = None, value: Any = None) -> None:
        self.name, self.type_, self.value = name, type_, value


class ParameterUninitializedException(Exception):
    """rclpy's: get_parameter of a parameter without a value (`image_topics: []`)."""


class ReliabilityPolicy(enum.Enum):
    RELIABLE, BEST_EFFORT = 1, 2


class DurabilityPolicy(enum.Enum):
    TRANSIENT_LOCAL, VOLATILE = 1, 2


class HistoryPolicy(enum.Enum):
    KEEP_LAST, KEEP_ALL = 1, 2


class QoSProfile:
    def __init__(self, **kwargs: Any) -> None:
        self.depth = kwargs.get("depth")
        self.reliability = kwargs.get("reliability")
        self.durability = kwargs.get("durability")
        self.history = kwargs.get("history")


class TransitionCallbackReturn(enum.Enum):
    SUCCESS, FAILURE, ERROR = 97, 98, 99


LifecycleState = namedtuple("LifecycleState", ["label", "state_id"])


class Logger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    def debug(self, m: str) -> None:
        self._add("debug", m)

    def info(self, m: str) -> None:
        self._add("info", m)

    def warning(self, m: str) -> None:
        self._add("warning", m)

    warn = warning

    def error(self, m: str) -> None:
        self._add("error", m)

    def of(self, level: str) -> list[str]:
        return [m for lvl, m in self.lines if lvl == level]


class Publisher:
    def __init__(self, msg_type: type, topic: str, qos: Any, lifecycle: bool) -> None:
        self.msg_type, self.topic, self.qos, self.lifecycle = msg_type, topic, qos, lifecycle
        self.enabled = not lifecycle
        self.sent: list[Any] = []
        self.destroyed = False

    def publish(self, msg: Any) -> None:
        assert isinstance(msg, self.msg_type), f"{self.topic}: wrong type {type(msg).__name__}"
        if self.enabled:  # a lifecycle publisher drops messages while inactive, like rclpy's
            self.sent.append(msg)


class Subscription:
    def __init__(self, msg_type: type, topic: str, callback: Any, qos: Any,
                 event_callbacks: Any = None) -> None:
        self.msg_type, self.topic, self.callback, self.qos = msg_type, topic, callback, qos
        self.event_callbacks = event_callbacks


class Clock:
    def now(self) -> Any:
        return types.SimpleNamespace(to_msg=lambda: Time(sec=1, nanosec=2),
                                     nanoseconds=1_000_000_002)


class SubscriptionEventCallbacks:
    def __init__(self, **callbacks: Any) -> None:
        self.incompatible_qos = callbacks.get("incompatible_qos")


# Parameters given on the "command line" of the fake `init(args)`.
_ARGS_OVERRIDES: dict[str, Any] = {}
_CONTEXT = {"ok": False}  # rclpy.ok(): between init() and try_shutdown()
_NAMED_LOGGERS: dict[str, Logger] = {}  # rclpy.logging.get_logger(name)
NODE_LOGGERS: list[Logger] = []  # every node's logger, in creation order


def errors_logged() -> list[str]:
    """Every error line logged so far, by nodes and by named loggers."""
    loggers = [*NODE_LOGGERS, *_NAMED_LOGGERS.values()]
    return [line for logger in loggers for line in logger.of("error")]


class Node:
    """What the perception node uses of rclpy.lifecycle.Node, recorded for inspection."""

    def __init__(self, node_name: str, *, parameter_overrides: list[Parameter] | None = None,
                 **_: Any) -> None:
        self.name = node_name
        self.logger = Logger()
        NODE_LOGGERS.append(self.logger)
        given = {p.name: Parameter(p.name, None, p.value) for p in parameter_overrides or []}
        self._parameter_overrides = {  # rclpy's name for it
            **{k: Parameter(k, None, v) for k, v in _ARGS_OVERRIDES.items()}, **given}
        self.parameters: dict[str, Parameter] = {}
        self.descriptors: dict[str, Any] = {}
        self.callbacks: list[Any] = []
        # rclpy's own attribute names, so that a node overwriting them breaks here too.
        self._publishers: list[Publisher] = []
        self._subscriptions: list[Subscription] = []
        self._timers: list[Any] = []
        self.destroyed = False
        # topic -> the ReliabilityPolicy each of its publishers offers (tests set it);
        # a topic not named has one reliable publisher, image_transport's default.
        self.offered: dict[str, list[ReliabilityPolicy]] = {}

    def get_publishers_info_by_topic(self, topic: str) -> list[Any]:
        offered = self.offered.get(topic, [ReliabilityPolicy.RELIABLE])
        return [types.SimpleNamespace(qos_profile=QoSProfile(reliability=r)) for r in offered]

    # rclpy.lifecycle.Node's: run a transition's callback.
    def trigger_configure(self) -> Any:
        return self.on_configure(LifecycleState("unconfigured", 1))  # type: ignore[attr-defined]

    def trigger_activate(self) -> Any:
        return self.on_activate(LifecycleState("inactive", 2))

    @property
    def publishers(self) -> list[Publisher]:
        return list(self._publishers)

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)

    @property
    def timers(self) -> list[Any]:
        return list(self._timers)

    def get_name(self) -> str:
        return self.name

    def resolve_topic_name(self, topic: str, *, only_expand: bool = False) -> str:
        """rclpy's expansion in the root namespace, without remappings."""
        if topic.startswith("~"):
            return f"/{self.name}{topic[1:]}"
        return topic if topic.startswith("/") else f"/{topic}"

    def get_logger(self) -> Logger:
        return self.logger

    def get_clock(self) -> Clock:
        return Clock()

    def declare_parameter(self, name: str, value: Any = None, descriptor: Any = None,
                          ignore_override: bool = False) -> Parameter:
        assert name not in self.parameters, f"{name} declared twice"
        override = self._parameter_overrides.get(name)
        given = value if override is None else override.value
        if value is not None and type(given) is not type(value):  # rclpy: static typing
            raise TypeError(f"Trying to set parameter '{name}' to '{given}' of type "
                            f"{type(given).__name__}, expecting {type(value).__name__}")
        parameter = Parameter(name, None, given)
        self.parameters[name], self.descriptors[name] = parameter, descriptor
        return parameter

    def has_parameter(self, name: str) -> bool:
        return name in self.parameters

    def get_parameter(self, name: str) -> Parameter:
        return self.parameters[name]

    def add_on_set_parameters_callback(self, callback: Any) -> None:
        self.callbacks.insert(0, callback)

    def set_parameters(self, parameters: list[Parameter]) -> list[Any]:
        """Like rclpy: each parameter through the callbacks, stored only when accepted."""
        results = []
        for parameter in parameters:
            result = SetParametersResult(successful=True)
            for callback in self.callbacks:
                result = callback([parameter])
                if not result.successful:
                    break
            if result.successful:
                self.parameters[parameter.name] = parameter
            results.append(result)
        return results

    def create_publisher(self, msg_type: type, topic: str, qos: Any, **_: Any) -> Publisher:
        publisher = Publisher(msg_type, topic, qos, lifecycle=False)
        self._publishers.append(publisher)
        return publisher

    def create_lifecycle_publisher(self, msg_type: type, topic: str, qos: Any,
                                   **_: Any) -> Publisher:
        publisher = Publisher(msg_type, topic, qos, lifecycle=True)
        self._publishers.append(publisher)
        return publisher

    def create_subscription(self, msg_type: type, topic: str, callback: Any, qos: Any,
                            event_callbacks: Any = None, **_: Any) -> Subscription:
        if " " in topic:  # rclpy raises InvalidTopicNameException
            raise ValueError(f"Invalid topic name: {topic!r}")
        subscription = Subscription(msg_type, topic, callback, qos, event_callbacks)
        self._subscriptions.append(subscription)
        return subscription

    def create_timer(self, period: float, callback: Any, **_: Any) -> Any:
        timer = types.SimpleNamespace(period=period, callback=callback)
        self._timers.append(timer)
        return timer

    def destroy_publisher(self, publisher: Publisher) -> bool:
        publisher.destroyed = True
        self._publishers.remove(publisher)
        return True

    def destroy_subscription(self, subscription: Subscription) -> bool:
        self._subscriptions.remove(subscription)
        return True

    def destroy_timer(self, timer: Any) -> bool:
        self._timers.remove(timer)
        return True

    def destroy_node(self) -> None:
        self.destroyed = True

    # Base transitions: rclpy's activate/deactivate switch the lifecycle publishers.
    def on_activate(self, state: Any) -> TransitionCallbackReturn:
        for publisher in self.publishers:
            if publisher.lifecycle:
                publisher.enabled = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: Any) -> TransitionCallbackReturn:
        for publisher in self.publishers:
            if publisher.lifecycle:
                publisher.enabled = False
        return TransitionCallbackReturn.SUCCESS

    def publisher(self, topic: str) -> Publisher:
        (found,) = [p for p in self.publishers if p.topic == topic]
        return found


class SingleThreadedExecutor:
    spins = 0  # how often any executor of the stand-in was asked to spin
    raises: ClassVar[list[Exception]] = []

    def __init__(self) -> None:
        self.nodes: list[Any] = []

    def add_node(self, node: Any) -> None:
        self.nodes.append(node)

    def remove_node(self, node: Any) -> None:
        self.nodes.remove(node)

    def spin_once(self, timeout_sec: float | None = None) -> None:
        SingleThreadedExecutor.spins += 1
        if SingleThreadedExecutor.raises:  # what callbacks raise, in order (tests set it)
            raise SingleThreadedExecutor.raises.pop(0)
        raise KeyboardInterrupt  # the fake has nothing to spin: behave like Ctrl-C


class ExternalShutdownException(Exception):
    pass


def _init(args: list[str] | None = None) -> None:
    """Reads `-p name:=value` pairs, as `--ros-args` would."""
    _ARGS_OVERRIDES.clear()
    _CONTEXT["ok"] = True
    items = list(args or [])
    for flag, value in itertools.pairwise(items):
        if flag == "-p":
            name, _, text = value.partition(":=")
            _ARGS_OVERRIDES[name] = yaml.safe_load(text)  # rclpy parses values as YAML


def _shutdown() -> None:
    """rclpy's context, and with it the `--ros-args` overrides, ends here: a node made by a
    later test must not inherit an earlier `main()`'s `-p max_gap_s:=0.01`."""
    _CONTEXT["ok"] = False
    _ARGS_OVERRIDES.clear()


def modules() -> dict[str, types.ModuleType]:
    """The fake modules, by import name."""

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    logging = module("rclpy.logging", get_logger=lambda name: _NAMED_LOGGERS.setdefault(
        name, Logger()))
    return {
        "rclpy": module("rclpy", init=_init, ok=lambda: _CONTEXT["ok"],
                        try_shutdown=_shutdown, logging=logging),
        "rclpy.logging": logging,
        "rclpy.lifecycle": module("rclpy.lifecycle", Node=Node, LifecycleState=LifecycleState,
                                  TransitionCallbackReturn=TransitionCallbackReturn),
        "rclpy.executors": module("rclpy.executors", SingleThreadedExecutor=SingleThreadedExecutor,
                                  ExternalShutdownException=ExternalShutdownException),
        "rclpy.parameter": module("rclpy.parameter", Parameter=Parameter),
        "rclpy.exceptions": module("rclpy.exceptions",
                                   ParameterUninitializedException=ParameterUninitializedException),
        "rclpy.event_handler": module("rclpy.event_handler",
                                      SubscriptionEventCallbacks=SubscriptionEventCallbacks),
        "rclpy.qos": module("rclpy.qos", QoSProfile=QoSProfile, ReliabilityPolicy=ReliabilityPolicy,
                            DurabilityPolicy=DurabilityPolicy, HistoryPolicy=HistoryPolicy),
        "rcl_interfaces": module("rcl_interfaces"),
        "rcl_interfaces.msg": module(
            "rcl_interfaces.msg", ParameterDescriptor=ParameterDescriptor,
            ParameterType=ParameterType, FloatingPointRange=FloatingPointRange,
            IntegerRange=IntegerRange, SetParametersResult=SetParametersResult),
        "sensor_msgs": module("sensor_msgs"),
        "sensor_msgs.msg": module("sensor_msgs.msg", Image=Image, CompressedImage=CompressedImage),
        "std_msgs": module("std_msgs"),
        "std_msgs.msg": module("std_msgs.msg", Header=Header),
        "vision_msgs": module("vision_msgs"),
        "vision_msgs.msg": module("vision_msgs.msg", Classification=Classification,
                                  ObjectHypothesis=ObjectHypothesis, LabelInfo=LabelInfo,
                                  VisionClass=VisionClass),
        "diagnostic_msgs": module("diagnostic_msgs"),
        "diagnostic_msgs.msg": module("diagnostic_msgs.msg", DiagnosticArray=DiagnosticArray,
                                      DiagnosticStatus=DiagnosticStatus, KeyValue=KeyValue),
    }
