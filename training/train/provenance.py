"""What a checkpoint records about its training beyond the config: clip sampling, origin.

`clip_provenance`: the temporal sampling and the median time span of the
training clips (`clip_span_s`, seconds from a clip's first to its last frame,
over the clips loaded so far). The runtime (`mtl_perception.stream.rate`)
reads these two keys to choose the `target_fps` of a uniform-sampled model:
a model trained on whole 3 s gestures must see 3 s windows on the robot.
"""

from __future__ import annotations

from typing import Any

from training.datasets.clip_dataset import ClipDataset
from training.train.config import TrainConfig


def clip_provenance(config: TrainConfig, train: ClipDataset) -> dict[str, Any]:
    span = train.median_clip_span()
    return {
        "temporal_sampling": config.clip.temporal_sampling,
        "clip_span_s": None if span is None else round(float(span), 6),
    }
