"""A gate with memory, on the stream's side: one camera's last clips' shares of the logits.

A gate that reads the previous k clips (`ModelConfig.gate_context`,
models/gate.py) is linear in its last layer, so the engine outputs, for each
clip alone, its shares of the logits of itself and of the k clips after it
(N, k + 1, C). The logits of clip t are then

    share(t)[0] + share(t - 1)[1] + ... + share(t - k)[k],

which needs no state in the graph (every engine stays exact) and only the
last k clips' shares here. Before a camera has k clips (its first clips, and
after a reset: a gap in the stamps, `reset()`), each missing clip counts as
the oldest clip there is, as `fit-gate` pads its training windows
(training/methods/gate_windows.py), so the first clip is scored as if the
clips before it were the same clip.

The clips are the camera's last *scored* clips: on a robot that drops clips
under load (realtime, `clips_dropped`) they span more time than the stream
rate the gate was fitted at.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np


class GateMemory:
    """The last `context` clips' logit shares of one camera, newest first."""

    def __init__(self, context: int) -> None:
        if context < 1:
            raise ValueError(f"a gate memory holds at least one clip, got {context}")
        self.context = context
        self._shares: deque[np.ndarray] = deque(maxlen=context)

    def __len__(self) -> int:
        return len(self._shares)

    def reset(self) -> None:
        """Forget every clip (the camera's buffer restarted: its clips no longer follow)."""
        self._shares.clear()

    def logits(self, shares: np.ndarray) -> np.ndarray:
        """The gate logits (C,) of the newest clip from its shares (k + 1, C); remembers it."""
        if shares.shape[0] != self.context + 1:
            raise ValueError(f"a gate reading {self.context} previous clips gives "
                             f"{self.context + 1} shares per clip, got {shares.shape[0]}")
        total = shares[0].astype(np.float64)
        for lag in range(1, self.context + 1):
            # the clip `lag` steps back, or the oldest there is (the newest itself at first)
            earlier = self._shares[min(lag, len(self._shares)) - 1] if self._shares else shares
            total = total + earlier[lag]
        self._shares.appendleft(shares)
        return total


def stride_warning(context: int, provenance: Mapping[str, Any], stride: int) -> str | None:
    """Why a gate with memory may misread this stream, or None: fit-gate fitted it on
    clips `inference_stride` sampled frames apart (provenance `gate_fit`), and a stream
    that cuts them at another stride shows it its last clips over another time span."""
    fit = provenance.get("gate_fit") if context else None
    fitted = fit.get("inference_stride") if isinstance(fit, Mapping) else None
    if not isinstance(fitted, int) or isinstance(fitted, bool) or fitted == stride:
        return None
    return (f"the task gate reads each clip with the {context} before it and was fitted on "
            f"clips {fitted} sampled frames apart; this stream cuts one every {stride}, so "
            f"its memory covers {stride / fitted:.2g}x the time it learnt: set "
            f"inference_stride {fitted}")
