"""The node's `max_batch` 0 on the CPU: every camera's clip in one forward pass when the
warm-up measured that clearly cheaper per clip (mtl_perception/ros/batching.py), and
its wiring into configure on the rclpy stand-in (test/test_node_standin.py). Timings
are handed in: the tests check the decision, not the machine's speed."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_node import checkpoint, make_node, node_module, state  # noqa: F401

from mtl_perception.ros.batching import BATCH_CHEAPER, cameras_batch


def timings(per_size: dict[int, list[float]]) -> tuple[Any, list[int]]:
    """forward_ms(n) handing out `per_size[n]` in turn, and the sizes asked for."""
    asked: list[int] = []
    left = {n: list(values) for n, values in per_size.items()}

    def forward_ms(n: int) -> float:
        asked.append(n)
        return left[n].pop(0)

    return forward_ms, asked


def test_a_batch_cheaper_per_clip_scores_every_camera_at_once() -> None:
    # The demo-size model: 4 clips 12 ms against 9 ms for one (36 ms one by one).
    forward_ms, asked = timings({1: [30.0, 9.0], 4: [40.0, 12.0]})
    batch, line = cameras_batch(forward_ms, 4)
    assert batch == 4
    assert asked == [1, 1, 4, 4]
    assert "took 12.0 ms, of one clip 9.0 ms" in line and "max_batch 4" in line


def test_a_batch_dearer_per_clip_keeps_one_clip_per_pass() -> None:
    # A full-width r3d_18 (bench/results/models.json): 8 clips take 11x one clip.
    forward_ms, _ = timings({1: [426.0, 430.0], 8: [4717.0, 4800.0]})
    batch, line = cameras_batch(forward_ms, 8)
    assert batch == 1
    assert "one clip per pass" in line and "max_batch 1" in line


@pytest.mark.parametrize(("every", "expected"), [(0.8 * 2 * 10.0, 2), (16.1, 1)])
def test_the_margin_is_a_fifth_of_one_pass_per_clip(every: float, expected: int) -> None:
    assert BATCH_CHEAPER == 0.8
    forward_ms, _ = timings({1: [10.0, 10.0], 2: [every, every]})
    assert cameras_batch(forward_ms, 2)[0] == expected


def test_one_camera_measures_nothing() -> None:
    forward_ms, asked = timings({})
    assert cameras_batch(forward_ms, 1) == (1, "")
    assert asked == []


def test_configure_applies_the_choice_and_an_explicit_max_batch_wins(
        node_module: ModuleType, checkpoint: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Imported with the node against the stand-in (it needs the message packages).
    loading = sys.modules["mtl_perception.ros.loading"]
    load_engine, sizes = loading.load_engine, []

    def engine_with_fake_timings(*args: Any, **kwargs: Any) -> Any:
        engine = load_engine(*args, **kwargs)
        real = engine.warmup

        def warmup(batch: int = 1, clip_length: int = 0) -> float:
            sizes.append(batch)
            real(batch, clip_length)  # the real pass, a made-up time
            return {1: 10.0, 2: 12.0}[batch]

        engine.warmup = warmup
        return engine

    monkeypatch.setattr(loading, "load_engine", engine_with_fake_timings)
    topics = ["/a/image_raw", "/b/image_raw"]
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu", image_topics=topics)
    assert node.on_configure(state("unconfigured")) is node_module.TransitionCallbackReturn.SUCCESS
    assert node._pipeline.config.max_batch == 2
    assert sizes[:4] == [1, 1, 2, 2]
    node.release()

    sizes.clear()
    node = make_node(node_module, checkpoint=str(checkpoint), device="cpu", image_topics=topics,
                     max_batch=1)
    assert node.on_configure(state("unconfigured")) is node_module.TransitionCallbackReturn.SUCCESS
    assert node._pipeline.config.max_batch == 1
    assert 2 not in sizes  # nothing measured: the setting is the user's
    node.release()
