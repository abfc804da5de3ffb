"""Hostile input to export, quantisation and the engines: each is one line or the right
answer, the same on every backend (found by probing; each test failed before its fix)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_export import CROP, FRAMES, clips, saved_tiny_model, tiny_model

from mtl_perception.checkpoint import CheckpointError
from mtl_perception.deploy.device import resolve_device
from mtl_perception.deploy.errors import BackendError, DeviceError
from mtl_perception.deploy.export import ExportError, export_onnx, max_difference
from mtl_perception.deploy.load import load_engine
from mtl_perception.deploy.onnx_file import read_onnx_model
from mtl_perception.deploy.registry import build_engine
from training.__main__ import main as training_main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
CPU_BACKENDS = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
PARITY = 1e-4  # fp32 engines against PyTorch eager (~1e-7 measured, test_export.py)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_tiny_model(tmp_path_factory.mktemp("probe") / "m.safetensors")


def _refused(args: list[str], capfd: pytest.CaptureFixture[str]) -> str:
    """The export's one-line error (exit 2), with nothing else on stdout or stderr."""
    capfd.readouterr()
    assert training_main(["export", *args]) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), (out, err)
    return err.strip()


# ------------------------------------------------------------------ export options
@pytest.mark.parametrize("opset", ["6", "24"])
def test_an_opset_torch_cannot_write_is_one_line_before_any_work(
        opset: str, checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Opset 24 printed torch's whole graph (200+ lines) on stdout; 6 ended in ONNX Runtime's
    NotImplemented traceback; 1-5 blamed the output shapes."""
    out = tmp_path / "m.onnx"
    err = _refused(["--checkpoint", str(checkpoint), "--out", str(out), "--opset", opset],
                   capfd)
    assert err == f"error: --opset {opset}: this torch exports ONNX opsets 7..23"
    assert not out.exists()
    model, info = tiny_model("hps")
    with pytest.raises(ExportError, match=r"^opset 5: this torch exports ONNX opsets 7\.\.23"):
        export_onnx(model, info, opset=5)


def test_int8_only_options_without_int8_are_refused(
        checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`--symmetric` (for TensorRT) without `--int8` wrote an fp32 file and said nothing."""
    out = tmp_path / "m.onnx"
    err = _refused(["--checkpoint", str(checkpoint), "--out", str(out), "--symmetric",
                    "--accept-int8-loss"], capfd)
    assert err == "error: --symmetric, --accept-int8-loss only apply with --int8"
    assert not out.exists()


def test_int8_below_opset_13_is_one_line(checkpoint: Path, tmp_path: Path,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    """Opset 11: ONNX Runtime's 'invalid model' on the quantised graph; 7: 'Required inputs
    (['_v_184']) are missing'; 10 per-tensor: the file said opset 10 and was opset 11."""
    err = _refused(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                    "--int8", "--calibration", str(tmp_path / "set.yaml"), "--opset", "12"],
                   capfd)
    assert err == ("error: --int8 needs --opset 13 or newer (older opsets cannot hold its "
                   "QDQ graph), got 12")
    from training.tools.quantize import quantize_int8

    model, info = tiny_model("hps")
    old = export_onnx(model, info, opset=11)
    with pytest.raises(ExportError, match="int8 needs an export of opset 13 or newer, got "
                                          "opset 11"):
        quantize_int8(old, iter([clips(2).numpy()]), per_channel=False)


def test_an_exported_model_as_checkpoint_is_named_as_such(
        checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """It said '--out X.onnx is an input of this run' though no --out was given."""
    exported = tmp_path / "m.onnx"
    assert training_main(["export", "--checkpoint", str(checkpoint), "--out",
                          str(exported)]) == 0
    before = exported.read_bytes()
    err = _refused(["--checkpoint", str(exported)], capfd)
    assert err == (f"error: --checkpoint {exported} is an exported ONNX model; export reads "
                   "the .safetensors checkpoint it came from")
    assert exported.read_bytes() == before


def test_a_fixed_batch_parity_check_compares_a_short_last_batch() -> None:
    """Clips fewer than a fixed batch were skipped: a graph of another model 'matched'."""
    model, info = tiny_model("hps")
    other = export_onnx(tiny_model("hps", seed=7)[0], info, batch=3)
    assert max_difference(model, other, clips(2)) > 1e-3
    same = export_onnx(model, info, batch=3)
    assert max_difference(model, same, clips(5)) < PARITY  # a full batch and a short one


def test_an_export_onnx_runtime_cannot_load_is_one_export_error() -> None:
    model, info = tiny_model("hps")
    exported = export_onnx(model, info)
    broken = type(exported)(exported.data[:-1000] + b"\x00" * 10, exported.info,
                            exported.export)
    with pytest.raises(ExportError, match=r"^ONNX Runtime cannot run the export \(opset 17, "
                                          r"fp32\): ") as caught:
        max_difference(model, broken, clips(2))
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------ int8 calibration
@pytest.mark.parametrize(("batches", "message"), [
    ([], "int8 calibration got no clips"),
    ([np.full((2, 3, FRAMES, *CROP), np.nan, np.float32)], "must be finite floats"),
    ([np.zeros((2, 3, FRAMES + 1, *CROP), np.float32)],
     rf"clips shaped \[2, 3, {FRAMES + 1}, 32, 32\]; the graph takes \[N, 3, {FRAMES}, 32, 32\]"),
])
def test_calibration_clips_that_cannot_calibrate_are_one_line(
        batches: list[np.ndarray], message: str) -> None:
    """Before: 'No data is collected.', an AssertionError 'scale issue', ONNX Runtime's
    InvalidArgument (the last two not ValueErrors: a traceback from the command)."""
    from training.tools.quantize import quantize_int8

    model, info = tiny_model("hps")
    with pytest.raises(ExportError, match=message) as caught:
        quantize_int8(export_onnx(model, info), iter(batches))
    assert "\n" not in str(caught.value)


def test_fewer_calibration_clips_than_a_fixed_batch_still_calibrate() -> None:
    """`--batch 4 --calibration-clips 1` gave no batch at all ('No data is collected.')."""
    from training.tools.quantize import fixed_batches, quantize_int8

    one = clips(1)
    batches = list(fixed_batches(iter([one]), 4))
    assert [b.shape[0] for b in batches] == [4]
    for row in batches[0]:
        np.testing.assert_allclose(row, one[0].numpy(), atol=0)  # repeats of the clip given
    six = list(fixed_batches(iter([clips(3, seed=2), clips(3, seed=3)]), 4))
    assert [b.shape[0] for b in six] == [4, 4]
    model, info = tiny_model("hps")
    int8 = quantize_int8(export_onnx(model, info, batch=4), iter(batches))
    got = build_engine(int8, "onnxruntime")(clips(2).numpy())
    assert [t.shape for t in got.tasks] == [(2, 5), (2, 7)]


# ------------------------------------------------------------------ engine input
@pytest.fixture(scope="module")
def engines(checkpoint: Path) -> list:
    from training.tools.quantize import quantize_int8

    model, info = tiny_model("hps")
    fp32 = export_onnx(model, info, batch=2)
    int8 = quantize_int8(export_onnx(model, info),
                         iter([clips(4, seed=s).numpy() for s in range(2)]))
    built = [load_engine(checkpoint, "torch")]
    built += [build_engine(m, b) for m in (fp32, int8) for b in CPU_BACKENDS]
    return built


def test_a_clip_with_nan_or_inf_scores_nan_on_every_backend(engines: list) -> None:
    """OpenVINO and every int8 graph turned a NaN clip into finite scores, so the stream
    (which skips a clip by its non-finite scores) published them on those backends only."""
    x = clips(3).numpy()
    alone = [e(x[:1]).as_list() for e in engines]
    x[1, 0, 0, 0, 0] = np.nan
    x[2, 2, 1, 3, 4] = np.inf
    for engine, first in zip(engines, alone):
        got = engine(x).as_list()
        for out, want in zip(got, first):
            assert np.isnan(out[1:]).all(), engine.describe()
            np.testing.assert_allclose(out[:1], want, atol=PARITY)  # a clean row is kept


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.bool_, np.complex64])
def test_clips_that_are_not_floats_are_refused_on_every_backend(engines: list,
                                                                dtype: type) -> None:
    """uint8 frames were scored as if preprocessed; complex lost its imaginary part."""
    x = np.zeros((2, 3, FRAMES, *CROP), dtype)
    for engine in engines:
        with pytest.raises(BackendError, match=rf"an engine takes preprocessed float clips "
                                               rf"\(mtl_perception.preprocess\), got dtype "
                                               rf"{np.dtype(dtype)}$"):
            engine(x)
    for engine in engines:  # any float is cast, as before
        assert engine(np.zeros((2, 3, FRAMES, *CROP), np.float64)).tasks[0].shape == (2, 5)


