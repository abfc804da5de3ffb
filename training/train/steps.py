"""One training iteration of each method: STL/HPS/SPS (one forward) and LWS (NES + weights).

Per-task losses are scaled by the *global* batch's per-task sample counts
(known to every process: the sampler draws the whole batch everywhere), so
that with several processes the summed gradients equal a single process's
on the same global batch; their values are summed over processes, so every
process sees (and records, for DWA) the same per-task losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.models.base import MultiTaskModel, task_rows
from mtl_perception.models.lws import LearnedSharingModel
from training.methods.lws import LWSConfig, assignment_step, weight_step_gradients
from training.methods.weighting import LossWeighting
from training.train.distributed import DistContext, allreduce_gradients, allreduce_sum
from training.train.gate import GatedForward, argmax_route_gate_loss, gate_loss

Autocast = Callable[[], AbstractContextManager[Any]]


@dataclass
class Batch:
    """This process's part of one global batch, plus the global per-task counts."""

    clips: torch.Tensor
    labels: torch.Tensor
    task_ids: torch.Tensor
    counts: list[int]  # samples per task in the global batch

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass
class StepResult:
    """What one iteration did, as plain numbers (identical on every process)."""

    loss: float
    task_losses: list[float]  # NaN: task absent from the batch
    weights: list[float]
    lws_probs: torch.Tensor | None = None
    gate_loss: float | None = None  # the task gate's cross-entropy (None without a gate)


def global_task_losses(
    logits: Sequence[torch.Tensor], labels: torch.Tensor, task_ids: torch.Tensor,
    counts: Sequence[int], ctx: DistContext, grad_scale: float = 1.0,
) -> list[torch.Tensor | None]:
    """Per task: sum of this process's cross-entropies / the global count of the task.

    In one process that is the task's mean cross-entropy. With several, the
    value is replaced by the sum over processes while the gradient stays this
    process's share (times `grad_scale`: DistributedDataParallel averages
    gradients, so it passes the number of processes); summing gradients over
    processes then gives the gradient of the global mean. Learned loss weights
    see only the (global) values, so theirs is the same on every process.
    None for a task absent from the global batch.
    """
    pieces: list[torch.Tensor | None] = []
    for task, task_logits in enumerate(logits):
        if counts[task] == 0:
            pieces.append(None)
            continue
        rows = task_rows(task_ids, task)
        if rows.numel() == 0:  # absent here, present on another process
            pieces.append(task_logits.float().sum() * 0.0)
            continue
        ce = F.cross_entropy(task_logits.float(), labels[rows], reduction="sum")
        pieces.append(ce / counts[task])
    if not ctx.distributed:
        return pieces
    values = torch.stack([
        p.detach() if p is not None else torch.zeros((), device=labels.device) for p in pieces
    ])
    summed = allreduce_sum(values, ctx)
    return [None if p is None else grad_scale * p + (summed[i] - grad_scale * p.detach())
            for i, p in enumerate(pieces)]


