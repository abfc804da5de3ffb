"""What a checkpoint records about its training beyond the config: clip sampling, origin.

`clip_provenance`: the temporal sampling and the median time span of the
training clips (`clip_span_s`, seconds from a clip's first to its last frame,
over the clips loaded so far). The runtime (`mtl_perception.stream.rate`)
reads these two keys to choose the `target_fps` of a uniform-sampled model:
a model trained on whole 3 s gestures must see 3 s windows on the robot.

`sampling_record` (provenance key `stream`): for a set of bag sources, one
sampling rate from recording to robot. The bag sources sample their topic at
`source_fps`; consecutive clips take every `frame_step`-th of those frames,
so a clip spans `(clip_length - 1) * frame_step / source_fps` seconds and the
node, whose clips are consecutive sampled frames, must sample at
`source_fps / frame_step` (`target_fps`) to see the same motion. The node
and evaluate_bag take that `target_fps` as their default and warn once when
told another (`mtl_perception.stream.rate`).
"""

from __future__ import annotations

import logging
from typing import Any

from training.datasets.bag_source import BagSource, read_bag_labels
from training.datasets.clip_dataset import ClipDataset
from training.datasets.sets import SetConfig
from training.train.config import ClipSettings, TrainConfig

LOG = logging.getLogger(__name__)


def clip_provenance(config: TrainConfig, train: ClipDataset,
                    sampling: dict[str, Any] | None = None) -> dict[str, Any]:
    span = train.median_clip_span()
    record: dict[str, Any] = {
        "temporal_sampling": config.clip.temporal_sampling,
        "clip_span_s": None if span is None else round(float(span), 6),
    }
    if sampling:
        record["stream"] = sampling
    return record


def _bag_sources(set_config: SetConfig, tasks: tuple[str, ...] | list[str]) -> list[BagSource]:
    return [s.settings for t in tasks if t in set_config.tasks for s in set_config.tasks[t]
            if s.format == "bag"]


def sampling_record(set_config: SetConfig, tasks: tuple[str, ...] | list[str],
                    clip: ClipSettings) -> dict[str, Any]:
    """The stream rate of a bag-source set (empty without bag sources or with uniform clips)."""
    sources = _bag_sources(set_config, tasks)
    if not sources or clip.temporal_sampling != "consecutive":
        return {}
    rates = sorted({float(s.target_fps) for s in sources})
    if len(rates) > 1:
        LOG.warning("bag sources sample at %s fps: one rate for all is what the node can "
                    "match; the checkpoint records none", ", ".join(f"{r:g}" for r in rates))
        return {}
    fps = rates[0]
    return {"source_fps": fps, "frame_step": clip.frame_step,
            "clip_span_s": round((clip.clip_length - 1) * clip.frame_step / fps, 6),
            "target_fps": round(fps / clip.frame_step, 6)}


def warn_short_intervals(set_config: SetConfig, tasks: tuple[str, ...] | list[str],
                         clip: ClipSettings) -> int:
    """One warning per labelled interval shorter than a clip (its clips repeat frames)."""
    if clip.temporal_sampling != "consecutive":
        return 0
    count = 0
    for source in _bag_sources(set_config, tasks):
        span = (clip.clip_length - 1) * clip.frame_step / source.target_fps
        for interval in read_bag_labels(source).intervals:
            length = interval.end - interval.start
            if interval.task == source.task and length < span:
                count += 1
                LOG.warning("%s:%d: %s %r lasts %.2f s, shorter than one clip (%.2f s: %d "
                            "frames %d apart at %g fps); its clips repeat frames (loop-padded): "
                            "lower frame_step or raise the source's target_fps",
                            source.labels, interval.line, interval.task, interval.label, length,
                            span, clip.clip_length, clip.frame_step, source.target_fps)
    return count


def warn_shared_recordings(set_config: SetConfig, tasks: tuple[str, ...] | list[str]) -> int:
    """One warning per recording that both a `split: train` and a `split: test` source read."""
    splits: dict[str, set[str]] = {}
    for source in _bag_sources(set_config, tasks):
        splits.setdefault(str(source.bag), set()).add(source.split)
    shared = [bag for bag, used in splits.items() if {"train", "test"} <= used]
    for bag in shared:
        LOG.warning("recording %s is both a training and a test source: its held-out accuracy "
                    "flatters the model (same person, room, light); test on another recording",
                    bag)
    return len(shared)
