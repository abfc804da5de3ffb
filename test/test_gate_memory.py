"""A gate with memory (issue 24, round 4): the model's logit shares, the stream's sum over a
camera's last clips, fit-gate's training windows, and that all three agree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_perception.models import ModelConfig, build_model
from mtl_perception.models.gate import TaskGate, alone
from mtl_perception.stream.gate_memory import GateMemory
from training.methods.gate_windows import (
    NONE_SHARE,
    TASK_SHARE,
    UNUSED,
    StreamWindows,
    clip_label,
    lag_rows,
)


def shares(clip: int) -> np.ndarray:
    """Clip n's shares for context 2: lag j holds (n + 1) * 10**j in class 0, so every sum
    shows which clip filled which lag."""
    out = np.zeros((3, 2))
    for lag in range(3):
        out[lag, 0] = (clip + 1) * 10 ** lag
    out[0, 1] = -clip
    return out


def test_memory_adds_the_last_clips_shares_and_pads_with_the_oldest() -> None:
    memory = GateMemory(2)
    # clip 0 alone: its own shares at every lag: 1 + 10 + 100
    assert memory.logits(shares(0)).tolist() == [111.0, 0.0]
    # clip 1: its lag 0 (2), clip 0 at lag 1 (10), and clip 0 again for lag 2 (100)
    assert memory.logits(shares(1)).tolist() == [112.0, -1.0]
    # clip 2: 3 + clip 1 at lag 1 (20) + clip 0 at lag 2 (100)
    assert memory.logits(shares(2)).tolist() == [123.0, -2.0]
    # clip 3: 4 + 30 + 200; clip 0 has left the memory
    assert memory.logits(shares(3)).tolist() == [234.0, -3.0]
    assert len(memory) == 2
    memory.reset()
    assert memory.logits(shares(5)).tolist() == [666.0, -5.0]  # alone again: 6 + 60 + 600
    with pytest.raises(ValueError, match="3 shares per clip, got 2"):
        memory.logits(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="at least one clip"):
        GateMemory(0)


def test_lag_rows_and_clip_labels_by_hand() -> None:
    assert lag_rows(4, 2).tolist() == [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 2, 1]]
    assert lag_rows(2, 0).tolist() == [[0], [1]]
    motions = [(0.5, 2.0, 1)]
    assert (TASK_SHARE, NONE_SHARE) == (0.5, 0.4)
    assert clip_label(0.0, 1.0, motions, 2) == 1  # half of it on the motion
    assert clip_label(0.0, 1.0, [(0.8, 2.0, 1)], 2) == 2  # 20 %: none
    assert clip_label(0.0, 1.0, [(0.55, 2.0, 1)], 2) == UNUSED  # 45 %: left out
    assert clip_label(0.0, 1.0, [(0.7, 2.0, 1)], 2, none_share=0.25) == UNUSED  # 30 %
    assert clip_label(0.0, 1.0, [(0.55, 2.0, 1)], 2, none_share=0.5) == 2  # no band
    assert clip_label(0.0, 1.0, [(0.0, 0.6, UNUSED)], 2) == UNUSED  # another task's motion
    assert clip_label(3.0, 4.0, [(0.5, math.inf, 0)], 2) == 0  # a sample to its end
    assert clip_label(3.0, 4.0, [], 2) == 2


def linear_gate(hidden: int) -> TaskGate:
    torch.manual_seed(0)
    gate = TaskGate(4, 2, hidden, context=3)
    gate.set_input_statistics(torch.randn(4), torch.rand(4) + 0.5)
    return gate.eval()


@pytest.mark.parametrize("hidden", [0, 5])
def test_shares_summed_over_a_stream_are_the_window_logits(hidden: int) -> None:
    gate = linear_gate(hidden)
    features = torch.randn(9, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        parts = gate.parts(features).numpy()
        windows = gate.window_logits(features, torch.from_numpy(lag_rows(9, 3)))
    memory = GateMemory(3)
    streamed = np.stack([memory.logits(p) for p in parts])
    assert parts.shape == (9, 4, 3)
    np.testing.assert_allclose(streamed, windows.numpy(), atol=1e-5)
    # one clip alone (forward, and `alone` on the model's output): the window of itself
    with torch.no_grad():
        first = gate(features[:1])
        assert torch.allclose(first, windows[:1], atol=1e-5)
        assert torch.allclose(alone(gate.parts(features[:1])), first, atol=1e-6)
    with pytest.raises(ValueError, match="windows of 4 clips"):
        gate.window_logits(features, torch.zeros(2, 3, dtype=torch.int64))


def test_a_linear_gate_with_memory_by_hand() -> None:
    gate = TaskGate(1, 1, hidden=0, context=1)
    gate.set_input_statistics(torch.zeros(1), torch.ones(1) - gate.norm.eps)  # x / 1
    with torch.no_grad():
        gate.last_layer.weight.copy_(torch.tensor([[2.0, 3.0], [0.0, -1.0]]))  # [now, before]
        gate.last_layer.bias.copy_(torch.tensor([1.0, 0.5]))
    gate.eval()
    with torch.no_grad():
        parts = gate.parts(torch.tensor([[1.0], [4.0]]))
    # clip 0 (f = 1): now 2*1 + 1, before 3*1; clip 1 (f = 4): now 2*4 + 1, before 3*4
    assert parts[:, :, 0].tolist() == [[3.0, 3.0], [9.0, 12.0]]
    assert parts[:, :, 1].tolist() == [[0.5, -1.0], [0.5, -4.0]]
    memory = GateMemory(1)
    assert memory.logits(parts[0].numpy()).tolist() == [6.0, -0.5]
    assert memory.logits(parts[1].numpy()).tolist() == [12.0, -0.5]  # 9 + 3, 0.5 - 1


def test_model_outputs_the_shares_and_its_config_checks_the_context() -> None:
    config = ModelConfig(method="hps", width=4, num_classes=(3, 2), gate=True, gate_hidden=0,
                         gate_context=2)
    model = build_model(config).eval()
    clips = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        out = model.score_all(clips)
    assert [tuple(o.shape) for o in out] == [(2, 3), (2, 2), (2, 3, 3)]
    with pytest.raises(ValueError, match="gate_context needs a task gate"):
        ModelConfig(gate_context=2)
    with pytest.raises(ValueError, match="gate_context must be in 0..32"):
        ModelConfig(gate=True, gate_context=33)


def test_joined_windows_shift_their_rows() -> None:
    a = StreamWindows(torch.zeros(3, 2), torch.tensor([[0, 0], [2, 1]]), torch.tensor([0, 1]))
    b = StreamWindows(torch.ones(2, 2), torch.tensor([[1, 0]]), torch.tensor([2]))
    joined = StreamWindows.join([a, b])
    assert joined.windows.tolist() == [[0, 0], [2, 1], [4, 3]]
    assert joined.labels.tolist() == [0, 1, 2]
    assert len(joined) == 3 and joined.features.shape == (5, 2)


@pytest.mark.parametrize(("frame_step", "stride", "chunk"),
                         [(2, 2, 64), (1, 1, 64), (3, 2, 64), (4, 2, 7), (4, 6, 5)])
def test_the_stream_scores_what_fit_gate_trains_on(tmp_path, monkeypatch, frame_step: int,
                                                   stride: int, chunk: int) -> None:
    """A video through the node's pipeline (offline) and through fit-gate's stream windows:
    the same clips (the stream's sampling phase at any frame step, a stride longer than a
    clip, clips across decoding chunks), so the pipeline's gate probabilities are the
    windows' softmax."""
    from helpers_models import tiny_config

    import training.methods.gate_windows as gate_windows
    from mtl_perception.checkpoint import CheckpointInfo
    from mtl_perception.preprocess import PreprocessConfig
    from mtl_perception.stream import FrameHeader, StreamConfig, StreamPipeline
    from training.datasets.video import VideoReader, write_video
    from training.methods.gate_windows import TimedVideo, stream_windows

    torch.set_num_threads(1)
    torch.manual_seed(0)
    monkeypatch.setattr(gate_windows, "_CHUNK", chunk)
    config = tiny_config("hps", num_classes=(3, 2), gate=True, gate_hidden=0, gate_context=3)
    model = build_model(config).eval()
    assert model.gate is not None
    with torch.no_grad():  # a gate far from uniform, so that a shifted clip shows
        for parameter in model.gate.parameters():
            parameter.mul_(30.0)
    preprocess = PreprocessConfig(clip_length=4, resize=(24, 32), crop=(24, 24))
    info = CheckpointInfo(config, (("a", "b", "c"), ("x", "y")), preprocess)
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (62, 1, 1, 3), dtype=np.uint8), 32, 1)
    frames = np.ascontiguousarray(np.repeat(frames, 40, 2))  # one colour per frame
    path = tmp_path / "v.avi"
    write_video(path, frames, fps=25.0)

    results = []
    stream = StreamConfig(target_fps=round(25.0 / frame_step, 3), inference_stride=stride,
                          max_gap_s=max(0.5, 2.0 * frame_step / 25.0))
    pipeline = StreamPipeline(model, info, stream, realtime=False, on_result=results.append)
    with VideoReader(path) as reader:
        decoded = reader.read(list(range(reader.num_frames)))
    for i, frame in enumerate(decoded):
        pipeline.push_frame("cam", frame, FrameHeader(round(i * 1e9 / 25)))
    pipeline.flush()

    windows = stream_windows(model, [TimedVideo(path)], preprocess, frame_step=frame_step,
                             stride=stride, context=3, none_label=2, batch_size=4)
    with torch.no_grad():
        expected = torch.softmax(model.gate.window_logits(windows.features, windows.windows), 1)
    assert len(results) == len(windows) >= 3
    got = np.stack([r.gate for r in results])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert float(np.ptp(got, axis=0).max()) > 0.5  # the probabilities move over the stream


