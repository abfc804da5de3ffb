"""Sampled LWS assignments evaluated as a tree of routes: each shared leading route once.

Both LWS steps evaluate lambda sampled assignments on one batch. With the
reference's per-task forwards, task t's samples under assignment j pass the
units through copies assignment[j, t, 0], assignment[j, t, 1], ...: two
assignments that agree on the first u copies for a task give that task the
same activations after u units. This module computes every distinct
(task, leading route) once and branches where assignments part, so a unit's
copy runs once per distinct route prefix instead of once per assignment (at
uniform probabilities over 2 copies and 4 units, 8 assignments share about
half their block evaluations; as the probabilities settle, nearly all).

What stays exactly as in the loop of one forward per assignment:
- outputs and gradients: the same functions of the same inputs (the weight
  step backpropagates the sum of the assignments' losses once, which is the
  sum of their separate gradients);
- BatchNorm running statistics. In training mode the loop updates a copy's
  running mean and variance once per use, in the order (assignment, task,
  unit), and these updates do not commute. Here the routed units' BatchNorm
  layers normalise by batch statistics without touching the running ones
  while the tree is computed; each call's batch statistics are recorded and
  the updates are then replayed, one per use, in the loop's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import torch
from torch import nn

from mtl_perception.models.base import task_rows
from mtl_perception.models.lws import LearnedSharingModel

# (task, copies chosen for units 0..u): one node of the route tree
RouteKey = tuple[int, tuple[int, ...]]
# BatchNorm layer and the batch mean and unbiased variance it normalised one call by
BatchStats = tuple[nn.modules.batchnorm._BatchNorm, torch.Tensor, torch.Tensor]


def routed_logits(
    model: LearnedSharingModel, shared: torch.Tensor, task_ids: torch.Tensor,
    assignments: torch.Tensor,
) -> list[list[torch.Tensor]]:
    """Per sampled assignment j (assignments: (samples, tasks, units)), per task, the
    logits of that task's samples (batch order) with each task run as a forward of
    its own, exactly as `training.methods.lws.per_task_forward` under assignment j.

    In training mode the routed units' BatchNorm running statistics end as the
    loop of per-assignment forwards leaves them.
    """
    samples = assignments.shape[0]
    routes = assignments.tolist()
    out: list[list[torch.Tensor]] = [[] for _ in range(samples)]
    recorded: dict[RouteKey, list[BatchStats]] = {}
    with _deferred_running_stats(model, model.training) as calls:
        for task, head in enumerate(model.heads):
            rows = task_rows(task_ids, task)
            if rows.numel() == 0:
                empty = shared.new_zeros((0, cast(nn.Linear, head).out_features))
                for per_task in out:
                    per_task.append(empty)
                continue

            def copy_of(j: int, unit: int, task: int = task) -> int:
                return routes[j][task][unit]

            def visit(route: tuple[int, ...], task: int = task) -> None:
                recorded[(task, route)] = list(calls)  # the block just run
                calls.clear()

            pooled = model.route_tree(shared[rows], range(samples), copy_of, visit)
            logits: dict[int, torch.Tensor] = {}  # by leaf: one head pass per distinct route
            for j in range(samples):
                leaf = pooled[j]
                if id(leaf) not in logits:
                    logits[id(leaf)] = head(leaf)
                out[j].append(logits[id(leaf)])
    if model.training:
        _replay_running_stats(model, routes, recorded)
    return out


def _routed_batchnorms(model: LearnedSharingModel) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.units.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats]


@contextmanager
def _deferred_running_stats(
    model: LearnedSharingModel, active: bool
) -> Iterator[list[BatchStats]]:
    """Within: the routed BatchNorm layers (training mode) normalise by batch statistics
    but leave their running statistics alone; every call's statistics are appended
    to the yielded list. Inactive (eval mode): nothing changes, nothing recorded."""
    calls: list[BatchStats] = []
    if not active:
        yield calls
        return

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        with torch.no_grad():
            x = args[0].detach().float()
            dims = [d for d in range(x.dim()) if d != 1]
            var, mean = torch.var_mean(x, dim=dims, correction=1)
        calls.append((cast(nn.modules.batchnorm._BatchNorm, module), mean, var))

    layers = _routed_batchnorms(model)
    handles = [layer.register_forward_pre_hook(record) for layer in layers]
    for layer in layers:
        # In training mode a layer that does not track running statistics normalises
        # by the batch's, exactly as one that does; it only skips the update.
        layer.track_running_stats = False
    try:
        yield calls
    finally:
        for layer in layers:
            layer.track_running_stats = True
        for handle in handles:
            handle.remove()


def _replay_running_stats(
    model: LearnedSharingModel, routes: list[list[list[int]]],
    recorded: dict[RouteKey, list[BatchStats]],
) -> None:
    """One running-statistics update per use of a copy, in the per-assignment loop's
    order: assignment, then task (those with samples: the ones in the tree), then unit."""
    present = sorted({task for task, _ in recorded})
    with torch.no_grad():
        for route in routes:
            for task in present:
                for unit in range(model.num_units):
                    for layer, mean, var in recorded[(task, tuple(route[task][: unit + 1]))]:
                        _update_running_stats(layer, mean, var)


def _update_running_stats(
    layer: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor
) -> None:
    """BatchNorm's own training-mode update (momentum, or a cumulative average)."""
    assert layer.running_mean is not None and layer.running_var is not None
    assert layer.num_batches_tracked is not None
    layer.num_batches_tracked.add_(1)
    factor = (1.0 / float(layer.num_batches_tracked) if layer.momentum is None
              else layer.momentum)
    layer.running_mean.mul_(1 - factor).add_(mean.to(layer.running_mean), alpha=factor)
    layer.running_var.mul_(1 - factor).add_(var.to(layer.running_var), alpha=factor)
