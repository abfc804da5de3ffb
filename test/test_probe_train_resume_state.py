"""Probe of the resumable state and of a run whose videos go bad mid-run.

- A state without a checksum (what runs wrote before it existed, read as it comes)
  whose parts are damaged was a traceback from torch, `random` or the first
  validation (after the logs were rewritten); now one line, exit 2, nothing changed.
- A state copied from another run with other settings resumed silently, its stored
  learning rate replacing the run's; now refused naming the first differing setting.
- The `skipped` column of a resumed run counted only the videos found unreadable
  since the resume (the uninterrupted run counts every one so far).
- Every video of a task going unreadable mid-run (a dataset disk gone) was a
  RuntimeError traceback; now one line, exit 1, naming the task and the saved state.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from test_train_helpers import CONFIG, TINY_OVERRIDES, tiny_config, tiny_set, with_changes

from training.__main__ import main
from training.train import steps
from training.train.resume import STATE_FILE, STATE_KEY
from training.train.trainer import stored_config, train

RUN = ("iterations=2", "val_every=2", "save_every=2", "val_max_per_task=2")


@pytest.fixture(scope="module")
def set_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_set(tmp_path_factory)


@pytest.fixture(scope="module")
def finished_run(set_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("probe_state") / "run"
    train(tiny_config(set_yaml, *RUN), run, progress=False, tensorboard=False)
    return run


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _legacy_state(path: Path, damage: Callable[[dict[str, Any], dict[str, torch.Tensor]], None]
                  ) -> None:
    """Rewrite `path` as a state without a checksum, damaged by `damage`."""
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads((handle.metadata() or {})[STATE_KEY])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    document.pop("sha256")
    damage(document, tensors)
    save_file(tensors, str(path), metadata={STATE_KEY: json.dumps(document)})


def _first_moment(tensors: dict[str, torch.Tensor]) -> str:
    return next(k for k in sorted(tensors) if k.startswith("optim.") and k.endswith("exp_avg"))


DAMAGES: dict[str, Callable[[dict[str, Any], dict[str, torch.Tensor]], None]] = {
    "unknown state field": lambda d, t: d["state"].update(foo=1),
    "history not a list": lambda d, t: d["state"].update(history="x"),
    "no param groups": lambda d, t: d.pop("param_groups"),
    "python rng": lambda d, t: d["rng"].update(python=[1]),
    "torch rng cut": lambda d, t: t.update({"rng.torch": t["rng.torch"][:10]}),
    "moment misshapen": lambda d, t: t.update({_first_moment(t): t[_first_moment(t)][:1]}),
    "no step": lambda d, t: t.pop(_first_moment(t).replace("exp_avg", "step")),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_state_without_checksum_is_one_line_and_nothing_changes(
        finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        damage: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    _legacy_state(run / STATE_FILE, DAMAGES[damage])
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "iterations=3", "--progress", "lines"]) == 2
    errors = _errors(caplog)
    assert len(errors) == 1 and "resumable state is damaged" in errors[0], errors
    assert "\n" not in errors[0]
    assert _snapshot(run) == before


def test_an_undamaged_state_without_checksum_still_resumes(
        finished_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    _legacy_state(run / STATE_FILE, lambda d, t: d.pop("settings", None))
    assert main(["train", "--resume", str(run), "iterations=3", "--progress", "lines"]) == 0


def test_a_state_copied_from_a_run_with_other_settings_is_refused(
        set_yaml: Path, finished_run: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(1)
    other = tmp_path / "other"
    train(tiny_config(set_yaml, *RUN, "lr=0.01"), other, progress=False, tensorboard=False)
    shutil.copy(finished_run / STATE_FILE, other / STATE_FILE)  # same model, other lr
    before = _snapshot(other)
    assert main(["train", "--resume", str(other), "iterations=3"]) == 2
    errors = _errors(caplog)
    assert len(errors) == 1 and "other settings (lr:" in errors[0], errors
    assert _snapshot(other) == before


def _corrupt_set(set_yaml: Path, folder: Path) -> Path:
    """A copy of the set whose every other training action video is garbage."""
    shutil.copytree(set_yaml.parent, folder)
    listed = (folder / "ucfTrainTestlist" / "trainlist01.txt").read_text().split("\n")
    for line in listed[1::2]:
        if line.strip():
            (folder / "UCF-101" / line.split()[0]).write_bytes(b"not a video")
    return folder / "set.yaml"


def _column(path: Path, name: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [row[name] for row in csv.DictReader(handle)]


def test_a_resumed_run_counts_the_videos_skipped_before_it(
        set_yaml: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = tiny_config(_corrupt_set(set_yaml, tmp_path / "set"), "iterations=8",
                         "val_every=100", "save_every=100", "val_max_per_task=1",
                         "lr_schedule=constant")
    whole = train(config, tmp_path / "whole", progress=False, tensorboard=False)
    cut = tmp_path / "cut"
    train(with_changes(config, iterations=4), cut, progress=False, tensorboard=False)
    resumed = train(stored_config(cut, {"iterations": 8}), cut, resume=True, progress=False,
                    tensorboard=False)
    skipped = [_column(run / "train.csv", "skipped") for run in (tmp_path / "whole", cut)]
    assert int(skipped[0][4]) > 0  # the column has something to carry over
    assert skipped[0] == skipped[1]
    assert resumed.skipped_files == whole.skipped_files


def test_every_video_of_a_task_going_bad_mid_run_is_one_line_exit_1(
        set_yaml: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    copy = tmp_path / "set"
    shutil.copytree(set_yaml.parent, copy)
    gestures = sorted((copy / "nvGesture").rglob("*.avi"))
    step = steps.Stepper.step
    done = []

    def step_then_lose_the_disk(self: steps.Stepper, *args: Any, **kwargs: Any
                                ) -> steps.StepResult:
        done.append(1)
        if len(done) == 2:  # after the state of iteration 1 was saved
            for video in gestures:
                os.unlink(video)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(steps.Stepper, "step", step_then_lose_the_disk)
    run = tmp_path / "run"
    args = ["train", "--config", str(CONFIG), f"set={copy / 'set.yaml'}", *TINY_OVERRIDES,
            "iterations=20", "save_every=1", "val_every=100", "--out", str(run),
            "--progress", "lines"]
    assert main(args) == 1
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert "every training video of task gesture is unreadable" in errors[0]
    assert "the state saved at iteration" in errors[0] and "--resume" in errors[0]
    assert (run / STATE_FILE).is_file()



def test_the_state_is_saved_with_every_validation(
        set_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """val_every 2, save_every 100: the state was saved at the end only, so a run killed
    after the validation at iteration 2 (best/last written) could not be resumed: --resume
    said its state had been moved or deleted."""
    from training.train import trainer

    saved: list[int] = []
    original = trainer._Run._save_state

    def recording(self: Any) -> None:
        saved.append(self.state.iteration)
        original(self)

    monkeypatch.setattr(trainer._Run, "_save_state", recording)
    torch.set_num_threads(1)
    config = tiny_config(set_yaml, "iterations=4", "val_every=2", "save_every=100",
                         "val_max_per_task=1")
    train(config, tmp_path / "run", progress=False, tensorboard=False)
    assert saved == [2, 4]
