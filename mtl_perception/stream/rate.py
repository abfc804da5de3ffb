"""The default `target_fps` for a model whose training clips spread over whole gestures.

A model trained with `clip.temporal_sampling: uniform` saw each gesture's
frames spread evenly over the whole labelled video or interval: 32 frames
over ~3 s is ~10 fps, not the camera's 30. Its checkpoint records the
median time span of its training clips (`provenance.clip_span_s`, seconds
from a clip's first to its last frame); sampling the stream at
`(clip_length - 1) / clip_span_s` gives the robot windows of that span. A
`target_fps` the user sets is always kept.

A model trained on bag sources (consecutive clips) records one sampling
rate from recording to robot (`provenance.stream`, training/train/provenance.py):
its clips took every `frame_step`-th frame of the topic sampled at
`source_fps`, so the stream samples at `stream.target_fps` = source_fps /
frame_step by default, and `rate_warning` says so once when another rate is
set. A consecutive-sampled model with neither, whose gesture events' settings
`fit-gate` chose and stored, samples at the rate they were chosen at
(`stream_defaults.chosen_on.stream.target_fps`: its sessions' fps / the
trained frame step, which is the training rate when the set's videos share
the sessions' rate, as a synthetic set's do). Other models keep the setting.
"""

from __future__ import annotations

import math
from dataclasses import replace

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.stream.config import StreamConfig, StreamConfigError
from mtl_perception.stream.decisions import chosen_on_stream

# The node's target_fps parameter range: a rate outside it is clamped to it.
MIN_FPS, MAX_FPS = 0.5, 240.0


def trained_target_fps(info: CheckpointInfo, clip_length: int) -> float | None:
    """The rate that makes `clip_length` frames span the training clips' median; None if
    the model was not trained with uniform sampling or the checkpoint has no span."""
    provenance = info.provenance
    recorded = recorded_stream_fps(info)
    if provenance.get("temporal_sampling", "consecutive") == "consecutive":
        if recorded is not None:
            return recorded
        return tuned_stream_fps(info)
    span = provenance.get("clip_span_s")
    if provenance.get("temporal_sampling") != "uniform" or isinstance(span, bool):
        return None
    if not isinstance(span, (int, float)) or not math.isfinite(span) or span <= 0:
        return None
    fps = (clip_length - 1) / float(span) if clip_length > 1 else 1.0 / float(span)
    return min(max(fps, MIN_FPS), MAX_FPS)


def recorded_stream_fps(info: CheckpointInfo) -> float | None:
    """`provenance.stream.target_fps` (bag-source training), if a usable number."""
    stream = info.provenance.get("stream")
    return _usable_fps(stream.get("target_fps") if isinstance(stream, dict) else None)


def tuned_stream_fps(info: CheckpointInfo) -> float | None:
    """The rate the stored event settings were chosen at (`chosen_on.stream.target_fps`),
    if a usable number."""
    return _usable_fps(chosen_on_stream(info).get("target_fps"))


def _usable_fps(fps: object) -> float | None:
    """A rate read from a checkpoint's JSON, clamped to the node's range; None unless a
    finite positive number."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps):
        return None
    return min(max(float(fps), MIN_FPS), MAX_FPS) if fps > 0 else None


def rate_warning(config: StreamConfig, info: CheckpointInfo) -> str | None:
    """One line when the stream samples at another rate than the recorded training rate
    (or, for a consecutive-sampled model without one, than the rate its stored event
    settings were chosen at)."""
    fps = recorded_stream_fps(info)
    if fps is None:
        return _tuned_rate_warning(config, info)
    if abs(config.target_fps - fps) <= 0.01 * fps:
        return None
    stream = info.provenance["stream"]
    frames = config.resolved_clip_length(info.preprocess.clip_length)
    return (f"target_fps {config.target_fps:g}: the model was trained on clips of "
            f"{stream.get('source_fps')} fps recordings, every {stream.get('frame_step')}th "
            f"frame ({stream.get('clip_span_s')} s per clip), so {fps:g} fps shows it the motion "
            f"it learned; at {config.target_fps:g} its clips span "
            f"{(frames - 1) / config.target_fps:.2f} s")


def _tuned_rate_warning(config: StreamConfig, info: CheckpointInfo) -> str | None:
    if info.provenance.get("temporal_sampling", "consecutive") != "consecutive":
        return None
    fps = tuned_stream_fps(info)
    if fps is None or abs(config.target_fps - fps) <= 0.01 * fps:
        return None
    return (f"target_fps {config.target_fps:g}: the checkpoint's gesture event settings were "
            f"chosen (fit-gate) on a stream at {fps:g} fps, the rate the model was trained at; "
            "at another rate its clips span another time and the settings' timing changes")


def choose_target_fps(config: StreamConfig, info: CheckpointInfo, explicit: bool
                      ) -> tuple[StreamConfig, str | None]:
    """`config` with the model's trained rate (`trained_target_fps`) unless the user set
    one (`explicit`);
    the one log line saying what was chosen and why, or None when nothing changed."""
    clip_length = config.resolved_clip_length(info.preprocess.clip_length)
    fps = trained_target_fps(info, clip_length)
    if fps is None or explicit:
        return config, None
    recorded = recorded_stream_fps(info)
    uniform = info.provenance.get("temporal_sampling") == "uniform"
    span = (float(info.provenance["clip_span_s"]) if uniform
            else (clip_length - 1) / (recorded if recorded is not None else fps))
    try:
        chosen = replace(config, target_fps=round(fps, 3))
    except StreamConfigError as exc:  # e.g. max_gap_s shorter than the new period
        raise StreamConfigError(
            f"the checkpoint's clips span {span:.2f} s, so target_fps would be "
            f"{fps:.3f}, but {exc}; set target_fps (or max_gap_s) explicitly"
        ) from exc
    how = (f"clips spread uniformly over {span:.2f} s (median)" if uniform
           else f"clips of consecutive sampled frames over {span:.2f} s" if recorded is not None
           else f"clips of consecutive frames over {span:.2f} s (the rate its stored event "
                "settings were chosen at)")
    line = (f"target_fps {chosen.target_fps:g} (not {config.target_fps:g}): the model was trained "
            f"on {how}, so {clip_length} frames "
            f"cover the same span here; set target_fps to override")
    return chosen, line
