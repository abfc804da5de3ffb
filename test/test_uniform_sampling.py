"""Uniform temporal sampling (the paper's 32 frames per video): indices, dataset, runtime rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_clip_dataset import CONFIG, frame_ids, write_coded

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream import StreamConfig
from mtl_perception.stream.rate import choose_target_fps, trained_target_fps
from training.datasets.clip_dataset import ClipDataset, ClipSamplingConfig
from training.datasets.clips import uniform_clip_indices, uniform_evenly_spaced_clips
from training.datasets.sample import VideoSample
from training.train.config import ClipSettings


def test_evaluation_clip_takes_bin_centres() -> None:
    # 64 frames, 8 bins of 8: centres 4, 12, ..., 60
    assert uniform_clip_indices(64, 8, None) == [4, 12, 20, 28, 36, 44, 52, 60]
    # odd length inside a segment: 7 frames [10, 17), 3 bins of 7/3: floor((2k+1)*7/6)
    assert uniform_clip_indices(100, 3, None, 10, 17) == [11, 13, 15]
    # shorter than the clip: frames repeat, in order: floor((2k+1)*5/16)
    assert uniform_clip_indices(5, 8, None) == [0, 0, 1, 2, 2, 3, 4, 4]
    assert uniform_clip_indices(1, 4, None) == [0, 0, 0, 0]
    # a segment end past the video is clipped to it (as consecutive clips are)
    assert uniform_clip_indices(6, 3, None, 0, 50) == [1, 3, 5]


def test_long_video_is_covered_whole() -> None:
    clip = uniform_clip_indices(1000, 32, None)
    assert clip[0] == 15 and clip[-1] == 984  # floor(1000/64), floor(63*1000/64)
    # 1000 / 32 = 31.25 frames per bin: steps of 31 with a 32 every fourth bin
    steps = np.diff(clip).tolist()
    assert set(steps) == {31, 32} and steps.count(32) == 8 and sum(steps) == 969


def test_training_jitter_moves_every_frame_within_its_bin() -> None:
    n, length = 7, 3
    seen = set()
    for seed in range(200):
        clip = uniform_clip_indices(100, length, np.random.default_rng(seed), 10, 17)
        seen.add(tuple(clip))
        for k, frame in enumerate(clip):
            # bin k is [k n / L, (k + 1) n / L): frame k is one the bin overlaps
            f = frame - 10
            assert (f + 1) * length > k * n and f * length < (k + 1) * n
            assert 10 <= frame < 17
        assert clip == sorted(clip)
    # r = 0..6 gives (7k + r) // 3 for k = 0, 1, 2: every phase occurs
    expected = {tuple(10 + (7 * k + r) // 3 for k in range(3)) for r in range(7)}
    assert seen == expected
    # one random integer per clip, the same for a generator in the same state
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert uniform_clip_indices(64, 8, a) == uniform_clip_indices(64, 8, b)
    assert uniform_clip_indices(1, 8, np.random.default_rng(0)) == [0] * 8


def test_evenly_spaced_uniform_clips() -> None:
    assert uniform_evenly_spaced_clips(64, 8, 1) == [uniform_clip_indices(64, 8, None)]
    clips = uniform_evenly_spaced_clips(64, 8, 2)
    # phases n/4 and 3n/4 of a bin of 8 frames: offsets 2 and 6
    assert clips == [[2 + 8 * k for k in range(8)], [6 + 8 * k for k in range(8)]]
    with pytest.raises(ValueError):
        uniform_evenly_spaced_clips(64, 8, 0)


def test_dataset_loads_the_uniform_frames_and_records_the_span(tmp_path: Path) -> None:
    video = write_coded(tmp_path / "v.avi", 40)  # 25 fps
    items = [(VideoSample(video, 0, start=4, end=36), 0)]
    uniform = ClipSamplingConfig(temporal="uniform", num_eval_clips=2)
    dataset = ClipDataset(items, "centre", CONFIG, uniform)
    assert dataset.median_clip_span() is None
    clip, _, _ = dataset[0]
    assert frame_ids(clip) == [6, 10, 14, 18, 22, 26, 30, 34]  # 32 frames in 8 bins of 4
    assert dataset.median_clip_span() == pytest.approx(28 / 25)
    clips, _, _ = ClipDataset(items, "all", CONFIG, uniform)[0]
    assert [frame_ids(c) for c in clips] == uniform_evenly_spaced_clips(40, 8, 2, 4, 36)
    train = ClipDataset(items, "train", CONFIG, ClipSamplingConfig(temporal="uniform"))
    ids = frame_ids(train[(0, 3)][0])
    assert ids == uniform_clip_indices(40, 8, np.random.default_rng([0, 3, 0, 0]), 4, 36)
    # consecutive sampling is untouched: 8 frames in a row in the middle
    consecutive = ClipDataset(items, "centre", CONFIG)
    assert frame_ids(consecutive[0][0]) == list(range(16, 24))
    assert consecutive.median_clip_span() == pytest.approx(7 / 25)


def test_settings_refuse_frame_step_with_uniform() -> None:
    with pytest.raises(ValueError, match="frame_step applies to temporal_sampling consecutive"):
        ClipSettings(temporal_sampling="uniform", frame_step=2)
    with pytest.raises(ValueError, match="temporal sampling must be one of"):
        ClipSamplingConfig(temporal="random")  # type: ignore[arg-type]


def _info(provenance: dict[str, object], clip_length: int = 32) -> CheckpointInfo:
    config = ModelConfig(method="hps", width=4, task_names=("gesture",), num_classes=(2,))
    return CheckpointInfo(config, (("a", "b"),), PreprocessConfig(clip_length=clip_length),
                          provenance)


def test_runtime_rate_from_the_training_span() -> None:
    uniform = _info({"temporal_sampling": "uniform", "clip_span_s": 3.1})
    assert trained_target_fps(uniform, 32) == pytest.approx(10.0)  # 31 periods in 3.1 s
    config, line = choose_target_fps(StreamConfig(), uniform, explicit=False)
    assert config.target_fps == 10.0
    assert line is not None and "target_fps 10 (not 15)" in line and "3.10 s" in line
    # the user's own rate wins; consecutive models and old checkpoints keep the setting
    assert choose_target_fps(StreamConfig(target_fps=25), uniform, True) == (
        StreamConfig(target_fps=25), None)
    for provenance in ({}, {"temporal_sampling": "consecutive", "clip_span_s": 1.0},
                       {"temporal_sampling": "uniform", "clip_span_s": None},
                       {"temporal_sampling": "uniform", "clip_span_s": -1}):
        assert choose_target_fps(StreamConfig(), _info(provenance), False) == (
            StreamConfig(), None)
    # a narrower stream clip_length spans the same time with fewer frames
    config, _ = choose_target_fps(StreamConfig(clip_length=16), uniform, False)
    assert config.target_fps == pytest.approx(15 / 3.1, abs=1e-3)
    # clamped to the node's range
    slow = _info({"temporal_sampling": "uniform", "clip_span_s": 1000.0})
    assert trained_target_fps(slow, 32) == 0.5


def test_evaluate_bag_samples_a_uniform_model_at_its_trained_span(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    import torch
    from helpers_bag import ACTIONS, GESTURES, write_image_bag

    from mtl_perception.bag.evaluate import main
    from mtl_perception.checkpoint import save_checkpoint
    from mtl_perception.models import build_model

    torch.set_num_threads(1)
    config = ModelConfig(method="hps", width=4, task_names=("action", "gesture"),
                         num_classes=(len(ACTIONS), len(GESTURES)))
    info = CheckpointInfo(config, (ACTIONS, GESTURES),
                          PreprocessConfig(clip_length=4, resize=(32, 40), crop=(32, 32)),
                          {"temporal_sampling": "uniform", "clip_span_s": 0.6})
    save_checkpoint(tmp_path / "m.safetensors", build_model(config), info)
    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,task,label\n0,3.9,gesture,wave\n")

    def run(out: str, *settings: str) -> dict[str, object]:
        args = ["--bag", str(bag), "--checkpoint", str(tmp_path / "m.safetensors"),
                "--labels", str(labels), "--out", str(tmp_path / out), "--no-progress",
                "--set", "inference_stride=1", *settings]
        assert main(args) == 0
        return dict(json.loads((tmp_path / out / "metrics.json").read_text()))

    with caplog.at_level(logging.INFO, logger="evaluate_bag"):
        metrics = run("auto")
    # 3 periods in 0.6 s: 5 fps; the 10 fps bag gives 20 frames, 17 clips of 4
    assert "target_fps 5 (not 15): the model was trained on clips spread uniformly over " \
           "0.60 s" in caplog.text
    assert metrics["clips"] == 17
    assert run("given", "target_fps=10")["clips"] == 37  # the user's rate is kept
