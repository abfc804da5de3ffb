"""The node's parameters, built from the settings schema (no rclpy here).

Each parameter is one field of a settings dataclass, declared once with
`mtl_perception.schema.setting`: the node's own (`NodeSettings`, below) and
the streaming core's (`StreamConfig`, section "stream", same names). The node
turns each row into a `ParameterDescriptor` (`ros.convert.descriptor_for`);
the validation here is what `ros2 param set` goes through;
`config/perception.yaml` lists the same names (a test checks both ways).
Keeping the table free of rclpy lets tests and the YAML check read it on
machines without ROS 2.

Only the rows marked `live` may change while the node is configured: the
others are read by `configure`, so changing them then would silently do
nothing; they are refused with a reason instead (set them while the node is
unconfigured, then configure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mtl_perception.names import topic_problem
from mtl_perception.schema import (
    Declared,
    RosType,
    check_fields,
    constraints,
    declared,
    setting,
    settings_table,
)
from mtl_perception.schema import problem as range_problem
from mtl_perception.stream.config import StreamConfig

# What `make demo` writes; a fresh checkout has no model, and the error for a
# missing checkpoint says how to get one (see `missing_checkpoint_hint`).
DEFAULT_CHECKPOINT = "demo/model/best.safetensors"

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

QosReliability = Literal["auto", "reliable", "best_effort"]
Autocast = Literal["none", "fp16", "bf16"]


@dataclass(frozen=True)
class NodeSettings:
    """The node's own settings (the core's are `StreamConfig`'s); declared once here."""

    checkpoint: str = setting(
        DEFAULT_CHECKPOINT, "Path of the model checkpoint (.safetensors), or of a model "
        "exported with `python -m training export` (.onnx, for the onnxruntime, openvino and "
        "tensorrt backends). Class names, clip length, input size and normalisation come "
        "from it.")
    device: str = setting(
        "auto", "Where the model runs: auto (the GPU when CUDA is available, else the CPU), "
        "cpu, cuda or cuda:N.", choices=("auto", "cpu", "cuda", "cuda:N"))
    autocast: Autocast = setting(
        "none", "Mixed precision on the GPU: none (float32), fp16 or bf16. Ignored on the CPU.")
    # 1 by default: a robot's cores are shared with other nodes, and on shared cores a
    # second intra-op thread made one forward of the demo model cost 12x the CPU time
    # (0.56 against 0.046 CPU-s, 3 other busy processes on 2 cores; docs/robot.md).
    cpu_threads: int = setting(
        1, "Intra-op CPU threads of the inference engine (torch, ONNX Runtime, OpenVINO); "
        "0: the library's default (every core). Applied at configure.", low=0, high=256)
    image_topics: tuple[str, ...] = setting(
        ("/camera/image_raw",), "Image topics, one camera each: sensor_msgs/Image, or "
        "sensor_msgs/CompressedImage for topics ending in /compressed; at most 64 "
        "(one node warms up one forward pass over every camera's clip).")
    # auto by default: a camera with sensor-data QoS (best effort) never
    # connects to a reliable subscription, and a best-effort subscription to a
    # reliable camera loses frames it need not lose (half to two thirds of 640x480
    # raw frames at 30 fps over Fast DDS defaults, bench/results/ros_live.json).
    qos_reliability: QosReliability = setting(
        "auto", "Reliability of the image subscriptions: auto (each topic's publishers' "
        "own: reliable when all of them offer it, else best effort; matched again when "
        "publishers change, as rosbag2's recorder does), reliable or best_effort.")
    qos_depth: int = setting(5, "History depth of the image subscriptions.", low=1, high=1000)
    publish_annotated: bool = setting(
        False, "Publish ~/annotated_image: the newest frame with both tasks' top results drawn "
        "on it (for RViz and Foxglove).")
    diagnostics_period_s: float = setting(
        1.0, "Seconds between two /diagnostics messages.", low=0.1, high=60.0)
    autostart: bool = setting(
        False, "Configure and activate at start (the launch file sets it true); false: wait "
        "for `ros2 lifecycle set`.")

    def __post_init__(self) -> None:
        reason = check_fields(self)  # every range and choice, as declared above
        if reason is not None:
            raise ValueError(reason)


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter. `low`/`high` are inclusive bounds for numbers."""

    name: str
    type: RosType
    default: Any
    description: str
    section: Literal["node", "stream"]
    low: float | None
    high: float | None
    choices: tuple[str, ...]
    live: bool
    row: Declared

    @property
    def constraints(self) -> str:
        """Human-readable constraints, shown by `ros2 param describe`."""
        return constraints(self.row)


def _spec(row: Declared, section: Literal["node", "stream"]) -> ParamSpec:
    default = list(row.default) if isinstance(row.default, tuple) else row.default
    return ParamSpec(row.name, row.type, default, row.rule.help, section, row.rule.low,
                     row.rule.high, row.choices, row.rule.live, row)


def build_params() -> tuple[ParamSpec, ...]:
    """The parameter table from the two settings dataclasses' declarations."""
    node = [_spec(row, "node") for row in declared(NodeSettings)]
    stream = [_spec(row, "stream") for row in declared(StreamConfig) if row.rule.ros]
    return (*node, *stream)


