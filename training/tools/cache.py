"""`python -m training cache [--prune] [--max-gb G]`: the bag frame cache, listed or pruned.

Lists the cache folders (training/datasets/bag_cache.py) with their size,
bag and last use. `--prune` removes the stale ones (bag gone or changed,
a build left half done over an hour ago) and then the least recently used
until the cache holds at most `--max-gb` (default: `MTL_BAG_CACHE_MAX_GB`,
else 4). Deleting a cache folder is always safe: it is rebuilt on next use.
Only folders that provably are cache entries (named as the cache names them,
holding only its files, with an index.json that gives that name) are listed
or removed: a `--root` or a set's `cache:` may name a folder that holds
other things too. One named like an entry whose index does not prove it
(a damaged index, or another program's folder) is reported, never removed.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from training.datasets.bag_cache import (
    cache_folders,
    default_cache_root,
    folder_bytes,
    max_cache_bytes,
    partial_builds,
    prune_over_cap,
    stale_reason,
    unproven_entries,
)

PARTIAL_AGE_S = 3600.0  # a half-built folder this old is no build in progress
MAX_GB = 1e9  # an exabyte: past any disk, short of a byte count a float cannot hold


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=None,
                        help="cache folder (default: $XDG_CACHE_HOME/mtl_perception/bags; a "
                             "source's cache: setting names another)")
    parser.add_argument("--prune", action="store_true",
                        help="remove stale folders, then the least recently used over the cap")
    parser.add_argument("--max-gb", type=float, default=None,
                        help="size cap for --prune (default MTL_BAG_CACHE_MAX_GB or 4)")


def run(args: argparse.Namespace) -> int:
    root = args.root or default_cache_root()
    # inf or 1e300 would end in int()'s OverflowError (a traceback) once turned into bytes
    if args.max_gb is not None and not 0 <= args.max_gb <= MAX_GB:
        print(f"error: --max-gb must be in 0..{MAX_GB:g}, got {args.max_gb:g}", flush=True)
        return 2
    if root.exists() and not root.is_dir():  # "empty (no such folder)" would be untrue
        print(f"error: --root {root} is not a folder", flush=True)
        return 2
    if not root.is_dir():
        print(f"bag cache {root}: empty (no such folder)")
        return 0
    removed: list[tuple[Path, str]] = []
    if args.prune:
        for partial in partial_builds(root):
            if time.time() - partial.stat().st_mtime > PARTIAL_AGE_S:
                shutil.rmtree(partial, ignore_errors=True)
                removed.append((partial, "a build left half done"))
        for folder in cache_folders(root):
            reason = stale_reason(folder)
            if reason is not None:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append((folder, reason))
        cap = max_cache_bytes() if args.max_gb is None else int(args.max_gb * 1e9)
        removed += [(f, "least recently used, over the size cap")
                    for f in prune_over_cap(root, cap)]
    for folder, reason in removed:
        print(f"removed {folder}: {reason}")
    for folder in unproven_entries(root):
        print(f"left {folder}: named like a cache folder, but its index.json does not prove it "
              "is one (damaged, or another program's); delete it yourself if it is a damaged "
              "cache folder")
    folders = cache_folders(root)
    total = 0
    for folder in folders:
        size = folder_bytes(folder)
        total += size
        index = folder / "index.json"
        used = (time.strftime("%Y-%m-%d %H:%M", time.localtime(index.stat().st_mtime))
                if index.is_file() else "-")
        print(f"{size / 1e6:9.1f} MB  last used {used}  {folder.name}")
    print(f"bag cache {root}: {len(folders)} folder(s), {total / 1e6:.1f} MB")
    return 0