class Stepper:
    """Runs iterations of one method; holds what every step needs."""

    def __init__(self, model: MultiTaskModel, weighting: LossWeighting,
                 optimizer: torch.optim.Optimizer, ctx: DistContext, autocast: Autocast,
                 scaler: torch.amp.GradScaler, lws: LWSConfig,
                 gate: tuple[float, bool] | None = None) -> None:
        """`gate`: (loss weight, detach) to train the model's task gate jointly
        (training/train/gate.py); None trains exactly as without a gate."""
        self.model, self.weighting, self.optimizer = model, weighting, optimizer
        self.ctx, self.autocast, self.scaler, self.lws = ctx, autocast, scaler, lws
        self.gate = gate
        self.params = [p for p in model.parameters() if p.requires_grad]
        forward: nn.Module = model
        if gate is not None and not isinstance(model, LearnedSharingModel):
            forward = GatedForward(model, gate[1])
        self.forward = forward
        # One forward + one backward per step (STL, HPS, SPS): DistributedDataParallel,
        # which overlaps the gradient all-reduce with the backward pass. LWS runs
        # 2 x lambda forwards per step through routed copies, which DDP's reducer
        # cannot follow: its gradients are summed by one explicit all-reduce.
        self.ddp: nn.Module | None = None
        if ctx.distributed and not isinstance(model, LearnedSharingModel):
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(forward, device_ids=device_ids,
                                               broadcast_buffers=True)

    def losses_fn(self, counts: Sequence[int], grad_scale: float = 1.0
                  ) -> Callable[..., list[torch.Tensor | None]]:
        def fn(logits: Sequence[torch.Tensor], labels: torch.Tensor, task_ids: torch.Tensor
               ) -> list[torch.Tensor | None]:
            return global_task_losses(logits, labels, task_ids, counts, self.ctx, grad_scale)
        return fn

    def step(self, batch: Batch, generator: torch.Generator,
             nes_batch: Batch | None = None) -> StepResult:
        self.model.train()
        self.weighting.train()
        self.optimizer.zero_grad(set_to_none=True)
        if isinstance(self.model, LearnedSharingModel) and self.gate is not None:
            result = self._lws_gated(batch, nes_batch or batch, generator)
        elif isinstance(self.model, LearnedSharingModel):
            result = self._lws(batch, nes_batch or batch, generator)
        else:
            result = self._single(batch)
        if self.ddp is None:
            allreduce_gradients(self.params, self.ctx)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return result

    def _backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def _single(self, batch: Batch) -> StepResult:
        gate_term: torch.Tensor | None = None
        with self.autocast():
            if self.gate is None:
                logits = (self.ddp or self.model)(batch.clips, batch.task_ids)
            else:
                logits, gate_logits = (self.ddp or self.forward)(batch.clips, batch.task_ids)
                gate_term = gate_loss(gate_logits, batch.task_ids)
        # DDP averages gradients over processes: scale this process's share up.
        scale = float(self.ctx.world_size) if self.ddp is not None else 1.0
        losses = self.losses_fn(batch.counts, scale)(logits, batch.labels, batch.task_ids)
        out = self.weighting(losses)  # records DWA statistics in training mode
        total = out.total
        if self.ddp is not None:
            # A head whose task is absent from the whole batch joins with a zero
            # term: DDP needs every parameter in every step's graph.
            for task_logits, count in zip(logits, batch.counts):
                if count == 0:
                    total = total + task_logits.float().sum() * 0.0
        if gate_term is None:
            self._backward(total)
            return StepResult(float(out.total.detach()), _values(losses), out.weights)
        assert self.gate is not None
        self._backward(total + self.gate[0] * gate_term)
        return StepResult(float(out.total.detach()), _values(losses), out.weights,
                          gate_loss=float(gate_term.detach()))

    def _lws_gated(self, batch: Batch, nes: Batch, generator: torch.Generator) -> StepResult:
        """LWS's two steps on the task rows, then the gate on the argmax routes' features."""
        assert self.gate is not None
        tasks = self.model.config.num_tasks
        result = self._lws(_task_rows_only(batch, tasks), _task_rows_only(nes, tasks), generator)
        with self.autocast():
            term = argmax_route_gate_loss(self.model, batch.clips, batch.task_ids, self.gate[1])
        self._backward(self.gate[0] * term)
        result.gate_loss = float(term.detach())
        return result

    def _lws(self, batch: Batch, nes: Batch, generator: torch.Generator) -> StepResult:
        model = self.model
        assert isinstance(model, LearnedSharingModel)
        assignment_step(
            model, nes.clips, nes.labels, nes.task_ids, self.lws, generator,
            total=nes.total, reduce=lambda t: allreduce_sum(t, self.ctx), autocast=self.autocast,
        )
        recorded: list[list[torch.Tensor | None]] = []
        base_fn = self.losses_fn(batch.counts)

        def losses_fn(logits: Sequence[torch.Tensor], labels: torch.Tensor,
                      task_ids: torch.Tensor) -> list[torch.Tensor | None]:
            losses = base_fn(logits, labels, task_ids)
            recorded.append(losses)
            return losses

        out = weight_step_gradients(
            model, batch.clips, batch.labels, batch.task_ids, self.weighting, self.lws,
            generator, losses_fn=losses_fn, backward=self._backward, autocast=self.autocast,
        )
        per_task = [_mean([_value(r[t]) for r in recorded]) for t in range(len(batch.counts))]
        return StepResult(float(out.totals.mean()), per_task, out.weights,
                          model.routing_probs.detach().cpu().clone())


def _task_rows_only(batch: Batch, num_tasks: int) -> Batch:
    """The batch without its `none` rows (task id `num_tasks`) and their count."""
    keep = batch.task_ids < num_tasks
    return Batch(batch.clips[keep], batch.labels[keep], batch.task_ids[keep],
                 list(batch.counts[:num_tasks]))


def _value(loss: torch.Tensor | None) -> float:
    return math.nan if loss is None else float(loss.detach())


def _values(losses: Sequence[torch.Tensor | None]) -> list[float]:
    return [_value(loss) for loss in losses]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values and not math.isnan(values[0]) else math.nan


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
