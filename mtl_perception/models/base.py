"""The interface every model shares, and the frozen prefix they all build on."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from mtl_perception.models.config import ModelConfig
from mtl_perception.models.gate import TaskGate, gate_input
from mtl_perception.models.stages import STAGE_NAMES, VideoBackbone


class FrozenPrefix(nn.Module):
    """The leading backbone stages that never train (paper: stem, layer1, layer2).

    Parameters are frozen, BatchNorm stays in eval mode whatever `train()` says,
    and the forward runs without autograd, so no activations are kept for a
    backward pass that would never reach them. Multi-column models (SPS, LWS)
    compute it once per batch and feed every column from it.
    """

    def __init__(self, stages: OrderedDict[str, nn.Module]) -> None:
        super().__init__()
        self.stages = nn.Sequential(stages)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenPrefix:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.stages(x)


def split_backbone(
    backbone: VideoBackbone, trainable_stages: int
) -> tuple[FrozenPrefix, OrderedDict[str, nn.Module]]:
    """Cut a backbone into its frozen prefix and its trainable trailing stages."""
    cut = len(STAGE_NAMES) - trainable_stages
    frozen = OrderedDict((name, backbone.stage(name)) for name in STAGE_NAMES[:cut])
    trainable = OrderedDict((name, backbone.stage(name)) for name in STAGE_NAMES[cut:])
    return FrozenPrefix(frozen), trainable


def task_rows(task_ids: torch.Tensor, task: int) -> torch.Tensor:
    """Indices of the samples of one task, in batch order."""
    return (task_ids == task).nonzero(as_tuple=True)[0]


class MultiTaskModel(nn.Module):
    """One interface for STL, HPS, SPS and LWS.

    - `forward(clips, task_ids)`: a mixed-task batch (N, 3, T, H, W) with one
      task id per sample; returns, per task, the logits of that task's samples
      in batch order (an empty (0, C) tensor for a task with no sample).
    - `score_all(clips)`: every clip scored by every task, (N, C_t) per task:
      what the live node and bag evaluation use; with a task gate
      (`config.gate`), one more final element, the gate logits
      (N, num_tasks + 1) (GATE_CONTRACT.md), or, for a gate with memory
      (`config.gate_context` = k > 0), each clip's shares of the logits
      (N, k + 1, num_tasks + 1) that the stream adds up (`TaskGate.parts`).
    - `task_features(clips)`: per task, the pooled features its head reads, for
      every clip (what `score_all` and the gate are built on).
    - `forward_gated(clips, task_ids)`: training with the gate (HPS, SPS).
    - `parameter_groups(lr)`: optimiser groups (e.g. cross-stitch units with
      their own learning-rate multiplier).
    """

    config: ModelConfig
    heads: nn.ModuleList
    gate: nn.Module | None

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.gate = None

    def _add_gate(self, feature_dim: int) -> None:
        """Build the gate last, so a model without one draws the same initial weights."""
        if self.config.gate:
            self.gate = TaskGate(feature_dim, self.config.num_tasks, self.config.gate_hidden,
                                 self.config.gate_context)

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.config.task_names

    def forward(self, clips: torch.Tensor, task_ids: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def task_features(self, clips: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        return self.score_features(self.task_features(clips))

    def score_features(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """`score_all` from `task_features`' output: what a stream that pools the features
        itself (frame reuse, `stream/frame_reuse.py`) scores with."""
        scores = [head(f) for head, f in zip(self.heads, features, strict=True)]
        if isinstance(self.gate, TaskGate):
            pooled = gate_input(features)
            scores.append(self.gate.parts(pooled) if self.gate.context else self.gate(pooled))
        return scores

    def gate_features(self, clips: torch.Tensor) -> torch.Tensor:
        """The features the gate reads (fit-gate extracts them once from a frozen model)."""
        return gate_input(self.task_features(clips))

    def forward_gated(
        self, clips: torch.Tensor, task_ids: torch.Tensor, detach: bool = False
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Joint training with the gate: `forward`'s per-task logits, plus gate logits for
        every clip. A task id of `num_tasks` marks a `none` clip (no head reads it).
        `detach`: the gate's gradient stops at the features (the backbone does not see it).
        """
        if self.gate is None:
            raise ValueError("forward_gated needs a model with a task gate (config.gate)")
        self._check_task_ids(clips, task_ids, allow_none=True)
        features = self.task_features(clips)
        logits = [head(f[task_rows(task_ids, t)])
                  for t, (head, f) in enumerate(zip(self.heads, features, strict=True))]
        pooled = gate_input(features)
        return logits, self.gate(pooled.detach() if detach else pooled)

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "name": "model"}]

    def _check_task_ids(
        self, clips: torch.Tensor, task_ids: torch.Tensor, allow_none: bool = False
    ) -> None:
        if task_ids.shape != (clips.shape[0],):
            raise ValueError(
                f"expected one task id per clip: {clips.shape[0]} clips, "
                f"task_ids shaped {tuple(task_ids.shape)}"
            )
        top = self.config.num_tasks if allow_none else self.config.num_tasks - 1
        if task_ids.numel() and (task_ids.min() < 0 or task_ids.max() > top):
            raise ValueError(f"task ids must be in 0..{top}")


def make_heads(feature_dim: int, num_classes: tuple[int, ...]) -> nn.ModuleList:
    """One linear classifier per task, initialised like torchvision's `fc`."""
    heads = [nn.Linear(feature_dim, c) for c in num_classes]
    for head in heads:
        nn.init.normal_(head.weight, 0, 0.01)
        nn.init.zeros_(head.bias)
    return nn.ModuleList(heads)
