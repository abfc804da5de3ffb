"""report.md and the confusion-matrix plots of one evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.bag.outputs import PLOT_PREFIX, PLOT_SUFFIX


def plot_confusions(folder: Path, tasks: list[str], metrics: dict[str, Any]) -> list[str]:
    """One PNG per task: clip and segment confusion side by side; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on robots and CI
    import matplotlib.pyplot as plt

    names = []
    for task in tasks:
        section = metrics[task]
        classes = section["class_names"]
        size = max(4.0, 0.45 * len(classes) + 2.5)
        fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), constrained_layout=True)
        for ax, key, title in zip(axes, ("confusion_clips", "confusion_segments"),
                                  ("clips", "segments"), strict=True):
            _matrix(ax, np.asarray(section[key]), classes, f"{task}: {title}")
        name = f"{PLOT_PREFIX}{task}{PLOT_SUFFIX}"
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        names.append(name)
    return names


def _matrix(ax: Any, confusion: np.ndarray, classes: list[str], title: str) -> None:
    """Row-normalised colours (recall per true class), counts written in the cells."""
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (n={int(confusion.sum())})")
    if len(classes) <= 30:
        for (i, j), count in np.ndenumerate(confusion):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def untrimmed_lines(metrics: dict[str, Any], timeline: str | None) -> list[str]:
    """report.md's section for `--unlabelled none` (empty without it)."""
    if "frame_ap" not in metrics:
        return []
    lines = ["## Untrimmed stream (unlabelled time counts as none)", ""]
    confusion = metrics.get("task_confusion")
    if confusion is None:
        lines += ["No task gate in this checkpoint: no per-clip task confusion.", ""]
    else:
        classes = confusion["classes"]
        lines += [f"Per-clip task (gate) accuracy {_pct(confusion['accuracy'])} over "
                  f"{confusion['clips']} clips; rows true, columns predicted:", "",
                  "| true \\ predicted | " + " | ".join(classes) + " |",
                  "|---" * (len(classes) + 1) + "|"]
        for name, row in zip(classes, confusion["matrix"]):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    events = metrics.get("gesture_events")
    if events is not None:
        delay = events["detection_delay_s"]
        lines += [
            f"Gesture events (source: {events['source']}):", "",
            "| Levenshtein accuracy | events | true gestures | detected (right class) | missed "
            "| false events | false events / min of none | delay p50 s | delay p95 s |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {_pct(events['levenshtein_accuracy'])} | {events['events']} | "
            f"{events['true_gestures']} | {events['detected']} ({events['detected_right_class']})"
            f" | {events['missed']} | {events['false_events']} | "
            f"{_num(events['false_events_per_minute'])} | {_num(delay['p50'])} | "
            f"{_num(delay['p95'])} |", ""]
    frame_ap = metrics["frame_ap"]
    lines += [f"Per-frame AP (none left out), mean {_pct(frame_ap['mean'])} over "
              f"{frame_ap['frames']} frames:", "", "| task | class | AP |", "|---|---|---|"]
    for task, per_class in frame_ap.items():
        if isinstance(per_class, dict):
            lines += [f"| {task} | {name} | {_pct(ap)} |" for name, ap in per_class.items()]
    lines.append("")
    if timeline:
        lines += [f"![{timeline}]({timeline})", ""]
    return lines


def write_report(path: Path, metrics: dict[str, Any], tasks: list[str], plots: list[str],
                 timeline: str | None = None) -> None:
    read = metrics["read"]
    lines = [
        "# Bag evaluation",
        "",
        f"- bag: `{read['path']}` ({read['storage']}), topic `{read['topic']}` "
        f"({read['msgtype']})",
        f"- checkpoint: `{metrics['checkpoint']}`",
        f"- images read: {read['messages_read']}"
        + (f" of {read['messages_expected']}" if read["messages_expected"] else "")
        + f"; clips scored: {metrics['clips']}",
        f"- speed: {metrics['frames_per_second']:.1f} images/s; model latency per clip "
        f"p50 {_num(metrics['latency_ms']['p50'])} ms, p95 {_num(metrics['latency_ms']['p95'])} ms",
        f"- cumulative accuracy (segments, both tasks): {_pct(metrics['cumulative_accuracy'])}",
        "",
    ]
    if metrics["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in metrics["warnings"]] + [""]
    lines += ["## Accuracy", "", "| task | clip accuracy | clips | segment accuracy | segments "
              "scored / labelled |", "|---|---|---|---|---|"]
    for task in tasks:
        s = metrics[task]
        lines.append(f"| {task} | {_pct(s['clip_accuracy'])} | {s['clips_scored']} | "
                     f"{_pct(s['segment_accuracy'])} | {s['segments_scored']} / {s['segments']} |")
    lines.append("")
    for task in tasks:
        lines += [f"## {task}: per class (segments)", "",
                  "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for name, row in metrics[task]["per_class"].items():
            lines.append(f"| {name} | {_num(row['precision'])} | {_num(row['recall'])} | "
                         f"{_num(row['f1'])} | {row['support']} |")
        lines.append("")
    lines += untrimmed_lines(metrics, timeline)
    lines += ["## Confusion matrices", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Settings", "", "```", *(f"{k}: {v}" for k, v in metrics["settings"].items()),
              "```", "",
              "Clip accuracy: a clip counts for a task when one labelled interval covers at "
              "least half of its time span. Segment accuracy: argmax of the mean softmax over "
              "the clips inside each labelled interval.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
