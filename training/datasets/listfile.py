"""Reading the datasets' text list files, with errors that name file and line.

Every published list may come with CRLF line endings (UCF-101's do), a UTF-8
byte-order mark or trailing spaces (NVGesture's do), so all readers go through
`read_lines`. A user with a broken list must learn which file and which line,
hence `DatasetError` messages of the form `path:line: what is wrong`.

Repeats are never silent. A list line that repeats an earlier one (the same
video, segment and label: a paste, two lists concatenated) is dropped with
one warning per file giving the count, so no sample counts twice; the same
video segment listed again with another label is an error, since no reading
of it is right. A class name listed twice is an error (one of the two classes
would silently stay empty).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from training.datasets.sample import VideoSample

T = TypeVar("T")
log = logging.getLogger(__name__)
_NEWLINE = re.compile(r"\r\n|\r|\n")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class DatasetError(ValueError):
    """A missing or malformed dataset list or setting; the message names the file (and line)."""


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, stripped text) for each non-blank line.

    The whole file is read at once (the largest list, IsoGD's, is 1.7 MB) and
    split on the three newline conventions (LF, CRLF, CR), so CRLF and a final
    line without newline both work. Other characters that `str.splitlines`
    would also break at (form feed, U+2028...) stay inside their line.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise DatasetError(f"list file not found: {path}") from exc
    except OSError as exc:  # permissions on a folder above it, a name too long
        raise DatasetError(f"cannot read list file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):  # a folder; a FIFO would block the read forever
        raise DatasetError(f"list file {path} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = exc.object[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{bad_line}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:  # unreadable (permissions, a dead network mount)
        raise DatasetError(f"cannot read list file {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(_NEWLINE.split(text), start=1):
        stripped = line.strip()
        if stripped:
            yield number, stripped


def require_entries(samples: list[T], path: Path) -> list[T]:
    """`samples`, or a `DatasetError` when the list held none.

    An empty list is never what a user meant (a truncated download, the wrong
    file); reading it as zero samples would only fail later, far from the cause.
    """
    if not samples:
        raise DatasetError(f"{path}: the list holds no samples (empty file?)")
    return samples


def unique_samples(entries: list[tuple[int, VideoSample]], path: Path) -> list[VideoSample]:
    """The samples of (line number, sample) pairs, repeated lines dropped (one warning).

    Refuses an empty list (`require_entries`) and a video segment listed twice
    with two labels.
    """
    first: dict[tuple[Path, int, int | None, bool], tuple[int, int]] = {}
    samples: list[VideoSample] = []
    repeats: list[tuple[int, int]] = []
    for line, sample in entries:
        key = (sample.path, sample.start, sample.end, sample.frames_dir)
        if key not in first:
            first[key] = (line, sample.label)
            samples.append(sample)
            continue
        earlier, label = first[key]
        if label != sample.label:
            raise DatasetError(
                f"{path}:{line}: {sample.path.name} is listed at line {earlier} with another "
                "label; fix the list (no reading of it is right)"
            )
        repeats.append((line, earlier))
    if repeats:
        log.warning("%s: %d repeated line(s) ignored, each sample counts once (first: line %d "
                    "repeats line %d)", path, len(repeats), *repeats[0])
    return require_entries(samples, path)


def parse_int(token: str, path: Path, line: int, what: str) -> int:
    """An integer field of a list line (ASCII digits, optional sign), or a `DatasetError`.

    Stricter than `int()`, which also takes `1_000` and non-ASCII digits: in a
    list those are damage, not numbers.
    """
    if not _INTEGER.fullmatch(token):
        raise DatasetError(f"{path}:{line}: {what} {token!r} is not an integer")
    return int(token)


def read_class_names(path: Path) -> list[str]:
    """Class names, one per line in label order.

    Also accepts `index name` (UCF-101's classInd.txt) and `A001<TAB>name`
    (NTU's class list): a leading integer or `A`-prefixed id is dropped when
    the ids count 1, 2, 3... so that the file order is the label order.
    """
    lines = [line for _, line in read_lines(path)]
    split = [re.fullmatch(r"A?(\d+)[ \t]+(.+)", line) for line in lines]
    if lines and all(split):
        ids = [int(m.group(1)) for m in split if m]
        if ids != list(range(1, len(ids) + 1)):
            raise DatasetError(f"{path}: class ids must count 1, 2, 3... in file order")
        names = [m.group(2).strip() for m in split if m]
    else:
        names = lines
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise DatasetError(f"{path}: class name {duplicate!r} appears twice")
    if not names:
        raise DatasetError(f"{path}: no class names")
    return names


def numbered_names(prefix: str, count: int) -> list[str]:
    """Default class names `prefix01`... when a dataset's lists carry numbers only."""
    width = max(2, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def check_labels(samples: list[VideoSample], num_classes: int, path: Path) -> None:
    """Reject a label outside the class list (a class file shorter than the list's labels)."""
    for sample in samples:
        if sample.label >= num_classes:
            raise DatasetError(
                f"{path}: label {sample.label + 1} of {sample.path.name} exceeds the "
                f"{num_classes} class names"
            )

