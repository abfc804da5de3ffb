"""The learning rate along the run: `lr_schedule` and `warmup_iterations` (TrainConfig).

- `constant`: `lr` at every iteration (the paper's Adam at 1e-3; the default).
- `cosine`: after the warm-up, `lr` decays along half a cosine to 0 at the
  last iteration: `lr * (1 + cos(pi * k / K)) / 2` for step k of the K steps
  after the warm-up. A short from-scratch run (the CPU demo) ends on small
  steps instead of the noise of a constant rate (docs/demo-model.md measures it).
- `warmup_iterations`: the first W steps ramp linearly, `lr * (i + 1) / W`
  for step i (0-based), so the first step is not taken at the full rate.

The factor is a pure function of the step's index (and the run's length), so
a resumed run takes exactly the rates of the uninterrupted one: nothing about
the schedule is stored beyond the iteration count. Every parameter group keeps
its own base rate (SPS's cross-stitch multiplier, learned loss weights) and
is scaled by the same factor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

LrSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def lr_factor(iteration: int, iterations: int, schedule: LrSchedule, warmup: int = 0) -> float:
    """The multiplier of the base rate for step `iteration` (0-based) of `iterations`."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
    if not 0 <= iteration < iterations:
        raise ValueError(f"iteration {iteration} outside the run's 0..{iterations - 1}")
    if iteration < warmup:
        return (iteration + 1) / warmup
    if schedule == "constant":
        return 1.0
    decay = iterations - warmup
    return 0.5 * (1.0 + math.cos(math.pi * (iteration - warmup) / decay))


class LrScheduler:
    """Sets every parameter group's rate for the coming step (call before each step)."""

    def __init__(self, optimizer: torch.optim.Optimizer, iterations: int,
                 schedule: LrSchedule = "constant", warmup: int = 0) -> None:
        self.optimizer, self.iterations = optimizer, iterations
        self.schedule, self.warmup = schedule, warmup
        # Read before a resumed optimizer state replaces the groups' current rates.
        self.base: Sequence[float] = [float(g["lr"]) for g in optimizer.param_groups]

    @property
    def active(self) -> bool:
        return self.schedule != "constant" or self.warmup > 0

    def set(self, iteration: int) -> float:
        """Apply step `iteration`'s rates; returns the factor."""
        factor = lr_factor(iteration, self.iterations, self.schedule, self.warmup)
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor
        return factor
