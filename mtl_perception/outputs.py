"""Output folders a command can prove are its own: written whole, replaced only when ours.

Single output files (`export --out`, `fit-gate --out`, `label-bag --out/--sheet`)
follow `check_out_file`: never an input of the same run (not even with
`--overwrite`), an existing file only with `--overwrite` and only when it is a
file of the kind the option writes (a JSON object naming the command in
`written_by`, a model checkpoint, an ONNX model, a CSV, a PNG: a video, a list
file, another command's JSON or a resume state named by mistake is never
replaced), only a regular file, the folder checked writable before the work;
written atomically (`mtl_perception.fileio.atomic_write`).

One rule for every command that writes a folder and may replace an earlier
one (`evaluate_bag --out`, `dataset_to_bag --out`, `python -m training
synth --out`):

* A folder counts as the command's earlier output only when it holds the
  command's manifest (a JSON file naming the command, with a SHA-256 over
  its own content) and exactly the files the manifest lists, with the sizes
  and SHA-256 it records, and nothing else: no other file or folder, no
  symbolic link, no FIFO. Anything else is refused with one line naming the
  first thing the command did not write, and nothing is deleted.
* A run never writes into the folder itself. It writes into the hidden
  sibling `.<out>.<tag>-partial`, whose manifest (state `incomplete`, naming
  the command, the target folder and the writing process) is written before
  anything else. When everything is written the manifest is rewritten with
  every file's size and hash (state `complete`) and the folder is swapped in
  by rename (an earlier output is first renamed to `.<out>.<tag>-old`, then
  removed).
* Stopping (Ctrl-C, SIGTERM: see `mtl_perception.exits`) removes the partial
  folder. One left by SIGKILL or a power cut carries the manifest that names
  it, so the next run into the same place removes it; a partial folder whose
  writer is still running (same host, live process id) is refused instead.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from mtl_perception.exits import work_started
from mtl_perception.fileio import fsync_folder
from mtl_perception.manifest import (  # re-exported: the commands' one import for outputs
    MANIFEST_VERSION,
    OutputError,
    Owner,
    enclosing_output,
    normal_path,
    read_manifest,
    start_time,
    why_not_ours,
    write_manifest,
)

__all__ = [
    "MANIFEST_VERSION",
    "OutputError",
    "Owner",
    "check_creatable",
    "check_out",
    "check_out_inputs",
    "finish",
    "input_holding",
    "prepare",
    "refuse_inside_an_output",
    "remove_leftover",
    "staged",
    "why_not_ours",
    "write_manifest",
]

log = logging.getLogger(__name__)

# -- replacing a folder ------------------------------------------------------------------


def check_out(out: Path, owner: Owner, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work, an `out` that must not be written or replaced (nothing changed).

    A new or empty folder is fine; one holding `owner`'s earlier output only
    with `overwrite`; anything else never. `inputs`: what the run reads; `out` may
    hold none of them (replacing it would delete the input: an earlier output's
    `bag/` read back with `--overwrite` into the same folder).
    """
    opt = owner.option
    if out.is_symlink():
        raise OutputError(f"{opt} {out} is a symbolic link; give the folder itself")
    check_out_inputs(out, inputs, opt)
    here = Path.cwd()
    target = normal_path(out)
    if here == target or target in here.parents:  # the swap renames out: the shell is left
        raise OutputError(f"{opt} {out} holds the current folder; run from elsewhere")
    refuse_inside_an_output(out, opt)
    _check_name_length(out, owner)
    if not out.exists():
        check_creatable(out, opt)
        return
    if not out.is_dir():
        raise OutputError(f"{opt} {out} is a file, not a folder")
    if not any(out.iterdir()):
        return  # an empty folder holds nothing to lose
    if not overwrite:
        raise OutputError(f"{opt} {out} already holds results; pass --overwrite to replace "
                          "them, or choose another folder")
    reason = why_not_ours(out, owner)
    if reason:
        raise OutputError(f"{opt} {out} is not empty and is not an earlier {owner.what} "
                          f"({reason}); "
                          "refusing to replace it (nothing was changed; choose another folder)")


