"""The node's parameter values -> one typed settings object (no rclpy here).

`read_node_config` is the single place where the values `ros2` hands the node
become typed settings: the core's `StreamConfig` plus the node's own. The node
calls it at configure; `main` calls it (and `check_checkpoint`) at start-up, so
a node that cannot run says so at once, in one line, instead of waiting for a
configure transition that can only fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtl_perception.checkpoint import CheckpointError
from mtl_perception.deploy.load import read_model_info
from mtl_perception.exits import os_error_line
from mtl_perception.ros.params import (
    NodeSettings,
    missing_checkpoint_hint,
    section_values,
    validate_all,
)
from mtl_perception.settings import SettingsError, from_dict
from mtl_perception.stream import StreamConfig


class NodeConfigError(ValueError):
    """Parameter values the node cannot run with; the message names each problem."""


@dataclass(frozen=True)
class NodeConfig:
    checkpoint: Path  # `node.checkpoint`, with ~ expanded
    node: NodeSettings  # device (auto | cpu | cuda | cuda:N) is resolved at configure
    stream: StreamConfig


def read_node_config(values: Mapping[str, Any]) -> NodeConfig:
    """Typed settings from every declared parameter's value; NodeConfigError if unusable."""
    problems = validate_all(values)
    if problems:
        raise NodeConfigError("invalid parameters: " + "; ".join(problems))
    try:
        node = from_dict(NodeSettings, section_values(values, "node"), "invalid parameters")
        stream = from_dict(StreamConfig, section_values(values, "stream"), "invalid parameters")
    except SettingsError as exc:  # from_dict already put "invalid parameters: " in front
        raise NodeConfigError(str(exc)) from exc
    except ValueError as exc:  # StreamConfigError: combinations
        raise NodeConfigError(f"invalid parameters: {exc}") from exc
    try:
        checkpoint = Path(node.checkpoint).expanduser()
    except RuntimeError as exc:  # "~nosuchuser/...": no such home folder
        raise NodeConfigError(f"invalid parameters: checkpoint: cannot expand "
                              f"{node.checkpoint!r}: no such user") from exc
    return NodeConfig(checkpoint=checkpoint, node=node, stream=stream)


def combination_problem(values: Mapping[str, Any], changes: Mapping[str, Any]) -> str | None:
    """Why `changes` (each value valid on its own) make the node's settings unusable
    together with the other `values` (max_gap_s under one sampling period, event_max_s
    under event_min_s), or None.

    For an unconfigured node: accepting such a value would only fail the next
    configure (and a first configure that fails ends the process). Settings that
    are unusable already are left to configure, so they can be mended one by one.
    """
    try:
        read_node_config(values)
    except NodeConfigError:
        return None
    try:
        read_node_config({**values, **changes})
    except NodeConfigError as exc:
        return str(exc).removeprefix("invalid parameters: ")
    return None


def check_checkpoint(path: Path) -> str | None:
    """Why the checkpoint (or exported .onnx model) cannot be used (metadata only, the
    weights are not read), or None."""
    try:
        if not path.exists():
            return missing_checkpoint_hint(str(path.absolute()))
        read_model_info(path)
    except (CheckpointError, ValueError) as exc:  # ValueError: BackendError (no onnx package)
        return str(exc)
    except OSError as exc:  # a name too long: Path.exists raises
        return f"checkpoint {path}: {os_error_line(exc)}"
    return None


def check_params_files(argv: list[str]) -> str | None:
    """Why a `--params-file` among the ROS arguments cannot be read, or None.

    rcl refuses such a file with a traceback-sized RCLError plus a log line of
    its own; checking first gives one line naming the file and the problem.
    The check reads YAML as rcl does (`_RclLoader`), so it never refuses a
    file that rcl accepts, such as the one launch_ros writes for overrides.
    """
    files = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--params-file"]
    for name in files:
        path = Path(name).expanduser()
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_RclLoader)
        except OSError as exc:
            return f"--params-file {name}: cannot read it: {exc.strerror or exc}"
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            return f"--params-file {name}: not valid YAML{line}: {getattr(exc, 'problem', exc)}"
        if not _node_entries(data):
            return (f"--params-file {name}: expected `<node name or /**>:` then "
                    "`ros__parameters:` with the values under it (see config/perception.yaml)")
    return None


class _RclLoader(yaml.SafeLoader):
    """YAML as rcl's parser (libyaml events) reads it: tags are ignored.

    launch_ros dumps its overrides with `yaml.dump`, which writes a list value
    (`image_topic:=...` becomes `image_topics`) as `!!python/tuple`;
    `safe_load` refuses that tag, rcl reads the plain sequence under it. Every
    unknown tag is therefore built as the plain mapping, sequence or scalar it
    tags; nothing is ever executed or imported.
    """


def _untagged(loader: _RclLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


_RclLoader.add_multi_constructor("tag:yaml.org,2002:python/", _untagged)
_RclLoader.add_multi_constructor("!", _untagged)


def _node_entries(data: Any) -> bool:
    """Whether every entry is `name: {ros__parameters: {...}}`, names possibly nested
    (`robot1: {perception_node: {ros__parameters: ...}}`), as rcl reads them."""
    if not isinstance(data, dict) or not data:
        return False
    if "ros__parameters" in data:
        return isinstance(data["ros__parameters"], dict) and len(data) == 1
    return all(_node_entries(value) for value in data.values())
