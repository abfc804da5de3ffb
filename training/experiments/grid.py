"""`python -m training experiments --config SET.yaml`: the paper's grid for one set.

Runs (METHODS.md §5): STL r3d18 and r3d34 on each task; HPS, SPS s=0.2,
SPS s=0.8 and LWS, each with average, dwa and automatic loss weighting (16
runs for two tasks). Every run trains through `training.train.trainer.train` from
one training config (`--train-config`, default config/train/paper.yaml) plus
the run's own settings plus the user's `key=value` overrides, then its last
checkpoint (the paper's protocol: the model after the last iteration) is scored
on the test split by `training.evaluation.scoring` (clip and video accuracy):
the tables. The checkpoint best on validation is scored too and recorded apart
(`best_on_validation`); validation must not read the test split (val_split
holdout or train; test is refused).

Layout of `--out`:
  runs/<run>/        the trainer's run folder (checkpoints, resumable state)
  results/<run>.json our scores of that run; its presence means "finished"
  plots/<run>.png    per-task validation accuracy over iterations
  table1.{md,csv}, table2.{md,csv}        clip accuracy (the tables' default)
  table1_video.*, table2_video.*          video accuracy

  experiments.json   written first: marks the folder as a grid's own

An existing `--out` is used only when it is empty or holds `experiments.json`
(a grid's, resumed); any other folder is refused before anything is written,
since the grid writes table1.md, plots/<run>.png, ... over what is there.

Resumable: a run with a results file is skipped; a run folder without one is
resumed (`train(..., resume=True)` continues where it stopped, and returns at
once when training had finished but scoring had not). A results file made
with other settings is refused rather than silently mixed into the tables.
Tables are rewritten after every run, so they show the grid's progress.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mtl_perception.bag.outputs import OutputError, check_creatable
from mtl_perception.checkpoint import CheckpointError, atomic_write, load_checkpoint
from mtl_perception.exits import one_line
from mtl_perception.settings import SettingsError
from training.datasets.listfile import DatasetError
from training.datasets.sets import build_task_split, load_set
from training.evaluation.scoring import EvalConfig, Evaluator
from training.experiments.tables import ROWS, plot_history, row_counts, table1, table2
from training.train.config import TrainConfig, config_to_dict, load_train_config
from training.train.resume import STATE_FILE
from training.train.trainer import TrainResult, train

LOG = logging.getLogger(__name__)
DEFAULT_TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "config" / "train" / "paper.yaml"
MARKER = "experiments.json"  # written first: the folder is a grid's, resumable and ours
WEIGHTINGS = ("average", "dwa", "automatic")
METRICS = ("clip", "video")

TrainFn = Callable[..., TrainResult]


class ExperimentError(ValueError):
    """The grid cannot go on: settings that differ from a finished run's, an unknown run."""


@dataclass(frozen=True)
class GridRun:
    """One training run of the grid: its name, its table row and its settings."""

    name: str
    row: tuple[str, str]
    overrides: tuple[str, ...]
    tasks: tuple[str, ...]  # the tasks its model has


def paper_grid(tasks: Sequence[str]) -> list[GridRun]:
    """The paper's runs for a set with these tasks, in table order."""
    runs = []
    for arch, label in (("r3d_18", "STL r3d18"), ("r3d_34", "STL r3d34")):
        for task in tasks:
            runs.append(GridRun(
                f"stl_{arch.replace('_', '')}_{task}", (label, "-"),
                ("method=stl", f"tasks=[{task}]", f"model.arch={arch}",
                 "weighting.method=average"),
                (task,)))
    multi = [("hps", "hps", "HPS", ()),
             ("sps0.2", "sps", "SPS s=0.2", ("model.cross_stitch_share=0.2",)),
             ("sps0.8", "sps", "SPS s=0.8", ("model.cross_stitch_share=0.8",)),
             ("lws", "lws", "LWS", ())]
    for key, method, label, extra in multi:
        for weighting in WEIGHTINGS:
            runs.append(GridRun(
                f"{key}_{weighting}", (label, weighting),
                (f"method={method}", f"tasks=[{','.join(tasks)}]", "model.arch=r3d_18",
                 f"weighting.method={weighting}", *extra),
                tuple(tasks)))
    assert {r.row for r in runs} == set(ROWS)
    return runs


