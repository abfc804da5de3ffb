"""Where `synth` writes: a folder it can prove is its own, or nothing at all.

The synthetic set uses the real datasets' names (`UCF-101/`,
`ucfTrainTestlist/`...), so a careless `--out` could point at a user's data.
The rule is the one every command that replaces a folder follows
(`mtl_perception.outputs`): a folder counts as an earlier synthetic set only
when its `synth.json` is a manifest synth wrote (a SHA-256 over its own
content) and the folder holds exactly the files it lists, with the sizes and
SHA-256 it records, and nothing else. Anything else is refused and left
untouched.

A run writes into the sibling folder `.<out>.synth-partial`, whose manifest
lists every file the run will write before the first one is written (state
`incomplete`); when all are written the manifest is rewritten with their
hashes (state `complete`) and the folder is swapped in by rename (an earlier
set is first renamed to `.<out>.synth-old`, then removed). An interrupted run
leaves only those siblings, each provably ours, so the next run removes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mtl_perception import outputs
from mtl_perception.outputs import MANIFEST_VERSION, OutputError

OWNER = outputs.Owner(tool="training.synthetic", manifest="synth.json", tag="synth",
                      name="synth", what="synthetic set")
MANIFEST = OWNER.manifest
GENERATOR = OWNER.tool
PARTIAL_SUFFIX, OLD_SUFFIX = ".synth-partial", ".synth-old"
SynthOutputError = OutputError  # an `--out` folder the generator must not write into (or delete)

__all__ = ["GENERATOR", "MANIFEST", "MANIFEST_VERSION", "OWNER", "SynthOutputError", "finish",
           "old_folder", "partial_folder", "prepare", "why_not_ours",
           "write_manifest"]


def partial_folder(out: Path) -> Path:
    return OWNER.partial(out)


def old_folder(out: Path) -> Path:
    return OWNER.old(out)


def write_manifest(folder: Path, settings: Mapping[str, Any], files: Iterable[str],
                   complete: bool) -> None:
    """The manifest: planned files (incomplete) or written files with size and SHA-256."""
    target = folder.name[1:-len(PARTIAL_SUFFIX)] if folder.name.endswith(PARTIAL_SUFFIX) else ""
    outputs.write_manifest(folder, OWNER, settings, files, complete, target)


def why_not_ours(folder: Path) -> str | None:
    """None when `folder` is provably a synthetic set (or its partial run); else why not."""
    return outputs.why_not_ours(folder, OWNER)


def prepare(out: Path) -> Path:
    """Check `--out` and clear our own leftovers; return the empty partial folder to write.

    Raises `OutputError` (nothing deleted) for any folder not provably ours, and for one
    inside an earlier output of ours, a set included (`outputs.check_out`).
    """
    return outputs.prepare(out, OWNER, overwrite=True, settings={})


def finish(partial: Path, out: Path) -> None:
    """Swap the finished set in by rename; an earlier set of ours is removed after."""
    outputs.finish(partial, out, OWNER, overwrite=True)
