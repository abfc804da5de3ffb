"""causal_r18: a ResNet-18 over frames whose only temporal mixing is causal (streamable).

The efficient family for a stream (issue 23's streaming step): every spatial
convolution sees one frame ((1, k, k) kernels, as a 2D ResNet-18), and time
is mixed only by a (2, 1, 1) convolution in the first block of each stage,
after its first spatial convolution. Those read a position and the one before
it (layer3 and layer4: two before it, dilation 2), with no padding, so an
output position depends on the 7 input frames ending at it
(`RECEPTIVE_FRAMES`; 8 source frames with `frame_differences`: the CPU demo's
whole clip) and never on a later one. A clip of T frames gives T - 6
positions, which the global average pool averages, as R3D's pool averages
its time steps. (With dilation 1 everywhere, 5 frames, the demo's recipe
ended 3.3 points lower on the mean clip accuracy: bench/results/backbones.md.)

Because nothing reads the future and nothing is padded, a stream can keep
each causal module's last inputs (`models/frame_stream.py`) and compute one
new position per new frame: the clip's result is the mean of its last
T - 6 positions, equal to this clip-wise forward to rounding, at the cost of
the new frames alone (`mtl_perception/stream/frame_reuse.py`).

Layout (`width` w): stem (1, 7, 7) convolution, stride (1, 2, 2), BatchNorm,
ReLU; layer1..layer4 of two basic blocks each (channels w, 2w, 4w, 8w; space
halved in the first block of layer2..layer4, never time); a block is (1, 3, 3)
conv, BN, ReLU, [the causal (2, 1, 1) conv (dilation 1, 1, 2, 2 by stage),
BN, ReLU in a stage's first block], (1, 3, 3) conv, BN, plus the shortcut (a
strided 1x1x1 conv and BN where the shape changes) cut to the positions the
causal conv kept.
"""

from __future__ import annotations

import torch
from torch import nn

from mtl_perception.models.backbone import init_resnet_weights
from mtl_perception.models.frame_stream import current_stream
from mtl_perception.models.stages import VideoBackbone, difference_frames

CAUSAL_DEPTHS = {"causal_r18": (2, 2, 2, 2)}
TEMPORAL_KERNEL = 2
# One causal conv per stage, dilated in layer3 and layer4: each adds
# (TEMPORAL_KERNEL - 1) x its dilation frames of history.
DILATIONS = (1, 1, 2, 2)
RECEPTIVE_FRAMES = 1 + sum((TEMPORAL_KERNEL - 1) * d for d in DILATIONS)


class CausalTemporalConv(nn.Conv3d):
    """(k, 1, 1) convolution without padding: position t reads inputs t - k + 1 .. t.

    In a stream (`streaming`), the inputs kept from the last step come first."""

    def __init__(self, channels: int, dilation: int = 1, kernel: int = TEMPORAL_KERNEL) -> None:
        super().__init__(channels, channels, kernel_size=(kernel, 1, 1),
                         dilation=(dilation, 1, 1), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = current_stream()
        if state is not None:
            x = state.extend(self, x, (self.kernel_size[0] - 1) * self.dilation[0])
        return super().forward(x)


class FrameStem(nn.Module):
    """(1, 7, 7) convolution, stride (1, 2, 2), BatchNorm, ReLU: one frame at a time.

    With `frame_differences` it sees consecutive-frame differences; in a stream
    the last frame of the previous step is the first difference's other side.
    """

    def __init__(self, width: int, frame_differences: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, width, kernel_size=(1, 7, 7), stride=(1, 2, 2),
                              padding=(0, 3, 3), bias=False)
        self.norm = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.frame_differences = frame_differences

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = current_stream()
        fewest = causal_min_frames(self.frame_differences)
        if state is None and x.shape[2] < fewest:
            raise ValueError(f"causal_r18 needs clips of >= {fewest} frames (its receptive "
                             f"field), got {x.shape[2]}")
        if self.frame_differences:
            if state is not None:
                x = state.extend(self, x, 1)
            x = difference_frames(x)
        return self.relu(self.norm(self.conv(x)))


class FrameBlock(nn.Module):
    """Basic residual block over frames; `causal`: a causal temporal conv after the first."""

    def __init__(self, inplanes: int, planes: int, stride: int, causal: bool,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(inplanes, planes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                      padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.temporal = nn.Sequential(CausalTemporalConv(planes, dilation), nn.BatchNorm3d(planes),
                                      nn.ReLU(inplace=True)) if causal else None
        self.conv2 = nn.Sequential(
            nn.Conv3d(planes, planes, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(planes))
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, kernel_size=1, stride=(1, stride, stride),
                          bias=False),
                nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.temporal is not None:
            out = self.temporal(out)
        out = self.conv2(out)
        # The causal conv keeps the newest positions: the shortcut adds the same ones.
        residual = x[:, :, x.shape[2] - out.shape[2]:]
        if self.downsample is not None:
            residual = self.downsample(residual)
        return self.relu(out + residual)


class CausalR18(VideoBackbone):
    """causal_r18 with the five-stage interface (see the module docstring)."""

    def __init__(self, arch: str = "causal_r18", width: int = 64, num_classes: int = 400,
                 frame_differences: bool = False) -> None:
        super().__init__()
        self._check(arch, CAUSAL_DEPTHS, width)
        self.stem = FrameStem(width, frame_differences)
        inplanes = width
        stages = []
        for index, depth in enumerate(CAUSAL_DEPTHS[arch]):
            planes = width * 2**index
            stages.append(nn.Sequential(*[
                FrameBlock(inplanes if b == 0 else planes, planes,
                           2 if b == 0 and index > 0 else 1, causal=b == 0,
                           dilation=DILATIONS[index])
                for b in range(depth)]))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        if not self.fc.weight.is_meta:  # a meta build (checkpoint shape check) has no values
            init_resnet_weights(self)

    @property
    def channels(self) -> dict[str, int]:
        w = self.width
        return {"stem": w, "layer1": w, "layer2": 2 * w, "layer3": 4 * w, "layer4": 8 * w}


def causal_min_frames(frame_differences: bool) -> int:
    """Frames a clip needs for one output position."""
    return RECEPTIVE_FRAMES + (1 if frame_differences else 0)
