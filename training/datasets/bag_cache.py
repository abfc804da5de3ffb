"""A bag's image topic as the streaming core sees it, decoded and preprocessed once.

`open_cache` pushes every image of the topic through the live node's own
code: `mtl_perception.stream.camera.CameraState` (stamp-based sampling at
`target_fps`, buffer resets at gaps over `max_gap_s`, the one decoding and
preprocessing step), and keeps each sampled frame exactly as the node's
buffer holds it (float32, bit for bit), its header stamp and its buffer
segment (a reset starts a new segment: no clip spans one).

The cache is a folder under `cache_root` named after the bag and a hash of
its key: the SHA-256 of the bag's files, the topic, the preprocessing and
the sampling settings. A changed bag or setting therefore gets a new folder
(built on first use); deleting any cache folder is always safe. A folder
whose `index.json` does not hold the key its name promises is stale; one whose
files are not regular files or differ from the sizes and SHA-256 digests that
`index.json` records for them (checked on first use in each process: a zeroed
block in the frames, a truncated `stamps.npy`) is damaged; both are refused in
one line saying to delete the folder.

Files: `frames.f32` (N, 3, h, w float32, raw), `index.json` (key, shape,
first image stamp, bag span), `stamps.npy` (int64 header stamps),
`segments.npy` (int32 buffer segment of each frame).

Old folders do not pile up: each use touches `index.json` (the last use),
and after a new folder is built the least recently used others are removed
while the root holds more than `MTL_BAG_CACHE_MAX_GB` (default 4). Only folders
that provably are cache entries (`is_cache_entry`: named as `cache_folder` names
them, holding nothing but the files above, and an `index.json` whose key and bag
give that very name) are counted or removed: the root may be any folder a
set's `cache:` names. A folder named like one whose index does not prove it
(damaged, or another program's) is left alone and reported (`unproven_entries`).
`python -m training cache --prune` (training/tools/cache.py) also removes
stale folders: a bag that is gone or changed, a build left half done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Collection
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_perception.digest import file_sha256
from mtl_perception.exits import one_line
from mtl_perception.fileio import require_regular_file
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream.camera import CameraState
from mtl_perception.stream.config import StreamConfig
from mtl_perception.stream.decode import ImageDecodeError, header_of
from training.datasets.listfile import DatasetError

LOG = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: index.json records every file's size and SHA-256
FRAMES, INDEX, STAMPS, SEGMENTS = "frames.f32", "index.json", "stamps.npy", "segments.npy"


class CacheError(DatasetError):
    """A cache folder that cannot be used (stale key, damaged files); one line naming it."""


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mtl_perception" / "bags"


def bag_checksum(bag: Path) -> str:
    """SHA-256 over the bag's files (a rosbag2 folder: every file, by relative path).

    Remembered per process for files of unchanged size and modification time: a
    run opens each bag for training, validation and video accuracy.
    """
    if not bag.is_dir():
        require_regular_file(bag, "bag", DatasetError)  # a FIFO would block the hash forever
    files = sorted(p for p in bag.rglob("*") if not p.is_dir()) if bag.is_dir() else [bag]
    for file in files:
        require_regular_file(file, "bag file", DatasetError)
    return _checksum(bag, tuple((f, f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@lru_cache(maxsize=256)
def _checksum(bag: Path, files: tuple[tuple[Path, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for file, _, _ in files:
        digest.update(str(file.relative_to(bag) if bag.is_dir() else file.name).encode())
        digest.update(b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cache_key(bag: Path, topic: str, preprocess: PreprocessConfig, target_fps: float,
              max_gap_s: float) -> dict[str, Any]:
    return {
        "version": CACHE_VERSION, "bag_sha256": bag_checksum(bag), "topic": topic,
        "preprocess": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in asdict(preprocess).items() if k != "clip_length"},
        "target_fps": float(target_fps), "max_gap_s": float(max_gap_s),
    }


@dataclass(frozen=True)
class CachedFrames:
    """One bag's sampled, preprocessed frames (memory-mapped) and their stamps."""

    frames: np.ndarray  # (N, 3, h, w) float32, read-only memory map
    stamps_ns: np.ndarray  # (N,) int64 header stamps
    segments: np.ndarray  # (N,) int32 buffer segment
    first_stamp_ns: int  # the bag's first image's stamp: labels count from it
    span_s: float | None  # first image to the bag's end (labels must lie inside)

    def frames_tensor(self, indices: list[int]) -> torch.Tensor:
        """(3, len(indices), h, w): the frames in that order, as the node's clip stacks them."""
        return torch.from_numpy(np.ascontiguousarray(self.frames[indices])).transpose(0, 1)

    def seconds(self, index: int) -> float:
        """Seconds of frame `index` from the first image."""
        return (int(self.stamps_ns[index]) - self.first_stamp_ns) / 1e9


