"""Multi-task batch sampler: every task in every batch, proportions, determinism, ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_datasets import stand_in_video
from torch.utils.data import DataLoader

from mtl_perception.preprocess import PreprocessConfig
from training.datasets.clip_dataset import ClipDataset, ClipSamplingConfig, collate_clips
from training.datasets.sample import VideoSample
from training.methods.sampler import MultiTaskBatchSampler

A = list(range(30))  # task 0: 30 samples (75 %)
B = list(range(30, 40))  # task 1: 10 samples


def _task_of(index: int) -> int:
    return 0 if index < 30 else 1


def test_every_batch_holds_every_task_and_only_known_indices() -> None:
    sampler = MultiTaskBatchSampler([A, B], batch_size=3, iterations=500, seed=1)
    for it in range(500):
        batch = sampler.global_batch(it)
        assert len(batch) == 3
        assert {_task_of(i) for i in batch} == {0, 1}
        assert sampler.task_counts(it) == [sum(_task_of(i) == t for i in batch) for t in (0, 1)]


@pytest.mark.parametrize(("sampling", "expected_a"), [("proportional", 5.5), ("balanced", 4.0)])
def test_proportions(sampling: str, expected_a: float) -> None:
    """Batch 8: one sample per task, the other 6 drawn with p(A) = 0.75 (proportional) or
    0.5 (balanced), so E[A per batch] = 1 + 6p. Over 2000 batches the count of A is
    binomial(12000, p) + 2000 with sd sqrt(12000 p (1-p)) = 47 (p = .75) or 55 (p = .5);
    the bound of 5 sd is crossed by luck with probability < 1e-6, while the other
    mode's mean lies 3000 samples (> 50 sd) away, so a swapped or ignored mode fails."""
    iterations = 2000
    sampler = MultiTaskBatchSampler([A, B], 8, iterations, seed=3, sampling=sampling)
    count_a = sum(sum(_task_of(i) == 0 for i in sampler.global_batch(it))
                  for it in range(iterations))
    p = (expected_a - 1) / 6
    sd = np.sqrt(iterations * 6 * p * (1 - p))
    assert abs(count_a - expected_a * iterations) < 5 * sd


def test_deterministic_per_seed_and_iteration_not_history() -> None:
    one = MultiTaskBatchSampler([A, B], 8, 100, seed=5)
    resumed = MultiTaskBatchSampler([A, B], 8, 100, seed=5, start_iteration=60)
    other_seed = MultiTaskBatchSampler([A, B], 8, 100, seed=6)
    full = list(one)
    assert list(resumed) == full[60:]  # what a resumed run draws
    assert full[60] == [(i, 60) for i in one.global_batch(60)]
    assert [other_seed.global_batch(i) for i in range(5)] != [one.global_batch(i) for i in range(5)]


def test_ranks_split_the_global_batch_without_overlap() -> None:
    single = MultiTaskBatchSampler([A, B], 8, 20, seed=2)
    ranks = [MultiTaskBatchSampler([A, B], 8, 20, seed=2, rank=r, world_size=4) for r in range(4)]
    for it in range(20):
        parts = [r.local_batch(it) for r in ranks]
        assert all(len(p) == 2 for p in parts)
        assert [i for p in parts for i in p] == single.global_batch(it)
    with pytest.raises(ValueError, match="split evenly"):
        MultiTaskBatchSampler([A, B], 8, 20, rank=0, world_size=3)


def test_two_streams_are_independent_batches() -> None:
    sampler = MultiTaskBatchSampler([A, B], 4, 10, seed=0, streams=2)
    keys = next(iter(sampler))
    assert [k[1] for k in keys] == [0] * 4 + [1] * 4  # clip randomness keyed per stream
    assert [k[0] for k in keys[:4]] == sampler.global_batch(0, 0)
    assert [k[0] for k in keys[4:]] == sampler.global_batch(0, 1)
    assert sampler.global_batch(0, 0) != sampler.global_batch(0, 1)


def test_refuses_a_batch_too_small_for_every_task() -> None:
    with pytest.raises(ValueError, match="one sample of each"):
        MultiTaskBatchSampler([A, B, [41]], 2, 10)
    with pytest.raises(ValueError, match="at least one"):
        MultiTaskBatchSampler([A, []], 4, 10)


