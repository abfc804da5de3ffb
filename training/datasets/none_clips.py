"""The `none` samples of a set: what the task gate learns "nothing listed" from.

Three places (`untrimmed.py` has the readers):
- the set's `untrimmed:` folders: every stretch of a session outside its labelled intervals;
- the set's `background:` folders: whole videos;
- optionally the frames around each trimmed sample's segment (NVGesture's idle
  frames before and after the gesture).
A stretch shorter than `min_frames` (default: one clip's span, so no `none`
clip is loop-padded) is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from training.datasets.sample import LabelledSplit, VideoSample
from training.datasets.sets import SetConfig
from training.datasets.untrimmed import (
    check_classes,
    none_around_segments,
    none_from_untrimmed,
    read_untrimmed,
)


def none_samples(set_config: SetConfig, split: str, task_splits: Iterable[LabelledSplit],
                 margin_s: float, min_frames: int, around_segments: bool = True,
                 lead_overlap: float = 0.0, piece_frames: int = 0,
                 classes: tuple[Mapping[str, Sequence[str]], str] | None = None
                 ) -> list[VideoSample]:
    """Every `none` segment of `split` (`train` or `test`), in a fixed order. `classes`:
    (task -> class names, whose they are) to check the sessions' labels against."""
    samples: list[VideoSample] = []
    for source in set_config.untrimmed:
        sessions = read_untrimmed(source, split, background=False)
        if classes is not None:
            check_classes(sessions, *classes)
        samples += none_from_untrimmed(sessions, margin_s, min_frames, piece_frames)
    for source in set_config.background:
        samples += none_from_untrimmed(read_untrimmed(source, split, background=True),
                                       margin_s, min_frames, piece_frames)
    if around_segments:
        for task_split in task_splits:
            samples += none_around_segments(task_split.samples, margin_s, min_frames,
                                            lead_overlap)
    return samples
