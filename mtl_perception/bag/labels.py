"""Ground-truth labels for a bag: a CSV of labelled time intervals.

```
start,end,task,label
0.0,3.2,action,walk
0.5,2.9,gesture,wave
```

Times are seconds relative to the first image's header stamp; `task` is one
of the checkpoint's tasks; `label` is one of that task's class names.
Intervals of one task may not overlap (each clip has one true class). Every
problem is one `LabelsError` naming the file and line, raised before any
image is decoded.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtl_perception.fileio import read_table_text
from mtl_perception.names import strict_decimal

HEADER = ("start", "end", "task", "label")
_SHOWN = 8  # class names listed in an unknown-class message


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Interval:
    start: float  # seconds from the first image's header stamp
    end: float
    task: str
    label: str
    line: int  # where it came from, for messages

    def overlap(self, first: float, last: float) -> float:
        """Seconds of `[first, last]` inside this interval."""
        return max(0.0, min(self.end, last) - max(self.start, first))


class _AnyNames(Sequence[str]):
    """Every class name is acceptable (`ANY_CLASSES`)."""

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        raise IndexError(index)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)


class _AnyTasks(Mapping[str, Sequence[str]]):
    def __getitem__(self, task: str) -> Sequence[str]:
        return _AnyNames()

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, task: object) -> bool:
        return isinstance(task, str)


# `classes` for a file whose tasks and classes are checked elsewhere (a bag source's
# classes come from its labels; a session's against the model, by the command reading it)
ANY_CLASSES: Mapping[str, Sequence[str]] = _AnyTasks()


def read_labels(
    path: str | Path,
    classes: Mapping[str, Sequence[str]],
    bag_span_s: float | None = None,
    slack_s: float = 0.5,
    allow_empty: bool = False,
    within: str = "the bag",
) -> list[Interval]:
    """Parse and check a labels CSV against the checkpoint's tasks and classes.

    `bag_span_s`: seconds from the first image to the bag's end; an interval
    ending more than `slack_s` after it (or starting before 0) is refused.
    None skips that check (a bag whose length is unknown). `allow_empty`: a
    file with the header alone is fine (a background-only recording judged
    with unlabelled time as `none`). `within`: what the span is, for messages
    ("the video" for a session's labels).
    """
    path = Path(path)
    text = read_table_text(path, "labels file", LabelsError)
    # A stream, not splitlines(): a quoted field holding a line break stays one field
    # (and is then refused as a name) instead of being glued into another name.
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or tuple(c.strip() for c in rows[0]) != HEADER:
        raise LabelsError(f"{path}:1: expected the header {','.join(HEADER)}, got "
                          f"{','.join(rows[0]) if rows else 'an empty file'}")
    intervals: list[Interval] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        intervals.append(_row(path, number, row, classes, bag_span_s, slack_s, within))
    if not intervals and not allow_empty:
        raise LabelsError(f"{path}: no labelled intervals after the header")
    _check_overlaps(path, intervals)
    return intervals


def _row(path: Path, number: int, row: list[str], classes: Mapping[str, Sequence[str]],
         span: float | None, slack: float, within: str) -> Interval:
    where = f"{path}:{number}"
    if len(row) != len(HEADER):
        raise LabelsError(f"{where}: expected {len(HEADER)} columns "
                          f"({','.join(HEADER)}), got {len(row)}: {','.join(row)}")
    start, end = (_seconds(where, name, value) for name, value in zip(HEADER[:2], row[:2]))
    task, label = row[2].strip(), row[3].strip()
    if end <= start:
        raise LabelsError(f"{where}: end {end} is not after start {start}")
    if (problem := class_problem(task, label, classes)) is not None:
        hint = (" (for a single-task model, keep only its task's rows, e.g. dataset_to_bag "
                "--tasks)") if task not in classes else ""
        raise LabelsError(f"{where}: {problem}{hint}")
    if (problem := outside_problem("interval", start, end, span, slack, within)) is not None:
        hint = ("; its times look like absolute ROS stamps (seconds since 1970): `python -m "
                "training label-bag --bag BAG --relative LABELS --out NEW` converts them"
                if start > _ABSOLUTE_S and within == "the bag" else "")
        raise LabelsError(f"{where}: {problem}{hint}")
    return Interval(start, end, task, label, number)


def outside_problem(what: str, start: float, end: float, span: float | None, slack: float,
                    within: str = "the bag") -> str | None:
    """Why [start, end] s lies outside [0, `span` + `slack`] (`span` None: only start >= 0),
    or None; `what` and `within` name the two for the message."""
    if start >= 0 and (span is None or end <= span + slack):
        return None
    bound = f"[0, {span:.3f}] s" if span is not None else "times >= 0 s"
    return f"{what} [{start}, {end}] s lies outside {within} ({bound} from the first image)"


def class_problem(task: str, label: str, classes: Mapping[str, Sequence[str]],
                  whose: str = "the checkpoint's") -> str | None:
    """Why `task`/`label` is not one of `classes` (`whose`: where they come from), or None."""
    if task not in classes:
        return f"unknown task {task!r}; {whose} tasks: {', '.join(classes)}"
    if label not in classes[task]:
        names = list(classes[task])
        shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
        return f"unknown {task} class {label!r}; {whose} {task} classes: {shown}"
    return None


_ABSOLUTE_S = 1e8  # ~3 years: only a stamp since 1970 is that far from the first image


def _seconds(where: str, name: str, value: str) -> float:
    seconds = strict_decimal(value)  # not float(): it takes `1_0` as 10
    if seconds is None:
        what = "is not a finite number" if value.strip().lower().lstrip("+-") in (
            "nan", "inf", "infinity") else "is not a number"
        raise LabelsError(f"{where}: {name} {value.strip()!r} {what} (decimal seconds, "
                          "e.g. 1.5)")
    return seconds


def _check_overlaps(path: Path, intervals: list[Interval]) -> None:
    by_task: dict[str, list[Interval]] = {}
    for interval in intervals:
        by_task.setdefault(interval.task, []).append(interval)
    for items in by_task.values():
        items.sort(key=lambda i: i.start)
        for before, after in itertools.pairwise(items):
            if after.start < before.end - 1e-9:
                raise LabelsError(
                    f"{path}:{after.line}: {after.task} interval [{after.start}, {after.end}] "
                    f"overlaps line {before.line} [{before.start}, {before.end}]"
                )


def write_labels(path: str | Path, intervals: Sequence[tuple[float, float, str, str]]) -> None:
    """Write `(start, end, task, label)` rows with the header (what dataset_to_bag emits)."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for start, end, task, label in intervals:
            writer.writerow([f"{start:.6f}", f"{end:.6f}", task, label])
