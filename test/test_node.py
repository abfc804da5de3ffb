"""The perception node's logic, run against the in-test rclpy stand-in
(test/test_node_standin.py: NOT rclpy, a recorder of what the node declares,
creates and publishes) with a real tiny checkpoint and the real streaming core.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import test_node_standin as ros
import torch
from helpers_models import tiny_config

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.models import build_model
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.ros.params import PARAMS

ACTION = ("wave", "walk", "sit", "stand", "jump")
GESTURE = ("one", "two", "three", "four", "five", "six", "seven")
STEP_NS = 1_000_000_000 // 15  # frames at 15 fps


@pytest.fixture(scope="module")
def node_module() -> Iterator[ModuleType]:
    """mtl_perception.ros.node (and its message helpers) imported with the stand-in
    in sys.modules, then forgotten."""
    ros_modules = ("mtl_perception.ros.node", "mtl_perception.ros.convert",
                   "mtl_perception.ros.gate_topics", "mtl_perception.ros.publishers")
    # Only the stand-in's names are put in and taken out again: restoring all of
    # sys.modules would also drop what torch imported meanwhile, and torch refuses
    # to import some of its modules twice (a second test module using this fixture).
    fakes = ros.modules()
    saved = {name: sys.modules.get(name) for name in fakes}
    sys.modules.update(fakes)
    try:
        for name in ros_modules:  # imported again, against the stand-in
            sys.modules.pop(name, None)
        import mtl_perception.ros.node as node

        yield node
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name in ros_modules:
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = tiny_config()
    info = CheckpointInfo(
        model=config,
        class_names=(ACTION, GESTURE),
        preprocess=PreprocessConfig(clip_length=4, resize=(32, 32), crop=(32, 32)),
    )
    path = tmp_path_factory.mktemp("ckpt") / "best.safetensors"
    save_checkpoint(path, build_model(config), info)
    return path


def make_node(node_module: ModuleType, **params: Any) -> Any:
    overrides = [ros.Parameter(k, None, v) for k, v in params.items()]
    return node_module.PerceptionNode(parameter_overrides=overrides)


def image(stamp_ns: int, frame_id: str = "cam", value: int = 0, encoding: str = "rgb8") -> Any:
    height, width = 24, 40
    pixels = np.full((height, width, 3), value, dtype=np.uint8)
    header = ros.Header(stamp=ros.Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                        frame_id=frame_id)
    return ros.Image(header=header, height=height, width=width, encoding=encoding,
                     is_bigendian=0, step=width * 3, data=pixels.tobytes())


def state(label: str) -> Any:
    return ros.LifecycleState(label, 0)


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    """Results come from the core's worker thread: wait for them (not a timing check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.01)


def feed(node: Any, topic: str, count: int, start_ns: int = 10**9) -> list[Any]:
    (subscription,) = [s for s in node.subscriptions if s.topic == topic]
    frames = [image(start_ns + i * STEP_NS, value=i * 10) for i in range(count)]
    for msg in frames:
        subscription.callback(msg)
    return frames


def test_descriptors_carry_type_range_and_description(node_module: ModuleType) -> None:
    node = make_node(node_module)
    assert set(node.descriptors) == {spec.name for spec in PARAMS}
    threshold = node.descriptors["score_threshold"]
    assert threshold.type == ros.ParameterType.PARAMETER_DOUBLE
    assert (threshold.floating_point_range[0].from_value,
            threshold.floating_point_range[0].to_value) == (0.0, 1.0)
    top_k = node.descriptors["top_k"]
    assert top_k.type == ros.ParameterType.PARAMETER_INTEGER
    assert top_k.integer_range[0].from_value == 1
    assert node.descriptors["image_topics"].type == ros.ParameterType.PARAMETER_STRING_ARRAY
    assert "changeable at run time" in top_k.additional_constraints
    assert "read at configure" in node.descriptors["target_fps"].additional_constraints
    assert all(d.description for d in node.descriptors.values())


