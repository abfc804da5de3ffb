"""Procedurally rendered action and gesture videos in the real datasets' layouts.

`python -m training synth --out DIR` writes actions as UCF-101 and gestures as
NVGesture (real MPEG-4 files plus the published list formats) and a
`set.yaml`, so tests, the demo and the benchmarks exercise the same readers a
user's real data goes through. Modules: `figure` (articulated body and numpy
rasteriser), `motions` (per-class trajectories), `scene` (backgrounds, camera,
noise, one clip end to end), `writer` (files and lists), `cli`.
"""

from training.synthetic.motions import ACTION_CLASSES, GESTURE_CLASSES
from training.synthetic.writer import SynthSettings, generate, plan, render_job

__all__ = [
    "ACTION_CLASSES",
    "GESTURE_CLASSES",
    "SynthSettings",
    "generate",
    "plan",
    "render_job",
]