@dataclass
class GridOutcome:
    finished: list[str]
    failed: list[str]
    interrupted: bool


def run_grid(
    set_path: Path,
    out: Path,
    train_config: Path = DEFAULT_TRAIN_CONFIG,
    overrides: Sequence[str] = (),
    only: Sequence[str] = (),
    eval_config: EvalConfig | None = None,
    train_fn: TrainFn | None = None,
) -> GridOutcome:
    """Run (or resume) the grid into `out`; see the module docstring.

    `only`: run names to run (others are left as they are, but tables still
    show every finished run). `train_fn` replaces `training.train.trainer.train`
    (tests).
    """
    train_fn = train_fn or train
    set_config = load_set(set_path)
    tasks = list(set_config.tasks)
    grid = paper_grid(tasks)
    unknown = sorted(set(only) - {r.name for r in grid})
    if unknown:
        raise ExperimentError(f"unknown run(s) {unknown}; the grid has {[r.name for r in grid]}")
    # A setting the grid sets per run (or the set) cannot also come from the user:
    # one of the two would be lost (apply_overrides refuses a key given twice).
    fixed = {item.partition("=")[0] for r in grid for item in r.overrides} | {"set"}
    clash = [item for item in overrides if item.partition("=")[0] in fixed]
    if clash:
        raise ExperimentError(f"{clash[0]}: the grid sets {clash[0].partition('=')[0]} "
                              "itself for each run; drop it")
    # Every run's config is built (and checked) before the first one trains.
    configs = {
        r.name: load_train_config(train_config, [*overrides, *r.overrides,
                                                 f"set={set_path.resolve()}"])
        for r in grid
    }
    for name, config in configs.items():  # a table chosen on the test split is biased up
        if config.val_split == "test":
            raise ExperimentError(
                f"{name}: val_split test would pick checkpoints on the test split the tables "
                "report; set val_split=holdout (a held-out part of the training videos)")
    claim_out(out, set_path)
    for run in grid:
        _check_finished(out, run, configs[run.name])
    outcome = GridOutcome([], [], False)
    for run in grid:
        if only and run.name not in only:
            continue
        if _result_path(out, run).is_file():
            LOG.info("%s: finished earlier, skipped", run.name)
            outcome.finished.append(run.name)
            if not _plot_path(out, run).is_file():  # e.g. deleted to redraw every plot
                _plot(out, run, json.loads(_result_path(out, run).read_text("utf-8")),
                      set_config.name)
            continue
        run_dir = out / "runs" / run.name
        # A run folder without resumable state (stopped before its first save)
        # starts again; `overwrite` only ever replaces one of the trainer's runs.
        resume = (run_dir / STATE_FILE).is_file()
        LOG.info("%s: %s (%s)", run.name, "resuming" if resume else "training",
                 " ".join(run.overrides))
        try:
            result = train_fn(configs[run.name], run_dir, resume=resume,
                              overwrite=run_dir.exists() and not resume)
        except (SettingsError, DatasetError, CheckpointError, ExperimentError):
            raise  # bad input: every later run would fail the same way
        except Exception as exc:  # one failed run must not lose the others
            LOG.error("%s failed: %s", run.name, exc, exc_info=True)
            outcome.failed.append(run.name)
            continue
        if result.interrupted:
            LOG.warning("%s interrupted; run the same command again to resume", run.name)
            outcome.interrupted = True
            break
        record = score_run(run, configs[run.name], result, set_path, eval_config)
        text = json.dumps(record, indent=2, allow_nan=False) + "\n"
        write_text(_result_path(out, run), text)
        _plot(out, run, record, set_config.name)
        outcome.finished.append(run.name)
        write_tables(out, set_config.name, tasks)
    write_tables(out, set_config.name, tasks)
    return outcome


