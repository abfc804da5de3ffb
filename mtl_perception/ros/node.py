"""`perception_node`: camera images in, action and gesture results out (ROS 2 Humble, Jazzy).

The only module of the project that imports rclpy. It translates: ROS
parameters -> the streaming core's `StreamConfig`, image messages ->
`StreamPipeline.push`, `ClipResult`s -> `vision_msgs/Classification`, the
core's statistics -> `/diagnostics`. Everything else (decoding, buffering,
sampling, inference, smoothing) is the core's, shared with bag evaluation.

A managed (lifecycle) node, as Nav2 and yolo_ros are:
- configure: read the parameters, load the checkpoint onto the device, warm
  the model up, publish each task's LabelInfo (transient local, once);
- activate: subscribe to the cameras, start the inference worker, publish
  results and diagnostics;
- deactivate: unsubscribe and stop the worker (the model stays loaded);
- cleanup: unload the model and release GPU memory.
"""

from __future__ import annotations

import array
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
import rclpy.logging
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, LabelInfo, ObjectHypothesis, VisionClass

from mtl_perception.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_info
from mtl_perception.ros import messages
from mtl_perception.ros.annotate import draw_lines, result_lines
from mtl_perception.ros.device import check_autocast, resolve_device
from mtl_perception.ros.params import (
    PARAMS,
    ParamSpec,
    check_change,
    live_values,
    missing_checkpoint_hint,
    stream_values,
    validate_all,
)
from mtl_perception.settings import SettingsError, from_dict
from mtl_perception.stream import (
    ClipResult,
    FrameHeader,
    ImageDecodeError,
    StreamConfig,
    StreamPipeline,
    StreamStats,
)

NODE_NAME = "perception_node"
# Exit status for what cannot run as given (parameters, checkpoint): the
# project's CLIs exit 2 for bad input.
EXIT_BAD_INPUT = 2

_TYPE_IDS = {
    "string": ParameterType.PARAMETER_STRING,
    "string_array": ParameterType.PARAMETER_STRING_ARRAY,
    "bool": ParameterType.PARAMETER_BOOL,
    "integer": ParameterType.PARAMETER_INTEGER,
    "double": ParameterType.PARAMETER_DOUBLE,
}


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """The ParameterDescriptor of one table row: type, description, range."""
    descriptor = ParameterDescriptor()
    descriptor.name = spec.name
    descriptor.type = _TYPE_IDS[spec.type]
    descriptor.description = spec.description
    descriptor.additional_constraints = spec.constraints
    if spec.low is not None and spec.high is not None:
        if spec.type == "double":
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
            ]
        elif spec.type == "integer":
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)
            ]
    return descriptor


