"""Multi-task loss weighting: average, dwa, uncertainty, automatic (METHODS.md §3).

Each method is one small `LossWeighting` module behind one interface (as in
LibMTL), chosen by name with `build_weighting`. The caller computes each task's
loss L_i (mean cross-entropy over that task's samples in the batch) and passes
them in task order; a task with no sample in the batch is passed as `None`:

    weighting = build_weighting("dwa", num_tasks=2, config=WeightingConfig())
    out = weighting([loss_action, None])      # gesture absent this batch
    out.total.backward(); log(out.weights)    # weights == [lambda_0, nan]

Conventions shared by every method:
- An absent task contributes nothing that step: no loss term, no regulariser
  term, no DWA statistic. Its reported weight is NaN ("not applied"), not 0, so
  that logged weight curves show a gap rather than a fake drop to zero; use
  `nanmean` when averaging logged weights.
- At least one task must be present (a batch always holds a sample); a call
  with every task absent is a caller bug and raises, rather than returning a
  zero without a graph that would fail later at `backward()`.
- `weights` are the multipliers of L_i in `total` (for logging). Learned
  weights are reported as the value used in this step's forward pass.
- `unfed` tasks (fine-tuning: a checkpoint's task the set has no samples of,
  kept but not trained) are absent in every step and left out of the
  weighting altogether: average divides by the fed tasks' count, DWA's K and
  softmax run over the fed tasks only, a learned weight of an unfed task never
  moves. Without unfed tasks every method is exactly the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WeightingMethod = Literal["average", "dwa", "uncertainty", "automatic"]


@dataclass(frozen=True)
class WeightingConfig:
    """Settings of the loss weighting (YAML section `weighting`).

    `dwa_window` is the DWA averaging window in iterations. Default 100: the
    paper trains 20,000 iterations, so 100 gives 200 weight updates per run,
    the number MTAN makes (200 epochs, one update per epoch), and each window
    holds 800 samples (batch 8), enough that even a task drawn ~10% of the time
    has ~80 samples in its window mean, keeping the ratio's noise to a few per
    cent (T = 2 halves its effect on lambda again).
    `lr_multiplier` scales the learning rate of learned weights (uncertainty,
    automatic) relative to the model's; 1 is what the paper's setting (one Adam
    learning rate for everything) implies.
    """

    method: WeightingMethod = "average"
    dwa_temperature: float = 2.0
    dwa_window: int = 100
    lr_multiplier: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in get_args(WeightingMethod):
            raise ValueError(f"weighting.method {self.method!r} not in {get_args(WeightingMethod)}")
        if not self.dwa_temperature > 0:
            raise ValueError(f"weighting.dwa_temperature must be > 0, got {self.dwa_temperature}")
        if self.dwa_window < 1:
            raise ValueError(f"weighting.dwa_window must be >= 1, got {self.dwa_window}")
        if not self.lr_multiplier > 0:
            raise ValueError(f"weighting.lr_multiplier must be > 0, got {self.lr_multiplier}")


@dataclass(frozen=True)
class WeightedLoss:
    """The loss to backpropagate and the per-task weights used for it (NaN: absent task)."""

    total: Tensor
    weights: list[float]


class LossWeighting(nn.Module):
    """Base class: combines per-task losses into one scalar and reports the weights used."""

    name: str = ""

    def __init__(self, num_tasks: int, config: WeightingConfig,
                 unfed: Sequence[int] = ()) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = num_tasks
        self.config = config
        self.unfed = frozenset(unfed)
        self.fed = [i for i in range(num_tasks) if i not in self.unfed]
        if not self.fed or not self.unfed <= set(range(num_tasks)):
            raise ValueError(f"unfed tasks {sorted(self.unfed)} must be some, not all, of "
                             f"0..{num_tasks - 1}")

    def forward(self, task_losses: Sequence[Tensor | None]) -> WeightedLoss:
        """Weighted total of the present tasks' losses; see the module docstring."""
        raise NotImplementedError

    def record(self, task_losses: Sequence[Tensor | None]) -> None:
        """Update running statistics with one training step's losses (DWA's window means).

        `forward` calls it in training mode. A caller that evaluates several losses
        per step (LWS: one per sampled assignment) calls `forward` in eval mode and
        then this once, so that a DWA window stays `dwa_window` iterations long.
        No-op for methods without statistics and in eval mode.
        """

    def parameter_groups(self, base_lr: float | None = None) -> list[dict[str, Any]]:
        """Optimiser param groups for learned weights (none by default).

        Learned weights get their own group with weight decay 0: decay would
        pull log sigma^2 towards 0 (sigma = 1), a prior nobody asked for. With
        `base_lr` the group's lr is `base_lr * lr_multiplier`; without it the
        optimiser's default lr applies (so a multiplier other than 1 needs it).
        """
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        group: dict[str, Any] = {"params": params, "weight_decay": 0.0, "name": "loss_weighting"}
        if base_lr is not None:
            group["lr"] = base_lr * self.config.lr_multiplier
        elif self.config.lr_multiplier != 1.0:
            raise ValueError("parameter_groups: pass base_lr so that lr_multiplier can be applied")
        return [group]

    def _present(self, task_losses: Sequence[Tensor | None]) -> list[tuple[int, Tensor]]:
        """(task index, loss) of the present tasks, after checking the call."""
        if len(task_losses) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} task losses, got {len(task_losses)}")
        present = [(i, loss) for i, loss in enumerate(task_losses) if loss is not None]
        if any(i in self.unfed for i, _ in present):
            raise ValueError(f"a loss of an unfed task {sorted(self.unfed)}: it has no samples")
        if not present:
            raise ValueError("every task loss is None: a batch must hold at least one sample")
        for i, loss in present:
            if loss.dim() != 0:
                raise ValueError(f"task {i} loss must be a scalar, got shape {tuple(loss.shape)}")
        return present


class AverageWeighting(LossWeighting):
    """L = (1/N) sum_i L_i with N the number of (fed) tasks, also when a task is absent.

    N stays constant (absent tasks add 0), so each task's gradient scale does not
    double on the steps where the other task happens to have no sample.
    """

    name = "average"

    def forward(self, task_losses: Sequence[Tensor | None]) -> WeightedLoss:
        present = self._present(task_losses)
        weight = 1.0 / len(self.fed)
        total = sum(weight * loss for _, loss in present)
        weights = [weight if loss is not None else math.nan for loss in task_losses]
        return WeightedLoss(total, weights)  # type: ignore[arg-type]


class DWAWeighting(LossWeighting):
    """Dynamic Weight Average (Liu, Johns & Davison 2019; MTAN `utils.py`), by iteration windows.

    lambda_i(t) = K exp(w_i(t-1)/T) / sum_k exp(w_k(t-1)/T), w_i(t-1) = Lbar_i(t-1) / Lbar_i(t-2),
    where Lbar_i(t) is task i's mean loss over window t (`dwa_window` training
    iterations; MTAN's epochs), K the number of tasks, T the temperature. The
    first two windows use lambda = 1; lambda changes only at window boundaries.
    L = sum_i lambda_i L_i.

    Lbar_i(t) is the mean over the steps of window t in which task i was
    present. If task i had no sample in window t-1 or t-2 (or Lbar_i(t-2) is 0)
    its ratio is taken as 1: no evidence that its loss changed, so it gets the
    neutral weight rather than a guess. Statistics are only recorded in
    training mode, so a validation pass through this module changes nothing.
    All state is in float64 buffers, so `state_dict()` resumes exactly and
    stays safetensors-compatible.
    """

    name = "dwa"
    window_sum: Tensor
    window_count: Tensor
    window_step: Tensor
    windows_done: Tensor
    past_means: Tensor
    lambdas: Tensor

    def __init__(self, num_tasks: int, config: WeightingConfig,
                 unfed: Sequence[int] = ()) -> None:
        super().__init__(num_tasks, config, unfed)
        f64 = torch.float64
        self.register_buffer("window_sum", torch.zeros(num_tasks, dtype=f64))
        self.register_buffer("window_count", torch.zeros(num_tasks, dtype=torch.int64))
        self.register_buffer("window_step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("windows_done", torch.zeros((), dtype=torch.int64))
        # row 0: Lbar(t-2), row 1: Lbar(t-1); NaN until that window exists.
        self.register_buffer("past_means", torch.full((2, num_tasks), math.nan, dtype=f64))
        self.register_buffer("lambdas", torch.ones(num_tasks, dtype=f64))

    def forward(self, task_losses: Sequence[Tensor | None]) -> WeightedLoss:
        present = self._present(task_losses)
        lambdas = self.lambdas.tolist()
        total = sum(lambdas[i] * loss for i, loss in present)
        weights = [lambdas[i] if x is not None else math.nan for i, x in enumerate(task_losses)]
        self.record(task_losses)
        return WeightedLoss(total, weights)

    def record(self, task_losses: Sequence[Tensor | None]) -> None:
        if self.training:
            self._record(self._present(task_losses))

    @torch.no_grad()
    def _record(self, present: list[tuple[int, Tensor]]) -> None:
        """Add this step's losses to the window; close the window when it is full."""
        for i, loss in present:
            self.window_sum[i] += loss.detach().to(self.window_sum)
            self.window_count[i] += 1
        self.window_step += 1
        if int(self.window_step) >= self.config.dwa_window:
            self._close_window()

    @torch.no_grad()
    def _close_window(self) -> None:
        """Shift the window means into history and set lambda for the next window."""
        count = self.window_count.to(self.window_sum)
        mean = torch.where(count > 0, self.window_sum / count.clamp_min(1), math.nan)
        self.past_means.copy_(torch.stack([self.past_means[1], mean]))
        self.windows_done += 1
        self.window_sum.zero_()
        self.window_count.zero_()
        self.window_step.zero_()
        if int(self.windows_done) >= 2:
            fed = self.fed
            ratio = self.past_means[1, fed] / self.past_means[0, fed]
            ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
            temperature = self.config.dwa_temperature
            self.lambdas[fed] = len(fed) * torch.softmax(ratio / temperature, dim=0)


class _LearnedVarianceWeighting(LossWeighting):
    """Shared part of uncertainty and automatic: one learned s_i = log sigma_i^2 per task.

    L = sum_i 0.5 exp(-s_i) L_i + r(s_i) over present tasks; the subclasses set
    the regulariser r. Learning log sigma^2 keeps sigma^2 = exp(s) positive; s
    starts at 0 (sigma = 1). An absent task's s_i gets no gradient that step
    (an optimiser with momentum may still move it a little).
    """

    def __init__(self, num_tasks: int, config: WeightingConfig,
                 unfed: Sequence[int] = ()) -> None:
        super().__init__(num_tasks, config, unfed)
        self.log_var = nn.Parameter(torch.zeros(num_tasks))

    def regulariser(self, log_var: Tensor) -> Tensor:
        """r(s_i) for one task."""
        raise NotImplementedError

    def forward(self, task_losses: Sequence[Tensor | None]) -> WeightedLoss:
        present = self._present(task_losses)
        precision = 0.5 * torch.exp(-self.log_var)  # 1 / (2 sigma^2)
        total = sum(precision[i] * loss + self.regulariser(self.log_var[i]) for i, loss in present)
        used = precision.detach().tolist()
        weights = [used[i] if loss is not None else math.nan for i, loss in enumerate(task_losses)]
        return WeightedLoss(total, weights)  # type: ignore[arg-type]


class UncertaintyWeighting(_LearnedVarianceWeighting):
    """Kendall, Gal & Cipolla 2018: L = sum_i 0.5 exp(-s_i) L_i + 0.5 s_i.

    The total can go negative (s_i < 0 once L_i < 1; its minimum over s_i is
    0.5 + 0.5 ln L_i, negative for L_i < 1/e): expected, not a bug.
    """

    name = "uncertainty"

    def regulariser(self, log_var: Tensor) -> Tensor:
        return 0.5 * log_var


class AutomaticWeighting(_LearnedVarianceWeighting):
    """Liebel & Koerner 2018 (the paper's "automatic").

    L = sum_i L_i / (2 sigma_i^2) + ln(1 + sigma_i^2), sigma_i = 1 at the start.

    ln(1 + sigma^2) = softplus(s) with s = log sigma^2, computed stably so the
    loss stays finite even where exp(s) would overflow. Always >= 0 for L_i >= 0.
    """

    name = "automatic"

    def regulariser(self, log_var: Tensor) -> Tensor:
        return F.softplus(log_var)


WEIGHTINGS: dict[str, type[LossWeighting]] = {
    cls.name: cls
    for cls in (AverageWeighting, DWAWeighting, UncertaintyWeighting, AutomaticWeighting)
}


def build_weighting(
    name: str, num_tasks: int, config: WeightingConfig | None = None,
    unfed: Sequence[int] = (),
) -> LossWeighting:
    """The weighting method `name` for `num_tasks` tasks (`unfed`: see the module docstring).

    `name` decides the method (the experiment grid passes it explicitly);
    `config.method` is only what a YAML file asks for, the usual `name`.
    """
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {name!r}; valid: {sorted(WEIGHTINGS)}")
    return WEIGHTINGS[name](num_tasks, config if config is not None else WeightingConfig(),
                            unfed)
