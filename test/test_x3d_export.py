"""X3D through export: ONNX Runtime and OpenVINO give PyTorch's scores for every method."""

from __future__ import annotations

import importlib.util
from typing import Any, cast

import numpy as np
import pytest
import torch
from helpers_x3d import scrambled, x3d_config

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.deploy.export import export_onnx, max_difference
from mtl_perception.deploy.registry import build_engine
from mtl_perception.models import build_model
from mtl_perception.preprocess import PreprocessConfig

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

PARITY = 1e-4  # fp32 engines against PyTorch eager (as test_export.py)
FRAMES, CROP = 5, (32, 32)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def exported_model(method: str) -> tuple[Any, CheckpointInfo]:
    config = x3d_config(method, frame_differences=True, gate=method == "hps")
    torch.manual_seed(0)
    model = cast(Any, scrambled(build_model(config))).eval()
    if method == "lws":  # gesture borrows action's first layer3 block: a mixed route
        model.routing_probs[1, 0] = torch.tensor([0.8, 0.2])
        for name, parameter in model.named_parameters():
            if name.startswith("units."):  # the copies differ
                parameter.data.mul_(1 + 0.3 * torch.randn_like(parameter))
    names = tuple(tuple(f"{t}{i}" for i in range(n))
                  for t, n in zip(config.task_names, config.num_classes))
    return model, CheckpointInfo(config, names, PreprocessConfig(
        clip_length=FRAMES, resize=(36, 40), crop=CROP))


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_x3d_export_matches_pytorch_in_every_cpu_engine(method: str) -> None:
    model, info = exported_model(method)
    exported = export_onnx(model, info)
    x = torch.randn(3, 3, FRAMES, *CROP, generator=torch.Generator().manual_seed(1))
    assert max_difference(model, exported, x) < PARITY
    with torch.no_grad():
        expected = [t.numpy() for t in model.score_all(x)]
    assert len(expected) == info.model.num_tasks + (1 if info.model.gate else 0)
    backends = ["onnxruntime"]
    if importlib.util.find_spec("openvino") is not None:
        backends.append("openvino")
    for backend in backends:
        got = build_engine(exported, backend, "cpu")(x.numpy()).as_list()
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e in zip(got, expected):
            assert float(np.abs(g - e).max()) < PARITY, backend


def test_x3d_int8_export_runs_in_onnx_runtime() -> None:
    from training.tools.quantize import quantize_int8

    model, info = exported_model("hps")
    exported = export_onnx(model, info)
    rng = np.random.default_rng(0)
    calibration = iter([rng.standard_normal((2, 3, FRAMES, *CROP)).astype(np.float32)
                        for _ in range(2)])
    int8 = quantize_int8(exported, calibration)
    assert int8.data != exported.data
    got = build_engine(int8, "onnxruntime", "cpu")(
        rng.standard_normal((2, 3, FRAMES, *CROP)).astype(np.float32)).as_list()
    assert [g.shape for g in got] == [(2, 5), (2, 7), (2, 3)]
    assert all(np.isfinite(g).all() for g in got)
