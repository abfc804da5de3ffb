"""Where `synth` writes: a folder it can prove is its own, or nothing at all.

The synthetic set uses the real datasets' names (`UCF-101/`,
`ucfTrainTestlist/`...), so a careless `--out` could point at a user's data.
A folder therefore counts as an earlier synthetic set only when it provably
is one: its `synth.json` is a manifest this module wrote (right keys, a
SHA-256 over its own content) and the folder holds exactly the files the
manifest lists, with the sizes and SHA-256 it records, and nothing else (no
extra file, no symbolic link, no FIFO). Anything else is refused and left
untouched; nothing is ever deleted that the check did not prove is ours.

A run never writes into `--out` itself. It writes into the sibling folder
`.<out>.synth-partial`, whose manifest lists every file the run will write
before the first one is written (state `incomplete`); when all are written
the manifest is rewritten with their hashes (state `complete`) and the folder
is swapped in by rename (an earlier set is first renamed to
`.<out>.synth-old`, then removed). An interrupted run leaves only those
siblings, each provably ours (an incomplete folder may hold only files its
manifest plans, plus half-written ones at those paths), so the next run
removes them and starts again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mtl_perception.fileio import atomic_write_text, fsync_folder

log = logging.getLogger(__name__)

MANIFEST = "synth.json"
GENERATOR = "training.synthetic"
MANIFEST_VERSION = 2
PARTIAL_SUFFIX, OLD_SUFFIX = ".synth-partial", ".synth-old"
# atomic_write's temporary name for the manifest, left behind only by a kill mid-write
_MANIFEST_TMP = re.compile(r"\.synth\.json\.\d+\.[0-9a-f]{32}\.tmp")
_CHUNK = 1 << 20


class SynthOutputError(ValueError):
    """An `--out` folder the generator must not write into (or delete)."""


def partial_folder(out: Path) -> Path:
    return out.parent / f".{out.name}{PARTIAL_SUFFIX}"


def old_folder(out: Path) -> Path:
    return out.parent / f".{out.name}{OLD_SUFFIX}"


def write_manifest(folder: Path, settings: Mapping[str, Any], files: Iterable[str],
                   complete: bool) -> None:
    """The manifest: planned files (incomplete) or written files with size and SHA-256."""
    names = sorted(files)
    listed: dict[str, Any] = (
        {name: _fingerprint(folder / name) for name in names} if complete
        else dict.fromkeys(names)
    )
    body = {"generator": GENERATOR, "manifest_version": MANIFEST_VERSION,
            "state": "complete" if complete else "incomplete",
            "settings": dict(settings), "files": listed}
    body["digest"] = _digest(body)
    atomic_write_text(folder / MANIFEST, json.dumps(body, indent=1, sort_keys=True) + "\n")


def why_not_ours(folder: Path) -> str | None:
    """None when `folder` is provably a synthetic set (or its partial run); else why not."""
    manifest = _read_manifest(folder)
    if isinstance(manifest, str):
        return manifest
    complete = manifest["state"] == "complete"
    listed: dict[str, Any] = manifest["files"]
    parents = {str(p) for name in listed for p in Path(name).parents if str(p) != "."}
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder):
        rel_top = os.path.relpath(top, folder)
        for name in dirs + files:
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            mode = os.lstat(os.path.join(top, name)).st_mode
            if stat.S_ISDIR(mode):
                if rel not in parents:
                    return f"it holds a folder synth did not make: {rel}"
            elif not stat.S_ISREG(mode):
                return f"it holds {rel}, which is not a regular file"
            elif rel == MANIFEST or (not complete and rel_top == "." and
                                     _MANIFEST_TMP.fullmatch(name)):
                continue
            elif rel not in listed:
                return f"it holds a file synth did not write: {rel}"
            else:
                seen.add(rel)
    if complete:
        absent = sorted(set(listed) - seen)
        if absent:
            return f"{absent[0]} (written by synth) is gone: the set was edited"
        for name in sorted(listed):
            if _fingerprint(folder / name) != listed[name]:
                return f"{name} changed since synth wrote it"
    return None


def prepare(out: Path) -> Path:
    """Check `--out` and clear our own leftovers; return the empty partial folder to write.

    Raises `SynthOutputError` (nothing deleted) for any folder not provably ours.
    """
    if out.is_symlink():
        raise SynthOutputError(f"--out {out} is a symbolic link; give the folder itself")
    here = Path.cwd()
    if here == out or out in here.parents:  # the swap renames --out: the shell would be left
        raise SynthOutputError(f"--out {out} holds the current folder; run synth from elsewhere")
    if out.exists() and not out.is_dir():
        raise SynthOutputError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        reason = why_not_ours(out)
        if reason:
            raise SynthOutputError(
                f"--out {out} is not empty and is not an earlier synthetic set ({reason}); "
                "choose a new or empty folder (nothing was changed)")
        log.info("will replace the synthetic set in %s", out)
    for leftover in (partial_folder(out), old_folder(out)):
        if not (leftover.exists() or leftover.is_symlink()):
            continue
        reason = None if leftover.is_dir() and not leftover.is_symlink() else "not a folder"
        reason = reason or why_not_ours(leftover)
        if reason:
            raise SynthOutputError(
                f"{leftover} is in the way of --out {out} and is not synth's ({reason}); "
                "move it away (nothing was changed)")
        log.info("removing %s, left by an interrupted synth run", leftover)
        shutil.rmtree(leftover)
    partial = partial_folder(out)
    partial.mkdir(parents=True)
    return partial


def finish(partial: Path, out: Path) -> None:
    """Swap the finished set in by rename; an earlier set of ours is removed after."""
    if out.is_dir() and any(out.iterdir()):
        reason = why_not_ours(out)  # again: someone may have added files while we rendered
        if reason:
            raise SynthOutputError(
                f"--out {out} changed while rendering ({reason}); the new set is left in "
                f"{partial}")
        old = old_folder(out)
        os.rename(out, old)
        os.rename(partial, out)
        shutil.rmtree(old)
    else:
        os.rename(partial, out)  # onto an empty folder, or where none is
    fsync_folder(out.parent)


def _read_manifest(folder: Path) -> dict[str, Any] | str:
    path = folder / MANIFEST
    if path.is_symlink() or not path.is_file():
        return f"no {MANIFEST} manifest"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{MANIFEST} is not a synth manifest"
    if not isinstance(body, dict) or body.get("generator") != GENERATOR:
        return f"{MANIFEST} is not a synth manifest"
    if body.get("manifest_version") != MANIFEST_VERSION:
        return (f"{MANIFEST} has no file list (a set from an older synth, or not synth's); "
                "delete the folder yourself if it is a synthetic set")
    claimed = body.pop("digest", None)
    files = body.get("files")
    if (claimed != _digest(body) or body.get("state") not in ("complete", "incomplete")
            or not isinstance(files, dict) or not all(_safe_name(n) for n in files)):
        return f"{MANIFEST} was edited or is damaged"
    return body


def _safe_name(name: object) -> bool:
    """A relative path inside the folder: no `..`, no absolute path, not the manifest."""
    if not isinstance(name, str) or not name or name.startswith("/") or name == MANIFEST:
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
