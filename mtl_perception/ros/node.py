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

import re
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import rclpy
import rclpy.logging
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Classification, LabelInfo

from mtl_perception.checkpoint import CheckpointError, CheckpointInfo
from mtl_perception.deploy.load import load_model
from mtl_perception.ros import convert, messages
from mtl_perception.ros.annotate import draw_lines, result_lines
from mtl_perception.ros.device import check_autocast, resolve_device
from mtl_perception.ros.gate_topics import GateTopics, has_gate, no_gate_warning
from mtl_perception.ros.node_config import (
    NodeConfig,
    NodeConfigError,
    check_checkpoint,
    check_params_files,
    read_node_config,
)
from mtl_perception.ros.params import (
    BY_NAME,
    PARAMS,
    check_change,
    live_values,
    missing_checkpoint_hint,
)
from mtl_perception.stream import ClipResult, ImageDecodeError, StreamPipeline, StreamStats
from mtl_perception.stream.decisions import explicit_settings, with_stored_decisions
from mtl_perception.stream.rate import choose_target_fps

NODE_NAME = "perception_node"
# Exit status for what cannot run as given (parameters, checkpoint): the
# project's CLIs exit 2 for bad input.
EXIT_BAD_INPUT = 2

class PerceptionNode(LifecycleNode):
    """Joint action and gesture recognition on one or more camera streams."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for spec in PARAMS:
            self.declare_parameter(spec.name, spec.default, convert.descriptor_for(spec))
        self.add_on_set_parameters_callback(self.parameters_cb)
        # rclpy ignores values for undeclared names: say so, or a typo in the
        # YAML silently leaves the default in place.
        unknown = sorted(n for n in self._parameter_overrides if not self.has_parameter(n))
        if unknown:
            self.get_logger().warning(
                f"ignoring parameters this node does not have: {unknown} "
                f"(it has: {', '.join(spec.name for spec in PARAMS)})"
            )
        # Set when a start-up failure should end the process (main exits non-zero).
        self.exit_code: int | None = None
        self._configured_once = False
        # Set by the shutdown transition: the node is finalized, main returns 0.
        self.finished = False
        self._streaming = False
        self._pipeline: StreamPipeline | None = None
        self._config: NodeConfig | None = None  # read at configure
        self._model_text = ""
        self._image_subscriptions: list[Any] = []
        self._result_publishers: dict[str, Any] = {}
        self._label_publishers: list[Any] = []
        self._annotated_publisher: Any = None
        self._gate_topics: GateTopics | None = None  # checkpoints with a task gate
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
        try:
            config = read_node_config(self._values())
            device, device_line = resolve_device(config.device)
            autocast, autocast_line = check_autocast(config.autocast, device)
        except ValueError as exc:  # NodeConfigError, DeviceError
            return self._fail(str(exc))
        self.get_logger().info(device_line)
        if autocast_line:
            self.get_logger().warning(autocast_line)
        if not config.checkpoint.exists():
            return self._fail(missing_checkpoint_hint(str(config.checkpoint.absolute())))
        try:
            loaded = load_model(config.checkpoint, device)
            # A uniform-sampled model's own rate unless target_fps was changed from its default.
            changed = config.stream.target_fps != BY_NAME["target_fps"].default
            stream, rate_line = choose_target_fps(config.stream, loaded.info, changed)
            if rate_line:
                self.get_logger().info(rate_line)
            # fit-gate's stored event settings where a parameter keeps its default
            stream, decisions_line = with_stored_decisions(
                stream, loaded.info, explicit_settings(config.stream))
            if decisions_line:
                self.get_logger().info(decisions_line)
            config = replace(config, stream=stream)
            self._pipeline = StreamPipeline(
                loaded.model, loaded.info, config.stream, device=device, autocast=autocast,
                on_result=self._result_cb, on_error=self._decode_error_cb, realtime=True,
            )
            warmup_ms = self._pipeline.warmup()
        except (CheckpointError, ValueError) as exc:  # incl. StreamConfigError (clip_length)
            self._pipeline = None
            return self._fail(str(exc))
        self._config = config
        self._model_text = (
            f"{messages.describe_model(loaded.info, self._pipeline.clip_length)} "
            f"({config.checkpoint.name}); engine {self._pipeline.engine}"
        )
        self._create_publishers(loaded.info.model.task_names)
        if has_gate(loaded.model):
            self._gate_topics = GateTopics(
                self.create_lifecycle_publisher, "gesture" in loaded.info.model.task_names)
        elif config.stream.gate != "off":
            self.get_logger().warning(no_gate_warning(config.stream.gate))
        self._publish_label_info(loaded.info, config.stream.score_threshold)
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
        config = self._config
        if self._pipeline is None or config is None:
            raise RuntimeError("not configured")
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=config.qos_depth,
            reliability=(
                ReliabilityPolicy.RELIABLE if config.qos_reliable
                else ReliabilityPolicy.BEST_EFFORT
            ),
            durability=DurabilityPolicy.VOLATILE,
        )
        for topic in config.image_topics:
            msg_type = CompressedImage if topic.endswith("/compressed") else Image
            self._image_subscriptions.append(
                self.create_subscription(msg_type, topic, self._image_cb_for(topic), qos)
            )
        self._pipeline.start()
        self._streaming = True
        self._diagnostics_timer = self.create_timer(
            config.diagnostics_period_s, self.diagnostics_cb
        )
        self.get_logger().info(f"active: reading {', '.join(config.image_topics)}")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        self.get_logger().info("inactive: model stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        # `finalized` has no way out: end the process (exit 0) instead of spinning on.
        self.finished = True
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def startup_problem(self) -> str | None:
        """What makes configure certain to fail (parameters, checkpoint metadata), or None."""
        try:
            config = read_node_config(self._values())
        except NodeConfigError as exc:
            return str(exc)
        return check_checkpoint(config.checkpoint)

    def _values(self) -> dict[str, Any]:
        values = {}
        for spec in PARAMS:
            try:
                values[spec.name] = self.get_parameter(spec.name).value
            except ParameterUninitializedException:
                # An empty list (`image_topics: []`) has no element type, so
                # rclpy leaves the parameter unset: validation then says why.
                values[spec.name] = [] if spec.type == "string_array" else None
        return values

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
        if self._annotated_publisher is not None:
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
            if live.get("gate", "off") != "off" and self._gate_topics is None:
                self.get_logger().warning(no_gate_warning(live["gate"]))
        return SetParametersResult(successful=True)

    def diagnostics_cb(self) -> None:
        pipeline, publisher = self._pipeline, self._diagnostics_publisher
        if pipeline is None or publisher is None:
            return
        stats = pipeline.stats()
        statuses = messages.diagnostic_statuses(
            stats, self._last_stats, self.get_name(), self._model_text
        )
        self._last_stats = stats
        publisher.publish(convert.diagnostics_msg(statuses, self.get_clock().now().to_msg()))

    def _decode_error_cb(self, camera: str, error: ImageDecodeError) -> None:
        """The core reports each kind of undecodable frame once per camera; the frames
        are skipped and counted in /diagnostics (decode_errors), the node keeps running."""
        self.get_logger().error(f"{camera}: {error}; such frames are skipped")

    def _result_cb(self, result: ClipResult) -> None:
        """Called by the core's worker thread for every scored clip."""
        if self._annotating():
            with self._lock:
                self._to_draw[result.camera] = result
        try:
            for task, publisher in self._result_publishers.items():
                publisher.publish(convert.classification_msg(result, task))
            gate_topics, pipeline = self._gate_topics, self._pipeline
            if gate_topics is not None and pipeline is not None:
                gate_topics.publish(result, pipeline.config.gate)
        except Exception:
            # SIGINT/SIGTERM shut the context down at once, while main is
            # still to stop this worker: a last result then has nowhere to go.
            if self.context.ok():
                raise

    # ----- helpers ---------------------------------------------------------

    def _fail(self, message: str) -> TransitionCallbackReturn:
        """One clear error line. Failing the first configure (start-up: a missing,
        corrupt or incompatible checkpoint) ends the process non-zero; a later
        re-configure that fails leaves the node unconfigured for another try."""
        self.get_logger().error(message)
        if not self._configured_once:
            self.exit_code = EXIT_BAD_INPUT
        return TransitionCallbackReturn.FAILURE

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
        if self._annotating():
            self._annotated_publisher = self.create_lifecycle_publisher(
                Image, "~/annotated_image", 2
            )

    def _publish_label_info(self, info: CheckpointInfo, threshold: float) -> None:
        stamp = self.get_clock().now().to_msg()
        for task, publisher in zip(info.model.task_names, self._label_publishers):
            publisher.publish(convert.label_info_msg(info, task, threshold, stamp))

    def _publish_annotated(self, pipeline: StreamPipeline, result: ClipResult) -> None:
        """The camera's newest sampled frame with the latest result drawn on it."""
        try:
            latest = pipeline.latest_frame(result.camera)
        except ImageDecodeError:  # already reported once by the core's on_error
            return
        if latest is None:
            return
        frame, header = latest
        shown = [(task, r.top) for task, r in result.tasks.items()]
        if self._gate_topics is not None and pipeline.config.gate != "off":
            shown.append(("task", tuple(messages.task_hypotheses(result))))
        lines = result_lines(shown)
        self._annotated_publisher.publish(convert.rgb_image_msg(draw_lines(frame, lines), header))

    def _annotating(self) -> bool:
        return self._config is not None and self._config.publish_annotated

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
        if self._gate_topics is not None:
            self._gate_topics.destroy(self.destroy_publisher)
        self._result_publishers, self._label_publishers = {}, []
        self._gate_topics = None
        self._diagnostics_publisher = self._annotated_publisher = None
        self._last_stats = None
        self._to_draw.clear()
        self._config = None
        if self._pipeline is not None:
            self._pipeline.close()  # frames, clips and cached GPU memory
            self._pipeline = None  # and with it the model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def main(args: list[str] | None = None) -> int:
    """Console script `perception_node`: spin until shutdown; non-zero when it cannot run."""
    problem = check_params_files(list(sys.argv if args is None else args))
    if problem is not None:
        print(f"[ERROR] [{NODE_NAME}]: invalid arguments: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        rclpy.init(args=args)
    except Exception as exc:  # RCLError: a missing or malformed --params-file, bad --ros-args
        print(f"[ERROR] [{NODE_NAME}]: invalid arguments: {rcl_error_text(exc)}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
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
        while node.exit_code is None and not node.finished and rclpy.ok():
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


def rcl_error_text(exc: Exception) -> str:
    """rcl's message on one line, without its C source locations (", at /x/parse.c:841")."""
    text = " ".join(str(exc).split())
    return re.sub(r"(, at [^,]*:\d+)+", "", text).removeprefix("failed to initialize rcl: ")


if __name__ == "__main__":
    sys.exit(main())