class PerceptionNode(LifecycleNode):
    """Joint action and gesture recognition on one or more camera streams."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for spec in PARAMS:
            self.declare_parameter(spec.name, spec.default, descriptor_for(spec))
        self.add_on_set_parameters_callback(self.parameters_cb)
        # Set when a start-up failure should end the process (main exits non-zero).
        self.exit_code: int | None = None
        self._configured_once = False
        self._streaming = False
        self._pipeline: StreamPipeline | None = None
        self._model_text = ""
        self._topics: list[str] = []
        self._annotate = False
        self._image_subscriptions: list[Any] = []
        self._result_publishers: dict[str, Any] = {}
        self._label_publishers: list[Any] = []
        self._annotated_publisher: Any = None
        self._diagnostics_publisher: Any = None
        self._diagnostics_timer: Any = None
        self._last_stats: StreamStats | None = None
        # Newest result per camera not yet drawn (written by the worker thread).
        self._to_draw: dict[str, ClipResult] = {}
        self._lock = threading.Lock()

    # ----- lifecycle -------------------------------------------------------

    # rclpy turns an exception in a transition callback into ERROR without a
    # word; each transition therefore logs what went wrong itself.

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return self._configure()
        except Exception as exc:
            self._unload()
            return self._fail(f"configure failed: {type(exc).__name__}: {exc}")

    def _configure(self) -> TransitionCallbackReturn:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMS}
        problems = validate_all(values)
        if problems:
            return self._fail("invalid parameters: " + "; ".join(problems))
        try:
            config = from_dict(StreamConfig, stream_values(values), "parameters")
            device, device_line = resolve_device(values["device"])
            autocast, autocast_line = check_autocast(values["autocast"], device)
        except (SettingsError, ValueError) as exc:  # StreamConfigError, DeviceError
            return self._fail(f"invalid parameters: {exc}")
        self.get_logger().info(device_line)
        if autocast_line:
            self.get_logger().warning(autocast_line)
        path = Path(values["checkpoint"]).expanduser()
        if not path.exists():
            return self._fail(missing_checkpoint_hint(str(path.absolute())))
        try:
            loaded = load_checkpoint(path, device)
            clip_length = config.resolved_clip_length(loaded.info.preprocess.clip_length)
            self._pipeline = StreamPipeline(
                loaded.model, loaded.info, config, device=device, autocast=autocast,
                on_result=self._result_cb, on_error=self._decode_error_cb, realtime=True,
            )
            warmup_ms = self._pipeline.warmup()
        except (CheckpointError, ValueError) as exc:
            self._pipeline = None
            return self._fail(str(exc))
        self._model_text = f"{messages.describe_model(loaded.info, clip_length)} ({path.name})"
        self._topics = list(values["image_topics"])
        self._annotate = bool(values["publish_annotated"])
        self._create_publishers(loaded.info.model.task_names)
        self._publish_label_info(loaded.info)
        self._configured_once = True
        self.get_logger().info(
            f"configured: {self._model_text}; warm-up forward pass {warmup_ms:.0f} ms"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._activate()
        except Exception as exc:
            self.get_logger().error(f"activate failed: {type(exc).__name__}: {exc}")
            self._stop_streaming()
            return TransitionCallbackReturn.FAILURE
        return super().on_activate(state)  # activates the lifecycle publishers

    def _activate(self) -> None:
        if self._pipeline is None:
            raise RuntimeError("not configured")
        qos = self._image_qos()
        for topic in self._topics:
            msg_type = CompressedImage if topic.endswith("/compressed") else Image
            self._image_subscriptions.append(
                self.create_subscription(msg_type, topic, self._image_cb_for(topic), qos)
            )
        self._pipeline.start()
        self._streaming = True
        period = float(self.get_parameter("diagnostics_period_s").value)
        self._diagnostics_timer = self.create_timer(period, self.diagnostics_cb)
        self.get_logger().info(f"active: reading {', '.join(self._topics)}")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        self.get_logger().info("inactive: model stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def startup_problem(self) -> str | None:
        """What makes configure certain to fail (parameters, checkpoint metadata), or None.

        Cheap (the weights are not read): main checks it at start-up so that a
        node that cannot run says so at once instead of waiting for configure.
        """
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMS}
        problems = validate_all(values)
        if problems:
            return "invalid parameters: " + "; ".join(problems)
        try:
            from_dict(StreamConfig, stream_values(values), "parameters")
        except (SettingsError, ValueError) as exc:
            return f"invalid parameters: {exc}"
        return check_checkpoint(str(values["checkpoint"]))

    def release(self) -> None:
        """Stop everything and free the model (and GPU memory); safe to call twice."""
        self._stop_streaming()
        self._unload()

    # ----- callbacks -------------------------------------------------------

    def image_cb(self, camera: str, msg: Any) -> None:
        """One frame: sampled, decoded and preprocessed now; inference runs in the worker."""
        pipeline = self._pipeline
        if pipeline is None:
            return
        pipeline.push(camera, msg)
        if self._annotate and self._annotated_publisher is not None:
            with self._lock:
                result = self._to_draw.pop(camera, None)
            if result is not None:
                self._publish_annotated(pipeline, result)

    def _image_cb_for(self, camera: str) -> Callable[[Any], None]:
        def camera_image_cb(msg: Any) -> None:
            self.image_cb(camera, msg)

        return camera_image_cb

    def parameters_cb(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate `ros2 param set`; apply live settings to the running core."""
        configured = self._pipeline is not None
        for parameter in parameters:
            reason = check_change(parameter.name, parameter.value, configured)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        live = live_values({p.name: p.value for p in parameters})
        if live and self._pipeline is not None:
            try:
                self._pipeline.update_settings(**live)
            except ValueError as exc:  # e.g. a combination the core refuses
                return SetParametersResult(successful=False, reason=str(exc))
            self.get_logger().info(f"live settings changed: {live}")
        return SetParametersResult(successful=True)

    def diagnostics_cb(self) -> None:
        pipeline, publisher = self._pipeline, self._diagnostics_publisher
        if pipeline is None or publisher is None:
            return
        stats = pipeline.stats()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for data in messages.diagnostic_statuses(
            stats, self._last_stats, self.get_name(), self._model_text
        ):
            status = DiagnosticStatus()
            status.level = bytes([data.level])  # a byte field in rclpy
            status.name, status.message, status.hardware_id = (
                data.name, data.message, data.hardware_id
            )
            status.values = [KeyValue(key=k, value=v) for k, v in data.values]
            array.status.append(status)
        self._last_stats = stats
        publisher.publish(array)

    def _decode_error_cb(self, camera: str, error: ImageDecodeError) -> None:
        """The core reports each kind of undecodable frame once per camera; the frames
        are skipped and counted in /diagnostics (decode_errors), the node keeps running."""
        self.get_logger().error(f"{camera}: {error}; such frames are skipped")

    def _result_cb(self, result: ClipResult) -> None:
        """Called by the core's worker thread for every scored clip."""
        if self._annotate:
            with self._lock:
                self._to_draw[result.camera] = result
        for task, publisher in self._result_publishers.items():
            msg = Classification()
            msg.header = _header(result.header)
            msg.results = [
                ObjectHypothesis(class_id=name, score=score)
                for name, score in messages.hypotheses(result, task)
            ]
            publisher.publish(msg)

    # ----- helpers ---------------------------------------------------------

    def _fail(self, message: str) -> TransitionCallbackReturn:
        """One clear error line. Failing the first configure (start-up: a missing,
        corrupt or incompatible checkpoint) ends the process non-zero; a later
        re-configure that fails leaves the node unconfigured for another try."""
        self.get_logger().error(message)
        if not self._configured_once:
            self.exit_code = EXIT_BAD_INPUT
        return TransitionCallbackReturn.FAILURE

    def _image_qos(self) -> QoSProfile:
        reliable = self.get_parameter("qos_reliability").value == "reliable"
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=int(self.get_parameter("qos_depth").value),
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )

    def _create_publishers(self, tasks: tuple[str, ...]) -> None:
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1,
            reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        for task in tasks:
            topic = messages.result_topic(task)
            self._result_publishers[task] = self.create_lifecycle_publisher(
                Classification, topic, 10
            )
            # A plain publisher: LabelInfo is valid from configure on, and a
            # late subscriber gets it from the transient-local history.
            self._label_publishers.append(
                self.create_publisher(LabelInfo, f"{topic}/label_info", latched)
            )
        self._diagnostics_publisher = self.create_lifecycle_publisher(
            DiagnosticArray, "/diagnostics", 10
        )
        if self._annotate:
            self._annotated_publisher = self.create_lifecycle_publisher(
                Image, "~/annotated_image", 2
            )

    def _publish_label_info(self, info: Any) -> None:
        for task, publisher in zip(info.model.task_names, self._label_publishers):
            msg = LabelInfo()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.class_map = [
                VisionClass(class_id=index, class_name=name)
                for index, name in messages.label_map(info, task)
            ]
            msg.threshold = float(self.get_parameter("score_threshold").value)
            publisher.publish(msg)

    def _publish_annotated(self, pipeline: StreamPipeline, result: ClipResult) -> None:
        """The camera's newest sampled frame with the latest result drawn on it."""
        latest = pipeline.latest_frame(result.camera)
        if latest is None:
            return
        frame, header = latest
        lines = result_lines([(task, r.top) for task, r in result.tasks.items()])
        drawn = draw_lines(frame, lines)
        out = Image()
        out.header = _header(header)
        out.height, out.width = drawn.shape[0], drawn.shape[1]
        out.encoding, out.is_bigendian, out.step = "rgb8", 0, drawn.shape[1] * 3
        # array('B') is what rclpy stores uint8[] as; handing it bytes would make
        # the setter check every byte in Python.
        out.data = array.array("B", drawn.tobytes())
        self._annotated_publisher.publish(out)

    def _stop_streaming(self) -> None:
        for subscription in self._image_subscriptions:
            self.destroy_subscription(subscription)
        self._image_subscriptions = []
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self._pipeline is not None and self._streaming:
            self._pipeline.stop()  # joins the worker thread
        self._streaming = False

    def _unload(self) -> None:
        for publisher in [*self._result_publishers.values(), *self._label_publishers]:
            self.destroy_publisher(publisher)
        for publisher in (self._diagnostics_publisher, self._annotated_publisher):
            if publisher is not None:
                self.destroy_publisher(publisher)
        self._result_publishers, self._label_publishers = {}, []
        self._diagnostics_publisher = self._annotated_publisher = None
        self._last_stats = None
        self._to_draw.clear()
        if self._pipeline is not None:
            self._pipeline = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def _header(frame: FrameHeader) -> Header:
    """A frame's header as a message (results carry their clip's last frame's)."""
    header = Header()
    header.stamp.sec = frame.sec
    header.stamp.nanosec = frame.nanosec
    header.frame_id = frame.frame_id
    return header


