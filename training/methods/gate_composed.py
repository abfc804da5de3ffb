"""Validation streams joined from excerpts, for choosing the event settings (`fit-gate`).

A recording joined from short videos (a trimmed dataset's test videos put
back to back, as an evaluation by other code composes its sessions) is not a
session: every 2-3 s another person and place, each motion with well under a
second of idling around it, a scene cut inside the clips that see it. The
settings chosen on sessions alone (long idle stretches, one scene, the event
rule free to wait for a long, sure run of clips) named 16 of 64 such gestures
rightly for `make demo`'s model and 28-39 for the bench's three
(bench/results/gate.md item 14). So fit-gate also scores, per validation
half, one stream joined from that half's labelled motions: each cut out with
`LEAD_S` before and after it (drawn per side), in a shuffled order, each frame
stamped one frame period after the one before it across the cuts (no pause, so
the stream's buffer keeps its frames, as in such a recording). The excerpts
come from the same held-out sessions, so neither the task heads nor the
cross-fitted gate saw them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.bag.labels import Interval
from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.stream import StreamConfig
from training.datasets.untrimmed import UntrimmedVideo
from training.datasets.video import VideoReader
from training.methods.gate_tuning import Recorded, stream_results

# Seconds kept before and after each motion, drawn per side. The demo set's 64 test
# gesture videos have 0.08-1.04 s before the gesture (median 0.54) and 0.08-0.92 s after
# it (median 0.38); its action videos are the action throughout.
LEAD_S = (0.15, 0.7)


@dataclass(frozen=True)
class Excerpt:
    """Frames [first, end) of one video and the motions in them (seconds from `first`;
    `Interval`s as the bag metrics read them, `line` 0: they come from no labels file)."""

    path: Path
    fps: float
    first: int
    end: int
    intervals: tuple[Interval, ...]


def plan_excerpts(videos: Sequence[UntrimmedVideo], rng: np.random.Generator
                  ) -> list[Excerpt]:
    """One excerpt per labelled motion of `videos` that the video shows, in a shuffled
    order. The lead and lag stop at the neighbouring motions, so no excerpt shows a
    sliver of another one (it would count as a gesture of its own, hardly detectable)."""
    excerpts = []
    for video in videos:
        if not video.intervals:
            continue
        total, fps = video.header()
        for motion in video.intervals:
            before, after = (float(v) for v in rng.uniform(*LEAD_S, size=2))
            if round(motion.start * fps) >= total or motion.end <= motion.start:
                continue  # labelled past the video's end, or empty
            others = [i for i in video.intervals if i is not motion]
            previous = max((i.end for i in others if i.end <= motion.start), default=0.0)
            following = min((math.floor(i.start * fps) for i in others
                             if i.start >= motion.end), default=total)
            first = max(0, round((motion.start - before) * fps), math.ceil(previous * fps))
            end = min(total, round((motion.end + after) * fps), following)
            if end <= first:
                continue
            start_s, end_s = first / fps, end / fps
            inside = tuple(  # the motion, and any labelled to overlap it
                Interval(max(i.start, start_s) - start_s, min(i.end, end_s) - start_s,
                         i.task, i.label, 0)
                for i in video.intervals
                if i is motion or (i.end > motion.start and i.start < motion.end))
            excerpts.append(Excerpt(video.path, fps, first, end, inside))
    order = rng.permutation(len(excerpts))
    return [excerpts[i] for i in order]


def record_composed(model: Any, info: CheckpointInfo, config: StreamConfig,
                    excerpts: Sequence[Excerpt], name: str) -> Recorded:
    """Run the excerpts back to back through one offline stream (the node's code path),
    each frame stamped 1 / fps after the one before it."""
    starts = list(itertools.accumulate(((e.end - e.first) / e.fps for e in excerpts),
                                       initial=0.0))  # seconds; the last: the stream's end
    intervals = [Interval(start + i.start, start + i.end, i.task, i.label, 0)
                 for excerpt, start in zip(excerpts, starts) for i in excerpt.intervals]

    def frames() -> Iterator[tuple[np.ndarray, int]]:
        for excerpt, start in zip(excerpts, starts):
            with VideoReader(excerpt.path) as reader:
                shown = reader.read(list(range(excerpt.first, excerpt.end)))
            for index, frame in enumerate(shown):
                yield frame, round((start + index / excerpt.fps) * 1e9)

    results = stream_results(model, info, config, frames())
    end_s = max(starts[-1] - 1 / excerpts[-1].fps, 0.0) if excerpts else 0.0
    return Recorded(Path(name), results, intervals, end_s)
