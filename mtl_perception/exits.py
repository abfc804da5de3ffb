"""How every command line ends: one line, a known exit status, nothing half-written.

`run_command` wraps the body of each console command (`evaluate_bag`,
`dataset_to_bag`, every `python -m training` subcommand):

* its own errors (bad input, a folder it must not touch; the `errors` a command
  names, wherever in the command they are raised): one line, exit 2;
* an operating-system error (a full disk, a name too long, a read-only or
  forbidden folder, an I/O error), also one that a library wraps in its own
  type (safetensors' `SafetensorError` around a full disk: `as_os_error`): one
  line naming the path and the cause, exit 2, or 1 once the work has started
  (`work_started`); any other `SafetensorError` (a file it cannot parse) is one
  line, exit 2;
* Ctrl-C (SIGINT) and SIGTERM (what `timeout`, systemd and `ros2 launch`
  send) both unwind as KeyboardInterrupt, so the same cleanup runs (staged
  output removed: `mtl_perception.outputs`); exit 130 or 143, one line.

Commands that stop gracefully on a signal (training saves a resumable state)
install their own handlers while they run and restore these afterwards.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import math
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

_started = False

# Short causes for the errors a user can act on; others use the system's text.
_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "file name too long",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EIO: "input/output error (a failing disk or a network file system)",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C."""


def as_os_error(exc: BaseException, path: object = None) -> OSError | None:
    """The OS error inside a library's own exception (safetensors on a full disk: "I/O
    error: No space left on device (os error 28)"), as an `OSError` naming `path`; else None."""
    if isinstance(exc, OSError):
        return exc
    if type(exc).__name__ != "SafetensorError":
        return None
    found = re.search(r"(?:\bcode: |\bos error )(\d+)", str(exc))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code), None if path is None else str(path))


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], else one line naming the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value
    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high], else one line naming the range."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low:g}..{high:g}, got {text}")
        return value
    return parse


def work_started() -> None:
    """Mark that output is being produced: an OS error from now on exits 1, not 2."""
    global _started
    _started = True


def os_error_line(exc: OSError, where: object = None) -> str:
    """`path: cause` in one line (both paths for a rename), e.g. `/out/x: no space left ...`.

    `where`: the path being written when the error carries none (a `write()`
    that hits a full disk names no file).
    """
    cause = _CAUSES.get(exc.errno or -1) or " ".join((exc.strerror or str(exc)).split())
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if paths:
        return f"{' -> '.join(paths)}: {cause}"
    if where is not None:
        return f"{where}: {cause} (while writing it)"
    return f"{cause} ({type(exc).__name__})"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` in this process (once; repeats are ignored).

    Child processes (loader workers, render pools) inherit the handler; in
    them it falls back to the default action, so they end as they always did.
    """
    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signal.signal(signum, signal.SIG_IGN)  # the cleanup that follows is not cut short
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test runner, an embedding): leave it be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(body: Callable[[], int], log: logging.Logger,
                errors: tuple[type[BaseException], ...] = (),
                stopped: str = "nothing was written", where: object = None) -> int:
    """Run `body`; every way it can end becomes one logged line and an exit status.

    `stopped`: what to say about the output after Ctrl-C or SIGTERM; `where`:
    the output path, named by an OS error that carries no path of its own.
    """
    global _started
    _started = False
    with sigterm_as_interrupt():
        try:
            return body()
        except errors as exc:
            log.error("%s", one_line(exc))
            return 2
        except OSError as exc:
            log.error("%s", os_error_line(exc, where))
            return 1 if _started else 2
        except Exception as exc:
            wrapped = as_os_error(exc)
            if wrapped is not None:
                log.error("%s", os_error_line(wrapped, where))
                return 1 if _started else 2
            if type(exc).__name__ != "SafetensorError":
                raise  # a bug: its traceback is what a developer needs
            log.error("%s: %s", where or "safetensors", one_line(exc))
            return 2
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            log.error("%s; %s", "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)",
                      stopped)
            return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


# A message longer than this is a library dumping its state (an ONNX graph, a
# tensor); the head names the problem, the rest would bury the line.
ONE_LINE_LIMIT = 600


def one_line(message: str | BaseException) -> str:
    """`message` on one line (whitespace runs folded), at most ONE_LINE_LIMIT characters;
    an exception without text is named by its type. The one form of every error line."""
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    return text if len(text) <= ONE_LINE_LIMIT else text[:ONE_LINE_LIMIT - 3] + "..."


def stopped_during_start_up(exc: KeyboardInterrupt, prog: str) -> int:
    """One line and 130/143 for Ctrl-C or SIGTERM before a command's work began."""
    terminated = isinstance(exc, Terminated)
    print(f"ERROR {prog}: {'terminated (SIGTERM)' if terminated else 'interrupted (Ctrl-C)'} "
          "during start-up; nothing was written", file=sys.stderr)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


def guarded_entry(target: str, prog: str) -> Callable[[], int]:
    """A console script's `main` that imports `module:function` (seconds: torch) with
    Ctrl-C and SIGTERM as one line, not a traceback or a silent death, then calls it."""
    def main() -> int:
        module, name = target.split(":")
        with sigterm_as_interrupt():
            try:
                function = getattr(importlib.import_module(module), name)
            except KeyboardInterrupt as exc:
                return stopped_during_start_up(exc, prog)
        return int(function())
    return main