def test_parameters_reach_the_core_and_subscriptions(node_module: ModuleType,
                                                     checkpoint: Path) -> None:
    node = make_node(
        node_module, checkpoint=str(checkpoint), device="cpu", target_fps=10.0,
        inference_stride=3, max_gap_s=2.0, top_k=2, smoothing="mean", smoothing_window=3,
        score_threshold=0.05, clip_length=3, qos_reliability="reliable", qos_depth=7,
        image_topics=["/a/image_raw", "/b/image_raw/compressed"], cpu_threads=1,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.SUCCESS
        assert torch.get_num_threads() == 1  # cpu_threads, at configure
    finally:
        torch.set_num_threads(before)
    config = node._pipeline.config
    assert (config.target_fps, config.inference_stride, config.max_gap_s) == (10.0, 3, 2.0)
    assert (config.top_k, config.smoothing, config.smoothing_window) == (2, "mean", 3)
    assert (config.score_threshold, config.clip_length) == (0.05, 3)
    assert node._pipeline.clip_length == 3
    assert str(node._pipeline.device) == "cpu"
    assert node.on_activate(state("inactive")) is ros.TransitionCallbackReturn.SUCCESS
    by_topic = {s.topic: s for s in node.subscriptions}
    assert by_topic["/a/image_raw"].msg_type is ros.Image
    assert by_topic["/b/image_raw/compressed"].msg_type is ros.CompressedImage
    qos = by_topic["/a/image_raw"].qos
    assert (qos.depth, qos.reliability) == (7, ros.ReliabilityPolicy.RELIABLE)
    assert any("using cpu" in line for line in node.logger.of("info"))
    node.release()


def test_frames_reach_the_core_and_results_carry_the_input_header(
    node_module: ModuleType, checkpoint: Path
) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu",
                     inference_stride=2, top_k=3)
    node.on_configure(state("unconfigured"))
    action = node.publisher("/human/action")
    gesture = node.publisher("/human/gesture")
    feed_before_activate = action.sent == [] and gesture.sent == []
    node.on_activate(state("inactive"))
    frames = feed(node, "/camera/image_raw", 12)
    newest = frames[-1].header.stamp

    def newest_scored() -> bool:
        return any((m.header.stamp.sec, m.header.stamp.nanosec) == (newest.sec, newest.nanosec)
                   for m in gesture.sent)

    # The newest clip is never dropped, older ones may be (realtime): wait for it.
    wait_for(newest_scored)
    node.on_deactivate(state("active"))  # joins the worker: no more results after this
    # Clips end on the 4th sampled frame (clip length 4), then every 2nd (stride 2).
    ends = [frames[i] for i in range(3, 12, 2)]
    stamps = {(f.header.stamp.sec, f.header.stamp.nanosec) for f in ends}
    for publisher, names in ((action, ACTION), (gesture, GESTURE)):
        for msg in publisher.sent:
            assert isinstance(msg, ros.Classification)
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in stamps
            assert msg.header.frame_id == "cam"
            assert 1 <= len(msg.results) <= 3
            scores = [h.score for h in msg.results]
            assert scores == sorted(scores, reverse=True)
            assert all(0.0 <= s <= 1.0 for s in scores)
            assert {h.class_id for h in msg.results} <= set(names)
    def stamps_of(sent: list[Any]) -> list[tuple[int, int]]:
        return [(m.header.stamp.sec, m.header.stamp.nanosec) for m in sent]

    assert stamps_of(action.sent) == stamps_of(gesture.sent)  # one clip, both tasks
    assert feed_before_activate
    # Deactivated: the model stays loaded, nothing is subscribed.
    assert node._pipeline is not None and node.subscriptions == []
    node.on_cleanup(state("inactive"))
    assert node._pipeline is None and node.publishers == []


def test_label_info_is_published_once_per_task(node_module: ModuleType,
                                               checkpoint: Path) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    node.on_configure(state("unconfigured"))
    for topic, names in (("/human/action/label_info", ACTION),
                         ("/human/gesture/label_info", GESTURE)):
        publisher = node.publisher(topic)
        assert publisher.qos.durability is ros.DurabilityPolicy.TRANSIENT_LOCAL
        assert publisher.qos.reliability is ros.ReliabilityPolicy.RELIABLE
        node.on_activate(state("inactive"))
        node.on_deactivate(state("active"))
        node.on_activate(state("inactive"))
        (msg,) = publisher.sent
        assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(names))
        node.on_deactivate(state("active"))
    node.release()