def check_out_inputs(out: Path, inputs: Iterable[Path], option: str = "--out") -> None:
    """An output folder `out` may neither hold one of `inputs` (replacing the folder would
    delete it) nor lie inside an input folder (it would be written among what the run
    reads). For inputs known only once a set is read, a command calls this again then."""
    inputs = list(inputs)
    held = output_holding(out, inputs)
    if held is not None:
        raise OutputError(f"{option} {out} holds {held}, an input of this run: replacing the "
                          "folder would delete it (write the results elsewhere)")
    inside = input_holding(out, inputs)
    if inside is not None:
        raise OutputError(f"{option} {out} lies inside {inside}, a folder this run reads; "
                          "write the results outside it")


def check_out_file(out: Path, overwrite: bool, inputs: Iterable[Path] = (),
                   option: str = "--out", kind: FileKind | None = None,
                   writer: str | None = None) -> None:
    """Refuse, before any work, a single output file that must not be written (nothing changed).

    `inputs`: the files and folders this run reads; `out` may be none of them, nor
    inside an input folder, whatever `--overwrite` says (the run would replace what
    it is reading). `kind`: what the option writes; an existing file is replaced
    (with `--overwrite`) only when it is one (`file_kind_problem`), and with `writer`
    only a JSON object whose `written_by` names it (another command's JSON, a run's
    run.json or a set's synth.json, is valid JSON too).
    """
    source = input_holding(out, inputs)
    if source is not None:
        inside = Path(os.path.realpath(out)) != Path(os.path.realpath(source))
        raise OutputError(f"{option} {out} is {'inside ' if inside else ''}"
                          f"an input of this run ({source}); refusing to write over "
                          "it (choose another file)")
    if out.is_symlink():
        raise OutputError(f"{option} {out} is a symbolic link; give the file itself")
    refuse_inside_an_output(out, option)
    if out.exists():
        if not out.is_file():
            raise OutputError(f"{option} {out} exists and is not a regular file")
        if not overwrite:
            raise OutputError(f"{option} {out} already exists; pass --overwrite to replace "
                              "it, or choose another file")
        problem = None if kind is None else file_kind_problem(out, kind, writer)
        if problem is not None:
            raise OutputError(f"{option} {out} exists and {problem}: it is not a file this "
                              "option writes, so --overwrite does not replace it (choose "
                              "another file, or remove it yourself)")
    if len(out.name.encode()) > 200:  # atomic_write's temporary name adds ~50 bytes
        raise OutputError(f"{option} {out}: name too long ({len(out.name.encode())} bytes; "
                          "at most 200)")
    check_creatable(out, option)


def refuse_inside_an_output(out: Path, option: str) -> None:
    """`out` may not lie inside an earlier output of any of this project's commands (a
    folder with its manifest): the file or folder written there would make that output
    unprovable, so its command could never replace it again."""
    enclosing = enclosing_output(out)
    if enclosing is not None:
        folder, generator = enclosing
        raise OutputError(f"{option} {out} lies inside {folder}, an earlier {generator} "
                          "output: writing there would leave that folder no longer provably "
                          "its command's (choose a place outside it)")


FileKind = Literal["json", "checkpoint", "onnx", "csv", "png"]
_SNIFF_BYTES = 1 << 16
_MAX_JSON_BYTES = 256 << 20
WRITTEN_BY = "written_by"  # the key naming the command in its JSON outputs


