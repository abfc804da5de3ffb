"""The experiment grid: run list, table layout, skip / resume, refusals.

`train` is replaced by a stand-in that writes a real checkpoint whose heads are
rigged to always answer class 0, so every figure in the tables is known by
hand: the test split holds 2 videos of each of 2 action classes (class 0: 50%)
and 1 video of each of 3 gesture classes (class 0: 33.33%); cumulative =
(2 + 1) / (4 + 3) = 42.86% (the mean of the tasks would be 41.67%).
The real scoring (`training.evaluation.scoring`) runs on real videos.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers_datasets import write_yaml

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig
from training.datasets.sets import build_task_split, load_set
from training.datasets.video import write_video
from training.experiments.grid import ExperimentError, paper_grid, run_grid
from training.experiments.tables import ROWS, RowCounts, table1, table2
from training.train.config import TrainConfig
from training.train.resume import STATE_FILE
from training.train.trainer import TrainResult

CLASSES = {"action": ["jump", "run"], "gesture": ["left", "right", "up"]}
TEST_PER_CLASS = {"action": 2, "gesture": 1}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("grid")
    rng = np.random.default_rng(0)
    tasks = {}
    for task, classes in CLASSES.items():
        for split, count in (("train", 1), ("test", TEST_PER_CLASS[task])):
            for name in classes:
                for i in range(count):
                    frames = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
                    write_video(d / task / split / name / f"{i}.avi", frames, fps=10.0)
        tasks[task] = [{"format": "folders", "root": f"{task}/train",
                        "test_root": f"{task}/test"}]
    set_file = write_yaml(d / "set.yaml", {"name": "tiny", "class_merge": "none", "tasks": tasks})
    train_file = write_yaml(d / "train.yaml", {
        "set": "set.yaml", "pretrained": "none", "iterations": 4, "workers": 0,
        "val_split": "holdout",
        "model": {"width": 4}, "clip": {"clip_length": 4, "resize": [32, 32], "crop": [32, 32]},
    })
    return set_file, train_file


class FakeTrain:
    """Writes last.safetensors (heads answer class 0), best.safetensors (class 1) and a
    two-point history.

    `interrupt`: run names that stop (state file written) on their first call;
    `fail`: run names that raise.
    """

    def __init__(self, interrupt: tuple[str, ...] = (), fail: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, bool, bool]] = []
        self.interrupt, self.fail = set(interrupt), set(fail)

    def __call__(self, config: TrainConfig, run_dir: Path, *, resume: bool = False,
                 overwrite: bool = False) -> TrainResult:
        name = run_dir.name
        self.calls.append((name, resume, overwrite))
        run_dir.mkdir(parents=True, exist_ok=True)  # as the trainer's run.json would
        if name in self.fail:
            raise RuntimeError("diverged")
        if name in self.interrupt and not resume:
            (run_dir / STATE_FILE).write_bytes(b"state")
            return TrainResult(run_dir, run_dir / "best.safetensors",
                               run_dir / "last.safetensors", 2, interrupted=True)
        set_config = load_set(config.set)
        names = [tuple(build_task_split(set_config, t, "train").class_names)
                 for t in config.tasks]
        model_config = ModelConfig(method=config.method, arch=config.model.arch,
                                   width=config.model.width, task_names=config.tasks,
                                   num_classes=tuple(len(n) for n in names),
                                   cross_stitch_share=config.model.cross_stitch_share)
        model = build_model(model_config)
        with torch.no_grad():
            for head in model.heads:
                head.weight.zero_()
                head.bias.zero_()
                head.bias[0] = 5.0
        pre = PreprocessConfig(clip_length=4, resize=(32, 32), crop=(32, 32))
        info = CheckpointInfo(model=model_config, class_names=tuple(names), preprocess=pre)
        save_checkpoint(run_dir / "last.safetensors", model, info)
        with torch.no_grad():
            for head in model.heads:
                head.bias.zero_()
                head.bias[1] = 5.0
        save_checkpoint(run_dir / "best.safetensors", model, info)
        history: list[dict[str, Any]] = [
            {"iteration": i, "accuracy": {t: 0.25 * k for k, t in enumerate(config.tasks, 1)},
             "cumulative": 0.3} for i in (2, 4)]
        return TrainResult(run_dir, run_dir / "best.safetensors", run_dir / "last.safetensors",
                           4, best_metrics=history[-1], history=history)


def _table(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_grid_runs_skips_and_resumes(files: tuple[Path, Path], tmp_path: Path) -> None:
    set_file, train_file = files
    out = tmp_path / "out"
    grid = paper_grid(["action", "gesture"])
    assert len(grid) == 16 and [r.row for r in grid[3:]] == list(ROWS[1:2]) + list(ROWS[2:])

    first = FakeTrain(interrupt=("hps_dwa",))
    outcome = run_grid(set_file, out, train_file, ["iterations=4"], train_fn=first)
    assert outcome.interrupted and outcome.finished == [r.name for r in grid[:5]]
    assert [c[0] for c in first.calls] == [r.name for r in grid[:6]]
    assert not any(resume for _, resume, _ in first.calls)
    table = _table(out / "table2.csv")
    assert table[0] == ["learning", "loss", "cumulative"]  # not a paper set: ours only
    assert table[1] == ["STL r3d18", "-", "42.86"]  # the two STL runs' counts pooled
    assert table[3] == ["HPS", "average", "42.86"] and table[4] == ["HPS", "dwa", "-"]

    second = FakeTrain(fail=("sps0.8_dwa",))
    outcome = run_grid(set_file, out, train_file, ["iterations=4"], train_fn=second)
    assert not outcome.interrupted and outcome.failed == ["sps0.8_dwa"]
    # Finished runs are not trained again; the interrupted one resumes from its state.
    assert second.calls[0] == ("hps_dwa", True, False)
    assert [c[0] for c in second.calls] == [r.name for r in grid[5:]]
    table1_rows = _table(out / "table1.csv")
    assert table1_rows[0] == ["learning", "loss", "action", "gesture"]
    assert [tuple(r[:2]) for r in table1_rows[1:]] == list(ROWS)
    for row in table1_rows[1:]:
        expected = ["-", "-"] if row[:2] == ["SPS s=0.8", "dwa"] else ["50.00", "33.33"]
        assert row[2:] == expected, row
    assert _table(out / "table2_video.csv")[12] == ["LWS", "average", "42.86"]
    markdown = (out / "table1.md").read_text()
    assert "| STL r3d34 | - | 50.00 | 33.33 |" in markdown and "clip accuracy" in markdown
    plots = sorted(p.stem for p in (out / "plots").glob("*.png"))
    assert len(plots) == 15 and "sps0.8_dwa" not in plots
    assert (out / "plots" / "lws_average.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "results" / "stl_r3d34_gesture.json").read_text())
    assert record["tasks"]["gesture"]["clip"] == {
        "correct": 1, "total": 3, "per_class": {"left": 1.0, "right": 0.0, "up": 0.0}}

    third = FakeTrain()  # only the failed run is left
    run_grid(set_file, out, train_file, ["iterations=4"], train_fn=third)
    assert third.calls == [("sps0.8_dwa", False, True)]  # its folder exists, no state
    # Other settings than a finished run's are refused, not mixed into the tables.
    with pytest.raises(ExperimentError, match="lr"):
        run_grid(set_file, out, train_file, ["iterations=4", "lr=0.5"], train_fn=FakeTrain())


def test_only_and_unknown_runs(files: tuple[Path, Path], tmp_path: Path) -> None:
    set_file, train_file = files
    fake = FakeTrain()
    run_grid(set_file, tmp_path, train_file, only=["lws_average"], train_fn=fake)
    assert [c[0] for c in fake.calls] == ["lws_average"]
    assert _table(tmp_path / "table2.csv")[12] == ["LWS", "average", "42.86"]
    (tmp_path / "plots" / "lws_average.png").unlink()  # a deleted plot is redrawn, not retrained
    again = FakeTrain()
    run_grid(set_file, tmp_path, train_file, only=["lws_average"], train_fn=again)
    assert again.calls == [] and (tmp_path / "plots" / "lws_average.png").is_file()
    with pytest.raises(ExperimentError, match="unknown run"):
        run_grid(set_file, tmp_path, train_file, only=["hps_magic"], train_fn=fake)


def test_paper_figures_sit_beside_ours() -> None:
    counts = {("HPS", "average"): RowCounts({"action": 3, "gesture": 1},
                                            {"action": 4, "gesture": 4})}
    t1 = table1(counts, ["action", "gesture"], "set2", "clip")
    assert t1.header == ["learning", "loss", "action (ours)", "action (paper)",
                         "gesture (ours)", "gesture (paper)"]
    assert t1.rows[2] == ["HPS", "average", "75.00", "64.34", "25.00", "27.86"]
    assert t1.rows[0] == ["STL r3d18", "-", "-", "58.26", "-", "20.54"]
    t2 = table2(counts, ["action", "gesture"], "set4", "clip")
    assert t2.rows[2] == ["HPS", "average", "50.00", "72.44"]
    assert t2.rows[13] == ["LWS", "automatic", "-", "73.71"]


def test_tables_never_choose_on_the_test_split(files: tuple[Path, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid refuses validation on the test split; the tables hold the last checkpoint
    (the paper's protocol), the best-on-validation one is recorded apart; a holdout run's
    validation reads only training videos."""
    set_file, train_file = files
    with pytest.raises(ExperimentError, match="val_split test would pick checkpoints on the "
                                              "test split"):
        run_grid(set_file, tmp_path / "a", train_file, ["val_split=test"], train_fn=FakeTrain())
    out = tmp_path / "b"
    run_grid(set_file, out, train_file, only=["hps_average"], train_fn=FakeTrain())
    record = json.loads(next(out.rglob("hps_average*.json")).read_text())
    assert record["checkpoint"].endswith("last.safetensors")
    assert record["best_on_validation"]["checkpoint"].endswith("best.safetensors")
    # last answers class 0, best class 1: each record holds its own checkpoint's figures.
    last, best = record["tasks"]["action"]["clip"], record["best_on_validation"]["tasks"][
        "action"]["clip"]
    assert last != best

    from training.train import data as data_module
    from training.train.config import load_train_config

    splits: list[str] = []
    real = data_module.build_task_split

    def watched(set_config: Any, task: str, split: str) -> Any:
        splits.append(split)
        return real(set_config, task, split)

    monkeypatch.setattr(data_module, "build_task_split", watched)
    rng = np.random.default_rng(1)
    for name in CLASSES["action"]:  # two training videos a class: one can be held out
        for i in range(2):
            write_video(tmp_path / "set" / name / f"{i}.avi",
                        rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=10.0)
    two = write_yaml(tmp_path / "two.yaml", {"name": "two", "class_merge": "none", "tasks": {
        "action": [{"format": "folders", "root": "set", "test_root": "set"}]}})
    config = load_train_config(train_file, [f"set={two}", "val_holdout=0.5"])
    run = data_module.build_data(config)
    assert splits and set(splits) == {"train"}  # the test split is never read
    held = {str(s.path) for split in run.val_splits.values() for s in split.samples}
    trained = {str(sample.path) for sample in run.train.samples}
    assert held and not held & trained


