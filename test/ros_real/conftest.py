"""Fixtures of the real-DDS suite (see ros_real_harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ros_real_harness import RosPython, next_domain, require_ros, ros_env, tiny_checkpoint


@pytest.fixture(scope="session")
def ros() -> RosPython:
    return require_ros()


@pytest.fixture
def env(ros: RosPython, tmp_path: Path) -> dict[str, str]:
    """The environment of every process of one test: its own ROS_DOMAIN_ID."""
    return ros_env(next_domain(), tmp_path / "ros_log")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ros_real"))