def test_same_batches_for_0_and_2_workers(tmp_path: Path) -> None:
    """Real videos through a DataLoader: identical clips (random positions and flips
    included) whatever the worker count."""
    items = []
    for i in range(6):
        path = stand_in_video(tmp_path / f"v{i}.avi", frames=12, width=32, height=24)
        items.append((VideoSample(path, label=i % 2), 0 if i < 4 else 1))
    dataset = ClipDataset(items, "train", PreprocessConfig(clip_length=4, resize=(24, 32),
                                                           crop=(16, 16)),
                          ClipSamplingConfig(seed=9, flip_tasks=(0,)))
    task_indices = [dataset.indices_of_task(0), dataset.indices_of_task(1)]

    def batches(workers: int) -> list[tuple[torch.Tensor, ...]]:
        sampler = MultiTaskBatchSampler(task_indices, 4, 6, seed=4)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                            collate_fn=collate_clips)
        return list(loader)

    zero, two = batches(0), batches(2)
    assert len(zero) == len(two) == 6
    for a, b in zip(zero, two):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    # and the clips really differ between iterations (positions are keyed by iteration)
    assert not torch.equal(zero[0][0], zero[1][0])


def test_an_empty_task_allowed_gets_no_slot_and_the_others_keep_theirs() -> None:
    """Fine-tuning with a checkpoint task the set does not feed (kept, not trained)."""
    sampler = MultiTaskBatchSampler([[], A, B], 4, 50, seed=1, sampling="balanced",
                                    allow_empty=True)
    for it in range(50):
        counts = sampler.task_counts(it)
        assert counts[0] == 0 and min(counts[1:]) >= 1 and sum(counts) == 4
        assert {_task_of(i) for i in sampler.global_batch(it)} == {0, 1}
    assert list(sampler.task_probs) == [0.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="at least one"):
        MultiTaskBatchSampler([[], []], 4, 10, allow_empty=True)


def test_class_balanced_gives_each_class_of_a_task_the_same_share() -> None:
    """Task A: classes 0 (20 samples, A[:20]) and 1 (10 samples, A[20:]); task B: one class.
    Balanced, a sample of class c among 2 is drawn with p = 1 / (2 n_c): 1/40 for class 0,
    1/20 for class 1, so each class gets half of A's slots (uniform: 2/3 and 1/3). Batch 4,
    3000 iterations, p(A) = 0.5 for the 2 free slots: E[A slots] = 3000 * 2 = 6000, of
    which class 1 holds half (3000; sd of the class-1 count <= sqrt(6000 / 4) + A's own
    spread, under 60 together), uniform draws a third (2000, > 15 sd away)."""
    labels_a = [0] * 20 + [1] * 10
    sampler = MultiTaskBatchSampler([A, B], 4, 3000, seed=7, sampling="balanced",
                                    task_labels=[labels_a, [5] * len(B)])
    assert sampler.sample_probs[1] is None  # one class: uniform draws, the same thing
    probs = sampler.sample_probs[0]
    assert probs is not None
    assert probs[:20] == pytest.approx([1 / 40] * 20) and probs[20:] == pytest.approx([1 / 20] * 10)
    drawn = [i for it in range(3000) for i in sampler.global_batch(it) if i < 30]
    class_one = sum(i >= 20 for i in drawn)
    assert abs(class_one - len(drawn) / 2) < 5 * 60
    uniform = MultiTaskBatchSampler([A, B], 4, 3000, seed=7, sampling="balanced")
    drawn_u = [i for it in range(3000) for i in uniform.global_batch(it) if i < 30]
    assert abs(sum(i >= 20 for i in drawn_u) - len(drawn_u) / 3) < 5 * 60


def test_class_balanced_keeps_draws_without_replacement_and_checks_its_labels() -> None:
    sampler = MultiTaskBatchSampler([A, B], 8, 200, seed=2, task_labels=[[0] * 29 + [1],
                                                                         [0] * 5 + [1] * 5])
    for it in range(200):
        batch = sampler.global_batch(it)
        assert len(set(batch)) == len(batch)  # 30 and 10 samples: enough for one batch
    with pytest.raises(ValueError, match="one class per sample"):
        MultiTaskBatchSampler([A, B], 8, 10, task_labels=[[0] * 30, [0] * 9])
