"""fit-gate's path for a gate with memory (`--context K`, K > 0): stream windows, not clips.

The one-clip gate learns from a few evenly spaced clips per sample
(training/methods/gate_fit.py); a gate that reads the previous K clips
learns from every clip of every video as the stream cuts it, each with the
K clips before it (training/methods/gate_windows.py). The videos: the train
split's trimmed samples (their lead-in and lead-out are `none`), background
videos and untrimmed sessions; with tuning, the sessions in fit-gate's two
halves, so each half can be scored by a gate fitted without it.

Recorded bags and folders of frames are not video files: `--context K` on
such a set is refused in one line.

Not the default (`--context 0`): on the bench set's held-out bag (3 training
seeds, 61 gestures) the gate with memory scored event F1 0.48 ± 0.03 against
0.49 ± 0.03 for the one-clip gate, although offline refits on another set's
sessions had measured a gain (docs/gate.md, bench/results/gate.md item 9).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models.gate import TaskGate
from training.datasets.listfile import DatasetError
from training.datasets.sample import UNLABELLED, VideoSample
from training.datasets.sets import SetConfig, build_task_split, task_owner
from training.datasets.untrimmed import UntrimmedVideo, read_untrimmed
from training.evaluation.cli import EvaluateUsageError
from training.evaluation.scoring import subset
from training.methods.gate_fit import GateFitConfig, fit_context_gate, gate_confusion
from training.methods.gate_windows import (
    TASK_SHARE,
    StreamWindows,
    TimedVideo,
    sample_videos,
    session_videos,
    stream_windows,
)

LOG = logging.getLogger(__name__)


def check_context(asked: int, sets: Sequence[SetConfig], info: CheckpointInfo) -> int:
    """`asked`, when the sets' samples are video files (or `asked` is 0): module docstring."""
    if asked == 0:
        return 0
    tasks = info.model.task_names
    unusable = [s.path for t in tasks
                for s in build_task_split(task_owner(sets, t), t, "train").samples
                if s.bag is not None or s.frames_dir]
    if unusable:
        raise EvaluateUsageError(f"--context {asked} cuts the stream's clips from video files; "
                                 f"{unusable[0]} is a recorded bag or a folder of frames: "
                                 "give --context 0 (a gate without memory)")
    return asked


def split_videos(sets: Sequence[SetConfig], info: CheckpointInfo, split: str,
                 max_videos: int | None) -> list[TimedVideo]:
    """A split's trimmed samples (each task from the first set that has it) and every
    set's background videos, as timed videos."""
    tasks = info.model.task_names
    items: list[tuple[VideoSample, int]] = []
    for t, task in enumerate(tasks):
        labelled = [s for s in build_task_split(task_owner(sets, task), task, split).samples
                    if s.label != UNLABELLED]
        items += [(s, t) for s in subset(labelled, max_videos)]
    backgrounds = [v for s in sets for source in s.background
                   for v in read_untrimmed(source, split, background=True)]
    return sample_videos(items) + session_videos(backgrounds, tasks)


@dataclass
class WindowFit:
    """The gate fitted on everything, the two cross-fitted gates (fitted without
    half 1, then without half 0; empty without tuning) and the report's figures."""

    gate: TaskGate
    crossed: list[TaskGate]
    report: dict[str, Any]


def fit_on_windows(model: torch.nn.Module, info: CheckpointInfo, sets: Sequence[SetConfig],
                   sessions: list[UntrimmedVideo], halves: Sequence[list[UntrimmedVideo]],
                   tune: bool, context: int, fit: GateFitConfig, frame_step: int,
                   args: Any) -> WindowFit:
    """fit-gate's fit for `--context` > 0 (module docstring)."""
    k, tasks = info.model.num_tasks, info.model.task_names
    none_share = args.lead_overlap or TASK_SHARE  # 0: no clip left out (--lead-overlap)

    def windows(videos: list[TimedVideo]) -> StreamWindows:
        return stream_windows(model, videos, info.preprocess, frame_step,  # type: ignore[arg-type]
                              args.inference_stride, context, k, args.batch_size, args.device,
                              none_share=none_share)

    base_videos = split_videos(sets, info, "train", args.max_videos)
    if not tune:
        base_videos += session_videos(sessions, tasks)
    base = windows(base_videos)
    parts = [windows(session_videos(h, tasks)) for h in halves] if tune else []
    every = StreamWindows.join([base, *parts])
    gate = fit_context_gate(every, k, context, fit)
    crossed = [fit_context_gate(StreamWindows.join([base, part]), k, context, fit)
               for part in parts]
    report: dict[str, Any] = {"context": context, "stream_windows": len(every),
                              "inference_stride": args.inference_stride,
                              "none_share": none_share}
    report["train"] = gate_confusion(gate, every.features, every.labels, k + 1, every.windows)
    try:  # the report's test figures: a set may have no test split, or no none in it
        test_videos = split_videos(sets, info, "test", args.max_videos) + session_videos(
            [v for s in sets for source in s.untrimmed
             for v in read_untrimmed(source, "test", background=False)], tasks)
        test = windows(test_videos)
        report["test"] = gate_confusion(gate, test.features, test.labels, k + 1,
                                        test.windows)
    except (DatasetError, ValueError) as exc:
        LOG.warning("no test figures: %s", str(exc).splitlines()[0])
    return WindowFit(gate, crossed, report)