def cache_folder(root: Path, bag: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return root / f"{bag.name}-{digest}"


def open_cache(bag: Path, topic: str, preprocess: PreprocessConfig, target_fps: float,
               max_gap_s: float, root: Path) -> Path:
    """The cache folder for these settings, built now if absent; stale ones refused."""
    key = cache_key(bag, topic, preprocess, target_fps, max_gap_s)
    folder = cache_folder(root, bag, key)
    if folder.exists() or folder.is_symlink():
        check_cache(folder, key)
        LOG.info("bag %s: frames from the cache %s", bag, folder)
        _touch(folder / INDEX)
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        _build(tmp, bag, topic, preprocess, target_fps, max_gap_s, key)
        try:
            tmp.rename(folder)
        except OSError:  # another process built it meanwhile: use theirs
            check_cache(folder, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    removed = prune_over_cap(root, max_cache_bytes(), keep={folder})
    if removed:
        LOG.info("bag cache %s: over its cap of %.1f GB (MTL_BAG_CACHE_MAX_GB): removed %d "
                 "least recently used folder(s)", root, max_cache_bytes() / 1e9, len(removed))
    return folder


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)


def max_cache_bytes() -> int:
    """MTL_BAG_CACHE_MAX_GB in bytes: unset, junk or NaN the default 4 GB, `inf` no cap,
    a negative value 0 (`int(inf)` had raised OverflowError in training and `cache`)."""
    try:
        gb = float(os.environ.get("MTL_BAG_CACHE_MAX_GB", "4"))
    except ValueError:
        gb = 4.0
    if math.isnan(gb):
        gb = 4.0
    if gb * 1e9 >= sys.maxsize:
        return sys.maxsize
    return int(max(gb, 0.0) * 1e9)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# `<bag>-<16 hex digits>` (cache_folder), and a build's `.<that>.<mkdtemp suffix>`.
_ENTRY = re.compile(r"^[^.].*-[0-9a-f]{16}$")
_PARTIAL = re.compile(r"^\..*-[0-9a-f]{16}\.[A-Za-z0-9_]+$")
CACHE_FILES = frozenset((FRAMES, INDEX, STAMPS, SEGMENTS))


def is_cache_entry(folder: Path, partial: bool = False) -> bool:
    """Whether `folder` provably is a cache folder (or, with `partial`, a half-built one):
    named as this module names them, a real folder, holding nothing but its own regular
    files. A cache root may be any folder a set's `cache:` names; what else lies there
    (a user's photos, a `.git`) is never treated as an old or stale entry and removed."""
    return _named_and_held_like_one(folder, partial) and (partial or _index_proves(folder))


def unproven_entries(root: Path) -> list[Path]:
    """Folders under `root` named and filled like cache folders whose `index.json` does not
    prove them one (damaged, or another program's): never removed, only reported."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if _named_and_held_like_one(p, False) and not _index_proves(p))


def _named_and_held_like_one(folder: Path, partial: bool) -> bool:
    if not (_PARTIAL if partial else _ENTRY).match(folder.name):
        return False
    try:
        if folder.is_symlink() or not folder.is_dir():
            return False
        return all(f.name in CACHE_FILES and f.is_file() and not f.is_symlink()
                   for f in folder.iterdir())
    except OSError:
        return False


_MAX_INDEX_BYTES = 1 << 20  # a few hundred bytes when written: more is not ours


def _index_proves(folder: Path) -> bool:
    """Whether `folder`'s index.json is this cache's index of this very folder: its key
    hashes to the name's digest and its bag has the name's file name (`cache_folder`)."""
    index_path = folder / INDEX
    try:
        if index_path.is_symlink() or index_path.stat().st_size > _MAX_INDEX_BYTES:
            return False
        index = json.loads(index_path.read_text(encoding="utf-8"))
        key, bag = index["key"], index["bag"]
        if not isinstance(key, dict) or not isinstance(bag, str):
            return False
        return cache_folder(folder.parent, Path(bag), key).name == folder.name
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return False


def cache_folders(root: Path) -> list[Path]:
    """The cache folders under `root` (half-built `.name.*` ones left out), oldest use first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if is_cache_entry(p)), key=_last_use)


def partial_builds(root: Path) -> list[Path]:
    """Half-built cache folders under `root` (a build in progress, or one left behind)."""
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if is_cache_entry(p, partial=True)]


def _last_use(folder: Path) -> float:
    try:
        return (folder / INDEX).stat().st_mtime
    except OSError:
        return 0.0


def prune_over_cap(root: Path, cap: int, keep: Collection[Path] = ()) -> list[Path]:
    """Remove the least recently used folders (never those in `keep`) until `root` holds
    at most `cap` bytes; the removed folders."""
    folders = cache_folders(root)
    sizes = {f: folder_bytes(f) for f in folders}
    total, removed = sum(sizes.values()), []
    for folder in folders:
        if total <= cap:
            break
        if folder in keep:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= sizes[folder]
        removed.append(folder)
    return removed


