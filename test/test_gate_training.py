"""The task gate learns: jointly (the trainer's step) and fitted on frozen features.

Three gate classes on toy clips whose motion tells them apart: a square moving
sideways (task 0), up and down (task 1), or a square that stays put (none).
Chance is 1/3; the tests ask for at least 50 right of 60 held-out clips. A
gate that guesses gets 50 or more right with probability
sum_{k>=50} C(60, k) (1/3)^k (2/3)^(60-k) < 1e-13, so luck cannot pass; and
the same seeds give the same result on every run.
"""

from contextlib import nullcontext

import pytest
import torch
from helpers_models import tiny_config

from mtl_perception.models import build_model
from training.methods.lws import LWSConfig
from training.methods.weighting import build_weighting
from training.train.distributed import DistContext
from training.train.steps import Batch, Stepper

FRAMES, SIZE = 4, 16


def toy_clips(kinds: torch.Tensor, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, T, H, W) clips of a bright 4x4 square on noise: kind 0 moves along x, 1
    along y, 2 stays; and the task label: 1 when the square moves backwards."""
    n = len(kinds)
    clips = 0.3 * torch.randn(n, 3, FRAMES, SIZE, SIZE, generator=generator)
    start = torch.randint(5, SIZE - 9, (n, 2), generator=generator)
    backwards = torch.randint(0, 2, (n,), generator=generator)
    for i, kind in enumerate(kinds.tolist()):
        step = -2 if backwards[i] else 2
        for t in range(FRAMES):
            dy, dx = {0: (0, step * t), 1: (step * t, 0), 2: (0, 0)}[kind]
            y, x = int(start[i, 0]) + dy, int(start[i, 1]) + dx
            clips[i, :, t, y:y + 4, x:x + 4] += 2.0
    return clips, backwards


def held_out_accuracy(model, generator: torch.Generator) -> float:
    kinds = torch.arange(60) % 3
    model.eval()
    with torch.no_grad():
        gate = model.score_all(toy_clips(kinds, generator)[0])[-1]
    return float((gate.argmax(dim=1) == kinds).float().mean())


@pytest.mark.parametrize("method", ["hps", "sps", "lws"])
def test_joint_training_teaches_the_gate_far_above_chance(method):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = tiny_config(method, gate=True, gate_hidden=16, num_classes=(2, 2),
                         frame_differences=True, trainable_stages=3)
    model = build_model(config)
    weighting = build_weighting("average", 2)
    optimizer = torch.optim.Adam(model.parameter_groups(3e-3))
    stepper = Stepper(model, weighting, optimizer, DistContext(), nullcontext,
                      torch.amp.GradScaler("cpu", enabled=False),
                      LWSConfig(nes_samples=2, sgd_samples=1), gate=(1.0, False))
    data = torch.Generator().manual_seed(1)
    for _ in range(40):
        kinds = torch.tensor([0, 1, 2] * 3)
        clips, labels = toy_clips(kinds, data)
        counts = [int((kinds == k).sum()) for k in range(3)]
        result = stepper.step(Batch(clips, labels, kinds, counts), torch.Generator())
        assert result.gate_loss is not None
    accuracy = held_out_accuracy(model, torch.Generator().manual_seed(2))
    assert accuracy >= 50 / 60, accuracy


@pytest.mark.numerics
def test_without_gate_settings_the_step_is_the_paper_step():
    """gate=None: the same numbers as a Stepper built before the gate existed."""
    runs = []
    for gate in (None, "absent"):
        torch.manual_seed(0)
        model = build_model(tiny_config("hps", num_classes=(2, 2)))
        optimizer = torch.optim.Adam(model.parameter_groups(1e-3))
        args = (model, build_weighting("average", 2), optimizer, DistContext(), nullcontext,
                torch.amp.GradScaler("cpu", enabled=False), LWSConfig())
        stepper = Stepper(*args) if gate == "absent" else Stepper(*args, gate=None)
        g = torch.Generator().manual_seed(1)
        kinds = torch.tensor([0, 1, 0, 1])
        clips, labels = toy_clips(kinds, g)
        result = stepper.step(Batch(clips, labels, kinds, [2, 2]), torch.Generator())
        assert result.gate_loss is None
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_fit_gate_on_frozen_features_far_above_chance():
    """fit-gate's fit: a frozen, untrained model's features, a gate fitted on them alone."""
    from training.methods.gate_fit import GateFitConfig, fit_gate, gate_confusion

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(tiny_config("sps", num_classes=(2, 2), frame_differences=True,
                                    trainable_stages=3)).eval()
    before = [p.detach().clone() for p in model.parameters()]

    def features(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        kinds = torch.arange(count) % 3
        clips = toy_clips(kinds, torch.Generator().manual_seed(seed))[0]
        with torch.no_grad():
            return model.gate_features(clips), kinds

    train_f, train_l = features(300, 1)
    gate = fit_gate(train_f, train_l, 2, GateFitConfig(hidden=16, steps=300))
    test_f, test_l = features(60, 2)
    confusion = gate_confusion(gate, test_f, test_l, 3)
    assert confusion.trace() >= 50, confusion
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # frozen
    with pytest.raises(ValueError, match=r"gate class\(es\) \[2\]"):
        fit_gate(train_f[train_l < 2], train_l[train_l < 2], 2)


def test_sampler_gives_none_clips_their_share_and_one_slot_at_least():
    from training.methods.sampler import MultiTaskBatchSampler

    lists = [list(range(0, 30)), list(range(30, 40)), list(range(40, 45))]  # action, gesture, none
    proportional = MultiTaskBatchSampler(lists, 8, 50, extra_share=0.25)
    assert proportional.task_probs.tolist() == [0.75 * 30 / 40, 0.75 * 10 / 40, 0.25]
    balanced = MultiTaskBatchSampler(lists, 8, 50, sampling="balanced", extra_share=0.2)
    assert balanced.task_probs.tolist() == [0.4, 0.4, 0.2]
    for iteration in range(50):
        counts = balanced.task_counts(iteration)
        assert sum(counts) == 8 and min(counts) >= 1
        batch = balanced.global_batch(iteration)
        assert sum(i >= 40 for i in batch) == counts[2]
    plain = MultiTaskBatchSampler(lists[:2], 8, 50)  # without the gate: as before
    assert plain.task_probs.tolist() == [0.75, 0.25]


@pytest.mark.parametrize(("changes", "words"), [
    ({"loss_weight": 1e308}, "gate.loss_weight must be in (0, 1000]"),  # overflowed to NaN
    ({"loss_weight": 0.0}, "gate.loss_weight must be in (0, 1000]"),
    ({"none_share": 1.0}, "gate.none_share in (0, 1)"),
])
def test_gate_settings_out_of_range_are_refused_before_training(changes, words):
    from training.train.config import GateSettings

    with pytest.raises(ValueError) as caught:
        GateSettings(**changes)
    assert words in str(caught.value)
