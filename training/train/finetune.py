"""`init: CHECKPOINT`: start a run from a trained model instead of Kinetics or nothing.

Every weight outside the task heads (backbone stages, cross-stitch units,
LWS columns) is copied by name from the checkpoint; the model must be the
same architecture, width and frame-differences setting (one line refuses
anything else). Heads are matched by task name:

- same class list, same order: the head is copied as it is ("kept"), so the
  model answers exactly as the checkpoint did before the first step;
- another class list ("extended"): rows of classes whose names are in the
  checkpoint's head are copied, new classes keep the fresh rows of a new head
  (small random weights, zero bias), classes no longer listed are dropped;
- a task the checkpoint does not have ("new"): a fresh head.

`model.trainable_stages` freezes the same stages as for any other run: the
copied weights of frozen stages stay as they came. The new checkpoint's
provenance records the origin (`init` below), so a chain of fine-tunings can
be traced back.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from mtl_perception.checkpoint import CheckpointError, load_checkpoint
from mtl_perception.models import ModelConfig, MultiTaskModel
from mtl_perception.settings import SettingsError

LOG = logging.getLogger(__name__)
_HEAD = "heads."
_SAME = ("arch", "width", "frame_differences")


class InitError(SettingsError):
    """A checkpoint that cannot initialise this run; one line naming it and the setting."""


def init_from_checkpoint(model: MultiTaskModel, class_names: tuple[tuple[str, ...], ...],
                         path: str | Path) -> dict[str, Any]:
    """Load `path` into `model` as described above; returns the provenance record."""
    path = Path(path)
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as exc:
        raise InitError(f"init: {exc}") from exc
    source, config = loaded.info, model.config
    for name in _SAME:
        ours, theirs = getattr(config, name), getattr(source.model, name)
        if ours != theirs:
            raise InitError(f"init: {path} has model.{name} {theirs!r}, this run {ours!r}; "
                            f"set model.{name} to {theirs!r} to start from it")
    state = model.state_dict()
    given = loaded.model.state_dict()
    copied, missing = 0, []
    with torch.no_grad():
        for key, tensor in state.items():
            if key.startswith(_HEAD):
                continue
            if key in given and given[key].shape == tensor.shape:
                tensor.copy_(given[key])
                copied += 1
            else:
                missing.append(key)
        heads = {task: _init_head(model, config, t, class_names[t], source.model,
                                  source.class_names, loaded.model)
                 for t, task in enumerate(config.task_names)}
    if missing:  # e.g. HPS -> SPS: the extra columns keep their fresh weights
        LOG.warning("init: %d of this model's tensors are not in %s (first: %s); they start "
                    "fresh", len(missing), path, missing[0])
    LOG.info("init: %s: %d tensors copied; heads: %s", path, copied,
             ", ".join(f"{t} {what}" for t, what in heads.items()))
    origin = source.provenance
    return {
        "checkpoint": str(path.resolve()),
        "sha256": _file_sha256(path),
        "method": source.model.method,
        "tasks": list(source.model.task_names),
        "class_names": [list(n) for n in source.class_names],
        "heads": heads,
        "tensors_fresh": len(missing),
        # one level of the origin's own story: its set, its iteration, its own init
        "origin": {k: origin[k] for k in ("iteration", "init") if k in origin}
        | {"set": str(origin.get("config", {}).get("set", ""))},
    }


def _init_head(model: MultiTaskModel, config: ModelConfig, task: int, names: tuple[str, ...],
               source: ModelConfig, source_names: tuple[tuple[str, ...], ...],
               loaded: MultiTaskModel) -> str:
    """Copy what the checkpoint knows of task `task`'s head; say what was done."""
    task_name = config.task_names[task]
    if task_name not in source.task_names:
        return "new"
    j = source.task_names.index(task_name)
    head, theirs = _head(model, task), _head(loaded, j)
    old = source_names[j]
    if tuple(names) == tuple(old):
        head.weight.copy_(theirs.weight)
        head.bias.copy_(theirs.bias)
        return "kept"
    rows = [(i, old.index(n)) for i, n in enumerate(names) if n in old]
    for i, k in rows:
        head.weight[i] = theirs.weight[k]
        head.bias[i] = theirs.bias[k]
    return f"extended ({len(rows)} of {len(names)} classes kept)"


def _head(model: MultiTaskModel, task: int) -> torch.nn.Linear:
    heads = model.heads
    assert isinstance(heads, torch.nn.ModuleList)  # every method's heads (models/base.py)
    head = heads[task]
    assert isinstance(head, torch.nn.Linear)
    return head


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
