"""Every backbone family by its `model.arch` name, behind one builder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import torch

from mtl_perception.models.backbone import LAYERS, R3D, load_backbone_state
from mtl_perception.models.causal import CAUSAL_DEPTHS, CausalR18, causal_min_frames
from mtl_perception.models.stages import VideoBackbone
from mtl_perception.models.x3d import X3D, X3D_DEPTHS
from mtl_perception.models.x3d_weights import from_pytorchvideo, is_pytorchvideo_x3d

Arch = Literal["r3d_18", "r3d_34", "x3d_xs", "x3d_s", "x3d_m", "causal_r18"]
ARCHS: tuple[str, ...] = get_args(Arch)
assert set(ARCHS) == set(LAYERS) | set(X3D_DEPTHS) | set(CAUSAL_DEPTHS), (
    "Arch must name every family's archs")


def build_backbone(arch: str, width: int, frame_differences: bool = False,
                   num_classes: int = 400) -> VideoBackbone:
    """The backbone `arch` names (R3D: `width` is the stem's channels, 64 published;
    X3D: the stem's channels too, 24 published; causal_r18: as R3D, nothing published)."""
    if arch in LAYERS:
        return R3D(arch, width, num_classes, frame_differences)
    if arch in X3D_DEPTHS:
        return X3D(arch, width, num_classes, frame_differences)
    if arch in CAUSAL_DEPTHS:
        return CausalR18(arch, width, num_classes, frame_differences)
    raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")


def load_backbone_weights(backbone: VideoBackbone, state: Mapping[str, torch.Tensor]) -> None:
    """Pretrained weights into every stage (classifier left out), from our own layout
    or a published one (PyTorchVideo's X3D); any mismatch is one ValueError."""
    if isinstance(backbone, X3D) and is_pytorchvideo_x3d(state):
        state = from_pytorchvideo(state, X3D_DEPTHS[backbone.arch][3])
    load_backbone_state(backbone, state)


def min_clip_frames(arch: str, frame_differences: bool) -> int:
    """The fewest frames a clip of `arch` may have: a causal arch's receptive field, else 1
    (2 with frame differences)."""
    if arch in CAUSAL_DEPTHS:
        return causal_min_frames(frame_differences)
    return 2 if frame_differences else 1


def clip_length_problem(arch: str, frame_differences: bool, clip_length: int) -> str | None:
    """Why clips of `clip_length` frames cannot feed `arch`, or None: the one message of
    every place that checks (training config, checkpoint, export, stream)."""
    fewest = min_clip_frames(arch, frame_differences)
    if clip_length >= fewest:
        return None
    why = " with frame differences" if frame_differences else ""
    return f"clip_length {clip_length} is below the {fewest} frames arch {arch} needs{why}"


def streams_frames(arch: str) -> bool:
    """Whether a stream may reuse each frame's computation across clips (a causal arch)."""
    return arch in CAUSAL_DEPTHS
