"""An inference engine (ONNX Runtime, OpenVINO, TensorRT) in the shape `Evaluator` scores.

`training evaluate --backend X` scores the very forward pass the node runs
with that backend: the evaluator's clips go through the engine (every task's
output for every clip, as in `score_all`), and each task keeps its own rows,
as `MultiTaskModel.forward` returns them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.stream.inference import Scorer


class EngineModel:
    """The `MultiTaskModel` interface the evaluator uses, over an engine."""

    def __init__(self, model: Any, info: CheckpointInfo, backend: str, device: str,
                 autocast: str = "none") -> None:
        self.scorer = Scorer(model, device, autocast, backend=backend, info=info,
                             clip_length=info.preprocess.clip_length)
        self.config = info.model
        self.training = False

    def describe(self) -> str:
        return self.scorer.describe()

    def eval(self) -> EngineModel:
        return self

    def train(self, mode: bool = True) -> EngineModel:
        return self

    @property
    def gate(self) -> bool | None:
        """Not None when the exported graph ends with the task gate's output (the
        evaluator asks only whether there is one; `score_all` returns its logits)."""
        return True if getattr(self.config, "gate", False) else None

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        """Every output of the engine for every clip: the tasks' logits, then the gate's."""
        engine = self.scorer.engine
        assert engine is not None  # a non-torch backend always has one
        return [torch.from_numpy(np.ascontiguousarray(out))
                for out in engine(clips.detach().cpu().numpy())]

    def __call__(self, clips: torch.Tensor, task_ids: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.score_all(clips)
        ids = task_ids.cpu().numpy()
        return [out[torch.from_numpy(ids == t)]
                for t, out in enumerate(outputs[: self.config.num_tasks])]
