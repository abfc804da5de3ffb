"""`ros2 param set` on an unconfigured node refuses values that only fail the next
configure together with the others (and a first configure that fails ends the
process), and configure names an unusable checkpoint path in one line; on the rclpy
stand-in (test/test_node_standin.py)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import test_node_standin as ros
from test_node import checkpoint, make_node, node_module, state  # noqa: F401

SUCCESS = ros.TransitionCallbackReturn.SUCCESS


def set_one(node: Any, name: str, value: Any) -> Any:
    (result,) = node.set_parameters([ros.Parameter(name, None, value)])
    return result


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [("target_fps", 0.5, "max_gap_s (0.5) is shorter than one sampling period"),
     ("max_gap_s", 0.05, "max_gap_s (0.05) is shorter than one sampling period"),
     ("event_min_s", 3600.0, "event_max_s must be in [event_min_s (3600.0)"),
     ("event_max_s", 0.0, "event_max_s must be in [event_min_s (0.3)"),
     ("checkpoint", "~no_such_user_here/best.safetensors", "no such user")],
)
def test_a_value_unusable_with_the_others_is_refused_while_unconfigured(
        node_module: ModuleType, checkpoint: Path,  # noqa: F811
        name: str, value: Any, problem: str) -> None:
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    before = node.get_parameter(name).value
    result = set_one(node, name, value)
    assert not result.successful and problem in result.reason and "\n" not in result.reason
    assert node.get_parameter(name).value == before
    assert node.on_configure(state("unconfigured")) is SUCCESS  # still configures
    assert node.exit_code is None
    node.release()


def test_the_same_values_in_a_workable_order_are_accepted(
        node_module: ModuleType, checkpoint: Path) -> None:  # noqa: F811
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    assert not set_one(node, "target_fps", 1.0).successful  # max_gap_s 0.5 < one period
    assert set_one(node, "max_gap_s", 2.0).successful
    assert set_one(node, "target_fps", 1.0).successful
    assert set_one(node, "event_max_s", 100.0).successful
    assert set_one(node, "event_min_s", 50.0).successful
    assert node.on_configure(state("unconfigured")) is SUCCESS
    config = node._pipeline.config
    assert (config.target_fps, config.max_gap_s) == (1.0, 2.0)
    assert (config.event_min_s, config.event_max_s) == (50.0, 100.0)
    node.release()


def test_live_combinations_are_still_the_cores_to_refuse(
        node_module: ModuleType, checkpoint: Path) -> None:  # noqa: F811
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    assert node.on_configure(state("unconfigured")) is SUCCESS
    result = set_one(node, "event_min_s", 3600.0)
    assert not result.successful and "event_max_s must be in" in result.reason
    assert set_one(node, "top_k", 2).successful
    node.release()


def test_a_checkpoint_name_too_long_for_the_file_system_is_one_line(
        node_module: ModuleType, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / ("x" * 300 + ".safetensors")
    node = make_node(node_module, checkpoint=str(path), device="cpu")
    assert node.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.FAILURE
    (error,) = node.logger.of("error")
    assert error.startswith(f"checkpoint {path}") and "too long" in error
    assert "configure failed" not in error and "\n" not in error


def test_more_image_topics_than_one_forward_pass_holds_are_refused(
        node_module: ModuleType, checkpoint: Path) -> None:  # noqa: F811
    many = [f"/camera{i}/image_raw" for i in range(65)]
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    result = set_one(node, "image_topics", many)
    assert not result.successful and "65 topics, at most 64" in result.reason
    assert set_one(node, "image_topics", many[:64]).successful
    started = make_node(node_module, checkpoint=str(checkpoint), device="cpu", image_topics=many)
    problem = started.startup_problem()  # main refuses it before configure allocates anything
    assert problem is not None and "image_topics: 65 topics" in problem
    assert started.on_configure(state("unconfigured")) is ros.TransitionCallbackReturn.FAILURE


@pytest.mark.parametrize("topics", [["/camera/image_raw", "camera/image_raw"],
                                    ["~/image", "/perception_node/image"]])
def test_one_topic_named_twice_after_resolution_is_refused(
        node_module: ModuleType, checkpoint: Path, topics: list[str]) -> None:  # noqa: F811
    """A relative and an absolute name of one topic passed the "names a topic twice" check:
    the node subscribed twice and scored and published every frame twice."""
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu")
    result = set_one(node, "image_topics", topics)
    assert not result.successful and "are one topic" in result.reason
    assert f"{topics[0]!r} and {topics[1]!r}" in result.reason
    node.release()
    started = make_node(node_module, checkpoint=str(checkpoint), device="cpu",
                        image_topics=topics)  # from a params file: refused at configure
    assert started.on_configure(state("unconfigured")) is not SUCCESS
    assert started.exit_code == 2 and started._pipeline is None
    started.release()
