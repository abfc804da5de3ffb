"""launch/perception.launch.py, config/perception.yaml and the node agree.

ROS 2 (and so the `launch` library) is not installed here: the launch file is
read as Python source (parsed, its argument table and node settings
extracted); the node's parameters come from its table
(`mtl_perception.ros.params.PARAMS`), which is the only thing the node
declares from (checked on node.py's source below).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtl_perception.ros.params import BY_NAME, LIVE, PARAMS, check_value
from mtl_perception.stream import LIVE_SETTINGS, StreamConfig

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "perception.launch.py"
YAML = ROOT / "config" / "perception.yaml"
NODE = ROOT / "mtl_perception" / "ros" / "node.py"
# INTERFACES.md, "Launch arguments".
LAUNCH_ARGUMENTS = {"config", "checkpoint", "image_topic", "device", "namespace",
                    "use_sim_time", "autostart"}


def launch_constants() -> dict[str, Any]:
    """The module-level constants of the launch file (literal values only)."""
    tree = ast.parse(LAUNCH.read_text(encoding="utf-8"), filename=str(LAUNCH))
    constants = {}
    for statement in tree.body:
        if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
            target = statement.targets[0] if isinstance(statement, ast.Assign) else statement.target
            if isinstance(target, ast.Name):
                try:
                    constants[target.id] = ast.literal_eval(statement.value)
                except ValueError:
                    continue
    return constants


def yaml_parameters() -> dict[str, Any]:
    data = yaml.safe_load(YAML.read_text(encoding="utf-8"))
    assert list(data) == ["perception_node"]
    assert list(data["perception_node"]) == ["ros__parameters"]
    return data["perception_node"]["ros__parameters"]


def test_launch_file_parses_and_declares_the_interface_arguments() -> None:
    source = LAUNCH.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(LAUNCH))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    constants = launch_constants()
    assert set(constants["ARGUMENTS"]) == LAUNCH_ARGUMENTS
    assert all(description for _, description in constants["ARGUMENTS"].values())
    assert constants["ARGUMENTS"]["autostart"][0] == "true"  # ros2 launch alone runs it
    assert constants["PACKAGE"] == "mtl_perception"
    # Lifecycle: a LifecycleNode with configure and activate transitions emitted.
    for needed in ("LifecycleNode(", "TRANSITION_CONFIGURE", "TRANSITION_ACTIVATE",
                   'goal_state="inactive"'):
        assert needed in source


def test_launch_names_the_installed_executable_and_the_yaml_node() -> None:
    constants = launch_constants()
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert f'"{constants["NODE_NAME"]} = mtl_perception.ros.node:main"' in setup
    data = yaml.safe_load(YAML.read_text(encoding="utf-8"))
    assert constants["NODE_NAME"] in data


def test_every_yaml_parameter_is_declared_and_every_declared_one_is_in_the_yaml() -> None:
    in_yaml = yaml_parameters()
    declared = [spec.name for spec in PARAMS]
    assert len(declared) == len(set(declared))
    assert sorted(in_yaml) == sorted(declared)


def test_yaml_values_have_the_declared_types_and_are_the_defaults() -> None:
    """ROS 2 refuses a value of another type (1 for a double); the file shows the defaults."""
    for name, value in yaml_parameters().items():
        spec = BY_NAME[name]
        python_type = {"string": str, "string_array": list, "bool": bool, "integer": int,
                       "double": float}[spec.type]
        assert type(value) is python_type, f"{name}: {value!r} is not {spec.type}"
        assert check_value(spec, value) is None
        assert value == spec.default, name


def test_every_yaml_parameter_has_a_comment() -> None:
    lines = YAML.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^ {4}(\w+):", line)
        if match:
            assert lines[index - 1].strip().startswith("#"), f"{match.group(1)} has no comment"
            if match.group(1) in LIVE:
                comment = [ln for ln in lines[:index] if ln.strip().startswith("#")]
                assert any("Live." in c for c in comment[-3:]), match.group(1)


def test_node_declares_parameters_only_from_the_table() -> None:
    tree = ast.parse(NODE.read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr.startswith("declare_param")]
    assert len(calls) == 1
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For)
             and isinstance(n.iter, ast.Name) and n.iter.id == "PARAMS"
             and any(c in list(ast.walk(n)) for c in calls)]
    assert loops, "declare_parameter is not called inside `for spec in PARAMS`"


def test_stream_parameters_are_stream_config_fields_with_its_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(StreamConfig)}
    defaults = StreamConfig()
    for spec in PARAMS:
        if spec.section == "stream":
            assert spec.name in fields, spec.name
            assert getattr(defaults, spec.name) == spec.default, spec.name
    assert set(LIVE) == set(LIVE_SETTINGS)
    assert all(BY_NAME[name].section == "stream" for name in LIVE)


@pytest.mark.parametrize("spec", PARAMS, ids=lambda s: s.name)
def test_defaults_pass_their_own_validation(spec: Any) -> None:
    assert check_value(spec, spec.default) is None
