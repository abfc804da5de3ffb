"""Backbone tensors of a checkpoint mapped onto a model of another method or `trainable_stages`.

Every backbone tensor has a place in the 3D ResNet (`layer3.0.conv1.0.weight`)
and, where a method keeps one copy per task, an owner: an SPS column, an LWS
copy. `canonical` names both for any model's key:

| model key                            | place               | owner         |
|--------------------------------------|---------------------|---------------|
| `prefix.stages.layer2.0...` (frozen) | `layer2.0...`       | shared        |
| `stages.layer3.0...` (HPS, STL)      | `layer3.0...`       | shared        |
| `columns.1.layer3.0...` (SPS)        | `layer3.0...`       | column 1      |
| `units.4.1...` (LWS, unit layer4.0)  | `layer4.0...`       | copy 1        |

A tensor of the new model takes the checkpoint's tensor at the same place:
the shared one if the checkpoint shares it (HPS -> SPS: every task column
starts as the shared backbone; `trainable_stages` 2 -> 3: the once frozen
layer2 fills the now trainable one), else the copy of the same task (by
name; an LWS checkpoint: the copy that task's routing picks, as inference
does). A task column the checkpoint has no copy for (a new task) starts
from the first task's. Cross-stitch units with no counterpart start as the
identity (each column reads only itself), so at step 0 an SPS model made
from an HPS checkpoint answers exactly as the checkpoint did; LWS routing
starts at its own initial values (uniform). Only a per-task checkpoint
mapped onto one shared tensor (SPS or LWS -> HPS, or to fewer trainable
stages) has no single answer: that is refused in one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mtl_perception.models.backbone import STAGE_NAMES

_PREFIX = re.compile(r"^prefix\.stages\.(.+)$")
_SHARED = re.compile(r"^stages\.(.+)$")
_COLUMN = re.compile(r"^columns\.(\d+)\.(.+)$")
_UNIT = re.compile(r"^units\.(\d+)\.(\d+)\.(.+)$")
STITCH = re.compile(r"^stitches\.(\d+)\.weight$")
ROUTING = "routing_probs"


class MappingError(ValueError):
    """No single source tensor for some tensor of the new model."""


@dataclass(frozen=True)
class Place:
    name: str  # place in the ResNet, e.g. layer3.0.conv1.0.weight
    owner: int | None  # None: shared; else the column / copy index


def canonical(key: str, unit_names: list[str] | None = None) -> Place | None:
    """Where `key` sits in the backbone; None for heads, gate, stitches, routing."""
    for pattern in (_PREFIX, _SHARED):
        if (m := pattern.match(key)) is not None:
            return Place(m.group(1), None)
    if (m := _COLUMN.match(key)) is not None:
        return Place(m.group(2), int(m.group(1)))
    if (m := _UNIT.match(key)) is not None and unit_names is not None:
        unit = unit_names[int(m.group(1))]
        # a stage's block is `layer3.0`; the stem is one unit whose keys continue after it
        return Place(f"{unit}.{m.group(3)}", int(m.group(2)))
    return None


def unit_names_of(model: torch.nn.Module) -> list[str] | None:
    names = getattr(model, "unit_names", None)
    return list(names) if names is not None else None


def map_backbone(target: torch.nn.Module, target_tasks: tuple[str, ...],
                 source: torch.nn.Module, source_tasks: tuple[str, ...]
                 ) -> tuple[int, list[str]]:
    """Copy every backbone tensor of `target` from `source` (see the module docstring).

    Returns (tensors copied, notes); raises MappingError naming the first tensor
    without a single source. Cross-stitch units and routing are handled here too.
    """
    given = source.state_dict()
    source_units = unit_names_of(source)
    by_place: dict[Place, torch.Tensor] = {}
    for key, tensor in given.items():
        place = canonical(key, source_units)
        if place is not None:
            by_place[place] = tensor
    source_owner = _owner_of_task(source, source_tasks)
    target_units = unit_names_of(target)
    copied, notes, borrowed = 0, list[str](), set[str]()
    state = target.state_dict()
    with torch.no_grad():
        for key, tensor in state.items():
            place = canonical(key, target_units)
            if place is None:
                continue
            found = by_place.get(Place(place.name, None))
            if found is None and place.owner is not None:
                task = target_tasks[place.owner] if place.owner < len(target_tasks) else ""
                if task not in source_tasks and source_tasks:
                    borrowed.add(task)
                    task = source_tasks[0]
                owner = source_owner(task, place.name)
                found = by_place.get(Place(place.name, owner))
            if found is None:
                owners = {p.owner for p in by_place if p.name == place.name and p.owner is not None}
                why = (f"the checkpoint holds one copy per task ({len(owners)}) and this model "
                       "one shared tensor" if owners else "the checkpoint has no such tensor")
                raise MappingError(f"{key}: {why}")
            if found.shape != tensor.shape:
                raise MappingError(f"{key}: shape {tuple(tensor.shape)} here, "
                                   f"{tuple(found.shape)} in the checkpoint")
            tensor.copy_(found)
            copied += 1
        copied += _stitches(state, given, _stitched_stages(target), _stitched_stages(source),
                            target_tasks, source_tasks, notes)
    for task in sorted(borrowed):
        notes.append(f"task {task}'s column starts as task {source_tasks[0]}'s")
    return copied, notes


def _owner_of_task(source: torch.nn.Module, tasks: tuple[str, ...]
                   ) -> Callable[[str, str], int | None]:
    """task name, place -> the source's copy that task uses there (None: no per-task copy)."""
    routing = source.state_dict().get(ROUTING)
    units = unit_names_of(source)

    def owner(task: str, place: str) -> int | None:
        if task not in tasks:
            return None
        t = tasks.index(task)
        if routing is None or units is None:
            return t
        unit = next((u for u, name in enumerate(units) if place.startswith(name + ".")), None)
        if unit is None:
            return t
        probs = routing[t, unit]
        # ties go to the task's own copy, as LearnedSharingModel.argmax_assignment does
        best = torch.nonzero(probs == probs.max()).flatten().tolist()
        return t if t in best else int(best[0])

    return owner


