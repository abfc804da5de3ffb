"""The default `target_fps` for a model whose training clips spread over whole gestures.

A model trained with `clip.temporal_sampling: uniform` saw each gesture's
frames spread evenly over the whole labelled video or interval: 32 frames
over ~3 s is ~10 fps, not the camera's 30. Its checkpoint records the
median time span of its training clips (`provenance.clip_span_s`, seconds
from a clip's first to its last frame); sampling the stream at
`(clip_length - 1) / clip_span_s` gives the robot windows of that span. A
`target_fps` the user sets is always kept; consecutive-sampled models keep
the setting as it is.
"""

from __future__ import annotations

import math
from dataclasses import replace

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.stream.config import StreamConfig, StreamConfigError

# The node's target_fps parameter range: a rate outside it is clamped to it.
MIN_FPS, MAX_FPS = 0.5, 240.0


def trained_target_fps(info: CheckpointInfo, clip_length: int) -> float | None:
    """The rate that makes `clip_length` frames span the training clips' median; None if
    the model was not trained with uniform sampling or the checkpoint has no span."""
    provenance = info.provenance
    span = provenance.get("clip_span_s")
    if provenance.get("temporal_sampling") != "uniform" or isinstance(span, bool):
        return None
    if not isinstance(span, (int, float)) or not math.isfinite(span) or span <= 0:
        return None
    fps = (clip_length - 1) / float(span) if clip_length > 1 else 1.0 / float(span)
    return min(max(fps, MIN_FPS), MAX_FPS)


def choose_target_fps(config: StreamConfig, info: CheckpointInfo, explicit: bool
                      ) -> tuple[StreamConfig, str | None]:
    """`config` with the uniform-sampled model's rate unless the user set one (`explicit`);
    the one log line saying what was chosen and why, or None when nothing changed."""
    clip_length = config.resolved_clip_length(info.preprocess.clip_length)
    fps = trained_target_fps(info, clip_length)
    if fps is None or explicit:
        return config, None
    span = float(info.provenance["clip_span_s"])
    try:
        chosen = replace(config, target_fps=round(fps, 3))
    except StreamConfigError as exc:  # e.g. max_gap_s shorter than the new period
        raise StreamConfigError(
            f"the checkpoint's uniform-sampled clips span {span:.2f} s, so target_fps would be "
            f"{fps:.3f}, but {exc}; set target_fps (or max_gap_s) explicitly"
        ) from exc
    line = (f"target_fps {chosen.target_fps:g} (not {config.target_fps:g}): the model was trained "
            f"on clips spread uniformly over {span:.2f} s (median), so {clip_length} frames "
            f"cover the same span here; set target_fps to override")
    return chosen, line
