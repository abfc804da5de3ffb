"""`--params-file` checks the node makes before rcl reads the file (no ROS needed).

rcl refuses an unreadable or malformed file with a traceback; the node says
why in one line instead (the real node's exit 2 is in test/ros_real/). These
check that the files rcl accepts pass, including per-robot keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_perception.ros.node_config import check_params_files

ROOT = Path(__file__).resolve().parents[1]


def _check(tmp_path: Path, text: str) -> str | None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return check_params_files(["perception_node", "--ros-args", "--params-file", str(path)])


@pytest.mark.parametrize("text", [
    "/**:\n  ros__parameters:\n    top_k: 3\n",
    "perception_node:\n  ros__parameters:\n    top_k: 3\n",
    "/robot1/perception_node:\n  ros__parameters:\n    top_k: 3\n",
    "robot1:\n  perception_node:\n    ros__parameters:\n      top_k: 3\n"
    "robot2:\n  perception_node:\n    ros__parameters:\n      top_k: 4\n",
], ids=["wildcard", "node name", "full name", "nested per robot"])
def test_files_rcl_reads_pass(tmp_path: Path, text: str) -> None:
    assert _check(tmp_path, text) is None


def test_the_shipped_file_passes() -> None:
    yaml = str(ROOT / "config" / "perception.yaml")
    assert check_params_files(["x", "--ros-args", "--params-file", yaml]) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("perception_node: [\n", "not valid YAML (line 2)"),
    ("perception_node:\n  top_k: 3\n", "expected `<node name or /**>:` then `ros__parameters:`"),
    ("", "expected `<node name or /**>:`"),
    ("/**:\n  ros__parameters: 3\n", "expected `<node name or /**>:`"),
])
def test_malformed_files_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    problem = _check(tmp_path, text)
    assert problem is not None and expected in problem and "\n" not in problem
    assert str(tmp_path / "params.yaml") in problem


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    problem = check_params_files(["x", "--ros-args", "--params-file", str(missing)])
    assert problem == f"--params-file {missing}: cannot read it: No such file or directory"
    assert check_params_files(["x", "--ros-args", "-p", "top_k:=3"]) is None


# The file `ros2 launch mtl_perception perception.launch.py image_topic:=/cam0/image_raw`
# hands the node, byte for byte. Origin: launch_ros (Humble, Jazzy, Rolling)
# `Node._create_params_file_from_dict` writes
# `yaml.dump({node_name: {"ros__parameters": params}}, f, default_flow_style=False)`,
# where `evaluate_parameter_dict` has turned every list value into a tuple;
# launch_ros has no wheel, so this copies its output instead of running it
# (the test below rebuilds it with the same yaml.dump call).
LAUNCH_ROS_IMAGE_TOPIC_FILE = (
    "/perception_node:\n"
    "  ros__parameters:\n"
    "    image_topics: !!python/tuple\n"
    "    - /cam0/image_raw\n"
    "    use_sim_time: false\n"
)


def test_the_file_launch_ros_writes_for_image_topic_passes(tmp_path: Path) -> None:
    import yaml

    rebuilt = yaml.dump({"/perception_node": {"ros__parameters": {
        "use_sim_time": False, "image_topics": ("/cam0/image_raw",)}}}, default_flow_style=False)
    assert rebuilt == LAUNCH_ROS_IMAGE_TOPIC_FILE
    assert _check(tmp_path, LAUNCH_ROS_IMAGE_TOPIC_FILE) is None


@pytest.mark.parametrize("text", [
    "/**:\n  ros__parameters:\n    gate: !!str off\n    top_k: !!int 3\n",
    "/**:\n  ros__parameters:\n    image_topics: !custom [/a, /b]\n",
    "/**: !!python/dict\n  ros__parameters:\n    top_k: 3\n",
], ids=["yaml 1.1 tags", "local tag", "python dict tag"])
def test_tags_rcl_ignores_pass(tmp_path: Path, text: str) -> None:
    assert _check(tmp_path, text) is None


def test_a_python_object_tag_is_never_built(tmp_path: Path) -> None:
    text = "/**:\n  ros__parameters:\n    x: !!python/object/apply:os.system ['touch x']\n"
    assert _check(tmp_path, text) is None  # read as the plain sequence rcl would see
    assert not (Path.cwd() / "x").exists()
