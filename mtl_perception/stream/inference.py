"""The streaming core's side of the forward pass: clips -> one batch -> an `Engine`.

What runs the forward pass (PyTorch, ONNX Runtime, OpenVINO, TensorRT) is an
`Engine` (`mtl_perception.deploy`), built by `load_engine` from a model path;
here the clips of one batch become the (N, 3, T, H, W) array every engine
takes, and the call is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.deploy.engine import Engine, Scores
from mtl_perception.deploy.registry import EngineOptions, build_engine
from mtl_perception.stream.buffer import Clip
from mtl_perception.stream.config import StreamConfig


def clip_batch(clips: Sequence[Clip]) -> np.ndarray:
    """The clips' preprocessed frames as one float32 (N, 3, T, H, W) array."""
    first = clips[0].frames[0].tensor
    length = len(clips[0].frames)
    x = torch.empty((len(clips), first.shape[0], length, *first.shape[1:]))
    for n, clip in enumerate(clips):
        for t, frame in enumerate(clip.frames):
            x[n, :, t] = frame.tensor
    return x.numpy()


def score_clips(engine: Engine, clips: Sequence[Clip],
                reuse: Callable[[Sequence[Clip]], Scores] | None = None) -> tuple[Scores, float]:
    """The engine's scores for one batch of clips, and the forward pass's milliseconds;
    `reuse` (a causal model's `FrameReuse`) scores them from each frame computed once."""
    start = time.monotonic()
    scores = reuse(clips) if reuse is not None else engine(clip_batch(clips))
    return scores, (time.monotonic() - start) * 1e3


def engine_from_model(model: Any, info: CheckpointInfo, config: StreamConfig,
                      device: str | torch.device, autocast: str, clip_length: int) -> Engine:
    """An engine for a model already in memory (a module or an exported `OnnxModel`) on the
    config's backend: what `StreamPipeline(model, info, ...)` builds for callers that
    predate `load_engine`."""
    options = EngineOptions(autocast=autocast, engine_cache=config.engine_cache,
                            max_batch=config.max_batch, clip_length=clip_length)
    return build_engine(model, config.backend, device, info=info, options=options)
