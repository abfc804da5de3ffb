"""How the node's process starts and ends (no rclpy here)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys

from mtl_perception.exits import one_line


def rcl_error_text(exc: Exception) -> str:
    """rcl's message on one line, without its C source locations (", at /x/parse.c:841")."""
    text = one_line(exc)
    return re.sub(r"(, at [^,]*:\d+)+", "", text).removeprefix("failed to initialize rcl: ")


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown. After a clean shutdown that
    teardown (native code of torch and the middleware, no Python frame) took 3.7-5 s
    on a loaded 2-core machine, past launch's 5 s SIGTERM escalation; ours is all
    released and written by then, and the streams are flushed here."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
            stream.flush()
    os._exit(code)
