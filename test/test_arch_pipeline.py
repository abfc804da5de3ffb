"""An X3D and a causal_r18 model through every command: train, `init:` fine-tuning's loader,
fit-gate, export (parity checked by the command) and evaluate_bag with PyTorch (causal_r18:
frame reuse) and ONNX Runtime (whole clips), which emit the same events."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers_bag import metrics_torch_and_onnx
from test_train_helpers import CONFIG, TINY_OVERRIDES, tiny_set

from mtl_perception.checkpoint import load_checkpoint, read_checkpoint_info
from mtl_perception.models import build_model
from training.__main__ import main as training_main
from training.train.finetune import init_from_checkpoint


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def with_background(set_yaml: Path, folder: Path) -> Path:
    """The tiny set plus a `background:` folder (one 16-frame video per split, no labels):
    the `none` clips fit-gate needs."""
    video = sorted(set_yaml.parent.glob("nvGesture/**/*.avi"))[0]
    for split in ("train", "test"):
        (folder / "bg" / split).mkdir(parents=True)
        shutil.copy(video, folder / "bg" / split / "background_00.avi")
    text = set_yaml.read_text().replace("root: ", f"root: {set_yaml.parent}/").replace(
        "annotations: ", f"annotations: {set_yaml.parent}/")
    target = folder / "set.yaml"
    ours = f"  - root: {folder / 'bg'}\n"
    # synth's set may list background videos already: ours joins that list
    text = (text.replace("background:\n", "background:\n" + ours, 1) if "background:\n" in text
            else text + "background:\n" + ours)
    target.write_text(text)
    return target


def _train(set_yaml: Path, out: Path, arch: str) -> None:
    args = ["train", "--config", str(CONFIG), "--out", str(out), f"set={set_yaml}",
            *TINY_OVERRIDES, f"model.arch={arch}", "iterations=1", "val_every=1",
            "save_every=1", "val_max_per_task=2"]
    assert training_main(args) == 0


# per arch, a tensor deep in layer4 (X3D: the head convolution ending it)
@pytest.mark.parametrize(("arch", "key"), [("x3d_xs", "stages.layer4.7.0.weight"),
                                           ("causal_r18", "stages.layer4.1.conv2.0.weight")])
def test_arch_trains_fine_tunes_gets_a_gate_exports_and_evaluates_a_bag(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, arch: str, key: str) -> None:
    set_yaml = tiny_set(tmp_path_factory)
    _train(set_yaml, tmp_path / "base", arch)
    base = tmp_path / "base" / "last.safetensors"
    info = read_checkpoint_info(base)
    assert (info.model.arch, info.model.width, info.model.frame_differences) == (
        arch, 4, True)
    model = build_model(info.model)  # `init:` fine-tuning's loader, on a fresh model
    init_from_checkpoint(model, info.class_names, base)
    source = load_checkpoint(base).model.state_dict()
    mine = model.state_dict()
    # every tensor came from the base: nothing left at its random initialisation
    assert sorted(mine) == sorted(source)
    assert [k for k in source if not torch.equal(mine[k], source[k])] == []
    assert torch.equal(model.state_dict()[key], source[key])

    gated = tmp_path / "gated.safetensors"
    assert training_main(["fit-gate", "--checkpoint", str(base), "--set",
                          str(with_background(set_yaml, tmp_path)),
                          "--out", str(gated), "--clips-per-video", "1", "--steps", "2"]) == 0
    assert load_checkpoint(gated).model.gate is not None
    # export checks parity with PyTorch on every engine itself
    assert training_main(["export", "--checkpoint", str(gated), "--check-clips", "1"]) == 0

    metrics = metrics_torch_and_onnx(tmp_path, gated, tmp_path / "gated.onnx", count=30)
    for name in ("torch", "ort"):
        assert metrics[name]["task_confusion"] is not None  # the gate's output reached the stream
    emitted = {name: metrics[name]["gesture_events"]["emitted"] for name in metrics}
    assert emitted["ort"] == emitted["torch"]
