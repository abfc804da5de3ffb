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

Memory (`ModelConfig.gate_context` = k > 0, set by `fit-gate --context`): the
gate also reads the stream's previous k clips. Each clip is embedded alone
(standardised, then the hidden ReLU layer, when there is one), and the last
linear layer reads the k + 1 embeddings side by side, newest first. Because
that layer is linear, each clip's share of the logits of the clip j steps
later is a function of that clip alone: `parts` computes all k + 1 shares
for one clip, which is what the model's forward outputs (`score_all`'s last
element, shaped (N, k + 1, tasks + 1)). The stream adds the shares of the
last k + 1 clips (`mtl_perception.stream.gate_memory`), so an exported graph
still takes one clip and no state, and every engine stays exact. Off by
default: offline refits had measured a gain on one set's sessions, but on
the bench's held-out bag the gate with memory did not beat the one-clip gate
(docs/gate.md, bench/results/gate.md item 9).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import nn

Scored = TypeVar("Scored", torch.Tensor, np.ndarray)


class TaskGate(nn.Module):
    """(N, feature_dim) pooled features -> (N, num_tasks + 1) gate logits.

    With `context` k > 0, `window_logits` scores clips with their k previous ones and
    `parts` gives one clip's shares of the logits (module docstring); `forward`
    then scores each clip as if the k clips before it were the same clip (what
    the stream does at its first clip).
    """

    def __init__(self, feature_dim: int, num_tasks: int, hidden: int = 0,
                 context: int = 0) -> None:
        super().__init__()
        self.context = context
        self.norm = nn.BatchNorm1d(feature_dim, affine=False)
        layers: list[nn.Module] = []
        width = feature_dim
        if hidden > 0:
            layers += [nn.Linear(feature_dim, hidden), nn.ReLU()]
            width = hidden
        self.embedding_width = width
        layers.append(nn.Linear(width * (context + 1), num_tasks + 1))
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.context == 0:
            return self.classifier(self.norm(features))
        return self.parts(features).sum(dim=1)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, E): one clip's embedding (standardised, hidden layer if any)."""
        x = self.norm(features)
        for layer in list(self.classifier)[:-1]:
            x = layer(x)
        return x

    def parts(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, k + 1, C): [:, j] is each clip's share of the logits of the clip
        j steps later in its stream; the bias is in the share j = 0."""
        last = self.last_layer
        embedded = self.embed(features)
        width = self.embedding_width
        # lag j's share: the columns of the last layer that read the clip j steps back
        # (one small product per lag, stacked: an exported graph keeps every output dim)
        shares = torch.stack([embedded @ last.weight[:, j * width:(j + 1) * width].T
                              for j in range(self.context + 1)], dim=1)
        bias = torch.cat([last.bias[None], last.bias.new_zeros(self.context, len(last.bias))])
        return shares + bias

    def window_logits(self, features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(R, D) clips' features and (M, k + 1) windows of rows of them (a clip, then the
        clips 1..k steps before it) -> (M, C) logits of each window's clip read with the
        clips before it: what fit-gate trains on; equal to adding up `parts`."""
        if rows.dim() != 2 or rows.shape[1] != self.context + 1:
            raise ValueError(f"a gate reading {self.context} previous clips takes windows "
                             f"of {self.context + 1} clips, got {list(rows.shape)}")
        embedded = self.embed(features)[rows]  # (M, k + 1, E): each clip embedded once
        return self.last_layer(embedded.reshape(len(rows), -1))

    @property
    def last_layer(self) -> nn.Linear:
        """The linear layer that gives the logits (reads k + 1 clips' embeddings)."""
        last = self.classifier[-1]
        assert isinstance(last, nn.Linear)
        return last

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


def alone(gate_output: Scored) -> Scored:
    """The gate's logits of each clip alone from `score_all`'s last output (a tensor, or an
    engine's array): a gate with memory's shares (N, k + 1, C) summed (as if the clips
    before it were the same clip), any other gate's logits as they are. For trimmed clips,
    which have no stream."""
    return gate_output.sum(1) if gate_output.ndim == 3 else gate_output


def gate_output_shape(num_tasks: int, context: int) -> tuple[int, ...]:
    """The gate output's shape after the batch: (tasks + 1,) logits, or a gate with
    memory's (k + 1, tasks + 1) shares."""
    return (num_tasks + 1,) if context == 0 else (context + 1, num_tasks + 1)


def gate_classes(task_names: tuple[str, ...]) -> tuple[str, ...]:
    """The gate's class names: the tasks, then `none`."""
    return (*task_names, "none")
