"""Joint training of the task gate (beyond the paper; `gate:` settings, off by default).

The gate's label is free: a clip's task id (which dataset it came from), or
`num_tasks` for a `none` clip (an unlabelled stretch of an untrimmed video, a
background video). Its loss is the cross-entropy over every clip of the batch,
added to the weighted task loss times `gate.loss_weight`.

- STL/HPS/SPS: one forward gives the task logits (each task's rows) and the
  gate logits (every row): `GatedForward`, which DistributedDataParallel wraps
  as it wraps the model otherwise. `none` clips feed no task head; they do pass
  through the backbone (in training mode, so they count in its BatchNorm
  statistics, as a robot's camera frames will).
- LWS: the assignment and weight steps see only the task rows, exactly as
  without the gate (their gradient normalisation included); the gate then
  learns on the argmax routes' pooled features of every row (what it reads at
  inference), in one more forward. With `detach` that forward runs without
  gradient and in eval mode; without, its gradient also reaches the argmax
  copies (added after the weight step's normalisation, like one more route).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.models.base import MultiTaskModel


class GatedForward(nn.Module):
    """`model.forward_gated` as a module's forward, for DistributedDataParallel."""

    def __init__(self, model: MultiTaskModel, detach: bool) -> None:
        super().__init__()
        self.model, self.detach = model, detach

    def forward(self, clips: torch.Tensor, task_ids: torch.Tensor
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.model.forward_gated(clips, task_ids, self.detach)


def gate_loss(gate_logits: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the gate over the rows; the label is the task id (or none)."""
    return F.cross_entropy(gate_logits.float(), task_ids)


def argmax_route_gate_loss(model: MultiTaskModel, clips: torch.Tensor, task_ids: torch.Tensor,
                           detach: bool) -> torch.Tensor:
    """The gate's loss on the features `score_all` reads (LWS; see the module docstring)."""
    if model.gate is None:
        raise ValueError("the model has no task gate")
    if not detach:
        return gate_loss(model.gate(model.gate_features(clips)), task_ids)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        features = model.gate_features(clips)
    model.train(was_training)
    return gate_loss(model.gate(features), task_ids)
