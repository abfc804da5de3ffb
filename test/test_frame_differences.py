"""ModelConfig.frame_differences: the stem sees consecutive-frame differences.

The CPU demo (config/train/cpu_small.yaml) trains from scratch on the synthetic
set, where a still frame does not tell the classes apart; on raw frames the
small model learns the scene and stays at chance on held-out actors and places.
"""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers_models import tiny_config

from mtl_perception.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from mtl_perception.models import build_model
from mtl_perception.models.backbone import R3D

CLIPS = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))


def test_a_still_image_added_to_every_frame_changes_nothing() -> None:
    """Differences cancel the static part exactly; raw frames do not."""
    still = torch.randn(2, 3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    on = build_model(replace(tiny_config("hps"), frame_differences=True)).eval()
    off = build_model(tiny_config("hps")).eval()
    with torch.no_grad():
        for a, b in zip(on.score_all(CLIPS), on.score_all(CLIPS + still)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(off.score_all(CLIPS)[0], off.score_all(CLIPS + still)[0])


def test_stem_convolves_the_t_minus_1_differences_by_hand() -> None:
    torch.manual_seed(0)
    backbone = R3D("r3d_18", 4, frame_differences=True).eval()
    diffs = CLIPS[:, :, 1:] - CLIPS[:, :, :-1]
    with torch.no_grad():
        expected = torch.relu(backbone.stem[1](backbone.stem[0](diffs)))
        got = backbone.stem(CLIPS)
    assert got.shape[2] == 7
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match=">= 2 frames"):
        backbone.stem(CLIPS[:, :, :1])


def test_same_parameters_and_the_flag_survives_a_checkpoint(tmp_path: Path) -> None:
    config = replace(tiny_config("hps"), frame_differences=True)
    model = build_model(config).eval()
    assert model.state_dict().keys() == build_model(tiny_config("hps")).state_dict().keys()
    info = CheckpointInfo(model=config, class_names=tuple(
        tuple(f"c{i}" for i in range(n)) for n in config.num_classes))
    save_checkpoint(tmp_path / "m.safetensors", model, info)
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.info.model.frame_differences is True
    with torch.no_grad():
        for a, b in zip(model.score_all(CLIPS), loaded.model.score_all(CLIPS)):
            torch.testing.assert_close(a, b)
