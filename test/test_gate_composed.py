"""fit-gate's validation streams joined from excerpts (training/methods/gate_composed.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_datasets import stand_in_video
from helpers_export import tiny_model

from mtl_perception.stream import StreamConfig
from training.datasets.untrimmed import LabelledInterval, UntrimmedVideo
from training.methods.gate_composed import LEAD_S, plan_excerpts, record_composed

FPS = 25.0


def _video(tmp_path: Path, name: str, frames: int, *motions: tuple[float, float, str, str]
           ) -> UntrimmedVideo:
    path = stand_in_video(tmp_path / f"{name}.mp4", frames=frames, width=40, height=36)
    return UntrimmedVideo(path, tuple(LabelledInterval(*m) for m in motions))


def test_each_motion_is_cut_out_with_its_lead_and_lag_and_the_order_shuffled(tmp_path: Path):
    video = _video(tmp_path, "a", 100, (0.1, 0.6, "gesture", "wave"),
                   (2.0, 2.8, "action", "Jump"), (3.6, 3.9, "gesture", "stop"))
    excerpts = plan_excerpts([video, _video(tmp_path, "idle", 20)],
                             np.random.default_rng(0))
    assert len(excerpts) == 3  # a video without motions gives none
    assert [len(e.intervals) for e in excerpts] == [1, 1, 1]  # 0.7 s apart at least
    by_label = {e.intervals[0].label: e for e in excerpts}
    wave, jump, stop = by_label["wave"], by_label["Jump"], by_label["stop"]
    assert wave.first == 0  # 0.1 s in: the lead is cut at the video's first frame
    assert stop.end == 100  # 3.9 s of 4.0: the lag is cut at its last frame
    low, high = LEAD_S
    assert low * FPS - 0.5 <= 2.0 * FPS - jump.first <= high * FPS + 0.5
    assert low * FPS - 0.5 <= jump.end - 2.8 * FPS <= high * FPS + 0.5
    (inside,) = jump.intervals  # seconds from the excerpt's first frame
    assert inside.start == pytest.approx(2.0 - jump.first / FPS)
    assert inside.end == pytest.approx(2.8 - jump.first / FPS)
    assert (inside.task, inside.label) == ("action", "Jump")
    orders = {tuple(e.intervals[0].label for e in plan_excerpts(
        [video], np.random.default_rng(seed))) for seed in range(8)}
    assert len(orders) > 1  # shuffled, and by the seed alone
    assert plan_excerpts([video], np.random.default_rng(3)) == plan_excerpts(
        [video], np.random.default_rng(3))


def test_an_excerpt_stops_at_its_neighbours_so_none_shows_a_sliver_of_another(
        tmp_path: Path):
    # the second motion starts 0.1 s after the first ends: inside any lag of 0.15-0.7 s
    video = _video(tmp_path, "b", 60, (0.8, 1.2, "gesture", "wave"),
                   (1.3, 2.2, "gesture", "push"))
    for seed in range(4):
        excerpts = plan_excerpts([video], np.random.default_rng(seed))
        by_label = {e.intervals[0].label: e for e in excerpts}
        assert [len(e.intervals) for e in excerpts] == [1, 1]
        assert by_label["wave"].end == 32  # 1.28 s: the last frame before push
        assert by_label["push"].first == 30  # 1.2 s: the first frame after wave
        assert by_label["push"].intervals[0].start == pytest.approx(1.3 - 1.2)


def test_excerpts_run_through_one_stream_without_a_reset_and_labels_follow(tmp_path: Path):
    model, info = tiny_model()
    excerpts = plan_excerpts([_video(tmp_path, "c", 50, (0.5, 1.2, "gesture", "g1")),
                              _video(tmp_path, "d", 50, (0.9, 1.5, "gesture", "g0"))],
                             np.random.default_rng(0))
    config = StreamConfig(target_fps=FPS, inference_stride=1, max_gap_s=0.2)
    recorded = record_composed(model, info, config, excerpts, "composed-half0")
    lengths = [e.end - e.first for e in excerpts]
    total = sum(lengths)
    # one buffer all along: a clip at every frame once the first clip_length are in
    assert len(recorded.results) == total - info.preprocess.clip_length + 1
    stamps = [r.last_stamp_ns for r in recorded.results]
    assert np.allclose(np.diff(stamps), 1e9 / FPS, atol=1)
    assert recorded.end_s == pytest.approx((total - 1) / FPS)
    second = excerpts[1].intervals[0]
    assert recorded.intervals[1].start == pytest.approx(lengths[0] / FPS + second.start)
    assert recorded.intervals[1].label == second.label
    assert recorded.path == Path("composed-half0")


def test_a_label_past_the_videos_end_gives_no_excerpt_and_one_across_it_is_cut(tmp_path: Path):
    # a 2 s video; push runs past its end, stop starts after it (within its lead)
    video = _video(tmp_path, "e", 50, (0.1, 0.3, "gesture", "wave"),
                   (1.2, 2.05, "gesture", "push"), (2.1, 2.5, "gesture", "stop"))
    excerpts = plan_excerpts([video], np.random.default_rng(0))
    assert sorted(e.intervals[0].label for e in excerpts) == ["push", "wave"]  # no stop
    assert [len(e.intervals) for e in excerpts] == [1, 1]
    push = next(e for e in excerpts if e.intervals[0].label == "push")
    assert push.end == 50 and push.intervals[0].end == pytest.approx(2.0 - push.first / FPS)
