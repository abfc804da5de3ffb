"""The backends an `Engine` can come from, by name; PyTorch is one of them.

Each backend names the optional package it needs (refused in one line naming
the setup.py extra when it is absent, before any file is read), how a device
name resolves for it (`auto` = the best it has here: the GPU for torch,
ONNX Runtime and TensorRT, the CPU for OpenVINO), and how it builds an engine
from an exported model (the torch backend takes the checkpoint's module
itself; the others take ONNX bytes, a checkpoint being exported in memory
first). `build_engine` is the one place a backend name is checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mtl_perception.deploy.device import AUTOCAST_MODES, resolve_device
from mtl_perception.deploy.errors import BackendError, DeviceError, require

if TYPE_CHECKING:
    from torch import nn

    from mtl_perception.checkpoint import CheckpointInfo
    from mtl_perception.deploy.engine import Engine
    from mtl_perception.deploy.onnx_file import OnnxModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """What a backend may use beyond the model and the device."""

    autocast: str = "none"  # torch on a GPU: fp16 | bf16; TensorRT: fp16 builds fp16
    engine_cache: str = ""  # TensorRT's engine and timing caches ("" = the default folder)
    max_batch: int = 0  # TensorRT: the largest batch (cameras) its profile covers; 0 = 4
    clip_length: int = 0  # frames of a checkpoint exported in memory; 0 = the checkpoint's


@dataclass(frozen=True)
class Backend:
    name: str
    package: str  # the module it imports; refused in one line naming `extra` if absent
    extra: str
    build: Callable[[OnnxModel, torch.device, EngineOptions], Engine] | None  # None: torch
    cpu_only: bool = False
    gpu_only: bool = False

    def require(self) -> None:
        require(self.package, self.extra, f"backend {self.name}")

    def check_autocast(self, autocast: str) -> None:
        """Refuse an autocast name that is not one on every backend (only torch checked it;
        the others ran on with any word), and one this backend cannot build."""
        if autocast not in AUTOCAST_MODES:
            raise DeviceError(f"autocast must be one of {list(AUTOCAST_MODES)}, got "
                              f"{autocast!r}")
        if self.name == "tensorrt" and autocast == "bf16":
            raise BackendError("backend tensorrt builds fp32 or fp16 engines: autocast bf16 "
                               "is not one of them (set autocast fp16 or none)")

    def device(self, name: str | torch.device) -> torch.device:
        """A device name resolved for this backend; one line for one it cannot use."""
        if self.cpu_only and str(name) == "auto":  # "the best there is": here, the CPU
            return torch.device("cpu")
        device = resolve_device(name)
        if self.cpu_only and device.type != "cpu":
            raise BackendError(f"backend {self.name} runs on the CPU here; device {name} "
                               "asked for: set device cpu (or auto)")
        if self.gpu_only and device.type != "cuda":
            raise BackendError(f"backend {self.name} needs a CUDA GPU; device is {device} "
                               "(no GPU here?): use onnxruntime or openvino on a CPU")
        return device


def _onnxruntime(model: OnnxModel, device: torch.device, options: EngineOptions) -> Engine:
    from mtl_perception.deploy.engines import OnnxRuntimeEngine

    return OnnxRuntimeEngine(model, device)


def _openvino(model: OnnxModel, device: torch.device, options: EngineOptions) -> Engine:
    from mtl_perception.deploy.engines import OpenVinoEngine

    return OpenVinoEngine(model, device)


def _tensorrt(model: OnnxModel, device: torch.device, options: EngineOptions) -> Engine:
    from mtl_perception.deploy.engines import OnnxRuntimeEngine
    from mtl_perception.deploy.tensorrt import check_quantization

    check_quantization(model)
    return OnnxRuntimeEngine(model, device, tensorrt=True, fp16=options.autocast == "fp16",
                             engine_cache=options.engine_cache, max_batch=options.max_batch)


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Add (or replace) a backend; `BACKEND_NAMES` lists the built-in ones."""
    BACKENDS[backend.name] = backend


for _backend in (
    Backend("torch", "torch", "torch", None),
    Backend("onnxruntime", "onnxruntime", "onnx", _onnxruntime),
    Backend("openvino", "openvino", "openvino", _openvino, cpu_only=True),
    Backend("tensorrt", "onnxruntime", "tensorrt", _tensorrt, gpu_only=True),
):
    register_backend(_backend)

# The names the settings accept (StreamConfig.backend, the node's `backend`, --backend).
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)


def backend(name: str) -> Backend:
    """The registered backend `name`, its package checked; one line if either is missing."""
    spec = BACKENDS.get(name)
    if spec is None:
        raise BackendError(f"backend must be one of {list(BACKENDS)}, got {name!r}")
    spec.require()
    return spec


def build_engine(
    model: nn.Module | OnnxModel, backend_name: str, device: str | torch.device = "cpu", *,
    info: CheckpointInfo | None = None, options: EngineOptions | None = None,
    source: str = "<in memory>",
) -> Engine:
    """An engine for a model in memory: a checkpoint's module (with its `info`) or an
    exported `OnnxModel`. A module on a non-torch backend is exported in memory first."""
    from mtl_perception.deploy.onnx_file import OnnxModel

    options = options or EngineOptions()
    spec = backend(backend_name)
    resolved = spec.device(device)
    spec.check_autocast(options.autocast)
    if spec.build is not None and spec.name != "tensorrt" and options.autocast != "none":
        log.warning("autocast %s ignored by backend %s: it runs the exported file's own "
                    "precision", options.autocast, spec.name)
    if isinstance(model, OnnxModel):
        if spec.build is None:
            raise BackendError(
                f"backend torch runs checkpoints (.safetensors); {model.name} is an exported "
                "ONNX model: set backend to onnxruntime, openvino or tensorrt"
            )
        return spec.build(model, resolved, options)
    if info is None:
        raise TypeError("a checkpoint's model needs its CheckpointInfo")
    if spec.build is None:
        from mtl_perception.deploy.torch_engine import TorchEngine

        return TorchEngine(model, info, resolved, options.autocast, source)
    from mtl_perception.deploy.export import export_onnx

    exported = export_onnx(model.cpu().eval(), info, frames=options.clip_length)
    return spec.build(exported, resolved, options)
