"""An inference `Engine` (ONNX Runtime, OpenVINO, TensorRT) in the shape `Evaluator` scores.

`training evaluate --backend X` scores the very forward pass the node runs
with that backend: the evaluator's clips go through the engine (every task's
output for every clip, as in `score_all`), and each task keeps its own rows,
as `MultiTaskModel.forward` returns them.
"""

from __future__ import annotations

import numpy as np
import torch

from mtl_perception.deploy.engine import Engine


class EngineModel:
    """The `MultiTaskModel` interface the evaluator uses, over an engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.info.model
        self.training = False

    def describe(self) -> str:
        return self.engine.describe()

    def eval(self) -> EngineModel:
        return self

    def train(self, mode: bool = True) -> EngineModel:
        return self

    @property
    def gate(self) -> bool | None:
        """Not None when the engine's model has a task gate (its metadata says so; the
        evaluator asks only whether there is one; `score_all` returns its logits)."""
        return True if self.engine.has_gate else None

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        """Every output of the engine for every clip: the tasks' logits, then the gate's."""
        scores = self.engine(clips.detach().cpu().numpy())
        return [torch.from_numpy(np.ascontiguousarray(out)) for out in scores.as_list()]

    def __call__(self, clips: torch.Tensor, task_ids: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.score_all(clips)
        ids = task_ids.cpu().numpy()
        return [out[torch.from_numpy(ids == t)]
                for t, out in enumerate(outputs[: self.config.num_tasks])]
