"""What a run reports: a progress bar, CSV files and TensorBoard (rank 0 only).

- `train.csv`: every `log_every` iterations: iteration, loss, per-task loss and
  weight, clips/s, skipped videos; LWS: the probability that each task keeps
  its own copy, averaged over units.
- `val.csv`: every validation: iteration, per-task clip accuracy, cumulative.
- `tensorboard/`: the same scalars, plus every LWS routing probability.
A resumed run drops the rows (and TensorBoard steps) past the saved state,
so the logs read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from mtl_perception.fileio import atomic_write_text, require_regular_file
from training.train.resume import RunDirError
from training.train.steps import StepResult


class TrainLog:
    """Progress bar + CSV + TensorBoard; a no-op object on ranks other than 0."""

    def __init__(self, run_dir: Path, task_names: tuple[str, ...], iterations: int,
                 start: int, enabled: bool, progress: bool | None, tensorboard: bool = True
                 ) -> None:
        self.tasks, self.iterations, self.start = task_names, iterations, start
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if progress is None else progress
        self.t0, self.clips = time.perf_counter(), 0
        self.board: Any = None
        if not enabled:
            return
        train_cols = ["iteration", "loss"] + [f"loss/{t}" for t in task_names] + [
            f"weight/{t}" for t in task_names] + ["clips_per_s", "skipped", "lws_own_copy"]
        val_cols = ["iteration"] + [f"clip_accuracy/{t}" for t in task_names] + ["cumulative"]
        self.train_csv = _CsvFile(run_dir / "train.csv", train_cols, start)
        self.val_csv = _CsvFile(run_dir / "val.csv", val_cols, start)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                self.board = None
            else:
                self.board = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start + 1)

    def step(self, iteration: int, result: StepResult, clips: int, skipped: int,
             write: bool) -> None:
        """After iteration `iteration` (1-based count of completed iterations)."""
        if not self.enabled:
            return
        self.clips += clips
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = self.clips / elapsed
        done = iteration - self.start
        eta = (self.iterations - iteration) * elapsed / max(done, 1)
        own = _own_copy(result.lws_probs)
        if write:
            self.train_csv.write([iteration, result.loss, *result.task_losses, *result.weights,
                                  rate, skipped, own])
            if self.board is not None:
                self._board_step(iteration, result, rate, skipped)
        weights = " ".join(f"{t}={_fmt(w)}" for t, w in zip(self.tasks, result.weights))
        gate = "" if result.gate_loss is None else f" gate {result.gate_loss:.4f}"
        line = (f"it {iteration}/{self.iterations} loss {result.loss:.4f} w[{weights}]{gate} "
                f"{rate:.1f} clips/s ETA {_duration(eta)}")
        if self.tty:
            bar = _bar(iteration / self.iterations)
            sys.stderr.write(f"\r{bar} {line}   ")
            sys.stderr.flush()
        elif write:
            print(line, flush=True)

    def validation(self, iteration: int, accuracy: dict[str, float], cumulative: float) -> None:
        if not self.enabled:
            return
        # a task without a figure (kept, not fed: nothing to score) is an empty cell
        self.val_csv.write([iteration, *[accuracy.get(t, math.nan) for t in self.tasks],
                            cumulative])
        if self.board is not None:
            for task, value in accuracy.items():
                self.board.add_scalar(f"val/clip_accuracy/{task}", value, iteration)
            self.board.add_scalar("val/cumulative_accuracy", cumulative, iteration)
        text = " ".join(f"{t} {100 * a:.1f}%" for t, a in accuracy.items())
        self.message(f"validation at {iteration}: {text}, cumulative {100 * cumulative:.1f}%")

    def message(self, text: str) -> None:
        if self.enabled:
            if self.tty:
                sys.stderr.write("\n")
            print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\n")
        self.train_csv.close()
        self.val_csv.close()
        if self.board is not None:
            self.board.close()

    def _board_step(self, iteration: int, result: StepResult, rate: float, skipped: int) -> None:
        board = self.board
        board.add_scalar("train/loss", result.loss, iteration)
        if result.gate_loss is not None:
            board.add_scalar("train/loss/gate", result.gate_loss, iteration)
        for task, loss, weight in zip(self.tasks, result.task_losses, result.weights):
            if not math.isnan(loss):
                board.add_scalar(f"train/loss/{task}", loss, iteration)
            if not math.isnan(weight):
                board.add_scalar(f"train/weight/{task}", weight, iteration)
        board.add_scalar("train/clips_per_s", rate, iteration)
        board.add_scalar("train/skipped_videos", skipped, iteration)
        if result.lws_probs is not None:
            probs = result.lws_probs
            for t, task in enumerate(self.tasks):
                for unit in range(probs.shape[1]):
                    for k in range(probs.shape[2]):
                        board.add_scalar(f"lws/{task}/unit{unit}/copy{k}",
                                         float(probs[t, unit, k]), iteration)


class _CsvFile:
    """A CSV log; on resume, rows past `start` (written after the saved state) go."""

    def __init__(self, path: Path, columns: list[str], start: int) -> None:
        # Written in place for the whole run: a link would send the rows into someone
        # else's file, a FIFO would block the run; both are refused in one line.
        if os.path.lexists(path):
            require_regular_file(path, "training log", RunDirError)
            if path.is_symlink():
                raise RunDirError(f"training log {path} is a symbolic link; a run writes "
                                  "its logs itself (move the link away)")
        kept = _kept_rows(path, start) if start > 0 and path.is_file() else []
        # The kept rows replace the file atomically: a kill now cannot lose the history.
        text = io.StringIO(newline="")
        table = csv.writer(text)
        table.writerow(columns)
        table.writerows(kept)
        atomic_write_text(path, text.getvalue())
        self.handle: TextIO = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.writer(self.handle)

    def write(self, row: list[Any]) -> None:
        self.writer.writerow([_cell(v) for v in row])
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _kept_rows(path: Path, start: int) -> list[list[str]]:
    """The rows of a resumed run's log up to iteration `start` (those after it were
    written after the saved state); a row whose iteration is no integer is one line."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"training log {path} cannot be read ({exc}); delete it to start "
                          "the log anew") from exc
    kept = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if not (row[0].isascii() and row[0].isdigit()):  # int() refuses `²`, isdigit not
            raise RunDirError(f"{path}:{number}: iteration {row[0][:30]!r} is not a whole "
                              "number (the log was edited?); delete it to start the log anew")
        if int(row[0]) <= start:
            kept.append(row)
    return kept


def _own_copy(probs: torch.Tensor | None) -> float:
    if probs is None:
        return math.nan
    tasks = probs.shape[0]
    return float(sum(probs[t, :, t].mean() for t in range(tasks)) / tasks)


def _cell(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(width * min(max(fraction, 0.0), 1.0))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
