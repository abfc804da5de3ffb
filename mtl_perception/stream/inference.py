"""The forward pass of the streaming core: device, autocast, batching clips into one tensor."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import numpy as np
import torch
from torch import nn

from mtl_perception.stream.buffer import Clip
from mtl_perception.stream.config import StreamConfigError

log = logging.getLogger(__name__)

AUTOCAST_MODES: dict[str, torch.dtype | None] = {
    "none": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" = the GPU when there is one; asking for CUDA without one is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise StreamConfigError(f"device {device!r} is not auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise StreamConfigError(f"device {device!r} asked for, but CUDA is not available")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise StreamConfigError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return resolved


class Scorer:
    """`model.score_all` on a batch of clips, on one device, with optional autocast."""

    def __init__(self, model: nn.Module, device: str | torch.device, autocast: str) -> None:
        self.device = resolve_device(device)
        if autocast not in AUTOCAST_MODES:
            raise StreamConfigError(
                f"autocast must be one of {list(AUTOCAST_MODES)}, got {autocast!r}"
            )
        if autocast != "none" and self.device.type != "cuda":
            log.warning("autocast %s ignored on %s: it is a GPU setting", autocast, self.device)
            autocast = "none"
        self.autocast = autocast
        score_all = getattr(model, "score_all", None)
        if not callable(score_all):
            raise TypeError(f"{type(model).__name__} has no score_all(clips) method")
        self.model = model.to(self.device).eval()
        self._score_all = cast(Callable[[torch.Tensor], list[torch.Tensor]], score_all)

    def __call__(self, clips: Sequence[Clip]) -> tuple[list[np.ndarray], float]:
        """`score_all`'s outputs as float NumPy arrays (per-task logits (N, C_t), then the
        gate logits (N, tasks + 1) for a model with a task gate), and the milliseconds."""
        first = clips[0].frames[0].tensor
        length = len(clips[0].frames)
        x = torch.empty((len(clips), first.shape[0], length, *first.shape[1:]))
        for n, clip in enumerate(clips):
            for t, frame in enumerate(clip.frames):
                x[n, :, t] = frame.tensor
        start = time.monotonic()
        with torch.inference_mode(), self._autocast():
            logits = self._score_all(x.to(self.device, non_blocking=True))
            per_task = [task.float().cpu().numpy() for task in logits]
        return per_task, (time.monotonic() - start) * 1e3

    def warmup(self, batch: int, clip_length: int, crop: tuple[int, int]) -> float:
        """One forward pass on zeros of the input shape (cuDNN autotuning, lazy init); ms."""
        x = torch.zeros((batch, 3, clip_length, *crop), device=self.device)
        start = time.monotonic()
        with torch.inference_mode(), self._autocast():
            for task in self._score_all(x):
                task.float().cpu()
        return (time.monotonic() - start) * 1e3

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = AUTOCAST_MODES[self.autocast]
        if dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield
