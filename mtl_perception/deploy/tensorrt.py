"""TensorRT through ONNX Runtime's TensorRT execution provider: the options it is built with.

Kept apart from the engine so that everything decided here runs, and is
tested, without a GPU (`test/test_engine_registry.py`):
- int8: TensorRT takes symmetric int8 only (signed, zero point 0, for
  weights and activations). An exported file with asymmetric (uint8 or
  non-zero zero point) QuantizeLinear nodes is refused in one line; export
  with `--int8 --symmetric` for TensorRT.
- Shapes: a dynamic-batch graph gets one explicit optimisation profile from 1
  to `max_batch` clips (one per camera), so a second camera does not rebuild
  the engine mid-stream; a fixed-batch graph has one shape and needs none.
- Caches: the engines and TensorRT's timing cache live in a folder named by
  the graph's SHA-256, the GPU, and the TensorRT, ONNX Runtime, CUDA and driver
  versions; a version that cannot be read is refused rather than guessed
  ("unknown" would let a stale engine load after an upgrade).
- Building an engine takes minutes on a Jetson: a line is logged every
  `PROGRESS_S` seconds until the session is ready.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from mtl_perception.deploy.errors import BackendError
from mtl_perception.deploy.onnx_file import INPUT_NAME, OnnxModel, quantization_zero_points

log = logging.getLogger(__name__)

DEFAULT_ENGINE_CACHE = "~/.cache/mtl_perception/tensorrt"
DEFAULT_MAX_BATCH = 4  # cameras one engine serves without a rebuild, unless told otherwise
PROGRESS_S = 10.0
VERSION_NAMES = ("tensorrt", "onnxruntime", "cuda", "driver")


def check_quantization(model: OnnxModel) -> None:
    """Refuse an int8 file TensorRT cannot take: asymmetric (uint8 / non-zero zero point)."""
    if model.export.precision != "int8":
        return
    asymmetric, total = quantization_zero_points(model.data)
    if asymmetric:
        raise BackendError(
            f"backend tensorrt takes symmetric int8 only; {model.name} has {asymmetric} of "
            f"{total} QuantizeLinear nodes with uint8 or non-zero zero points: export with "
            "--int8 --symmetric for TensorRT (or run this file on onnxruntime / openvino)"
        )


def profile_shapes(model: OnnxModel, max_batch: int) -> dict[str, str] | None:
    """`trt_profile_{min,opt,max}_shapes` for 1..max_batch clips; None for a fixed batch."""
    if model.export.batch:
        return None
    if max_batch < 1:
        raise BackendError(f"TensorRT profile: max_batch must be >= 1, got {max_batch}")
    crop = model.info.preprocess.crop
    clip = f"3x{model.export.frames}x{crop[0]}x{crop[1]}"
    return {
        "trt_profile_min_shapes": f"{INPUT_NAME}:1x{clip}",
        "trt_profile_opt_shapes": f"{INPUT_NAME}:{max_batch}x{clip}",
        "trt_profile_max_shapes": f"{INPUT_NAME}:{max_batch}x{clip}",
    }


def cache_folder(model: OnnxModel, gpu: str, fp16: bool, versions: Mapping[str, str],
                 root: str = "") -> Path:
    """The engine cache of one model on one GPU with one software stack; refuses a
    version it cannot name (a new TensorRT, CUDA or driver must never load an old engine)."""
    unknown = [name for name in VERSION_NAMES if not versions.get(name)
               or versions[name] == "unknown"]
    if unknown:
        raise BackendError(
            f"backend tensorrt: cannot read the {', '.join(unknown)} version(s) for the engine "
            "cache key (a stale engine could load after an upgrade): check that libnvinfer, "
            "libcudart and libcuda load (JetPack: its TensorRT and CUDA)"
        )
    parts = [model.sha256[:16], gpu, *(f"{n}{versions[n]}" for n in VERSION_NAMES),
             model.export.precision, "fp16" if fp16 else "fp32"]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts))
    return Path(root or DEFAULT_ENGINE_CACHE).expanduser() / name


def provider_options(model: OnnxModel, index: int, *, fp16: bool, root: str = "",
                     max_batch: int = 0, ort_version: str = "",
                     probe: Callable[[], dict[str, str]] | None = None,
                     gpu: str = "") -> dict[str, Any]:
    """The TensorRT execution provider's options for `model` on GPU `index`."""
    versions = (probe or stack_versions)()
    versions = {**versions, "onnxruntime": ort_version or versions.get("onnxruntime", "")}
    gpu = gpu or (torch.cuda.get_device_name(index) if torch.cuda.is_available() else "")
    if not gpu:
        raise BackendError("backend tensorrt needs a CUDA GPU; none is visible")
    cache = cache_folder(model, gpu, fp16, versions, root)
    options: dict[str, Any] = {
        "device_id": index,
        "trt_fp16_enable": fp16,
        # A QDQ file: TensorRT's explicit quantisation takes the file's scales (no table).
        "trt_int8_enable": model.export.precision == "int8",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache.parent),  # shared by models: layer timings
    }
    options.update(profile_shapes(model, max_batch or DEFAULT_MAX_BATCH) or {})
    return options


def stack_versions() -> dict[str, str]:
    """TensorRT, CUDA runtime and driver versions read from the libraries themselves
    (the Python `tensorrt` module is usually absent on JetPack); "" when one cannot load."""
    return {
        "tensorrt": _library_version(("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"),
                                     "getInferLibVersion", _trt_version, call_returns=True),
        "cuda": _library_version(("libcudart.so.12", "libcudart.so.11.0", "libcudart.so"),
                                 "cudaRuntimeGetVersion", _cuda_version),
        "driver": _library_version(("libcuda.so.1", "libcuda.so"), "cuDriverGetVersion",
                                   _cuda_version),
    }


def _trt_version(code: int) -> str:
    # 8.x encodes major*1000 + minor*100 + patch; 10.x major*10000 + minor*100 + patch.
    major, rest = (code // 10000, code % 10000) if code >= 10000 else (code // 1000, code % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _cuda_version(code: int) -> str:
    return f"{code // 1000}.{(code % 1000) // 10}"


def _library_version(names: tuple[str, ...], function: str, text: Callable[[int], str],
                     call_returns: bool = False) -> str:
    for name in names:
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if call_returns:
                return text(int(getattr(library, function)()))
            value = ctypes.c_int(0)
            if getattr(library, function)(ctypes.byref(value)) == 0 and value.value:
                return text(value.value)
        except (AttributeError, OSError):
            continue
    return ""


class BuildProgress:
    """Logs a line every `PROGRESS_S` seconds while a TensorRT engine builds (a first run
    with a new model, GPU or version; minutes on a Jetson); silent when the cache has one."""

    def __init__(self, name: str, cache: str, every_s: float = PROGRESS_S) -> None:
        self.name, self.cache, self.every_s = name, Path(cache), every_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BuildProgress:
        self.cache.mkdir(parents=True, exist_ok=True)
        if any(self.cache.glob("*.engine")):
            log.info("TensorRT engine for %s from the cache %s", self.name, self.cache)
            return self
        log.info("building the TensorRT engine for %s (first run with this model, GPU and "
                 "versions; cached in %s)", self.name, self.cache)
        self._thread = threading.Thread(target=self._report, daemon=True)
        self._thread.start()
        return self

    def _report(self) -> None:
        start = time.monotonic()
        while not self._done.wait(self.every_s):
            log.info("still building the TensorRT engine for %s: %.0f s", self.name,
                     time.monotonic() - start)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
