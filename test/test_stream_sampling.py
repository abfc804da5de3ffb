"""Sampling by header stamp: target rate, jitter, duplicates, out-of-order stamps, gaps, clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_perception.stream.buffer import BufferedFrame, CameraBuffer, Decision
from mtl_perception.stream.results import FrameHeader

MS = 1_000_000  # ns


def feed(buffer: CameraBuffer, stamps_ns: list[int]) -> tuple[list[int], list[Decision], list]:
    """Run stamps through decide/add as the pipeline does; return kept stamps, decisions, clips."""
    kept, decisions, clips = [], [], []
    for stamp in stamps_ns:
        decision = buffer.decide(stamp)
        decisions.append(decision)
        if decision in (Decision.SKIP, Decision.DROP):
            continue
        if decision is Decision.RESET:
            buffer.reset()
        kept.append(stamp)
        clip = buffer.add(BufferedFrame(torch.zeros(1), FrameHeader(stamp, "f"), 0.0))
        if clip is not None:
            clips.append(clip)
    return kept, decisions, clips


def make(target_fps: float = 15.0, clip_length: int = 4, stride: int = 2, gap: float = 0.5):
    return CameraBuffer("cam", target_fps, clip_length, stride, gap)


def test_thirty_to_fifteen_keeps_every_other_frame() -> None:
    stamps = [round(i * 1000 / 30) * MS for i in range(30)]
    kept, _, _ = feed(make(15.0), stamps)
    assert kept == stamps[::2]


def test_thirty_to_twenty_keeps_two_of_three_without_drift() -> None:
    stamps = [round(i * 1e9 / 30) for i in range(301)]  # 10 s
    kept, _, _ = feed(make(20.0), stamps)
    # 0, 1, 3, 4, 6, ...: 201 frames over 10 s = 20 fps on average, no slow drift.
    assert len(kept) == 201
    assert kept[:5] == [stamps[0], stamps[1], stamps[3], stamps[4], stamps[6]]


def test_jitter_of_a_fifth_of_the_period_keeps_every_frame() -> None:
    period = 1e9 / 15
    jitter = np.random.default_rng(0).uniform(-0.19, 0.19, 400) * period
    stamps = [int(1e9 + i * period + j) for i, j in enumerate(jitter)]
    kept, decisions, _ = feed(make(15.0), stamps)
    assert kept == stamps and set(decisions) == {Decision.KEEP}


def test_twice_the_target_rate_with_jitter_is_halved_regularly() -> None:
    period = 1e9 / 30
    jitter = np.random.default_rng(1).uniform(-0.04, 0.04, 300) * period * 2
    stamps = [int(i * period + j) for i, j in enumerate(jitter)]
    kept, _, _ = feed(make(15.0), stamps)
    assert kept == stamps[::2]


def test_a_slower_camera_keeps_every_frame() -> None:
    stamps = [i * 100 * MS for i in range(50)]  # 10 fps into a 15 fps sampler
    kept, _, _ = feed(make(15.0), stamps)
    assert kept == stamps


def test_duplicates_and_out_of_order_stamps_are_dropped() -> None:
    p = 1000 // 15
    stamps = [0, p * MS, p * MS, (p // 2) * MS, 2 * p * MS, 0, 3 * p * MS]
    kept, decisions, _ = feed(make(15.0), stamps)
    assert kept == [0, p * MS, 2 * p * MS, 3 * p * MS]
    assert decisions == [
        Decision.KEEP,
        Decision.KEEP,
        Decision.DROP,  # duplicate
        Decision.DROP,  # older than the last kept frame
        Decision.KEEP,
        Decision.DROP,  # far older, but within max_gap_s: out of order, not a time jump
        Decision.KEEP,
    ]


def test_a_gap_resets_the_buffer_so_no_clip_spans_it() -> None:
    first = [i * 100 * MS for i in range(6)]  # 0 .. 0.5 s at 10 fps
    second = [2_000 * MS + i * 100 * MS for i in range(6)]  # resumes at 2 s
    kept, decisions, clips = feed(make(10.0, clip_length=4, stride=2), first + second)
    assert decisions[6] is Decision.RESET and kept == first + second
    spans = [(c.first_stamp_ns, c.header.stamp_ns) for c in clips]
    # Clips at frames 4, 6 before the gap; after it the buffer refills: 4th and 6th frames.
    assert spans == [
        (0, 300 * MS),
        (200 * MS, 500 * MS),
        (2_000 * MS, 2_300 * MS),
        (2_200 * MS, 2_500 * MS),
    ]
    assert [c.sequence for c in clips] == [0, 1, 2, 3]


def test_time_jumping_back_further_than_the_gap_resets() -> None:
    stamps = [10_000 * MS + i * 100 * MS for i in range(5)] + [i * 100 * MS for i in range(5)]
    kept, decisions, _ = feed(make(10.0), stamps)
    assert decisions[5] is Decision.RESET and kept == stamps


def test_a_gap_just_under_the_limit_does_not_reset() -> None:
    stamps = [0, 100 * MS, 590 * MS, 690 * MS]
    _, decisions, _ = feed(make(10.0, gap=0.5), stamps)
    assert Decision.RESET not in decisions


@pytest.mark.parametrize(
    ("length", "stride", "expected_last"), [(3, 1, [2, 3, 4, 5]), (3, 3, [2, 5])]
)
def test_a_clip_every_stride_sampled_frames_once_full(
    length: int, stride: int, expected_last: list[int]
) -> None:
    stamps = [i * 100 * MS for i in range(6)]
    _, _, clips = feed(make(10.0, clip_length=length, stride=stride), stamps)
    assert [c.header.stamp_ns // (100 * MS) for c in clips] == expected_last
    for clip in clips:
        assert len(clip.frames) == length
        assert clip.header.stamp_ns - clip.first_stamp_ns == (length - 1) * 100 * MS
