"""LWS: uniform start, the NES step by hand, argmax inference, gradient normalisation."""

import pytest
import torch
from helpers_models import tiny_config

from mtl_perception.models import build_model
from training.methods.lws import (
    LWSConfig,
    assignment_step,
    nes_update,
    normalise_gradients,
    rank_utilities,
    sample_assignments,
    weight_step_gradients,
)
from training.methods.weighting import WeightingConfig, build_weighting

CLIPS = torch.randn(4, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))
LABELS = torch.tensor([1, 2, 0, 3])
TASKS = torch.tensor([0, 1, 0, 1])


def lws_model() -> torch.nn.Module:
    return build_model(tiny_config("lws"))


def test_probabilities_start_uniform_over_one_copy_per_task() -> None:
    model = lws_model()
    assert model.unit_names == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert model.routing_probs.shape == (2, 4, 2)
    assert torch.all(model.routing_probs == 0.5)
    # Uniform ties go to the task's own copy: the model starts as two separate backbones.
    assert model.argmax_assignment().tolist() == [[0, 0, 0, 0], [1, 1, 1, 1]]


def test_utilities_are_linear_in_rank_best_plus_one_worst_minus_one() -> None:
    utilities = rank_utilities(torch.tensor([3.0, 1.0, 2.0, 4.0]))
    torch.testing.assert_close(utilities, torch.tensor([-1 / 3, 1.0, 1 / 3, -1.0]))
    assert utilities.sum().abs() < 1e-6


def test_one_nes_update_matches_the_formula_by_hand() -> None:
    probs = torch.full((2, 1, 2), 0.5)  # 2 tasks, 1 unit, 2 copies
    assignments = torch.tensor([[[0], [1]], [[1], [1]], [[0], [0]]])
    losses = torch.tensor([2.0, 1.0, 3.0])  # utilities: 0, +1, -1
    # Task 0: g = ((+1)([0,1]-p) + (-1)([1,0]-p)) / 3 = [-1/3, 1/3]; p + 0.3 g = [0.4, 0.6].
    # Task 1: draws 1, 1, 0 with the same utilities give the same g.
    updated = nes_update(probs, assignments, losses, lr=0.3, p_min=1e-3)
    torch.testing.assert_close(updated, torch.tensor([[[0.4, 0.6]], [[0.4, 0.6]]]))


def test_nes_update_clamps_then_renormalises() -> None:
    probs = torch.tensor([[[0.01, 0.99]]])
    assignments = torch.tensor([[[1]], [[0]]])
    losses = torch.tensor([1.0, 2.0])  # copy 1 wins (+1), copy 0 loses (-1)
    # g = mean([-0.01, 0.01], -[0.99, -0.99]) = [-0.5, 0.5]; p + 0.1 g = [-0.04, 1.04]
    # clamp at 0.001 -> [0.001, 1.04]; renormalise by 1.041.
    updated = nes_update(probs, assignments, losses, lr=0.1, p_min=1e-3)
    torch.testing.assert_close(updated, torch.tensor([[[0.001 / 1.041, 1.04 / 1.041]]]))


def test_sampled_assignments_follow_the_probabilities() -> None:
    probs = torch.tensor([[[0.9, 0.1], [0.0, 1.0]], [[0.5, 0.5], [1.0, 0.0]]])
    draws = sample_assignments(probs, 4000, torch.Generator().manual_seed(0))
    assert draws.shape == (4000, 2, 2)
    assert abs(draws[:, 0, 0].float().mean().item() - 0.1) < 0.02
    assert torch.all(draws[:, 0, 1] == 1) and torch.all(draws[:, 1, 1] == 0)
    assert abs(draws[:, 1, 0].float().mean().item() - 0.5) < 0.03


def test_inference_uses_the_argmax_copy_of_each_task() -> None:
    model = lws_model().eval()
    with torch.no_grad():
        model.routing_probs.copy_(
            torch.tensor(
                [
                    [[0.3, 0.7], [0.9, 0.1], [0.5, 0.5], [0.2, 0.8]],
                    [[0.6, 0.4], [0.5, 0.5], [0.5, 0.5], [0.1, 0.9]],
                ]
            )
        )
    assert model.argmax_assignment().tolist() == [[1, 0, 0, 1], [0, 1, 1, 1]]
    with torch.no_grad():
        scores = model.score_all(CLIPS)
        x = model.prefix(CLIPS)
        for unit, copy_index in enumerate([1, 0, 0, 1]):
            x = model.units[unit][copy_index](x)
        expected = model.heads[0](model.pool(x).flatten(1))
    torch.testing.assert_close(scores[0], expected)


def test_inference_computes_a_shared_leading_route_once() -> None:
    model = lws_model().eval()
    with torch.no_grad():  # both tasks on copy 0 for the first two units, then apart
        model.routing_probs.copy_(
            torch.tensor([[[0.9, 0.1]] * 2 + [[0.5, 0.5]] * 2, [[0.9, 0.1]] * 2 + [[0.5, 0.5]] * 2])
        )
    calls: dict[tuple[int, int], int] = {}
    for unit, copies in enumerate(model.units):
        for copy_index, block in enumerate(copies):
            block.register_forward_hook(
                lambda *_, key=(unit, copy_index): calls.__setitem__(key, calls.get(key, 0) + 1)
            )
    prefix_calls = []
    model.prefix.register_forward_hook(lambda *_: prefix_calls.append(1))
    model.score_all(CLIPS)
    assert calls == {(0, 0): 1, (1, 0): 1, (2, 0): 1, (3, 0): 1, (2, 1): 1, (3, 1): 1}
    assert len(prefix_calls) == 1


