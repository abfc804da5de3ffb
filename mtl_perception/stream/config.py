"""StreamConfig: the streaming core's settings, one typed dataclass.

Built from YAML / ROS parameters with `mtl_perception.settings.from_dict`
(the node maps its parameters 1:1 onto these field names). Validation lives
in `__post_init__` so every way of building one (YAML, parameters,
`dataclasses.replace` in `update_settings`) refuses the same bad values with
the same one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from mtl_perception.deploy.registry import BACKEND_NAMES
from mtl_perception.schema import check_fields, declared, setting

Smoothing = Literal["none", "ema", "mean"]
GateMode = Literal["off", "publish", "filter"]
EventSource = Literal["auto", "gate", "max_softmax"]
# Temporal decisions of gesture events (issue 24; stream/events.py documents them)
EventSmoothing = Literal["none", "ema", "hmm"]
EventClassWeights = Literal["linear", "activity", "mean"]
Backend = Literal["torch", "onnxruntime", "openvino", "tensorrt"]
SMOOTHING_MODES: tuple[str, ...] = get_args(Smoothing)
GATE_MODES: tuple[str, ...] = get_args(GateMode)
EVENT_SOURCES: tuple[str, ...] = get_args(EventSource)
EVENT_SMOOTHINGS: tuple[str, ...] = get_args(EventSmoothing)
EVENT_CLASS_WEIGHTS: tuple[str, ...] = get_args(EventClassWeights)
BACKENDS: tuple[str, ...] = BACKEND_NAMES  # the registry's names (mtl_perception.deploy)
assert get_args(Backend) == BACKENDS, "stream.config.Backend and deploy's registry differ"

_RESTART = "restart the node"
_BUILT = "the inference engine is built at start; restart the node"


class StreamConfigError(ValueError):
    """A stream setting out of range, unknown, or not changeable while running."""


@dataclass(frozen=True)
class StreamConfig:
    """Settings of `StreamPipeline`; each field's help says what it does.

    Frames are sampled by header stamp (not by arrival order). `max_batch` 0
    is automatic: realtime on a GPU one clip per camera, on the CPU 1
    (batching costs more per clip there), offline 1. The task gate settings
    change nothing for a model without a gate; the gesture event rule is
    documented in `mtl_perception.stream.events`. Decoding, buffering,
    batching and smoothing are the same whichever `backend` runs.
    """

    # Each field is declared once here (mtl_perception.schema): its range,
    # choices, help and whether it may change live are what the node's ROS
    # parameters, `--set` and docs/settings.md are built from.
    target_fps: float = setting(
        15.0, "Frames per second sampled by header stamp into clips (the rate the model "
        "was trained at).", low=0.5, high=240.0,
        fixed="the per-camera buffers hold frames sampled at the old rate; " + _RESTART)
    inference_stride: int = setting(
        8, "A new clip every this many sampled frames.", low=1, high=1000,
        fixed="clip scheduling is fixed while running; " + _RESTART)
    max_gap_s: float = setting(
        0.5, "A gap between two frames' stamps longer than this restarts the camera's "
        "buffer instead of gluing two scenes into one clip.", low=0.01, high=3600.0,
        fixed="buffer reset rule is fixed while running; " + _RESTART)
    smoothing: Smoothing = setting(
        "none", "Temporal smoothing of scores over the last clips: none, ema or mean.",
        live=True)
    smoothing_window: int = setting(
        5, "Clips averaged by mean smoothing; ema uses alpha = 2 / (window + 1).",
        low=1, high=1000, live=True)
    score_threshold: float = setting(
        0.0, "Results below this probability are left out; a task whose best score is "
        "below it publishes an empty result.", low=0.0, high=1.0, live=True)
    top_k: int = setting(5, "How many results per task and clip.", low=1, high=1000, live=True)
    clip_length: int = setting(
        0, "Frames per clip; 0 uses the checkpoint's. May only narrow the checkpoint's.",
        low=0, high=1024, fixed="the buffers are sized for the clip length; " + _RESTART)
    max_batch: int = setting(
        0, "Most clips per forward pass; 0 = automatic: the newest clip of every camera in "
        "one pass on a GPU, one clip per pass on the CPU (the node: every camera's in one "
        "pass when its configure measured that clearly cheaper per clip).", low=0, high=64,
        fixed="the inference worker is configured at start; " + _RESTART)
    offline_queue: int = setting(
        16, "Offline (bag evaluation) only: clips waiting per camera before push() waits "
        "for the worker.", low=1, high=100_000, ros=False,
        fixed="the offline queue is sized at start; " + _RESTART)
    gate: GateMode = setting(
        "off", "Task gate (action | gesture | none per clip): off (results as without a "
        "gate), publish (adds /human/task and /human/gesture/events) or filter (publish, "
        "and a task the gate gives less than gate_threshold publishes an empty result).",
        live=True)
    gate_threshold: float = setting(
        0.5, "Under gate filter: the gate probability a task needs for its result to be "
        "published.", low=0.0, high=1.0, live=True)
    event_source: EventSource = setting(
        "auto", "What starts a gesture event: gate (the gate's gesture probability), "
        "max_softmax (the gesture head's best probability), auto (gate when the model has "
        "one).", live=True)
    event_threshold: float = setting(
        0.5, "A gesture starts when the event source reaches this.", low=0.0, high=1.0,
        live=True)
    event_hysteresis: float = setting(
        0.1, "A started gesture ends (and its event is decided) when the event source falls "
        "below event_threshold minus this.", low=0.0, high=1.0, live=True)
    event_min_s: float = setting(
        0.3, "Gestures shorter than this (seconds between their first and last clip) give "
        "no event.", low=0.0, high=3600.0, live=True)
    event_max_s: float = setting(
        6.0, "A gesture lasting this long is decided at once (at least event_min_s).",
        low=0.0, high=3600.0, live=True)
    event_refractory_s: float = setting(
        1.0, "No gesture event within this many seconds of the previous one.",
        low=0.0, high=3600.0, live=True)
    # Temporal decisions of gesture events (issue 24, stream/events.py); a checkpoint whose
    # fit-gate chose them on validation sessions stores its choice, taken unless given
    # (stream/decisions.py).
    event_smoothing: EventSmoothing = setting(
        "none", "The event source over time before the thresholds: none, ema (causal "
        "exponential smoothing) or hmm (two-state filter with a switching cost).", live=True)
    event_ema_alpha: float = setting(
        0.5, "Under event_smoothing ema: the newest clip's weight (1 = no smoothing).",
        low=0.01, high=1.0, live=True)
    event_switch_prob: float = setting(
        0.1, "Under event_smoothing hmm: the prior probability per clip of switching between "
        "gesture and not (0.5 = no smoothing).", low=0.001, high=0.5, live=True)
    event_class_weights: EventClassWeights = setting(
        "linear", "An event's class from its clips weighted linear (1, 2, ..., n), by "
        "activity (the odds of each clip's event source: lead-in clips count little) or "
        "equally (mean).",
        live=True)
    backend: Backend = setting(
        "torch", "Inference engine of the forward pass: torch (PyTorch), onnxruntime (CPU or "
        "CUDA), openvino (CPU) or tensorrt (NVIDIA GPU, fp16 with autocast fp16). A "
        "checkpoint is exported in memory for the non-torch engines; each needs its extra "
        "(pip install 'mtl_perception[onnx|openvino|tensorrt]').", fixed=_BUILT)
    engine_cache: str = setting(
        "", "Folder of built TensorRT engines (keyed by model checksum, GPU and TensorRT "
        "version); empty: ~/.cache/mtl_perception/tensorrt.", fixed=_BUILT)

    def __post_init__(self) -> None:
        reason = check_fields(self)  # every range and choice, as declared above
        if reason is not None:
            raise StreamConfigError(reason)
        if self.max_gap_s * self.target_fps < 1:
            raise StreamConfigError(
                f"max_gap_s ({self.max_gap_s}) is shorter than one sampling period "
                f"(1 / target_fps = {1 / self.target_fps:.3f} s): every frame would reset"
            )
        if self.event_max_s < self.event_min_s:
            raise StreamConfigError(f"event_max_s must be in [event_min_s ({self.event_min_s}), "
                                    f"3600] seconds, got {self.event_max_s!r}")

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


# Settings that may change while the pipeline runs (`StreamPipeline.update_settings`):
# they only touch post-processing, never a buffer or a clip already made.
LIVE_SETTINGS: tuple[str, ...] = tuple(r.name for r in declared(StreamConfig) if r.rule.live)
# Why each other setting cannot change live: the node repeats this to the user.
FIXED_REASONS: dict[str, str] = {
    r.name: r.rule.fixed for r in declared(StreamConfig) if not r.rule.live}


def publishes_gate(gate: GateMode, model_has_gate: bool) -> bool:
    """Whether clips' gate probabilities and gesture events are published (the node's
    /human/task and /human/gesture/events, the same topics in a result bag): the one
    rule both follow."""
    return model_has_gate and gate != "off"
