"""Tiny exported models for the export and backend tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from helpers_models import tiny_config

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.models import MultiTaskModel, build_model
from mtl_perception.preprocess import PreprocessConfig

CROP = (32, 32)
FRAMES = 4


def tiny_model(method: str = "hps", seed: int = 0) -> tuple[MultiTaskModel, CheckpointInfo]:
    """A width-4 model of `method` with frame differences on (the demo's stem), made
    so that every part of it matters: LWS copies differ and its argmax routing mixes
    copies; SPS's stitches are not the identity; BatchNorm statistics are not 0/1."""
    torch.manual_seed(seed)
    config = tiny_config(method, frame_differences=True)
    model = build_model(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                cast(torch.Tensor, module.running_mean).uniform_(-0.2, 0.2)
                cast(torch.Tensor, module.running_var).uniform_(0.5, 1.5)
        for name, parameter in model.named_parameters():
            if name.startswith(("units.", "heads.")):  # LWS copies differ from each other
                parameter.mul_(1 + 0.3 * torch.randn_like(parameter))
        if method == "lws":
            probs = cast(Any, model).routing_probs
            probs[1, 0] = torch.tensor([0.8, 0.2])  # gesture borrows action's first block
            probs[0, -1] = torch.tensor([0.3, 0.7])  # action borrows gesture's last block
    model.eval()
    names = tuple(tuple(f"{task}{i}" for i in range(n))
                  for task, n in zip(config.task_names, config.num_classes))
    info = CheckpointInfo(config, names, PreprocessConfig(clip_length=FRAMES, resize=(36, 40),
                                                          crop=CROP))
    return model, info


def clips(count: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, FRAMES, *CROP, generator=generator)


def saved_tiny_model(path: Path, method: str = "hps") -> Path:
    """`tiny_model(method)` saved as a checkpoint at `path`."""
    model, info = tiny_model(method)
    save_checkpoint(path, model, info)
    return path
