"""A checkpoint task the fine-tuning set does not feed: kept with its old weights.

Such a task has no training sample, so no loss of its own: left alone, its
own weights would still move (an SPS column trains through the cross-stitch
units for the other tasks; LWS's evolution strategy moves every task's
routing, also one that no loss depends on; BatchNorm's running statistics
follow every batch). What belongs to the task alone is therefore held fixed,
bitwise:

- every method: its head (frozen: no gradient, no optimiser step);
- SPS: its column (frozen, and its BatchNorm statistics restored after each
  step) and its row of every cross-stitch unit (restored after each step:
  one parameter holds every task's rows);
- LWS: its routing probabilities (restored after each step).

What the task shares with the trained tasks still trains, so its scores
may drift: HPS's shared backbone; in SPS the other columns, which reach its
column through the cross-stitch units; in LWS the blocks its routes pass
through where the trained tasks' routes pass through them too. `replay:
init` (the checkpoint's own training set) keeps such a task trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtl_perception.models import MultiTaskModel
from mtl_perception.models.cross_stitch import CrossStitchModel, CrossStitchUnit
from mtl_perception.models.lws import LearnedSharingModel


class KeptTasks:
    """Holds the own weights of `tasks` (task ids) fixed; see the module docstring.

    Build it before the optimiser (it freezes whole tensors, which the
    parameter groups then leave out), call `snapshot()` once the run's weights
    are final (after `init:` or a resumed state) and `restore()` after every
    optimiser step.
    """

    def __init__(self, model: MultiTaskModel, tasks: Sequence[int]) -> None:
        self.tasks = tuple(tasks)
        # (tensor, row or None for the whole tensor)
        self.tensors: list[tuple[torch.Tensor, int | None]] = []
        self.saved: list[torch.Tensor] = []
        heads = model.heads
        assert isinstance(heads, nn.ModuleList)  # every method's heads (models/base.py)
        for task in self.tasks:
            self._whole(heads[task])
            if isinstance(model, CrossStitchModel):
                self._whole(model.columns[task])
                for stitch in model.stitches:
                    assert isinstance(stitch, CrossStitchUnit)
                    self.tensors.append((stitch.weight, task))
            if isinstance(model, LearnedSharingModel):
                self.tensors.append((model.routing_probs, task))

    def _whole(self, module: nn.Module) -> None:
        for param in module.parameters():
            param.requires_grad_(False)
            self.tensors.append((param, None))
        self.tensors += [(buffer, None) for buffer in module.buffers()]

    def snapshot(self) -> None:
        with torch.no_grad():
            self.saved = [(t if row is None else t[row]).detach().clone()
                          for t, row in self.tensors]

    @torch.no_grad()
    def restore(self) -> None:
        for (tensor, row), saved in zip(self.tensors, self.saved, strict=True):
            (tensor if row is None else tensor[row]).copy_(saved)
