"""The five-stage interface every backbone family offers to the multi-task methods.

A backbone is a stem and four stages (`STAGE_NAMES`), then global average
pooling. The methods cut it by stage: `trainable_stages` freezes a leading
prefix, SPS duplicates the trainable stages per task and cross-stitches
their outputs (so it needs each stage's output channels), LWS routes each
block of a trainable stage (a stage is an `nn.Sequential` of blocks; the stem
is one block). Any family that keeps this shape works with every method.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")


class VideoBackbone(nn.Module):
    """Stem + layer1..layer4 (each an `nn.Sequential` of blocks), then a pool and `fc`."""

    arch: str
    width: int
    avgpool: nn.Module
    fc: nn.Linear

    @property
    def channels(self) -> dict[str, int]:
        """Output channels of each stage."""
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        """Channels of the pooled features the heads read (layer4's output)."""
        return self.channels["layer4"]

    def _check(self, arch: str, known: Iterable[str], width: int) -> None:
        """A backbone's one refusal of an unknown arch or a width below 1 (every family)."""
        if arch not in known:
            raise ValueError(f"unknown backbone {arch!r}; choose one of {sorted(known)}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.arch, self.width = arch, width

    def stage(self, name: str) -> nn.Module:
        return getattr(self, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in STAGE_NAMES:
            x = self.stage(name)(x)
        return self.fc(self.avgpool(x).flatten(1))


def difference_frames(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> the T - 1 differences of consecutive frames (`frame_differences`).

    The still background and the actor's looks cancel and only what moved is
    left; no parameter depends on it, so a state dict is the same either way.
    """
    if x.shape[2] < 2:
        raise ValueError(f"frame differences need clips of >= 2 frames, got {x.shape[2]}")
    return x[:, :, 1:] - x[:, :, :-1]
