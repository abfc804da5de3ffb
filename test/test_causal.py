"""causal_r18: stage shapes and parameters by hand, causality, every method on it, export."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from helpers_arch import check_routes_decide, offset_moves, step_and_round_trip, stitched_move
from helpers_models import tiny_config
from helpers_x3d import scrambled

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.models.archs import build_backbone, min_clip_frames
from mtl_perception.models.causal import CausalR18
from mtl_perception.models.stages import STAGE_NAMES
from mtl_perception.preprocess import PreprocessConfig

CLIPS = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
LONG = torch.randn(3, 3, 12, 32, 32, generator=torch.Generator().manual_seed(1))
TASK_IDS = torch.tensor([1, 0, 1])


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def causal_config(method: str = "hps", **overrides: Any) -> ModelConfig:
    return tiny_config(method, **{"arch": "causal_r18", **overrides})


def test_stage_shapes_at_width_4() -> None:
    # Each stage's first block drops positions: its (2, 1, 1) conv has no padding, dilation
    # 1, 1, 2, 2 by stage (1, 1, 2, 2 positions); the frame differences drop one more;
    # space halves in the stem and layer2..layer4.
    backbone = CausalR18("causal_r18", 4, frame_differences=True).eval()
    x = LONG
    shapes = []
    for name in STAGE_NAMES:
        x = backbone.stage(name)(x)
        shapes.append(tuple(x.shape))
    assert shapes == [(3, 4, 11, 16, 16), (3, 4, 10, 16, 16), (3, 8, 9, 8, 8), (3, 16, 7, 4, 4),
                      (3, 32, 5, 2, 2)]
    assert backbone.feature_dim == 32
    assert min_clip_frames("causal_r18", True) == 8 and min_clip_frames("causal_r18", False) == 7
    assert min_clip_frames("r3d_18", True) == 2 and min_clip_frames("x3d_xs", False) == 1


def test_parameter_count_by_hand() -> None:
    def block(d_in: int, d_out: int, first: bool) -> int:
        count = 9 * d_in * d_out + 2 * d_out + 9 * d_out * d_out + 2 * d_out  # two (1,3,3)
        if first:  # the causal (2,1,1) conv and its BatchNorm
            count += 2 * d_out * d_out + 2 * d_out
        if first and d_in != d_out:  # strided 1x1x1 shortcut and BatchNorm
            count += d_in * d_out + 2 * d_out
        return count

    def total(w: int) -> int:
        stem = 49 * 3 * w + 2 * w
        stages = [(w, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)]
        return stem + sum(block(i, o, True) + block(o, o, False) for i, o in stages)

    # width 4 written out: stem 596, layer1 648, layer2 2272, layer3 8896, layer4 35200
    assert total(4) == 47_612
    for width in (4, 64):
        backbone = CausalR18("causal_r18", width)
        ours = sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("fc."))
        assert ours == total(width)
    # At width 64: torchvision's 2D ResNet-18 (11,689,512 parameters, 513,000 of them its
    # 1000-class fc) plus four (2, 1, 1) convolutions with their BatchNorm.
    assert total(64) == 11_689_512 - 513_000 + sum(2 * c * c + 2 * c for c in (64, 128, 256, 512))


def test_no_position_reads_a_later_frame() -> None:
    # Change the last frame only: every position but the last keeps its features.
    backbone = cast(CausalR18, scrambled(build_backbone("causal_r18", 4, True))).eval()
    changed = LONG.clone()
    changed[:, :, -1] += 1.0
    with torch.no_grad():
        a, b = LONG, changed
        for name in STAGE_NAMES:
            a, b = backbone.stage(name)(a), backbone.stage(name)(b)
    moved = (a - b).abs().amax(dim=(0, 1, 3, 4))
    assert moved[:-1].max() == 0.0 and moved[-1] > 1e-3


def test_a_clip_below_the_receptive_field_is_refused_in_one_line(tmp_path: Path) -> None:
    model = build_model(causal_config(frame_differences=True)).eval()
    with pytest.raises(ValueError, match=r"causal_r18 needs clips of >= 8 frames .* got 7"):
        model.score_all(CLIPS[:, :, :7])
    too_short = "clip_length 7 is below the 8 frames arch causal_r18 needs with frame differences"
    names = (tuple("abcde"), tuple("abcdefg"))
    with pytest.raises(ValueError, match=too_short):
        CheckpointInfo(causal_config(frame_differences=True), names,
                       PreprocessConfig(clip_length=7, resize=(32, 32), crop=(32, 32)))
    # the same one message where a run would start: training config, export, the stream
    from mtl_perception.deploy.export import ExportError, export_onnx
    from mtl_perception.settings import SettingsError
    from mtl_perception.stream import StreamConfig, StreamConfigError, StreamPipeline
    from training.train.config import load_train_config

    config = Path(__file__).resolve().parents[1] / "config" / "train" / "cpu_small_causal.yaml"
    with pytest.raises(SettingsError, match=f"clip.{too_short}"):
        load_train_config(config, ["clip.clip_length=7"])
    info = CheckpointInfo(causal_config(frame_differences=True), names,
                          PreprocessConfig(clip_length=8, resize=(32, 32), crop=(32, 32)))
    pytest.importorskip("onnx")
    with pytest.raises(ExportError, match=f"export frames: {too_short}"):
        export_onnx(model, info, frames=7)
    with pytest.raises(StreamConfigError, match=too_short):
        StreamPipeline(model, info, StreamConfig(clip_length=7), realtime=False)


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_every_method_trains_a_step_and_round_trips_a_checkpoint(
    method: str, tmp_path: Path
) -> None:
    config = causal_config(method, trainable_stages=3, frame_differences=True,
                           gate=method in ("hps", "sps"))
    task_ids = torch.zeros(3, dtype=torch.long) if method == "stl" else TASK_IDS
    changed = step_and_round_trip(config, CLIPS, task_ids, tmp_path)
    assert any(k.startswith("heads.") for k in changed)
    assert any("temporal.0.weight" in k for k in changed)  # the causal convs learn
    assert not any(k.startswith("prefix.") for k in changed)  # stem, layer1 stay frozen


@pytest.mark.parametrize(("share", "independent"), [(0.0, True), (0.2, False)])
def test_sps_columns_mix_through_the_cross_stitch_units(share: float, independent: bool) -> None:
    model = cast(Any, scrambled(build_model(causal_config("sps", cross_stitch_share=share))))
    assert [s.weight.shape[-1] for s in model.eval().stitches] == [16, 32]  # layer3, layer4
    assert (stitched_move(model, CLIPS) == 0.0) is independent


def test_lws_routes_every_block_of_the_trainable_stages() -> None:
    model = cast(Any, scrambled(build_model(causal_config("lws")))).eval()
    assert model.unit_names == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    check_routes_decide(model, CLIPS)


def test_frame_differences_ignore_a_still_offset() -> None:
    for on in (True, False):
        model = scrambled(build_model(causal_config(frame_differences=on)))
        assert (offset_moves(model, CLIPS) < 1e-5) is on


def test_a_meta_built_model_declares_the_shapes_of_a_real_one() -> None:
    real = build_model(causal_config("sps")).state_dict()
    with torch.device("meta"):
        meta = build_model(causal_config("sps")).state_dict()
    assert {k: (t.shape, t.dtype) for k, t in meta.items()} == {
        k: (t.shape, t.dtype) for k, t in real.items()}


@pytest.mark.parametrize("method", ["hps", "sps", "lws"])
def test_export_matches_pytorch_in_every_cpu_engine(method: str) -> None:
    pytest.importorskip("onnxruntime")
    from mtl_perception.deploy.export import export_onnx, max_difference
    from mtl_perception.deploy.registry import build_engine

    config = causal_config(method, frame_differences=True, gate=method == "hps")
    model = cast(Any, scrambled(build_model(config))).eval()
    if method == "lws":  # gesture borrows action's first layer3 block: a mixed route
        model.routing_probs[1, 0] = torch.tensor([0.8, 0.2])
    names = tuple(tuple(f"{t}{i}" for i in range(n))
                  for t, n in zip(config.task_names, config.num_classes))
    info = CheckpointInfo(config, names, PreprocessConfig(clip_length=8, resize=(36, 40),
                                                          crop=(32, 32)))
    exported = export_onnx(model, info)
    x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    assert max_difference(model, exported, x) < 1e-4
    with torch.no_grad():
        expected = [t.numpy() for t in model.score_all(x)]
    backends = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    for backend in backends:
        got = build_engine(exported, backend, "cpu")(x.numpy()).as_list()
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e in zip(got, expected):
            assert float(np.abs(g - e).max()) < 1e-4, backend


def test_the_causal_cpu_config_is_cpu_small_with_the_causal_backbone() -> None:
    from dataclasses import replace

    from training.train.config import load_train_config

    root = Path(__file__).resolve().parents[1] / "config" / "train"
    causal = load_train_config(root / "cpu_small_causal.yaml", [])
    small = load_train_config(root / "cpu_small.yaml", [])
    assert causal.model.arch == "causal_r18" and small.model.arch == "r3d_18"
    assert causal == replace(small, model=replace(small.model, arch="causal_r18"))
