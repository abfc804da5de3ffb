"""launch/perception.launch.py, config/perception.yaml and the node agree.

ROS 2 (and so the `launch` library) is not installed here: the launch file is
parsed as Python source, and run with recording stand-ins for the launch
libraries to check what its arguments turn into; the node's parameters come
from its table
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
# INTERFACES.md, "Launch arguments", plus `gate` (the task gate's mode) and `backend`.
LAUNCH_ARGUMENTS = {"config", "checkpoint", "image_topic", "device", "backend", "namespace",
                    "use_sim_time", "autostart", "gate"}


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
    # `/**`: applies under any namespace and node name (launch's namespace:=).
    assert list(data) == ["/**"]
    assert list(data["/**"]) == ["ros__parameters"]
    return data["/**"]["ros__parameters"]


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
    # Lifecycle: a LifecycleNode that configures and activates itself (its
    # autostart parameter); the file emits no transition a vanished node could miss.
    assert "LifecycleNode(" in source
    for absent in ("TRANSITION_CONFIGURE", "EmitEvent(", "ChangeState("):
        assert absent not in source


def test_launch_names_the_installed_executable_and_the_yaml_node() -> None:
    constants = launch_constants()
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert f'"{constants["NODE_NAME"]} = mtl_perception.ros.node:main"' in setup
    assert constants["NODE_NAME"] == "perception_node"


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


def _recorder(name: str) -> type:
    """A launch action/event stand-in that keeps its constructor arguments."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    return type(name, (), {"__init__": __init__})


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: Any) -> str:
        return context.launch_configurations[self.name]


def _launch_module() -> Any:
    """launch/perception.launch.py loaded with recording stand-ins for the launch
    libraries (not installed here), to run its argument handling."""
    import importlib.util
    import sys
    import types
    from unittest import mock

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    names = ["DeclareLaunchArgument", "EmitEvent", "OpaqueFunction", "RegisterEventHandler",
             "Shutdown", "IfCondition", "LifecycleNode", "OnStateTransition", "ChangeState",
             "LaunchDescription"]
    fake = {name: _recorder(name) for name in names}
    transition = types.SimpleNamespace(TRANSITION_CONFIGURE=1, TRANSITION_ACTIVATE=3)
    modules = {
        "launch": module("launch", LaunchContext=object,
                         LaunchDescription=fake["LaunchDescription"]),
        "launch.actions": module("launch.actions", **{n: fake[n] for n in names[:5]}),
        "launch.conditions": module("launch.conditions", IfCondition=fake["IfCondition"]),
        "launch.events": module("launch.events", matches_action=lambda action: action),
        "launch.substitutions": module("launch.substitutions",
                                       LaunchConfiguration=_LaunchConfiguration),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", LifecycleNode=fake["LifecycleNode"]),
        "launch_ros.event_handlers": module("launch_ros.event_handlers",
                                            OnStateTransition=fake["OnStateTransition"]),
        "launch_ros.events": module("launch_ros.events"),
        "launch_ros.events.lifecycle": module("launch_ros.events.lifecycle",
                                              ChangeState=fake["ChangeState"]),
        "lifecycle_msgs": module("lifecycle_msgs"),
        "lifecycle_msgs.msg": module("lifecycle_msgs.msg", Transition=transition),
        "ament_index_python": module("ament_index_python"),
        "ament_index_python.packages": module(
            "ament_index_python.packages",
            get_package_share_directory=lambda package: f"/opt/share/{package}"),
    }
    modules["lifecycle_msgs"].msg = modules["lifecycle_msgs.msg"]
    with mock.patch.dict(sys.modules, modules):
        spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
        assert spec is not None and spec.loader is not None
        launch_file = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(launch_file)
    return launch_file


def _run_setup(launch_file: Any, **given: str) -> tuple[Any, list[Any]]:
    values = {name: default for name, (default, _) in launch_file.ARGUMENTS.items()}
    values.update(given)
    context = type("Context", (), {"launch_configurations": values})()
    actions = launch_file._launch_setup(context)
    (node,) = [a for a in actions if type(a).__name__ == "LifecycleNode"]
    return node, actions


def test_launch_arguments_become_parameters() -> None:
    launch_file = _launch_module()
    description = launch_file.generate_launch_description()
    (entities,) = description.args
    declared = [e.args[0] for e in entities if type(e).__name__ == "DeclareLaunchArgument"]
    assert set(declared) == LAUNCH_ARGUMENTS
    node, _ = _run_setup(launch_file)
    assert node.kwargs["executable"] == "perception_node" == node.kwargs["name"]
    assert node.kwargs["namespace"] == ""
    config, overrides = node.kwargs["parameters"]
    assert config == "/opt/share/mtl_perception/config/perception.yaml"
    # empty arguments keep the file's values
    assert overrides == {"use_sim_time": False, "autostart": True}
    node, _ = _run_setup(launch_file, checkpoint="/m/best.safetensors", device="cuda:1",
                         image_topic="/front/image_raw/compressed", use_sim_time="true",
                         namespace="robot1", config="/etc/my.yaml", gate="filter")
    config, overrides = node.kwargs["parameters"]
    assert config == "/etc/my.yaml" and node.kwargs["namespace"] == "robot1"
    assert overrides == {"use_sim_time": True, "checkpoint": "/m/best.safetensors",
                         "device": "cuda:1", "image_topics": ["/front/image_raw/compressed"],
                         "gate": "filter", "autostart": True}


def test_autostart_is_the_nodes_parameter() -> None:
    launch_file = _launch_module()
    node, actions = _run_setup(launch_file, autostart="false")
    assert actions == [node]  # no lifecycle events: the node configures itself
    assert node.kwargs["parameters"][1]["autostart"] is False
    assert BY_NAME["autostart"].default is False and BY_NAME["autostart"].section == "node"


def test_node_exit_ends_the_launch_unless_it_is_shutting_down_already() -> None:
    """Ctrl-C: launch is shutting down when the node exits; a second Shutdown would
    fail ("Cannot shutdown a ROS adapter that is not running") and exit 1."""
    launch_file = _launch_module()
    node, _ = _run_setup(launch_file)
    on_exit = node.kwargs["on_exit"]
    context = type("Context", (), {"is_shutdown": True})()
    assert on_exit(object(), context) is None
    context.is_shutdown = False
    (shutdown,) = on_exit(object(), context)
    assert type(shutdown).__name__ == "Shutdown"
    assert "perception_node" in shutdown.kwargs["reason"]
