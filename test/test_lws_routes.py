"""The route tree of sampled LWS assignments equals one forward per assignment.

Two copies of one model take the same LWS step, one with the tree
(`reuse_routes`) and one with the reference's loop; gradients, BatchNorm
running statistics, losses and routing probabilities must agree to float32
rounding (the tree adds the same terms in another order), while the tree runs
fewer block forwards. A tree that dropped or reordered a running-statistics
update, or lost a branch's gradient, would differ by far more than that.
"""

import copy

import pytest
import torch
from helpers_models import tiny_config

from mtl_perception.models import build_model
from mtl_perception.models.lws import LearnedSharingModel
from training.methods.lws import LWSConfig, assignment_step, weight_step_gradients
from training.methods.lws_routes import routed_logits
from training.methods.weighting import build_weighting

CLIPS = torch.randn(6, 3, 8, 32, 32, generator=torch.Generator().manual_seed(11))
LABELS = torch.tensor([1, 2, 0, 3, 6, 4])
TASKS = torch.tensor([0, 1, 0, 1, 1, 0])


def twin_models(probs: torch.Tensor | None = None) -> tuple[LearnedSharingModel, ...]:
    torch.manual_seed(0)
    model = build_model(tiny_config("lws"))
    assert isinstance(model, LearnedSharingModel)
    if probs is not None:
        with torch.no_grad():
            model.routing_probs.copy_(probs)
    return model, copy.deepcopy(model)


def count_block_forwards(model: LearnedSharingModel) -> list[int]:
    calls: list[int] = []
    for copies in model.units.children():
        for block in copies.children():
            block.register_forward_hook(lambda *_: calls.append(1))
    return calls


SKEWED = torch.tensor([[[0.9, 0.1], [0.7, 0.3], [0.5, 0.5], [0.2, 0.8]],
                       [[0.3, 0.7], [0.5, 0.5], [0.6, 0.4], [0.1, 0.9]]])


@pytest.mark.parametrize("probs", [None, SKEWED], ids=["uniform", "skewed"])
@pytest.mark.parametrize("weighting_method", ["average", "uncertainty"])
def test_weight_step_tree_equals_one_forward_per_assignment(
    probs: torch.Tensor | None, weighting_method: str
) -> None:
    tree_model, loop_model = twin_models(probs)
    tree_calls, loop_calls = count_block_forwards(tree_model), count_block_forwards(loop_model)
    steps, weightings = [], []
    for model, reuse in ((tree_model, True), (loop_model, False)):
        weighting = build_weighting(weighting_method, 2)
        steps.append(weight_step_gradients(
            model, CLIPS, LABELS, TASKS, weighting, LWSConfig(reuse_routes=reuse),
            torch.Generator().manual_seed(7)))
        weightings.append(weighting)
    torch.testing.assert_close(steps[0].totals, steps[1].totals, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(tree_model.named_parameters(), loop_model.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    for (name, buf), loop_buf in zip(tree_model.named_buffers(), loop_model.buffers()):
        torch.testing.assert_close(buf, loop_buf, rtol=1e-5, atol=1e-6, msg=name)  # running stats
    for w_tree, w_loop in zip(weightings[0].parameters(), weightings[1].parameters()):
        torch.testing.assert_close(w_tree.grad, w_loop.grad, rtol=1e-5, atol=1e-6)
    # the loop: 8 assignments x 2 tasks x 4 units; the tree: one per distinct route prefix
    assert len(loop_calls) == 64
    assert len(tree_calls) < 64


def test_running_statistics_follow_the_loops_order_not_one_update_per_route() -> None:
    # Both tasks on copy 0 everywhere: every assignment is the same route, computed
    # once per task, but the loop updates each BatchNorm 8 x 2 times.
    probs = torch.tensor([[[1.0, 0.0]] * 4] * 2)
    tree_model, loop_model = twin_models(probs)
    calls = count_block_forwards(tree_model)
    for model, reuse in ((tree_model, True), (loop_model, False)):
        weight_step_gradients(model, CLIPS, LABELS, TASKS, build_weighting("average", 2),
                              LWSConfig(reuse_routes=reuse), torch.Generator().manual_seed(7))
    assert len(calls) == 2 * 4  # one route per task
    bn = tree_model.units[2][0].conv1[1]  # type: ignore[index]
    assert int(bn.num_batches_tracked) == 16
    for (name, a), b in zip(tree_model.named_buffers(), loop_model.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_tree_computes_each_distinct_route_prefix_once() -> None:
    model, _ = twin_models()
    calls = count_block_forwards(model)
    # task 0: routes 0000, 0001, 0110 -> prefixes {0, 00, 000, 0000, 0001, 01, 011, 0110}: 8
    # task 1: routes 1111 three times -> 4
    assignments = torch.tensor([
        [[0, 0, 0, 0], [1, 1, 1, 1]],
        [[0, 0, 0, 1], [1, 1, 1, 1]],
        [[0, 1, 1, 0], [1, 1, 1, 1]],
    ])
    model.eval()
    with torch.no_grad():
        shared = model.prefix(CLIPS)
        tree = routed_logits(model, shared, TASKS, assignments)
        assert len(calls) == 12
        for j, assignment in enumerate(assignments):
            direct = model.forward_from_prefix(shared, TASKS, assignment)
            for task in range(2):
                torch.testing.assert_close(tree[j][task], direct[task], rtol=1e-5, atol=1e-6)


def test_assignment_step_tree_equals_one_forward_per_assignment() -> None:
    tree_model, loop_model = twin_models(SKEWED)
    losses = [
        assignment_step(model, CLIPS, LABELS, TASKS, LWSConfig(nes_lr=0.1, reuse_routes=reuse),
                        torch.Generator().manual_seed(3))
        for model, reuse in ((tree_model, True), (loop_model, False))
    ]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tree_model.routing_probs, loop_model.routing_probs)
    assert not torch.equal(tree_model.routing_probs, SKEWED)
    for a, b in zip(tree_model.buffers(), loop_model.buffers()):
        torch.testing.assert_close(a, b)  # eval mode: no statistics moved


def test_a_task_absent_from_the_batch_gets_empty_logits_and_no_updates() -> None:
    tree_model, loop_model = twin_models()
    only_action = TASKS.eq(0)
    for model, reuse in ((tree_model, True), (loop_model, False)):
        weight_step_gradients(model, CLIPS[only_action], LABELS[only_action], TASKS[only_action],
                              build_weighting("average", 2), LWSConfig(reuse_routes=reuse),
                              torch.Generator().manual_seed(9))
    for (name, a), b in zip(tree_model.named_buffers(), loop_model.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert all(p.grad is None for p in tree_model.heads[1].parameters())
