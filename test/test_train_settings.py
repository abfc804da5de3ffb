"""`python -m training train` under hostile settings.

Values that used to pass the config check and then fail deep inside a run
(a ValueError from the model or preprocessing config, a RuntimeError from
torch.device or the allocator, an OSError creating the run folder) must be
refused with one line and exit 2; the width cap keeps an absurd width from
reaching the allocator at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_bag import tiny_checkpoint
from test_train_helpers import tiny_set

from mtl_perception.settings import SettingsError
from training.__main__ import main
from training.train.config import load_train_config

CONFIG = Path(__file__).parents[1] / "config/train/cpu_small.yaml"


@pytest.mark.parametrize("override, words", [
    ("model.width=0", "model.width"),
    ("model.width=100000", "model.width"),
    ("clip.crop=[64,64]", "crop"),
    ("clip.clip_length=0", "clip_length"),
    ("clip.frame_step=0", "frame_step"),
    ("clip.flip_probability=2", "flip_probability"),
    ("device=tpu", "device 'tpu'"),
    ("device=cuda:x", "device 'cuda:x'"),
    ("batch_size=100000", r"batch_size must be in \[1, 4096\], got 100000"),
    ("lr=.inf", r"lr must be in \(0, 10\], got inf"),
    ("lr=.nan", r"lr must be in \(0, 10\], got nan"),
])
def test_settings_that_would_fail_inside_a_run_are_refused_at_load(override: str,
                                                                   words: str) -> None:
    with pytest.raises(SettingsError, match=words) as error:
        load_train_config(CONFIG, ["set=any.yaml", override])
    assert "\n" not in str(error.value)


def test_cli_exits_2_for_pretrained_weights_of_another_shape_and_an_out_under_a_file(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(1)
    set_yaml = tiny_set(tmp_path_factory)
    weights = tiny_checkpoint(tmp_path / "other.safetensors")  # a whole model, width 4
    base = ["train", "--config", str(CONFIG), f"set={set_yaml}", "iterations=1",
            "model.width=2", "workers=0", "batch_size=2"]
    lines = ["--progress", "lines"]
    assert main([*base, f"pretrained={weights}", "--out", str(tmp_path / "run"), *lines]) == 2
    assert f"pretrained={weights}" in caplog.text
    afile = tmp_path / "notes.txt"
    afile.write_text("user data")
    assert main([*base, "pretrained=none", "--out", str(afile / "run"), *lines]) == 2
    assert "--out" in caplog.text and afile.read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "other.safetensors"]


def test_experiments_refuse_an_out_under_a_file_before_training(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    set_yaml = tiny_set(tmp_path_factory)
    afile = tmp_path / "notes.txt"
    afile.write_text("user data")
    code = main(["experiments", "--config", str(set_yaml), "--only", "hps_average",
                 "--out", str(afile / "grid")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file" in err and "Traceback" not in err
    assert afile.read_text() == "user data"


def test_evaluate_names_the_device_setting_it_cannot_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "model.safetensors")
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--config",
                 str(tmp_path / "set.yaml"), "--device", "tpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "'tpu'" in err and "Traceback" not in err


def test_a_bad_override_is_named_as_the_override_not_as_the_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^override 'lr=nan': lr: expected a number"):
        load_train_config(CONFIG, ["set=any.yaml", "lr=nan"])
    mine = tmp_path / "mine.yaml"
    mine.write_text("set: any.yaml\nlr: nan\n")  # the file's own value: the file is named
    with pytest.raises(SettingsError, match=r"mine.yaml.lr: expected a number"):
        load_train_config(mine, ["iterations=5"])
