"""LWS: learned weight sharing (Prellberg & Kramer, IJCNN 2020).

The trainable part of the backbone is duplicated once per task; each routed
unit (every residual block of the trainable stages, and the stem when it
trains) has K copies. For every (task, unit) a categorical distribution over
the copies, stored as probabilities `routing_probs[task, unit, copy]`, decides
which copy that task uses. Training (`training/methods/lws.py`) samples assignments and
moves the probabilities with a natural evolution strategy; inference uses each
task's most probable copy per unit. Ties go to the task's own copy: each layer
starts assigned to the task its backbone originally addressed.

The frozen prefix is shared (computed once per batch), pooling is shared and
the final linear layer is always task-specific.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import cast

import torch
from torch import nn

from mtl_perception.models.base import MultiTaskModel, make_heads, split_backbone, task_rows
from mtl_perception.models.config import ModelConfig
from mtl_perception.models.stages import VideoBackbone


class LearnedSharingModel(MultiTaskModel):
    """K copies of every trainable residual block, routed per task."""

    routing_probs: torch.Tensor

    def __init__(self, config: ModelConfig, backbone: VideoBackbone) -> None:
        super().__init__(config)
        self.prefix, trainable = split_backbone(backbone, config.trainable_stages)
        k = config.num_tasks
        blocks: list[nn.Module] = []
        self.unit_names: list[str] = []
        for name, stage in trainable.items():
            # The stem is one unit; a residual stage is one unit per block.
            stage_blocks = [stage] if name == "stem" else list(cast(nn.Sequential, stage))
            blocks.extend(stage_blocks)
            self.unit_names += (
                [name] if name == "stem" else [f"{name}.{i}" for i in range(len(stage_blocks))]
            )
        self.units = nn.ModuleList(
            nn.ModuleList(copy.deepcopy(block) for _ in range(k)) for block in blocks
        )
        self.register_buffer("routing_probs", torch.full((k, len(blocks), k), 1.0 / k))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.heads = make_heads(backbone.feature_dim, config.num_classes)
        self._add_gate(backbone.feature_dim)

    @property
    def num_units(self) -> int:
        return len(self.units)

    def argmax_assignment(self) -> torch.Tensor:
        """(tasks, units) most probable copy per task and unit; ties go to the own copy."""
        probs = self.routing_probs
        best = probs.argmax(dim=-1)
        own = torch.arange(probs.shape[0], device=probs.device).unsqueeze(1).expand_as(best)
        own_prob = probs.gather(-1, own.unsqueeze(-1)).squeeze(-1)
        return torch.where(own_prob >= probs.max(dim=-1).values, own, best)

    def forward(
        self,
        clips: torch.Tensor,
        task_ids: torch.Tensor,
        assignment: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Mixed-task forward; `assignment` (tasks, units) defaults to the argmax routing."""
        self._check_task_ids(clips, task_ids)
        return self.forward_from_prefix(self.prefix(clips), task_ids, assignment)

    def forward_from_prefix(
        self,
        shared: torch.Tensor,
        task_ids: torch.Tensor,
        assignment: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Forward from the frozen prefix's output, so that training evaluates many
        assignments on one batch while computing the prefix once."""
        if assignment is None:
            assignment = self.argmax_assignment()
        self._check_assignment(assignment)
        x = shared
        for unit, copies in enumerate(self.units):
            x = _route_samples(x, assignment[task_ids, unit], cast(nn.ModuleList, copies))
        features = self.pool(x).flatten(1)
        return [head(features[task_rows(task_ids, t)]) for t, head in enumerate(self.heads)]

    def task_features(self, clips: torch.Tensor) -> list[torch.Tensor]:
        """Every clip through every task's argmax route; a leading run of units that
        several tasks route identically is computed once for all of them. The gate
        reads the mean over tasks (one tensor when all tasks share the route)."""
        route = self.argmax_assignment().tolist()
        tasks = range(self.config.num_tasks)
        features = self.route_tree(self.prefix(clips), tasks, lambda t, unit: route[t][unit])
        return [features[t] for t in tasks]

    def forward_gated(
        self, clips: torch.Tensor, task_ids: torch.Tensor, detach: bool = False
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Not for LWS: its weight step routes sampled assignments, so the trainer fits the
        gate beside it on the argmax routes' features (training/train/gate.py)."""
        raise NotImplementedError("LWS trains its gate on the argmax routes' features")

    def route_tree(
        self,
        x: torch.Tensor,
        members: Iterable[int],
        copy_of: Callable[[int, int], int],
        visit: Callable[[tuple[int, ...]], None] | None = None,
    ) -> dict[int, torch.Tensor]:
        """Pooled features of x for each member, member m taking copy copy_of(m, unit)
        at every unit; a leading route several members share is computed once (the
        same tensor for all of them). `visit(route)` runs right after each block,
        with the copies chosen so far. Members are tasks at inference and sampled
        assignments in training (`training/methods/lws_routes.py`)."""
        out: dict[int, torch.Tensor] = {}
        self._descend(x, list(members), (), copy_of, visit, out)
        return out

    def _descend(
        self,
        x: torch.Tensor,
        members: list[int],
        route: tuple[int, ...],
        copy_of: Callable[[int, int], int],
        visit: Callable[[tuple[int, ...]], None] | None,
        out: dict[int, torch.Tensor],
    ) -> None:
        unit = len(route)
        if unit == self.num_units:
            pooled = self.pool(x).flatten(1)
            for member in members:
                out[member] = pooled
            return
        groups: dict[int, list[int]] = {}
        for member in members:
            groups.setdefault(copy_of(member, unit), []).append(member)
        for copy_index, group in groups.items():
            y = cast(nn.ModuleList, self.units[unit])[copy_index](x)
            if visit is not None:
                visit((*route, copy_index))
            self._descend(y, group, (*route, copy_index), copy_of, visit, out)

    def _check_assignment(self, assignment: torch.Tensor) -> None:
        """Refuse a malformed assignment rather than route by accident: a float tensor
        would index copies after truncation and -1 would silently pick the last copy."""
        expected = (self.config.num_tasks, self.num_units)
        if tuple(assignment.shape) != expected:
            raise ValueError(f"assignment must be shaped {expected}, got {tuple(assignment.shape)}")
        if assignment.dtype.is_floating_point or assignment.dtype.is_complex:
            raise ValueError(f"assignment must hold integer copy indices, got {assignment.dtype}")
        copies = self.config.num_tasks
        if assignment.numel() and (assignment.min() < 0 or assignment.max() >= copies):
            raise ValueError(f"assignment copy indices must be in 0..{copies - 1}")


def _route_samples(x: torch.Tensor, route: torch.Tensor, copies: nn.ModuleList) -> torch.Tensor:
    """Send each sample through the copy its task is routed to, keeping batch order.

    An empty batch goes through copy 0, so that it keeps the shape every other
    model gives it (N = 0 rows) instead of failing on an empty concatenation.
    """
    chosen = torch.unique(route)
    if chosen.numel() <= 1:
        return copies[int(chosen) if chosen.numel() else 0](x)
    outputs, rows = [], []
    for copy_index in chosen.tolist():
        index = (route == copy_index).nonzero(as_tuple=True)[0]
        outputs.append(copies[copy_index](x[index]))
        rows.append(index)
    order = torch.argsort(torch.cat(rows))
    return torch.cat(outputs)[order]
