"""The R3D family (3D ResNets), parameter-for-parameter compatible with torchvision.

Mirrors torchvision `models/video/resnet.py` (`VideoResNet`, `BasicBlock`,
`Conv3DSimple`, `BasicStem`) with two additions: a base width (64 in the
published models; 8 or 16 make CPU-sized tests and demos with the same code),
and a depth setting for `r3d_34`. Parameter names are torchvision's
(`stem.0.weight`, `layer1.0.conv1.0.weight`, ..., `fc.weight`), so the
Kinetics-400 `r3d_18-b3b3357e.pth` loads unchanged. We keep our own copy
instead of importing torchvision so that a robot's runtime needs only torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from mtl_perception.models.stages import STAGE_NAMES, VideoBackbone, difference_frames
from mtl_perception.models.state import state_mismatch

__all__ = ["LAYERS", "R3D", "STAGE_NAMES", "init_resnet_weights", "load_backbone_state",
           "load_pretrained"]

LAYERS = {"r3d_18": (2, 2, 2, 2), "r3d_34": (3, 4, 6, 3)}


class Conv3DSimple(nn.Conv3d):
    """3x3x3 convolution, as torchvision's."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3x3 convolutions with a residual connection."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            Conv3DSimple(inplanes, planes, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(Conv3DSimple(planes, planes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


class BasicStem(nn.Sequential):
    """Conv 3x7x7, stride (1, 2, 2): keeps time, halves space.

    With `frame_differences`, the convolution sees the T-1 differences of
    consecutive frames instead of the T frames: the still background and the
    actor's looks cancel and only what moved is left. Off in the published
    models; the from-scratch CPU demo needs it to learn motion (not the
    scene) in a few hundred iterations. No parameter changes, so the state
    dict is the same either way.
    """

    def __init__(self, width: int = 64, frame_differences: bool = False) -> None:
        super().__init__(
            nn.Conv3d(
                3, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False
            ),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
        self.frame_differences = frame_differences

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frame_differences:
            x = difference_frames(x)
        return super().forward(x)


class R3D(VideoBackbone):
    """A 3D ResNet with torchvision's module names and initialisation."""

    def __init__(self, arch: str = "r3d_18", width: int = 64, num_classes: int = 400,
                 frame_differences: bool = False) -> None:
        super().__init__()
        self._check(arch, LAYERS, width)
        self.stem = BasicStem(width, frame_differences)
        inplanes = width
        stages = []
        for index, blocks in enumerate(LAYERS[arch]):
            planes = width * 2**index
            stages.append(_make_stage(inplanes, planes, blocks, stride=1 if index == 0 else 2))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_resnet_weights(self)

    @property
    def channels(self) -> dict[str, int]:
        w = self.width
        return {"stem": w, "layer1": w, "layer2": 2 * w, "layer3": 4 * w, "layer4": 8 * w}


def load_pretrained(source: str | Path) -> dict[str, torch.Tensor]:
    """Backbone weights from a local file, or `kinetics400` via torchvision's downloader.

    A `.pth` file (torchvision's format) is read with `torch.load(weights_only=True)`,
    which refuses anything but tensors; `.safetensors` is read without pickle.
    The `kinetics400` download needs the network, so no test uses it.
    """
    if str(source) == "kinetics400":
        from torchvision.models.video import R3D_18_Weights  # only on a user's machine

        return dict(R3D_18_Weights.KINETICS400_V1.get_state_dict(progress=True))
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:  # same error type as a bad .pth below
            raise ValueError(f"cannot read pretrained weights {path}: {exc}") from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise ValueError(f"cannot read pretrained weights {path}: {exc}") from exc
    if isinstance(state, Mapping) and isinstance(state.get("model_state"), Mapping):
        state = state["model_state"]  # PyTorchVideo's .pyth checkpoints (X3D)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict")
    return dict(state)


def load_backbone_state(backbone: VideoBackbone, state: Mapping[str, torch.Tensor]) -> None:
    """Load pretrained weights into every stage; the classifier (`fc.*`) is left out.

    Any missing key, unexpected key, shape or dtype mismatch is one error naming
    the first few, so that a width or depth mismatch cannot pass silently.
    """
    own = {k: v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
    given = {k: v for k, v in state.items() if not k.startswith("fc.")}
    problems = state_mismatch(own, given)
    if problems:
        raise ValueError(
            f"pretrained weights do not fit {backbone.arch} width {backbone.width}: "
            + "; ".join(problems)
        )
    backbone.load_state_dict(given, strict=False)


def _make_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv3d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm3d(planes),
        )
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_resnet_weights(model: nn.Module) -> None:
    """torchvision's video ResNet initialisation (kaiming fan-out convolutions, unit
    BatchNorm, small linear layers); the causal family uses it too."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
