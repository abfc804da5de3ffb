"""`perception_node`: camera images in, action and gesture results out (ROS 2 Humble, Jazzy).

The only module of the project that imports rclpy. It translates: ROS
parameters -> the streaming core's `StreamConfig`, image messages ->
`StreamPipeline.push`, `ClipResult`s -> `vision_msgs/Classification`, the
core's statistics -> `/diagnostics`. Everything else (decoding, buffering,
sampling, inference, smoothing) is the core's, shared with bag evaluation.

A managed (lifecycle) node, as Nav2 and yolo_ros are: configure loads and
warms up the model (`ros.loading`) and publishes LabelInfo; activate
subscribes (`ros.cameras`) and starts the inference worker; deactivate stops
both (the model stays loaded); cleanup unloads the model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import rclpy
import rclpy.logging
import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterUninitializedException

try:  # Iron and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks  # type: ignore[no-redef,unused-ignore]
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from mtl_perception.checkpoint import CheckpointError
from mtl_perception.ros import convert, messages
from mtl_perception.ros.cameras import (
    COMPRESSED_TYPE,
    REMATCH_PERIOD_S,
    CameraInputs,
    image_type,
    named_twice,
)
from mtl_perception.ros.gate_topics import no_gate_warning
from mtl_perception.ros.loading import load_pipeline
from mtl_perception.ros.node_config import (
    NodeConfig,
    NodeConfigError,
    check_checkpoint,
    check_params_files,
    combination_problem,
    read_node_config,
)
from mtl_perception.ros.params import BY_NAME, PARAMS, check_change, live_values
from mtl_perception.ros.process import exit_now, rcl_error_text
from mtl_perception.ros.publishers import Publishers
from mtl_perception.stream import ClipResult, ImageDecodeError, StreamPipeline, StreamStats

NODE_NAME = "perception_node"
# Exit status for what cannot run as given (parameters, checkpoint): the
# project's CLIs exit 2 for bad input.
EXIT_BAD_INPUT = 2

class PerceptionNode(LifecycleNode):
    """Joint action and gesture recognition on one or more camera streams."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for spec in PARAMS:
            # `-p gate:=off` (and an unquoted `gate: off` in a file) arrives as
            # false: YAML 1.1 reads a bare off so. Take it as the "off" meant.
            given = self._parameter_overrides.get(spec.name)
            if given is not None and given.value is False and "off" in spec.choices:
                self._parameter_overrides[spec.name] = Parameter(spec.name, value="off")
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
        self._inputs: CameraInputs | None = None  # the image subscriptions, while active
        self._outputs: Publishers | None = None  # from configure to cleanup
        self._diagnostics_timer: Any = None
        self._rematch_timer: Any = None
        self._last_stats: StreamStats | None = None

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
        values = self._values()
        twice = named_twice(values["image_topics"] or [], self.resolve_topic_name)
        if twice is not None:
            return self._fail(twice)
        try:
            loaded = load_pipeline(read_node_config(values), self._result_cb,
                                   self._decode_error_cb, self.get_logger())
        except (CheckpointError, ValueError) as exc:  # NodeConfigError, DeviceError, ...
            return self._fail(str(exc))
        self._pipeline, self._config = loaded.pipeline, loaded.config
        self._model_text = loaded.description
        self._outputs = Publishers(
            self.create_lifecycle_publisher, self._latched, self.destroy_publisher,
            loaded.pipeline.info, loaded.config.node.publish_annotated, loaded.gated)
        self._outputs.label_info(loaded.config.stream, self.get_clock().now().to_msg())
        self._configured_once = True
        self.get_logger().info(
            f"configured: {self._model_text}; warm-up forward pass {loaded.warmup_ms:.0f} ms")
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
        settings = config.node
        self._inputs = CameraInputs(
            settings.image_topics, settings.qos_reliability,
            lambda topic, reliable: self._subscribe(topic, reliable, settings.qos_depth),
            self.destroy_subscription, self._offered, self.get_logger().warning,
            self._publisher_types)
        self._pipeline.start()
        self._streaming = True
        self._inputs.start()
        self._diagnostics_timer = self.create_timer(
            settings.diagnostics_period_s, self.diagnostics_cb
        )
        if settings.qos_reliability == "auto":  # publishers come and go: match them again
            self._rematch_timer = self.create_timer(REMATCH_PERIOD_S, self._inputs.rematch)
        self.get_logger().info(f"active: reading {', '.join(settings.image_topics)}")

    def _subscribe(self, topic: str, reliable: bool, depth: int) -> Any:
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )

        def incompatible(event: Any) -> None:
            inputs = self._inputs
            if inputs is not None:
                policy = getattr(event.last_policy_kind, "name", str(event.last_policy_kind))
                inputs.incompatible(topic, policy.removeprefix("RMW_QOS_POLICY_"))

        msg_type = CompressedImage if image_type(topic) == COMPRESSED_TYPE else Image
        return self.create_subscription(
            msg_type, topic, self._image_cb_for(topic), qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=incompatible))

    def _offered(self, topic: str) -> list[bool]:
        """Per publisher of `topic`: whether it offers reliable delivery."""
        return [info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                for info in self.get_publishers_info_by_topic(topic)]

    def _publisher_types(self, topic: str) -> list[str]:
        """The message type each publisher of `topic` declares ("" where not told)."""
        return [str(getattr(info, "topic_type", "")) for info in
                self.get_publishers_info_by_topic(topic)]

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

    def autostart(self) -> None:
        """Parameter autostart: configure, then activate, at start (once). In the node
        rather than as launch events: a node that exits at start would leave launch
        asking a vanished node for a transition ("Caught exception in launch")."""
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

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
        if (inputs := self._inputs) is not None:
            inputs.received(camera, self.get_clock().now().nanoseconds, msg.header.stamp)
        pipeline.push(camera, msg)
        if (outputs := self._outputs) is not None:
            outputs.annotate(pipeline, camera)

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
        ours = {p.name: p.value for p in parameters if p.name in BY_NAME}
        if "image_topics" in ours:
            reason = named_twice(list(ours["image_topics"]), self.resolve_topic_name)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        if not configured and ours:  # the whole set, as the next configure will read it
            reason = combination_problem(self._values(), ours)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        live = live_values(ours)
        if live and self._pipeline is not None:
            try:
                self._pipeline.update_settings(**live)
            except ValueError as exc:  # e.g. a combination the core refuses
                return SetParametersResult(successful=False, reason=str(exc))
            self.get_logger().info(f"live settings changed: {live}")
            publishers = self._outputs
            if live.get("gate", "off") != "off" and publishers and publishers.gate is None:
                self.get_logger().warning(no_gate_warning(live["gate"]))
        return SetParametersResult(successful=True)

    def diagnostics_cb(self) -> None:
        pipeline, publishers = self._pipeline, self._outputs
        if pipeline is None or publishers is None:
            return
        stats = pipeline.stats()
        statuses = messages.diagnostic_statuses(
            stats, self._last_stats, self.get_name(), self._model_text
        )
        self._last_stats = stats
        inputs = self._inputs
        if inputs is not None:
            statuses = inputs.statuses(statuses, self.get_name())
        publishers.status(statuses, self.get_clock().now().to_msg())

    def _decode_error_cb(self, camera: str, error: ImageDecodeError) -> None:
        """The core reports each kind of undecodable frame once per camera; the frames
        are skipped and counted in /diagnostics (decode_errors), the node keeps running."""
        self.get_logger().error(f"{camera}: {error}; such frames are skipped")

    def _result_cb(self, result: ClipResult) -> None:
        """Called by the core's worker thread for every scored clip."""
        outputs, pipeline = self._outputs, self._pipeline
        if outputs is None or pipeline is None:
            return
        try:
            outputs.result(result, pipeline.config)
            if (inputs := self._inputs) is not None:
                now_ns = self.get_clock().now().nanoseconds
                inputs.published(result.camera, (now_ns - result.last_stamp_ns) / 1e6)
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

    def _latched(self, msg_type: Any, topic: str) -> Any:
        """A plain publisher: LabelInfo is valid from configure on, and a late
        subscriber gets it from the transient-local history."""
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1,
            reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        return self.create_publisher(msg_type, topic, latched)

    def _stop_streaming(self) -> None:
        if self._inputs is not None:
            self._inputs.stop()
            self._inputs = None
        for timer in (self._diagnostics_timer, self._rematch_timer):
            if timer is not None:
                self.destroy_timer(timer)
        self._diagnostics_timer = self._rematch_timer = None
        if self._pipeline is not None and self._streaming:
            self._pipeline.stop()  # joins the worker thread
        self._streaming = False

    def _unload(self) -> None:
        if self._outputs is not None:
            self._outputs.destroy()
            self._outputs = None
        self._last_stats = None
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
    elif node.get_parameter("autostart").value:
        node.autostart()
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
    code = node.exit_code or 0
    if args is None:  # the console script: nothing is left to do but to exit
        exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
