"""LWS in training: per-task BatchNorm statistics, and NES moving towards a rigged copy."""

from __future__ import annotations

from contextlib import nullcontext
from typing import cast

import pytest
import torch
from torch import nn

from mtl_perception.models import ModelConfig, build_model
from mtl_perception.models.lws import LearnedSharingModel
from training.methods.lws import LWSConfig, per_task_forward
from training.methods.weighting import build_weighting
from training.train.distributed import DistContext
from training.train.steps import Batch, Stepper


def _model(seed: int = 0) -> LearnedSharingModel:
    torch.manual_seed(seed)
    config = ModelConfig(method="lws", width=4, trainable_stages=1, num_classes=(3, 4))
    return cast(LearnedSharingModel, build_model(config))


def _first_bn(model: LearnedSharingModel, copy: int) -> nn.BatchNorm3d:
    block = cast(nn.ModuleList, model.units[0])[copy]
    return cast(nn.BatchNorm3d, block.conv1[1])  # type: ignore[index]


def test_per_task_forward_normalises_each_task_over_its_own_samples() -> None:
    """Both tasks routed to copy 0: the reference's per-task forward gives BatchNorm one
    task's samples at a time (batch sizes 3 then 2); the shared forward gives it all 5.
    Each task's logits equal a forward of that task's samples alone."""
    torch.manual_seed(1)
    model = _model().train()
    clips = torch.randn(5, 3, 4, 16, 16)
    task_ids = torch.tensor([0, 1, 0, 1, 0])
    shared = model.prefix(clips)
    route = torch.zeros(2, model.num_units, dtype=torch.long)
    seen: list[int] = []
    hook = _first_bn(model, 0).register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    per_task = per_task_forward(model, shared, task_ids, route)
    assert seen == [3, 2]
    seen.clear()
    joint = model.forward_from_prefix(shared, task_ids, route)
    assert seen == [5]
    hook.remove()
    alone = model.forward_from_prefix(shared[[0, 2, 4]], task_ids[[0, 2, 4]], route)[0]
    assert torch.allclose(per_task[0], alone, atol=1e-6)
    assert not torch.allclose(per_task[0], joint[0], atol=1e-3)  # the statistics differ
    assert per_task[1].shape == (2, 4)
    empty = per_task_forward(model, shared[[0, 2]], task_ids[[0, 2]], route)
    assert empty[1].shape == (0, 4)


@pytest.mark.parametrize("bad", [0, 1])
def test_probabilities_move_to_the_rigged_copy_and_inference_follows(bad: int) -> None:
    """Copy `bad` of every unit is sabotaged (the scale of its last BatchNorm multiplied
    by 100, which no running statistic undoes, so its features explode and the heads'
    logits with them: high cross-entropy); with the weights' learning rate ~0 nothing
    repairs it. Trainer steps (NES on its own batch, then the weight step) must move
    every task's probability of the other copy above 0.75 (from 0.5; measured 0.98-0.999
    for both rigs; 0.91-1.0 after only 30 iterations over three data seeds) and
    inference (argmax) must then route every task through it.
    Rigging each copy in turn shows the move follows the rig, not a bias."""
    good = 1 - bad
    model = _model(2)
    with torch.no_grad():
        for copies in model.units:
            block = cast(nn.ModuleList, copies)[bad]
            block.conv2[1].weight.mul_(100)  # type: ignore[index]
    weighting = build_weighting("average", 2)
    optimizer = torch.optim.Adam(model.parameter_groups(1e-9))
    stepper = Stepper(model, weighting, optimizer, DistContext(), nullcontext,
                      torch.amp.GradScaler("cpu", enabled=False),
                      LWSConfig(nes_samples=8, sgd_samples=2, nes_lr=0.2))
    torch.manual_seed(3)
    for iteration in range(50):
        clips = torch.randn(6, 3, 4, 16, 16)
        labels = torch.tensor([0, 1, 2, 0, 3, 1])
        task_ids = torch.tensor([0, 0, 0, 1, 1, 1])
        batch = Batch(clips, labels, task_ids, [3, 3])
        nes = Batch(clips.flip(0), labels.flip(0), task_ids.flip(0), [3, 3])
        result = stepper.step(batch, torch.Generator().manual_seed(iteration), nes)
    probs = model.routing_probs
    assert result.lws_probs is not None and torch.equal(result.lws_probs, probs)
    assert bool((probs[:, :, good] > 0.75).all()), probs
    assert bool((model.argmax_assignment() == good).all())
    model.eval()
    clips = torch.randn(4, 3, 4, 16, 16)
    scores = model.score_all(clips)
    route = torch.full((2, model.num_units), good, dtype=torch.long)
    for task in (0, 1):
        ids = torch.full((4,), task)
        expected = model.forward_from_prefix(model.prefix(clips), ids, route)[task]
        assert torch.allclose(scores[task], expected, atol=1e-6)