def test_assignment_step_moves_probabilities_without_touching_weights_or_bn() -> None:
    model = lws_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items() if k != "routing_probs"}
    losses = assignment_step(
        model, CLIPS, LABELS, TASKS, LWSConfig(nes_lr=0.1), torch.Generator().manual_seed(3)
    )
    assert losses.shape == (8,)
    assert model.training  # restored
    assert not torch.allclose(model.routing_probs, torch.full((2, 4, 2), 0.5))
    torch.testing.assert_close(model.routing_probs.sum(-1), torch.ones(2, 4))
    for key, value in model.state_dict().items():
        if key != "routing_probs":
            torch.testing.assert_close(value, before[key], msg=key)


def test_gradient_normalisation_divides_by_expected_usage() -> None:
    model = lws_model()
    with torch.no_grad():
        model.routing_probs.copy_(torch.tensor([[[0.8, 0.2]] * 4, [[0.4, 0.6]] * 4]))
    for param in model.parameters():
        if param.requires_grad:
            param.grad = torch.ones_like(param)
    normalise_gradients(model, samples=8)
    # expected usage of copy k = (p[0,k] + p[1,k]) * 8: copy 0 -> 9.6, copy 1 -> 6.4
    assert torch.allclose(model.units[0][0].conv1[0].weight.grad, torch.tensor(1 / 9.6))
    assert torch.allclose(model.units[3][1].conv2[1].bias.grad, torch.tensor(1 / 6.4))
    assert torch.allclose(model.heads[1].weight.grad, torch.tensor(1 / 8))


def test_weight_step_accumulates_gradients_over_sampled_assignments() -> None:
    model = lws_model()
    weighting = build_weighting("average", 2)
    step = weight_step_gradients(
        model,
        CLIPS,
        LABELS,
        TASKS,
        weighting,
        LWSConfig(sgd_samples=3),
        torch.Generator().manual_seed(4),
    )
    totals = step.totals
    assert totals.shape == (3,) and torch.all(totals > 0)
    assert step.weights == [0.5, 0.5]
    assert all(p.grad is None for p in model.prefix.parameters())
    assert all(p.grad is not None for p in model.heads.parameters())


def test_assignment_shape_is_checked() -> None:
    model = lws_model()
    with pytest.raises(ValueError, match=r"assignment must be shaped \(2, 4\)"):
        model(CLIPS, TASKS, torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize("bad", [torch.full((2, 4), 2), torch.full((2, 4), -1), torch.zeros(2, 4)])
def test_assignment_values_are_checked(bad: torch.Tensor) -> None:
    # -1 would otherwise pick the last copy and a float tensor would index by truncation.
    model = lws_model()
    with pytest.raises(ValueError, match=r"copy indices must be in 0..1|integer copy indices"):
        model(CLIPS, TASKS, bad)


def test_empty_batch_gives_empty_logits_like_the_other_models() -> None:
    model = lws_model().eval()
    empty = CLIPS[:0]
    assert [tuple(x.shape) for x in model(empty, TASKS[:0])] == [(0, 5), (0, 7)]
    assert [tuple(x.shape) for x in model.score_all(empty)] == [(0, 5), (0, 7)]


def test_training_steps_compute_the_frozen_prefix_once_per_batch() -> None:
    model = lws_model()
    calls = []
    model.prefix.register_forward_hook(lambda *_: calls.append(1))
    assignment_step(model, CLIPS, LABELS, TASKS, LWSConfig(), torch.Generator().manual_seed(5))
    assert len(calls) == 1  # 8 sampled assignments, one prefix pass
    weighting = build_weighting("average", 2)
    weight_step_gradients(model, CLIPS, LABELS, TASKS, weighting, LWSConfig())
    assert len(calls) == 2


def test_weight_step_records_dwa_statistics_once_per_iteration() -> None:
    # A DWA window counts iterations; 3 sampled assignments must not make it 3x shorter.
    model = lws_model()
    weighting = build_weighting("dwa", 2, WeightingConfig(method="dwa", dwa_window=2))
    config = LWSConfig(sgd_samples=3)
    totals = []
    for seed in (6, 7):
        step = weight_step_gradients(
            model, CLIPS, LABELS, TASKS, weighting, config, torch.Generator().manual_seed(seed)
        )
        totals.append(step.totals)
        assert step.weights == [1.0, 1.0]
    assert int(weighting.windows_done) == 1 and int(weighting.window_step) == 0
    # lambda = 1 and both tasks present: total_j = L_0 + L_1 under assignment j, so the
    # two window means add up to the mean of all six totals.
    torch.testing.assert_close(
        weighting.past_means[1].sum(), torch.cat(totals).mean().double(), rtol=1e-6, atol=1e-6
    )


def test_weight_step_normalises_learned_loss_weight_gradients_by_samples() -> None:
    # Each task on its own copy with probability 1: every sampled assignment is the
    # argmax one, so each gives the same L_i. At s = 0, d/ds_i [0.5 e^-s L_i + 0.5 s] =
    # 0.5 - 0.5 L_i per assignment; summed over 3 and divided by 3, it is that once.
    model = lws_model()
    with torch.no_grad():
        model.routing_probs.copy_(torch.tensor([[[1.0, 0.0]] * 4, [[0.0, 1.0]] * 4]))
    weighting = build_weighting("uncertainty", 2)
    weight_step_gradients(model, CLIPS, LABELS, TASKS, weighting, LWSConfig(sgd_samples=3))
    with torch.no_grad():
        logits = model.train()(CLIPS, TASKS)
    losses = torch.stack(
        [torch.nn.functional.cross_entropy(x, LABELS[TASKS.eq(t)]) for t, x in enumerate(logits)]
    )
    torch.testing.assert_close(weighting.log_var.grad, 0.5 - 0.5 * losses, rtol=1e-4, atol=1e-5)