def _stitched_stages(model: torch.nn.Module) -> list[str]:
    """The stage each cross-stitch unit follows (unit i: the i-th trainable stage)."""
    stages = getattr(getattr(model, "config", None), "trainable_stages", 0)
    return list(STAGE_NAMES[len(STAGE_NAMES) - stages:])


def _stitches(state: dict[str, torch.Tensor], given: dict[str, torch.Tensor],
              stages: list[str], source_stages: list[str], target_tasks: tuple[str, ...],
              source_tasks: tuple[str, ...], notes: list[str]) -> int:
    """Cross-stitch weights (K, K, C), by stage: the checkpoint's pairs by task name,
    else the identity."""
    count, identity = 0, 0
    for key, tensor in state.items():
        if (m := STITCH.match(key)) is None:
            continue
        stage = stages[int(m.group(1))]
        theirs = (given.get(f"stitches.{source_stages.index(stage)}.weight")
                  if stage in source_stages else None)
        tensor.zero_()
        for t in range(len(target_tasks)):
            tensor[t, t] = 1.0
        if theirs is not None and theirs.shape[-1] == tensor.shape[-1]:
            for t, a in enumerate(target_tasks):
                for u, b in enumerate(target_tasks):
                    if a in source_tasks and b in source_tasks:
                        tensor[t, u] = theirs[source_tasks.index(a), source_tasks.index(b)]
        else:
            identity += 1
        count += 1
    if identity:
        notes.append(f"{identity} cross-stitch unit(s) start as the identity (each task column "
                     "reads only itself: the checkpoint's answers at step 0)")
    return count
