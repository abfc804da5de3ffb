"""The node's parameters as one table: name, type, default, range, description.

The node (the only module importing rclpy) turns each row into a
`ParameterDescriptor`; `config/perception.yaml` lists the same names (a test
checks both ways); the validation here is what `ros2 param set` goes through.
Keeping the table free of rclpy lets tests and the YAML check read it on
machines without ROS 2.

Rows in section "stream" are fields of the streaming core's `StreamConfig`
with the same name; rows in section "node" are the node's own settings.
Only the rows marked `live` may change while the node is configured: the
others are read by `configure`, so changing them then would silently do
nothing; they are refused with a reason instead (set them while the node is
unconfigured, then configure).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mtl_perception.names import topic_problem

ParamType = Literal["string", "string_array", "bool", "integer", "double"]

# What `make demo` writes; a fresh checkout has no model, and the error for a
# missing checkpoint says how to get one (see `missing_checkpoint_hint`).
DEFAULT_CHECKPOINT = "demo/model/best.safetensors"

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter. `low`/`high` are inclusive bounds for numbers."""

    name: str
    type: ParamType
    default: Any
    description: str
    section: Literal["node", "stream"] = "node"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = False

    @property
    def constraints(self) -> str:
        """Human-readable constraints, shown by `ros2 param describe`."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        if self.low is not None and self.high is not None:
            parts.append(f"range [{self.low}, {self.high}]")
        parts.append("changeable at run time" if self.live else "read at configure")
        return "; ".join(parts)


PARAMS: tuple[ParamSpec, ...] = (
    # --- what to run ---
    ParamSpec("checkpoint", "string", DEFAULT_CHECKPOINT,
              "Path of the model checkpoint (.safetensors), or of a model exported with "
              "`python -m training export` (.onnx, for the onnxruntime, openvino and tensorrt "
              "backends). Class names, clip length, input size and normalisation come from it."),
    ParamSpec("device", "string", "auto",
              "Where the model runs: auto (the GPU when CUDA is available, else the CPU), cpu, "
              "cuda or cuda:N.", choices=("auto", "cpu", "cuda", "cuda:N")),
    ParamSpec("autocast", "string", "none",
              "Mixed precision on the GPU: none (float32), fp16 or bf16. Ignored on the CPU.",
              choices=("none", "fp16", "bf16")),
    ParamSpec("backend", "string", "torch",
              "Inference engine of the forward pass: torch (PyTorch), onnxruntime (CPU or "
              "CUDA), openvino (CPU) or tensorrt (NVIDIA GPU, fp16 with autocast fp16). A "
              "checkpoint is exported in memory for the non-torch engines; each needs its "
              "extra (pip install 'mtl_perception[onnx|openvino|tensorrt]').",
              section="stream", choices=("torch", "onnxruntime", "openvino", "tensorrt")),
    ParamSpec("engine_cache", "string", "",
              "Folder of built TensorRT engines (keyed by model checksum, GPU and TensorRT "
              "version); empty: ~/.cache/mtl_perception/tensorrt.", section="stream"),
    # --- input ---
    ParamSpec("image_topics", "string_array", ["/camera/image_raw"],
              "Image topics, one camera each: sensor_msgs/Image, or sensor_msgs/CompressedImage "
              "for topics ending in /compressed."),
    # Reliable by default: measured over Fast DDS on one machine, a best-effort
    # subscription lost about half of 640x480 raw frames at 30 fps, a reliable
    # one none (bench/results/ros_live.json).
    ParamSpec("qos_reliability", "string", "reliable",
              "Reliability of the image subscriptions: reliable (every raw frame arrives; "
              "matches reliable publishers only, image_transport's default) or best_effort "
              "(matches every publisher; for cameras with sensor-data QoS).",
              choices=("best_effort", "reliable")),
    ParamSpec("qos_depth", "integer", 5, "History depth of the image subscriptions.",
              low=1, high=1000),
    # --- sampling and clips (streaming core) ---
    ParamSpec("target_fps", "double", 15.0,
              "Frames per second sampled by header stamp into clips (the rate the model was "
              "trained at).", section="stream", low=0.5, high=240.0),
    ParamSpec("inference_stride", "integer", 8,
              "A new clip every this many sampled frames.", section="stream", low=1, high=1000),
    ParamSpec("clip_length", "integer", 0,
              "Frames per clip; 0 uses the checkpoint's. May only narrow the checkpoint's.",
              section="stream", low=0, high=1024),
    ParamSpec("max_gap_s", "double", 0.5,
              "A gap between two frames' stamps longer than this restarts the camera's buffer "
              "instead of gluing two scenes into one clip.", section="stream",
              low=0.01, high=3600.0),
    ParamSpec("max_batch", "integer", 0,
              "Most clips per forward pass; 0 = automatic: the newest clip of every camera "
              "in one pass on a GPU, one clip per pass on the CPU.",
              section="stream", low=0, high=64),
    # --- post-processing (live) ---
    ParamSpec("score_threshold", "double", 0.0,
              "Results below this probability are left out; a task whose best score is below "
              "it publishes an empty result.", section="stream", low=0.0, high=1.0, live=True),
    ParamSpec("top_k", "integer", 5, "How many results per task and clip.",
              section="stream", low=1, high=1000, live=True),
    ParamSpec("smoothing", "string", "none",
              "Temporal smoothing of scores over the last clips: none, ema or mean.",
              section="stream", choices=("none", "ema", "mean"), live=True),
    ParamSpec("smoothing_window", "integer", 5,
              "Clips averaged by mean smoothing; ema uses alpha = 2 / (window + 1).",
              section="stream", low=1, high=1000, live=True),
    # --- task gate and gesture events (live; checkpoints with a task gate) ---
    ParamSpec("gate", "string", "off",
              "Task gate (action | gesture | none per clip): off (results as without a "
              "gate), publish (adds /human/task and /human/gesture/events) or filter (publish, "
              "and a task the gate gives less than gate_threshold publishes an empty result).",
              section="stream", choices=("off", "publish", "filter"), live=True),
    ParamSpec("gate_threshold", "double", 0.5,
              "Under gate filter: the gate probability a task needs for its result to be "
              "published.", section="stream", low=0.0, high=1.0, live=True),
    ParamSpec("event_source", "string", "auto",
              "What starts a gesture event: gate (the gate's gesture probability), max_softmax "
              "(the gesture head's best probability), auto (gate when the model has one).",
              section="stream", choices=("auto", "gate", "max_softmax"), live=True),
    ParamSpec("event_threshold", "double", 0.5,
              "A gesture starts when the event source reaches this.",
              section="stream", low=0.0, high=1.0, live=True),
    ParamSpec("event_hysteresis", "double", 0.1,
              "A started gesture ends (and its event is decided) when the event source falls "
              "below event_threshold minus this.", section="stream", low=0.0, high=1.0,
              live=True),
    ParamSpec("event_min_s", "double", 0.3,
              "Gestures shorter than this (seconds between their first and last clip) give "
              "no event.", section="stream", low=0.0, high=3600.0, live=True),
    ParamSpec("event_max_s", "double", 6.0,
              "A gesture lasting this long is decided at once (at least event_min_s).",
              section="stream", low=0.0, high=3600.0, live=True),
    ParamSpec("event_refractory_s", "double", 1.0,
              "No gesture event within this many seconds of the previous one.",
              section="stream", low=0.0, high=3600.0, live=True),
    # --- temporal decisions of gesture events (issue 24; a checkpoint's stored choice is
    # the default of these and of event_threshold/event_hysteresis: stream/decisions.py) ---
    ParamSpec("event_smoothing", "string", "none",
              "The event source over time before the thresholds: none, ema (causal "
              "exponential smoothing) or hmm (two-state filter with a switching cost).",
              section="stream", choices=("none", "ema", "hmm"), live=True),
    ParamSpec("event_ema_alpha", "double", 0.5,
              "Under event_smoothing ema: the newest clip's weight (1 = no smoothing).",
              section="stream", low=0.0, high=1.0, live=True),
    ParamSpec("event_switch_prob", "double", 0.1,
              "Under event_smoothing hmm: the prior probability per clip of switching between "
              "gesture and not (0.5 = no smoothing).", section="stream", low=0.0, high=0.5,
              live=True),
    ParamSpec("event_class_weights", "string", "linear",
              "An event's class from its clips weighted linear (1, 2, ..., n) or by activity "
              "(each clip's event source: lead-in clips count little).",
              section="stream", choices=("linear", "activity"), live=True),
    # --- outputs ---
    ParamSpec("publish_annotated", "bool", False,
              "Publish ~/annotated_image: the newest frame with both tasks' top results drawn "
              "on it (for RViz and Foxglove)."),
    ParamSpec("diagnostics_period_s", "double", 1.0,
              "Seconds between two /diagnostics messages.", low=0.1, high=60.0),
)

BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}
LIVE: frozenset[str] = frozenset(spec.name for spec in PARAMS if spec.live)


def check_value(spec: ParamSpec, value: Any) -> str | None:
    """Why `value` is not acceptable for `spec`, or None when it is."""
    if spec.type == "bool":
        ok = isinstance(value, bool)
    elif spec.type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.type == "double":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif spec.type == "string":
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if not ok:
        return f"{spec.name}: expected {spec.type}, got {value!r}"
    if spec.type in ("integer", "double"):
        if not math.isfinite(float(value)):
            return f"{spec.name}: {value!r} is not a finite number"
        too_low = spec.low is not None and value < spec.low
        too_high = spec.high is not None and value > spec.high
        if too_low or too_high:
            return f"{spec.name}: {value!r} is outside [{spec.low}, {spec.high}]"
    if spec.name == "device":
        if not DEVICE_PATTERN.match(value):
            return f"device: {value!r} is not auto, cpu, cuda or cuda:N"
    elif spec.choices and value not in spec.choices:
        return f"{spec.name}: {value!r} is not one of {list(spec.choices)}"
    if spec.name == "image_topics":
        if not value:
            return "image_topics: give at least one image topic"
        if len(set(value)) != len(value):
            return f"image_topics: {list(value)} names a topic twice"
        if any(not topic.strip() for topic in value):
            return "image_topics: an empty topic name"
        for topic in value:  # the check dataset_to_bag --topic makes (mtl_perception.names)
            if (problem := topic_problem(topic)) is not None:
                return f"image_topics: {problem}"
    if spec.name == "checkpoint" and not value.strip():
        return "checkpoint: empty path"
    return None


def check_change(name: str, value: Any, configured: bool) -> str | None:
    """Why setting parameter `name` to `value` now is refused, or None to accept it."""
    spec = BY_NAME.get(name)
    if spec is None:
        return None  # not ours (use_sim_time, QoS overrides): rclpy and others handle it
    reason = check_value(spec, value)
    if reason is not None:
        return reason
    if configured and not spec.live:
        return (
            f"{name} is read when the node is configured and cannot change while it is; "
            "deactivate and clean the node up (ros2 lifecycle set <node> cleanup), set it, "
            f"then configure again. Changeable at run time: {', '.join(sorted(LIVE))}"
        )
    return None


def validate_all(values: Mapping[str, Any]) -> list[str]:
    """Every problem with a full set of values (as read at configure)."""
    problems = [r for s in PARAMS if (r := check_value(s, values[s.name])) is not None]
    return problems


def stream_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `StreamConfig` fields among `values` (to feed `settings.from_dict`)."""
    return {s.name: _plain(values[s.name]) for s in PARAMS if s.section == "stream"}


def live_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The live-changeable settings among `values`, for `StreamPipeline.update_settings`."""
    return {name: _plain(values[name]) for name in sorted(LIVE) if name in values}


def missing_checkpoint_hint(path: str) -> str:
    """What to do when the checkpoint file does not exist (a fresh checkout has none)."""
    return (
        f"checkpoint not found: {path}. Get one: train with "
        "`python -m training train --config config/train/cpu_small.yaml` "
        "(the run folder then holds best.safetensors), or run `make demo` in the "
        f"mtl_perception source folder, which writes {DEFAULT_CHECKPOINT}; "
        "then start the node with checkpoint:=/absolute/path/to/best.safetensors"
    )


def _plain(value: Any) -> Any:
    """rclpy hands arrays back as array.array or tuples; the core wants plain lists."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
        return list(value)
    return value
