"""The evaluation's output folder: complete or absent, never half-written.

Everything is written into a fresh staging folder beside `--out`, then renamed
into place. An existing `--out` that holds anything is refused unless
`--overwrite`, and even then replaced only when it provably is an earlier
`evaluate_bag` output: its `metrics.json` says `"tool": "evaluate_bag"` and
it holds nothing but the names evaluate_bag writes. Anything else there is
the user's, and stays.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOOL = "evaluate_bag"
METRICS = "metrics.json"
REPORT = "report.md"
PREDICTIONS = "predictions.csv"
BAG = "bag"
PLOT_PREFIX, PLOT_SUFFIX = "confusion_", ".png"
TIMELINE = "timeline.png"  # --unlabelled none (bag/timeline.py)


class OutputError(RuntimeError):
    """An output folder that must not be written or replaced (one line)."""


def is_ours(folder: Path) -> bool:
    """Whether `folder` is, provably, an earlier evaluate_bag output."""
    try:
        document = json.loads((folder / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(document, dict) or document.get("tool") != TOOL:
        return False
    for entry in folder.iterdir():
        name = entry.name
        known = name in (METRICS, REPORT, PREDICTIONS, BAG, TIMELINE) or (
            name.startswith(PLOT_PREFIX) and name.endswith(PLOT_SUFFIX)
        )
        if not known:
            return False
    return True


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an `out` that holds results or other files, or cannot be made."""
    if not out.exists():
        check_creatable(out)
        return
    if not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    if not any(out.iterdir()):
        return  # an empty folder holds nothing to lose
    if not overwrite:
        raise OutputError(f"--out {out} already holds results; pass --overwrite to replace "
                          "them, or choose another folder")
    if not is_ours(out):
        raise OutputError(f"--out {out} holds files evaluate_bag did not write; refusing to "
                          "replace it even with --overwrite (choose another folder)")


def check_creatable(out: Path) -> None:
    """`out` can be created: its nearest existing ancestor is a folder we may write in.

    Tried for real (an empty folder made and removed at once): permission bits
    do not tell, e.g. for root or on a read-only mount.
    """
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"--out {out}: {ancestor} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.probe.", dir=ancestor))
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write in {ancestor}: "
                          f"{exc.strerror or exc}") from None


@contextmanager
def staged(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces `out` (one rename), else vanishes."""
    check_out(out, overwrite)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging.", dir=parent))
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create it: {exc.strerror or exc}") from None
    try:
        yield stage
        try:
            _replace(stage, out, overwrite)
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot move the results into place: "
                              f"{exc.strerror or exc}") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage)


def _replace(stage: Path, out: Path, overwrite: bool) -> None:
    check_out(out, overwrite)  # again: something may have appeared while we worked
    stage.chmod(0o755)  # mkdtemp makes it 0700; results are meant to be shared
    if not out.exists():
        stage.rename(out)
        return
    old = out.absolute().parent / f".{out.name}.old.{os.getpid()}"
    out.rename(old)  # proven ours (or empty) by check_out
    try:
        stage.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old)
