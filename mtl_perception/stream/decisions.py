"""A checkpoint's stored decision settings: the node's and `evaluate_bag`'s defaults.

`python -m training fit-gate` chooses the gesture events' settings on
validation sessions (event threshold and hysteresis, the activity's
smoothing, the class weighting; `training/methods/gate_tuning.py`) and
stores its choice in the checkpoint's provenance under `stream_defaults`:

```json
"stream_defaults": {"event_source": "gate", "event_threshold": 0.8, "event_hysteresis": 0.2,
                    "event_smoothing": "hmm", "event_switch_prob": 0.05, ...,
                    "chosen_on": {...how: sessions, gestures, figures...}}
```

Export copies the provenance into the `.onnx` metadata, so an exported model
carries them too. Whoever builds the stream settings (the node at configure,
`evaluate_bag`) passes them through `with_stored_decisions`: each stored
setting replaces the stream's value unless the user gave that setting
(`explicit`: named on the command line, or different from StreamConfig's
default in a file or parameter); with them comes the `inference_stride` they
were chosen at (`chosen_on.stream`; the rate: `stream/rate.py`), since the
smoothing and the durations count clips. They were chosen for the gate's activity:
when the stream's events come from another source (`event_source:
max_softmax`), none of them applies. A checkpoint without them (the paper's
models, every model trained before issue 24) changes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.stream.config import StreamConfig, StreamConfigError
from mtl_perception.stream.events import resolve_source

PROVENANCE_KEY = "stream_defaults"
# The stream settings a checkpoint may store (anything else under the key is information).
DECISION_SETTINGS: tuple[str, ...] = (
    "event_threshold", "event_hysteresis", "event_min_s", "event_smoothing", "event_ema_alpha",
    "event_switch_prob", "event_class_weights", "gate_threshold",
)


def _stored(info: CheckpointInfo) -> Mapping[str, Any]:
    """The provenance's `stream_defaults` object ({} when absent); anything else under the
    key is a checkpoint edited by hand or by other code, refused in one line."""
    stored = info.provenance.get(PROVENANCE_KEY, {})
    if not isinstance(stored, Mapping):
        raise StreamConfigError(f"the checkpoint's stored {PROVENANCE_KEY} is not a JSON "
                                f"object (got {type(stored).__name__})")
    return stored


def chosen_on_stream(info: CheckpointInfo) -> Mapping[str, Any]:
    """The stream the stored settings were chosen on (`chosen_on.stream`: fit-gate's
    sessions' fps / the trained frame step, its --inference-stride); {} when absent.
    Information written by fit-gate: each reader checks the value it takes."""
    chosen_on = _stored(info).get("chosen_on")
    stream = chosen_on.get("stream") if isinstance(chosen_on, Mapping) else None
    return stream if isinstance(stream, Mapping) else {}


def tuned_stride(info: CheckpointInfo) -> int | None:
    """The `inference_stride` the stored settings were chosen at; None if not usable."""
    stride = chosen_on_stream(info).get("inference_stride")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        return None
    return stride


def stored_decisions(info: CheckpointInfo) -> dict[str, Any]:
    """The decision settings the checkpoint stores (empty when it stores none)."""
    stored = _stored(info)
    for key in DECISION_SETTINGS:  # JSON true is no number (dataclasses would take it as 1)
        if isinstance(stored.get(key), bool):
            raise StreamConfigError(f"the checkpoint's stored {PROVENANCE_KEY}.{key} is "
                                    f"{stored[key]!r}, not a setting's value")
    return {k: stored[k] for k in DECISION_SETTINGS if k in stored}


def explicit_settings(config: StreamConfig, named: Iterable[str] = ()) -> set[str]:
    """The settings the user chose: `named` ones, and every one that differs from the
    default (a file or a parameter that sets a value)."""
    default = StreamConfig()
    return set(named) | {f.name for f in dataclasses.fields(StreamConfig)
                         if getattr(config, f.name) != getattr(default, f.name)}


def with_stored_decisions(config: StreamConfig, info: CheckpointInfo, explicit: Iterable[str]
                          ) -> tuple[StreamConfig, str | None]:
    """`config` with the checkpoint's stored decision settings where the user gave none,
    and the one log line saying what was taken (None when nothing was)."""
    stored = stored_decisions(info)
    source = _stored(info).get("event_source", "gate")
    has_gate = info.model.gate
    if not stored or resolve_source(config.event_source, has_gate) != source:
        return config, None
    given = set(explicit)
    taken = {k: v for k, v in stored.items() if k not in given}
    # Smoothing and durations count clips: they hold at the stride they were chosen at.
    stride = tuned_stride(info)
    if taken and stride is not None and "inference_stride" not in given:
        taken["inference_stride"] = stride
    if not taken:
        return config, None
    try:
        chosen = dataclasses.replace(config, **taken)
    except (StreamConfigError, TypeError) as exc:
        raise StreamConfigError(f"the checkpoint's stored {PROVENANCE_KEY} are not valid "
                                f"stream settings: {exc}") from exc
    line = ("gesture events with the checkpoint's stored settings (chosen on validation "
            "sessions): " + ", ".join(f"{k}={v}" for k, v in sorted(taken.items()))
            + "; set any of them to override")
    return chosen, line


# The grid `fit-gate` searches (training/methods/gate_tuning.py) and the benchmark's
# baseline is tuned over (bench/gate_untrimmed.py).
SMOOTHINGS: tuple[dict[str, Any], ...] = (
    {"event_smoothing": "none"},
    *({"event_smoothing": "ema", "event_ema_alpha": a} for a in (0.3, 0.5, 0.7)),
    *({"event_smoothing": "hmm", "event_switch_prob": p} for p in (0.02, 0.05, 0.1, 0.2)),
)
THRESHOLDS = (*(round(0.05 * i, 2) for i in range(6, 20)), 0.97, 0.99)  # 0.30 .. 0.99
HYSTERESES = (0.1, 0.2, 0.3)
MIN_DURATIONS = (0.3, 0.8)  # seconds: event_min_s
CLASS_WEIGHTS = ("mean",)  # measured: bench/results/gate.md item 13


def candidates() -> list[dict[str, Any]]:
    """Every decision-setting combination of the grid (hysteresis below the threshold)."""
    out = []
    for smoothing, threshold, hysteresis, min_s, weights in itertools.product(
            SMOOTHINGS, THRESHOLDS, HYSTERESES, MIN_DURATIONS, CLASS_WEIGHTS):
        if hysteresis < threshold:
            out.append({**smoothing, "event_threshold": threshold,
                        "event_hysteresis": hysteresis, "event_min_s": min_s,
                        "event_class_weights": weights})
    return out
