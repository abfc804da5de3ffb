"""Files in and out: atomic writes, and the one guard before any file is read.

Writes: a reader sees the old file or the new one, never half of one. Shared by
checkpoints, the synthetic set's files and every summary a command writes;
`mtl_perception.checkpoint.atomic_write` is the same function.

Reads: `require_regular_file` runs before every reader opens a user's file (bags
and the files in a bag folder, videos, checkpoints, `.onnx`, label files, cache
files, settings): a named pipe would block the read forever, a device would be
read without end, a folder fails with an unclear error. One line names the file
and what it is instead.
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from mtl_perception.exits import as_os_error, os_error_line


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`; clean up on failure.

    The folder is fsynced after the rename too: without it a power cut can
    forget the rename and leave the old file (or none) in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    # O_EXCL: never reuse someone else's file. Creating it with 0o666 tells us the
    # usual mode (0o666 minus the umask) without setting the process umask, which
    # other threads share.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    try:
        try:
            write(tmp)
        except Exception as exc:  # a library's wrapped OS error (safetensors): name the file
            wrapped = as_os_error(exc, path)
            if wrapped is None or wrapped is exc:
                raise
            raise wrapped from exc
        tmp.chmod(mode)  # safetensors' save_file leaves its output 0600
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """`path.write_text(text)` (UTF-8), atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is done
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words, for messages."""
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "not a regular file"


def regular_file_problem(path: str | Path, what: str) -> str | None:
    """Why `path` cannot be read as a `what` file (missing, a pipe, a folder...), or None.

    Links are followed (a link to a regular file is fine); the file is never opened,
    so a pipe with no writer cannot block here.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, ValueError):  # ValueError: a name with a NUL byte
        return f"{what} not found: {path}"
    except OSError as exc:  # a name too long, a forbidden folder above it
        return f"{what} {os_error_line(exc)}" if exc.filename else f"{what} {path}: {exc}"
    if not stat.S_ISREG(mode):
        return f"{what} {path} is {file_kind(mode)}, not a regular file"
    return None


def require_regular_file(path: str | Path, what: str,
                         error: Callable[[str], Exception] = ValueError) -> Path:
    """`path` as a Path when it is a regular file; else raise `error(one line)`."""
    problem = regular_file_problem(path, what)
    if problem is not None:
        raise error(problem)
    return Path(path)


def require_regular_files(paths: Iterable[str | Path], what: str,
                          error: Callable[[str], Exception] = ValueError) -> list[Path]:
    """`require_regular_file` for each of `paths` (e.g. the storage files in a bag folder)."""
    return [require_regular_file(path, what, error) for path in paths]


MAX_TABLE_BYTES = 256 << 20  # a labels CSV of a week of gestures is a few MB


def read_table_text(path: Path, what: str, error: Callable[[str], Exception]) -> str:
    """The UTF-8 text (a BOM dropped) of a small table file (labels, shown.csv), or
    `error(one line)`: not a regular file (a FIFO would block), over `MAX_TABLE_BYTES`
    (read whole: an 8 GB file was a MemoryError), unreadable, not UTF-8."""
    require_regular_file(path, what, error)
    try:
        size = os.stat(path).st_size
        if size > MAX_TABLE_BYTES:
            raise error(f"{path}: {size} bytes, more than the {MAX_TABLE_BYTES >> 20} MiB a "
                        f"{what} may have")
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_timed_rows(path: Path, header: tuple[str, ...], error: type[Exception]
                    ) -> list[tuple[int, float, float, list[str]]]:
    """The rows of a CSV whose first two fields are `start,end` seconds (labels,
    shown.csv): (line number, start, end, the row's fields); blank rows skipped. Any
    problem (unreadable, wrong header, field count, times not 0 <= start < end)
    raises `error` with one line naming the file and line."""
    text = read_table_text(path, "table file", error)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or tuple(c.strip() for c in rows[0]) != header:
        raise error(f"{path}:1: expected the header {','.join(header)}")
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise error(f"{path}:{number}: expected {len(header)} fields, got {len(row)}")
        try:
            start, end = float(row[0]), float(row[1])
        except ValueError:
            raise error(f"{path}:{number}: start and end must be numbers") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise error(f"{path}:{number}: need 0 <= start < end, got {start}, {end}")
        out.append((number, start, end, row))
    return out
