"""Output folders a command can prove are its own: written whole, replaced only when ours.

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

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_perception.exits import work_started
from mtl_perception.fileio import atomic_write_text, fsync_folder

log = logging.getLogger(__name__)

MANIFEST_VERSION = 2
_CHUNK = 1 << 20


class OutputError(ValueError):
    """An output folder that must not be written or replaced (one line, nothing changed)."""


@dataclass(frozen=True)
class Owner:
    """Which command a folder belongs to, and how its manifest and siblings are named."""

    tool: str  # written as the manifest's "generator"
    manifest: str  # the manifest's file name inside the folder
    tag: str  # names the siblings: .<out>.<tag>-partial, .<out>.<tag>-old
    name: str  # the command as users know it, for messages
    what: str  # what its output is called, for messages
    option: str = "--out"  # how the user names the folder, for messages

    def partial(self, out: Path) -> Path:
        out = _normal(out)
        return out.parent / f".{out.name}.{self.tag}-partial"

    def old(self, out: Path) -> Path:
        out = _normal(out)
        return out.parent / f".{out.name}.{self.tag}-old"


# -- the manifest ----------------------------------------------------------------------


def write_manifest(folder: Path, owner: Owner, settings: Mapping[str, Any],
                   files: Iterable[str] | None, complete: bool, target: str = "") -> None:
    """Write `folder`'s manifest.

    complete: every file in `files` (None: every regular file now in the
    folder) with its size and SHA-256. Incomplete: the planned names (None:
    not known in advance), the target folder's name and the writing process.
    """
    if files is None:
        names = sorted(_regular_files(folder, owner)) if complete else None
    else:
        names = sorted(files)
    listed: dict[str, Any] | None
    if complete:
        listed = {name: _fingerprint(folder / name) for name in names or ()}
    else:
        listed = None if names is None else dict.fromkeys(names)
    body: dict[str, Any] = {
        "generator": owner.tool, "manifest_version": MANIFEST_VERSION,
        "state": "complete" if complete else "incomplete",
        "settings": dict(settings), "files": listed,
    }
    if not complete:
        body.update(target=target, pid=os.getpid(), host=socket.gethostname(),
                    started=_start_time(os.getpid()))
    body["digest"] = _digest(body)
    atomic_write_text(folder / owner.manifest, json.dumps(body, indent=1, sort_keys=True) + "\n")


def why_not_ours(folder: Path, owner: Owner) -> str | None:
    """None when `folder` provably is `owner`'s output (or its partial run); else why not."""
    manifest = _read_manifest(folder, owner)
    if isinstance(manifest, str):
        return manifest
    complete = manifest["state"] == "complete"
    listed: dict[str, Any] | None = manifest["files"]
    if listed is None:  # an unplanned partial run: the manifest naming it is the proof
        return None
    parents = {str(p) for name in listed for p in Path(name).parents if str(p) != "."}
    temporary = re.compile(rf"\.{re.escape(owner.manifest)}\.\d+\.[0-9a-f]{{32}}\.tmp")
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder):
        rel_top = os.path.relpath(top, folder)
        for name in sorted(dirs) + sorted(files):
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            mode = os.lstat(os.path.join(top, name)).st_mode
            if stat.S_ISDIR(mode):
                if rel not in parents:
                    return f"it holds a folder {owner.name} did not make: {rel}"
            elif not stat.S_ISREG(mode):
                return f"it holds {rel}, which is not a regular file"
            elif rel == owner.manifest or (not complete and rel_top == "."
                                           and temporary.fullmatch(name)):
                continue  # atomic_write's temporary name, left only by a kill mid-write
            elif rel not in listed:
                return f"it holds a file {owner.name} did not write: {rel}"
            else:
                seen.add(rel)
    if complete:
        absent = sorted(set(listed) - seen)
        if absent:
            return f"{absent[0]} (written by {owner.name}) is gone: the folder was edited"
        for name in sorted(listed):
            if _fingerprint(folder / name) != listed[name]:
                return f"{name} changed since {owner.name} wrote it"
    return None


