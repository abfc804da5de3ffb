"""Small X3D models for the X3D tests."""

from __future__ import annotations

from typing import Any, cast

import torch
from helpers_models import tiny_config

from mtl_perception.models import ModelConfig


def x3d_config(method: str = "hps", **overrides: Any) -> ModelConfig:
    """Width-4 X3D (stem 4 channels, layer4 out int(2.25 * 32) = 72) with tiny_config's tasks."""
    return tiny_config(method, **{"arch": "x3d_xs", **overrides})


def scrambled(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """BatchNorm scales, shifts and statistics random, so that no branch is the identity
    (a fresh X3D zeroes each block's last BatchNorm); routes and stitches stay as built."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                uniform(module.weight, 0.5, 1.5)
                uniform(module.bias, -0.2, 0.2)
                uniform(cast(torch.Tensor, module.running_mean), -0.2, 0.2)
                uniform(cast(torch.Tensor, module.running_var), 0.5, 1.5)
            elif isinstance(module, torch.nn.Linear):
                uniform(module.weight, -0.3, 0.3)
    return model
