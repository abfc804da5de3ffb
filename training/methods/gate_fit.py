"""Fit a task gate on frozen features: what `python -m training fit-gate` runs.

The model is frozen: its gate features (`MultiTaskModel.gate_features`, the
pooled features the task heads read) are extracted once, for a few evenly
spaced clips per sample, and a new `TaskGate` is fitted on them alone:
standardised by the training features' mean and variance, then a small
classifier trained by full-batch Adam on the class-balanced cross-entropy
(each of task 1..K and `none` weighs the same whatever its clip count, so a
set with few `none` stretches still teaches the gate to say `none`). Minutes
on a CPU even for a large set: the backbone runs once per clip, the fit on a
feature matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mtl_perception.models import MultiTaskModel
from mtl_perception.models.gate import TaskGate
from mtl_perception.preprocess import PreprocessConfig
from training.datasets.clip_dataset import ClipDataset, ClipSamplingConfig, collate_clips
from training.datasets.clip_sampling import TemporalSampling
from training.datasets.sample import VideoSample
from training.methods.gate_windows import StreamWindows


@dataclass(frozen=True)
class GateFitConfig:
    hidden: int = 64
    steps: int = 500
    lr: float = 1e-2
    weight_decay: float = 1e-2  # a few none stretches: without it the gate memorises them
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.hidden <= 65536 or self.steps < 1 or not self.lr > 0:
            raise ValueError("hidden must be in 0..65536, steps >= 1 and lr > 0")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


def extract_gate_features(
    model: MultiTaskModel, items: Sequence[tuple[VideoSample, int]], preprocess: PreprocessConfig,
    clips_per_sample: int = 4, frame_step: int = 1, batch_size: int = 8,
    device: str | torch.device = "cpu", num_workers: int = 0,
    temporal: TemporalSampling = "consecutive",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (M, D), gate labels (M,)) for `clips_per_sample` evenly spaced clips of
    every (sample, gate label) item; samples that fail to load are left out."""
    sampling = ClipSamplingConfig(frame_step=frame_step, num_eval_clips=clips_per_sample,
                                  flip_probability=0.0, temporal=temporal)
    dataset = ClipDataset(list(items), "all", preprocess, sampling)
    loader = DataLoader(dataset, batch_size=max(1, batch_size // clips_per_sample),
                        shuffle=False, num_workers=num_workers, collate_fn=collate_clips)
    features, labels = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                if batch is None:
                    continue
                clips, _, gate_labels = batch
                flat = clips.reshape(-1, *clips.shape[-4:]).to(device)
                features.append(model.gate_features(flat).float().cpu())
                labels.append(gate_labels.repeat_interleave(clips.shape[1]))
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("no sample could be loaded to extract gate features from")
    return torch.cat(features), torch.cat(labels)


def fit_gate(features: torch.Tensor, labels: torch.Tensor, num_tasks: int,
             config: GateFitConfig | None = None) -> TaskGate:
    """A `TaskGate` fitted on (features, labels); every class must be present."""
    config = config or GateFitConfig()
    gate = _new_gate(features, num_tasks, config, 0)
    return _fit(gate, lambda: gate(features), labels, config)


def fit_context_gate(clips: StreamWindows, num_tasks: int, context: int,
                     config: GateFitConfig | None = None) -> TaskGate:
    """A gate with memory (`context` previous clips) fitted on stream windows
    (training/methods/gate_windows.py); every class must be present."""
    config = config or GateFitConfig()
    gate = _new_gate(clips.features, num_tasks, config, context)
    return _fit(gate, lambda: gate.window_logits(clips.features, clips.windows), clips.labels,
                config)


def _new_gate(features: torch.Tensor, num_tasks: int, config: GateFitConfig,
              context: int) -> TaskGate:
    torch.manual_seed(config.seed)
    gate = TaskGate(features.shape[1], num_tasks, config.hidden, context)
    gate.set_input_statistics(features.mean(dim=0), features.var(dim=0, unbiased=False))
    return gate.eval()  # the standardisation stays at the data's statistics


def _fit(gate: TaskGate, logits: Callable[[], torch.Tensor], labels: torch.Tensor,
         config: GateFitConfig) -> TaskGate:
    """Full-batch Adam on the class-balanced cross-entropy of `logits()` against `labels`."""
    classes = gate.last_layer.out_features
    counts = torch.bincount(labels, minlength=classes).float()
    if bool((counts == 0).any()):
        absent = [i for i in range(classes) if counts[i] == 0]
        raise ValueError(f"no training clip of gate class(es) {absent} (the last is none): "
                         "every sample of it was left out (see the warnings)")
    weight = counts.sum() / (classes * counts)
    optimizer = torch.optim.Adam(gate.classifier.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    for _ in range(config.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(logits(), labels, weight=weight)
        loss.backward()
        optimizer.step()
    return gate


def gate_confusion(gate: TaskGate, features: torch.Tensor, labels: torch.Tensor,
                   classes: int, windows: torch.Tensor | None = None) -> np.ndarray:
    """confusion[true][predicted] of the gate on (features, labels), or, for a gate with
    memory, on the `windows` of rows of `features` that `labels` label."""
    with torch.no_grad():
        logits = gate.eval()(features) if windows is None else \
            gate.window_logits(features, windows)
        predicted = logits.argmax(dim=1)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels.numpy(), predicted.numpy()), 1)
    return confusion
