"""What machine a benchmark ran on, for the results it commits.

Imported by the scripts beside it (`bench/` is the script's folder, so it is
on `sys.path` when a benchmark runs as `python bench/NAME.py`).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what `platform` knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def report(result: dict[str, Any], save: Path | None) -> None:
    """Write `result` to `save` (indented JSON, folders made) when given, and print it as
    one JSON line: the last line every benchmark prints."""
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def project_first() -> None:
    """Put the project root first on `sys.path` and this folder last: run as
    `python bench/NAME.py`, this folder comes first, and its training.py would shadow
    the `training` package for a benchmark that imports it."""
    here = str(Path(__file__).resolve().parent)
    root = str(Path(__file__).resolve().parents[1])
    sys.path[:] = [root] + [p for p in sys.path
                            if str(Path(p or ".").resolve()) not in (here, root)] + [here]
