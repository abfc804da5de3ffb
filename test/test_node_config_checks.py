"""The node's parameter checks without rclpy, and the ROS 2 topic-name check.

A `~user` checkpoint path with no such user raised RuntimeError out of
`read_node_config`; it must be a NodeConfigError in one line. `topic_problem`
(used by dataset_to_bag's --topic) follows the ROS 2 name rules.
"""

from __future__ import annotations

from typing import Any

import pytest

from mtl_perception.bag.types import topic_problem
from mtl_perception.ros.node_config import NodeConfigError, read_node_config
from mtl_perception.ros.params import PARAMS

DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMS}


@pytest.mark.parametrize("topic", ["/camera/image_raw", "camera/image_raw", "~/image",
                                   "/cam_1/image/compressed", "/a"])
def test_valid_topic_names_pass(topic: str) -> None:
    assert topic_problem(topic) is None


@pytest.mark.parametrize("topic", ["not a topic", "/cam/", "//cam", "/1cam/image", "/cam-1",
                                   "/cam//image", "~cam", "/caméra", ""])
def test_invalid_topic_names_are_named(topic: str) -> None:
    problem = topic_problem(topic)
    assert problem is not None and "not a valid ROS 2 topic name" in problem


def test_a_checkpoint_under_an_unknown_user_is_a_node_config_error() -> None:
    with pytest.raises(NodeConfigError, match="checkpoint: cannot expand") as error:
        read_node_config({**DEFAULTS, "checkpoint": "~no_such_user_probe/best.safetensors"})
    assert "\n" not in str(error.value)


def test_a_stream_combination_error_is_said_once() -> None:
    """from_dict puts its `where` in front; it used to read 'invalid parameters: parameters:'."""
    with pytest.raises(NodeConfigError, match=r"^invalid parameters: max_gap_s"):
        read_node_config({**DEFAULTS, "target_fps": 10.0, "max_gap_s": 0.05})