# -- replacing a folder ------------------------------------------------------------------


def check_out(out: Path, owner: Owner, overwrite: bool) -> None:
    """Refuse, before any work, an `out` that must not be written or replaced (nothing changed).

    A new or empty folder is fine; one holding `owner`'s earlier output only
    with `overwrite`; anything else never.
    """
    opt = owner.option
    if out.is_symlink():
        raise OutputError(f"{opt} {out} is a symbolic link; give the folder itself")
    here = Path.cwd()
    target = _normal(out)
    if here == target or target in here.parents:  # the swap renames out: the shell is left
        raise OutputError(f"{opt} {out} holds the current folder; run from elsewhere")
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
    do not tell, e.g. for root or on a read-only mount.
    """
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{option} {out}: {ancestor} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name[:64]}.probe.", dir=ancestor))
    except OSError as exc:
        raise OutputError(f"{option} {out}: cannot write in {ancestor}: "
                          f"{exc.strerror or exc}") from None


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
                       target=_normal(out).name)
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
    reason = reason or why_not_ours(leftover, owner)
    if reason:
        raise OutputError(f"{leftover} is in the way of {owner.option} {out} and is not "
                          f"{owner.name}'s ({reason}); move it away (nothing was changed)")
    writer = _live_writer(leftover, owner)
    if writer:
        raise OutputError(f"{leftover} is being written by another {owner.name} run "
                          f"(process {writer}); wait for it or stop it")
    log.info("removing %s, left by an interrupted %s run", leftover, owner.name)
    shutil.rmtree(leftover)


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
        shutil.rmtree(old)  # ours; a stop here leaves it for the next run to remove
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
    """Hold SIGINT and SIGTERM back for a few system calls (delivered right after)."""
    signals = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    except (AttributeError, OSError, ValueError):  # no sigmask here (Windows)
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _normal(path: Path) -> Path:
    """Absolute, with `.` and `..` resolved by name (links kept): `--out ..` has a name."""
    return Path(os.path.abspath(path))


def _regular_files(folder: Path, owner: Owner) -> Iterator[str]:
    for top, _, files in os.walk(folder):
        rel_top = os.path.relpath(top, folder)
        for name in files:
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            if rel != owner.manifest:
                if not stat.S_ISREG(os.lstat(os.path.join(top, name)).st_mode):
                    raise OutputError(f"{folder / rel}: {owner.name} wrote something that is "
                                      "not a regular file")
                yield rel


def _live_writer(folder: Path, owner: Owner) -> int | None:
    """The process id of a still-running writer of this partial folder (same host), or None."""
    manifest = _read_manifest(folder, owner)
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
    if started is not None and _start_time(pid) not in (None, started):
        return None  # the id now belongs to another process: the writer is gone
    return pid


def _start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell a reused id."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


def _read_manifest(folder: Path, owner: Owner) -> dict[str, Any] | str:
    path = folder / owner.manifest
    if path.is_symlink() or not path.is_file():
        return f"no {owner.manifest} manifest"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return f"{owner.manifest} is not a {owner.name} manifest"
    if not isinstance(body, dict) or body.get("generator") != owner.tool:
        return f"{owner.manifest} is not a {owner.name} manifest"
    if body.get("manifest_version") != MANIFEST_VERSION:
        return (f"{owner.manifest} has no file list (an output of an older {owner.name}, or "
                "not its own); delete the folder yourself if it is one")
    claimed = body.pop("digest", None)
    files = body.get("files")
    state = body.get("state")
    files_ok = (isinstance(files, dict) and all(_safe_name(n, owner) for n in files)) or (
        files is None and state == "incomplete")
    if claimed != _digest(body) or state not in ("complete", "incomplete") or not files_ok:
        return f"{owner.manifest} was edited or is damaged"
    return body


def _safe_name(name: object, owner: Owner) -> bool:
    """A relative path inside the folder: no `..`, no absolute path, not the manifest."""
    if not isinstance(name, str) or not name or name.startswith("/") or name == owner.manifest:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _digest(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
