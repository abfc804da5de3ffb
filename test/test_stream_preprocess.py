"""The per-frame fast path of preprocessing: bit-identical to the whole-frame path, any layout.

`preprocess_frame` converts only the rows the centre crop reads; `decode_image(msg,
rows=...)` + `preprocess_rows` converts only those rows' colours. Both must give
exactly the bits of the straightforward computation (whole frame to float,
torch's interpolate, crop, round, normalise), which test_preprocess.py ties to
torchvision's preset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rosbags.typesys import Stores, get_typestore

from mtl_perception.preprocess import (
    PreprocessConfig,
    frame_rows,
    preprocess_frame,
    preprocess_frames,
    preprocess_rows,
)
from mtl_perception.stream import decode_image

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
RNG = np.random.default_rng(3)
CONFIG = PreprocessConfig(clip_length=2, resize=(32, 40), crop=(24, 24))


def straightforward(frame: np.ndarray, config: PreprocessConfig) -> torch.Tensor:
    """The obvious computation, written independently of preprocess.py."""
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    if tuple(x.shape[-2:]) != config.resize:
        x = F.interpolate(x, size=config.resize, mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255)
    top = round((x.shape[-2] - config.crop[0]) / 2)
    left = round((x.shape[-1] - config.crop[1]) / 2)
    x = x[0, :, top : top + config.crop[0], left : left + config.crop[1]] / 255
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("size", [(60, 80), (33, 41), (32, 40), (20, 30), (241, 97), (480, 640)])
def test_fast_path_matches_the_straightforward_computation(size: tuple[int, int]) -> None:
    frame = RNG.integers(0, 256, (*size, 3), dtype=np.uint8)
    for config in (CONFIG, PreprocessConfig(clip_length=1)):
        ours = preprocess_frame(frame, config)
        torch.testing.assert_close(ours, straightforward(frame, config), rtol=0, atol=2e-6)


def test_strided_views_and_reused_buffers_give_the_same_bits() -> None:
    frames = RNG.integers(0, 256, (3, 60, 80, 3), dtype=np.uint8)
    padded = np.zeros((60, 90, 4), np.uint8)
    for frame in frames:  # the per-thread float buffer is reused frame after frame
        expected = preprocess_frame(np.ascontiguousarray(frame), CONFIG)
        bgr_view = np.ascontiguousarray(frame[..., ::-1])[..., ::-1]
        padded[:, :80, :3] = frame
        for view in (bgr_view, padded[:, :80, :3]):
            assert torch.equal(preprocess_frame(view, CONFIG), expected)
    stacked = preprocess_frames(frames, CONFIG)
    assert torch.equal(stacked[:, 2], preprocess_frame(frames[2], CONFIG))
    assert torch.equal(preprocess_frames(torch.from_numpy(frames), CONFIG), stacked)


def test_frame_rows_are_a_small_superset_and_none_when_all_are_needed() -> None:
    rows = frame_rows(1080, 1920, PreprocessConfig())
    assert rows is not None and 200 <= len(rows) <= 260
    assert np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < 1080
    assert frame_rows(128, 171, PreprocessConfig()) is None  # already the resize size
    assert frame_rows(480, 640, PreprocessConfig(antialias=True)) is None


def image(encoding: str, data: np.ndarray, width: int, big: bool = False) -> Any:
    return TYPES["sensor_msgs/msg/Image"](
        header=TYPES["std_msgs/msg/Header"](
            stamp=TYPES["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""
        ),
        height=data.shape[0],
        width=width,
        encoding=encoding,
        is_bigendian=int(big),
        step=data.shape[1],
        data=data.reshape(-1),
    )


@pytest.mark.parametrize(
    ("encoding", "bpp", "big"),
    [
        ("rgb8", 3, False),
        ("bgr8", 3, False),
        ("rgba8", 4, False),
        ("bgra8", 4, False),
        ("mono8", 1, False),
        ("mono16", 2, True),
        ("yuv422", 2, False),
        ("yuv422_yuy2", 2, False),
    ],
)
def test_decoding_only_the_needed_rows_gives_the_same_clip(
    encoding: str, bpp: int, big: bool
) -> None:
    height, width, pad = 70, 90, 6
    data = RNG.integers(0, 256, (height, width * bpp + pad), dtype=np.uint8)
    msg = image(encoding, data, width, big)
    rows = frame_rows(height, width, CONFIG)
    assert rows is not None
    part = decode_image(msg, rows)
    full = decode_image(msg)
    np.testing.assert_array_equal(part, full[rows])
    assert torch.equal(
        preprocess_rows(part, (height, width), CONFIG), preprocess_frame(full, CONFIG)
    )


def test_preprocess_rows_refuses_what_does_not_fit() -> None:
    rows = frame_rows(70, 90, CONFIG)
    assert rows is not None
    with pytest.raises(ValueError, match=r"expected uint8 rows shaped \(\d+, 90, 3\)"):
        preprocess_rows(np.zeros((3, 90, 3), np.uint8), (70, 90), CONFIG)
    with pytest.raises(ValueError, match="needs every row"):
        preprocess_rows(np.zeros((32, 40, 3), np.uint8), (32, 40), CONFIG)