PARAMS: tuple[ParamSpec, ...] = build_params()
BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}
# Most image topics of one node: with max_batch 0, configure measures (and the engine is
# built for) one forward pass over every camera's clip, so an unbounded list (a stray
# params-file list) would allocate without bound at configure; max_batch's own bound.
MAX_CAMERAS = int(BY_NAME["max_batch"].high or 64)
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
        if value is False and "off" in spec.choices:  # YAML 1.1: a bare off is false
            return (f"{spec.name}: off arrived as the boolean false (YAML reads a bare off "
                    f"as false); quote it: -p {spec.name}:=\"'off'\" or "
                    f"ros2 param set <node> {spec.name} \"'off'\"")
        return f"{spec.name}: expected {spec.type}, got {value!r}"
    if spec.name == "device":
        if not DEVICE_PATTERN.match(value):
            return f"device: {value!r} is not auto, cpu, cuda or cuda:N"
    elif (reason := range_problem(spec.row, value)) is not None:
        return reason
    if spec.name == "image_topics":
        if not value:
            return "image_topics: give at least one image topic"
        if len(value) > MAX_CAMERAS:
            return (f"image_topics: {len(value)} topics, at most {MAX_CAMERAS}: configure "
                    "warms up one forward pass over every camera's clip (max_batch's "
                    f"bound, {MAX_CAMERAS}); run more nodes for more cameras")
        if len(set(value)) != len(value):
            return f"image_topics: {list(value)} names a topic twice"
        if any(not topic.strip() for topic in value):
            return "image_topics: an empty topic name"
        for topic in value:  # the check dataset_to_bag --topic makes (mtl_perception.names)
            if (bad := topic_problem(topic)) is not None:
                return f"image_topics: {bad}"
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


def section_values(values: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The `NodeSettings` ("node") or `StreamConfig` ("stream") fields among `values`
    (to feed `settings.from_dict`)."""
    return {s.name: _plain(values[s.name]) for s in PARAMS if s.section == section}


def stream_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `StreamConfig` fields among `values`."""
    return section_values(values, "stream")


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


BEGIN_TABLES = ("<!-- generated from the settings schema: python -m mtl_perception.ros.params "
                "--write docs/settings.md; test/test_settings_schema.py checks it -->")
END_TABLES = "<!-- end of the generated tables -->"


def settings_tables() -> str:
    """docs/settings.md's tables of every setting, generated from the schema."""
    node = tuple(s.row for s in PARAMS if s.section == "node")
    return (
        f"{BEGIN_TABLES}\n\n"
        "Each setting is declared once, on `NodeSettings` (`mtl_perception/ros/params.py`) "
        "or `StreamConfig` (`mtl_perception/stream/config.py`): the ROS parameters and their "
        "ranges, `ros2 param set`'s checks, `--set KEY=VALUE` and these tables all come from "
        "there. A bare `off` in YAML or on the command line (`-p gate:=off`) is the boolean "
        "false; the node takes it as `off` at start (`ros2 param set` says to quote it).\n\n"
        "### The node's own settings\n\n"
        + settings_table(node)
        + "\n### The streaming core's settings\n\n"
        "Parameters of the node with the same names, and the `--config` / `--set` "
        "settings of bag evaluation (`offline_queue` is bag evaluation's only).\n\n"
        + settings_table(declared(StreamConfig))
        + f"\n{END_TABLES}\n"
    )


def with_tables(page: str) -> str:
    """`page` with its generated block replaced by the current tables (or appended)."""
    if BEGIN_TABLES in page and END_TABLES in page:
        before = page[: page.index(BEGIN_TABLES)]
        after = page[page.index(END_TABLES) + len(END_TABLES):].removeprefix("\n")
        return before + settings_tables() + after
    return page.rstrip("\n") + "\n\n## Every setting\n\n" + settings_tables()


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        target = Path(sys.argv[2])
        target.write_text(with_tables(target.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(settings_tables(), end="")
