"""Softmax, smoothing (none / ema / mean), top-k and threshold, with hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_perception.stream import StreamConfig, StreamConfigError
from mtl_perception.stream.results import Smoother, postprocess, softmax, top_k

NAMES = ("wave", "point", "stop")


def test_softmax_by_hand() -> None:
    p = softmax(np.array([0.0, math.log(3.0), 0.0]))
    np.testing.assert_allclose(p, [0.2, 0.6, 0.2], rtol=0, atol=1e-12)
    big = softmax(np.array([1000.0, 1000.0]))  # no overflow
    np.testing.assert_allclose(big, [0.5, 0.5])


def test_top_k_order_and_threshold() -> None:
    p = np.array([0.2, 0.5, 0.3])
    assert top_k(p, NAMES, 2, 0.0) == (("point", 0.5), ("stop", 0.3))
    assert top_k(p, NAMES, 3, 0.25) == (("point", 0.5), ("stop", 0.3))
    assert top_k(p, NAMES, 3, 0.6) == ()
    tie = np.array([0.4, 0.2, 0.4])
    assert [name for name, _ in top_k(tie, NAMES, 3, 0.0)] == ["wave", "stop", "point"]


P1 = np.array([1.0, 0.0, 0.0])
P2 = np.array([0.0, 1.0, 0.0])
P3 = np.array([0.0, 0.0, 1.0])


def test_ema_by_hand() -> None:
    smoother = Smoother("ema", 3)  # alpha = 2 / (3 + 1) = 0.5
    out = [smoother.update(p) for p in (P1, P2, P3)]
    np.testing.assert_allclose(out[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(out[2], [0.25, 0.25, 0.5])


def test_mean_over_the_window_by_hand() -> None:
    smoother = Smoother("mean", 2)
    out = [smoother.update(p) for p in (P1, P2, P3)]
    np.testing.assert_allclose(out[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(out[2], [0.0, 0.5, 0.5])  # P1 left the window


def test_none_reset_and_live_mode_change() -> None:
    smoother = Smoother("none", 2)
    np.testing.assert_allclose(smoother.update(P1), P1)
    np.testing.assert_allclose(smoother.update(P2), P2)
    smoother.configure("mean", 2)  # history was kept: mean of P2 and P3 next
    np.testing.assert_allclose(smoother.update(P3), [0.0, 0.5, 0.5])
    smoother.reset()
    np.testing.assert_allclose(smoother.update(P1), P1)


def test_postprocess_uses_smoothed_scores_for_top_k() -> None:
    config = StreamConfig(smoothing="mean", smoothing_window=2, top_k=2, score_threshold=0.3)
    smoothers = [Smoother(config.smoothing, config.smoothing_window)]
    logits = [np.array([5.0, 0.0, 0.0])]
    first = postprocess(logits, ("gesture",), (NAMES,), smoothers, config)["gesture"]
    assert first.best is not None and first.best[0] == "wave"
    second = postprocess([np.array([0.0, 10.0, 0.0])], ("gesture",), (NAMES,), smoothers, config)[
        "gesture"
    ]
    e5, e10 = math.exp(5), math.exp(10)
    wave = (e5 / (e5 + 2) + 1 / (e10 + 2)) / 2  # mean of the two clips' softmax
    point = (1 / (e5 + 2) + e10 / (e10 + 2)) / 2
    assert second.probabilities.argmax() == 1
    # stop (~0.003) is below the threshold and left out.
    assert second.top == (("point", pytest.approx(point)), ("wave", pytest.approx(wave)))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"score_threshold": 1.5}, r"score_threshold must be in \[0, 1\], got 1.5"),
        ({"top_k": 0}, r"top_k must be in \[1, 1000\], got 0"),
        ({"smoothing": "median"}, "smoothing must be one of"),
        ({"smoothing_window": 0}, r"smoothing_window must be in \[1, 1000\]"),
        ({"target_fps": 0.0}, "target_fps must be in"),
        ({"inference_stride": 0}, r"inference_stride must be in \[1, 1000\]"),
        ({"max_gap_s": 0.01}, "shorter than one sampling period"),
        ({"clip_length": -1}, r"clip_length must be in \[0, 1024\]"),
    ],
)
def test_config_refuses_bad_values(changes: dict, match: str) -> None:
    with pytest.raises(StreamConfigError, match=match):
        StreamConfig(**changes)


def test_clip_length_can_only_narrow() -> None:
    assert StreamConfig().resolved_clip_length(16) == 16
    assert StreamConfig(clip_length=8).resolved_clip_length(16) == 8
    with pytest.raises(StreamConfigError, match="longer than the checkpoint's 16"):
        StreamConfig(clip_length=32).resolved_clip_length(16)