def test_clips_of_another_crop_are_refused_on_every_backend(engines: list) -> None:
    """The torch engine scored a 24x40 clip of a 32x32 model without a word (its global
    pooling takes any size); the ONNX graphs refused it with their own words."""
    x = np.zeros((2, 3, FRAMES, 24, 40), np.float32)
    for engine in engines:
        with pytest.raises(BackendError, match=r"takes clips cropped to \[32, 32\] \(its "
                                               r"preprocessing\), got \[24, 40\]$"):
            engine(x)


def test_no_clips_give_empty_scores_on_a_fixed_batch_graph(engines: list) -> None:
    """A fixed-batch graph said '0 outputs, its metadata describes 2'."""
    for engine in engines:
        scores = engine(np.zeros((0, 3, FRAMES, *CROP), np.float32))
        assert [t.shape for t in scores.tasks] == [(0, 5), (0, 7)], engine.describe()


# ------------------------------------------------------------------ devices, options, files
@pytest.mark.parametrize("device", ["meta", "mps", "xpu"])
def test_a_device_type_no_engine_runs_on_is_one_line(device: str, checkpoint: Path) -> None:
    """torch took `meta` (and failed at the first clip), ONNX Runtime ran on the CPU while
    saying 'on mps'; `xpu` was an AssertionError."""
    with pytest.raises(DeviceError, match=rf"^device '{device}' is not auto, cpu, cuda or "
                                          r"cuda:N$"):
        resolve_device(device)
    for backend in ("torch", "onnxruntime"):
        with pytest.raises(DeviceError, match="is not auto, cpu, cuda or cuda:N"):
            load_engine(checkpoint, backend, device)


def test_autocast_is_checked_on_every_backend(checkpoint: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Only torch checked the word; the ONNX backends ran on with any."""
    absent = tmp_path / "absent.onnx"  # refused before the file is read
    for backend in ("onnxruntime", "openvino", "tensorrt"):
        with pytest.raises(DeviceError, match=r"autocast must be one of \['none', 'fp16', "
                                              r"'bf16'\], got 'fp61'"):
            load_engine(absent, backend, "cpu", autocast="fp61")
    with pytest.raises(BackendError, match="backend tensorrt builds fp32 or fp16 engines"):
        load_engine(absent, "tensorrt", "cpu", autocast="bf16")
    caplog.set_level(logging.WARNING, logger="mtl_perception.deploy.registry")
    engine = load_engine(checkpoint, "onnxruntime", "cpu", autocast="fp16")
    assert engine.precision == "fp32"
    assert [r.getMessage() for r in caplog.records] == [
        "autocast fp16 ignored by backend onnxruntime: it runs the exported file's own "
        "precision"]


def test_an_empty_model_file_is_named_empty(tmp_path: Path) -> None:
    """It said 'has no mtl_perception metadata: not exported by training export'."""
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"^model {path} is empty \(0 bytes\)"):
        read_onnx_model(path)
