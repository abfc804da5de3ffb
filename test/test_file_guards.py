"""Every reader refuses what is not a regular file, and the bag cache is verified
(issue 29, classes 1, 2 and 7): one line naming the file, never a hang.

The FIFO cases run in a child process with a timeout: before the guard, opening a
FIFO with no writer blocked forever.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_bag import tiny_checkpoint, write_image_bag

from mtl_perception.bag.reader import Bag, BagError
from training.datasets import bag_cache
from training.datasets.bag_cache import CacheError
from training.datasets.clip_dataset import ClipDataset
from training.datasets.sets import build_task_split, load_set

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(args: list[str], cwd: Path, module: str = "training") -> subprocess.CompletedProcess:
    """A command in a child with a timeout: a hang fails the test instead of blocking it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


@pytest.fixture
def fifo_bag(tmp_path: Path) -> Path:
    path = tmp_path / "x.mcap"
    os.mkfifo(path)
    return path


def test_a_fifo_bag_is_refused_by_every_command_without_hanging(
        fifo_bag: Path, tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "model.safetensors")
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,task,label\n")
    runs = {
        "label-bag": _run(["label-bag", "--bag", str(fifo_bag), "--out",
                           str(tmp_path / "t.csv")], tmp_path),
        "evaluate_bag": _run(["--bag", str(fifo_bag), "--checkpoint", str(checkpoint),
                              "--labels", str(labels), "--out", str(tmp_path / "ev")],
                             tmp_path, "mtl_perception.bag.evaluate"),
    }
    for name, done in runs.items():
        assert done.returncode == 2, (name, done.stderr)
        assert f"bag {fifo_bag} is a FIFO, not a regular file" in done.stderr, (name, done.stderr)
        assert "Traceback" not in done.stderr, name


def test_a_fifo_inside_a_bag_folder_and_its_metadata_are_refused(tmp_path: Path) -> None:
    bag = write_image_bag(tmp_path / "bag", count=4)
    storage = next(bag.glob("*.mcap"))
    storage.unlink()
    os.mkfifo(storage)
    with pytest.raises(BagError, match=f"bag file {storage} is a FIFO, not a regular file"):
        Bag(bag)
    storage.unlink()
    write_image_bag(tmp_path / "other", count=4)
    (tmp_path / "other" / "metadata.yaml").unlink()
    os.mkfifo(tmp_path / "other" / "metadata.yaml")
    with pytest.raises(BagError, match="metadata.yaml is a FIFO"):
        Bag(tmp_path / "other")


def test_fifo_label_file_onnx_and_checkpoint_are_one_line(tmp_path: Path) -> None:
    from mtl_perception.bag.labels import LabelsError, read_labels
    from mtl_perception.checkpoint import CheckpointError, read_checkpoint_info
    from mtl_perception.deploy.onnx_file import read_onnx_model

    for name in ("labels.csv", "model.onnx", "model.safetensors"):
        os.mkfifo(tmp_path / name)
    with pytest.raises(LabelsError, match="labels file .*labels.csv is a FIFO"):
        read_labels(tmp_path / "labels.csv", (("a",), ("b",)))
    with pytest.raises(CheckpointError, match="model file .*model.onnx is a FIFO"):
        read_onnx_model(tmp_path / "model.onnx")
    with pytest.raises(CheckpointError, match="checkpoint .*model.safetensors is a FIFO"):
        read_checkpoint_info(tmp_path / "model.safetensors")


# -- the bag cache -------------------------------------------------------------------------


def _cached(tmp_path: Path) -> tuple[Path, Path]:
    """A bag source's set and its built cache folder."""
    from mtl_perception.preprocess import PreprocessConfig

    bag = write_image_bag(tmp_path / "bag", count=20, fps=10.0)
    (tmp_path / "labels.csv").write_text("start,end,task,label\n0,1.9,gesture,wave\n")
    set_yaml = tmp_path / "set.yaml"
    set_yaml.write_text(json.dumps({"class_merge": "none", "tasks": {"gesture": [
        {"format": "bag", "bag": str(bag), "labels": "labels.csv",
         "cache": str(tmp_path / "cache"), "target_fps": 5.0}]}}))
    pre = PreprocessConfig(clip_length=4, resize=(20, 28), crop=(16, 16))
    split = build_task_split(load_set(set_yaml), "gesture", "train")
    ClipDataset.from_splits([split], "centre", pre)[0]
    folder, = (tmp_path / "cache").iterdir()
    return set_yaml, folder


def _reopen(set_yaml: Path) -> None:
    from mtl_perception.preprocess import PreprocessConfig

    bag_cache.read_cached.cache_clear()
    bag_cache._changed_file.cache_clear()  # a new process: the digests are checked again
    split = build_task_split(load_set(set_yaml), "gesture", "train")
    ClipDataset.from_splits([split], "centre", PreprocessConfig(
        clip_length=4, resize=(20, 28), crop=(16, 16)))[0]


