"""The engine registry and `load_engine`: backend names, one-line refusals, what an engine
reports about its model (tasks, gate) from the metadata, and TensorRT's options (built
and refused without a GPU)."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_export import clips, saved_tiny_model, tiny_model

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.deploy import tensorrt
from mtl_perception.deploy.errors import BackendError
from mtl_perception.deploy.export import export_onnx
from mtl_perception.deploy.load import load_engine
from mtl_perception.deploy.registry import BACKEND_NAMES, BACKENDS, build_engine
from mtl_perception.models import build_model
from mtl_perception.ros.params import BY_NAME
from mtl_perception.stream.config import BACKENDS as STREAM_BACKENDS

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_tiny_model(tmp_path_factory.mktemp("registry") / "model.safetensors")


def test_every_setting_takes_the_registrys_names() -> None:
    assert BACKEND_NAMES == ("torch", "onnxruntime", "openvino", "tensorrt")
    assert STREAM_BACKENDS == BACKEND_NAMES and BY_NAME["backend"].choices == BACKEND_NAMES
    with pytest.raises(BackendError, match=r"backend must be one of \['torch', 'onnxruntime'"):
        load_engine("model.safetensors", "tflite")


@pytest.mark.parametrize(("backend", "module", "extra"), [
    ("torch", "torch", "torch"),
    ("onnxruntime", "onnxruntime", "onnx"),
    ("openvino", "openvino", "openvino"),
    ("tensorrt", "onnxruntime", "tensorrt"),  # through ONNX Runtime's TensorRT provider
])
def test_a_backend_without_its_package_is_refused_in_one_line(
        backend: str, module: str, extra: str, checkpoint: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    for path in (checkpoint, checkpoint.with_name("absent.onnx")):  # before any file is read
        with pytest.raises(BackendError) as caught:
            load_engine(path, backend, "cpu")
        message = str(caught.value)
        assert message == (f"backend {backend} needs the Python package '{module}', which is "
                           f"not installed: pip install 'mtl_perception[{extra}]'")


def test_a_checkpoint_on_an_onnx_backend_without_onnx_names_the_extra(
        checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # exported in memory first: needs onnx
    with pytest.raises(BackendError, match=r"pip install 'mtl_perception\[onnx\]'$"):
        load_engine(checkpoint, "onnxruntime")


def test_devices_each_backend_refuses(checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the refusals of a machine without a GPU")
    with pytest.raises(BackendError, match="backend tensorrt needs a CUDA GPU; device is cpu"):
        load_engine(checkpoint, "tensorrt", "auto")
    with pytest.raises(ValueError, match="device 'cuda' asked for, but CUDA is not available"):
        load_engine(checkpoint, "torch", "cuda")
    assert BACKENDS["openvino"].device("auto") == torch.device("cpu")  # its best here


def test_torch_and_onnxruntime_engines_score_alike_and_report_the_same_model(
        checkpoint: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    engines = [load_engine(checkpoint, "torch"), load_engine(checkpoint, "onnxruntime")]
    x = clips(3).numpy()
    reference = engines[0](x)
    assert [t.shape for t in reference.tasks] == [(3, 5), (3, 7)] and reference.gate is None
    for engine in engines:
        assert engine.task_names == ("action", "gesture") and not engine.has_gate
        assert engine.describe().startswith(f"{engine.backend} on cpu, fp32")
        got = engine(x)
        for a, b in zip(got.tasks, reference.tasks):
            assert float(np.abs(a - b).max()) < 1e-4


def test_the_gate_is_the_metadatas_word_on_every_backend(tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    gated_info = CheckpointInfo(replace(info.model, gate=True), info.class_names,
                                info.preprocess)
    gated = build_model(gated_info.model)
    gated.load_state_dict(model.state_dict(), strict=False)
    gated.eval()
    path = tmp_path / "gated.safetensors"
    save_checkpoint(path, gated, gated_info)
    exported = export_onnx(gated, gated_info)
    for engine in (load_engine(path, "torch"), load_engine(path, "onnxruntime"),
                   build_engine(exported, "onnxruntime")):
        assert engine.has_gate, engine.describe()
        scores = engine(clips(2).numpy())
        assert scores.gate is not None and scores.gate.shape == (2, 3)
        assert len(scores.as_list()) == 3


def test_an_exported_file_on_the_torch_backend_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="set backend to onnxruntime, openvino or tensorrt"):
        load_engine(tmp_path / "absent.onnx", "torch")


# ---------------------------------------------------------------- TensorRT (no GPU)
VERSIONS = {"tensorrt": "10.3.0", "cuda": "12.6", "driver": "12.6"}


def _options(model: object, cameras: int, tmp_path: Path, **versions: str) -> dict[str, object]:
    probe = {**VERSIONS, **versions}
    return tensorrt.provider_options(model, 0, fp16=True, root=str(tmp_path),  # type: ignore[arg-type]
                                     max_batch=cameras, ort_version="1.22.0",
                                     probe=lambda: dict(probe), gpu="Orin")


@pytest.mark.parametrize("cameras", [1, 4])
def test_tensorrt_profiles_cover_one_to_n_cameras(cameras: int, tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    exported = export_onnx(model, info)
    options = _options(exported, cameras, tmp_path)
    assert options["trt_profile_min_shapes"] == "clips:1x3x4x32x32"
    assert options["trt_profile_opt_shapes"] == f"clips:{cameras}x3x4x32x32"
    assert options["trt_profile_max_shapes"] == f"clips:{cameras}x3x4x32x32"
    assert options["trt_timing_cache_enable"] is True
    assert options["trt_timing_cache_path"] == str(tmp_path)
    assert options["trt_fp16_enable"] is True and options["trt_int8_enable"] is False
    cache = Path(str(options["trt_engine_cache_path"]))
    assert cache.parent == tmp_path
    for part in (exported.sha256[:16], "Orin", "tensorrt10.3.0", "onnxruntime1.22.0",
                 "cuda12.6", "driver12.6", "fp32-fp16"):
        assert part in cache.name
    fixed = export_onnx(model, info, batch=2)  # one shape: no profile
    assert "trt_profile_min_shapes" not in _options(fixed, cameras, tmp_path)


def test_tensorrt_cache_key_changes_with_every_version(tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    exported = export_onnx(model, info)
    base = _options(exported, 1, tmp_path)["trt_engine_cache_path"]
    for name, value in [("tensorrt", "10.4.0"), ("cuda", "12.8"), ("driver", "12.8")]:
        assert _options(exported, 1, tmp_path, **{name: value})["trt_engine_cache_path"] != base


@pytest.mark.parametrize("missing", ["tensorrt", "cuda", "driver"])
def test_tensorrt_refuses_a_version_it_cannot_read(missing: str, tmp_path: Path) -> None:
    model, info = tiny_model("hps")
    exported = export_onnx(model, info)
    with pytest.raises(BackendError, match=f"cannot read the {missing} version"):
        _options(exported, 1, tmp_path, **{missing: "unknown" if missing == "cuda" else ""})


def test_tensorrt_refuses_asymmetric_int8_and_takes_symmetric(tmp_path: Path) -> None:
    from training.tools.quantize import quantize_int8

    model, info = tiny_model("hps")
    exported = export_onnx(model, info)
    batches = [clips(4, seed=s).numpy() for s in range(2)]
    asymmetric = quantize_int8(exported, iter(batches))
    bad, total = tensorrt.quantization_zero_points(asymmetric.data)
    assert total > 0 and bad > 0
    with pytest.raises(BackendError, match=r"backend tensorrt takes symmetric int8 only; .* "
                                           r"--int8 --symmetric"):
        tensorrt.check_quantization(asymmetric)
    symmetric = quantize_int8(exported, iter(batches), symmetric=True)
    assert tensorrt.quantization_zero_points(symmetric.data)[0] == 0
    tensorrt.check_quantization(symmetric)  # accepted
    assert _options(symmetric, 2, tmp_path)["trt_int8_enable"] is True


def test_a_tensorrt_build_logs_progress_until_done(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mtl_perception.deploy.tensorrt")
    done = __import__("threading").Event()
    with tensorrt.BuildProgress("model.onnx", str(tmp_path / "cache"), every_s=0.01):
        done.wait(0.2)  # a build that takes a while
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("building the TensorRT engine for model.onnx")
    assert any(line.startswith("still building the TensorRT engine") for line in lines[1:])
    caplog.clear()
    (tmp_path / "cache" / "x.engine").write_bytes(b"")
    with tensorrt.BuildProgress("model.onnx", str(tmp_path / "cache"), every_s=0.01):
        done.wait(0.05)
    assert [r.getMessage() for r in caplog.records] == [
        f"TensorRT engine for model.onnx from the cache {tmp_path / 'cache'}"]