def score_run(run: GridRun, config: TrainConfig, result: TrainResult, set_path: Path,
              eval_config: EvalConfig | None) -> dict[str, Any]:
    """The record a results file holds: the last checkpoint on the test split (the paper's
    protocol: the converged model; what the tables show) and, apart, the checkpoint best
    on validation (a held-out part of the training videos, never the test split)."""
    set_config = load_set(set_path)
    splits = {t: build_task_split(set_config, t, "test") for t in run.tasks}
    scoring = replace(eval_config or EvalConfig(), frame_step=config.clip.frame_step,
                      temporal_sampling=config.clip.temporal_sampling)
    figures, skipped = {}, set(result.skipped_files)
    for name, path in (("last", result.last), ("best_on_validation", result.best)):
        loaded = load_checkpoint(path)
        evaluation = Evaluator(splits, loaded.model.config.task_names, loaded.info.preprocess,
                               scoring)
        scores = evaluation(loaded.model)
        skipped |= set(scores.skipped_paths)
        figures[name] = {
            "checkpoint": str(path),
            "tasks": {t.task: {"clip": _counts(t.clip), "video": _counts(t.video),
                               "skipped": t.skipped} for t in scores.tasks},
            "cumulative_clip_accuracy": scores.to_dict()["cumulative_clip_accuracy"],
            "cumulative_video_accuracy": scores.to_dict()["cumulative_video_accuracy"],
        }
    return {
        "run": run.name,
        "row": list(run.row),
        **figures["last"],
        "iterations": result.iterations,
        "config": config_to_dict(config),
        "best_on_validation": {**figures["best_on_validation"],
                               "validation": _json_safe(result.best_metrics)},
        "history": _json_safe(result.history),
        "skipped_files": sorted(skipped),
    }


def write_tables(out: Path, set_name: str, tasks: Sequence[str]) -> list[Path]:
    """Table 1 and Table 2 (markdown + CSV) from every results file in `out`."""
    results = {}
    for path in sorted((out / "results").glob("*.json")):
        results[path.stem] = json.loads(path.read_text("utf-8"))
    written = []
    for metric in METRICS:
        counts = row_counts(results, metric)
        suffix = "" if metric == "clip" else f"_{metric}"
        for number, table in ((1, table1(counts, tasks, set_name, metric)),
                              (2, table2(counts, tasks, set_name, metric))):
            for ext, text in (("md", table.markdown()), ("csv", table.csv())):
                path = out / f"table{number}{suffix}.{ext}"
                write_text(path, text)
                written.append(path)
    return written


def claim_out(out: Path, set_path: Path) -> None:
    """Refuse an `--out` that is not an empty folder or an earlier grid's; mark it ours."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExperimentError(f"--out {out} exists and is not a folder")
    marker = out / MARKER
    if out.is_dir() and any(out.iterdir()):
        problem = _marker_problem(marker)
        if problem is not None:
            entries = sorted(p.name for p in out.iterdir())
            raise ExperimentError(
                f"--out {out} is not empty ({entries[0]}) and is not an experiments grid's "
                f"folder ({problem}); choose a new or empty folder")
        # The grid writes into these: a link would send a table or plot elsewhere.
        for name in ("runs", "results", "plots", *(p.name for p in out.glob("table*"))):
            if (out / name).is_symlink():
                raise ExperimentError(f"--out {out}: {name} is a symbolic link, which the "
                                      "grid never makes; refusing to write through it")
    if not marker.is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / MARKER, json.dumps({"command": "experiments",
                                             "set": str(set_path.resolve())}) + "\n")


def _marker_problem(marker: Path) -> str | None:
    """Why `marker` does not prove the folder a grid's (None: it does)."""
    if marker.is_symlink() or not marker.is_file():
        return f"no {MARKER}"
    try:
        document = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{MARKER} is not the grid's"
    if not (isinstance(document, dict) and document.get("command") == "experiments"):
        return f"{MARKER} is not the grid's"
    return None


def write_text(path: Path, text: str) -> None:
    """Atomically: an interrupted grid never leaves half a table or results file."""
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