def test_live_parameters_are_validated_and_applied(node_module: ModuleType,
                                                   checkpoint: Path) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    node.on_configure(state("unconfigured"))
    node.on_activate(state("inactive"))
    (ok,) = node.set_parameters([ros.Parameter("top_k", None, 2)])
    assert ok.successful and node._pipeline.config.top_k == 2
    (ok,) = node.set_parameters([ros.Parameter("smoothing", None, "ema")])
    assert ok.successful and node._pipeline.config.smoothing == "ema"
    (bad,) = node.set_parameters([ros.Parameter("top_k", None, 0)])
    assert not bad.successful and "top_k" in bad.reason
    (bad,) = node.set_parameters([ros.Parameter("smoothing", None, "median")])
    assert not bad.successful and "median" in bad.reason
    (bad,) = node.set_parameters([ros.Parameter("score_threshold", None, 1.5)])
    assert not bad.successful and node._pipeline.config.score_threshold == 0.0
    (fixed,) = node.set_parameters([ros.Parameter("target_fps", None, 30.0)])
    assert not fixed.successful
    assert "cleanup" in fixed.reason and "configure" in fixed.reason
    assert node.get_parameter("target_fps").value == 15.0
    # Unconfigured, settings read at configure may change (and apply at the next configure).
    node.on_deactivate(state("active"))
    node.on_cleanup(state("inactive"))
    (ok,) = node.set_parameters([ros.Parameter("target_fps", None, 30.0)])
    assert ok.successful
    node.on_configure(state("unconfigured"))
    assert node._pipeline.config.target_fps == 30.0
    assert node._pipeline.config.top_k == 2  # the live change was kept as the parameter
    node.release()


def test_diagnostics_report_the_core_counters(node_module: ModuleType,
                                              checkpoint: Path) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    node.on_configure(state("unconfigured"))
    node.on_activate(state("inactive"))
    (timer,) = [t for t in node.timers if t.callback == node.diagnostics_cb]
    assert timer.period == 1.0
    feed(node, "/camera/image_raw", 3)
    timer.callback()
    (array,) = node.publisher("/diagnostics").sent
    by_name = {s.name: s for s in array.status}
    camera = by_name["perception_node: camera /camera/image_raw"]
    values = dict((kv.key, kv.value) for kv in camera.values)
    assert values["frames_received"] == "3" and values["frames_sampled"] == "3"
    assert camera.level == b"\x00"
    inference = by_name["perception_node: inference"]
    assert dict((kv.key, kv.value) for kv in inference.values)["device"] == "cpu"
    node.release()


def test_undecodable_frames_log_once_per_topic(node_module: ModuleType,
                                               checkpoint: Path) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    node.on_configure(state("unconfigured"))
    node.on_activate(state("inactive"))
    (subscription,) = node.subscriptions
    for i in range(3):
        subscription.callback(image(10**9 + i * STEP_NS, encoding="bayer_rggb8"))
    errors = [m for m in node.logger.of("error") if "bayer_rggb8" in m]
    assert len(errors) == 1 and "/camera/image_raw" in errors[0]
    assert node._pipeline.stats().cameras["/camera/image_raw"].decode_errors == 3
    node.release()


def test_annotated_image_draws_the_newest_frame(node_module: ModuleType,
                                                checkpoint: Path) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu",
                     publish_annotated=True, inference_stride=1)
    node.on_configure(state("unconfigured"))
    node.on_activate(state("inactive"))
    annotated = node.publisher("~/annotated_image")
    frames = feed(node, "/camera/image_raw", 4)
    wait_for(lambda: node.publisher("/human/action").sent)
    feed(node, "/camera/image_raw", 1, start_ns=frames[-1].header.stamp.sec * 10**9
         + frames[-1].header.stamp.nanosec + STEP_NS)
    node.release()
    (msg,) = annotated.sent
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", 24, 40, 120)
    pixels = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(24, 40, 3)
    assert (pixels != pixels[-1, -1]).any()  # text drawn on the flat frame


