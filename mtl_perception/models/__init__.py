"""Models: the backbone families (R3D, X3D, causal R18) and the methods behind `build_model`."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mtl_perception.models.archs import build_backbone, load_backbone_weights
from mtl_perception.models.base import MultiTaskModel
from mtl_perception.models.config import METHODS, ModelConfig
from mtl_perception.models.cross_stitch import CrossStitchModel
from mtl_perception.models.hps import SharedBackboneModel
from mtl_perception.models.lws import LearnedSharingModel

__all__ = [
    "METHODS",
    "CrossStitchModel",
    "LearnedSharingModel",
    "ModelConfig",
    "MultiTaskModel",
    "SharedBackboneModel",
    "build_model",
]

_BUILDERS = {
    "stl": SharedBackboneModel,
    "hps": SharedBackboneModel,
    "sps": CrossStitchModel,
    "lws": LearnedSharingModel,
}


def build_model(
    config: ModelConfig, backbone_weights: Mapping[str, torch.Tensor] | None = None
) -> MultiTaskModel:
    """Build the model a config describes, optionally from pretrained backbone weights.

    Weights go into one backbone first; SPS and LWS then copy its trainable
    stages into every column, so each column starts from the pretrained weights
    (the paper duplicates the pretrained backbone once per task).
    """
    backbone = build_backbone(config.arch, config.width, config.frame_differences)
    if backbone_weights is not None:
        load_backbone_weights(backbone, backbone_weights)
    return _BUILDERS[config.method](config, backbone)
