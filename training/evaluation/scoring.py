"""Score a multi-task model on a labelled split: the one evaluation of METHODS.md §4.

Used by `python -m training evaluate`, by the trainer's periodic validation and
by the experiment grid, so every accuracy in the project is computed here:

- clip accuracy: one centre clip per video (`ClipDataset` mode `centre`);
- video accuracy: the mean softmax over `num_eval_clips` evenly spaced clips
  (mode `all`), then its argmax;
- cumulative accuracy: correct predictions over both tasks / all predictions
  (the paper's Table 2), for clips and for videos;
- per-class accuracy and confusion counts (`confusion[true][predicted]`).

Each sample is scored by its own task's head through `model.forward(clips,
task_ids)` (mixed-task batches, as in training), in eval mode, without
gradients, optionally under autocast; the model's training mode is restored
afterwards so the trainer can call this mid-run. Pass the bare model, not a
DistributedDataParallel wrapper (`ddp.module`), and call it on one rank.

Videos that fail to load are skipped (ClipDataset yields None for them) and
counted per task: an accuracy must not count another video twice. Samples
without a label (`UNLABELLED`) cannot be scored and are left out, counted.

Task gate (a model with `gate`): the clip pass scores every clip with every
head and the gate (`score_all`) and adds `EvaluationResult.gate`: the gate's
confusion over the task clips (true class = the clip's task) and the `none`
clips given as `none_samples` (centre clips of unlabelled stretches), the gate
accuracy, and the task-agnostic clip accuracy: a task clip counts as right
only when the gate picks its task AND that task's head its class (what a
robot that is told nothing gets). Task-given accuracies stay as above.

Cheap periodic validation: `EvalConfig(max_videos=N, video_accuracy=False)`
scores N videos per task, evenly spread over the split's list (lists are
usually sorted by class, so every class is still seen), centre clips only.
Build one `Evaluator` and call it at every validation: its datasets (and the
bad-file flags they hold) are built once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from mtl_perception.models import MultiTaskModel
from mtl_perception.models.gate import alone
from mtl_perception.names import workers_problem
from mtl_perception.preprocess import PreprocessConfig
from training.datasets.clip_dataset import ClipDataset, ClipSamplingConfig, collate_clips
from training.datasets.clip_sampling import TemporalSampling
from training.datasets.sample import UNLABELLED, LabelledSplit, VideoSample
from training.evaluation.gate_scores import GateScores, tally_gated
from training.evaluation.results import (  # re-exported: callers import them from here
    EvaluationResult,
    Scores,
    TaskResult,
    scores_of,
)

LOG = logging.getLogger(__name__)

Precision = Literal["none", "bf16", "fp16"]


class EvaluationError(ValueError):
    """Evaluation cannot start: a task without labelled samples, a task the splits lack."""


@dataclass(frozen=True)
class EvalConfig:
    """How to score (YAML section `evaluation` in training configs).

    `batch_size` counts clips per forward pass; video accuracy puts
    `max(1, batch_size // num_eval_clips)` videos in one pass.
    `max_videos` (per task, None = all) keeps periodic validation cheap.
    """

    batch_size: int = 8
    num_workers: int = 0
    max_videos: int | None = None
    video_accuracy: bool = True
    num_eval_clips: int = 10
    frame_step: int = 1
    autocast: Precision = "none"
    temporal_sampling: TemporalSampling = "consecutive"  # as the model was trained

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"evaluation.batch_size must be >= 1, got {self.batch_size}")
        if (problem := workers_problem(self.num_workers, "evaluation.num_workers")) is not None:
            raise ValueError(problem)
        if self.max_videos is not None and self.max_videos < 1:
            raise ValueError(f"evaluation.max_videos must be >= 1 or null, got {self.max_videos}")
        if self.num_eval_clips < 1:
            raise ValueError(f"evaluation.num_eval_clips must be >= 1, got {self.num_eval_clips}")
        if self.frame_step < 1:
            raise ValueError(f"evaluation.frame_step must be >= 1, got {self.frame_step}")
        if self.autocast not in ("none", "bf16", "fp16"):
            raise ValueError(f"evaluation.autocast must be none, bf16 or fp16: {self.autocast!r}")


class Evaluator:
    """The datasets of one evaluation, built once; call it with a model to score it.

    `splits` maps task name -> labelled split and must hold every task named in
    `task_names` (the model's `config.task_names`, in its order: task ids are
    positions in it, so an STL model of task "gesture" is scored on the gesture
    split only). Extra splits are ignored.
    """

    def __init__(
        self,
        splits: Mapping[str, LabelledSplit],
        task_names: Sequence[str],
        preprocess: PreprocessConfig,
        config: EvalConfig | None = None,
        none_samples: Sequence[VideoSample] | None = None,
        unscored: Sequence[str] = (),
    ) -> None:
        """`none_samples`: unlabelled stretches whose centre clips the gate should call
        `none` (scored only for a model with a gate; `max_videos` caps them too).
        `unscored`: tasks whose splits may be empty (fine-tuning: a task kept but not
        fed); they are scored on nothing (no figure, not in the cumulative accuracy)."""
        self.config = config or EvalConfig()
        self.task_names = list(task_names)
        missing = [t for t in self.task_names if t not in splits]
        if missing:
            raise EvaluationError(f"no split for task(s) {missing}; have {sorted(splits)}")
        self.class_names: list[list[str]] = []
        self.unlabelled: list[int] = []
        items: list[tuple[VideoSample, int]] = []
        self.selected: list[int] = []
        for task_id, name in enumerate(self.task_names):
            split = splits[name]
            labelled = [s for s in split.samples if s.label != UNLABELLED]
            if not labelled and name not in unscored:
                raise EvaluationError(
                    f"task {name!r}: {split.source or 'its split'} has no labelled sample to score"
                )
            chosen = subset(labelled, self.config.max_videos)
            self.class_names.append(list(split.class_names))
            self.unlabelled.append(len(split.samples) - len(labelled))
            self.selected.append(len(chosen))
            items += [(s, task_id) for s in chosen]
        sampling = ClipSamplingConfig(
            frame_step=self.config.frame_step,
            num_eval_clips=self.config.num_eval_clips,
            flip_probability=0.0,
            temporal=self.config.temporal_sampling,
        )
        self.centre = ClipDataset(items, "centre", preprocess, sampling)
        self.all_clips = (
            ClipDataset(items, "all", preprocess, sampling) if self.config.video_accuracy else None
        )
        nones = subset(list(none_samples or []), self.config.max_videos)
        none_id = len(self.task_names)
        self.none_centre = (ClipDataset([(s, none_id) for s in nones], "centre", preprocess,
                                        sampling) if nones else None)

    def __call__(
        self, model: MultiTaskModel, device: str | torch.device = "cpu"
    ) -> EvaluationResult:
        """Score `model` (moved to nothing: it must already live on `device`)."""
        device = torch.device(device)
        if list(model.config.task_names) != self.task_names:
            raise EvaluationError(
                f"model tasks {list(model.config.task_names)} differ from the "
                f"evaluator's {self.task_names}"
            )
        was_training = model.training
        model.eval()
        gate: GateScores | None = None
        try:
            if model.gate is None:
                clip = self._score(model, self.centre, device, self.config.batch_size)
            else:
                clip, gate = self._score_gated(model, device)
            video = None
            if self.all_clips is not None:
                per_pass = max(1, self.config.batch_size // self.config.num_eval_clips)
                video = self._score(model, self.all_clips, device, per_pass)
        finally:
            model.train(was_training)
        tasks = []
        for t, name in enumerate(self.task_names):
            scored = clip[t].total
            tasks.append(TaskResult(
                task=name,
                class_names=self.class_names[t],
                videos=self.selected[t],
                skipped=self.selected[t] - scored,
                unlabelled=self.unlabelled[t],
                clip=clip[t],
                video=None if video is None else video[t],
            ))
        bad = {str(p) for p in self.centre.skipped_paths()}
        for extra in (self.all_clips, self.none_centre):
            if extra is not None:
                bad |= {str(p) for p in extra.skipped_paths()}
        return EvaluationResult(tasks=tasks, skipped_paths=sorted(bad), gate=gate)

    def _score_gated(self, model: MultiTaskModel, device: torch.device
                     ) -> tuple[list[Scores], GateScores]:
        """Centre clips through `score_all`: task-given, gate and task-agnostic counts."""
        k = len(self.task_names)
        counts = [np.zeros((len(c), len(c)), dtype=np.int64) for c in self.class_names]
        gate = np.zeros((k + 1, k + 1), dtype=np.int64)
        agnostic = np.zeros((2, k), dtype=np.int64)  # correct, total
        datasets = [d for d in (self.centre, self.none_centre) if d is not None]
        for dataset in datasets:
            for clips, labels, task_ids in self._batches(dataset, self.config.batch_size, device):
                with torch.no_grad(), _autocast(device, self.config.autocast):
                    scores = model.score_all(clips.to(device, non_blocking=True))
                chosen = alone(scores[-1].float()).argmax(dim=1).cpu().numpy()
                heads = [s.float().argmax(dim=1).cpu().numpy() for s in scores[:k]]
                tally_gated(counts, gate, agnostic, task_ids.numpy(), labels.numpy(), heads,
                            chosen)
        scores_ = [scores_of(c, names) for c, names in zip(counts, self.class_names, strict=True)]
        names = [*self.task_names, "none"]
        return scores_, GateScores(names, gate.tolist(), agnostic[0].tolist(),
                                   agnostic[1].tolist())

    def _score(
        self, model: MultiTaskModel, dataset: ClipDataset, device: torch.device, batch_size: int
    ) -> list[Scores]:
        counts = [np.zeros((len(c), len(c)), dtype=np.int64) for c in self.class_names]
        for clips, labels, task_ids in self._batches(dataset, batch_size, device):
            for t, probs in enumerate(self._probabilities(model, clips, task_ids, device)):
                rows = task_ids == t
                if not bool(rows.any()):
                    continue
                predicted = probs.argmax(dim=1).cpu().numpy()
                np.add.at(counts[t], (labels[rows].numpy(), predicted), 1)
        return [scores_of(c, names) for c, names in zip(counts, self.class_names, strict=True)]

    def _batches(
        self, dataset: ClipDataset, batch_size: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.config.num_workers,
            collate_fn=collate_clips,
            pin_memory=device.type == "cuda",
        )
        for batch in loader:
            if batch is None:  # every video of the batch failed to load
                continue
            clips, labels, task_ids = batch
            yield clips, labels, task_ids

    def _probabilities(
        self, model: MultiTaskModel, clips: torch.Tensor, task_ids: torch.Tensor,
        device: torch.device,
    ) -> list[torch.Tensor]:
        """Per task, (rows of that task, C) softmax: one clip each, or the mean over N clips."""
        videos = clips.shape[0]
        per_video = clips.shape[1] if clips.ndim == 6 else 1
        flat = clips.reshape(videos * per_video, *clips.shape[-4:]).to(device, non_blocking=True)
        flat_ids = task_ids.repeat_interleave(per_video).to(device)
        with torch.no_grad(), _autocast(device, self.config.autocast):
            logits = model(flat, flat_ids)
        # forward returns each task's rows in batch order; a video's clips are adjacent.
        return [
            torch.softmax(out.float(), dim=1).reshape(-1, per_video, out.shape[1]).mean(dim=1)
            for out in logits
        ]


def evaluate(
    model: MultiTaskModel,
    splits: Mapping[str, LabelledSplit],
    preprocess: PreprocessConfig,
    config: EvalConfig | None = None,
    device: str | torch.device = "cpu",
) -> EvaluationResult:
    """One-off evaluation: `Evaluator(splits, model's tasks, preprocess, config)(model)`."""
    evaluator = Evaluator(splits, model.config.task_names, preprocess, config)
    return evaluator(model, device)


def subset(samples: Sequence[VideoSample], max_videos: int | None) -> list[VideoSample]:
    """At most `max_videos` samples evenly spread over the list (all when None)."""
    if max_videos is None or len(samples) <= max_videos:
        return list(samples)
    picks = np.linspace(0, len(samples) - 1, max_videos).round().astype(int)
    return [samples[i] for i in picks]


def _autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    if precision == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
