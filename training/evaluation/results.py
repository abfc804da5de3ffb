"""The figures `scoring.Evaluator` returns: per task clip and video scores, cumulative
accuracies, the task gate's figures; JSON and flat summaries of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training.evaluation.gate_scores import GateScores, finite


@dataclass
class Scores:
    """Accuracy of one kind (clip or video) for one task."""

    correct: int
    total: int
    per_class: dict[str, float | None]  # None: no sample of that class was scored
    confusion: list[list[int]]  # [true class][predicted class]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


@dataclass
class TaskResult:
    """One task's figures; `video` is None when video accuracy was not asked for."""

    task: str
    class_names: list[str]
    videos: int  # labelled videos selected for scoring
    skipped: int  # of those, videos that failed to load (not scored)
    unlabelled: int  # samples left out because their list carries no label
    clip: Scores
    video: Scores | None = None

    @property
    def clip_accuracy(self) -> float:
        return self.clip.accuracy

    @property
    def video_accuracy(self) -> float | None:
        return None if self.video is None else self.video.accuracy


@dataclass
class EvaluationResult:
    """Every task's figures plus the cumulative accuracies (fractions in [0, 1])."""

    tasks: list[TaskResult]
    skipped_paths: list[str] = field(default_factory=list)
    gate: GateScores | None = None  # only for a model with a task gate

    def task(self, name: str) -> TaskResult:
        for result in self.tasks:
            if result.task == name:
                return result
        raise KeyError(f"no task {name!r} in this result: {[t.task for t in self.tasks]}")

    @property
    def cumulative_clip_accuracy(self) -> float:
        return cumulative([t.clip for t in self.tasks])

    @property
    def cumulative_video_accuracy(self) -> float | None:
        videos = [t.video for t in self.tasks]
        if any(v is None for v in videos):
            return None
        return cumulative([v for v in videos if v is not None])

    @property
    def skipped(self) -> int:
        return sum(t.skipped for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: accuracies as fractions, NaN (nothing scored) as null."""
        tasks: dict[str, Any] = {}
        for t in self.tasks:
            entry: dict[str, Any] = {
                "class_names": t.class_names,
                "videos": t.videos,
                "skipped": t.skipped,
                "unlabelled": t.unlabelled,
            }
            for kind, scores in (("clip", t.clip), ("video", t.video)):
                entry[f"{kind}_accuracy"] = None if scores is None else finite(scores.accuracy)
                entry[kind] = None if scores is None else {**asdict(scores)}
            tasks[t.task] = entry
        out = {
            "tasks": tasks,
            "cumulative_clip_accuracy": finite(self.cumulative_clip_accuracy),
            "cumulative_video_accuracy": finite(self.cumulative_video_accuracy),
            "skipped": self.skipped,
            "skipped_paths": list(self.skipped_paths),
        }
        if self.gate is not None:
            out["gate"] = self.gate.to_dict()
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def summary(self) -> dict[str, float]:
        """Flat scalars for logs and TensorBoard: `<task>/clip_accuracy`, `cumulative/...`."""
        out: dict[str, float] = {}
        for t in self.tasks:
            out[f"{t.task}/clip_accuracy"] = t.clip.accuracy
            if t.video is not None:
                out[f"{t.task}/video_accuracy"] = t.video.accuracy
        out["cumulative/clip_accuracy"] = self.cumulative_clip_accuracy
        video = self.cumulative_video_accuracy
        if video is not None:
            out["cumulative/video_accuracy"] = video
        if self.gate is not None:
            out["gate/accuracy"] = self.gate.accuracy
            out["gate/task_agnostic_clip_accuracy"] = self.gate.task_agnostic_accuracy
        return out


def scores_of(confusion: np.ndarray, class_names: Sequence[str]) -> Scores:
    per_row = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / per_row[i]) if per_row[i] else None)
        for i, name in enumerate(class_names)
    }
    return Scores(
        correct=int(np.trace(confusion)),
        total=int(confusion.sum()),
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def cumulative(scores: Sequence[Scores]) -> float:
    total = sum(s.total for s in scores)
    return sum(s.correct for s in scores) / total if total else float("nan")
