"""Training steps of learned weight sharing (Prellberg & Kramer, IJCNN 2020).

Follows the authors' public implementation (`trainer.py`,
`task_routing_model.py` of jprellberg/learned-weight-sharing):

- Assignment step (NES): model in eval mode, no gradients, one batch; draw
  lambda_pi assignments (one copy per (task, unit)); the loss of each on that
  same batch is the mean cross-entropy over all its samples (as the reference
  does); rank-based utilities linear in [-1, 1] (lowest loss +1, highest -1,
  summing to zero); natural gradient g = mean_j u_j (onehot(alpha_j) - p);
  p <- p + eta_pi g; clamp p >= p_min; renormalise. The paper's Eq. 5 writes
  u_i from l_i: it means the rank of l_i.
- Weight step: draw lambda_theta assignments; backpropagate the weighted
  multi-task loss under each (gradients accumulate); divide each copy's
  gradient by its expected usage (sum over tasks of p[t, k] times
  lambda_theta), task-specific heads' by lambda_theta, any other shared
  trainable parameter's by (tasks x lambda_theta); one optimiser step. (The
  paper's last update line writes the gradient w.r.t. pi: it means theta.)
  Learned loss weights (one per task, used once per assignment) are
  task-specific: divided by lambda_theta. Loss statistics (DWA) are recorded
  once per iteration, from the mean loss over the assignments, so that a DWA
  window counts iterations as it does for every other method.

The frozen prefix runs once per batch in each step and is reused by every
assignment: it is the same for all of them. With `reuse_routes` (default) the
routed units go further: a leading route that several sampled assignments
share for a task is computed once (`training.methods.lws_routes`), with the same
outputs, gradients and BatchNorm running statistics as one forward per
assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.models.base import task_rows
from mtl_perception.models.lws import LearnedSharingModel
from training.methods.lws_routes import routed_logits
from training.methods.weighting import LossWeighting


@dataclass(frozen=True)
class LWSConfig:
    """Hyperparameters of the two LWS steps (the reference implementation's defaults)."""

    nes_samples: int = 8  # lambda_pi
    sgd_samples: int = 8  # lambda_theta
    nes_lr: float = 1e-2  # eta_pi
    p_min: float = 1e-3
    # The reference runs each task's samples as a forward of their own (per-task
    # BatchNorm statistics); False sends a copy's samples of all tasks as one batch.
    per_task_forward: bool = True
    # The reference draws the NES step's batch separately from the weight step's.
    separate_nes_batch: bool = True
    # Compute a leading route shared by several sampled assignments once (same
    # results as one forward per assignment, see training/methods/lws_routes.py): in the
    # assignment step always (eval mode scores each sample alone), in the weight
    # step with per-task forwards. False runs one forward per assignment.
    reuse_routes: bool = True

    def __post_init__(self) -> None:
        if self.nes_samples < 2 or self.sgd_samples < 1:
            raise ValueError("lws.nes_samples must be >= 2 and lws.sgd_samples >= 1")
        if not self.nes_lr > 0 or not 0 <= self.p_min < 1:
            raise ValueError("lws.nes_lr must be > 0 and lws.p_min in [0, 1)")


@dataclass(frozen=True)
class WeightStep:
    """What one weight step did: the weighted loss of each sampled assignment and the
    per-task loss weights used (for logging, as every weighting method reports them)."""

    totals: torch.Tensor
    weights: list[float]


def sample_assignments(
    probs: torch.Tensor, count: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw `count` assignments (count, tasks, units) from probs (tasks, units, copies)."""
    # Drawn on the CPU whatever the model's device: a CPU generator seeded per
    # iteration then gives the same draws on every rank and after a resume.
    flat = probs.detach().float().cpu().reshape(-1, probs.shape[-1])
    draws = torch.multinomial(flat, count, replacement=True, generator=generator)
    return draws.T.reshape(count, *probs.shape[:-1]).to(probs.device)


def rank_utilities(losses: torch.Tensor) -> torch.Tensor:
    """Fitness shaping: utilities linear in rank, lowest loss +1, highest -1."""
    count = losses.numel()
    if count < 2:
        raise ValueError("NES needs at least two sampled assignments")
    descending_rank = torch.argsort(
        torch.argsort(losses, descending=True, stable=True), stable=True
    )
    return descending_rank.to(torch.float32) / (count - 1) * 2 - 1


def nes_update(
    probs: torch.Tensor,
    assignments: torch.Tensor,
    losses: torch.Tensor,
    lr: float,
    p_min: float,
) -> torch.Tensor:
    """One natural-gradient step on the routing probabilities; returns the new probs."""
    utilities = rank_utilities(losses).to(probs)
    onehot = F.one_hot(assignments, probs.shape[-1]).to(probs)  # (samples, tasks, units, copies)
    gradient = (utilities.view(-1, 1, 1, 1) * (onehot - probs)).mean(dim=0)
    updated = (probs + lr * gradient).clamp(min=p_min)
    return updated / updated.sum(dim=-1, keepdim=True)


LossesFn = Callable[
    [Sequence[torch.Tensor], torch.Tensor, torch.Tensor], list["torch.Tensor | None"]
]


def multitask_losses(
    logits: Sequence[torch.Tensor], labels: torch.Tensor, task_ids: torch.Tensor
) -> list[torch.Tensor | None]:
    """Mean cross-entropy per task over its samples; None for a task with no sample."""
    losses: list[torch.Tensor | None] = []
    for task, task_logits in enumerate(logits):
        rows = task_rows(task_ids, task)
        losses.append(F.cross_entropy(task_logits, labels[rows]) if rows.numel() else None)
    return losses


@torch.no_grad()
def assignment_step(
    model: LearnedSharingModel,
    clips: torch.Tensor,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    config: LWSConfig,
    generator: torch.Generator | None = None,
    total: int | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> torch.Tensor:
    """The NES step: updates `model.routing_probs` in place; returns the sampled losses.

    With several processes each holds part of the batch: `total` is the whole
    batch's size and `reduce` sums the per-assignment losses over processes,
    so every process ranks the same losses and takes the same step.
    """
    was_training = model.training
    model.eval()
    try:
        with autocast():
            shared = model.prefix(clips)
        assignments = sample_assignments(model.routing_probs, config.nes_samples, generator)
        # In eval mode every sample is scored on its own, so the per-task route tree
        # gives what one forward per assignment gives, whichever forward trains.
        tree = None
        if config.reuse_routes:
            with autocast():
                tree = routed_logits(model, shared, task_ids, assignments)
        losses = []
        for j, assignment in enumerate(assignments):
            if tree is not None:
                logits = tree[j]
            else:
                with autocast():
                    logits = model.forward_from_prefix(shared, task_ids, assignment)
            per_sample = [
                F.cross_entropy(out.float(), labels[task_rows(task_ids, t)], reduction="sum")
                for t, out in enumerate(logits)
            ]
            losses.append(torch.stack(per_sample).sum() / (total or clips.shape[0]))
        sampled = torch.stack(losses)
        if reduce is not None:
            sampled = reduce(sampled)
        model.routing_probs.copy_(
            nes_update(model.routing_probs, assignments, sampled, config.nes_lr, config.p_min)
        )
    finally:  # an error mid-step must not leave a training model in eval mode
        model.train(was_training)
    return sampled


def weight_step_gradients(
    model: LearnedSharingModel,
    clips: torch.Tensor,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    weighting: LossWeighting,
    config: LWSConfig,
    generator: torch.Generator | None = None,
    losses_fn: LossesFn = multitask_losses,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> WeightStep:
    """Accumulate the weight-step gradients (caller zeroes grads before, steps after).

    `weighting` turns per-task losses into the loss to backpropagate; its learned
    weights' gradients are normalised with the model's (give the optimiser its
    `parameter_groups`). It sees each assignment's losses in eval mode (no
    statistics), then records their mean over the assignments once.
    With `config.per_task_forward` (the reference's way) each task's samples
    run through the routed blocks as a batch of their own, so BatchNorm
    normalises each task over its own samples; otherwise the samples of all
    tasks routed to one copy share a batch. `losses_fn` turns logits into
    per-task losses (the trainer's scales by global sample counts across
    processes); `backward` lets the trainer scale the loss (fp16). With
    `config.reuse_routes` the assignments' graphs share their common routes and
    `backward` runs once, on the sum of their weighted losses.
    """
    model.train()
    with autocast():
        shared = model.prefix(clips)
    assignments = sample_assignments(model.routing_probs, config.sgd_samples, generator)
    totals: list[torch.Tensor] = []
    sums: list[torch.Tensor | None] = [None] * model.config.num_tasks
    weights: list[float] = []
    tree = None
    if config.reuse_routes and config.per_task_forward:
        with autocast():
            tree = routed_logits(model, shared, task_ids, assignments)
    pending: list[torch.Tensor] = []  # the tree's graphs share nodes: one backward of the sum
    was_training = weighting.training
    weighting.eval()
    try:
        for j, assignment in enumerate(assignments):
            if tree is not None:
                logits = tree[j]
            else:
                with autocast():
                    if config.per_task_forward:
                        logits = per_task_forward(model, shared, task_ids, assignment)
                    else:
                        logits = model.forward_from_prefix(shared, task_ids, assignment)
            losses = losses_fn(logits, labels, task_ids)
            out = weighting(losses)
            if tree is None:
                backward(out.total)
            else:
                pending.append(out.total)
            totals.append(out.total.detach())
            weights = out.weights
            sums = [_add(s, loss) for s, loss in zip(sums, losses)]
        if pending:
            backward(torch.stack(pending).sum())
    finally:
        weighting.train(was_training)
    weighting.record([None if s is None else s / config.sgd_samples for s in sums])
    normalise_gradients(model, config.sgd_samples, task_specific=weighting.parameters())
    return WeightStep(torch.stack(totals), weights)


def per_task_forward(
    model: LearnedSharingModel,
    shared: torch.Tensor,
    task_ids: torch.Tensor,
    assignment: torch.Tensor,
) -> list[torch.Tensor]:
    """Each task's samples through its routed copies as a forward of their own.

    Returns the same layout as `forward_from_prefix` (per task, its samples'
    logits in batch order; (0, C) for a task without samples), but BatchNorm
    in training mode sees one task's samples at a time: the reference's
    per-task statistics.
    """
    logits: list[torch.Tensor] = []
    for task, head in enumerate(model.heads):
        rows = task_rows(task_ids, task)
        if rows.numel() == 0:
            logits.append(shared.new_zeros((0, cast(nn.Linear, head).out_features)))
            continue
        out = model.forward_from_prefix(shared[rows], task_ids[rows], assignment)
        logits.append(out[task])
    return logits


def _add(running: torch.Tensor | None, loss: torch.Tensor | None) -> torch.Tensor | None:
    """Running sum of one task's detached losses over assignments (None: task absent)."""
    if loss is None:
        return running
    return loss.detach() if running is None else running + loss.detach()


def normalise_gradients(
    model: LearnedSharingModel, samples: int, task_specific: Iterable[nn.Parameter] = ()
) -> None:
    """Divide accumulated gradients by how often each parameter was expected to be used.

    `task_specific` are parameters outside the model used once per assignment
    (learned loss weights): like the heads, they are divided by `samples`.
    """
    usage = model.routing_probs.sum(dim=0) * samples  # (units, copies)
    routed: set[int] = set()
    for unit, copies in enumerate(model.units):
        for copy_index, module in enumerate(cast(nn.ModuleList, copies)):
            for param in module.parameters():
                routed.add(id(param))
                if param.grad is not None:
                    param.grad /= usage[unit, copy_index]
    heads = {id(p) for p in model.heads.parameters()}
    tasks = model.config.num_tasks
    for param in model.parameters():
        if param.grad is None or id(param) in routed:
            continue
        param.grad /= samples if id(param) in heads else tasks * samples
    for param in task_specific:
        if param.grad is not None:
            param.grad /= samples
