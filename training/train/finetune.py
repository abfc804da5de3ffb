"""`init: CHECKPOINT`: start a run from a trained model instead of Kinetics or nothing.

The run's tasks and classes are the checkpoint's unless told otherwise
(`finetune_plan.py`: `drop:`, `new_classes:`, `replay:`). Every weight
outside the task heads is mapped from the checkpoint (`weight_map.py`): by
its place in the ResNet, across methods and `trainable_stages` (HPS -> SPS:
every task column starts as the shared backbone, cross-stitch units as the
identity; 2 -> 3 trainable stages: the frozen layer2 fills the trainable one).
What has no single source (SPS -> HPS) is refused in one line: no tensor is
ever left at its random initialisation. The model must be the same
architecture, width and frame-differences setting. Heads are matched by task
name:

- same class list, same order: the head is copied as it is ("kept"), so the
  model answers exactly as the checkpoint did before the first step;
- another class list ("extended"): rows of classes whose names are in the
  checkpoint's head are copied, new classes keep the fresh rows of a new head
  (small random weights, zero bias);
- a task the checkpoint does not have ("new"): a fresh head.

A task gate (`fit-gate`) is copied when this run trains one too, and else
left behind (the log says so: refit it with `fit-gate`). `model.trainable_stages`
freezes the same stages as for any other run. The new checkpoint's provenance
records the origin (`init` below), so a chain of fine-tunings can be traced back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mtl_perception.checkpoint import CheckpointError, load_checkpoint
from mtl_perception.digest import file_sha256
from mtl_perception.models import ModelConfig, MultiTaskModel
from mtl_perception.settings import SettingsError
from training.train.weight_map import ROUTING, MappingError, map_backbone

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
    try:
        copied, notes = map_backbone(model, config.task_names, loaded.model,
                                     source.model.task_names)
    except MappingError as exc:
        raise InitError(f"init: {path} ({source.model.method}, trainable_stages "
                        f"{source.model.trainable_stages}) cannot start this {config.method} "
                        f"model (trainable_stages {config.trainable_stages}): {exc}; fine-tune "
                        f"with method={source.model.method} model.trainable_stages="
                        f"{source.model.trainable_stages}") from exc
    state, given = model.state_dict(), loaded.model.state_dict()
    with torch.no_grad():
        copied += _copy_same(state, given, ROUTING, notes, "LWS routing starts uniform")
        if getattr(model, "gate", None) is not None:
            copied += _copy_same(state, given, "gate.", notes, "the task gate starts fresh")
        elif getattr(loaded.model, "gate", None) is not None:
            notes.append("the checkpoint's task gate is left behind: refit one with fit-gate")
        heads = {task: _init_head(model, config, t, class_names[t], source.model,
                                  source.class_names, loaded.model)
                 for t, task in enumerate(config.task_names)}
    for note in notes:
        LOG.info("init: %s", note)
    LOG.info("init: %s: %d tensors copied; heads: %s", path, copied,
             ", ".join(f"{t} {what}" for t, what in heads.items()))
    origin = source.provenance
    return {
        "checkpoint": str(path.resolve()),
        "sha256": file_sha256(path),
        "method": source.model.method,
        "tasks": list(source.model.task_names),
        "class_names": [list(n) for n in source.class_names],
        "heads": heads,
        "notes": notes,
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
    return (f"extended ({len(rows)} of {len(old)} old classes kept, "
            f"{len(names) - len(rows)} new)")


def _copy_same(state: dict[str, torch.Tensor], given: dict[str, torch.Tensor], prefix: str,
               notes: list[str], otherwise: str) -> int:
    """Tensors under `prefix` copied where the checkpoint has them in the same shape."""
    keys = [k for k in state if k.startswith(prefix)]
    same = [k for k in keys if k in given and given[k].shape == state[k].shape]
    if keys and len(same) < len(keys):
        notes.append(otherwise)
        return 0
    for key in same:
        state[key].copy_(given[key])
    return len(same)


def _head(model: MultiTaskModel, task: int) -> torch.nn.Linear:
    heads = model.heads
    assert isinstance(heads, torch.nn.ModuleList)  # every method's heads (models/base.py)
    head = heads[task]
    assert isinstance(head, torch.nn.Linear)
    return head


