"""The task gate's figures in `training evaluate` (see `scoring`'s docstring): the gate's
confusion over (tasks, none) and the task-agnostic clip accuracy (right only when the gate
picks the clip's task AND that task's head its class)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class GateScores:
    """The task gate's figures (clip pass): see the module docstring.

    `confusion[true][predicted]` over `class_names` (the tasks, then `none`);
    `agnostic_correct[t]` of `agnostic_total[t]` clips of task t were right with
    the gate choosing the head.
    """

    class_names: list[str]
    confusion: list[list[int]]
    agnostic_correct: list[int]
    agnostic_total: list[int]

    @property
    def accuracy(self) -> float:
        total = sum(map(sum, self.confusion))
        right = sum(self.confusion[i][i] for i in range(len(self.confusion)))
        return right / total if total else float("nan")

    @property
    def task_agnostic_accuracy(self) -> float:
        total = sum(self.agnostic_total)
        return sum(self.agnostic_correct) / total if total else float("nan")

    def to_dict(self) -> dict[str, Any]:
        per_task = {
            name: (finite(c / n) if n else None)
            for name, c, n in zip(self.class_names, self.agnostic_correct, self.agnostic_total)
        }
        return {"class_names": self.class_names, "confusion": self.confusion,
                "accuracy": finite(self.accuracy),
                "task_agnostic_clip_accuracy": finite(self.task_agnostic_accuracy),
                "task_agnostic_per_task": per_task,
                "none_clips": sum(self.confusion[-1])}



def tally_gated(counts: list[np.ndarray], gate: np.ndarray, agnostic: np.ndarray,
                task_ids: np.ndarray, labels: np.ndarray, heads: Sequence[np.ndarray],
                chosen: np.ndarray) -> None:
    """Add one batch to the gated counts, in place.

    `task_ids`: each clip's task (num_tasks for a none clip); `labels`: its class;
    `heads[t]`: head t's predicted class for every clip; `chosen`: the gate's pick.
    `counts[t]` is task t's task-given confusion, `gate` the gate's confusion,
    `agnostic` (2, tasks): clips right with the gate choosing the head, clips.
    """
    np.add.at(gate, (task_ids, chosen), 1)
    for t, head in enumerate(heads):
        rows = task_ids == t
        np.add.at(counts[t], (labels[rows], head[rows]), 1)
        agnostic[0, t] += int(((chosen == t) & (head == labels) & rows).sum())
        agnostic[1, t] += int(rows.sum())


def finite(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)
