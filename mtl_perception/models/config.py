"""ModelConfig: everything needed to rebuild a model, stored in every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtl_perception.models.archs import ARCHS, Arch
from mtl_perception.models.stages import STAGE_NAMES
from mtl_perception.names import task_name_problem

MAX_GATE_CONTEXT = 32  # previous clips a gate may read (at 3 clips/s: about 10 s)
Method = Literal["stl", "hps", "sps", "lws"]
METHODS: tuple[str, ...] = ("stl", "hps", "sps", "lws")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a (multi-task) model.

    `trainable_stages` counts trailing stages of (stem, layer1..layer4) that
    train; the paper trains 2 (layer3, layer4) and freezes the rest, BatchNorm
    included. `frame_differences` feeds the stem the differences of consecutive
    frames (see `BasicStem`; off in the paper). `cross_stitch_share` is the
    paper's s: at initialisation a cross-stitch unit keeps 1 - s of its own task
    and takes s from the other.

    `gate` adds the task gate (`models/gate.py`; beyond the paper, off by
    default so every paper model and old checkpoint is unchanged), a head on
    the pooled features with `gate_hidden` hidden units (0: linear).
    `gate_context` > 0: the gate also reads the stream's previous clips (set
    by `fit-gate --context`; 0: each clip alone, as before).
    STL has no gate: it is one model per task.
    """

    method: Method = "hps"
    arch: Arch = "r3d_18"
    width: int = 64
    trainable_stages: int = 2
    task_names: tuple[str, ...] = ("action", "gesture")
    num_classes: tuple[int, ...] = (101, 249)
    cross_stitch_share: float = 0.2
    cross_stitch_lr_multiplier: float = 1.0
    frame_differences: bool = False
    gate: bool = False
    gate_hidden: int = 64
    gate_context: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {list(METHODS)}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(ARCHS)}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if not 0 <= self.trainable_stages <= len(STAGE_NAMES):
            raise ValueError(f"trainable_stages must be in 0..{len(STAGE_NAMES)}")
        if len(self.task_names) != len(self.num_classes) or not self.task_names:
            raise ValueError(
                f"task_names {self.task_names} and num_classes {self.num_classes} must be "
                "non-empty and of equal length"
            )
        if len(set(self.task_names)) != len(self.task_names):
            raise ValueError(f"task names must be unique: {self.task_names}")
        for name in self.task_names:
            if (problem := task_name_problem(name)) is not None:
                raise ValueError(problem)
        if any(c < 1 for c in self.num_classes):
            raise ValueError(f"every task needs at least one class: {self.num_classes}")
        if self.method == "stl" and len(self.task_names) != 1:
            raise ValueError("method 'stl' trains one task: give exactly one task name")
        if self.method in ("sps", "lws"):
            if len(self.task_names) < 2:
                raise ValueError(f"method {self.method!r} needs at least two tasks")
            if self.trainable_stages < 1:
                raise ValueError(f"method {self.method!r} needs trainable_stages >= 1")
        if not 0.0 <= self.cross_stitch_share <= 1.0:
            raise ValueError(f"cross_stitch_share must be in [0, 1], got {self.cross_stitch_share}")
        if not self.cross_stitch_lr_multiplier > 0:
            raise ValueError(
                f"cross_stitch_lr_multiplier must be > 0, got {self.cross_stitch_lr_multiplier}"
            )
        if self.gate and self.method == "stl":
            raise ValueError("method 'stl' has no task gate (one task per model): set gate false")
        if not 0 <= self.gate_hidden <= 65536:
            raise ValueError(f"gate_hidden must be in 0..65536, got {self.gate_hidden}")
        if not 0 <= self.gate_context <= MAX_GATE_CONTEXT:
            raise ValueError(f"gate_context must be in 0..{MAX_GATE_CONTEXT}, "
                             f"got {self.gate_context}")
        if self.gate_context and not self.gate:
            raise ValueError("gate_context needs a task gate (gate: true)")

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)