@pytest.mark.parametrize("content", [None, b"not a safetensors file at all"])
def test_unusable_checkpoint_fails_configure_once_and_clearly(
    node_module: ModuleType, tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "best.safetensors"
    if content is not None:
        path.write_bytes(content)
    node = make_node(node_module, checkpoint=str(path), device="cpu")
    assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.FAILURE
    (error,) = node.logger.of("error")
    assert str(path) in error and "\n" not in error
    assert ("make demo" in error) == (content is None)
    assert node.exit_code == 2 and node._pipeline is None


def test_main_exits_non_zero_on_a_corrupt_checkpoint(node_module: ModuleType,
                                                     tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04 pickle, not safetensors")
    assert node_module.main(["--ros-args", "-p", f"checkpoint:={bad}"]) == 2


@pytest.mark.parametrize(
    ("setting", "problem"),
    [("qos_depth:=5.0", "expecting int"),  # rclpy refuses the type when declaring
     ("smoothing:=median", "smoothing must be one of ['none', 'ema', 'mean'], got 'median'"),
     ("max_gap_s:=0.01", "max_gap_s (0.01) is shorter than one sampling period")],
)
def test_main_refuses_bad_settings_at_start_up(node_module: ModuleType, checkpoint: Path,
                                               setting: str, problem: str) -> None:
    spins = ros.SingleThreadedExecutor.spins
    args = ["--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", setting]
    ros.NODE_LOGGERS.clear()
    ros._NAMED_LOGGERS.clear()
    assert node_module.main(args) == 2
    (error,) = ros.errors_logged()
    assert error.startswith("invalid parameters:") and problem in error
    assert ros.SingleThreadedExecutor.spins == spins  # never started spinning


def test_main_runs_and_exits_zero_on_interrupt(node_module: ModuleType,
                                               checkpoint: Path) -> None:
    # The stand-in executor raises KeyboardInterrupt at the first spin (Ctrl-C).
    spins = ros.SingleThreadedExecutor.spins
    assert node_module.main(["--ros-args", "-p", f"checkpoint:={checkpoint}"]) == 0
    assert ros.SingleThreadedExecutor.spins == spins + 1


def test_exceptions_in_transitions_are_logged_not_swallowed(
    node_module: ModuleType, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rclpy turns an exception in a transition callback into ERROR silently."""
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu",
                     image_topics=["/ok", "/b"])

    def broken_warmup(self: Any, batch: int = 1) -> float:
        raise RuntimeError("CUDA out of memory")

    with monkeypatch.context() as patch:
        patch.setattr(node_module.StreamPipeline, "warmup", broken_warmup)
        assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.FAILURE
    (error,) = node.logger.of("error")
    assert error == "configure failed: RuntimeError: CUDA out of memory"
    assert node._pipeline is None and node.publishers == []
    assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.SUCCESS

    def refused(msg_type: type, topic: str, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"Invalid topic name: {topic!r}")  # as rclpy would

    with monkeypatch.context() as patch:  # (an invalid name is refused at configure now)
        patch.setattr(node, "create_subscription", refused)
        assert node.on_activate(state("inactive")) is ros.TransitionCallbackReturn.FAILURE
    assert "activate failed" in node.logger.of("error")[-1]
    assert "Invalid topic name" in node.logger.of("error")[-1]
    assert node.subscriptions == [] and not node._pipeline.running
    node.release()


def test_main_survives_a_failing_callback(node_module: ModuleType, checkpoint: Path) -> None:
    ros.SingleThreadedExecutor.raises = [RuntimeError("Transition is not registered.")]
    spins = ros.SingleThreadedExecutor.spins
    assert node_module.main(["--ros-args", "-p", f"checkpoint:={checkpoint}"]) == 0
    assert ros.SingleThreadedExecutor.spins == spins + 2  # went on spinning after the error


def test_a_failed_reconfigure_keeps_the_node_alive(node_module: ModuleType, checkpoint: Path,
                                                    tmp_path: Path) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.SUCCESS
    node.on_cleanup(state("inactive"))
    missing = tmp_path / "moved.safetensors"
    (ok,) = node.set_parameters([ros.Parameter("checkpoint", None, str(missing))])
    assert ok.successful  # settings read at configure may change while unconfigured
    assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.FAILURE
    assert str(missing) in node.logger.of("error")[-1]
    assert node.exit_code is None  # only a failing start-up ends the process


def test_unknown_parameters_are_named_not_silently_ignored(node_module: ModuleType) -> None:
    node = make_node(node_module, **{"top-k": 3, "target_fps": 10.0})
    (warning,) = node.logger.of("warning")
    assert "['top-k']" in warning and "top_k" in warning
    assert make_node(node_module, top_k=3).logger.of("warning") == []
