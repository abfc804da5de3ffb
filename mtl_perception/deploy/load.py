"""A model path -> an `Engine`: the one entry point of the node, `evaluate_bag`,
`training evaluate --backend` and the benchmarks.

The file's name decides what it is (`.onnx` = exported). A checkpoint
(.safetensors) runs on every backend (the ONNX ones export it in memory
first); an exported file on the ONNX backends only. The backend's name and
package are checked before the file is read, the file's checksum before the
engine is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mtl_perception.checkpoint import CheckpointInfo, load_checkpoint, read_checkpoint_info
from mtl_perception.deploy.engine import Engine
from mtl_perception.deploy.errors import BackendError
from mtl_perception.deploy.onnx_file import OnnxModel, read_onnx_model
from mtl_perception.deploy.registry import EngineOptions, backend, build_engine


@dataclass
class LoadedModel:
    model: nn.Module | OnnxModel
    info: CheckpointInfo


def is_exported(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def read_model_info(path: str | Path) -> CheckpointInfo:
    """The metadata of a checkpoint or an exported file, checked; one line if refused."""
    if is_exported(path):
        return read_onnx_model(path).info
    return read_checkpoint_info(path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A checkpoint's model on `device`, or an exported file's checked bytes (for code
    that needs the module itself, e.g. training's evaluator; inference: `load_engine`)."""
    if is_exported(path):
        exported = read_onnx_model(path)
        return LoadedModel(exported, exported.info)
    loaded = load_checkpoint(path, device)
    return LoadedModel(loaded.model, loaded.info)


def load_engine(
    path: str | Path, backend_name: str = "torch", device: str | torch.device = "cpu", *,
    autocast: str = "none", engine_cache: str = "", max_batch: int = 0, clip_length: int = 0,
) -> Engine:
    """The engine `backend_name` builds for the checkpoint or exported file at `path`.

    `device`: auto | cpu | cuda | cuda:N (auto = the best this backend has here).
    `autocast`: torch on a GPU (fp16 | bf16), TensorRT (fp16). `engine_cache`,
    `max_batch`: TensorRT's cache folder and the largest batch (cameras) its
    optimisation profile covers. `clip_length`: frames of a checkpoint exported
    in memory (0 = its own). Everything refused is one line (BackendError,
    DeviceError, CheckpointError).
    """
    spec = backend(backend_name)
    spec.check_autocast(autocast)  # a word that is no mode: refused before the file is read
    options = EngineOptions(autocast=autocast, engine_cache=engine_cache, max_batch=max_batch,
                            clip_length=clip_length)
    if is_exported(path):
        if spec.build is None:
            raise BackendError(
                f"backend torch runs checkpoints (.safetensors); {path} is an exported "
                "ONNX model: set backend to onnxruntime, openvino or tensorrt"
            )
        resolved = spec.device(device)  # a device it cannot use: refused before reading
        exported = read_onnx_model(path)
        frames = exported.export.frames
        if clip_length and clip_length != frames:  # its graph takes one clip length only
            raise BackendError(
                f"{path} was exported for clips of {frames} frames; clip_length "
                f"{clip_length} needs a model exported with --frames {clip_length} (or "
                "the checkpoint itself)")
        return build_engine(exported, backend_name, resolved, options=options)
    resolved = spec.device(device)
    loaded = load_checkpoint(path, resolved if spec.build is None else "cpu")
    return build_engine(loaded.model, backend_name, resolved, info=loaded.info,
                        options=options, source=str(path))