def file_kind_problem(path: Path, kind: FileKind, writer: str | None = None) -> str | None:
    """Why the existing regular file `path` is not a `kind` file (None: it is one).

    What a run may replace with `--overwrite` is its own kind of output: a `--json`
    that names a dataset's video by mistake must not turn the video into JSON. The
    test reads the start of the file only (a whole JSON file, up to 256 MB).
    """
    try:
        size = path.stat().st_size
        if size == 0:  # nothing to lose
            return None
        if kind == "json" and size > _MAX_JSON_BYTES:
            return f"is {size} bytes, larger than any JSON file this option writes"
        with open(path, "rb") as handle:  # JSON is read whole, the others sniffed
            head = handle.read(size if kind == "json" else _SNIFF_BYTES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if kind == "json":
        try:
            document = json.loads(head.decode("utf-8"))
        except (ValueError, RecursionError):
            return "is not a JSON file"
        if writer is not None and not (isinstance(document, dict)
                                       and document.get(WRITTEN_BY) == writer):
            return f"is not a JSON file written by {writer}"
        return None
    if kind == "checkpoint":  # safetensors whose header holds a checkpoint's metadata key
        length = int.from_bytes(head[:8], "little") if len(head) > 8 else 0
        if not (head[8:9] == b"{" and 0 < length < size):
            return "is not a safetensors checkpoint"
        sniffed = length <= len(head) - 8  # a header past the sniffed bytes is not read
        if sniffed and b'"mtl_perception"' not in head[8:8 + length]:
            return "is a safetensors file but not a model checkpoint (a resume state?)"
        return None
    if kind == "onnx":  # a ModelProto begins with field 1 (ir_version), a varint: 0x08
        return None if head[:1] == b"\x08" else "is not an ONNX model"
    if kind == "png":
        return None if head.startswith(b"\x89PNG\r\n\x1a\n") else "is not a PNG image"
    try:  # csv: UTF-8 text (the sniffed bytes may end inside a character)
        if b"\0" in head:
            raise ValueError("a NUL byte")
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except ValueError:
        return "is not a text (CSV) file"
    return None


def output_holding(out: Path, inputs: Iterable[Path]) -> Path | None:
    """The first of `inputs` that is `out` or lies inside it, links resolved; None when
    the folder holds none of them."""
    target = Path(os.path.realpath(out))
    for source in inputs:
        real = Path(os.path.realpath(source))
        if real == target or target in real.parents:
            return source
    return None


def input_holding(out: Path, inputs: Iterable[Path]) -> Path | None:
    """The first of `inputs` that `out` is, or lies inside (a folder), links resolved;
    None when it is none of them."""
    target = Path(os.path.realpath(out))
    for source in inputs:
        real = Path(os.path.realpath(source))
        if target == real or (real.is_dir() and real in target.parents):
            return source
    return None


def _check_name_length(out: Path, owner: Owner) -> None:
    """The hidden siblings' names fit the file system (else ENAMETOOLONG after the work)."""
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        limit = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = max(len(owner.partial(out).name.encode()), len(owner.old(out).name.encode()))
    if longest > limit:
        spare = limit - (longest - len(out.name.encode()))
        raise OutputError(f"{owner.option} {out}: name too long ({len(out.name.encode())} "
                          f"bytes; at most {spare} here, as the staging folder beside it "
                          "adds to it)")


def check_creatable(out: Path, option: str = "--out") -> None:
    """`out` can be created: its nearest existing ancestor is a folder we may write in.

    Tried for real (an empty folder made and removed at once): permission bits
    do not tell, e.g. for root or on a read-only mount. The folder's access and
    modification times are put back afterwards (where we may set them), so a
    run refused later, or a check alone, leaves a user's folder looking untouched.
    """
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{option} {out}: {ancestor} is a file, not a folder")
    try:
        before = ancestor.stat()
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name[:64]}.probe.", dir=ancestor))
    except OSError as exc:
        raise OutputError(f"{option} {out}: cannot write in {ancestor}: "
                          f"{exc.strerror or exc}") from None
    with contextlib.suppress(OSError):  # not the folder's owner: its times stay changed
        os.utime(ancestor, ns=(before.st_atime_ns, before.st_mtime_ns))


def prepare(out: Path, owner: Owner, overwrite: bool, settings: Mapping[str, Any],
            planned: Iterable[str] | None = None) -> Path:
    """Check `out`, remove our own leftovers beside it, return a new partial folder.

    The partial folder's incomplete manifest (naming `owner`, `out` and this
    process) is written before this returns, so a SIGKILL at any later point
    leaves a folder the next run recognises.
    """
    check_out(out, owner, overwrite)
    for leftover in (owner.partial(out), owner.old(out)):
        remove_leftover(leftover, out, owner)
    partial = owner.partial(out)
    try:
        partial.mkdir(parents=True)
        write_manifest(partial, owner, settings, planned, complete=False,
                       target=normal_path(out).name)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    work_started()  # an OS error from here on is one line and exit 1 (mtl_perception.exits)
    return partial