def check_checkpoint(path: str) -> str | None:
    """Why the checkpoint cannot be used (metadata only, no weights), or None."""
    file = Path(path).expanduser()
    if not file.exists():
        return missing_checkpoint_hint(str(file.absolute()))
    try:
        read_checkpoint_info(file)
    except CheckpointError as exc:
        return str(exc)
    return None


def main(args: list[str] | None = None) -> int:
    """Console script `perception_node`: spin until shutdown; non-zero when it cannot run."""
    rclpy.init(args=args)
    try:
        node = PerceptionNode()
    except Exception as exc:  # rclpy refuses a value of the wrong type or out of its range
        rclpy.logging.get_logger(NODE_NAME).error(f"invalid parameters: {exc}")
        rclpy.try_shutdown()
        return EXIT_BAD_INPUT
    # Refuse bad settings or a missing or foreign checkpoint at start-up, before
    # anyone waits for a configure transition that can only fail.
    problem = node.startup_problem()
    if problem is not None:
        node.get_logger().error(problem)
        node.exit_code = EXIT_BAD_INPUT
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while node.exit_code is None and rclpy.ok():
            try:
                executor.spin_once(timeout_sec=0.2)
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception as exc:
                # e.g. rclpy raising for a lifecycle transition that the current
                # state does not have: one error line, perception goes on.
                node.get_logger().error(f"{type(exc).__name__}: {exc}")
    finally:
        node.release()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return node.exit_code or 0


if __name__ == "__main__":
    sys.exit(main())
