"""The trainer end to end on a tiny synthetic set: learning, every method, bad input."""

from __future__ import annotations

import csv
import json
import urllib.error
from pathlib import Path

import pytest
import torch
from helpers_datasets import corrupt_video
from safetensors import safe_open
from test_train_helpers import tiny_config, tiny_set

from mtl_perception.checkpoint import load_checkpoint, read_checkpoint_info
from mtl_perception.models import ModelConfig, build_model
from training.__main__ import main
from training.train.data import build_data
from training.train.pretrained import PretrainedError, backbone_weights, kinetics_path
from training.train.resume import RunDirError
from training.train.trainer import train


@pytest.fixture(scope="module")
def set_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_set(tmp_path_factory)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_hps_learns_both_tasks(set_yaml: Path, tmp_path: Path) -> None:
    """100 iterations of HPS (width 8, 8x24x24 clips), scored on the training videos'
    centre clips (validation videos are new actors and places, which this little data
    cannot generalise to in seconds: this shows that training fits both tasks).

    Chance is 1/3 per task (3 classes, 12 + 10 videos per class). A model that learned
    nothing predicts independently of the label: a constant gets exactly 1/3 and a
    random guesser reaches 60 % with probability 2e-4 (action, 36 videos) and 1e-3
    (gesture, 30 videos), both together ~2e-7. Measured: about 80 % on both.
    """
    config = tiny_config(set_yaml, "iterations=100", "model.width=8", "val_split=train",
                         "val_every=100")
    result = train(config, tmp_path / "run", progress=False, tensorboard=False)
    accuracy = result.history[-1]["accuracy"]
    assert accuracy["action"] >= 0.6 and accuracy["gesture"] >= 0.6, accuracy
    loaded = load_checkpoint(result.best)
    assert loaded.info.provenance["config"]["iterations"] == 100
    assert loaded.info.provenance["metrics"]["accuracy"] == accuracy


