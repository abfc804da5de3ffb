"""Iteration-based multi-task batches (paper §4.2, "Multi-task Dataset").

Every global batch holds at least one sample of each task; the other slots
go to tasks in proportion to their training-set sizes (default) or evenly
(`balanced`), and within a task to a uniformly drawn sample (without
replacement inside one batch while the task has enough samples). With
`class_sampling="balanced"` a task's slots go to its classes evenly: a sample
of class c among K classes is drawn with probability 1 / (K * n_c) (n_c: the
samples of c), so a class with few samples (a new gesture taught from a few
takes, next to replayed old ones) is seen as often as the others; the rows
still go without replacement inside one batch. There are
no epochs: iteration i's batch is a pure function of (seed, stream, i),
drawn from `numpy.random.default_rng([seed, stream, i])` in the main
process, so it does not depend on the number of loader workers, on what
ran before, or on being resumed at i.

The sampler yields `(dataset_index, epoch)` keys, the form `ClipDataset`
accepts: the clip's own randomness (position, flip) is keyed by
`epoch = iteration * streams + stream`, so it too is a function of the
iteration. With several ranks each one takes its own contiguous slice of
the (shuffled) global batch: no overlap, and together exactly the batch a
single process would use. `streams = 2` serves LWS, whose assignment step
draws its batch separately from the weight step's: each yielded list is
stream 0's slice followed by stream 1's. With the task gate, the last list
holds the `none` clips (`extra_share`): it counts as one more "task" for the
one-of-each rule and gets that share of the remaining slots. With
`allow_empty` (fine-tuning: a checkpoint's task kept but not fed by the set)
an empty list is a task with no slot in any batch; the one-of-each rule and
the shares apply to the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

SAMPLINGS = ("proportional", "balanced")
CLASS_SAMPLINGS = ("uniform", "balanced")


class MultiTaskBatchSampler:
    """`batch_sampler` for a DataLoader over a `ClipDataset`; see the module docstring."""

    def __init__(
        self,
        task_indices: Sequence[Sequence[int]],
        batch_size: int,
        iterations: int,
        seed: int = 0,
        sampling: str = "proportional",
        start_iteration: int = 0,
        rank: int = 0,
        world_size: int = 1,
        streams: int = 1,
        extra_share: float = 0.0,
        allow_empty: bool = False,
        task_labels: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """`extra_share` > 0: the last list is not a task but the task gate's `none` clips;
        it gets that share of the slots and the tasks share the rest by `sampling`.
        `allow_empty`: an empty list is a task never drawn (see the module docstring).
        `task_labels`: the class of each sample of each list (same shapes as
        `task_indices`): given, each task's classes share its slots evenly
        (`class_sampling` balanced); None: a uniformly drawn sample of the task."""
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        empty = [len(t) == 0 for t in task_indices]
        if not task_indices or all(empty) or (any(empty) and not allow_empty):
            raise ValueError("every task needs at least one training sample")
        self.fed = np.array([not e for e in empty])
        if batch_size < int(self.fed.sum()):
            raise ValueError(
                f"batch_size {batch_size} cannot hold one sample of each of "
                f"{int(self.fed.sum())} tasks"
            )
        if world_size < 1 or not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} must split evenly over {world_size} processes "
                f"(rank {rank})"
            )
        if streams < 1 or not 0 <= start_iteration <= iterations:
            raise ValueError("streams must be >= 1 and 0 <= start_iteration <= iterations")
        self.tasks = [np.asarray(t, dtype=np.int64) for t in task_indices]
        self.batch_size, self.iterations, self.seed = batch_size, iterations, seed
        self.sampling, self.start_iteration, self.streams = sampling, start_iteration, streams
        self.rank, self.world_size = rank, world_size
        if not 0.0 <= extra_share < 1.0 or (extra_share and len(self.tasks) < 2):
            raise ValueError("extra_share must be in [0, 1), with a task list besides the extra")
        tasks = self.tasks[:-1] if extra_share else self.tasks
        sizes = np.array([len(t) for t in tasks], dtype=np.float64)
        fed = self.fed[:len(tasks)]
        self.task_probs = sizes / sizes.sum() if sampling == "proportional" else (
            np.where(fed, 1.0 / fed.sum(), 0.0))
        if extra_share:
            self.task_probs = np.append(self.task_probs * (1.0 - extra_share), extra_share)
        self.sample_probs: list[np.ndarray | None] = [None] * len(self.tasks)
        if task_labels is not None:
            if [len(x) for x in task_labels] != [len(t) for t in self.tasks]:
                raise ValueError("task_labels must hold one class per sample of each list")
            self.sample_probs = [class_balanced(labels) for labels in task_labels]

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def task_counts(self, iteration: int, stream: int = 0) -> list[int]:
        """Samples per task in the global batch of `iteration` (for exact loss scaling)."""
        counts = self._counts(self._rng(iteration, stream))
        return [int(c) for c in counts]

    def global_batch(self, iteration: int, stream: int = 0) -> list[int]:
        """Dataset indices of the whole batch of `iteration`, over every rank."""
        rng = self._rng(iteration, stream)
        counts = self._counts(rng)
        chosen = []
        for task, count, probs in zip(self.tasks, counts, self.sample_probs, strict=True):
            if count == 0:  # an empty task (allow_empty): never drawn
                continue
            picks = rng.choice(len(task), size=int(count), replace=bool(count > len(task)),
                               p=probs)
            chosen.append(task[picks])
        batch = np.concatenate(chosen)
        return [int(i) for i in batch[rng.permutation(len(batch))]]

    def local_batch(self, iteration: int, stream: int = 0) -> list[int]:
        """This rank's slice of the global batch."""
        size = self.local_batch_size
        return self.global_batch(iteration, stream)[self.rank * size : (self.rank + 1) * size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration in range(self.start_iteration, self.iterations):
            keys: list[tuple[int, int]] = []
            for stream in range(self.streams):
                epoch = iteration * self.streams + stream
                keys += [(i, epoch) for i in self.local_batch(iteration, stream)]
            yield keys

    def __len__(self) -> int:
        return self.iterations - self.start_iteration

    def _rng(self, iteration: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, iteration])

    def _counts(self, rng: np.random.Generator) -> np.ndarray:
        """One per (non-empty) task, the rest multinomial over the task probabilities."""
        extra = rng.multinomial(self.batch_size - int(self.fed.sum()), self.task_probs)
        return self.fed.astype(np.int64) + extra


def class_balanced(labels: Sequence[int]) -> np.ndarray | None:
    """Per-sample probabilities that give each class of `labels` the same share:
    1 / (K * n_c) for a sample of class c (K classes, n_c samples of c); None for
    an empty list or one with a single class (uniform draws are then the same)."""
    values, inverse, counts = np.unique(np.asarray(labels, dtype=np.int64),
                                        return_inverse=True, return_counts=True)
    if len(values) < 2:
        return None
    return 1.0 / (len(values) * counts[inverse].astype(np.float64))
