"""One trainer for every method (STL, HPS, SPS, LWS) and every loss weighting.

Python API (the experiment runner uses it):

    from training.train_config import load_train_config
    from training.trainer import train
    result = train(load_train_config("config/train/cpu_small.yaml", ["method=sps"]),
                   "runs/sps", resume=False)
    result.best, result.last, result.best_metrics, result.history
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.train_config import TrainConfig


@dataclass
class TrainResult:
    """What a finished (or interrupted) run left behind.

    `history`: one dict per validation: {"iteration", "accuracy": {task: clip
    accuracy}, "cumulative"}; `best_metrics` is the entry with the highest
    cumulative accuracy. `skipped_files`: videos that could not be read.
    """

    run_dir: Path
    best: Path
    last: Path
    iterations: int
    best_metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    interrupted: bool = False


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          overwrite: bool = False, progress: bool | None = None) -> TrainResult:
    """Train `config` into `run_dir` (created; refused if it holds something else).

    `resume=True` continues the run stored in `run_dir` exactly where it stopped
    (its stored config wins, except the settings in RESUME_CHANGEABLE);
    a finished run returns at once. `overwrite=True` lets a new run replace an
    earlier run of ours in `run_dir` (never a folder that is not a run).
    `progress`: a live progress bar (None: only when stderr is a TTY).
    """
    raise NotImplementedError("skeleton: being filled in")
