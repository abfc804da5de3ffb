"""SPS: soft parameter sharing with cross-stitch units (Misra et al., CVPR 2016).

One column per task for the trainable stages; after each trainable stage a
cross-stitch unit mixes the columns' activations per channel:
`x_t' = sum_u a[t, u, c] x_u`. The frozen prefix is identical for every column
(same pretrained weights, never updated), so it is computed once and fed to
all of them: the same function as K full backbones at a fraction of the cost.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn

from mtl_perception.models.base import MultiTaskModel, make_heads, split_backbone, task_rows
from mtl_perception.models.config import ModelConfig
from mtl_perception.models.stages import VideoBackbone


class CrossStitchUnit(nn.Module):
    """Per-channel linear mixing of K task columns.

    Initialised from the paper's share s: own task 1 - s, each other task
    s / (K - 1) (for two tasks: [[1 - s, s], [s, 1 - s]] per channel).
    """

    def __init__(self, num_tasks: int, channels: int, share: float) -> None:
        super().__init__()
        cross = share / (num_tasks - 1)
        init = torch.full((num_tasks, num_tasks, channels), cross)
        init[range(num_tasks), range(num_tasks)] = 1.0 - share
        self.weight = nn.Parameter(init)

    def forward(self, columns: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = []
        for t in range(len(columns)):
            out = self.weight[t, 0].view(1, -1, 1, 1, 1) * columns[0]
            for u in range(1, len(columns)):
                out = out + self.weight[t, u].view(1, -1, 1, 1, 1) * columns[u]
            mixed.append(out)
        return mixed


class CrossStitchModel(MultiTaskModel):
    """SPS: K columns over the trainable stages, cross-stitched after each stage."""

    def __init__(self, config: ModelConfig, backbone: VideoBackbone) -> None:
        super().__init__(config)
        self.prefix, trainable = split_backbone(backbone, config.trainable_stages)
        k = config.num_tasks
        self.columns = nn.ModuleList(nn.Sequential(copy.deepcopy(trainable)) for _ in range(k))
        channels = backbone.channels
        self.stitches = nn.ModuleList(
            CrossStitchUnit(k, channels[name], config.cross_stitch_share) for name in trainable
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.heads = make_heads(backbone.feature_dim, config.num_classes)
        self._add_gate(backbone.feature_dim)

    def column_features(self, clips: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features of every column; every sample goes through every column."""
        shared = self.prefix(clips)
        columns = [shared] * self.config.num_tasks
        for index, stitch in enumerate(self.stitches):
            columns = [
                cast(nn.Sequential, column)[index](x) for column, x in zip(self.columns, columns)
            ]
            columns = stitch(columns)
        return [self.pool(x).flatten(1) for x in columns]

    def forward(self, clips: torch.Tensor, task_ids: torch.Tensor) -> list[torch.Tensor]:
        self._check_task_ids(clips, task_ids)
        features = self.column_features(clips)
        return [head(features[t][task_rows(task_ids, t)]) for t, head in enumerate(self.heads)]

    def task_features(self, clips: torch.Tensor) -> list[torch.Tensor]:
        """Column t's pooled features for task t; the gate reads their mean."""
        return self.column_features(clips)

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        stitch_ids = {id(p) for p in self.stitches.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in stitch_ids]
        return [
            {"params": rest, "lr": lr, "name": "model"},
            {
                "params": list(self.stitches.parameters()),
                "lr": lr * self.config.cross_stitch_lr_multiplier,
                "name": "cross_stitch",
            },
        ]