def test_a_truncated_side_file_and_a_zeroed_block_are_refused_naming_the_file(
        tmp_path: Path) -> None:
    set_yaml, folder = _cached(tmp_path)
    index = json.loads((folder / "index.json").read_text())
    assert sorted(index["files"]) == ["frames.f32", "segments.npy", "stamps.npy"]
    _reopen(set_yaml)  # intact: reused
    stamps = folder / "stamps.npy"
    good = stamps.read_bytes()
    stamps.write_bytes(good[:-8])  # truncated: numpy would fail mid-training
    with pytest.raises(CacheError, match=r"stamps.npy is \d+ bytes, not \d+ \(damaged\); "
                                         "delete the folder"):
        _reopen(set_yaml)
    stamps.write_bytes(good)
    frames = folder / "frames.f32"
    data = bytearray(frames.read_bytes())
    data[4096:8192] = bytes(4096)  # a zeroed 4 kB block: same size
    frames.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="frames.f32 does not hold what was written"):
        _reopen(set_yaml)
    nan = np.full(len(data) // 4, np.nan, np.float32).tobytes()
    frames.write_bytes(nan)  # all NaN, same size: not blamed on the learning rate
    with pytest.raises(CacheError, match="frames.f32 does not hold what was written"):
        _reopen(set_yaml)


def test_a_fifo_in_the_cache_is_refused_without_hanging(tmp_path: Path) -> None:
    set_yaml, folder = _cached(tmp_path)
    (folder / "segments.npy").unlink()
    os.mkfifo(folder / "segments.npy")
    with pytest.raises(CacheError, match="segments.npy is a FIFO, not a regular file"):
        _reopen(set_yaml)


# -- I/O errors fail, truncation warns ------------------------------------------------------


def test_an_io_error_midway_through_a_bag_is_exit_2_and_truncation_stays_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    from rosbags.highlevel import AnyReader

    from mtl_perception.bag.evaluate import main

    bag = write_image_bag(tmp_path / "bag", count=30, fps=10.0)
    checkpoint = tiny_checkpoint(tmp_path / "model.safetensors")
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,task,label\n0,2.9,action,walk\n")
    real = AnyReader.messages

    def failing(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        for n, item in enumerate(real(self, *args, **kwargs)):
            if n == 10:
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(next(bag.glob("*.mcap"))))
            yield item

    monkeypatch.setattr(AnyReader, "messages", failing)
    args = ["--bag", str(bag), "--checkpoint", str(checkpoint), "--labels", str(labels),
            "--no-progress", "--set", "target_fps=10", "inference_stride=2"]
    assert main([*args, "--out", str(tmp_path / "eio")]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "input/output error" in errors[0] and str(bag) in errors[0]
    assert not (tmp_path / "eio").exists()
    monkeypatch.setattr(AnyReader, "messages", real)
    cut = tmp_path / "cut"
    write_image_bag(cut, count=30, fps=10.0)
    storage = next(cut.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size * 2 // 3])
    caplog.clear()
    assert main([*args[:1], str(cut), *args[2:], "--out", str(tmp_path / "cut_out")]) == 0
    assert any("truncated or corrupt" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")


def test_a_fifo_named_like_a_video_in_a_class_folder_is_a_sample_reported_as_such(
        tmp_path: Path) -> None:
    from training.datasets.folders import FoldersSource, read_split
    from training.datasets.missing import wrong_kind

    (tmp_path / "walk").mkdir()
    os.mkfifo(tmp_path / "walk" / "f.avi")
    split = read_split(FoldersSource(root=tmp_path), "train")
    assert [s.path.name for s in split.samples] == ["f.avi"]  # not skipped silently
    assert wrong_kind(split.samples[0]) == "a FIFO, not a video file"


def test_dataset_to_bag_warns_when_a_video_decodes_fewer_frames_than_its_header_claims(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from helpers_bag import frames

    from training.datasets.video import VideoReader, write_video
    from training.tools.to_bag import main

    root = tmp_path / "videos"
    root.mkdir()
    video = root / "a.avi"
    write_video(video, frames(60, 1, size=(48, 64)), fps=10.0)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])  # the header says 60
    with VideoReader(video) as reader:
        assert reader.num_frames == 60
    (root / "val_list.txt").write_text("a.avi 0\n")
    (root / "classes.txt").write_text("walk\n")
    assert main(["--format", "mmaction", "--source", f"root={root}",
                 "class_names=classes.txt", "--out", str(tmp_path / "bag")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("header claims 60 frames but" in w and str(video) in w for w in warnings), warnings
