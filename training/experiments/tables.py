"""The paper's Table 1 and Table 2 (METHODS.md §5): reference figures and our layout.

Table 1 holds per-task accuracy (action, then gesture), Table 2 cumulative
accuracy (correct predictions over both tasks / all predictions). STL has no
multi-task model: its Table 2 figure pools the two single-task runs' counts,
which is what "all predictions" means for a pair of single-task models.
For the paper's sets (set1..set4) each of our columns has the paper's figure
beside it; other sets (e.g. the synthetic one) get ours only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (learning, loss) rows in the paper's order; "-": STL has no loss weighting.
ROWS: tuple[tuple[str, str], ...] = (
    ("STL r3d18", "-"), ("STL r3d34", "-"),
    ("HPS", "average"), ("HPS", "dwa"), ("HPS", "automatic"),
    ("SPS s=0.2", "average"), ("SPS s=0.2", "dwa"), ("SPS s=0.2", "automatic"),
    ("SPS s=0.8", "average"), ("SPS s=0.8", "dwa"), ("SPS s=0.8", "automatic"),
    ("LWS", "average"), ("LWS", "dwa"), ("LWS", "automatic"),
)
PAPER_SETS = ("set1", "set2", "set3", "set4")

# Table 1: per row, (action, gesture) for set1..set4, in %.
PAPER_TABLE1: dict[tuple[str, str], tuple[float, ...]] = dict(zip(ROWS, (
    (58.26, 25.67, 58.26, 20.54, 61.39, 41.35, 61.39, 68.84),
    (60.59, 28.31, 60.59, 19.78, 64.53, 48.06, 64.53, 65.69),
    (54.16, 20.49, 64.34, 27.86, 70.65, 60.25, 71.91, 74.33),
    (57.36, 25.45, 58.6, 25.57, 64.45, 58.87, 72.53, 73.85),
    (60.53, 20.02, 66.24, 33.68, 49.42, 56.57, 72.51, 72.80),
    (67.64, 26.6, 69.94, 36.17, 72.27, 60.13, 74.2, 74.49),
    (62.2, 30.96, 71.66, 37.42, 71.84, 60.91, 73.51, 74.59),
    (67.62, 26.25, 71.66, 43.24, 74.45, 62.14, 74.17, 73.9),
    (64.22, 26.78, 73.14, 35.76, 74.2, 74.49, 72.65, 74.21),
    (63.1, 32.03, 67.94, 34.93, 73.51, 74.59, 74.03, 75.51),
    (70.24, 35.79, 68.75, 39.09, 73.66, 60.8, 72.25, 73.54),
    (64.39, 35.2, 69.73, 39.62, 73.03, 56.27, 73.45, 74.43),
    (70.58, 34.9, 71.42, 43.04, 72.6, 53.64, 73.41, 75.47),
    (64.79, 28.7, 72.27, 37.21, 72.48, 53.07, 72.96, 76.4),
), strict=True))

# Table 2: per row, cumulative accuracy for set1..set4, in %.
PAPER_TABLE2: dict[tuple[str, str], tuple[float, ...]] = dict(zip(ROWS, (
    (37.93, 53.99, 55.41, 63.02), (40.45, 55.98, 59.62, 64.78),
    (33.16, 60.21, 67.55, 72.44), (37.45, 54.86, 62.78, 71.81),
    (35.25, 62.55, 51.55, 72.57), (42.04, 66.12, 68.65, 74.26),
    (42.71, 67.78, 68.57, 73.74), (41.81, 68.44, 70.77, 74.11),
    (40.85, 68.91, 74.28, 72.99), (43.72, 64.19, 73.83, 74.35),
    (48.74, 65.39, 69.82, 72.53), (46.18, 66.33, 68.03, 73.66),
    (48.32, 68.21, 66.94, 73.86), (42.28, 68.30, 66.68, 73.71),
), strict=True))


@dataclass
class RowCounts:
    """Correct/total per task of one table row (STL: gathered from two runs)."""

    correct: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def add(self, task: str, correct: int, total: int) -> None:
        self.correct[task] = correct
        self.total[task] = total

    def accuracy(self, task: str) -> float | None:
        total = self.total.get(task, 0)
        return 100.0 * self.correct[task] / total if total else None

    def cumulative(self, tasks: Sequence[str]) -> float | None:
        """None unless every task has a figure: a half-filled row would mislead."""
        if any(self.total.get(t, 0) == 0 for t in tasks):
            return None
        return 100.0 * sum(self.correct[t] for t in tasks) / sum(self.total[t] for t in tasks)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buffer.getvalue()


def table1(counts: Mapping[tuple[str, str], RowCounts], tasks: Sequence[str], set_name: str,
           metric: str) -> Table:
    """Per-task accuracy (%), one column per task (+ the paper's beside it for its sets)."""
    paper = _paper_index(set_name)
    header = ["learning", "loss"]
    for task in tasks:
        header.append(f"{task} (ours)" if paper is not None else task)
        if paper is not None:
            header.append(f"{task} (paper)")
    rows = []
    for row in ROWS:
        cells = list(row)
        for n, task in enumerate(tasks):
            cells.append(_fmt(counts[row].accuracy(task) if row in counts else None))
            if paper is not None:
                cells.append(_paper_cell(PAPER_TABLE1[row], 2 * paper + n if n < 2 else None))
        rows.append(cells)
    return Table(f"Table 1: per-task {metric} accuracy (%), set {set_name}", header, rows)


def table2(counts: Mapping[tuple[str, str], RowCounts], tasks: Sequence[str], set_name: str,
           metric: str) -> Table:
    """Cumulative accuracy (%): correct over both tasks / all predictions."""
    paper = _paper_index(set_name)
    header = ["learning", "loss", "cumulative (ours)" if paper is not None else "cumulative"]
    if paper is not None:
        header.append("cumulative (paper)")
    rows = []
    for row in ROWS:
        cells = [*row, _fmt(counts[row].cumulative(tasks) if row in counts else None)]
        if paper is not None:
            cells.append(_paper_cell(PAPER_TABLE2[row], paper))
        rows.append(cells)
    return Table(f"Table 2: cumulative {metric} accuracy (%), set {set_name}", header, rows)


def row_counts(results: Mapping[str, Mapping[str, Any]], metric: str
               ) -> dict[tuple[str, str], RowCounts]:
    """Gather finished runs' results (`row`, `tasks: {task: {metric: {correct, total}}}`)."""
    counts: dict[tuple[str, str], RowCounts] = {}
    for result in results.values():
        row = (result["row"][0], result["row"][1])
        entry = counts.setdefault(row, RowCounts())
        for task, figures in result["tasks"].items():
            scores = figures.get(metric)
            if scores is not None:
                entry.add(task, int(scores["correct"]), int(scores["total"]))
    return counts


def plot_history(history: Sequence[Mapping[str, Any]], tasks: Sequence[str], path: Path,
                 title: str, chance: Mapping[str, float] | None = None) -> None:
    """Per-task validation accuracy over iterations (and cumulative when several tasks);
    `chance` (task -> 1 / classes) draws each task's chance level as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    iterations = [int(h["iteration"]) for h in history]
    for task in tasks:
        values = [_percent(h.get("accuracy", {}).get(task)) for h in history]
        line = axes.plot(iterations, values, marker="o", markersize=3, label=task)[0]
        if chance and task in chance:
            axes.axhline(100 * chance[task], color=line.get_color(), linestyle=":",
                         linewidth=1, label=f"{task} chance")
    if len(tasks) > 1:
        axes.plot(iterations, [_percent(h.get("cumulative")) for h in history], "k--",
                  label="cumulative")
    axes.set_xlabel("iteration")
    axes.set_ylabel("validation clip accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)


def _paper_index(set_name: str) -> int | None:
    return PAPER_SETS.index(set_name) if set_name in PAPER_SETS else None


def _paper_cell(values: tuple[float, ...], index: int | None) -> str:
    return "-" if index is None else f"{values[index]:.2f}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _percent(value: Any) -> float:
    return float("nan") if value is None else 100.0 * float(value)
