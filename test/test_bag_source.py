"""Bags as a training source: the streaming core's clips, the frame cache, label checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_bag import START_NS, TOPIC, frames, write_image_bag
from torch import nn

from mtl_perception.bag.types import IMAGE
from mtl_perception.bag.writer import BagWriter, image_message
from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream import StreamConfig, StreamPipeline
from training.datasets import bag_cache
from training.datasets.bag_cache import CacheError
from training.datasets.bag_source import unlabelled_intervals
from training.datasets.clip_dataset import ClipDataset, ClipSamplingConfig
from training.datasets.listfile import DatasetError
from training.datasets.sets import build_task_split, load_set

PRE = PreprocessConfig(clip_length=4, resize=(20, 28), crop=(16, 16))


def gap_bag(path: Path) -> Path:
    """20 images at 10 fps, a 2 s gap (the stream resets its buffer), 20 more."""
    with BagWriter(path, "mcap") as writer:
        for i, frame in enumerate(frames(40, seed=3)):
            stamp = START_NS + i * 100_000_000 + (2_000_000_000 if i >= 20 else 0)
            writer.write(TOPIC, IMAGE, stamp, image_message(frame, stamp, "cam"))
    return path


def write_set(folder: Path, bag: Path, labels: str, **source: object) -> Path:
    (folder / "labels.csv").write_text(labels)
    entry = {"format": "bag", "bag": str(bag), "labels": "labels.csv",
             "cache": str(folder / "cache"), "target_fps": 5.0, **source}
    path = folder / "set.yaml"
    path.write_text(json.dumps({"class_merge": "none", "tasks": {"gesture": [entry]}}))
    return path


class Recorder(nn.Module):
    """A stand-in model that keeps every clip the pipeline scores."""

    def __init__(self) -> None:
        super().__init__()
        self.clips: list[torch.Tensor] = []

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        self.clips += list(clips.clone())
        return [torch.zeros(len(clips), 2)]


def stream_clips(bag: Path) -> list[torch.Tensor]:
    from mtl_perception.bag.reader import Bag

    recorder = Recorder()
    info = CheckpointInfo(ModelConfig(method="hps", width=4, task_names=("gesture",),
                                      num_classes=(2,)), (("a", "b"),), PRE)
    pipeline = StreamPipeline(recorder, info, StreamConfig(target_fps=5.0, inference_stride=1),
                              realtime=False)
    with Bag(bag) as reader:
        for _, msg in reader.images():
            pipeline.push(TOPIC, msg)
    pipeline.flush()
    return recorder.clips


def test_bag_clips_are_the_streaming_cores_bit_for_bit(tmp_path: Path) -> None:
    bag = gap_bag(tmp_path / "bag")
    set_yaml = write_set(tmp_path, bag, "start,end,task,label\n0,6,gesture,wave\n")
    split = build_task_split(load_set(set_yaml), "gesture", "train")
    assert split.class_names == ["wave"] and len(split.samples) == 1
    # every clip position of the interval: its two buffer segments are two samples
    dataset = ClipDataset.from_splits([split], "all", PRE,
                                      ClipSamplingConfig(num_eval_clips=64))
    assert len(dataset) == 2 and all(s.cached for s in dataset.samples)
    ours: list[torch.Tensor] = []
    for n in range(len(dataset)):
        for clip in dataset[n][0]:
            if not ours or not torch.equal(ours[-1], clip):
                ours.append(clip)
    theirs = stream_clips(bag)
    # 10 fps sampled at 5 fps: 10 frames per segment, 7 clips of 4 in each
    assert len(theirs) == len(ours) == 14
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_uniform_clips_of_an_interval_and_their_span(tmp_path: Path) -> None:
    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0)
    set_yaml = write_set(tmp_path, bag, "start,end,task,label\n1.0,3.0,gesture,wave\n")
    split = build_task_split(load_set(set_yaml), "gesture", "train")
    dataset = ClipDataset.from_splits([split], "centre", PRE,
                                      ClipSamplingConfig(temporal="uniform"))
    sample = dataset.samples[0]
    assert (sample.start, sample.end) == (5, 15)  # frames at 1.0, 1.2, ..., 2.8 s
    dataset[0]
    # 10 frames in 4 bins: centres floor((2k+1)*10/8) = 1, 3, 6, 8 -> 1.2 s to 2.6 s
    assert dataset.median_clip_span() == pytest.approx(1.4)


def test_cache_is_reused_and_refused_when_stale_or_damaged(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    bag = write_image_bag(tmp_path / "bag", count=20, fps=10.0)
    set_yaml = write_set(tmp_path, bag, "start,end,task,label\n0,1.9,gesture,wave\n")
    split = build_task_split(load_set(set_yaml), "gesture", "train")
    first = ClipDataset.from_splits([split], "centre", PRE)[0][0]
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("bag-")

    def no_build(*args: object) -> None:
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(bag_cache, "_build", no_build)
    bag_cache.read_cached.cache_clear()
    assert torch.equal(ClipDataset.from_splits([split], "centre", PRE)[0][0], first)
    # other preprocessing: another key, another folder (built, so not here)
    with pytest.raises(AssertionError, match="reused"):
        ClipDataset.from_splits([split], "centre", PreprocessConfig(
            clip_length=4, resize=(20, 28), crop=(12, 12)))
    index = folders[0] / "index.json"
    doc = json.loads(index.read_text())
    doc["key"]["bag_sha256"] = "0" * 64  # a folder left from another recording
    index.write_text(json.dumps(doc))
    with pytest.raises(CacheError, match=r"is stale: its bag_sha256 differs.*delete the folder"):
        ClipDataset.from_splits([split], "centre", PRE)
    doc["key"]["bag_sha256"] = bag_cache.bag_checksum(bag)
    index.write_text(json.dumps(doc))
    frames_file = folders[0] / "frames.f32"
    frames_file.write_bytes(frames_file.read_bytes()[:100])
    with pytest.raises(CacheError, match="damaged"):
        ClipDataset.from_splits([split], "centre", PRE)


@pytest.mark.parametrize(("labels", "source", "message"), [
    ("start,end,task,label\n0,1,gesture,wave\n", {"image_topic": "/other"},
     r"has no topic /other; its image topics: \['/camera/image_raw'\]"),
    ("start,end,task,label\n0,1,gesture,wave\n1.5,9,gesture,stop\n", {},
     r"labels.csv:3: interval \[1.5, 9.0\] s lies outside the bag"),
    ("start,end,task,label\n0,1,gesture,wave\n0.5,1.5,gesture,stop\n", {},
     r"labels.csv:3: gesture interval \[0.5, 1.5\] overlaps line 2"),
    ("start,end,task,label,split\n0,1,gesture,wave,val\n", {"split": "column"},
     r"labels.csv:2: split 'val' is not train or test"),
])
def test_labels_that_do_not_match_the_bag_are_refused_in_one_line(
        tmp_path: Path, labels: str, source: dict[str, object], message: str) -> None:
    bag = write_image_bag(tmp_path / "bag", count=20, fps=10.0)
    set_yaml = write_set(tmp_path, bag, labels, **source)
    with pytest.raises(DatasetError, match=message) as caught:
        build_task_split(load_set(set_yaml), "gesture", "train")
    assert "\n" not in str(caught.value)


def test_split_column_unlabelled_time_and_none_class(tmp_path: Path) -> None:
    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0)  # 3.9 s of images
    labels = ("start,end,task,label,split\n0.5,1.0,gesture,wave,train\n"
              "1.5,2.0,gesture,stop,test\n2.2,2.6,gesture,wave,test\n3.0,3.5,action,sit,train\n")
    set_config = load_set(write_set(tmp_path, bag, labels, split="column"))
    train = build_task_split(set_config, "gesture", "train")
    test = build_task_split(set_config, "gesture", "test")
    assert train.class_names == test.class_names == ["stop", "wave"]
    assert [(s.label, s.start, s.end) for s in train.samples] == [(1, 500_000_000, 10**9)]
    assert [s.label for s in test.samples] == [0, 1]
    from training.datasets.bag_source import BagSource, read_bag_labels

    source = set_config.tasks["gesture"][0].settings
    assert isinstance(source, BagSource)
    intervals = read_bag_labels(source).intervals
    assert unlabelled_intervals(intervals, "gesture", 4.0) == [
        (0.0, 0.5), (1.0, 1.5), (2.0, 2.2), (2.6, 4.0)]
    assert unlabelled_intervals(intervals, "gesture", 4.0, min_s=0.5) == [
        (0.0, 0.5), (1.0, 1.5), (2.6, 4.0)]
    plain = load_set(write_set(tmp_path, bag, labels.replace(",split", "").replace(
        ",train", "").replace(",test", ""), none_class=True, min_none_s=0.5))
    split = build_task_split(plain, "gesture", "train")
    assert split.class_names == ["stop", "wave", "none"]
    assert np.bincount([s.label for s in split.samples]).tolist() == [1, 2, 3]


def test_a_ros1_bag_is_a_source_too(tmp_path: Path) -> None:
    from helpers_bag import write_ros1_bag

    bag = write_ros1_bag(tmp_path / "take.bag", count=24, fps=10.0)
    set_yaml = write_set(tmp_path, bag, "start,end,task,label\n0.5,2.0,gesture,wave\n")
    split = build_task_split(load_set(set_yaml), "gesture", "train")
    dataset = ClipDataset.from_splits([split], "centre", PRE)
    clip, label, task = dataset[0]
    # 10 fps sampled at 5: frames at 0.6, 0.8, ..., 1.8 s -> 7 frames, the centre 4
    assert (dataset.samples[0].start, dataset.samples[0].end) == (3, 10)
    assert clip.shape == (3, 4, 16, 16) and (label, task) == (0, 0)
