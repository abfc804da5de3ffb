"""Published X3D weights (PyTorchVideo's Kinetics-400 `X3D_XS.pyth`, `X3D_S.pyth`,
`X3D_M.pyth`) mapped onto `models/x3d.py`'s names.

PyTorchVideo's `create_x3d` names the network `blocks.0` (stem), `blocks.1` to
`blocks.4` (stages, `res_blocks.i`), `blocks.5` (head). Its stem calls the
spatial (1, 3, 3) convolution `conv_t` and the temporal (5, 1, 1) one
`conv_xy`; here they are named for what they do. The head's post-pool
projection (`blocks.5.pool.post_conv`, 432 -> 2048) and classifier
(`blocks.5.proj`) are left out, as `fc.*` is on R3D: the tasks' heads are
new. Anything else that does not map, or maps onto a wrong shape, is refused
by `load_backbone_state` in one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

# PyTorchVideo name (after `blocks.S.res_blocks.I.`) -> ours (after `layerS.I.`).
_BLOCK_PARTS = {
    "branch1_conv.": "shortcut.0.",
    "branch1_norm.": "shortcut.1.",
    "branch2.conv_a.": "conv_a.",
    "branch2.norm_a.": "norm_a.",
    "branch2.conv_b.": "conv_b.",
    "branch2.norm_b.0.": "norm_b.",
    "branch2.norm_b.1.block.0.": "se.reduce.",
    "branch2.norm_b.1.block.2.": "se.expand.",
    "branch2.conv_c.": "conv_c.",
    "branch2.norm_c.": "norm_c.",
}
_STEM_PARTS = {"conv.conv_t.": "conv_xy.", "conv.conv_xy.": "conv_t.", "norm.": "norm."}
_HEAD_PARTS = {"pool.pre_conv.": "0.", "pool.pre_norm.": "1."}
DROPPED = ("blocks.5.pool.post_conv.", "blocks.5.proj.")
_BLOCK = re.compile(r"^blocks\.([1-4])\.res_blocks\.(\d+)\.(.*)$")


def is_pytorchvideo_x3d(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is in PyTorchVideo's `Net(blocks=...)` layout."""
    return any(key.startswith("blocks.0.conv.") for key in state)


def from_pytorchvideo(
    state: Mapping[str, torch.Tensor], layer4_blocks: int
) -> dict[str, torch.Tensor]:
    """PyTorchVideo X3D names -> ours; `layer4_blocks`: residual blocks in layer4 (its
    head convolution is the unit after them). A key no rule covers is kept as it is,
    so that the loader's check names it as unexpected instead of dropping it."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(DROPPED):
            continue
        out[_rename(key, layer4_blocks)] = value
    return out


def _rename(key: str, layer4_blocks: int) -> str:
    match = _BLOCK.match(key)
    if match:
        stage, block, rest = match.groups()
        return _swap(rest, _BLOCK_PARTS, f"layer{stage}.{block}.", key)
    if key.startswith("blocks.0."):
        return _swap(key[len("blocks.0."):], _STEM_PARTS, "stem.", key)
    if key.startswith("blocks.5."):
        return _swap(key[len("blocks.5."):], _HEAD_PARTS, f"layer4.{layer4_blocks}.", key)
    return key


def _swap(rest: str, parts: Mapping[str, str], prefix: str, key: str) -> str:
    for theirs, ours in parts.items():
        if rest.startswith(theirs):
            return prefix + ours + rest[len(theirs):]
    return key
