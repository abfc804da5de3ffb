"""The single preprocessing copy: torchvision's Kinetics preset, per frame or per clip."""

import numpy as np
import pytest
import torch
from torchvision.models.video import R3D_18_Weights

from mtl_perception.preprocess import (
    PreprocessConfig,
    preprocess_frame,
    preprocess_frames,
    stack_clip,
)

FRAMES = np.random.default_rng(0).integers(0, 256, (6, 240, 320, 3), dtype=np.uint8)


def test_matches_torchvision_video_preset_of_the_kinetics_weights() -> None:
    preset = R3D_18_Weights.KINETICS400_V1.transforms()
    expected = preset(torch.from_numpy(FRAMES).permute(0, 3, 1, 2))
    ours = preprocess_frames(FRAMES, PreprocessConfig())
    assert ours.shape == (3, 6, 112, 112) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_one_frame_at_a_time_gives_the_same_clip() -> None:
    config = PreprocessConfig()
    per_frame = stack_clip([preprocess_frame(f, config) for f in FRAMES])
    torch.testing.assert_close(per_frame, preprocess_frames(FRAMES, config), rtol=0, atol=0)


def test_normalisation_by_hand_on_a_flat_frame() -> None:
    frame = np.full((1, 128, 171, 3), 255, dtype=np.uint8)  # already the resize size
    out = preprocess_frames(frame, PreprocessConfig())
    expected = [
        (1 - m) / s for m, s in zip((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
    ]
    for channel, value in enumerate(expected):
        assert torch.allclose(out[channel], torch.tensor(value), atol=1e-5)


def test_centre_crop_takes_the_middle() -> None:
    frame = np.zeros((1, 128, 171, 3), dtype=np.uint8)
    frame[0, 8:120, 30:142] = 255  # torchvision's centre: top 8, left round(29.5) = 30
    out = preprocess_frames(frame, PreprocessConfig(mean=(0, 0, 0), std=(1, 1, 1)))
    assert torch.all(out == 1.0)


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="expected uint8 RGB frames, got dtype torch.float32"):
        preprocess_frames(torch.zeros(2, 8, 8, 3), PreprocessConfig())
    with pytest.raises(ValueError, match=r"expected RGB frames shaped \(T, H, W, 3\)"):
        preprocess_frames(np.zeros((2, 8, 8, 4), np.uint8), PreprocessConfig())
    with pytest.raises(ValueError, match="crop .* is larger than resize"):
        PreprocessConfig(resize=(64, 64), crop=(112, 112))
    with pytest.raises(ValueError, match="zero frames"):
        stack_clip([])
