"""The PyTorch backend: a checkpoint's `MultiTaskModel` on a device, with optional autocast."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import torch
from torch import nn

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.deploy.device import AUTOCAST_MODES, check_autocast
from mtl_perception.deploy.engine import Engine

log = logging.getLogger(__name__)


class TorchEngine(Engine):
    """`model.score_all` in inference mode on `device`; autocast fp16/bf16 on a GPU."""

    backend = "torch"
    nan_passes_through = True  # test/test_probe_deploy_hostile.py holds it to that

    def __init__(self, model: nn.Module, info: CheckpointInfo, device: torch.device,
                 autocast: str = "none", source: str = "<in memory>") -> None:
        autocast, ignored = check_autocast(autocast, device)
        if ignored:
            log.warning("%s", ignored)
        precision = "fp32" if autocast == "none" else f"{autocast} autocast"
        super().__init__(info, device, precision, source)
        score_all = getattr(model, "score_all", None)
        if not callable(score_all):
            raise TypeError(f"{type(model).__name__} has no score_all(clips) method")
        self.autocast = autocast
        self.model = model.to(device).eval()
        self._score_all = cast(Callable[[torch.Tensor], list[torch.Tensor]], score_all)

    def _forward(self, clips: np.ndarray) -> list[np.ndarray]:
        x = torch.from_numpy(clips).to(self.device, non_blocking=True)
        with self.inference():
            return [out.float().cpu().numpy() for out in self._score_all(x)]

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Inference mode and the engine's autocast: how every forward pass here runs."""
        with torch.inference_mode(), self._autocast():
            yield

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = AUTOCAST_MODES[self.autocast]
        if dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield
