"""The task gate: `action | gesture | ... | none` from the pooled features the heads read.

Beyond the paper (its section 6 names a task-agnostic model as future work):
the live node is never told which task a clip belongs to, and most of the
time a person does none of them. The gate is a small head on the pooled
features every model already computes for its task heads, so it costs no
extra backbone work (a few thousand multiply-adds against the backbone's
billions). Classes are `(*task_names, "none")`: index i < num_tasks means
task i, the last index means "none" (GATE_CONTRACT.md).

Which features it reads (`gate_input`):
- HPS: the shared pooled features (the one tensor every head reads);
- SPS: the mean of the task columns' pooled features (each column's head
  reads its own column; the gate weighs them all alike, so it favours no task);
- LWS: the mean of the pooled features of every task's argmax route (what
  `score_all` computes anyway; for a route several tasks share it is one tensor);
- STL: no gate (one task, one model per task: nothing to choose between).

The head standardises its input with a BatchNorm without affine parameters
(running mean and variance: learnt in joint training, set from the data by
`fit-gate`), so one learning rate suits any feature scale, then a linear
layer, optionally behind one hidden ReLU layer (`ModelConfig.gate_hidden`).
"""

from __future__ import annotations

import torch
from torch import nn


class TaskGate(nn.Module):
    """(N, feature_dim) pooled features -> (N, num_tasks + 1) gate logits."""

    def __init__(self, feature_dim: int, num_tasks: int, hidden: int = 0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(feature_dim, affine=False)
        layers: list[nn.Module] = []
        width = feature_dim
        if hidden > 0:
            layers += [nn.Linear(feature_dim, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_tasks + 1))
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(features))

    def set_input_statistics(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Standardise with these statistics (fit-gate: measured on the training features)."""
        running_mean, running_var = self.norm.running_mean, self.norm.running_var
        assert running_mean is not None and running_var is not None  # track_running_stats
        with torch.no_grad():
            running_mean.copy_(mean)
            running_var.copy_(var)


def gate_input(features: list[torch.Tensor]) -> torch.Tensor:
    """The gate's input from the per-task pooled features (see the module docstring).

    When every task reads the same tensor (HPS; LWS tasks on one route) it is
    that tensor itself, not a mean of copies.
    """
    first = features[0]
    if all(f is first for f in features):
        return first
    return torch.stack(features).mean(dim=0)


def gate_classes(task_names: tuple[str, ...]) -> tuple[str, ...]:
    """The gate's class names: the tasks, then `none`."""
    return (*task_names, "none")
