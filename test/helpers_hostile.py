"""Shared pieces of the standing bad-input suite (test/test_hostile_*.py).

Each property feeds generated hostile input to one reader and holds it to the
contract of issue 7: a result equal to an independent parse, or the module's
own error with a one-line message; never another exception, never a hang
(Hypothesis deadline + pytest-timeout), never a change outside the
temporary folder (checked by `Untouched`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

REPO = Path(__file__).resolve().parents[1]

# Hypothesis keeps caches in `.hypothesis/` of the working folder; keep them (and the example
# database, switched off too) out of the tree that `Untouched` watches.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="hypothesis-home-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)  # no litter in /tmp
HOSTILE = settings(max_examples=60, deadline=3000, database=None, derandomize=False,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _snapshot() -> dict[str, tuple[int, int]]:
    seen = {}
    for top, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__", ".pytest_cache",
                                                ".mypy_cache", ".ruff_cache", ".venv",
                                                ".venv-ros")]
        for name in files:
            path = os.path.join(top, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            seen[os.path.relpath(path, REPO)] = (info.st_size, info.st_mtime_ns)
    home = Path.home()
    for entry in (os.listdir(home) if home.is_dir() else []):
        seen[f"~/{entry}"] = (0, 0)
    return seen


class Untouched:
    """`with Untouched():` fails if a file of the working tree (or a name in ~) changed.

    Used as the autouse fixture `untouched` around each whole property (one
    snapshot per test, not per example, keeps the suite fast).
    """

    def __enter__(self) -> Untouched:
        self.before = _snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        after = _snapshot()
        changed = sorted(k for k in set(self.before) | set(after)
                         if self.before.get(k) != after.get(k))
        assert not changed, f"files outside the temporary folder changed: {changed[:5]}"


def one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)


@pytest.fixture(autouse=True)
def untouched() -> Iterator[None]:
    with Untouched():
        yield
