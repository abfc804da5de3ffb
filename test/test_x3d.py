"""X3D backbone: stage shapes, parameter counts by hand, every method on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import torch
from helpers_arch import check_routes_decide, offset_moves, step_and_round_trip, stitched_move
from helpers_x3d import scrambled, x3d_config

from mtl_perception.models import ModelConfig, build_model
from mtl_perception.models.archs import build_backbone
from mtl_perception.models.stages import STAGE_NAMES
from mtl_perception.models.x3d import X3D, se_channels

CLIPS = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
TASK_IDS = torch.tensor([1, 0, 1])


def test_stage_shapes_at_width_4() -> None:
    # Space halves in the stem and in each stage's first block; time is never strided.
    backbone = X3D("x3d_xs", 4).eval()
    x = CLIPS
    shapes = []
    for name in STAGE_NAMES:
        x = backbone.stage(name)(x)
        shapes.append(tuple(x.shape))
    assert shapes == [(3, 4, 8, 16, 16), (3, 4, 8, 8, 8), (3, 8, 8, 4, 4), (3, 16, 8, 2, 2),
                      (3, 72, 8, 1, 1)]
    assert backbone.channels == {"stem": 4, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 72}
    assert backbone.feature_dim == 72
    assert [len(cast(torch.nn.Sequential, backbone.stage(n))) for n in STAGE_NAMES[1:]] == [
        3, 5, 11, 8]  # layer4: 7 residual blocks + the head convolution


def test_squeeze_excitation_widths_follow_pytorchvideo_rounding() -> None:
    # round_width(c, 1/16): c/16 to the nearest multiple of 8, at least 8, bumped by 8 when
    # that falls below 90 % of c/16. 54/16 = 3.4 -> 8; 108/16 = 6.75 -> 8; 216/16 = 13.5
    # -> 16; 432/16 = 27 -> 24 < 24.3 -> 32.
    assert [se_channels(c) for c in (54, 108, 216, 432)] == [8, 8, 16, 32]


def test_parameter_count_at_the_published_width_by_hand() -> None:
    def block(d_in: int, d_out: int, se: bool, first: bool) -> int:
        i = int(2.25 * d_out)  # inner channels
        r = se_channels(i)
        count = d_in * i + 2 * i  # conv_a 1x1x1, norm_a
        count += 27 * i + 2 * i  # depthwise conv_b 3x3x3, norm_b
        count += (i * r + r + r * i + i) if se else 0  # SE: two 1x1x1 convs with biases
        count += i * d_out + 2 * d_out  # conv_c, norm_c
        if first:  # strided 1x1x1 shortcut, BatchNorm only where channels change
            count += d_in * d_out + (2 * d_out if d_in != d_out else 0)
        return count

    def stage(d_in: int, d_out: int, depth: int) -> int:
        return sum(block(d_in if b == 0 else d_out, d_out, b % 2 == 0, b == 0)
                   for b in range(depth))

    stem = 27 * 24 + 5 * 24 + 2 * 24  # (1,3,3) conv 3->24, depthwise (5,1,1), BatchNorm
    head_conv = 192 * 432 + 2 * 432  # PyTorchVideo's pre_conv 192 -> 432 and pre_norm
    by_hand = (stem + stage(24, 24, 3) + stage(24, 48, 5) + stage(48, 96, 11)
               + stage(96, 192, 7) + head_conv)
    assert stage(24, 24, 3) == 15370  # written out: 5816 + 4314 + 5240
    backbone = X3D("x3d_xs", 24)
    ours = sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("fc."))
    assert ours == by_hand == 2_089_938
    # With PyTorchVideo's head projection (432*2048) and classifier (2048*400 + 400) it is
    # the 3.79 M its model zoo lists for X3D-XS.
    assert ours + 432 * 2048 + 2048 * 400 + 400 == 3_794_274


def test_a_meta_built_x3d_declares_the_shapes_of_a_real_one() -> None:
    # The checkpoint check builds on `meta` and skips the initialisation there: the
    # skip must leave every tensor's name, shape and dtype as a real build has them.
    real = build_model(x3d_config("sps")).state_dict()
    with torch.device("meta"):
        meta = build_model(x3d_config("sps")).state_dict()
    assert all(t.is_meta for t in meta.values())
    assert {k: (t.shape, t.dtype) for k, t in meta.items()} == {
        k: (t.shape, t.dtype) for k, t in real.items()}
    assert len(real) > 300  # 26 blocks in each of SPS's two columns, not an empty model


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_every_method_trains_a_step_and_round_trips_a_checkpoint(
    method: str, tmp_path: Path
) -> None:
    config = x3d_config(method, trainable_stages=3, frame_differences=True,
                        gate=method in ("hps", "sps"))
    task_ids = torch.zeros(3, dtype=torch.long) if method == "stl" else TASK_IDS
    changed = step_and_round_trip(config, CLIPS, task_ids, tmp_path)
    assert any(k.startswith("heads.") for k in changed)
    assert not any(k.startswith("prefix.") for k in changed)  # stem, layer1 stay frozen


@pytest.mark.parametrize(("share", "independent"), [(0.0, True), (0.2, False)])
def test_sps_columns_mix_through_the_cross_stitch_units(share: float, independent: bool) -> None:
    # Change column 1 (gesture) only: action's logits move only if the stitches mix columns.
    model = cast(Any, scrambled(build_model(x3d_config("sps", cross_stitch_share=share)))).eval()
    assert [s.weight.shape[-1] for s in model.stitches] == [16, 72]  # layer3, layer4 channels
    assert (stitched_move(model, CLIPS) == 0.0) is independent


def test_lws_routes_every_block_of_the_trainable_stages() -> None:
    model = cast(Any, scrambled(build_model(x3d_config("lws")))).eval()
    assert model.unit_names == [f"layer3.{i}" for i in range(11)] + [
        f"layer4.{i}" for i in range(8)]
    assert model.argmax_assignment().tolist() == [[0] * 19, [1] * 19]
    check_routes_decide(model, CLIPS)


def test_lws_training_steps_run_on_x3d() -> None:
    from training.methods.lws import LWSConfig, assignment_step

    model = cast(Any, build_model(x3d_config("lws"))).train()
    losses = assignment_step(model, CLIPS, torch.tensor([1, 2, 0]), TASK_IDS,
                             LWSConfig(nes_lr=0.1), torch.Generator().manual_seed(3))
    assert losses.shape == (8,) and torch.isfinite(losses).all()
    torch.testing.assert_close(cast(Any, model).routing_probs.sum(-1), torch.ones(2, 19))


@pytest.mark.parametrize("stages", [1, 2, 4])
def test_trainable_stages_freeze_the_leading_x3d_stages(stages: int) -> None:
    model = cast(Any, build_model(x3d_config("hps", trainable_stages=stages))).train()
    assert list(model.prefix.stages._modules) == list(STAGE_NAMES[: 5 - stages])
    assert all(not p.requires_grad for p in model.prefix.parameters())
    assert all(not m.training for m in model.prefix.modules())
    assert list(model.stages._modules) == list(STAGE_NAMES[5 - stages:])


def test_frame_differences_ignore_a_still_offset_on_x3d() -> None:
    # Adding the same image to every frame cancels in the differences, not in raw frames.
    for on in (True, False):
        model = scrambled(build_model(x3d_config("hps", frame_differences=on)))
        assert (offset_moves(model, CLIPS) < 1e-5) is on


def test_unknown_arch_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown arch 'x3d_q'; choose one of .*'x3d_s'"):
        ModelConfig(arch="x3d_q")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown arch"):
        build_backbone("r2d", 8)


def test_r3d_is_unchanged_by_the_stage_interface() -> None:
    # The paper's backbone keeps torchvision's names and its 512 features at width 64.
    backbone = build_backbone("r3d_18", 64)
    assert backbone.feature_dim == 512 and backbone.channels["layer3"] == 256
    assert sum(p.numel() for p in backbone.parameters()) == 33_371_472  # torchvision r3d_18
