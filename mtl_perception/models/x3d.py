"""X3D (Feichtenhofer, CVPR 2020), in PyTorchVideo's layout, cut into the five stages.

The efficient family beside R3D: depthwise 3x3x3 convolutions inside
inverted bottlenecks, so a clip costs a few percent of r3d_18's multiply-adds
at the same clip size. Layout as PyTorchVideo's `create_x3d` (the published
Kinetics-400 `x3d_xs`, `x3d_s`, `x3d_m` weights; those three are one
network, differing only in the clip they were trained on: 4x160x160,
13x160x160 and 16x224x224):

- stem: a (1, 3, 3) convolution, stride (1, 2, 2), then a depthwise (5, 1, 1)
  one, BatchNorm, ReLU;
- layer1..layer4 (3, 5, 11, 7 blocks: PyTorchVideo's 1, 2, 5, 3 times the
  depth factor 2.2, rounded up): residual inverted bottlenecks 1x1x1 (ReLU) ->
  depthwise 3x3x3 (stride (1, 2, 2) in a stage's first block) with
  squeeze-excitation in every other block (the 1st, 3rd, ...) -> swish ->
  1x1x1, expansion 2.25; the shortcut is a strided 1x1x1 convolution in a
  stage's first block (with BatchNorm when the channels change);
- layer4 ends with the head's 1x1x1 convolution to 2.25x its channels
  (PyTorchVideo's `pre_conv`, BatchNorm, ReLU), so the pooled features are
  432-dimensional at the published width. The head's post-pool 2048-channel
  projection is part of PyTorchVideo's classifier and is left out with it:
  each task's head here is one linear layer on the pooled features, as on R3D.

`width` is the stem's channels (24 in the published models): the stages have
width, 2, 4 and 8 times it. Time is never strided, so the cost grows
linearly with the clip's frames.
"""

from __future__ import annotations

import torch
from torch import nn

from mtl_perception.models.stages import VideoBackbone, difference_frames

# Blocks per stage. The three published names share one network (see above).
X3D_DEPTHS = {"x3d_xs": (3, 5, 11, 7), "x3d_s": (3, 5, 11, 7), "x3d_m": (3, 5, 11, 7)}
EXPANSION = 2.25
SE_RATIO = 0.0625
PUBLISHED_WIDTH = 24


def se_channels(channels: int) -> int:
    """Squeeze-excitation bottleneck: PyTorchVideo's `round_width(channels, 1/16)`
    (a multiple of 8, at least 8, never below 90 % of the exact value)."""
    exact = channels * SE_RATIO
    rounded = max(8, int(exact + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * exact else rounded


def inner_channels(channels: int) -> int:
    return int(EXPANSION * channels)


class X3DStem(nn.Module):
    """Spatial (1, 3, 3) convolution, depthwise temporal (5, 1, 1), BatchNorm, ReLU.

    With `frame_differences` the convolutions see consecutive-frame
    differences (as R3D's `BasicStem`).
    """

    def __init__(self, width: int, frame_differences: bool = False) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(3, width, kernel_size=(1, 3, 3), stride=(1, 2, 2),
                                 padding=(0, 1, 1), bias=False)
        self.conv_t = nn.Conv3d(width, width, kernel_size=(5, 1, 1), padding=(2, 0, 0),
                                groups=width, bias=False)
        self.norm = nn.BatchNorm3d(width)
        self.act = nn.ReLU(inplace=True)
        self.frame_differences = frame_differences

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frame_differences:
            x = difference_frames(x)
        return self.act(self.norm(self.conv_t(self.conv_xy(x))))


class SqueezeExcitation(nn.Module):
    """Channel gates from the globally pooled input: pool -> 1x1x1 -> ReLU -> 1x1x1 -> sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = se_channels(channels)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.reduce = nn.Conv3d(channels, reduced, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv3d(reduced, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class X3DBlock(nn.Module):
    """Residual inverted bottleneck: 1x1x1 -> depthwise 3x3x3 (+ SE) -> swish -> 1x1x1."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, squeeze_excite: bool) -> None:
        super().__init__()
        inner = inner_channels(dim_out)
        self.conv_a = nn.Conv3d(dim_in, inner, kernel_size=1, bias=False)
        self.norm_a = nn.BatchNorm3d(inner)
        self.conv_b = nn.Conv3d(inner, inner, kernel_size=3, stride=(1, stride, stride),
                                padding=1, groups=inner, bias=False)
        self.norm_b = nn.BatchNorm3d(inner)
        self.se = SqueezeExcitation(inner) if squeeze_excite else None
        self.conv_c = nn.Conv3d(inner, dim_out, kernel_size=1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)
        self.relu = nn.ReLU(inplace=True)
        self.swish = nn.SiLU()
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or dim_in != dim_out:
            self.shortcut = nn.Sequential(nn.Conv3d(
                dim_in, dim_out, kernel_size=1, stride=(1, stride, stride), bias=False))
            if dim_in != dim_out:  # PyTorchVideo normalises it only where channels change
                self.shortcut.append(nn.BatchNorm3d(dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm_a(self.conv_a(x)))
        out = self.norm_b(self.conv_b(out))
        if self.se is not None:
            out = self.se(out)
        out = self.norm_c(self.conv_c(self.swish(out)))
        residual = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + residual)


class X3DHeadConv(nn.Sequential):
    """The head's 1x1x1 convolution before pooling (PyTorchVideo's `pre_conv`), BN, ReLU."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__(nn.Conv3d(dim_in, dim_out, kernel_size=1, bias=False),
                         nn.BatchNorm3d(dim_out), nn.ReLU(inplace=True))


class X3D(VideoBackbone):
    """X3D with the five-stage interface; layer4's last unit is the head convolution."""

    def __init__(self, arch: str = "x3d_s", width: int = PUBLISHED_WIDTH,
                 num_classes: int = 400, frame_differences: bool = False) -> None:
        super().__init__()
        self._check(arch, X3D_DEPTHS, width)
        self.stem = X3DStem(width, frame_differences)
        dim_in = width
        stages = []
        for index, depth in enumerate(X3D_DEPTHS[arch]):
            dim_out = width * 2**index
            blocks: list[nn.Module] = [
                X3DBlock(dim_in if i == 0 else dim_out, dim_out, 2 if i == 0 else 1,
                         squeeze_excite=i % 2 == 0)
                for i in range(depth)
            ]
            if index == 3:
                blocks.append(X3DHeadConv(dim_out, inner_channels(dim_out)))
            stages.append(nn.Sequential(*blocks))
            dim_in = dim_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        if self.fc.weight.is_meta:
            # Built under `torch.device("meta")` to check a checkpoint's shapes: there are no
            # values to initialise, and the init's 200-odd calls through the device mode made
            # that check cost 0.3 CPU-s a model instead of 0.04.
            return
        _init_weights(self)
        # Channels-last weights make the CPU kernels (oneDNN) run every convolution
        # channels-last: a training step of the CPU demo's width-8 model took half the
        # CPU time (0.16 instead of 0.30 s). Values are unchanged; checkpoints store
        # contiguous copies, so the files are the same either way.
        self.to(memory_format=torch.channels_last_3d)

    @property
    def channels(self) -> dict[str, int]:
        w = self.width
        return {"stem": w, "layer1": w, "layer2": 2 * w, "layer3": 4 * w,
                "layer4": inner_channels(8 * w)}


def _init_weights(model: nn.Module) -> None:
    """R3D's initialisation, and each block's last BatchNorm at zero (as the X3D
    recipe's ZERO_INIT_FINAL_BN): every residual block starts as the identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, X3DBlock):
            nn.init.zeros_(m.norm_c.weight)
