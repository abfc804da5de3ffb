"""Shared by the trainer tests: one tiny synthetic set per session, tiny configs.

The set (3 action + 3 gesture classes, 16 videos each, 32x24 pixels, 8/16
frames) renders in about 4 s and is shared by every trainer test module
through pytest's session temp folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from training.synthetic.writer import SynthSettings, generate
from training.train.config import TrainConfig, load_train_config

CONFIG = Path(__file__).resolve().parents[1] / "config" / "train" / "cpu_small.yaml"
TINY_SET = SynthSettings(
    actions_per_class=16, gestures_per_class=16, width=32, height=24, frames=8,
    gesture_frames=16, actions=("Walk", "Jump", "Squat"), gestures=("wave", "swipe_left", "push"),
    train_sessions=0, test_sessions=0, backgrounds=0,
)
TINY_OVERRIDES = [
    "model.width=4", "clip.clip_length=8", "clip.resize=[24,32]", "clip.crop=[24,24]",
    "clip.frame_step=1", "workers=0", "log_every=1", "pretrained=none",
]


def tiny_set(factory: pytest.TempPathFactory) -> Path:
    """The set's `set.yaml`, rendered once per session."""
    folder = factory.getbasetemp() / "trainer_tiny_set"
    if not (folder / "set.yaml").is_file():
        generate(TINY_SET, folder, workers=1)
    return folder / "set.yaml"


def tiny_config(set_yaml: Path, *overrides: str) -> TrainConfig:
    """cpu_small.yaml made tiny, on the tiny set, with `overrides` last.

    A key in `overrides` replaces the tiny default's (the command line refuses a
    key given twice, so the list is merged here first).
    """
    merged: dict[str, str] = {}
    for item in [f"set={set_yaml}", *TINY_OVERRIDES, *overrides]:
        merged[item.partition("=")[0]] = item
    return load_train_config(CONFIG, list(merged.values()))


def with_changes(config: TrainConfig, **changes: object) -> TrainConfig:
    return replace(config, **changes)  # type: ignore[arg-type]


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (checkpoints, resume state), for bitwise comparisons."""
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
