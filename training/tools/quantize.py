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

from mtl_perception.deploy.export import INT8_MIN_OPSET, ExportError, with_metadata
from mtl_perception.deploy.onnx_file import INPUT_NAME, OnnxModel, require
from mtl_perception.exits import one_line
from mtl_perception.models.gate import alone


def quantize_int8(exported: OnnxModel, clips: Iterator[np.ndarray], *, symmetric: bool = False,
                  per_channel: bool = True) -> OnnxModel:
    """The int8 model calibrated on `clips` (batches shaped like the graph's input).

    `symmetric`: signed int8 activations and weights with zero point 0, what
    TensorRT takes (`deploy/tensorrt.py`); otherwise uint8 activations with a
    calibrated zero point (the CPU engines' usual choice). `per_channel`: one
    weight scale per output channel rather than per tensor. Calibration clips
    that cannot calibrate (none, another shape, NaN or inf) and an opset the
    quantiser cannot write are one ExportError line.
    """
    quantization = require("onnxruntime.quantization", "onnx", "int8 quantisation")
    if exported.export.opset < INT8_MIN_OPSET:  # below it the quantiser wrote a graph ONNX
        # Runtime refuses (per-channel) or silently raised the opset the metadata records
        raise ExportError(f"int8 needs an export of opset {INT8_MIN_OPSET} or newer, got "
                          f"opset {exported.export.opset} (--opset)")
    reader = _calibration_reader(quantization.CalibrationDataReader, clips, exported)
    shapes = require("onnxruntime.quantization.shape_inference", "onnx", "int8 quantisation")
    with tempfile.TemporaryDirectory() as folder:
        raw, source = Path(folder, "raw.onnx"), Path(folder, "fp32.onnx")
        target = Path(folder, "int8.onnx")
        raw.write_bytes(exported.data)
        try:
            # ONNX Runtime's recommended preparation: shapes inferred and the graph
            # optimised (BatchNorm folded into the convolutions) before calibration.
            shapes.quant_pre_process(str(raw), str(source))
            quantization.quantize_static(
                str(source), str(target), reader,
                quant_format=quantization.QuantFormat.QDQ,
                activation_type=(quantization.QuantType.QInt8 if symmetric
                                 else quantization.QuantType.QUInt8),
                weight_type=quantization.QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
            )
        except ExportError:
            raise
        except Exception as exc:  # ONNX Runtime's own types, and its asserts
            raise ExportError(f"int8 quantisation failed: {one_line(exc)}") from exc
        data = target.read_bytes()
    export = replace(exported.export, precision="int8")
    return with_metadata(data, exported.info, export)


def _calibration_reader(base: Any, clips: Iterator[np.ndarray], exported: OnnxModel) -> Any:
    """ONNX Runtime's calibration reader over `clips`, each batch checked first: the
    quantiser said "No data is collected", "scale issue" (an assert) or an ONNX Runtime
    shape error for what is one of these."""
    crop = exported.info.preprocess.crop
    clip = (3, exported.export.frames, crop[0], crop[1])
    batch = exported.export.batch

    class Reader(base):
        batches = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(clips, None)
            if x is None:
                if not self.batches:
                    raise ExportError(
                        "int8 calibration got no clips" + (
                            f" (a graph of fixed batch {batch} takes them {batch} at a time)"
                            if batch else ""))
                return None
            x = np.asarray(x)
            if tuple(x.shape[1:]) != clip or (batch and len(x) != batch) or not len(x):
                raise ExportError(f"int8 calibration clips shaped {list(x.shape)}; the graph "
                                  f"takes [{batch or 'N'}, {', '.join(map(str, clip))}]")
            if x.dtype.kind != "f" or not np.isfinite(x).all():
                raise ExportError("int8 calibration clips must be finite floats (NaN or inf "
                                  "has no int8 range); got some that are not")
            self.batches += 1
            return {INPUT_NAME: x.astype(np.float32)}

    return Reader()


def fixed_batches(batches: Iterator[torch.Tensor], size: int) -> Iterator[np.ndarray]:
    """Re-cut batches to `size` clips (a fixed-batch graph); 0 = as they come. The last,
    short batch is filled up by repeating its own clips: min/max calibration is unchanged
    by a repeat, and fewer clips than `size` still calibrate (they gave no batch at all)."""
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
    if pending:
        yield np.stack([pending[i % len(pending)] for i in range(size)])


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
