"""Inference engines for exported models: ONNX Runtime (CPU, CUDA, TensorRT) and OpenVINO.

An engine takes the batch the streaming core built, (N, 3, T, H, W) float32,
and returns the graph's outputs as float32 arrays, (N, C) each: only the
forward pass differs from the torch backend. A fixed-batch graph gets its
batch padded with zeros (and the padding's rows dropped), or cut in pieces.

TensorRT runs through ONNX Runtime's TensorRT execution provider (the
`onnxruntime-gpu` wheel built with it, as on JetPack and NVIDIA's x86 wheels),
not torch-tensorrt: the same exported file then serves every backend, and the
engine is built from the graph the CPU backends were checked on. fp16 when
`autocast` is fp16; the built engine is cached on disk in a folder named by
the model's SHA-256, the GPU and the TensorRT version (`engine_cache`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_perception.deploy.onnx_file import INPUT_NAME, BackendError, OnnxModel, require
from mtl_perception.exits import one_line
from mtl_perception.stream.config import BACKENDS

log = logging.getLogger(__name__)

EXTRAS: dict[str, str] = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}
DEFAULT_ENGINE_CACHE = "~/.cache/mtl_perception/tensorrt"


class Engine:
    """One exported model, compiled for one device; call it on a batch of clips."""

    backend = ""

    def __init__(self, model: OnnxModel, device: torch.device, precision: str) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        self.batch = model.export.batch  # 0 = any
        crop = model.info.preprocess.crop
        self.clip_shape = (3, model.export.frames, crop[0], crop[1])

    def describe(self) -> str:
        return f"{self.backend} on {self.device}, {self.precision} ({self.model.name})"

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if tuple(x.shape[1:]) != self.clip_shape:
            raise BackendError(
                f"{self.model.name} takes clips shaped {list(self.clip_shape)}, got "
                f"{list(x.shape[1:])}: leave clip_length at 0 (the exported frame count)"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.batch or x.shape[0] == self.batch:
            return self._run(x)
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


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime: CPU, CUDA, or TensorRT (then CUDA and CPU for what TensorRT cannot run)."""

    def __init__(
        self,
        model: OnnxModel,
        device: torch.device,
        *,
        tensorrt: bool = False,
        fp16: bool = False,
        engine_cache: str = "",
    ) -> None:
        extra = "tensorrt" if tensorrt else "onnx"
        ort = require("onnxruntime", extra, f"backend {'tensorrt' if tensorrt else 'onnxruntime'}")
        precision = model.export.precision if model.export.precision != "fp32" else (
            "fp16" if fp16 else "fp32")
        super().__init__(model, device, precision)
        self.backend = "tensorrt" if tensorrt else "onnxruntime"
        available = ort.get_available_providers()
        index = device.index or 0
        providers: list[Any] = []
        if tensorrt:
            if "TensorrtExecutionProvider" not in available:
                raise BackendError(
                    "backend tensorrt: this ONNX Runtime has no TensorRT execution provider "
                    f"(it has {available}); needs an NVIDIA GPU with TensorRT and "
                    "pip install 'mtl_perception[tensorrt]' (JetPack: NVIDIA's onnxruntime-gpu)"
                )
            cache = tensorrt_cache(model, index, fp16, engine_cache)
            cache.mkdir(parents=True, exist_ok=True)
            providers.append(("TensorrtExecutionProvider", {
                "device_id": index, "trt_fp16_enable": fp16,
                "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            }))
            log.info("TensorRT engine cache: %s", cache)
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise BackendError(
                    f"backend {self.backend} on {device}: this ONNX Runtime has no CUDA "
                    "execution provider: pip install onnxruntime-gpu (or use device cpu)"
                )
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        # The same thread count torch uses (`--threads`, torch.set_num_threads), so that
        # backends compare like for like and a busy robot can cap every engine alike.
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model.data, options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise BackendError(f"{self.backend} cannot load {model.name}: "
                               f"{one_line(exc)}") from exc
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, np.float32) for o in self.session.run(None, {INPUT_NAME: x})]


class OpenVinoEngine(Engine):
    """OpenVINO on the CPU, float32 inference precision kept (no silent bf16 on AMX CPUs)."""

    backend = "openvino"

    def __init__(self, model: OnnxModel, device: torch.device) -> None:
        ov = require("openvino", "openvino", "backend openvino")
        super().__init__(model, device, model.export.precision)
        import io

        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": max(1, torch.get_num_threads()),
            "PERFORMANCE_HINT": "LATENCY",
        }
        try:
            compiled = core.compile_model(core.read_model(io.BytesIO(model.data)), "CPU", config)
        except Exception as exc:
            raise BackendError(f"openvino cannot load {model.name}: "
                               f"{one_line(exc)}") from exc
        self.request = compiled.create_infer_request()
        self.outputs = list(compiled.outputs)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({INPUT_NAME: x})
        return [np.array(result[o], np.float32) for o in self.outputs]


def make_engine(
    backend: str, model: OnnxModel, device: torch.device, *, autocast: str = "none",
    engine_cache: str = "", device_asked: str = "",
) -> Engine:
    """The engine for `backend` on `device` (already resolved by the streaming core)."""
    if backend == "onnxruntime":
        return OnnxRuntimeEngine(model, device)
    if backend == "openvino":
        if device.type != "cpu":
            if device_asked == "auto":  # "the best there is": for OpenVINO here, the CPU
                return OpenVinoEngine(model, torch.device("cpu"))
            raise BackendError(f"backend openvino runs on the CPU here; device {device} "
                               "asked for: set device cpu (or auto)")
        return OpenVinoEngine(model, device)
    if backend == "tensorrt":
        if device.type != "cuda":
            raise BackendError(f"backend tensorrt needs a CUDA GPU; device is {device} "
                               "(no GPU here?): use onnxruntime or openvino on a CPU")
        return OnnxRuntimeEngine(model, device, tensorrt=True, fp16=autocast == "fp16",
                                 engine_cache=engine_cache)
    raise BackendError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")


def tensorrt_cache(model: OnnxModel, index: int, fp16: bool, root: str = "") -> Path:
    """Cache folder of one model's engines: checksum, GPU and TensorRT version in its name,
    so a new model, card or TensorRT never picks up a stale engine."""
    gpu = torch.cuda.get_device_name(index) if torch.cuda.is_available() else "nogpu"
    try:
        import tensorrt

        version = str(tensorrt.__version__)
    except ImportError:  # TensorRT libraries without the Python bindings
        version = "unknown"
    name = f"{model.sha256[:16]}-{gpu}-trt{version}-{'fp16' if fp16 else 'fp32'}"
    return Path(root or DEFAULT_ENGINE_CACHE).expanduser() / re.sub(r"[^A-Za-z0-9._-]", "_", name)
