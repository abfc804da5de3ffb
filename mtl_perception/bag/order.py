"""Putting a bag's images back into header-stamp order, within a bounded window.

Network cameras and multi-process recorders log frames slightly out of
stamp order. The streaming core uses frames in stamp order (a frame stamped
before the last kept one is dropped as late), so `evaluate_bag` reorders
first: each image is held until one stamped `window_s` later has been read
(or `limit` images are held), and the held images leave smallest stamp
first. Within the window an out-of-order bag thus gives exactly the in-order
bag's result. An image later than that (stamped before one already passed
on) goes on in bag order and is counted: the core drops it and counts it.
A jump back by more than `jump_s` (the stream's `max_gap_s`: a looping bag,
a restarted clock) first passes on everything held, so two loops never
interleave; the core starts a new buffer there as it would live.
`window_s` 0 keeps the bag's order (the behaviour before the window existed).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mtl_perception.bag.types import stamp_ns

DEFAULT_WINDOW_S = 0.5
DEFAULT_LIMIT = 64  # images held at most (bounded memory whatever the window)


@dataclass
class StampOrder:
    """Reorders `(log_time, msg)` pairs by header stamp; counts what it did."""

    window_s: float = DEFAULT_WINDOW_S
    jump_s: float = 1.0  # a step back longer than this is a jump (the stream's max_gap_s)
    limit: int = DEFAULT_LIMIT
    reordered: int = 0  # images passed on before one read earlier (put back in order)
    late: int = 0  # images stamped before one already passed on (beyond the window)
    jumps_back: int = 0  # steps back longer than jump_s (a looping bag, a restarted clock)

    def __post_init__(self) -> None:
        if not (self.window_s >= 0 and self.window_s <= 60):  # also NaN
            raise ValueError(f"reorder window {self.window_s} s: expected 0 to 60 s")
        if self.limit < 1:
            raise ValueError(f"reorder limit {self.limit}: expected at least 1 image")

    def sorted(self, items: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        window, jump = round(self.window_s * 1e9), round(self.jump_s * 1e9)
        if window == 0:  # the bag's order; only the jumps are counted
            previous = None
            for log_time, msg in items:
                stamp = stamp_ns(msg)
                self.jumps_back += previous is not None and previous - stamp > jump
                previous = stamp
                yield log_time, msg
            return
        held: list[tuple[int, int, int, Any]] = []  # (stamp, arrival, log time, msg)
        arrival = itertools.count()
        newest = passed = None  # newest stamp read; stamp of the last image passed on
        for log_time, msg in items:
            stamp = stamp_ns(msg)
            if newest is not None and newest - stamp > jump:
                yield from self._drain(held)  # a loop or restart: keep the loops apart
                newest = passed = None
                self.jumps_back += 1
            elif passed is not None and stamp < passed:  # too late to be put in its place
                self.late += 1
                yield log_time, msg  # in bag order; the core drops and counts it
                continue
            newest = stamp if newest is None else max(newest, stamp)
            heapq.heappush(held, (stamp, next(arrival), log_time, msg))
            while held and (held[0][0] <= newest - window or len(held) > self.limit):
                passed = held[0][0]
                yield self._pop(held)
        yield from self._drain(held)

    def _pop(self, held: list[tuple[int, int, int, Any]]) -> tuple[int, Any]:
        _, number, log_time, msg = heapq.heappop(held)
        if any(other[1] < number for other in held):
            self.reordered += 1  # something read before it is still held
        return log_time, msg

    def _drain(self, held: list[tuple[int, int, int, Any]]) -> Iterator[tuple[int, Any]]:
        while held:
            yield self._pop(held)
