"""The node's parameter checks without rclpy (independent probe).

Values rclpy would only refuse later (an invalid topic name at subscription
time) or that raised something other than NodeConfigError (a `~user` path
with no such user) must be refused by `read_node_config` in one line.
"""

from __future__ import annotations

from typing import Any

import pytest

from mtl_perception.ros.node_config import NodeConfigError, read_node_config
from mtl_perception.ros.params import PARAMS, topic_problem

DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMS}


@pytest.mark.parametrize("topic", ["/camera/image_raw", "camera/image_raw", "~/image",
                                   "/cam_1/image/compressed", "/a"])
def test_valid_topic_names_pass(topic: str) -> None:
    assert topic_problem(topic) is None
    config = read_node_config({**DEFAULTS, "image_topics": [topic]})
    assert config.image_topics == (topic,)


@pytest.mark.parametrize("topic", ["not a topic", "/cam/", "//cam", "/1cam/image", "/cam-1",
                                   "/cam//image", "~cam", "/caméra"])
def test_invalid_topic_names_are_refused(topic: str) -> None:
    with pytest.raises(NodeConfigError, match="image_topics: .* not a valid ROS 2 topic name"):
        read_node_config({**DEFAULTS, "image_topics": ["/ok", topic]})


def test_a_checkpoint_under_an_unknown_user_is_a_node_config_error() -> None:
    with pytest.raises(NodeConfigError, match="checkpoint: cannot expand") as error:
        read_node_config({**DEFAULTS, "checkpoint": "~no_such_user_probe/best.safetensors"})
    assert "\n" not in str(error.value)
