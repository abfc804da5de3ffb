"""What the pipeline hands back per scored clip, and the post-processing that makes it.

Post-processing per task: softmax of the logits -> optional temporal
smoothing over the camera's previous clips -> top-k -> score threshold.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mtl_perception.stream.config import StreamConfig

if TYPE_CHECKING:
    from mtl_perception.stream.events import GestureEvent


@dataclass(frozen=True)
class FrameHeader:
    """The std_msgs/Header of an image, as plain values: stamp in ns and frame_id."""

    stamp_ns: int
    frame_id: str = ""

    @property
    def sec(self) -> int:
        return self.stamp_ns // 1_000_000_000

    @property
    def nanosec(self) -> int:
        return self.stamp_ns % 1_000_000_000


@dataclass(frozen=True)
class TaskResult:
    """One task's scores for one clip.

    `probabilities`: softmax of this clip alone (C,), float64.
    `smoothed`: after temporal smoothing (equal to `probabilities` when
    smoothing is "none").
    `top`: up to `top_k` `(class_name, smoothed probability)` pairs, best first,
    only classes at or above `score_threshold` (empty when none is).
    """

    task: str
    probabilities: np.ndarray
    smoothed: np.ndarray
    top: tuple[tuple[str, float], ...]

    @property
    def best(self) -> tuple[str, float] | None:
        return self.top[0] if self.top else None


@dataclass(frozen=True)
class ClipResult:
    """One scored clip of one camera.

    `first_stamp_ns` / `last_stamp_ns`: header stamps of the clip's first and
    last frames; `header`: the last frame's header (stamp + frame_id), which
    published results carry so consumers can align them with the images.
    `tasks`: one TaskResult per model task, in the model's task order.
    `sequence`: index of the clip among this camera's clips (0, 1, ...), gaps
    in it are clips dropped because inference fell behind.
    `inference_ms`: the forward pass (of the whole batch) that scored it;
    `latency_ms`: from the arrival of the clip's last frame to this result.
    `gate`: the task gate's softmax (float64, one per task then "none"), None
    for a model without a gate. `epoch`: the camera's buffer epoch (a stamp
    gap starts a new one; smoothing and gesture events restart with it).
    `event`: the gesture event decided at this clip (`stream.events`), if any.
    """

    camera: str
    sequence: int
    first_stamp_ns: int
    last_stamp_ns: int
    header: FrameHeader
    tasks: dict[str, TaskResult]
    inference_ms: float
    latency_ms: float
    gate: np.ndarray | None = None
    epoch: int = 0
    event: GestureEvent | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the max is subtracted first)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(
    probabilities: np.ndarray, class_names: tuple[str, ...], k: int, threshold: float
) -> tuple[tuple[str, float], ...]:
    """The k best classes at or above `threshold`, best first (ties: lower index first)."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return tuple(
        (class_names[i], float(probabilities[i])) for i in order if probabilities[i] >= threshold
    )


class Smoother:
    """Temporal smoothing of one camera's per-task probabilities.

    - "none": the clip's own probabilities.
    - "ema": s_0 = p_0, s_n = alpha * p_n + (1 - alpha) * s_{n-1},
      alpha = 2 / (window + 1) (the usual span convention).
    - "mean": mean of the last `window` clips' probabilities (fewer at start).
    The history is kept even in "none" mode, so switching mode live smooths
    from the next clip on with what was seen; `reset()` forgets it (scene cut).
    """

    def __init__(self, mode: str, window: int) -> None:
        self.mode = mode
        self.window = window
        self._history: deque[np.ndarray] = deque(maxlen=window)
        self._ema: np.ndarray | None = None

    def configure(self, mode: str, window: int) -> None:
        """Change mode/window live; the mean history keeps its newest entries."""
        self.mode = mode
        if window != self.window:
            self._history = deque(self._history, maxlen=window)
            self.window = window

    def reset(self) -> None:
        self._history.clear()
        self._ema = None

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        self._history.append(probabilities)
        alpha = 2.0 / (self.window + 1)
        self._ema = (
            probabilities.copy()
            if self._ema is None
            else alpha * probabilities + (1.0 - alpha) * self._ema
        )
        if self.mode == "ema":
            return self._ema.copy()
        if self.mode == "mean":
            return np.mean(np.stack(self._history), axis=0)
        return probabilities


def postprocess(
    logits: list[np.ndarray],
    task_names: tuple[str, ...],
    class_names: tuple[tuple[str, ...], ...],
    smoothers: list[Smoother],
    config: StreamConfig,
    gate: np.ndarray | None = None,
) -> dict[str, TaskResult]:
    """One clip's per-task logits (C_t,) -> TaskResults, updating the camera's smoothers.

    With `gate` probabilities and `config.gate == "filter"`, a task the gate
    gives less than `gate_threshold` gets an empty top-k list (its
    probabilities are kept: smoothing and metrics see every clip).
    """
    out: dict[str, TaskResult] = {}
    filtering = gate is not None and config.gate == "filter"
    for i, (task, names, task_logits, smoother) in enumerate(
        zip(task_names, class_names, logits, smoothers)
    ):
        probs = softmax(task_logits)
        smoothed = smoother.update(probs)
        top = top_k(smoothed, names, config.top_k, config.score_threshold)
        if filtering and gate is not None and gate[i] < config.gate_threshold:
            top = ()
        out[task] = TaskResult(task, probs, smoothed, top)
    return out
