"""STL and HPS: one backbone, one linear head per task.

STL is the single-task baseline (one head); HPS (hard parameter sharing,
the paper's Fig. 1) shares the whole backbone and gives each task its own
head. Both compute the backbone once per clip, whatever the number of tasks.
"""

from __future__ import annotations

import torch
from torch import nn

from mtl_perception.models.base import MultiTaskModel, make_heads, split_backbone, task_rows
from mtl_perception.models.config import ModelConfig
from mtl_perception.models.stages import VideoBackbone


class SharedBackboneModel(MultiTaskModel):
    """Backbone shared by every task + one head per task (STL when there is one task)."""

    def __init__(self, config: ModelConfig, backbone: VideoBackbone) -> None:
        super().__init__(config)
        self.prefix, trainable = split_backbone(backbone, config.trainable_stages)
        self.stages = nn.Sequential(trainable)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.heads = make_heads(backbone.feature_dim, config.num_classes)
        self._add_gate(backbone.feature_dim)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.prefix(clips))).flatten(1)

    def forward(self, clips: torch.Tensor, task_ids: torch.Tensor) -> list[torch.Tensor]:
        self._check_task_ids(clips, task_ids)
        features = self.features(clips)
        return [head(features[task_rows(task_ids, t)]) for t, head in enumerate(self.heads)]

    def task_features(self, clips: torch.Tensor) -> list[torch.Tensor]:
        """Every head (and the gate) reads the one shared pooled feature tensor."""
        features = self.features(clips)
        return [features] * self.config.num_tasks
