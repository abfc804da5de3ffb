"""A gated checkpoint through `training export` and `evaluate_bag --set backend=onnxruntime`:
the gate is an output of the graph, equal to PyTorch's, and the engine's stream gets it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_bag import ACTIONS, GESTURES, metrics_torch_and_onnx

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.deploy.onnx_file import read_onnx_model
from mtl_perception.deploy.registry import build_engine
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig
from training.__main__ import main as training_main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
PARITY = 1e-4  # fp32 ONNX Runtime vs PyTorch eager: ~1e-7 measured (test_export.py)


def test_gated_checkpoint_exports_the_gate_and_onnxruntime_streams_it(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ModelConfig(method="hps", width=4, task_names=("action", "gesture"),
                         num_classes=(len(ACTIONS), len(GESTURES)), gate=True, gate_hidden=8)
    model = build_model(config).eval()
    assert model.gate is not None
    with torch.no_grad():  # a gate far from uniform, so that a lost or swapped output shows
        for parameter in model.gate.parameters():
            parameter.mul_(20.0)
    checkpoint = tmp_path / "model.safetensors"
    save_checkpoint(checkpoint, model, CheckpointInfo(
        config, (ACTIONS, GESTURES),
        PreprocessConfig(clip_length=4, resize=(32, 40), crop=(32, 32))))
    assert training_main(["export", "--checkpoint", str(checkpoint)]) == 0  # checks parity too

    exported = read_onnx_model(tmp_path / "model.onnx")
    assert tuple(exported.export.outputs) == ("action", "gesture", "gate")
    x = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = [t.numpy() for t in model.score_all(x)]
    got = build_engine(exported, "onnxruntime", "cpu")(x.numpy()).as_list()
    assert [g.shape for g in got] == [(3, 3), (3, 2), (3, 3)]
    for g, e in zip(got, expected):
        assert float(np.abs(g - e).max()) < PARITY
    assert float(np.ptp(expected[2])) > 1.0  # the gate's logits differ between classes

    metrics = metrics_torch_and_onnx(tmp_path, checkpoint, tmp_path / "model.onnx", count=40)
    for name in ("torch", "ort"):
        assert metrics[name]["task_confusion"] is not None, name  # only with gate outputs
        assert metrics[name]["gesture_events"]["source"] == "gate", name
    assert metrics["ort"]["engine"].startswith("onnxruntime on cpu, fp32")
    assert metrics["ort"]["task_confusion"] == metrics["torch"]["task_confusion"]
    assert (metrics["ort"]["gesture_events"]["emitted"]
            == metrics["torch"]["gesture_events"]["emitted"])
