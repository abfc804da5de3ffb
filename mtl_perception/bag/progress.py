"""A progress bar for long bags: redrawn in place on a terminal, a log line otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

LOG = logging.getLogger("evaluate_bag")
_REDRAW_S = 0.25  # terminal redraw period
_LOG_S = 15.0  # period of the log line when stderr is not a terminal
_WIDTH = 30


class Progress:
    """Images done out of `total` (None: unknown), with the rate so far."""

    def __init__(self, total: int | None, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.start = time.monotonic()
        self._last = self.start
        self._drawn = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < (_REDRAW_S if self.tty else _LOG_S):
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + self.line(done, now))
            self.stream.flush()
            self._drawn = True
        else:
            LOG.info("%s", self.line(done, now))

    def line(self, done: int, now: float) -> str:
        rate = done / max(now - self.start, 1e-9)
        if self.total:
            share = min(done / self.total, 1.0)
            bar = "#" * round(share * _WIDTH)
            eta = (self.total - done) / rate if rate > 0 else 0.0
            return (f"[{bar:<{_WIDTH}}] {100 * share:5.1f}% {done}/{self.total} images, "
                    f"{rate:.0f}/s, {eta:.0f} s left")
        return f"{done} images, {rate:.0f}/s"

    def close(self, done: int) -> None:
        if self._drawn:
            self.stream.write("\r" + self.line(done, time.monotonic()) + "\n")
            self.stream.flush()
