"""Engines for exported models: ONNX Runtime (CPU, CUDA, TensorRT) and OpenVINO.

Each takes the batch an `Engine` takes, (N, 3, T, H, W) float32, and runs the
exported graph; only the forward pass differs from the torch backend. A
fixed-batch graph gets its batch padded with zeros (and the padding's rows
dropped), or cut in pieces.

TensorRT runs through ONNX Runtime's TensorRT execution provider (the
`onnxruntime-gpu` wheel built with it, as on JetPack and NVIDIA's x86 wheels),
not torch-tensorrt: the same exported file then serves every backend, and the
engine is built from the graph the CPU backends were checked on. Its
options (profiles, caches, versions) are built in `deploy/tensorrt.py`.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import torch

from mtl_perception.deploy.engine import Engine
from mtl_perception.deploy.errors import BackendError, one_line, require
from mtl_perception.deploy.onnx_file import INPUT_NAME, OnnxModel

log = logging.getLogger(__name__)


class OnnxEngine(Engine):
    """An exported graph: fixed input shape checked, fixed batches padded or cut."""

    def __init__(self, model: OnnxModel, device: torch.device, precision: str) -> None:
        super().__init__(model.info, device, precision, model.name)
        self.model = model
        self.batch = model.export.batch  # 0 = any
        crop = model.info.preprocess.crop
        self.clip_shape = (3, model.export.frames, crop[0], crop[1])

    def describe(self) -> str:
        return f"{super().describe()} ({self.model.name})"

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        if tuple(x.shape[1:]) != self.clip_shape:
            raise BackendError(
                f"{self.model.name} takes clips shaped {list(self.clip_shape)}, got "
                f"{list(x.shape[1:])}: leave clip_length at 0 (the exported frame count)"
            )
        if not self.batch or x.shape[0] == self.batch:
            return self._run(x)
        if not x.shape[0]:  # no clips: a fixed graph still needs its batch for the shapes
            return [out[:0] for out in self._run(np.zeros((self.batch, *self.clip_shape),
                                                          np.float32))]
        pieces: list[list[np.ndarray]] = []
        for start in range(0, x.shape[0], self.batch):
            part = x[start:start + self.batch]
            rows = part.shape[0]
            if rows < self.batch:
                pad = np.zeros((self.batch - rows, *self.clip_shape), np.float32)
                part = np.concatenate([part, pad])
            pieces.append([out[:rows] for out in self._run(part)])
        return [np.concatenate(outs) for outs in zip(*pieces)]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


def threads() -> int:
    """The thread count torch uses (`--threads`, torch.set_num_threads): every engine
    takes the same, so backends compare like for like and a busy robot caps them alike."""
    return max(1, torch.get_num_threads())


class OnnxRuntimeEngine(OnnxEngine):
    """ONNX Runtime: CPU, CUDA, or TensorRT (then CUDA and CPU for what TensorRT cannot run)."""

    def __init__(self, model: OnnxModel, device: torch.device, *, tensorrt: bool = False,
                 fp16: bool = False, engine_cache: str = "", max_batch: int = 0) -> None:
        name = "tensorrt" if tensorrt else "onnxruntime"
        ort = require("onnxruntime", "tensorrt" if tensorrt else "onnx", f"backend {name}")
        precision = model.export.precision
        if precision == "fp32" and fp16:
            precision = "fp16"
        super().__init__(model, device, precision)
        self.backend = name
        available = ort.get_available_providers()
        index = device.index or 0
        providers: list[Any] = []
        building = None
        if tensorrt:
            from mtl_perception.deploy.tensorrt import BuildProgress, provider_options

            if "TensorrtExecutionProvider" not in available:
                raise BackendError(
                    "backend tensorrt: this ONNX Runtime has no TensorRT execution provider "
                    f"(it has {available}); needs an NVIDIA GPU with TensorRT and "
                    "pip install 'mtl_perception[tensorrt]' (JetPack: NVIDIA's onnxruntime-gpu)"
                )
            options = provider_options(model, index, fp16=fp16, root=engine_cache,
                                       max_batch=max_batch, ort_version=ort.__version__)
            providers.append(("TensorrtExecutionProvider", options))
            building = BuildProgress(model.name, options["trt_engine_cache_path"])
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise BackendError(
                    f"backend {name} on {device}: this ONNX Runtime has no CUDA "
                    "execution provider: pip install onnxruntime-gpu (or use device cpu)"
                )
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads()
        options.inter_op_num_threads = 1
        try:
            if building is not None:
                with building:
                    self.session = ort.InferenceSession(model.data, options, providers=providers)
            else:
                self.session = ort.InferenceSession(model.data, options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise BackendError(f"{name} cannot load {model.name}: {one_line(str(exc))}") from exc

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, np.float32) for o in self.session.run(None, {INPUT_NAME: x})]


class OpenVinoEngine(OnnxEngine):
    """OpenVINO on the CPU, float32 inference precision kept (no silent bf16 on AMX CPUs)."""

    backend = "openvino"

    def __init__(self, model: OnnxModel, device: torch.device) -> None:
        ov = require("openvino", "openvino", "backend openvino")
        if device.type != "cpu":
            raise BackendError(f"backend openvino runs on the CPU here; device {device} "
                               "asked for: set device cpu (or auto)")
        super().__init__(model, device, model.export.precision)
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        try:
            compiled = core.compile_model(core.read_model(io.BytesIO(model.data)), "CPU", config)
        except Exception as exc:
            raise BackendError(f"openvino cannot load {model.name}: "
                               f"{one_line(str(exc))}") from exc
        self.request = compiled.create_infer_request()
        self.outputs = list(compiled.outputs)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({INPUT_NAME: x})
        return [np.array(result[o], np.float32) for o in self.outputs]
