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

Hostile lists are refused cheaply and in one line: a file over `MAX_LIST_BYTES`
before it is read, an integer outside its field's range (`parse_int`: frame
numbers up to `MAX_FRAME`, labels up to `MAX_CLASSES` classes) before anything
is built from it, and every `DatasetError` shows control characters from a
list (a NUL, an escape sequence) escaped, never raw on the terminal.
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

# The largest published list (IsoGD's train list) is 1.7 MB; a file this big is not a
# list (a video or an archive given by mistake, a runaway file) and would be read whole.
MAX_LIST_BYTES = 256 * 1024 * 1024
# A frame number or count: a day of 1000 fps video. Larger ones are damage, and would
# overflow the C integers of the decoder (`OverflowError` deep in a seek).
MAX_FRAME = 10**8
# Classes of one dataset: far more than any video dataset has. Default class names are
# made for every label up to the largest, so an unbounded label exhausts the memory.
MAX_CLASSES = 100_000


def shown(text: object) -> str:
    """`text` with every non-printable character escaped as `repr` does (NUL -> `\\x00`).

    List lines and the paths built from them reach error messages; raw control
    characters there would garble or drive the user's terminal (an escape sequence
    can rewrite what is on screen) and break the one-line form. Printable text,
    non-ASCII letters included, is left as it is.
    """
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


class DatasetError(ValueError):
    """A missing or malformed dataset list or setting; the message names the file (and line).

    The message is stored with its control characters escaped (`shown`), whoever
    built it, so no raw list content reaches a terminal or log through it.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(shown(message))


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, stripped text) for each non-blank line.

    The whole file is read at once (the largest list, IsoGD's, is 1.7 MB; a file
    over `MAX_LIST_BYTES` is refused unread) and split on the three newline
    conventions (LF, CRLF, CR), so CRLF and a final line without newline both work.
    Other characters that `str.splitlines` would also break at (form feed,
    U+2028...) stay inside their line.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise DatasetError(f"list file not found: {path}") from exc
    except OSError as exc:  # permissions on a folder above it, a name too long
        raise DatasetError(f"cannot read list file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):  # a folder; a FIFO would block the read forever
        raise DatasetError(f"list file {path} is not a regular file")
    if info.st_size > MAX_LIST_BYTES:  # before reading: the read holds the whole file
        raise DatasetError(_too_big(path, info.st_size))
    try:
        with path.open("rb") as file:
            # one byte past the cap: a file that grew since the stat is caught too
            raw = file.read(MAX_LIST_BYTES + 1)
        if len(raw) > MAX_LIST_BYTES:
            raise DatasetError(_too_big(path, max(len(raw), os.stat(path).st_size)))
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = exc.object[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{bad_line}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:  # unreadable (permissions, a dead network mount)
        raise DatasetError(f"cannot read list file {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(_NEWLINE.split(text), start=1):
        stripped = line.strip()
        if stripped:
            yield number, stripped


def _too_big(path: Path, size: int) -> str:
    return (f"{path}: {size} bytes, more than the {MAX_LIST_BYTES} a dataset list may have "
            "(not a list file?)")


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


def parse_int(token: str, path: Path, line: int, what: str, low: int, high: int) -> int:
    """An integer field of a list line (ASCII digits, optional sign) in `[low, high]`, or a
    `DatasetError`.

    Stricter than `int()`, which also takes `1_000` and non-ASCII digits: in a
    list those are damage, not numbers. Every caller names a range, so no
    number from a list is unbounded; the digits are counted before `int()`,
    which refuses strings over 4300 digits with a plain `ValueError`.
    """
    if not _INTEGER.fullmatch(token):
        raise DatasetError(f"{path}:{line}: {what} {_excerpt(token)!r} is not an integer")
    digits = token.lstrip("+-").lstrip("0")
    if len(digits) > len(str(max(abs(low), abs(high)))) or not low <= int(token) <= high:
        raise DatasetError(f"{path}:{line}: {what} {_excerpt(token)} outside {low}..{high}")
    return int(token)


def _excerpt(token: str, limit: int = 30) -> str:
    """`token`, cut to `limit` characters: a message shows a number, not a megabyte of it."""
    return token if len(token) <= limit else token[:limit] + "..."


def read_class_names(path: Path) -> list[str]:
    """Class names, one per line in label order.

    Also accepts `index name` (UCF-101's classInd.txt) and `A001<TAB>name`
    (NTU's class list): a leading integer or `A`-prefixed id is dropped when
    the ids count 1, 2, 3... so that the file order is the label order.
    """
    numbered = list(read_lines(path))
    split = [re.fullmatch(r"A?(\d+)[ \t]+(.+)", line) for _, line in numbered]
    if numbered and all(split):
        for expected, ((number, _), match) in enumerate(zip(numbered, split), start=1):
            # compared as text: no int() of a thousand-digit id, no non-ASCII digit read
            if match and match.group(1).lstrip("0") != str(expected):
                raise DatasetError(f"{path}:{number}: class id {_excerpt(match.group(1))}, "
                                   f"expected {expected} (ids count 1, 2, 3... in file order)")
        names = [m.group(2).strip() for m in split if m]
    else:
        names = [line for _, line in numbered]
    if len(names) > MAX_CLASSES:
        raise DatasetError(f"{path}: {len(names)} class names, more than {MAX_CLASSES}")
    first: dict[str, int] = {}
    for (number, _), name in zip(numbered, names):
        if name in first:
            raise DatasetError(f"{path}:{number}: class name {name!r} appears twice "
                               f"(first at line {first[name]})")
        first[name] = number
    if not names:
        raise DatasetError(f"{path}: no class names")
    return names


def numbered_names(prefix: str, count: int) -> list[str]:
    """Default class names `prefix01`... when a dataset's lists carry numbers only."""
    width = max(2, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def check_label(label: int, num_classes: int, path: Path, line: int, base: int = 1) -> None:
    """Reject a 0-based `label` outside the class list (a class file shorter than the
    list's labels), naming the list line; `base` is how the list writes the first class."""
    if label >= num_classes:
        raise DatasetError(f"{path}:{line}: label {label + base} exceeds the {num_classes} "
                           "class names")

