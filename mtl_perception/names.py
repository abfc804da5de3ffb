"""One validator per value that users type, used everywhere that value enters.

* ROS 2 topic names: the node's `image_topics` parameter, `dataset_to_bag
  --topic`, `evaluate_bag --image-topic` (`topic_problem`).
* Class names: checkpoints (saving and loading), a training run's set,
  `dataset_to_bag`'s labels (`class_name_problem`): a newline or other
  control character breaks `report.md`, the predictions CSV and the labels CSV.
* Seconds in a labels CSV (`strict_decimal`): `1_0` or `0x1` are not numbers
  a person writes as seconds, though Python's `float` takes them.
* CPU thread counts (`threads_problem`): torch crashes on absurd counts;
  data-loader processes (`workers_problem`) likewise bounded.
"""

from __future__ import annotations

import math
import re
import unicodedata

# ROS 2 topic names (design article "Topic and Service name mapping"): tokens of
# letters, digits and underscores, not starting with a digit, separated by one
# '/'; optionally absolute ('/') or private ('~/'); no trailing '/'.
_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
TOPIC_PATTERN = re.compile(rf"(~/|/)?{_TOKEN}(/{_TOKEN})*")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
MAX_THREADS = 256


def topic_problem(name: str) -> str | None:
    """Why `name` is not a valid ROS 2 topic name (ROS 2 tools would refuse it), or None."""
    if isinstance(name, str) and TOPIC_PATTERN.fullmatch(name):
        return None
    return (f"{name!r} is not a valid ROS 2 topic name (letters, digits and '_' "
            "in '/'-separated tokens, no token starting with a digit, no trailing '/')")


def class_name_problem(name: object) -> str | None:
    """Why `name` cannot be a class name (empty, or a control character), or None."""
    if not isinstance(name, str) or not name.strip():
        return f"class name {name!r}: class names must be non-empty strings"
    if name != name.strip():  # the labels' reader strips its fields: ' Walk' never matches
        return f"class name {name!r} begins or ends with white space"
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        return (f"class name {name!r} holds a control character ({bad!r}); newlines and "
                "tabs break the reports and CSV files")
    return None


_TASK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# the gate's third class, its output and the exported clip input: a task may not take them
RESERVED_TASK_NAMES = ("none", "gate", "clips")


def task_name_problem(name: object) -> str | None:
    """Why `name` cannot be a task name, or None. A task names a ROS topic
    (/human/<task>), output files and an exported model's output: a letter, then
    letters, digits or underscores, and not one of `RESERVED_TASK_NAMES`."""
    if not isinstance(name, str) or not _TASK_NAME.fullmatch(name):
        return (f"task name {name!r}: a letter, then letters, digits or underscores (it "
                "names a ROS topic, output files and an exported model's output)")
    if name in RESERVED_TASK_NAMES:
        return (f"task name {name!r} is reserved ({', '.join(RESERVED_TASK_NAMES)}: the "
                "gate's 'nothing' class and the exported model's own names)")
    return None


def strict_decimal(text: str) -> float | None:
    """`text` as a finite decimal number (`1`, `-0.5`, `2.5e1`), else None (`1_0`, `nan`)."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def threads_problem(value: int, option: str) -> str | None:
    """Why `value` is not a usable CPU thread count (0: the library's default), or None."""
    if not 0 <= value <= MAX_THREADS:
        return f"{option} {value}: expected 0 (default) to {MAX_THREADS}"
    return None


def workers_problem(value: int, option: str) -> str | None:
    """Why `value` is not a usable count of loader processes (0: load in-process), or None."""
    if not 0 <= value <= MAX_THREADS:
        return f"{option} {value}: expected 0 (load in the main process) to {MAX_THREADS}"
    return None
