"""Stream buffers: what a causal backbone keeps between calls so each frame is computed once.

A causal backbone (`models/causal.py`) mixes time only in modules that read
the newest input and a fixed number of inputs before it, with no padding. Run
on a clip of T frames, each such module outputs T - (kernel - 1) positions.
Run inside `streaming(state)`, each of them first prepends the inputs it kept
from its previous call in that state (its stream buffer) and keeps its newest
ones for the next call. So a stream fed one new frame per call gets, from each
call, exactly the position a clip ending at that frame would compute for it:
the same arithmetic on the same inputs (equal to rounding), without
recomputing the frames the clips share.

One `StreamState` per camera. A module called more than once per step (an LWS
block two routes share with different inputs) keeps one buffer per call, by
its order within the step: the call order of a model is fixed once it is
built, so the k-th call of a step always continues the k-th call of the last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import nn


class StreamState:
    """The stream buffers of one camera: per module (and call within a step), its newest inputs."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, int], torch.Tensor] = {}
        self._calls: dict[int, int] = {}

    def begin_step(self) -> None:
        """A new step (one new frame, or a cold start's first frames) begins."""
        self._calls.clear()

    def extend(self, module: nn.Module, x: torch.Tensor, keep: int) -> torch.Tensor:
        """`x` (N, C, T, H, W) after the inputs `module` kept from the last step; keeps the
        newest `keep` of them for the next step."""
        call = self._calls.get(id(module), 0)
        self._calls[id(module)] = call + 1
        key = (id(module), call)
        before = self._buffers.get(key)
        joined = x if before is None else torch.cat((before, x), dim=2)
        self._buffers[key] = joined[:, :, joined.shape[2] - keep:].clone()
        return joined


_CURRENT: ContextVar[StreamState | None] = ContextVar("mtl_stream_state", default=None)


def current_stream() -> StreamState | None:
    """The state causal modules read and write now; None: plain clip-wise calls."""
    return _CURRENT.get()


@contextlib.contextmanager
def streaming(state: StreamState) -> Iterator[StreamState]:
    """Run the causal modules of every model called inside on `state`'s buffers (one step)."""
    state.begin_step()
    token = _CURRENT.set(state)
    try:
        yield state
    finally:
        _CURRENT.reset(token)
