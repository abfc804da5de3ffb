"""The record every dataset reader produces, whatever the on-disk format."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

UNLABELLED = -1  # a list without real labels (e.g. IsoGD's released test list)


@dataclass(frozen=True)
class BagRef:
    """Where a bag sample's frames come from: the bag, its image topic, the stream's sampling.

    The frames are the streaming core's: sampled by header stamp at `target_fps`,
    preprocessed, cached under `cache` (training/datasets/bag_cache.py).
    """

    bag: Path
    topic: str
    target_fps: float
    max_gap_s: float
    cache: Path


@dataclass(frozen=True)
class VideoSample:
    """One labelled video, or a labelled segment of one.

    `label` is 0-based within its split's `class_names`; `UNLABELLED` when the
    list carries no real label (readable for inference, not scorable).
    `start`/`end` bound the labelled frames, end exclusive (NVGesture's
    `color:` segment); `end=None` means to the end of the video. A sample whose
    `path` is a folder of extracted frames has `frames_dir=True` and its frames
    are `img_{start+1:05d}.jpg`... (mmaction2 convention, 1-based file names).
    """

    path: Path
    label: int
    start: int = 0
    end: int | None = None
    frames_dir: bool = False
    # Bag sources: before `resolve_bag_items`, `path` is the bag and start/end are
    # nanoseconds from its first image's stamp; after it, `cached` is True, `path` is
    # the bag's frame cache and start/end index its sampled frames.
    bag: BagRef | None = None
    cached: bool = False


@dataclass
class LabelledSplit:
    """The samples of one split of one task, with the task's class names."""

    samples: list[VideoSample]
    class_names: list[str]
    source: str = ""  # where it came from, for messages: "ucf101 trainlist01.txt"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return any(s.label != UNLABELLED for s in self.samples)


def shared_samples(first: LabelledSplit, second: LabelledSplit) -> list[VideoSample]:
    """The samples of `first` that `second` lists too (the same file and segment): a
    video in both a train and a test list scores what the model was trained on. Segments
    of one recording on either side (a bag's `split` column) are not shared."""
    def key(sample: VideoSample) -> tuple[str, int, int | None]:
        return (os.path.normpath(os.path.abspath(sample.path)), sample.start, sample.end)

    theirs = {key(s) for s in second.samples}
    return [s for s in first.samples if key(s) in theirs]