def _check_finished(out: Path, run: GridRun, config: TrainConfig) -> None:
    path = _result_path(out, run)
    if not path.is_file():
        return
    try:
        document = json.loads(path.read_text("utf-8"))
        stored = document.get("config", {}) if isinstance(document, dict) else None
    except (OSError, ValueError) as exc:
        stored = None
        why = one_line(exc)
    else:
        why = "not a results object"
    if not isinstance(stored, dict):
        raise ExperimentError(f"{path}: run {run.name}'s results file cannot be read ({why}); "
                              "delete it to rerun that run")
    wanted = json.loads(json.dumps(config_to_dict(config)))
    differ = sorted(k for k in set(stored) | set(wanted)
                    if stored.get(k) != wanted.get(k) and k not in _CHANGEABLE)
    if differ:
        raise ExperimentError(
            f"{path}: run {run.name} finished with other settings ({differ[0]}: "
            f"{stored.get(differ[0])!r}, now {wanted.get(differ[0])!r}); "
            "use another --out, or delete that file to rerun it")


# Settings that do not change what a finished run computed.
_CHANGEABLE = {"workers", "log_every", "save_every", "device"}


def _plot(out: Path, run: GridRun, record: dict[str, Any], set_name: str) -> None:
    chance = {task: 1.0 / len(figures["clip"]["per_class"])
              for task, figures in record["tasks"].items() if figures.get("clip")}
    title = f"{set_name}: {run.row[0]} {run.row[1]}".replace(" -", "")
    plot_history(record["history"], run.tasks, _plot_path(out, run), title, chance)


def _plot_path(out: Path, run: GridRun) -> Path:
    return out / "plots" / f"{run.name}.png"


def _result_path(out: Path, run: GridRun) -> Path:
    return out / "results" / f"{run.name}.json"


def _json_safe(value: Any) -> Any:
    """NaN (a task with nothing scored) as None: results files are strict JSON."""
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _counts(scores: Any) -> dict[str, Any] | None:
    if scores is None:
        return None
    return {"correct": scores.correct, "total": scores.total, "per_class": scores.per_class}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = EvalConfig()
    parser.add_argument("--config", type=Path, required=True, help="the set config (YAML)")
    parser.add_argument("--train-config", type=Path, default=DEFAULT_TRAIN_CONFIG,
                        help="training config every run starts from")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: experiments/<set name>)")
    parser.add_argument("--only", default=None,
                        help="comma-separated run names to run (default: every run)")
    parser.add_argument("--list", action="store_true", help="print the grid's runs and exit")
    parser.add_argument("--eval-clips", type=int, default=d.num_eval_clips,
                        help="evenly spaced clips per test video (video accuracy)")
    parser.add_argument("--eval-batch-size", type=int, default=d.batch_size,
                        help="clips per forward pass when scoring")
    parser.add_argument("--eval-workers", type=int, default=d.num_workers,
                        help="DataLoader workers when scoring")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="training settings for every run, e.g. iterations=500")


def run(args: argparse.Namespace) -> int:
    try:
        set_config = load_set(args.config)
        grid = paper_grid(list(set_config.tasks))
        if args.list:
            for r in grid:
                print(f"{r.name:<22} {r.row[0]:<10} {r.row[1]:<10} {' '.join(r.overrides)}")
            return 0
        out = args.out or Path("experiments") / set_config.name
        eval_config = EvalConfig(batch_size=args.eval_batch_size, num_workers=args.eval_workers,
                                 num_eval_clips=args.eval_clips)
        only = [n.strip() for n in (args.only or "").split(",") if n.strip()]
        if not out.exists():
            check_creatable(out)  # before hours of training, not when the tables are written
        outcome = run_grid(args.config, out, args.train_config, args.overrides, only,
                           eval_config)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except DatasetError as exc:
        print(f"error: {exc} (set config {args.config})", file=sys.stderr)
        return 2
    except (SettingsError, ExperimentError, CheckpointError, ValueError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"finished {len(outcome.finished)} run(s); tables in {out}")
    print((out / "table1.md").read_text("utf-8"))
    print((out / "table2.md").read_text("utf-8"))
    if outcome.failed:
        print(f"failed: {', '.join(outcome.failed)} (see the log); run again to retry",
              file=sys.stderr)
        return 1
    return 130 if outcome.interrupted else 0
