"""Frames -> normalised clip tensor: the project's only copy of this step.

Training, bag evaluation and the live node all call these functions, so an
accuracy measured offline is the accuracy the robot gets. The defaults follow
torchvision's video classification preset for the Kinetics-400 R3D weights:
bilinear resize to 128x171 (no antialiasing, as the preset hard-codes), centre
crop 112x112, scale to [0, 1], normalise with the Kinetics-400 statistics.

Every step works per frame, so preprocessing frames one at a time as they
arrive (the node's ring buffer) gives exactly the clip that preprocessing the
whole clip at once gives (training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
# Bounds far beyond any real model input: a value past them is a typo or a hostile file,
# and would otherwise allocate gigabytes per frame before anything failed.
MAX_SIDE = 4096
MAX_CLIP_LENGTH = 1024


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw RGB frames become a model input; stored in every checkpoint."""

    clip_length: int = 32
    resize: tuple[int, int] = (128, 171)  # (H, W) before the crop
    crop: tuple[int, int] = (112, 112)  # (H, W) fed to the network
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    antialias: bool = False

    def __post_init__(self) -> None:
        # Every consumer (checkpoint loader, training, the node) builds this dataclass,
        # so a value that cannot work is refused here once, before any frame is touched.
        _check_int("clip_length", self.clip_length, 1, MAX_CLIP_LENGTH)
        for name in ("resize", "crop", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list):  # from hand-written code; stored as a tuple
                object.__setattr__(self, name, tuple(value))
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 2:
                raise ValueError(f"{name} must be a (height, width) pair, got {value!r}")
            for side in value:
                _check_int(name, side, 1, MAX_SIDE)
        if self.crop[0] > self.resize[0] or self.crop[1] > self.resize[1]:
            raise ValueError(f"crop {self.crop} is larger than resize {self.resize}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 3:
                raise ValueError(f"{name} must be three numbers (R, G, B), got {value!r}")
            for number in value:
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    raise ValueError(f"{name} must hold numbers, got {number!r}")
                if not math.isfinite(number):
                    raise ValueError(f"{name} must be finite, got {value}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0 (it divides), got {self.std}")
        if not isinstance(self.antialias, bool):
            raise ValueError(f"antialias must be true or false, got {self.antialias!r}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


def preprocess_frames(frames: np.ndarray | torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """RGB uint8 frames (T, H, W, 3) -> float32 tensor (3, T, crop_h, crop_w).

    A tensor input stays on its device, so a GPU node can preprocess on the GPU.
    """
    video = _as_uint8_tensor(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected RGB frames shaped (T, H, W, 3), got {tuple(video.shape)}")
    # Channels-last float (a view of the HWC frames): interpolate is fastest on it.
    x = video.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    if tuple(x.shape[-2:]) != tuple(config.resize):
        x = F.interpolate(
            x, size=config.resize, mode="bilinear", align_corners=False, antialias=config.antialias
        )
        x = _centre_crop(x, config.crop)
        # torchvision resizes uint8 frames to uint8: round the same way so that
        # the published weights see the inputs they were trained on.
        x = x.round().clamp_(0, 255)
    else:
        x = _centre_crop(x, config.crop)
    # (x / 255 - mean) / std as one multiply-add, on (3, T, h, w) directly.
    std = torch.tensor(config.std, device=x.device)
    scale = (1.0 / (255.0 * std)).view(3, 1, 1, 1)
    shift = (-torch.tensor(config.mean, device=x.device) / std).view(3, 1, 1, 1)
    return torch.addcmul(shift, x.permute(1, 0, 2, 3), scale).contiguous()


def preprocess_frame(frame: np.ndarray | torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """One RGB uint8 frame (H, W, 3) -> (3, crop_h, crop_w), for per-frame buffering."""
    video = _as_uint8_tensor(frame)
    return preprocess_frames(video.unsqueeze(0), config)[:, 0]


def stack_clip(frames: list[torch.Tensor]) -> torch.Tensor:
    """Per-frame outputs of `preprocess_frame` -> one clip (3, T, h, w)."""
    if not frames:
        raise ValueError("cannot build a clip from zero frames")
    return torch.stack(frames, dim=1)


def _as_uint8_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = (
        torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    )
    if tensor.dtype != torch.uint8:
        raise ValueError(f"expected uint8 RGB frames, got dtype {tensor.dtype}")
    return tensor


def _centre_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    height, width = x.shape[-2:]
    crop_h, crop_w = size
    # Same rounding as torchvision's center_crop.
    top = round((height - crop_h) / 2.0)
    left = round((width - crop_w) / 2.0)
    return x[..., top : top + crop_h, left : left + crop_w]
