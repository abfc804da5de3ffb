"""A model path -> what the streaming core runs: a checkpoint, or an exported ONNX file.

The node and `evaluate_bag` take either in the same place; the file's name
decides (`.onnx` = exported). A checkpoint runs on every backend (the ONNX
ones export it in memory first); an exported file on the ONNX backends only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mtl_perception.checkpoint import CheckpointInfo, load_checkpoint, read_checkpoint_info
from mtl_perception.deploy.onnx_file import OnnxModel, read_onnx_model


@dataclass
class LoadedModel:
    model: nn.Module | OnnxModel
    info: CheckpointInfo


def is_exported(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def read_model_info(path: str | Path) -> CheckpointInfo:
    """The metadata of a checkpoint or an exported file, checked; one line if refused."""
    if is_exported(path):
        return read_onnx_model(path).info
    return read_checkpoint_info(path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A checkpoint's model on `device`, or an exported file's checked bytes."""
    if is_exported(path):
        exported = read_onnx_model(path)
        return LoadedModel(exported, exported.info)
    loaded = load_checkpoint(path, device)
    return LoadedModel(loaded.model, loaded.info)
