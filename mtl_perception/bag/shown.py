"""What a recording shows when nothing listed happens, and the gate's `none` recall per kind.

`to-bag --untrimmed` writes `shown.csv` beside a bag's `labels.csv`: spans
of the bag's time line (seconds from the first image, as labels.csv) and
what they show, from the synthetic sessions' own plan and from what each
replayed video is:

```
start,end,shown
0.000000,1.840000,idle
1.840000,3.120000,distractor
```

Kinds (`KINDS`): `idle` (standing, breathing), `gap` (idle within `GAP_S`
of a task motion: the hand rising before a gesture, settling after it),
`distractor` (the person moves, but in no listed class: drinking,
stretching...), `walker`, `object`, `camera` (pan and zoom), `light`,
`occlusion` (scene distractors: someone walks through, an object moves,
the camera moves, the lighting changes, something covers part of the
view), `lead` (the idle lead-in and lead-out of a trimmed gesture or
action video), `real` (real footage with no listed activity), and the
task motions themselves (`action`, `gesture`: not `none`, listed so every
second has a kind). A clip's kind is the span covering most of it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.bag.labels import Interval, LabelsError, outside_problem
from mtl_perception.bag.metrics import ClipRecord
from mtl_perception.fileio import read_timed_rows

SHOWN_FILE = "shown.csv"
HEADER = ("start", "end", "shown")
GAP_S = 0.5
NONE_KINDS = ("idle", "gap", "distractor", "walker", "object", "camera", "light", "occlusion",
              "lead", "real")
KINDS = (*NONE_KINDS, "action", "gesture")
UNKNOWN = "unknown"  # a none clip no span covers (a bag without shown.csv)


@dataclass(frozen=True)
class ShownSpan:
    start: float
    end: float
    kind: str


def read_shown(path: str | Path, span_s: float | None = None, slack_s: float = 0.5
               ) -> list[ShownSpan]:
    """The spans of a `shown.csv` (see the module doc); one LabelsError per problem. With
    `span_s` (seconds from the first image to the bag's end), a span ending more than
    `slack_s` after it is refused, as the labels' intervals are."""
    path = Path(path)
    spans = []
    for number, start, end, row in read_timed_rows(path, HEADER, LabelsError):
        kind = row[2].strip()
        if kind not in KINDS:
            raise LabelsError(f"{path}:{number}: unknown kind {kind!r}; known: {list(KINDS)}")
        if (problem := outside_problem("span", start, end, span_s, slack_s)) is not None:
            raise LabelsError(f"{path}:{number}: {problem}")
        spans.append(ShownSpan(start, end, kind))
    return spans


def write_shown(path: str | Path, spans: Sequence[tuple[float, float, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for start, end, kind in spans:
            writer.writerow([f"{start:.6f}", f"{end:.6f}", kind])


def clip_kind(clip: ClipRecord, spans: Sequence[ShownSpan]) -> str:
    """The kind of the span covering most of the clip (its last frame for a 1-frame clip)."""
    best, cover = UNKNOWN, 0.0
    for span in spans:
        if clip.last_s - clip.first_s <= 1e-9:
            c = 1.0 if span.start <= clip.last_s < span.end else 0.0
        else:
            c = max(0.0, min(span.end, clip.last_s) - max(span.start, clip.first_s))
        if c > cover:
            best, cover = span.kind, c
    return best


def none_recall(clips: Sequence[ClipRecord], intervals: Sequence[Interval],
                tasks: Sequence[str], spans: Sequence[ShownSpan]) -> dict[str, Any] | None:
    """The gate's per-clip `none` recall, overall and by kind; None without a gate."""
    from mtl_perception.bag.untrimmed import NONE, clip_task  # the one true-task rule

    gated = [c for c in clips if c.gate is not None]
    if not gated:
        return None
    said: dict[str, list[bool]] = {}
    for clip in gated:
        if clip_task(clip, intervals, tasks) != NONE:
            continue
        assert clip.gate is not None
        kind = clip_kind(clip, spans)
        said.setdefault(kind, []).append(int(np.argmax(clip.gate)) == len(tasks))
    every = [x for values in said.values() for x in values]
    return {
        "recall": float(np.mean(every)) if every else None, "clips": len(every),
        "by_kind": {k: {"recall": float(np.mean(v)), "clips": len(v)}
                    for k, v in sorted(said.items())},
    }
