"""The `backend` setting: same pipeline, another engine; refusals are one line each."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_bag import tiny_checkpoint, write_image_bag
from helpers_datasets import write_yaml
from helpers_export import tiny_model

from mtl_perception.bag.evaluate import main as evaluate_bag
from mtl_perception.checkpoint import load_checkpoint, save_checkpoint
from mtl_perception.ros.node_config import check_checkpoint
from mtl_perception.ros.params import BY_NAME, check_value
from mtl_perception.stream import StreamConfig, StreamConfigError, StreamPipeline
from mtl_perception.stream.config import BACKENDS
from training.__main__ import main as training_main
from training.datasets.video import write_video

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
SETTINGS = ["target_fps=10", "inference_stride=2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("backends")
    labels = root / "labels.csv"
    labels.write_text("start,end,task,label\n0,2,action,walk\n2,4,action,jump\n"
                      "0.5,3.5,gesture,wave\n", encoding="utf-8")
    checkpoint = tiny_checkpoint(root / "model.safetensors")
    assert training_main(["export", "--checkpoint", str(checkpoint)]) == 0
    return {"checkpoint": checkpoint, "onnx": root / "model.onnx", "labels": labels,
            "bag": write_image_bag(root / "bag", count=40, fps=10.0)}


def _evaluate(files: dict[str, Path], out: Path, model: Path, backend: str) -> int:
    return evaluate_bag(["--bag", str(files["bag"]), "--checkpoint", str(model),
                         "--labels", str(files["labels"]), "--out", str(out), "--no-progress",
                         "--set", *SETTINGS, f"backend={backend}"])


def _one_error(caplog: pytest.LogCaptureFixture) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


def test_every_cpu_backend_gives_torchs_predictions(files: dict[str, Path],
                                                    tmp_path: Path) -> None:
    assert _evaluate(files, tmp_path / "torch", files["checkpoint"], "torch") == 0
    expected = (tmp_path / "torch/predictions.csv").read_text()
    runs = [("onnxruntime", files["onnx"]), ("onnxruntime", files["checkpoint"])]
    if importlib.util.find_spec("openvino") is not None:
        runs.append(("openvino", files["onnx"]))
    for n, (backend, model) in enumerate(runs):
        out = tmp_path / f"{backend}{n}"
        assert _evaluate(files, out, model, backend) == 0
        assert (out / "predictions.csv").read_text() == expected, (backend, model)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["engine"].startswith(f"{backend} on cpu, fp32")
        assert metrics["settings"]["backend"] == backend


def test_an_exported_file_on_the_torch_backend_is_one_line(
        files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert _evaluate(files, tmp_path / "out", files["onnx"], "torch") == 2
    assert "set backend to onnxruntime, openvino or tensorrt" in _one_error(caplog)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_tensorrt_without_a_gpu_is_one_line(files: dict[str, Path], tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    assert _evaluate(files, tmp_path / "out", files["onnx"], "tensorrt") == 2
    assert "backend tensorrt needs a CUDA GPU" in _one_error(caplog)


def test_a_damaged_exported_file_is_one_line(files: dict[str, Path], tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(files["onnx"].read_bytes()[:5000])
    assert _evaluate(files, tmp_path / "out", damaged, "onnxruntime") == 2
    assert "not a readable ONNX file" in _one_error(caplog)
    reason = check_checkpoint(damaged)  # the node's start-up check
    assert reason is not None and "not a readable ONNX file" in reason
    assert check_checkpoint(files["onnx"]) is None


def test_backend_is_a_stream_setting_fixed_while_running(files: dict[str, Path]) -> None:
    with pytest.raises(StreamConfigError, match="backend must be one of"):
        StreamConfig(backend="tflite")  # type: ignore[arg-type]
    loaded = load_checkpoint(files["checkpoint"])
    pipeline = StreamPipeline(loaded.model, loaded.info, StreamConfig(backend="onnxruntime"))
    assert pipeline.engine.startswith("onnxruntime on cpu, fp32")
    with pytest.raises(StreamConfigError, match="backend cannot change while running"):
        pipeline.update_settings(backend="torch")
    torch_pipeline = StreamPipeline(loaded.model, loaded.info, StreamConfig())
    assert torch_pipeline.engine == "torch on cpu, fp32"


def test_node_parameter_table_knows_backend() -> None:
    spec = BY_NAME["backend"]
    assert spec.section == "stream" and spec.choices == BACKENDS and spec.default == "torch"
    assert not spec.live
    reason = check_value(spec, "tflite")
    assert reason is not None and reason.startswith("backend")
    assert check_value(BY_NAME["engine_cache"], "/tmp/engines") is None


# ------------------------------------------- training evaluate --backend, int8 export
def _tree(root: Path, classes: list[str], per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        for i in range(per_class):
            frames = rng.integers(0, 256, (10, 48, 48, 3), dtype=np.uint8)
            frames[..., label % 3] = 255
            write_video(root / name / f"{name}{i}.avi", frames, fps=10.0)


def test_training_evaluate_backend_and_int8_export(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model, info = tiny_model("lws")
    classes = dict(zip(info.model.task_names, info.class_names))
    tasks = {}
    for n, (task, names) in enumerate(classes.items()):
        _tree(tmp_path / task / "train", list(names), 1, n)
        _tree(tmp_path / task / "test", list(names), 1, 10 + n)
        tasks[task] = [{"format": "folders", "root": f"{task}/train",
                        "test_root": f"{task}/test"}]
    set_file = write_yaml(tmp_path / "set.yaml", {"name": "tiny", "class_merge": "none",
                                                  "tasks": tasks})
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, model, info)
    assert training_main(["export", "--checkpoint", str(checkpoint), "--clips",
                          str(set_file)]) == 0
    assert training_main(["export", "--checkpoint", str(checkpoint), "--int8",
                          "--calibration", str(set_file), "--calibration-clips", "8"]) == 0
    capsys.readouterr()
    results = {}
    for name, model_file, backend in [("torch", checkpoint, "torch"),
                                      ("onnx", tmp_path / "m.onnx", "onnxruntime"),
                                      ("int8", tmp_path / "m.int8.onnx", "onnxruntime")]:
        out = tmp_path / f"{name}.json"
        assert training_main(["evaluate", "--checkpoint", str(model_file), "--config",
                              str(set_file), "--backend", backend, "--json", str(out),
                              "--no-video"]) == 0
        results[name] = json.loads(out.read_text())
    text = capsys.readouterr().out
    assert "(onnxruntime on cpu, int8" in text
    assert results["onnx"]["tasks"] == results["torch"]["tasks"]
    assert training_main(["evaluate", "--checkpoint", str(tmp_path / "m.onnx"), "--config",
                          str(set_file)]) == 2
    assert "is an exported model" in capsys.readouterr().err
    assert training_main(["export", "--checkpoint", str(checkpoint), "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err


def test_an_int8_export_below_the_agreement_threshold_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An int8 graph that disagrees with fp32 (here: another model's weights, quantised
    for real) is measured against fp32 on held-out clips and refused, unless told to
    accept it (then its agreement is recorded in the file)."""
    import training.tools.quantize as quantize
    from mtl_perception.deploy.export import export_onnx

    model, info = tiny_model("hps")
    other = export_onnx(tiny_model("hps", seed=7)[0], info)
    real = quantize.quantize_int8
    monkeypatch.setattr(quantize, "quantize_int8",
                        lambda exported, clips, **kw: real(other, clips, **kw))
    classes = dict(zip(info.model.task_names, info.class_names))
    tasks = {}
    for n, (task, names) in enumerate(classes.items()):
        _tree(tmp_path / task / "train", list(names), 2, n)
        _tree(tmp_path / task / "test", list(names), 2, 10 + n)
        tasks[task] = [{"format": "folders", "root": f"{task}/train", "test_root": f"{task}/test"}]
    set_file = write_yaml(tmp_path / "set.yaml", {"name": "tiny", "class_merge": "none",
                                                  "tasks": tasks})
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, model, info)
    args = ["export", "--checkpoint", str(checkpoint), "--int8", "--calibration",
            str(set_file), "--calibration-clips", "16", "--tolerance", "1e9"]
    capsys.readouterr()
    assert training_main(args) == 2
    err = capsys.readouterr().err
    assert "int8 agrees with fp32 on" in err and "< --min-agreement 0.97; nothing written" in err
    assert not (tmp_path / "m.int8.onnx").exists()
    assert training_main([*args, "--accept-int8-loss"]) == 0
    from mtl_perception.deploy.onnx_file import read_onnx_model

    export = read_onnx_model(tmp_path / "m.int8.onnx").export
    assert 0.0 <= export.int8_agreement < 0.97 and export.int8_clips > 0
    assert 0.0 <= export.int8_agreement_calibration <= 1.0
