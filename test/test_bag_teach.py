"""Own gestures from bags: one sampling rate to the robot, warnings, fit-gate, cache pruning."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
from helpers_bag import START_NS, tiny_checkpoint, write_image_bag

from mtl_perception.checkpoint import CheckpointInfo, read_checkpoint_info, save_checkpoint
from mtl_perception.models import build_model
from mtl_perception.stream import StreamConfig
from mtl_perception.stream.rate import choose_target_fps, rate_warning
from training.__main__ import main
from training.datasets import bag_cache
from training.datasets.bag_source import none_of_bags
from training.datasets.sets import load_set
from training.train.config import ClipSettings
from training.train.provenance import (
    sampling_record,
    warn_shared_recordings,
    warn_short_intervals,
)


def _set(folder: Path, labels: str, sources: list[dict[str, object]] | None = None) -> Path:
    bag = write_image_bag(folder / "bag", count=60, fps=10.0)  # 5.9 s of images
    (folder / "labels.csv").write_text(labels)
    entries = sources or [{"split": "train"}]
    tasks = {"gesture": [{"format": "bag", "bag": str(bag), "labels": "labels.csv",
                          "cache": str(folder / "cache"), "target_fps": 10.0, **e}
                         for e in entries]}
    (folder / "set.yaml").write_text(json.dumps({"class_merge": "none", "tasks": tasks}))
    return folder / "set.yaml"


LABELS = "start,end,task,label\n1.0,2.5,gesture,wave\n3.0,3.3,gesture,stop\n"


def test_the_checkpoint_records_one_rate_and_the_stream_takes_it(tmp_path: Path) -> None:
    """10 fps recordings, every 2nd frame, 4-frame clips: 0.6 s per clip, the stream at 5 fps."""
    set_config = load_set(_set(tmp_path, LABELS))
    clip = ClipSettings(clip_length=4, resize=(32, 40), crop=(32, 32), frame_step=2)
    record = sampling_record(set_config, ["gesture"], clip)
    assert record == {"source_fps": 10.0, "frame_step": 2, "clip_span_s": 0.6, "target_fps": 5.0}
    info = read_checkpoint_info(tiny_checkpoint(tmp_path / "m.safetensors"))
    info = dataclasses.replace(info, provenance={"temporal_sampling": "consecutive",
                                                 "stream": record})
    chosen, line = choose_target_fps(StreamConfig(), info, explicit=False)
    assert chosen.target_fps == 5.0 and line is not None and "consecutive" in line
    assert rate_warning(chosen, info) is None
    told, none = choose_target_fps(StreamConfig(target_fps=15.0), info, explicit=True)
    assert told.target_fps == 15.0 and none is None  # what the user sets is kept ...
    warning = rate_warning(told, info)  # ... with one warning saying why it is wrong
    assert warning is not None and "10.0 fps recordings, every 2th frame" in warning
    assert "so 5 fps shows it the motion it learned; at 15 its clips span 0.20 s" in warning


def test_a_labelled_interval_shorter_than_a_clip_warns_with_its_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    set_config = load_set(_set(tmp_path, LABELS))
    clip = ClipSettings(clip_length=4, resize=(32, 40), crop=(32, 32), frame_step=2)
    with caplog.at_level(logging.WARNING):
        assert warn_short_intervals(set_config, ["gesture"], clip) == 1
    assert f"{tmp_path / 'labels.csv'}:3: gesture 'stop' lasts 0.30 s, shorter than one clip " \
        "(0.60 s: 4 frames 2 apart at 10 fps)" in caplog.text


def test_train_and_test_rows_of_one_recording_warn(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = _set(tmp_path, LABELS, [{"split": "train"}, {"split": "test", "cache": "other"}])
    with caplog.at_level(logging.WARNING):
        assert warn_shared_recordings(load_set(path), ["gesture"]) == 1
    assert "is both a training and a test source" in caplog.text


def test_a_bags_unlabelled_time_is_the_gates_none(tmp_path: Path) -> None:
    set_config = load_set(_set(tmp_path, LABELS))
    sources = [s.settings for s in set_config.tasks["gesture"]]
    nones = none_of_bags(sources * 2, "train", margin_s=0.2, clip_steps=6)  # listed twice: once
    bounds = [t / 1e9 for s in nones for t in (s.start, s.end)]
    # labelled 1.0-2.5 and 3.0-3.3 with 0.2 s margins; the images end at 5.9 s; >= 0.6 s long
    assert bounds == pytest.approx([0.0, 0.8, 3.5, 5.9], abs=1e-6)
    assert all(s.bag is not None and s.label == 0 for s in nones)
    assert none_of_bags(sources, "test", 0.2, 6) == []  # a train recording has no test none


def _gesture_checkpoint(tmp_path: Path) -> Path:
    """A one-task (wave, stop) checkpoint trained on every 2nd frame of the bags."""
    source = read_checkpoint_info(tiny_checkpoint(tmp_path / "m.safetensors"))
    one_task = dataclasses.replace(source.model, task_names=("gesture",), num_classes=(2,))
    ckpt = tmp_path / "g.safetensors"
    save_checkpoint(ckpt, build_model(one_task).eval(), CheckpointInfo(
        one_task, (("wave", "stop"),), source.preprocess,
        {"config": {"clip": {"frame_step": 2}}, "temporal_sampling": "consecutive"}))
    return ckpt


def test_fit_gate_reads_a_bag_set_with_the_checkpoints_sampling(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = "start,end,task,label\n1.0,2.5,gesture,wave\n3.0,4.0,gesture,stop\n"
    path = _set(tmp_path, labels)
    ckpt = _gesture_checkpoint(tmp_path)
    out = tmp_path / "gated.safetensors"
    assert main(["fit-gate", "--checkpoint", str(ckpt), "--set", str(path), "--out", str(out),
                 "--steps", "20", "--hidden", "0"]) == 0
    gated = read_checkpoint_info(out)
    assert gated.model.gate and gated.model.gate_context == 0  # the default: no memory
    fit = gated.provenance["gate_fit"]
    assert fit["temporal_sampling"] == "consecutive"
    # 2 gesture intervals and 2 none stretches (0-0.7 s, 4.3-5.9 s) x 4 clips each
    assert fit["train"]["clips"] == 16
    assert "checkpoint with gate" in capsys.readouterr().out
    # a gate with memory learns from video files: asked for on bags, refused in one line
    assert main(["fit-gate", "--checkpoint", str(ckpt), "--set", str(path), "--out",
                 str(tmp_path / "ctx.safetensors"), "--context", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--context 2" in err and "recorded bag" in err and len(err.splitlines()) == 1


def test_cache_prune_removes_stale_and_least_recently_used_folders(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cache"
    names = []
    for bag in (tmp_path / "nothing", tmp_path / "b1", tmp_path / "b2"):
        if bag.name != "nothing":
            write_image_bag(bag, count=4)
        key = {"bag_sha256": bag_cache.bag_checksum(bag) if bag.exists() else ""}
        folder = bag_cache.cache_folder(root, bag, key)
        folder.mkdir(parents=True)
        (folder / "index.json").write_text(json.dumps({"key": key, "bag": str(bag)}))
        (folder / "frames.f32").write_bytes(b"\0" * 1000)
        names.append(folder.name)
    gone, old, new = names
    os.utime(root / old / "index.json", (START_NS / 1e9, START_NS / 1e9))  # used long ago
    (root / f".{new}.k2x_9abc").mkdir()
    os.utime(root / f".{new}.k2x_9abc", (0, 0))
    # What is not provably the cache's stays, however stale or old it looks: a set's
    # `cache:` may name a folder that holds other things (this wiped a user's folders).
    # ... and so does a folder named and filled like an entry whose index.json is not the
    # cache's index of it: another program's, or a damaged one (it was removed as stale)
    mine = {"photos": "w.jpg", ".git": "HEAD", "x-" + "4" * 16: "notes.txt",
            "src": "index.json", "y-" + "5" * 16: "index.json", "z-" + "6" * 16: "index.json"}
    for name, file in mine.items():
        (root / name).mkdir()
        (root / name / file).write_bytes(b"\0" * 5000)
        os.utime(root / name, (0, 0))
    (root / ("y-" + "5" * 16) / "index.json").write_text('{"pages": [1, 2]}')
    (root / ("z-" + "6" * 16) / "index.json").write_text(
        json.dumps({"key": {"bag_sha256": ""}, "bag": "z"}))  # its key gives another name
    assert main(["cache", "--root", str(root), "--prune", "--max-gb", "0.0000015"]) == 0
    out = capsys.readouterr().out
    assert f"left {root / ('y-' + '5' * 16)}: named like a cache folder, but its" in out
    assert f"left {root / ('z-' + '6' * 16)}: named like" in out
    assert f"removed {root / gone}: its bag {tmp_path / 'nothing'} is gone" in out
    assert "a build left half done" in out
    assert f"removed {root / old}: least recently used, over the size cap" in out
    assert sorted(p.name for p in root.iterdir()) == sorted([new, *mine])
    assert "1 folder(s)" in out  # only the cache's own are listed and counted
    # a changed bag makes its folder stale
    shutil.rmtree(tmp_path / "b2")
    write_image_bag(tmp_path / "b2", count=5, seed=1)
    assert bag_cache.stale_reason(root / new) == f"its bag {tmp_path / 'b2'} has changed"
    monkeypatch.setenv("MTL_BAG_CACHE_MAX_GB", "0")
    assert bag_cache.max_cache_bytes() == 0
    # training's own pruning after a build goes by the same test
    assert bag_cache.prune_over_cap(root, 0) == [root / new]
    assert sorted(p.name for p in root.iterdir()) == sorted(mine)


def test_joint_gate_training_takes_a_bags_none_from_its_unlabelled_time(tmp_path: Path) -> None:
    """gate.enabled on a bag set: no frames "around" a bag sample are read (the bag is a
    folder, not a video): its none is the unlabelled time, one clip long at least."""
    from training.datasets.sets import build_task_split
    from training.train.config import load_train_config
    from training.train.data import gate_none_samples

    path = _set(tmp_path, LABELS)
    config = load_train_config(Path(__file__).resolve().parents[1] / "config" / "train"
                               / "cpu_small.yaml",
                               [f"set={path}", "gate.enabled=true", "clip.frame_step=1"])
    set_config = load_set(path)
    nones = gate_none_samples(config, set_config, "train",
                              [build_task_split(set_config, "gesture", "train")])
    bounds = [t / 1e9 for s in nones for t in (s.start, s.end)]
    # margins 0.3 s; 8 frames at 10 fps = 0.7 s at least: 0-0.7 and 3.6-5.9 (not 2.8-2.7)
    assert bounds == pytest.approx([0.0, 0.7, 3.6, 5.9], abs=1e-6)



def test_fit_gate_says_in_one_line_when_a_gate_class_loses_every_clip(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bag intervals that hold no sampled frame drop out only when the clips are read; a
    gate class left without any ended fit-gate in a ValueError traceback."""
    import training.methods.gate_fit as gate_fit

    path = _set(tmp_path, "start,end,task,label\n1.0,2.5,gesture,wave\n3.0,4.0,gesture,stop\n")
    ckpt = _gesture_checkpoint(tmp_path)
    real = gate_fit._fit
    monkeypatch.setattr(gate_fit, "_fit", lambda gate, logits, labels, config: real(
        gate, logits, labels.clamp(max=0), config))  # as if every none clip had fallen away
    out = tmp_path / "gated.safetensors"
    assert main(["fit-gate", "--checkpoint", str(ckpt), "--set", str(path), "--out", str(out),
                 "--steps", "5", "--hidden", "0", "--no-tune"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no training clip of gate class(es) [1]" in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(("value", "expected"), [
    ("inf", sys.maxsize), ("1e300", sys.maxsize), ("nan", 4_000_000_000), ("junk", 4_000_000_000),
    ("-3", 0), ("0.5", 500_000_000)])
def test_the_cache_cap_takes_any_number_in_its_variable(
        monkeypatch: pytest.MonkeyPatch, value: str, expected: int) -> None:
    """`inf` (no cap) was an OverflowError traceback in training and in `cache --prune`."""
    monkeypatch.setenv("MTL_BAG_CACHE_MAX_GB", value)
    assert bag_cache.max_cache_bytes() == expected
