"""Frame reuse: a causal model scored from each frame computed once equals the clip-wise forward."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
import torch
from helpers_models import tiny_config
from helpers_x3d import scrambled

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.deploy.torch_engine import TorchEngine
from mtl_perception.models import build_model
from mtl_perception.models.frame_stream import StreamState, streaming
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream import FrameHeader, StreamConfig, StreamPipeline
from mtl_perception.stream.buffer import BufferedFrame, Clip
from mtl_perception.stream.frame_reuse import FrameReuse

LENGTH, FIRST = 10, 8  # clip frames; frames of the first position (7 + frame differences)
VIDEO = torch.randn(1, 3, 24, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def causal_model(method: str) -> tuple[Any, CheckpointInfo]:
    config = tiny_config(method, arch="causal_r18", frame_differences=True, trainable_stages=3,
                         gate=method in ("hps", "sps"))
    torch.manual_seed(0)
    model = cast(Any, scrambled(build_model(config))).eval()
    if method == "lws":
        # Gesture leaves action's route at layer2 and takes action's copy of layer3.0 again:
        # that copy runs twice a step on different inputs, each call with its own buffer.
        model.routing_probs[1, 2] = torch.tensor([0.8, 0.2])
        assert model.argmax_assignment().tolist() == [[0] * 6, [1, 1, 0, 1, 1, 1]]
        for name, parameter in model.named_parameters():
            if name.startswith("units."):
                parameter.data.mul_(1 + 0.3 * torch.randn_like(parameter))
    names = tuple(tuple(f"{t}{i}" for i in range(n))
                  for t, n in zip(config.task_names, config.num_classes))
    preprocess = PreprocessConfig(clip_length=LENGTH, resize=(32, 32), crop=(32, 32),
                                  mean=(0, 0, 0), std=(1, 1, 1))
    return model, CheckpointInfo(config, names, preprocess)


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_one_position_per_new_frame_gives_every_clips_scores(method: str) -> None:
    model, _ = causal_model(method)
    state, positions = StreamState(), []
    with torch.no_grad():
        with streaming(state):
            positions.append(model.task_features(VIDEO[:, :, :FIRST]))
        for t in range(FIRST, VIDEO.shape[2]):
            with streaming(state):
                positions.append(model.task_features(VIDEO[:, :, t:t + 1]))
        per_clip = LENGTH - FIRST + 1
        for end in range(LENGTH, VIDEO.shape[2] + 1):  # the clip of frames end-10 .. end-1
            window = positions[end - LENGTH: end - LENGTH + per_clip]
            mean = [torch.stack([p[k] for p in window]).mean(0) for k in range(len(window[0]))]
            for a, b in zip(model.score_all(VIDEO[:, :, end - LENGTH:end]),
                            model.score_features(mean), strict=True):
                torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def frames_of(video: torch.Tensor, camera: str) -> list[BufferedFrame]:
    return [BufferedFrame(video[0, :, t], FrameHeader(t * 100_000_000, camera), 0.0)
            for t in range(video.shape[2])]


def test_a_clip_that_does_not_continue_the_last_starts_the_camera_afresh() -> None:
    model, info = causal_model("hps")
    reuse = FrameReuse(TorchEngine(model, info, torch.device("cpu")), LENGTH)
    counted: list[int] = []
    features = model.task_features
    model.task_features = lambda x: counted.append(x.shape[2]) or features(x)
    frames = frames_of(VIDEO, "a")
    # clips ending at frames 10, 12, 14, then 24 (the ones between dropped: a hole), then
    # 24 again; a second camera's clip in the same batch
    ends = [10, 12, 14, 24, 24]
    clips = [Clip("a", n, tuple(frames[e - LENGTH:e])) for n, e in enumerate(ends)]
    other = Clip("b", 0, tuple(frames_of(-VIDEO, "b")[:LENGTH]))
    got = [reuse([clip]) for clip in clips[:-1]] + [reuse([clips[-1], other])]
    # frames computed per call: a cold start's first position reads 8 frames, every later
    # position 1 (clips to 10, 12, 14: 8,1,1 then 1,1 twice); the clip to 24 starts cold
    # (8,1,1), the repeated clip computes nothing, camera b starts cold (8,1,1)
    assert counted == [8, 1, 1, 1, 1, 1, 1, 8, 1, 1, 8, 1, 1]
    with torch.no_grad():
        for clip, scores in zip(clips, got):
            x = torch.stack([f.tensor for f in clip.frames], dim=1)[None]
            expected = model.score_all(x)
            for a, b in zip(scores.as_list(), expected, strict=True):
                np.testing.assert_allclose(a[:1], b.numpy(), rtol=0, atol=1e-5)
        b_expected = model.score_all(-VIDEO[:, :, :LENGTH])
    for a, b in zip(got[-1].as_list(), b_expected, strict=True):
        np.testing.assert_allclose(a[1:], b.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["hps", "lws"])
def test_the_pipeline_reuses_frames_with_the_clip_wise_results(method: str, monkeypatch) -> None:
    model, info = causal_model(method)
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    # two cameras, 10 fps; camera "a" pauses 1 s after frame 14 (a buffer reset)
    stamps = [t * 100 + (1000 if t > 14 else 0) for t in range(30)]

    def run(reuse: bool) -> list[Any]:
        monkeypatch.setattr(FrameReuse, "applies", staticmethod(lambda engine: reuse))
        results: list[Any] = []
        pipeline = StreamPipeline(model, info, StreamConfig(target_fps=10, inference_stride=2),
                                  realtime=False, on_result=results.append)
        assert (pipeline._reuse is not None) is reuse
        for t, stamp in enumerate(stamps):
            for camera, frames in (("a", video), ("b", 255 - video)):
                pipeline.push_frame(camera, frames[t], FrameHeader(stamp * 1_000_000, camera))
        pipeline.flush()
        return results

    reused, clip_wise = run(True), run(False)
    # per camera and 15-frame epoch: a clip at its 10th frame, then every 2nd: 3
    assert len(reused) == len(clip_wise) == 2 * 2 * 3
    for a, b in zip(reused, clip_wise, strict=True):
        assert (a.camera, a.sequence) == (b.camera, b.sequence)
        for ta, tb in zip(a.tasks.values(), b.tasks.values(), strict=True):
            np.testing.assert_allclose(ta.probabilities, tb.probabilities, rtol=0, atol=1e-6)
        if b.gate is not None:
            np.testing.assert_allclose(a.gate, b.gate, rtol=0, atol=1e-5)