def test_a_stream_at_another_stride_than_the_memory_was_fitted_at_is_warned() -> None:
    from mtl_perception.stream.gate_memory import stride_warning

    provenance = {"gate_fit": {"inference_stride": 2}}
    message = stride_warning(4, provenance, 8)
    assert message is not None and "set inference_stride 2" in message and "4x" in message
    assert stride_warning(4, provenance, 2) is None
    assert stride_warning(0, provenance, 8) is None  # no memory: the stride is the user's
    assert stride_warning(4, {}, 8) is None  # nothing recorded
    assert stride_warning(4, {"gate_fit": {"inference_stride": True}}, 8) is None


def _context_model(method: str) -> tuple[torch.nn.Module, object]:
    import dataclasses

    from helpers_export import tiny_model

    model, info = tiny_model(method)
    config = dataclasses.replace(info.model, gate=True, gate_hidden=0, gate_context=2)
    gated = build_model(config)
    state = {k: v for k, v in model.state_dict().items()}
    missing = gated.load_state_dict(state, strict=False).missing_keys
    assert all(k.startswith("gate.") for k in missing)
    torch.manual_seed(3)
    with torch.no_grad():
        assert gated.gate is not None
        gated.gate.last_layer.weight.normal_(0, 3.0)
    return gated.eval(), dataclasses.replace(info, model=config)


