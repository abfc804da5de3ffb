"""Frame reuse: a causal model's clips scored from each frame's computation, done once.

A clip of a causal backbone (`models/causal.py`) is the mean of per-position
features, and position t depends only on the frames up to t. Consecutive
clips of a camera share all but `inference_stride` of their frames, so the
stream keeps, per camera, the causal modules' buffers (`models/frame_stream.py`)
and the last clip's positions: a new clip costs only its new frames (one
position each), and its scores are `score_features` of the mean of its last
positions, equal to the clip-wise forward to rounding (tested). A clip that
does not continue the camera's last one (the first, one after a buffer reset,
one after dropped clips left a hole) starts the camera afresh from its own
frames, so a result never mixes frames the clip does not hold.

Only the PyTorch engine runs it (an exported graph takes whole clips); the
pipeline uses it on its own whenever the engine is PyTorch and the arch is
causal, since the results are the same.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np
import torch

from mtl_perception.deploy.engine import Engine, Scores
from mtl_perception.deploy.torch_engine import TorchEngine
from mtl_perception.models.archs import clip_length_problem, min_clip_frames, streams_frames
from mtl_perception.models.frame_stream import StreamState, streaming
from mtl_perception.stream.buffer import BufferedFrame, Clip


@dataclass
class _CameraFrames:
    """One camera's stream: the causal buffers, the last frame computed, its positions."""

    positions: int
    state: StreamState = field(default_factory=StreamState)
    last: BufferedFrame | None = None
    features: deque[list[torch.Tensor]] = field(init=False)

    def __post_init__(self) -> None:
        self.features = deque(maxlen=self.positions)


class FrameReuse:
    """Scores clips of one causal model on a PyTorch engine, each frame computed once per camera."""

    def __init__(self, engine: TorchEngine, clip_length: int) -> None:
        model = engine.info.model
        self.engine = engine
        self.module: Any = engine.model
        problem = clip_length_problem(model.arch, model.frame_differences, clip_length)
        if problem is not None:
            raise ValueError(problem)
        self.first = min_clip_frames(model.arch, model.frame_differences)
        self.positions = clip_length - self.first + 1  # positions a clip averages
        self._cameras: dict[str, _CameraFrames] = {}

    @staticmethod
    def applies(engine: Engine) -> TypeGuard[TorchEngine]:
        """Whether `engine` runs a causal model in PyTorch (so frames can be reused)."""
        return isinstance(engine, TorchEngine) and streams_frames(engine.info.model.arch)

    def __call__(self, clips: Sequence[Clip]) -> Scores:
        per_clip = [self._clip_outputs(clip) for clip in clips]
        return self.engine.scores_from(
            [np.concatenate(parts) for parts in zip(*per_clip, strict=True)])

    def _clip_outputs(self, clip: Clip) -> list[np.ndarray]:
        camera = self._cameras.get(clip.camera)
        frames = clip.frames
        start = _after(frames, camera.last) if camera is not None else None
        if camera is None or start is None:  # nothing of this clip computed yet
            camera = self._cameras[clip.camera] = _CameraFrames(self.positions)
            self._step(camera, frames[: self.first])
            start = self.first
        for frame in frames[start:]:
            self._step(camera, (frame,))
        camera.last = frames[-1]
        tasks = len(camera.features[0])
        mean = [torch.stack([p[t] for p in camera.features]).mean(0) for t in range(tasks)]
        with self.engine.inference():
            return [out.float().cpu().numpy() for out in self.module.score_features(mean)]

    def _step(self, camera: _CameraFrames, frames: Sequence[BufferedFrame]) -> None:
        """The features of the position ending at `frames[-1]` (after the frames before)."""
        x = torch.stack([f.tensor for f in frames], dim=1).unsqueeze(0).to(self.engine.device)
        with self.engine.inference(), streaming(camera.state):
            features = self.module.task_features(x)
        camera.features.append(list(features))


def _after(frames: Sequence[BufferedFrame], last: BufferedFrame | None) -> int | None:
    """Index just after `last` in `frames` (by identity), or None when it is not there."""
    for index in range(len(frames) - 1, -1, -1):
        if frames[index] is last:
            return index + 1
    return None
