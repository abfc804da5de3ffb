"""The one inference interface: an `Engine` scores a batch of clips, whatever runs it.

Every consumer (the streaming core, hence the node and `evaluate_bag`;
`training evaluate --backend`; the benchmarks) holds an `Engine` and asks it
only what is written here. What an engine scores (tasks, classes, whether a
task gate follows) comes from the model's metadata (`info`), never from the
object that runs the forward pass.

Input: clips as one float32 NumPy array (N, 3, T, H, W), preprocessed
(`mtl_perception.preprocess`). Output: `Scores`: per task (N, C_t) logits in
`info.model.task_names` order, and the gate's (N, tasks + 1) logits ("none"
last) when the model has a task gate, else None. A gate with memory
(`gate_context` k > 0) outputs each clip's shares of the logits (N, k + 1,
tasks + 1): `Scores.gate_parts`, which the stream adds up over a camera's
last clips (`mtl_perception.stream.gate_memory`); `Scores.gate` is then the
logits of each clip alone (as if the clips before it were the same clip).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.deploy.errors import BackendError
from mtl_perception.models.gate import alone, gate_output_shape


@dataclass(frozen=True)
class Scores:
    """One batch's outputs: per-task logits, then the gate's (None without a gate), and a
    gate with memory's logit shares (None for any other model)."""

    tasks: tuple[np.ndarray, ...]
    gate: np.ndarray | None = None
    gate_parts: np.ndarray | None = None

    def as_list(self) -> list[np.ndarray]:
        """`score_all`'s order: the tasks' logits, then the gate's output when there is one
        (a gate with memory: its shares, as the graph outputs them)."""
        gate = self.gate if self.gate_parts is None else self.gate_parts
        return [*self.tasks, *(() if gate is None else (gate,))]


class Engine(ABC):
    """One model, compiled for one device by one backend; call it on a batch of clips."""

    backend: str = ""
    # Whether NaN or inf in a clip reaches every output of its row by itself (PyTorch's
    # kernels); where not, `__call__` marks such rows NaN (a pass over the input per call).
    nan_passes_through: bool = False

    def __init__(self, info: CheckpointInfo, device: torch.device, precision: str,
                 source: str) -> None:
        self.info = info
        self.device = device
        self.precision = precision
        self.source = source  # the file it came from, or "<in memory>"

    # ---- what it scores (from the metadata) ----
    @property
    def task_names(self) -> tuple[str, ...]:
        return self.info.model.task_names

    @property
    def class_names(self) -> tuple[tuple[str, ...], ...]:
        return self.info.class_names

    @property
    def has_gate(self) -> bool:
        """Whether the model has a task gate: its metadata's model config says so."""
        return bool(getattr(self.info.model, "gate", False))

    @property
    def gate_context(self) -> int:
        """Previous clips the gate reads (0: each clip alone; models/gate.py)."""
        return int(getattr(self.info.model, "gate_context", 0))

    @property
    def clip_length(self) -> int:
        """Frames per clip the model was made for (an exported graph takes exactly these)."""
        return self.info.preprocess.clip_length

    def describe(self) -> str:
        """Backend, device and precision, for logs and reports."""
        return f"{self.backend} on {self.device}, {self.precision}"

    # ---- the forward pass ----
    def __call__(self, clips: np.ndarray) -> Scores:
        clips = np.asarray(clips)
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise BackendError(f"an engine takes clips shaped (N, 3, T, H, W), got "
                               f"{list(clips.shape)}")
        if clips.dtype.kind != "f":  # uint8 frames were scored as if normalised, complex
            # lost its imaginary part: neither is a preprocessed clip
            raise BackendError(f"an engine takes preprocessed float clips "
                               f"(mtl_perception.preprocess), got dtype {clips.dtype}")
        crop = tuple(self.info.preprocess.crop)
        if tuple(clips.shape[3:]) != crop:  # the torch engine ran any size (global pooling)
            # and scored clips of another crop without a word; the ONNX graphs refused them
            raise BackendError(f"{self.source}: takes clips cropped to {list(crop)} (its "
                               f"preprocessing), got {list(clips.shape[3:])}")
        x = np.ascontiguousarray(clips, dtype=np.float32)
        outputs = self._forward(x)
        return self.scores_from(outputs if self.nan_passes_through
                                else non_finite_rows_nan(x, outputs))

    def scores_from(self, outputs: list[np.ndarray]) -> Scores:
        """`Scores` from the model's raw outputs (tasks, then the gate), checked against the
        metadata: every engine's outputs, and a stream's that pooled frames itself."""
        tasks = len(self.task_names)
        expected = tasks + (1 if self.has_gate else 0)
        if len(outputs) != expected:  # metadata and graph disagree: never guess which is right
            and_gate = " and a gate" if self.has_gate else ""
            raise BackendError(f"{self.source}: {len(outputs)} outputs, its metadata describes "
                               f"{expected} ({tasks} tasks{and_gate})")
        gate = outputs[tasks] if self.has_gate else None
        if gate is None:
            return Scores(tuple(outputs[:tasks]))
        per_clip = gate_output_shape(tasks, self.gate_context)
        if tuple(gate.shape[1:]) != per_clip:
            raise BackendError(f"{self.source}: gate output shaped {list(gate.shape)}, expected "
                               f"(N, {', '.join(map(str, per_clip))}) (the tasks, then none)")
        if self.gate_context == 0:
            return Scores(tuple(outputs[:tasks]), gate)
        return Scores(tuple(outputs[:tasks]), alone(gate), gate_parts=gate)

    def warmup(self, batch: int = 1, clip_length: int = 0) -> float:
        """One forward pass on zeros of the input shape (lazy init, autotuning); ms."""
        crop = self.info.preprocess.crop
        x = np.zeros((batch, 3, clip_length or self.clip_length, *crop), np.float32)
        start = time.monotonic()
        self(x)
        return (time.monotonic() - start) * 1e3

    @abstractmethod
    def _forward(self, clips: np.ndarray) -> list[np.ndarray]:
        """Every output as float32 (N, C) arrays, in the model's order (tasks, then gate)."""


def non_finite_rows_nan(clips: np.ndarray, outputs: list[np.ndarray]) -> list[np.ndarray]:
    """`outputs` with every row of a clip holding NaN or inf set to NaN.

    PyTorch and fp32 ONNX Runtime pass a NaN through to the logits, but OpenVINO
    and every int8 graph turn it into finite, confident scores; the stream skips
    a clip by its non-finite scores, so every backend must give the same answer.
    Skipped where `Engine.nan_passes_through` (the torch engine: the node's default,
    whose clips, preprocessed camera frames, are finite anyway).
    """
    if not len(clips):
        return outputs
    bad = ~np.isfinite(clips.reshape(len(clips), -1)).all(axis=1)
    if not bad.any():
        return outputs
    marked = []
    for out in outputs:
        out = np.array(out, dtype=np.float32)  # a copy: engines may hand out their buffers
        out[bad] = np.nan
        marked.append(out)
    return marked