def remove_leftover(leftover: Path, out: Path, owner: Owner) -> None:
    """Remove a partial/old sibling of `out` when it provably is `owner`'s; else refuse."""
    if not (leftover.exists() or leftover.is_symlink()):
        return
    reason = None if leftover.is_dir() and not leftover.is_symlink() else "not a folder"
    if reason is None and not any(leftover.iterdir()):
        leftover.rmdir()  # emptied by a removal killed before its last step: nothing to lose
        return
    # an `-old` folder may be half removed (killed during `remove_own`): its manifest,
    # removed last, still proves what is left
    removing = leftover == owner.old(out)
    reason = reason or why_not_ours(leftover, owner, removing=removing)
    if reason:
        raise OutputError(f"{leftover} is in the way of {owner.option} {out} and is not "
                          f"{owner.name}'s ({reason}); move it away (nothing was changed)")
    writer = _live_writer(leftover, owner)
    if writer:
        raise OutputError(f"{leftover} is being written by another {owner.name} run "
                          f"(process {writer}); wait for it or stop it")
    log.info("removing %s, left by an interrupted %s run", leftover, owner.name)
    remove_own(leftover, owner)


def remove_own(folder: Path, owner: Owner) -> None:
    """Delete a proven output folder with its manifest last: a kill part-way leaves a
    folder whose remaining files the manifest still lists, which the next run can prove
    its own and finish removing (with rmtree's order it could prove nothing)."""
    manifest = folder / owner.manifest
    for top, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(top) / name
            if path != manifest:
                path.unlink()
        for name in dirs:
            (Path(top) / name).rmdir()
    manifest.unlink(missing_ok=True)
    folder.rmdir()


def finish(partial: Path, out: Path, owner: Owner, overwrite: bool) -> None:
    """Swap the finished partial folder in by rename; an earlier output of ours is removed."""
    check_out(out, owner, overwrite)  # again: someone may have added files meanwhile
    with _stops_deferred():  # Ctrl-C/SIGTERM between the renames would leave no output
        if out.is_dir() and any(out.iterdir()):
            old = owner.old(out)
            os.rename(out, old)
            try:
                os.rename(partial, out)
            except OSError:
                os.rename(old, out)
                raise
        else:
            old = None
            os.rename(partial, out)  # onto an empty folder, or where none is
    if old is not None:
        remove_own(old, owner)  # ours; a stop here leaves it for the next run to remove
    fsync_folder(out.absolute().parent)


@contextmanager
def staged(out: Path, owner: Owner, overwrite: bool,
           settings: Mapping[str, Any] | None = None) -> Iterator[Path]:
    """Yield a partial folder to fill; on success it replaces `out`, on any exit it vanishes.

    "Any exit" includes Ctrl-C and SIGTERM (raised as KeyboardInterrupt by
    `mtl_perception.exits`). The manifest listing every file is written here.
    """
    partial = prepare(out, owner, overwrite, settings or {})
    try:
        yield partial
        write_manifest(partial, owner, settings or {}, None, complete=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        finish(partial, out, owner, overwrite)
    except OutputError as exc:  # `out` changed meanwhile: keep the finished work, say where
        raise OutputError(f"{exc}; the new output is left in {partial}") from None


# -- helpers -----------------------------------------------------------------------------


@contextmanager
def _stops_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a few system calls (delivered right after).

    The handlers are swapped for one that only notes the signal, and a noted
    signal is raised again once the block is done. Blocking the signals in
    this thread (pthread_sigmask) would not do: the kernel hands a process's
    signal to any thread that does not block it (a torch or DDS thread), and
    Python then runs the handler in the main thread anyway."""
    noted: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    try:
        previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: handlers run in the main thread, not here
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number in dict.fromkeys(noted):
            signal.raise_signal(number)


def _live_writer(folder: Path, owner: Owner) -> int | None:
    """The process id of a still-running writer of this partial folder (same host), or None."""
    manifest = read_manifest(folder, owner)
    if isinstance(manifest, str) or manifest["state"] != "incomplete":
        return None
    pid, host = manifest.get("pid"), manifest.get("host")
    if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # exists, owned by someone else
        pass
    started = manifest.get("started")
    if started is not None and start_time(pid) not in (None, started):
        return None  # the id now belongs to another process: the writer is gone
    return pid
