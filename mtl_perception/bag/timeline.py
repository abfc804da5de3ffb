"""The timeline plot of an untrimmed evaluation (`evaluate_bag --unlabelled none`).

Above: the true intervals, one row per task (unlabelled time is `none`).
Below: what the model said over time: the task gate's probabilities per
clip (or, without a gate, the gesture head's largest probability, the event
source of the max-softmax baseline), the event threshold, and each emitted
gesture event as a vertical line with its class at its decision time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtl_perception.bag.labels import Interval
from mtl_perception.bag.metrics import ClipRecord
from mtl_perception.bag.outputs import TIMELINE
from mtl_perception.bag.untrimmed import GESTURE, NONE, EmittedEvent

_COLOURS = {"action": "tab:blue", GESTURE: "tab:orange", NONE: "tab:gray"}


def plot_timeline(folder: Path, clips: Sequence[ClipRecord], intervals: Sequence[Interval],
                  events: Sequence[EmittedEvent], tasks: Sequence[str],
                  threshold: float) -> str:
    """Write `folder/timeline.png`; returns its name."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on robots and CI
    import matplotlib.pyplot as plt

    end = max([c.last_s for c in clips] + [i.end for i in intervals] + [1.0])
    width = float(np.clip(end / 8.0, 10.0, 60.0))  # long recordings stay readable, up to a cap
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 5.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 2]},
                                      constrained_layout=True)
    for row, task in enumerate(tasks):
        for interval in (i for i in intervals if i.task == task):
            top.broken_barh([(interval.start, interval.end - interval.start)], (row - 0.4, 0.8),
                            color=_COLOURS.get(task, "tab:green"), alpha=0.7)
            top.text((interval.start + interval.end) / 2, row, interval.label, ha="center",
                     va="center", fontsize=7, clip_on=True)
    top.set_yticks(range(len(tasks)), list(tasks))
    top.set_ylim(-0.6, len(tasks) - 0.4)
    top.set_title("true intervals (unlabelled: none)")
    times = [c.last_s for c in clips]
    if clips and all(c.gate is not None for c in clips):
        gate = np.stack([c.gate for c in clips])  # type: ignore[misc]
        for k, name in enumerate([*tasks, NONE]):
            bottom.step(times, gate[:, k], where="post", label=f"gate: {name}",
                        color=_COLOURS.get(name, "tab:green"), linewidth=1)
    elif clips and GESTURE in tasks:
        msp = [float(np.max(c.raw.get(GESTURE, c.probs[GESTURE]))) for c in clips]
        bottom.step(times, msp, where="post", label="gesture head max softmax",
                    color=_COLOURS[GESTURE], linewidth=1)
    bottom.axhline(threshold, color="black", linestyle=":", linewidth=0.8,
                   label=f"event threshold {threshold:g}")
    for event in events:
        bottom.axvline(event.time_s, color="tab:red", linewidth=1)
        bottom.text(event.time_s, 1.01, event.label, rotation=90, fontsize=7, va="bottom",
                    ha="center", color="tab:red", clip_on=False,
                    transform=bottom.get_xaxis_transform())  # x in seconds, y above the axes
    bottom.set_ylim(0, 1.05)
    bottom.set_xlim(0, end)
    bottom.set_xlabel("seconds from the first image")
    bottom.set_ylabel("probability")
    bottom.legend(loc="upper right", fontsize=7, ncol=2)
    bottom.set_title(f"model output per clip, held from its last frame on; red: gesture events "
                     f"({len(events)})", pad=40)
    fig.savefig(folder / TIMELINE, dpi=90)
    plt.close(fig)
    return TIMELINE
