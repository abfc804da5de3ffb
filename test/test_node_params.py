"""The node's plain-Python helpers: parameter rules, diagnostics contents, drawing, device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_perception.deploy.device import (
    DeviceError,
    check_autocast,
    describe_device,
    resolve_device,
)
from mtl_perception.ros.annotate import draw_lines, result_lines
from mtl_perception.ros.messages import ERROR, OK, WARN, diagnostic_statuses
from mtl_perception.ros.node_config import NodeConfigError, check_checkpoint, read_node_config
from mtl_perception.ros.params import (
    BY_NAME,
    DEFAULT_CHECKPOINT,
    check_change,
    check_value,
    live_values,
    missing_checkpoint_hint,
    stream_values,
)
from mtl_perception.stream import CameraStats, Percentiles, StreamStats


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("top_k", 0, "must be in [1, 1000], got 0"),
        ("top_k", 2.5, "expected integer"),
        ("top_k", True, "expected integer"),
        ("score_threshold", 1.01, "must be in [0, 1]"),
        ("score_threshold", float("nan"), "must be a finite number"),
        ("smoothing", "median", "must be one of"),
        ("gate", False, "quote it"),
        ("device", "gpu", "not auto, cpu, cuda or cuda:N"),
        ("device", "cuda:x", "not auto, cpu, cuda or cuda:N"),
        ("qos_reliability", "best-effort", "must be one of"),
        ("image_topics", [], "at least one"),
        ("image_topics", ["/a", "/a"], "twice"),
        ("image_topics", "/a", "expected string_array"),
        ("checkpoint", " ", "empty path"),
        ("publish_annotated", 1, "expected bool"),
    ],
)
def test_bad_values_are_refused_with_the_reason(name: str, value: object, problem: str) -> None:
    reason = check_value(BY_NAME[name], value)
    assert reason is not None and reason.startswith(name) and problem in reason


@pytest.mark.parametrize(
    ("name", "value"),
    [("device", "cuda:1"), ("device", "cpu"), ("score_threshold", 1), ("top_k", 1000),
     ("image_topics", ("/a", "/b/compressed")), ("target_fps", 30.0)],
)
def test_good_values_pass(name: str, value: object) -> None:
    assert check_value(BY_NAME[name], value) is None


def test_settings_read_at_configure_change_only_while_unconfigured() -> None:
    refused = check_change("clip_length", 8, configured=True)
    assert refused is not None and "cleanup" in refused and "top_k" in refused
    assert check_change("clip_length", 8, configured=False) is None
    assert check_change("top_k", 3, configured=True) is None
    assert check_change("use_sim_time", True, configured=True) is None  # not ours


def test_values_split_into_stream_config_and_live_settings() -> None:
    values = {spec.name: spec.default for spec in BY_NAME.values()}
    values["image_topics"] = ("/a",)  # rclpy hands arrays back as sequences
    stream = stream_values(values)
    assert "checkpoint" not in stream and "image_topics" not in stream
    assert stream["target_fps"] == 15.0 and stream["top_k"] == 5
    assert live_values({"top_k": 2, "target_fps": 3.0}) == {"top_k": 2}


def test_missing_checkpoint_message_says_how_to_get_one() -> None:
    message = missing_checkpoint_hint("/x/best.safetensors")
    assert message.startswith("checkpoint not found: /x/best.safetensors")
    assert "python -m training train --config config/train/cpu_small.yaml" in message
    assert "make demo" in message and DEFAULT_CHECKPOINT in message
    assert "\n" not in message


def _stats(**camera: int) -> StreamStats:
    return StreamStats(
        cameras={"/cam": CameraStats(input_fps=14.9, **camera)},
        inference_ms=Percentiles(12.345, 20.0, 10),
        latency_ms=Percentiles(30.0, 45.67, 10),
        batches_run=4,
    )


def test_diagnostics_levels_follow_the_last_period() -> None:
    before = _stats(frames_received=10, clips_run=2)
    fine = _stats(frames_received=20, clips_run=4)
    inference, camera = diagnostic_statuses(fine, before, "node", "hps r3d_18")
    assert (camera.level, camera.name, camera.hardware_id) == (OK, "node: camera /cam", "/cam")
    assert dict(inference.values)["frame_to_result_ms_p95"] == "45.7"
    assert dict(inference.values)["inference_ms_p50"] == "12.3"
    assert dict(camera.values)["clips_run"] == "4"
    stalled = diagnostic_statuses(before, before, "node", "m")[1]
    assert stalled.level == WARN and "no frames" in stalled.message
    behind = diagnostic_statuses(_stats(frames_received=20, clips_dropped=3), before, "n", "m")[1]
    assert behind.level == WARN and "3 clips dropped" in behind.message
    broken = diagnostic_statuses(_stats(frames_received=20, decode_errors=5), before, "n", "m")[1]
    assert broken.level == ERROR and "5 frames" in broken.message
    # An old error is not reported forever: only what changed since the last report counts.
    again = diagnostic_statuses(
        _stats(frames_received=30, decode_errors=5), _stats(frames_received=20, decode_errors=5),
        "n", "m")[1]
    assert again.level == OK


def test_failed_forward_passes_are_an_error_for_one_period() -> None:
    before = StreamStats(inference_errors=1)
    failing = diagnostic_statuses(StreamStats(inference_errors=3), before, "node", "m")[0]
    assert failing.level == ERROR and "2 forward passes failed" in failing.message
    assert dict(failing.values)["inference_errors"] == "3"
    recovered = diagnostic_statuses(StreamStats(inference_errors=3), StreamStats(
        inference_errors=3), "node", "m")[0]
    assert recovered.level == OK


def test_diagnostics_before_any_clip() -> None:
    (inference,) = diagnostic_statuses(StreamStats(), None, "node", "m")
    assert "waiting" in inference.message and dict(inference.values)["inference_ms_p50"] == "n/a"


def test_drawing_writes_text_and_leaves_the_input_alone() -> None:
    frame = np.full((120, 160, 3), 90, dtype=np.uint8)
    frame.setflags(write=False)  # decoded frames may be read-only views of the message
    lines = result_lines([("action", [("wave", 0.91), ("walk", 0.05)]), ("gesture", [])])
    assert lines == ["action: wave 0.91", "gesture: -"]
    drawn = draw_lines(frame, lines)
    assert drawn.shape == frame.shape and (frame == 90).all()
    changed = (drawn != 90).any(axis=2)
    assert changed[:40].any() and not changed[80:].any()  # text top left only
    with pytest.raises(ValueError, match="RGB uint8"):
        draw_lines(np.zeros((4, 4), dtype=np.uint8), lines)


def test_device_choice() -> None:
    device = resolve_device("cpu")
    assert device == torch.device("cpu") and "cpu" in describe_device("cpu", device)
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert describe_device("auto", auto).startswith("device auto: using")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
    assert check_autocast("fp16", torch.device("cpu")) == (
        "none", "autocast fp16 ignored on cpu: running float32")
    assert check_autocast("none", torch.device("cpu")) == ("none", None)
    with pytest.raises(DeviceError):
        check_autocast("int8", torch.device("cpu"))


def test_node_config_reads_typed_settings() -> None:
    values = {spec.name: spec.default for spec in BY_NAME.values()}
    values.update(checkpoint="~/m/best.safetensors", qos_reliability="reliable",
                  image_topics=["/a", "/b/compressed"], target_fps=10.0, top_k=3)
    config = read_node_config(values)
    assert config.checkpoint == Path.home() / "m" / "best.safetensors"
    assert config.node.qos_reliability == "reliable"
    assert config.node.image_topics == ("/a", "/b/compressed")
    assert (config.stream.target_fps, config.stream.top_k) == (10.0, 3)
    values.update(max_gap_s=0.05)  # shorter than one sampling period at 10 fps
    with pytest.raises(NodeConfigError, match=r"^invalid parameters: max_gap_s"):
        read_node_config(values)
    values.update(max_gap_s=1.0, smoothing="median", top_k=0)
    with pytest.raises(NodeConfigError) as caught:
        read_node_config(values)
    assert "top_k" in str(caught.value) and "smoothing" in str(caught.value)  # every problem


def test_check_checkpoint(tmp_path: Path) -> None:
    missing = check_checkpoint(tmp_path / "none.safetensors")
    assert missing is not None and "make demo" in missing
    pickle = tmp_path / "old.pt"
    pickle.write_bytes(b"\x80\x04 pickled")
    refused = check_checkpoint(pickle)
    assert refused is not None and "pickle" in refused
