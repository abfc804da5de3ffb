"""Signal tests without races: signal a child once it says its work has started.

A child is started with SIGINT at its default action (a shell that runs `make test`
in the background starts its children with SIGINT ignored, and Python then never
raises KeyboardInterrupt), prints a readiness marker on stdout once the work to
interrupt is under way, and must be given enough work to be still at it when the
signal arrives. A child that ends before the signal is a broken test set-up, said
as such, never a pass or a silent retry.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

READY_TIMEOUT_S = 600.0  # torch imports in ~10 s; at load 20 on 2 cores, minutes


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_ready_child(command: Sequence[str], marker: str, env: dict[str, str],
                      cwd: Path) -> subprocess.Popen[str]:
    """Start `command`; return once it printed `marker` on stdout (its work has begun)."""
    child = subprocess.Popen(list(command), env=env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    assert child.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(child.stdout.readline() if child.stdout
                                              else ""), daemon=True).start()
    try:
        line = lines.get(timeout=READY_TIMEOUT_S)
    except queue.Empty:
        child.kill()
        _, stderr = child.communicate(timeout=60)
        pytest.fail(f"test set-up: no {marker!r} from the child in {READY_TIMEOUT_S:.0f} s; "
                    f"stderr: {stderr[-2000:]}")
    if line.strip() != marker:
        child.kill()
        _, stderr = child.communicate(timeout=60)
        pytest.fail(f"test set-up: the child printed {line!r} instead of {marker!r} "
                    f"(exit {child.returncode}); stderr: {stderr[-2000:]}")
    return child


def signal_and_wait(child: subprocess.Popen[str], sig: int, timeout: float = 120.0) -> str:
    """Send `sig`, wait for the child, return its stderr; fail clearly if it ended first."""
    if child.poll() is None:
        child.send_signal(sig)
    _, stderr = child.communicate(timeout=timeout)
    if child.returncode == 0:
        pytest.fail("test set-up: the child finished its work before the signal arrived "
                    "(exit 0); give it more work after the readiness marker")
    return stderr
