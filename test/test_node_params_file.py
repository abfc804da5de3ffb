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
