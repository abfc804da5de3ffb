"""The evaluation's output folder: complete or absent, never half-written, only ever ours.

`mtl_perception.outputs` holds the rule: everything is written into the
hidden sibling `.<out>.evaluate_bag-partial` and renamed into place with a
manifest (`evaluate_bag.manifest.json`) listing every file with its SHA-256. An
existing `--out` that holds anything is refused unless `--overwrite`, and
even then replaced only when it provably is an earlier `evaluate_bag`
output: exactly the files its manifest lists, unchanged. Anything else there
is the user's, and stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtl_perception import outputs
from mtl_perception.outputs import OutputError, check_creatable

TOOL = "evaluate_bag"
METRICS = "metrics.json"
REPORT = "report.md"
PREDICTIONS = "predictions.csv"
BAG = "bag"
PLOT_PREFIX, PLOT_SUFFIX = "confusion_", ".png"
TIMELINE = "timeline.png"  # --unlabelled none (bag/timeline.py)
OWNER = outputs.Owner(tool=TOOL, manifest=f"{TOOL}.manifest.json", tag=TOOL, name=TOOL,
                      what="evaluate_bag output",
                      writes=(REPORT, PREDICTIONS, METRICS, TIMELINE,
                              f"{PLOT_PREFIX}*{PLOT_SUFFIX}", f"{BAG}/*"))

__all__ = [
    "BAG",
    "METRICS",
    "OWNER",
    "PREDICTIONS",
    "REPORT",
    "TIMELINE",
    "TOOL",
    "OutputError",
    "check_creatable",
    "check_out",
    "is_ours",
    "staged",
]


def is_ours(folder: Path) -> bool:
    """Whether `folder` is, provably, an earlier evaluate_bag output."""
    return outputs.why_not_ours(folder, OWNER) is None


def check_out(out: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work, an `out` that holds results or other files, or an input
    of the run, or cannot be made."""
    outputs.check_out(out, OWNER, overwrite, inputs)


@contextmanager
def staged(out: Path, overwrite: bool, settings: dict[str, Any] | None = None
           ) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces `out` (one rename), else vanishes."""
    with outputs.staged(out, OWNER, overwrite, settings) as stage:
        yield stage