@pytest.mark.parametrize("overrides", [
    ("method=stl", "tasks=[gesture]"),
    ("method=sps", "weighting.method=dwa", "weighting.dwa_window=1"),
    ("method=lws", "weighting.method=automatic", "lws.nes_samples=2", "lws.sgd_samples=2"),
    ("method=lws", "weighting.method=uncertainty", "lws.per_task_forward=false",
     "lws.separate_nes_batch=false", "lws.nes_samples=2", "lws.sgd_samples=2"),
    ("method=hps", "weighting.method=uncertainty", "sampling=balanced"),
])
def test_every_method_and_weighting_trains_and_saves(
        set_yaml: Path, tmp_path: Path, overrides: tuple[str, ...]) -> None:
    config = tiny_config(set_yaml, "iterations=3", "val_every=3", "val_max_per_task=3",
                         "model.trainable_stages=2", *overrides)
    result = train(config, tmp_path / "run", progress=False, tensorboard=False)
    assert result.iterations == 3 and not result.interrupted
    loaded = load_checkpoint(result.last)
    assert loaded.info.model.method == config.method
    rows = _log(tmp_path / "run" / "train.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert all(float(r["loss"]) == float(r["loss"]) for r in rows)  # finite, logged
    if config.method == "stl":
        # The other task's head does not exist: one task, one head, no gesture/action mix.
        assert loaded.info.model.task_names == ("gesture",)
        assert len(loaded.model.heads) == 1  # type: ignore[arg-type]
        with safe_open(str(result.last), framework="pt") as handle:
            assert not any(k.startswith("heads.1.") for k in handle.keys())  # noqa: SIM118
        assert list(rows[0]) == ["iteration", "loss", "loss/gesture", "weight/gesture",
                                 "clips_per_s", "skipped", "lws_own_copy"]


def test_settings_printed_and_stored(set_yaml: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = str(Path(__file__).parents[1] / "config/train/cpu_small.yaml")
    code = main(["train", "--config", config,
                 f"set={set_yaml}", "iterations=1", "model.width=4", "clip.clip_length=4",
                 "clip.resize=[24,32]", "clip.crop=[16,16]", "workers=0", "val_max_per_task=2",
                 "--out", str(tmp_path / "run"), "--progress", "lines"])
    assert code == 0
    out = capsys.readouterr().out
    assert "clip_length: 4" in out and "method: hps" in out
    assert "skipped unreadable videos: 0" in out
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["clip"]["clip_length"] == 4
    info = read_checkpoint_info(tmp_path / "run" / "best.safetensors")
    assert info.provenance["config"] == run["config"]
    assert info.preprocess.clip_length == 4 and info.preprocess.crop == (16, 16)


def test_a_corrupt_video_is_skipped_counted_and_reported(
        set_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Corrupt a video that iteration 0's batch is known to draw (the sampler is a
    function of seed and iteration), so the skip is certain, not luck."""
    from training.methods.sampler import MultiTaskBatchSampler

    copy = tmp_path / "set"
    _copy_tree(set_yaml.parent, copy)
    config = tiny_config(copy / "set.yaml", "iterations=2", "val_every=2", "val_max_per_task=2")
    data = build_data(config)
    sampler = MultiTaskBatchSampler([data.train.indices_of_task(t) for t in (0, 1)],
                                    config.batch_size, 2, config.seed)
    victim = data.train.samples[sampler.global_batch(0)[0]].path
    corrupt_video(victim)
    result = train(config, tmp_path / "run", progress=False, tensorboard=False)
    assert result.iterations == 2 and result.skipped_files == [str(victim)]
    rows = _log(tmp_path / "run" / "train.csv")
    assert rows[-1]["skipped"] == "1"
    assert "skipped unreadable videos: 1" in capsys.readouterr().out


def test_run_folder_refusals(set_yaml: Path, tmp_path: Path) -> None:
    config = tiny_config(set_yaml, "iterations=1", "val_max_per_task=1")
    foreign = tmp_path / "holiday_photos"
    foreign.mkdir()
    (foreign / "beach.jpg").write_bytes(b"x")
    with pytest.raises(RunDirError, match="not a training run folder"):
        train(config, foreign, progress=False, tensorboard=False)
    assert [p.name for p in foreign.iterdir()] == ["beach.jpg"]
    run = tmp_path / "run"
    train(config, run, progress=False, tensorboard=False)
    with pytest.raises(RunDirError, match="already holds a training run"):
        train(config, run, progress=False, tensorboard=False)
    result = train(config, run, overwrite=True, progress=False, tensorboard=False)
    assert result.iterations == 1
    with pytest.raises(RunDirError, match="other settings"):
        train(tiny_config(set_yaml, "iterations=1", "lr=0.5"), run, resume=True)


def test_cli_bad_input_is_one_line_exit_2(set_yaml: Path, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    cfg = str(Path(__file__).parents[1] / "config/train/cpu_small.yaml")
    assert main(["train", "--config", cfg, f"set={set_yaml}", "method=stl"]) == 2
    assert "method stl trains one task" in caplog.text
    assert main(["train", "--config", cfg, f"set={set_yaml}", "tasks=[dance]"]) == 2
    assert "['dance'] not in set" in caplog.text
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a training run folder" in caplog.text


def test_kinetics400_offline_without_the_file_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth"
    assert kinetics_path() == expected
    with pytest.raises(PretrainedError) as error:
        backbone_weights("kinetics400", "r3d_18", 64)
    message = str(error.value)
    assert "r3d_18-b3b3357e.pth" in message and str(expected) in message
    assert "\n" not in message
    with pytest.raises(PretrainedError, match="r3d_18 only"):
        backbone_weights("kinetics400", "r3d_34", 64)


def test_a_torchvision_state_dict_in_the_hub_cache_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's own r3d_18 (random init), saved as torchvision saves its weights."""
    from torchvision.models.video import r3d_18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = r3d_18(weights=None).state_dict()
    kinetics_path().parent.mkdir(parents=True)
    torch.save(state, kinetics_path())
    loaded = backbone_weights("kinetics400", "r3d_18", 64)
    assert loaded is not None and set(loaded) == set(state)
    assert torch.equal(loaded["layer3.0.conv1.0.weight"], state["layer3.0.conv1.0.weight"])
    model = build_model(ModelConfig(width=64, num_classes=(3, 3)), loaded)
    assert torch.equal(model.prefix.stages.stem[0].weight, state["stem.0.weight"])


def _log(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _copy_tree(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst)
