"""Tiny videos whose class is the direction a random texture moves (fine-tuning tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.datasets.video import write_video

DIRECTIONS = {"left": (0, -2), "right": (0, 2), "up": (-2, 0), "down": (2, 0)}
SIZE = 32


def motion_frames(direction: str, seed: int, count: int = 12) -> np.ndarray:
    """`count` RGB frames (count, SIZE, SIZE, 3): a random blocky texture moving 2 px a frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (SIZE // 4, SIZE // 4, 3), dtype=np.uint8)
    texture = np.tile(np.kron(coarse, np.ones((4, 4, 1), np.uint8)), (2, 2, 1))
    dy, dx = DIRECTIONS[direction]
    return np.stack([np.roll(texture, (dy * k, dx * k), axis=(0, 1))[:SIZE, :SIZE]
                     for k in range(count)])


def write_motion_tree(root: Path, classes: Sequence[str], per_class: int, seed: int) -> Path:
    """A `folders` tree root/<class>/<n>.avi; seeds never repeat across trees of other `seed`."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            frames = motion_frames(name, seed * 100_000 + c * 1000 + n)
            write_video(root / name / f"{n:03d}.avi", frames, codec="mpeg4")
    return root