def stale_reason(folder: Path, hash_bags: bool = True) -> str | None:
    """Why `folder` can no longer serve (None: it can): unreadable, bag gone or changed."""
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        key, bag = index["key"], Path(index["bag"])
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable index.json"
    if not bag.exists():
        return f"its bag {bag} is gone"
    if hash_bags and key.get("bag_sha256") != bag_checksum(bag):
        return f"its bag {bag} has changed"
    return None


def check_cache(folder: Path, key: dict[str, Any]) -> None:
    """Refuse a cache folder whose recorded key or files do not match (one line)."""
    rebuild = "delete the folder, it is rebuilt on next use"
    try:
        require_regular_file(folder / INDEX, "bag cache file", CacheError)
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        stored, shape, files = index["key"], tuple(index["shape"]), dict(index["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"bag cache {folder} is damaged ({one_line(exc)}); {rebuild}"
                         ) from exc
    if stored != key:
        what = next((k for k in key if stored.get(k) != key[k]), "key")
        raise CacheError(f"bag cache {folder} is stale: its {what} differs from the bag and "
                         f"settings it is used for; {rebuild}")
    size = int(np.prod(shape)) * 4
    if sorted(files) != sorted((FRAMES, STAMPS, SEGMENTS)) or files[FRAMES].get("size") != size:
        raise CacheError(f"bag cache {folder}: index.json does not list its files as built "
                         f"(damaged); {rebuild}")
    for name in files:
        require_regular_file(folder / name, "bag cache file", CacheError)
    now = {name: (folder / name).stat() for name in files}  # a changed file: checked again
    problem = _changed_file(folder, tuple(sorted(
        (n, f["size"], f["sha256"], now[n].st_size, now[n].st_mtime_ns)
        for n, f in files.items())))
    if problem:
        raise CacheError(f"bag cache {folder}: {problem} (damaged); {rebuild}")


@lru_cache(maxsize=64)
def _changed_file(folder: Path, files: tuple[tuple[str, int, str, int, int], ...]
                  ) -> str | None:
    """The first file whose size or SHA-256 is not as built; read whole once per process
    (and again after its size or modification time changes)."""
    for name, size, digest, now_size, _ in files:
        if now_size != size:
            return f"{name} is {now_size} bytes, not {size}"
        if file_sha256(folder / name) != digest:
            return f"{name} does not hold what was written (SHA-256 differs)"
    return None


def _build(folder: Path, bag_path: Path, topic: str, preprocess: PreprocessConfig,
           target_fps: float, max_gap_s: float, key: dict[str, Any]) -> None:
    from mtl_perception.bag.reader import Bag, BagError  # rosbags: the [bag] extra

    errors: list[str] = []

    def on_error(camera: str, error: ImageDecodeError) -> None:
        errors.append(str(error))
        LOG.warning("bag %s %s: %s (such frames skipped)", bag_path, camera, error)

    stream = StreamConfig(target_fps=target_fps, max_gap_s=max_gap_s, inference_stride=1)
    camera = CameraState(topic, stream, 1, 0, preprocess, on_error)
    stamps, segments, first, shape = [], [], None, None
    try:
        with Bag(bag_path, topic) as bag, open(folder / FRAMES, "wb") as out:
            for _, msg in bag.images():
                header = header_of(msg)
                first = header.stamp_ns if first is None else first
                sampled, _ = camera.offer(header, msg, None, 0.0)
                if not sampled:
                    continue
                tensor = camera.buffer.frames[-1].tensor
                shape = tuple(tensor.shape)
                out.write(tensor.contiguous().numpy().tobytes())
                stamps.append(header.stamp_ns)
                segments.append(camera.epoch)
            end = bag.end_time_ns
            warning = bag.report.warning
    except BagError as exc:
        raise DatasetError(str(exc)) from exc
    if warning:
        LOG.warning("%s", warning)
    if not stamps or first is None or shape is None:
        why = f": {errors[0]}" if errors else ""
        raise DatasetError(f"bag {bag_path}: no image on {topic} could be sampled{why}")
    np.save(folder / STAMPS, np.asarray(stamps, np.int64))
    np.save(folder / SEGMENTS, np.asarray(segments, np.int32))
    files = {name: {"size": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
             for name in (FRAMES, STAMPS, SEGMENTS)}
    index = {"key": key, "shape": [len(stamps), *shape], "first_stamp_ns": first,
             "span_s": None if end is None else (end - first) / 1e9, "bag": str(bag_path),
             "files": files}
    (folder / INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
    LOG.info("bag %s: %d frames sampled at %g fps and cached", bag_path, len(stamps), target_fps)


@lru_cache(maxsize=64)
def read_cached(frames_path: Path) -> CachedFrames:
    """The cache a resolved sample points at (`.../frames.f32`); memory-mapped, once per process."""
    folder = frames_path.parent
    index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    frames = np.memmap(folder / FRAMES, np.float32, "r", shape=tuple(index["shape"]))
    return CachedFrames(frames, np.load(folder / STAMPS), np.load(folder / SEGMENTS),
                        int(index["first_stamp_ns"]), index["span_s"])
