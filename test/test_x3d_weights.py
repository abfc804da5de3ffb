"""Published X3D weights: PyTorchVideo's state-dict names and shapes onto ours.

No weight file can be downloaded here, so the test writes a state dict with the
names and shapes of PyTorchVideo's `x3d_xs` (`create_x3d(input_clip_length=4,
input_crop_size=160)`, as its hub stores it in `X3D_XS.pyth["model_state"]`),
built from that layout's description, not from our modules.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from mtl_perception.models import ModelConfig, build_model
from mtl_perception.models.archs import load_backbone_weights
from mtl_perception.models.backbone import load_pretrained
from mtl_perception.models.x3d import X3D


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,),
            f"{prefix}.running_mean": (channels,), f"{prefix}.running_var": (channels,),
            f"{prefix}.num_batches_tracked": ()}


def pytorchvideo_x3d_xs_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of PyTorchVideo's x3d_xs state dict (563 entries).

    Stem `blocks.0`: `conv.conv_t` is the (1,3,3) conv 3->24, `conv.conv_xy` the
    depthwise (5,1,1) one, `norm`. Stages `blocks.1..4`: 3, 5, 11, 7 `res_blocks`
    of widths 24, 48, 96, 192, inner 54, 108, 216, 432, SE widths 8, 8, 16, 32 on
    blocks 0, 2, 4, ...; `branch1_conv` in each first block, `branch1_norm` where
    the channels change (not in blocks.1). Head `blocks.5`: `pool.pre_conv`
    192->432 + `pool.pre_norm`, `pool.post_conv` 432->2048, `proj` 2048->400.
    """
    shapes: dict[str, tuple[int, ...]] = {
        "blocks.0.conv.conv_t.weight": (24, 3, 1, 3, 3),
        "blocks.0.conv.conv_xy.weight": (24, 1, 5, 1, 1),
        **_bn("blocks.0.norm", 24),
    }
    d_in = 24
    for stage, (depth, d_out, se) in enumerate(
            [(3, 24, 8), (5, 48, 8), (11, 96, 16), (7, 192, 32)], start=1):
        inner = int(2.25 * d_out)
        for b in range(depth):
            p = f"blocks.{stage}.res_blocks.{b}"
            block_in = d_in if b == 0 else d_out
            if b == 0:
                shapes[f"{p}.branch1_conv.weight"] = (d_out, block_in, 1, 1, 1)
                if block_in != d_out:
                    shapes.update(_bn(f"{p}.branch1_norm", d_out))
            shapes[f"{p}.branch2.conv_a.weight"] = (inner, block_in, 1, 1, 1)
            shapes.update(_bn(f"{p}.branch2.norm_a", inner))
            shapes[f"{p}.branch2.conv_b.weight"] = (inner, 1, 3, 3, 3)
            shapes.update(_bn(f"{p}.branch2.norm_b.0", inner))
            if b % 2 == 0:
                shapes[f"{p}.branch2.norm_b.1.block.0.weight"] = (se, inner, 1, 1, 1)
                shapes[f"{p}.branch2.norm_b.1.block.0.bias"] = (se,)
                shapes[f"{p}.branch2.norm_b.1.block.2.weight"] = (inner, se, 1, 1, 1)
                shapes[f"{p}.branch2.norm_b.1.block.2.bias"] = (inner,)
            shapes[f"{p}.branch2.conv_c.weight"] = (d_out, inner, 1, 1, 1)
            shapes.update(_bn(f"{p}.branch2.norm_c", d_out))
        d_in = d_out
    shapes["blocks.5.pool.pre_conv.weight"] = (432, 192, 1, 1, 1)
    shapes.update(_bn("blocks.5.pool.pre_norm", 432))
    shapes["blocks.5.pool.post_conv.weight"] = (2048, 432, 1, 1, 1)
    shapes["blocks.5.proj.weight"] = (400, 2048)
    shapes["blocks.5.proj.bias"] = (400,)
    return shapes


def published_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(7) if k.endswith("num_batches_tracked")
                else torch.rand(s, generator=generator) + 0.5)
            for k, s in pytorchvideo_x3d_xs_shapes().items()}


def test_the_layout_has_pytorchvideos_entry_count() -> None:
    assert len(pytorchvideo_x3d_xs_shapes()) == 563


