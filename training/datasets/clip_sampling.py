"""How clips are drawn from videos along time, and the loader's time profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from training.datasets.video import DecodeStats

TemporalSampling = Literal["consecutive", "uniform"]
TEMPORAL_SAMPLINGS: tuple[str, ...] = ("consecutive", "uniform")


@dataclass(frozen=True)
class ClipSamplingConfig:
    """How clips are drawn from videos; `clip_length` comes from `PreprocessConfig`."""

    frame_step: int = 1  # frames between consecutive clip frames
    num_eval_clips: int = 10  # clips per video in mode "all" (video accuracy)
    flip_probability: float = 0.5  # training clips of `flip_tasks` mirrored with this chance
    flip_tasks: tuple[int, ...] = (0,)  # task ids that may be flipped: action tasks only
    seed: int = 0
    decode_threads: int = 1  # FFmpeg threads per decode; 1 when DataLoader workers run
    # consecutive: `clip_length` frames `frame_step` apart at a position in the segment;
    # uniform: the clip's frames spread evenly over the whole segment (clips.py)
    temporal: TemporalSampling = "consecutive"

    def __post_init__(self) -> None:
        if self.temporal not in TEMPORAL_SAMPLINGS:
            raise ValueError(f"temporal sampling must be one of {list(TEMPORAL_SAMPLINGS)}, "
                             f"got {self.temporal!r}")
        # upper bounds: past them a value is a typo that would loop or allocate for hours
        if not 1 <= self.frame_step <= 10_000:
            raise ValueError(f"frame_step must be in 1..10000, got {self.frame_step}")
        if not 1 <= self.num_eval_clips <= 1000:
            raise ValueError(f"num_eval_clips must be in 1..1000, got {self.num_eval_clips}")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {self.flip_probability}")
        if self.seed < 0 or not 0 <= self.decode_threads <= 256:
            raise ValueError("seed must be >= 0 and decode_threads in 0..256")


@dataclass
class LoadStats:
    """This process's loading time, split by stage (the benchmark's profile)."""

    items: int = 0
    decode: DecodeStats = field(default_factory=DecodeStats)
    preprocess_s: float = 0.0
    total_s: float = 0.0
