"""Int8 for CPUs: ONNX Runtime static quantisation of an exported model.

Why ONNX Runtime's static quantiser (QDQ, per-channel int8 weights, uint8
activations calibrated by min/max on real clips) rather than OpenVINO's NNCF:
it ships with the `onnx` extra already needed for export (NNCF would add a
training-side dependency of its own), and its output is still one ONNX file
with the same inputs, outputs and metadata, which both CPU backends run:
ONNX Runtime fuses the QDQ pairs into integer convolutions (VNNI on recent
x86), OpenVINO reads QDQ graphs as its own int8 format.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_perception.deploy.export import with_metadata
from mtl_perception.deploy.onnx_file import INPUT_NAME, OnnxModel, require
from mtl_perception.models.gate import alone


def quantize_int8(exported: OnnxModel, clips: Iterator[np.ndarray], *, symmetric: bool = False,
                  per_channel: bool = True) -> OnnxModel:
    """The int8 model calibrated on `clips` (batches shaped like the graph's input).

    `symmetric`: signed int8 activations and weights with zero point 0, what
    TensorRT takes (`deploy/tensorrt.py`); otherwise uint8 activations with a
    calibrated zero point (the CPU engines' usual choice). `per_channel`: one
    weight scale per output channel rather than per tensor.
    """
    quantization = require("onnxruntime.quantization", "onnx", "int8 quantisation")

    base: Any = quantization.CalibrationDataReader

    class Reader(base):
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(clips, None)
            return None if batch is None else {INPUT_NAME: batch.astype(np.float32)}

    shapes = require("onnxruntime.quantization.shape_inference", "onnx", "int8 quantisation")
    with tempfile.TemporaryDirectory() as folder:
        raw, source = Path(folder, "raw.onnx"), Path(folder, "fp32.onnx")
        target = Path(folder, "int8.onnx")
        raw.write_bytes(exported.data)
        # ONNX Runtime's recommended preparation: shapes inferred and the graph
        # optimised (BatchNorm folded into the convolutions) before calibration.
        shapes.quant_pre_process(str(raw), str(source))
        quantization.quantize_static(
            str(source), str(target), Reader(),
            quant_format=quantization.QuantFormat.QDQ,
            activation_type=(quantization.QuantType.QInt8 if symmetric
                             else quantization.QuantType.QUInt8),
            weight_type=quantization.QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
        data = target.read_bytes()
    export = replace(exported.export, precision="int8")
    return with_metadata(data, exported.info, export)


def fixed_batches(batches: Iterator[torch.Tensor], size: int) -> Iterator[np.ndarray]:
    """Re-cut batches to `size` clips (a fixed-batch graph); 0 = as they come."""
    pending: list[np.ndarray] = []
    for batch in batches:
        array = batch.numpy()
        if not size:
            yield array
            continue
        pending.extend(array)
        while len(pending) >= size:
            yield np.stack(pending[:size])
            del pending[:size]


def agreement(model: torch.nn.Module, quantized: OnnxModel,
              batches: list[torch.Tensor]) -> float:
    """Share of (clip, output) pairs whose top-1 class the int8 graph shares with the fp32
    PyTorch model (every task's logits, and the gate's)."""
    from mtl_perception.deploy.registry import build_engine

    engine = build_engine(quantized, "onnxruntime", "cpu")
    same = total = 0
    for clips in batches:
        with torch.no_grad():
            reference = [t.float().numpy() for t in model.score_all(clips)]  # type: ignore[operator]
        for got, want in zip(engine(clips.numpy()).as_list(), reference):
            got, want = alone(got), alone(want)  # a gate with memory: each clip's logits
            same += int((got.argmax(1) == want.argmax(1)).sum())
            total += len(want)
    return same / total if total else float("nan")


def describe(model: Any) -> str:
    return f"{len(model.data) / 1e6:.1f} MB, {model.export.precision}"
