"""The deploy layer's errors and its optional-package import (no other mtl_perception import).

Every engine package is optional; `require` turns a missing one into one line
naming the setup.py extra that installs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from mtl_perception.exits import one_line  # noqa: F401  (the one copy, re-exported here)


class BackendError(ValueError):
    """A backend that cannot run here (package missing, no GPU, wrong device, a file it
    cannot take); one line. A ValueError, so the node's and the CLIs' one-line handlers
    (which catch ValueError) report it like any other bad setting."""


class DeviceError(ValueError):
    """A device name that is not one, or a device this machine does not have; one line."""


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional package, or one line naming the setup.py extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(
            f"{what} needs the Python package {module.split('.')[0]!r}, which is not "
            f"installed: pip install 'mtl_perception[{extra}]'"
        ) from exc