def test_the_shipped_paper_configs_never_validate_on_test() -> None:
    from training.train.config import load_train_config

    root = Path(__file__).resolve().parents[1] / "config" / "train"
    paper = load_train_config(root / "paper.yaml")
    exact = load_train_config(root / "paper_exact.yaml")
    assert paper.val_split == "holdout" and exact.val_split == "train"
    assert paper.clip.flip_probability == 0.5 and exact.clip.flip_probability == 0.0
    assert (paper.iterations, paper.batch_size, paper.lr) == (20000, 8, 0.001)
    assert (exact.iterations, exact.model, exact.clip.crop) == (
        paper.iterations, paper.model, paper.clip.crop)


def test_a_folder_that_is_not_a_grids_is_refused_before_anything_is_written(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    """The grid writes table1.md, plots/<run>.png, ...: in a user's folder it overwrote
    their files with exit 0. Now only an empty folder or an earlier grid's is used."""
    set_file, train_file = files
    out = tmp_path / "mine"
    (out / "plots").mkdir(parents=True)
    (out / "table1.md").write_text("mine")
    (out / "plots" / "stl_r3d18_action.png").write_text("mine")
    fake = FakeTrain()
    with pytest.raises(ExperimentError, match=r"--out .*mine is not empty \(plots\) and is not "
                                              r"an experiments grid's folder"):
        run_grid(set_file, out, train_file, only=["lws_average"], train_fn=fake)
    assert fake.calls == [] and (out / "table1.md").read_text() == "mine"
    assert sorted(p.name for p in out.rglob("*")) == ["plots", "stl_r3d18_action.png",
                                                      "table1.md"]
    (out / "experiments.json").write_text('{"my": 1}')  # a file of that name is not enough
    with pytest.raises(ExperimentError, match=r"experiments.json is not the grid's"):
        run_grid(set_file, out, train_file, only=["lws_average"], train_fn=fake)
    assert fake.calls == [] and (out / "table1.md").read_text() == "mine"
    grid = tmp_path / "grid"  # a new folder is marked, then resumed as the grid's own
    run_grid(set_file, grid, train_file, only=["lws_average"], train_fn=FakeTrain())
    assert json.loads((grid / "experiments.json").read_text())["command"] == "experiments"
    run_grid(set_file, grid, train_file, only=["lws_average"], train_fn=FakeTrain())
    (grid / "results" / "lws_average.json").write_text("not json")
    with pytest.raises(ExperimentError, match=r"lws_average.json: run lws_average's results "
                                              r"file cannot be read"):
        run_grid(set_file, grid, train_file, only=["lws_average"], train_fn=FakeTrain())
    (grid / "results" / "lws_average.json").unlink()
    elsewhere = tmp_path / "user_plots"
    elsewhere.mkdir()
    (grid / "plots").rename(tmp_path / "old_plots")
    (grid / "plots").symlink_to(elsewhere)
    with pytest.raises(ExperimentError, match=r"plots is a symbolic link"):
        run_grid(set_file, grid, train_file, only=["lws_average"], train_fn=FakeTrain())
    assert list(elsewhere.iterdir()) == []


def test_the_default_training_config_exists() -> None:
    from training.experiments.grid import DEFAULT_TRAIN_CONFIG

    assert DEFAULT_TRAIN_CONFIG.is_file(), DEFAULT_TRAIN_CONFIG  # was training/config/...
    assert DEFAULT_TRAIN_CONFIG.parts[-3:] == ("config", "train", "paper.yaml")


def test_only_left_out_means_every_run_and_help_says_so() -> None:
    """--only's empty-string default printed "(default: )" in --help."""
    import argparse

    from mtl_perception.help_format import DefaultsHelpFormatter
    from training.experiments.grid import add_arguments

    parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    add_arguments(parser)
    assert parser.parse_args(["--config", "x.yaml"]).only is None
    text = " ".join(parser.format_help().split())
    assert "comma-separated run names to run (default: every run)" in text
    assert "(default: )" not in text
