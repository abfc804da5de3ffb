"""label-bag's look at an image topic's header stamps: said once per kind, or refused.

The labels' times are seconds from the first image's header stamp (the
anchor evaluate_bag and bag training use), and the contact sheet and the
template follow the stamps. So a stamp that is wrong is not cosmetic:

* refused (one line naming the bag, the topic and the message index, counted
  from 0 in the topic's log order, skipped messages included, as the bag
  reader's own warnings count them), before anything is written: every image
  carrying the same stamp (no timeline at all), and one image stamped further
  from all the others than they span and by more than the stream's
  `max_gap_s` before them (a clock at 0: it would be the origin) or an hour
  after them (a clock years ahead: it would stretch the template's rows over
  years and hide the images after it);
* said once per kind with a count, at the end of the pass: stamps that
  repeat the image before them, stamps that go backwards (the images
  stamped before one already read are not on the sheet, and label times
  cannot tell them apart), and gaps longer than the stream's `max_gap_s`
  (the stream restarts its buffer there: a labelled interval is cut at it).

The threshold is the stream's own `max_gap_s` default (StreamConfig): label-bag
has no stream settings of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mtl_perception.bag.reader import Bag, BagError
from mtl_perception.stream.config import StreamConfig
from mtl_perception.stream.decode import header_of

LOG = logging.getLogger(__name__)
MAX_GAP_S = StreamConfig().max_gap_s
_LATE_OUTLIER_S = 3600.0
_OUTLIER_MIN_IMAGES = 4  # with fewer, "the others' span" is one gap: a slow camera, not an outlier


@dataclass
class StampCheck:
    """Feed every image's stamp in log order (`add`), then `problem()` and `warnings()`."""

    bag: Path
    topic: str
    max_gap_s: float = MAX_GAP_S
    count: int = 0
    previous: int | None = None
    newest: int | None = None
    # per kind: [count, message index of the first, largest step in ns]
    repeated: list[int] = field(default_factory=lambda: [0, -1, 0])
    back: list[int] = field(default_factory=lambda: [0, -1, 0])
    gaps: list[int] = field(default_factory=lambda: [0, -1, 0])
    behind: int = 0  # images stamped before one already read (never on the sheet)
    # the two smallest and two largest (stamp, index): one outlier shows at an end
    low: list[tuple[int, int]] = field(default_factory=list)
    high: list[tuple[int, int]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"bag {self.bag} topic {self.topic}"

    def add(self, index: int, stamp: int) -> None:
        if self.previous is not None:
            step = stamp - self.previous
            if step == 0:
                _note(self.repeated, index, 0)
            elif step < 0:
                _note(self.back, index, -step)
            elif step > self.max_gap_s * 1e9:
                _note(self.gaps, index, step)
        if self.newest is not None and stamp < self.newest:
            self.behind += 1
        self.newest = stamp if self.newest is None else max(self.newest, stamp)
        self.previous = stamp
        self.count += 1
        self.low = sorted([*self.low, (stamp, index)])[:2]
        self.high = sorted([*self.high, (stamp, -index)])[-2:]  # ties: the earlier image

    def problem(self) -> str | None:
        """The one-line refusal when the stamps make no timeline, else None."""
        if self.count >= 2 and self.low[0][0] == self.high[-1][0]:
            return (f"{self.where}: all {self.count} images carry the same header stamp "
                    f"({self.low[0][0] / 1e9:.3f} s; message index {self.low[1][1]} repeats "
                    f"message index {self.low[0][1]}'s), so there is no timeline to label (a "
                    "recorder that does not set header.stamp?); refused, nothing was written")
        if self.count < _OUTLIER_MIN_IMAGES:
            return None
        others = self.high[0][0] - self.low[1][0]  # the span without either extreme
        ends = [(self.high[1][0] - self.high[0][0], -self.high[1][1], "after"),
                (self.low[1][0] - self.low[0][0], self.low[0][1], "before")]
        # A late outlier only stretches the end: refused past an hour (a clock years
        # ahead), while a camera resumed after a long pause is a recording's own; an
        # early one would be the origin of every label time.
        floor = {"before": self.max_gap_s * 1e9, "after": _LATE_OUTLIER_S * 1e9}
        outliers = [(index, excess, side) for excess, index, side in ends
                    if excess > floor[side] and excess > others]
        if not outliers:
            return None
        index, excess, side = min(outliers)  # the first in the bag
        return (f"{self.where}: message index {index} is stamped {excess / 1e9:.3f} s {side} "
                f"every other image (they span {max(others, 0) / 1e9:.3f} s): one outlier "
                "dominates the timeline, so times from the first image's stamp cannot be made "
                "sense of; fix or drop that message's header stamp (refused, nothing was "
                "written)")

    def warnings(self) -> list[str]:
        """One line per kind of odd stamp, with its count (none for a clean topic)."""
        lines = []
        count, first, _ = self.repeated
        if count:
            lines.append(f"{self.where}: a header stamp repeats the image before it "
                         f"{_times(count)} (message index {first} first; a recorder that does "
                         "not set header.stamp?): such images share one time, and at most one "
                         "of them is on the sheet")
        count, first, largest = self.back
        if count:
            why = ("a looping bag or a restarted clock?" if largest > self.max_gap_s * 1e9
                   else "logged out of stamp order?")
            lines.append(f"{self.where}: the header stamps go backwards {_times(count)} "
                         f"(message index {first} first, by up to {largest / 1e9:.3f} s: {why}); "
                         f"the {self.behind} images stamped before one already read are not on "
                         "the sheet, and label times (seconds from the first image) cannot "
                         "tell them apart")
        count, first, largest = self.gaps
        if count:
            lines.append(f"{self.where}: the header stamps jump forward by more than the "
                         f"stream's max_gap_s {self.max_gap_s:g} s {_times(count)} (message "
                         f"index {first} first, the longest {largest / 1e9:.3f} s): the stream "
                         "restarts its buffer there, and a labelled interval is cut at it")
        return lines

    def finish(self) -> None:
        """Refuse (BagError) a topic whose stamps make no timeline; else say the odd ones."""
        problem = self.problem()
        if problem:
            raise BagError(problem)
        for line in self.warnings():
            LOG.warning("%s", line)


def check_stamps(bag_path: Path, topic: str | None) -> None:
    """A pass over the topic's stamps alone (`--relative`: its origin is the first one)."""
    with Bag(bag_path, topic) as bag:
        stamps = StampCheck(bag_path, bag.image_topic)
        for _, msg in bag.images():
            stamps.add(bag.message_index, header_of(msg).stamp_ns)
    stamps.finish()


def _note(kind: list[int], index: int, step: int) -> None:
    kind[0] += 1
    kind[1] = index if kind[1] < 0 else kind[1]
    kind[2] = max(kind[2], step)


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