@pytest.mark.parametrize("method", ["hps", "sps", "lws"])
def test_a_gate_with_memory_exports_its_shares_on_every_engine(method: str) -> None:
    import importlib.util

    from helpers_export import clips

    from mtl_perception.deploy.export import export_onnx
    from mtl_perception.deploy.registry import build_engine

    pytest.importorskip("onnxruntime")
    torch.set_num_threads(1)
    model, info = _context_model(method)
    exported = export_onnx(model, info)  # type: ignore[arg-type]
    x = clips(3)
    with torch.no_grad():
        expected = [t.numpy() for t in model.score_all(x)]
    assert expected[-1].shape == (3, 3, 3)
    backends = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    for backend in (*backends, "torch"):
        engine = build_engine(model if backend == "torch" else exported, backend, "cpu",
                              info=info if backend == "torch" else None)  # type: ignore[arg-type]
        scores = engine(x.numpy())
        assert scores.gate_parts is not None and scores.gate is not None
        for got, want in zip(scores.as_list(), expected, strict=True):
            assert float(np.abs(got - want).max()) < 1e-4, backend
        # the logits of each clip alone: its shares summed
        np.testing.assert_allclose(scores.gate, expected[-1].sum(axis=1), atol=1e-4)


def test_checkpoint_keeps_the_context_and_refuses_weights_of_another(tmp_path) -> None:
    import dataclasses
    import json

    from safetensors.torch import save_file

    from mtl_perception.checkpoint import (
        CheckpointError,
        load_checkpoint,
        model_metadata,
        save_checkpoint,
    )

    model, info = _context_model("hps")
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, info)  # type: ignore[arg-type]
    loaded = load_checkpoint(path)
    assert loaded.info.model.gate_context == 2
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model.score_all(clip)[-1], model.score_all(clip)[-1])
    # a model without memory is stored as before (the field left out at its default)
    plain = dataclasses.replace(info.model, gate_context=0)  # type: ignore[attr-defined]
    assert "gate_context" not in model_metadata(plain)
    assert model_metadata(info.model)["gate_context"] == 2  # type: ignore[attr-defined]
    # weights of a gate reading 2 clips, metadata of one reading 4: refused in one line
    other = dataclasses.replace(info, model=dataclasses.replace(  # type: ignore[type-var]
        info.model, gate_context=4))  # type: ignore[attr-defined]
    bad = tmp_path / "bad.safetensors"
    from mtl_perception.checkpoint import info_metadata
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(bad), metadata={"mtl_perception": info_metadata(other)})
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(bad)
    assert "gate" in str(refused.value) and len(str(refused.value).splitlines()) == 1
    del json


def test_the_pipeline_warns_once_at_start_when_the_stride_differs(caplog) -> None:
    import dataclasses
    import logging

    from mtl_perception.stream import StreamConfig, StreamPipeline

    model, info = _context_model("hps")
    fitted = dataclasses.replace(info, provenance={"gate_fit": {"inference_stride": 2}})
    with caplog.at_level(logging.WARNING, logger="mtl_perception.stream.pipeline"):
        StreamPipeline(model, fitted, StreamConfig(inference_stride=2), realtime=False)
        assert not caplog.records
        StreamPipeline(model, fitted, StreamConfig(inference_stride=4), realtime=False)
    (record,) = caplog.records
    assert "set inference_stride 2" in record.getMessage()
