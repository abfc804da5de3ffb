"""SPS: cross-stitch initialisation, independence at s = 0, one prefix pass, optimiser groups."""

import pytest
import torch
from helpers_models import tiny_config

from mtl_perception.models import build_model

CLIPS = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("share", [0.2, 0.8])
def test_initial_matrices_are_one_minus_s_and_s_per_channel(share: float) -> None:
    model = build_model(tiny_config("sps", cross_stitch_share=share))
    assert len(model.stitches) == 2  # after layer3 and after layer4
    for stitch, channels in zip(model.stitches, (16, 32)):
        assert stitch.weight.shape == (2, 2, channels)
        expected = torch.tensor([[1 - share, share], [share, 1 - share]])
        for c in range(channels):
            torch.testing.assert_close(stitch.weight[:, :, c], expected)


def test_unit_mixes_columns_per_channel() -> None:
    model = build_model(tiny_config("sps", cross_stitch_share=0.2))
    stitch = model.stitches[0]
    xa, xb = torch.full((1, 16, 1, 1, 1), 2.0), torch.full((1, 16, 1, 1, 1), 10.0)
    out_a, out_b = stitch([xa, xb])
    torch.testing.assert_close(out_a, torch.full_like(xa, 0.8 * 2 + 0.2 * 10))
    torch.testing.assert_close(out_b, torch.full_like(xb, 0.2 * 2 + 0.8 * 10))


@pytest.mark.parametrize(("share", "independent"), [(0.0, True), (0.2, False)])
def test_columns_are_independent_only_when_s_is_zero(share: float, independent: bool) -> None:
    model = build_model(tiny_config("sps", cross_stitch_share=share)).train()
    task_a_logits, _ = model(CLIPS, torch.tensor([0, 0]))
    task_a_logits.pow(2).sum().backward()
    column_b_grads = [p.grad for p in model.columns[1].parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in column_b_grads)
    assert reached is not independent
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.columns[0].parameters())


def test_prefix_is_computed_once_for_both_columns() -> None:
    model = build_model(tiny_config("sps")).eval()
    calls = []
    model.prefix.register_forward_hook(lambda *_: calls.append(1))
    model.score_all(CLIPS)
    model(CLIPS, torch.tensor([0, 1]))
    assert len(calls) == 2


def test_cross_stitch_units_get_their_own_learning_rate() -> None:
    model = build_model(tiny_config("sps", cross_stitch_lr_multiplier=100.0))
    groups = {g["name"]: g for g in model.parameter_groups(lr=1e-3)}
    assert groups["cross_stitch"]["lr"] == pytest.approx(0.1)
    assert groups["model"]["lr"] == pytest.approx(1e-3)
    stitch_ids = {id(p) for p in groups["cross_stitch"]["params"]}
    assert stitch_ids == {id(p) for p in model.stitches.parameters()}
    assert not stitch_ids & {id(p) for p in groups["model"]["params"]}
