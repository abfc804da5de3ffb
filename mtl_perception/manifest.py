"""The manifest that proves an output folder is a command's own (rules: `mtl_perception.outputs`).

`Owner` names a command and its manifest; `write_manifest` lists every file
with its size and SHA-256 (or, while a run is under way, the names it plans,
the target and the writing process); `why_not_ours` says what in a folder the
command did not write, or None.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import socket
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_perception.fileio import atomic_write_text

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
    # Patterns (fnmatch, relative paths) of every file a run writes: a partial folder
    # left by a killed run is removed only when it holds nothing else (a file someone
    # put there is not ours to delete). Empty: not declared, the manifest alone decides.
    writes: tuple[str, ...] = ()

    def partial(self, out: Path) -> Path:
        out = normal_path(out)
        return out.parent / f".{out.name}.{self.tag}-partial"

    def old(self, out: Path) -> Path:
        out = normal_path(out)
        return out.parent / f".{out.name}.{self.tag}-old"


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
                    started=start_time(os.getpid()))
    body["digest"] = _digest(body)
    atomic_write_text(folder / owner.manifest, json.dumps(body, indent=1, sort_keys=True) + "\n")


def why_not_ours(folder: Path, owner: Owner, removing: bool = False) -> str | None:
    """None when `folder` provably is `owner`'s output (or its partial run); else why not.

    `removing`: the folder is an earlier output a killed run was deleting (its manifest
    is deleted last, `remove_own`): files it lists may be gone, the rest must match."""
    manifest = read_manifest(folder, owner)
    if isinstance(manifest, str):
        return manifest
    complete = manifest["state"] == "complete"
    listed: dict[str, Any] | None = manifest["files"]
    if listed is None:  # an unplanned partial run: the manifest naming it is the proof,
        return _foreign_file(folder, owner, str(manifest.get("target", "")))
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
        if absent and not removing:
            return f"{absent[0]} (written by {owner.name}) is gone: the folder was edited"
        for name in sorted(seen if removing else listed):
            if _fingerprint(folder / name) != listed[name]:
                return f"{name} changed since {owner.name} wrote it"
    return None


def _foreign_file(folder: Path, owner: Owner, target: str) -> str | None:
    """Why a killed run's partial folder holds something the command never writes, or None.

    `{target}` in a pattern is the output folder's name (a command staging a subfolder
    named after it, as dataset_to_bag's bag writer does)."""
    if not owner.writes:
        return None
    patterns = [p.replace("{target}", target) for p in owner.writes]
    temporary = re.compile(r"\..+\.\d+\.[0-9a-f]{32}\.tmp")  # atomic_write's, mid-write
    for top, dirs, files in os.walk(folder):
        rel_top = os.path.relpath(top, folder)
        for name in sorted(dirs) + sorted(files):
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            if stat.S_ISDIR(os.lstat(os.path.join(top, name)).st_mode):
                if not any(p.startswith(rel + "/") for p in patterns):
                    return f"it holds a folder {owner.name} does not make: {rel}"
            elif rel != owner.manifest and not temporary.fullmatch(name) and not any(
                    fnmatch.fnmatchcase(rel, p) for p in patterns):
                return f"it holds a file {owner.name} does not write: {rel}"
    return None


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


def read_manifest(folder: Path, owner: Owner) -> dict[str, Any] | str:
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


_MAX_MANIFEST_BYTES = 64 << 20  # a listing of every file: far more is no manifest of ours


def enclosing_output(path: Path) -> tuple[Path, str] | None:
    """(folder, generator) of the nearest folder strictly above `path` that holds one of
    this project's manifests (`*.manifest.json`, a synthetic set's `synth.json`), or None.

    Writing into such a folder adds a file its manifest does not list: the folder is no
    longer provably its command's, so that command's `--overwrite` refuses it for good.
    """
    for folder in normal_path(path).parents:
        try:
            candidates = [*folder.glob("*.manifest.json"), folder / "synth.json"]
        except OSError:
            continue
        for candidate in candidates:
            generator = _generator(candidate)
            if generator is not None:
                return folder, generator
    return None


def _generator(path: Path) -> str | None:
    """The `generator` of a manifest written by `write_manifest`, or None for any other file."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_MANIFEST_BYTES:
            return None
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not (isinstance(body, dict) and isinstance(body.get("generator"), str)
            and body.get("manifest_version") == MANIFEST_VERSION):
        return None
    return str(body["generator"])


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


def normal_path(path: Path) -> Path:
    """Absolute, with `.` and `..` resolved by name (links kept): `--out ..` has a name."""
    return Path(os.path.abspath(path))


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell a reused id."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None
