"""Clip index sampling: hand-computed index lists for every mode and video shape."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from training.datasets.clips import (
    centre_clip_indices,
    clip_span,
    evenly_spaced_clips,
    segment_bounds,
    training_clip_indices,
)


class FixedRng:
    """Stands in for a Generator: returns `value` and records the range asked for."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.calls: list[tuple[int, int]] = []

    def integers(self, low: int, high: int) -> int:
        self.calls.append((low, high))
        return self.value


def test_span() -> None:
    assert clip_span(32, 1) == 32
    assert clip_span(4, 2) == 7
    assert clip_span(1, 5) == 1


def test_exact_length_video_has_one_position() -> None:
    rng = FixedRng(7)
    assert training_clip_indices(32, 32, 1, rng) == list(range(32))  # type: ignore[arg-type]
    assert rng.calls == []  # no room: nothing drawn
    assert centre_clip_indices(32, 32, 1) == list(range(32))
    assert evenly_spaced_clips(32, 32, 1, 3) == [list(range(32))] * 3


def test_long_video_with_step() -> None:
    # 100 frames, 4 frames 2 apart: span 7, start offsets 0..93.
    rng = FixedRng(5)
    assert training_clip_indices(100, 4, 2, rng) == [5, 7, 9, 11]  # type: ignore[arg-type]
    assert rng.calls == [(0, 94)]  # upper bound exclusive: offset 93 possible
    assert centre_clip_indices(100, 4, 2) == [46, 48, 50, 52]
    # bin centres: ((2j + 1) * 94 - 3) // 6 = 15, 46, 77
    assert evenly_spaced_clips(100, 4, 2, 3) == [
        [15, 17, 19, 21],
        [46, 48, 50, 52],
        [77, 79, 81, 83],
    ]


def test_ucf101_sized_video() -> None:
    # 7 s at 25 fps, 32-frame clips: offsets 0..143.
    assert centre_clip_indices(175, 32, 1) == list(range(71, 103))
    starts = [clip[0] for clip in evenly_spaced_clips(175, 32, 1, 10)]
    assert starts == [6, 21, 35, 49, 64, 78, 93, 107, 121, 136]
    for clip in evenly_spaced_clips(175, 32, 1, 10):
        assert clip == list(range(clip[0], clip[0] + 32))


def test_short_video_is_loop_padded() -> None:
    assert centre_clip_indices(5, 8, 1) == [0, 1, 2, 3, 4, 0, 1, 2]
    assert centre_clip_indices(10, 8, 2) == [0, 2, 4, 6, 8, 0, 2, 4]
    rng = FixedRng(3)
    assert training_clip_indices(5, 8, 1, rng) == [0, 1, 2, 3, 4, 0, 1, 2]  # type: ignore[arg-type]
    assert rng.calls == []
    assert evenly_spaced_clips(5, 8, 1, 2) == [[0, 1, 2, 3, 4, 0, 1, 2]] * 2
    assert centre_clip_indices(1, 4, 3) == [0, 0, 0, 0]


def test_nvgesture_segment() -> None:
    # color:sk_color:146:226 -> frames [146, 226), 80 frames, offsets 0..48.
    assert centre_clip_indices(300, 32, 1, 146, 226) == list(range(170, 202))
    rng = FixedRng(48)
    clip = training_clip_indices(300, 32, 1, rng, 146, 226)  # type: ignore[arg-type]
    assert clip == list(range(194, 226)) and rng.calls == [(0, 49)]
    # step 2: span 63, offsets 0..17, centre 8
    assert centre_clip_indices(300, 32, 2, 146, 226) == list(range(154, 217, 2))
    # bin centres over 49 offsets: ((2j + 1) * 49 - 4) // 8 = 5, 17, 30, 42
    starts = [c[0] for c in evenly_spaced_clips(300, 32, 1, 4, 146, 226)]
    assert starts == [151, 163, 176, 188]


def test_short_segment_wraps_inside_the_segment() -> None:
    assert centre_clip_indices(300, 8, 1, 10, 15) == [10, 11, 12, 13, 14, 10, 11, 12]
    assert evenly_spaced_clips(300, 4, 2, 2, 10, 13) == [[10, 12, 11, 10]] * 2


def test_segment_end_past_the_video_is_clipped() -> None:
    assert segment_bounds(200, 150, 400) == (150, 200)
    assert centre_clip_indices(200, 32, 1, 150, 400) == list(range(159, 191))
    with pytest.raises(ValueError, match="holds no frame"):
        centre_clip_indices(100, 8, 1, 120, 180)


@pytest.mark.parametrize(
    "call",
    [
        lambda: centre_clip_indices(100, 0, 1),
        lambda: centre_clip_indices(100, 8, 0),
        lambda: centre_clip_indices(0, 8, 1),
        lambda: centre_clip_indices(100, 8, 1, 50, 50),
        lambda: evenly_spaced_clips(100, 8, 1, 0),
    ],
)
def test_invalid_arguments(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


def test_random_training_clips_cover_every_position_and_stay_in_segment() -> None:
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(2000):
        clip = training_clip_indices(300, 8, 3, rng, 100, 140)  # span 22, offsets 0..18
        assert all(100 <= i < 140 for i in clip)
        assert np.all(np.diff(clip) == 3)
        starts.add(clip[0])
    assert starts == set(range(100, 119))


@pytest.mark.parametrize("frames", [1, 7, 31, 32, 33, 34, 100, 175])
def test_one_evenly_spaced_clip_is_the_centre_clip(frames: int) -> None:
    assert evenly_spaced_clips(frames, 32, 1, 1) == [centre_clip_indices(frames, 32, 1)]
    assert evenly_spaced_clips(frames, 8, 2, 1, 0, None) == [centre_clip_indices(frames, 8, 2)]