def test_published_state_loads_every_tensor_into_its_place() -> None:
    state = published_state()
    backbone = X3D("x3d_xs", 24)
    load_backbone_weights(backbone, state)
    ours = backbone.state_dict()
    pairs = {
        "stem.conv_xy.weight": "blocks.0.conv.conv_t.weight",  # PyTorchVideo's names swapped
        "stem.conv_t.weight": "blocks.0.conv.conv_xy.weight",
        "stem.norm.running_var": "blocks.0.norm.running_var",
        "layer1.0.shortcut.0.weight": "blocks.1.res_blocks.0.branch1_conv.weight",
        "layer2.0.shortcut.1.bias": "blocks.2.res_blocks.0.branch1_norm.bias",
        "layer3.4.se.reduce.weight": "blocks.3.res_blocks.4.branch2.norm_b.1.block.0.weight",
        "layer3.4.se.expand.bias": "blocks.3.res_blocks.4.branch2.norm_b.1.block.2.bias",
        "layer4.6.norm_b.weight": "blocks.4.res_blocks.6.branch2.norm_b.0.weight",
        "layer4.6.conv_c.weight": "blocks.4.res_blocks.6.branch2.conv_c.weight",
        "layer4.7.0.weight": "blocks.5.pool.pre_conv.weight",  # the head conv ends layer4
        "layer4.7.1.running_mean": "blocks.5.pool.pre_norm.running_mean",
    }
    for mine, theirs in pairs.items():
        assert torch.equal(ours[mine], state[theirs]), mine
    # Every backbone tensor came from the file (563 entries less post_conv and proj's 3):
    # the random values identify each published tensor.
    def fingerprint(t: torch.Tensor) -> tuple[float, ...]:
        return tuple(t.flatten()[:4].tolist())

    published = {fingerprint(v) for k, v in state.items() if k.endswith(("weight", "bias",
                                                                          "running_mean",
                                                                          "running_var"))}
    loaded = {k: v for k, v in ours.items() if not k.startswith("fc.")}
    assert len(loaded) == 560
    assert all(fingerprint(v) in published for k, v in loaded.items()
               if not k.endswith("num_batches_tracked"))


def test_published_pyth_file_builds_every_method(tmp_path: Path) -> None:
    path = tmp_path / "X3D_XS.pyth"  # PyTorchVideo's checkpoint: {"model_state": ..., ...}
    torch.save({"model_state": published_state(), "epoch": 300}, path)
    weights = load_pretrained(path)
    for method in ("hps", "sps", "lws"):
        config = ModelConfig(method=method, arch="x3d_xs", width=24, num_classes=(3, 4))
        model = cast(Any, build_model(config, weights))
        expected = weights["blocks.4.res_blocks.2.branch2.conv_b.weight"]
        if method == "hps":
            got = [model.stages.layer4[2].conv_b.weight]
        elif method == "sps":
            got = [column[1][2].conv_b.weight for column in model.columns]  # every column
        else:
            got = [copy.conv_b.weight for copy in model.units[11 + 2]]  # layer4.2, both copies
        assert all(torch.equal(g, expected) for g in got)


@pytest.mark.parametrize(("change", "message"), [
    ("drop", r"1 missing \(first: \['layer4.7.1.running_var'\]\)"),
    ("extra", r"1 unexpected \(first: \['blocks.6.head.weight'\]\)"),
    ("shape", r"with wrong shape \(first: layer2.0.conv_a.weight is \(108, 48, 1, 1, 1\), "
              r"the model has \(108, 24, 1, 1, 1\)\)"),
])
def test_mismatches_are_refused_in_one_line(change: str, message: str) -> None:
    state = published_state()
    if change == "drop":
        del state["blocks.5.pool.pre_norm.running_var"]
    elif change == "extra":
        state["blocks.6.head.weight"] = torch.zeros(3)
    else:
        state["blocks.2.res_blocks.0.branch2.conv_a.weight"] = torch.zeros(108, 48, 1, 1, 1)
    with pytest.raises(ValueError, match=message) as error:
        load_backbone_weights(X3D("x3d_xs", 24), state)
    assert "\n" not in str(error.value)
    assert str(error.value).startswith("pretrained weights do not fit x3d_xs width 24: ")


def test_published_weights_do_not_fit_another_width() -> None:
    with pytest.raises(ValueError, match=r"do not fit x3d_s width 16: \d+ with wrong shape"):
        load_backbone_weights(X3D("x3d_s", 16), published_state())


@pytest.mark.skipif(importlib.util.find_spec("pytorchvideo") is None,
                    reason="PyTorchVideo is not installed (an optional cross-check)")
def test_features_equal_pytorchvideos_own_x3d() -> None:  # pragma: no cover - optional
    from pytorchvideo.models.hub.x3d import x3d_xs

    torch.manual_seed(0)
    reference = x3d_xs(pretrained=False).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                cast(torch.Tensor, module.running_mean).uniform_(-0.2, 0.2)
                cast(torch.Tensor, module.running_var).uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    ours = X3D("x3d_xs", 24).eval()
    load_backbone_weights(ours, reference.state_dict())
    clip = torch.randn(1, 3, 4, 160, 160)
    captured: list[torch.Tensor] = []
    reference.blocks[5].pool.pre_act.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        reference(clip)
        x = clip
        for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
            x = ours.stage(name)(x)
    torch.testing.assert_close(x, captured[0], rtol=1e-4, atol=1e-5)
