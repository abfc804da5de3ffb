"""StreamConfig: the streaming core's settings, one typed dataclass.

Built from YAML / ROS parameters with `mtl_perception.settings.from_dict`
(the node maps its parameters 1:1 onto these field names). Validation lives
in `__post_init__` so every way of building one (YAML, parameters,
`dataclasses.replace` in `update_settings`) refuses the same bad values with
the same one-line message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Smoothing = Literal["none", "ema", "mean"]
SMOOTHING_MODES: tuple[str, ...] = ("none", "ema", "mean")
GateMode = Literal["off", "publish", "filter"]
GATE_MODES: tuple[str, ...] = ("off", "publish", "filter")
EventSource = Literal["auto", "gate", "max_softmax"]
EVENT_SOURCES: tuple[str, ...] = ("auto", "gate", "max_softmax")
# Temporal decisions of gesture events (issue 24, h-gate; stream/events.py documents them)
EventSmoothing = Literal["none", "ema", "hmm"]
EVENT_SMOOTHINGS: tuple[str, ...] = ("none", "ema", "hmm")
EventClassWeights = Literal["linear", "activity"]
EVENT_CLASS_WEIGHTS: tuple[str, ...] = ("linear", "activity")
Backend = Literal["torch", "onnxruntime", "openvino", "tensorrt"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino", "tensorrt")

# Settings that may change while the pipeline runs (`StreamPipeline.update_settings`):
# they only touch post-processing, never a buffer or a clip already made.
LIVE_SETTINGS: tuple[str, ...] = (
    "score_threshold", "top_k", "smoothing", "smoothing_window",
    "gate", "gate_threshold", "event_source", "event_threshold", "event_hysteresis",
    "event_min_s", "event_max_s", "event_refractory_s",
    "event_smoothing", "event_ema_alpha", "event_switch_prob", "event_class_weights",
)

# Why each other setting cannot change live: the node repeats this to the user.
FIXED_REASONS: dict[str, str] = {
    "target_fps": "the per-camera buffers hold frames sampled at the old rate; restart the node",
    "inference_stride": "clip scheduling is fixed while running; restart the node",
    "max_gap_s": "buffer reset rule is fixed while running; restart the node",
    "clip_length": "the buffers are sized for the clip length; restart the node",
    "max_batch": "the inference worker is configured at start; restart the node",
    "offline_queue": "the offline queue is sized at start; restart the node",
    "backend": "the inference engine is built at start; restart the node",
    "engine_cache": "the inference engine is built at start; restart the node",
}


class StreamConfigError(ValueError):
    """A stream setting out of range, unknown, or not changeable while running."""


@dataclass(frozen=True)
class StreamConfig:
    """Settings of `StreamPipeline`.

    - `target_fps`: frames are sampled at this rate by header stamp (not by
      arrival order); match the frame rate the model was trained at.
    - `inference_stride`: a new clip every this many sampled frames.
    - `max_gap_s`: a stamp gap (forward, or backward beyond the duplicate
      rule) longer than this empties the camera's buffer and its smoothing
      state, so two scenes are never glued into one clip.
    - `smoothing`: "none", "ema" (alpha = 2 / (smoothing_window + 1)) or
      "mean" (mean of the last `smoothing_window` clips' probabilities).
    - `score_threshold`: a task whose best (smoothed) probability is below
      this gives an empty top-k list; classes below it are left out.
    - `top_k`: how many (class, score) pairs a result lists per task.
    - `clip_length`: frames per clip; 0 = the checkpoint's; may only narrow it.
    - `max_batch`: most clips per forward pass; 0 = automatic: on a GPU one
      clip per camera (realtime), on the CPU 1 (batching costs more per clip
      there), offline (`realtime=False`) 1.
    - `offline_queue`: offline mode only: clips waiting per camera before
      `push()` waits for the worker (back-pressure instead of dropping).

    Task gate (models whose `score_all` returns gate logits after the task
    logits; without a gate these change nothing):
    - `gate`: "off" (results as without a gate), "publish" (the node also
      publishes the gate's probabilities and gesture events), "filter"
      (publish, and a task whose gate probability is below `gate_threshold`
      gets an empty top-k list for that clip).
    - `gate_threshold`: the gate probability a task needs under "filter".

    Gesture events (`mtl_perception.stream.events`, the rule is documented
    there): `event_source` "gate" (the gate's gesture probability), or
    "max_softmax" (the gesture head's largest probability: the baseline for
    models without a gate), "auto" = gate when the model has one;
    `event_threshold` starts a gesture, it ends when the source falls below
    `event_threshold - event_hysteresis`; gestures shorter than `event_min_s`
    are dropped, longer ones are decided at `event_max_s`; no event within
    `event_refractory_s` of the previous one.

    Temporal decisions (issue 24; the defaults are the rule without them;
    a checkpoint whose `fit-gate` chose them on validation sessions stores
    its choice, used unless a setting is given, `stream/decisions.py`):
    - `event_smoothing`: the activity over time before the thresholds:
      "none", "ema" (causal exponential smoothing, weight `event_ema_alpha`
      on the newest clip) or "hmm" (a two-state forward filter that pays
      `event_switch_prob` per clip for switching between gesture and not).
    - `event_class_weights`: an event's class from its clips' gesture
      probabilities weighted "linear" (1, 2, ..., n) or by "activity" (each
      clip's own activity: clips on the gesture count, lead-in clips little).
    - `backend`: the engine of the forward pass: "torch" (PyTorch eager), or
      "onnxruntime", "openvino", "tensorrt" on an exported model (a checkpoint
      is exported in memory first); decoding, buffering, batching and
      smoothing are the same whichever runs (`mtl_perception.deploy`).
    - `engine_cache`: folder of built TensorRT engines; "" = ~/.cache/mtl_perception/tensorrt.
    """

    target_fps: float = 15.0
    inference_stride: int = 8
    max_gap_s: float = 0.5
    smoothing: Smoothing = "none"
    smoothing_window: int = 5
    score_threshold: float = 0.0
    top_k: int = 5
    clip_length: int = 0
    max_batch: int = 0
    offline_queue: int = 16
    gate: GateMode = "off"
    gate_threshold: float = 0.5
    event_source: EventSource = "auto"
    event_threshold: float = 0.5
    event_hysteresis: float = 0.1
    event_min_s: float = 0.3
    event_max_s: float = 6.0
    event_refractory_s: float = 1.0
    event_smoothing: EventSmoothing = "none"
    event_ema_alpha: float = 0.5
    event_switch_prob: float = 0.1
    event_class_weights: EventClassWeights = "linear"
    backend: Backend = "torch"
    engine_cache: str = ""

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> StreamConfigError:
            return StreamConfigError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        if not self.target_fps > 0 or self.target_fps > 1000:
            raise bad("target_fps", "in (0, 1000]")
        if self.inference_stride < 1:
            raise bad("inference_stride", ">= 1")
        if not self.max_gap_s > 0:
            raise bad("max_gap_s", "> 0")
        if self.max_gap_s * self.target_fps < 1:
            raise StreamConfigError(
                f"max_gap_s ({self.max_gap_s}) is shorter than one sampling period "
                f"(1 / target_fps = {1 / self.target_fps:.3f} s): every frame would reset"
            )
        if self.smoothing not in SMOOTHING_MODES:
            raise bad("smoothing", f"one of {list(SMOOTHING_MODES)}")
        if self.smoothing_window < 1:
            raise bad("smoothing_window", ">= 1")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise bad("score_threshold", "in [0, 1]")
        if self.top_k < 1:
            raise bad("top_k", ">= 1")
        if self.clip_length < 0:
            raise bad("clip_length", ">= 0 (0 = the checkpoint's)")
        if self.max_batch < 0:
            raise bad("max_batch", ">= 0 (0 = automatic)")
        if self.offline_queue < 1:
            raise bad("offline_queue", ">= 1")
        if self.gate not in GATE_MODES:
            raise bad("gate", f"one of {list(GATE_MODES)}")
        if self.event_source not in EVENT_SOURCES:
            raise bad("event_source", f"one of {list(EVENT_SOURCES)}")
        for name in ("gate_threshold", "event_threshold", "event_hysteresis"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "in [0, 1]")
        for name in ("event_min_s", "event_refractory_s"):
            if not 0.0 <= getattr(self, name) <= 3600.0:
                raise bad(name, "in [0, 3600] seconds")
        if not self.event_min_s <= self.event_max_s <= 3600.0:
            raise bad("event_max_s", f"in [event_min_s ({self.event_min_s}), 3600] seconds")
        self._check_event_decisions(bad)
        if self.backend not in BACKENDS:
            raise bad("backend", f"one of {list(BACKENDS)}")

    def _check_event_decisions(self, bad: Callable[[str, str], StreamConfigError]) -> None:
        if self.event_smoothing not in EVENT_SMOOTHINGS:
            raise bad("event_smoothing", f"one of {list(EVENT_SMOOTHINGS)}")
        if self.event_class_weights not in EVENT_CLASS_WEIGHTS:
            raise bad("event_class_weights", f"one of {list(EVENT_CLASS_WEIGHTS)}")
        if not 0.0 < self.event_ema_alpha <= 1.0:
            raise bad("event_ema_alpha", "in (0, 1]")
        if not 0.0 < self.event_switch_prob <= 0.5:
            raise bad("event_switch_prob", "in (0, 0.5]")

    def resolved_clip_length(self, checkpoint_clip_length: int) -> int:
        """The clip length to use: the checkpoint's, or a narrower one asked for."""
        if self.clip_length == 0:
            return checkpoint_clip_length
        if self.clip_length > checkpoint_clip_length:
            raise StreamConfigError(
                f"clip_length {self.clip_length} is longer than the checkpoint's "
                f"{checkpoint_clip_length}: settings can only narrow what the model was trained on"
            )
        return self.clip_length
