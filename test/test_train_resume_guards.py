"""--resume refuses, in one line and before any training, a state it cannot trust.

A missing or unreadable `resume.safetensors` (a FIFO, a link to a device, a link
loop, a folder) used to restart the run from iteration 0 over its checkpoints; a
set whose class list changed used to resume with swapped labels. Only a run
provably stopped before its first save (no state, no checkpoint) starts again.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from test_train_helpers import TINY_SET, tiny_config

from mtl_perception.checkpoint import content_digest
from training.__main__ import main
from training.synthetic.writer import generate
from training.train.resume import (
    DIGEST_KIND,
    STATE_FILE,
    STATE_KEY,
    RunDirError,
    TrainingState,
    load_state,
    save_state,
)
from training.train.trainer import train

# Two classes per task, four videos each: renders in well under a second.
SMALL_SET = replace(TINY_SET, actions=("Walk", "Jump"), gestures=("wave", "push"),
                    actions_per_class=4, gestures_per_class=4)
RUN = ("iterations=2", "val_every=2", "save_every=2", "val_max_per_task=2")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resume_guard_set")
    generate(SMALL_SET, folder, workers=1)
    return folder


@pytest.fixture(scope="module")
def finished_run(small_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("resume_guard_runs") / "run"
    train(tiny_config(small_set / "set.yaml", *RUN), run, progress=False, tensorboard=False)
    return run


def _snapshot(folder: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry's kind and content (a link's target), never opening a FIFO."""
    out: dict[str, tuple[str, bytes | str]] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            out[name] = ("link", os.readlink(path))
        elif path.is_file():
            out[name] = ("file", path.read_bytes())
        else:
            out[name] = ("dir" if path.is_dir() else "other", "")
    return out


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize(("kind", "words"), [
    ("missing", "not found"), ("dangling link", "not found"), ("fifo", "is a FIFO"),
    ("link to /dev/zero", "is a character device"), ("link loop", "symbolic links"),
    ("folder", "is a directory"),
])
def test_an_unusable_state_is_refused_in_one_line_and_nothing_changes(
        finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        kind: str, words: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    state = run / STATE_FILE
    state.unlink()
    {"missing": lambda: None, "dangling link": lambda: state.symlink_to(tmp_path / "gone"),
     "fifo": lambda: os.mkfifo(state), "link to /dev/zero": lambda: state.symlink_to("/dev/zero"),
     "link loop": lambda: state.symlink_to(state), "folder": state.mkdir}[kind]()
    before = _snapshot(run)
    assert main(["train", "--resume", str(run)]) == 2
    errors = _errors(caplog)
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert str(state) in errors[0] and words in errors[0], errors[0]
    assert "training settings" not in caplog.text  # refused before any training
    assert _snapshot(run) == before
    if kind == "missing":  # the checkpoints prove the run had saved a state
        assert "the run saved best.safetensors" in errors[0]


def test_a_run_stopped_before_its_first_save_starts_again(
        finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No state and no checkpoint: nothing a restart could overwrite (SIGTERM during
    start-up, a crash in the first iterations), so --resume trains from iteration 0."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    for name in (STATE_FILE, "best.safetensors", "last.safetensors"):
        (run / name).unlink()
    assert main(["train", "--resume", str(run)]) == 0
    assert "stopped before its first save" in caplog.text
    assert (run / STATE_FILE).is_file() and (run / "last.safetensors").is_file()


def _strip_class_record(path: Path) -> None:
    """Rewrite a state as the trainer wrote it before states recorded their classes."""
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads((handle.metadata() or {})[STATE_KEY])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    del document["classes"], document["sha256"]
    document["sha256"] = content_digest(json.loads(json.dumps(document)), tensors, DIGEST_KIND)
    save_file(tensors, str(path), metadata={STATE_KEY: json.dumps(document)})


@pytest.mark.parametrize("recorded_in", ["state", "last checkpoint"])
def test_a_set_whose_classes_changed_is_refused_before_training(
        small_set: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        recorded_in: str) -> None:
    """Swapped lines in classInd.txt resumed with swapped labels; an added class died
    with torch's first line, naming nothing. A state from before the class record is
    checked against the run's last checkpoint."""
    torch.set_num_threads(1)
    data = tmp_path / "set"
    shutil.copytree(small_set, data)
    run = tmp_path / "run"
    train(tiny_config(data / "set.yaml", *RUN), run, progress=False, tensorboard=False)
    if recorded_in == "last checkpoint":
        _strip_class_record(run / STATE_FILE)
    class_list = data / "ucfTrainTestlist" / "classInd.txt"
    original = class_list.read_text()
    assert original.splitlines()[:2] == ["1 Walk", "2 Jump"]
    before = _snapshot(run)
    for text, expected in [
        ("1 Jump\n2 Walk\n", "task action: class 0 is 'Walk' in the run, 'Jump' in the set"),
        (original + "3 Squat\n", "task action: class 2 is 'Squat' in the set, but the run has "
                                 "2 classes"),
    ]:
        class_list.write_text(text)
        caplog.clear()
        assert main(["train", "--resume", str(run), "iterations=3"]) == 2
        errors = _errors(caplog)
        assert len(errors) == 1 and "\n" not in errors[0], errors
        assert str(run / STATE_FILE) in errors[0] and expected in errors[0], errors[0]
        assert "training settings" not in caplog.text
        assert _snapshot(run) == before
    class_list.write_text(original)
    assert main(["train", "--resume", str(run), "iterations=3"]) == 0


def test_a_state_that_does_not_fit_the_model_names_the_first_difference(
        tmp_path: Path) -> None:
    """torch's message is many lines; the refusal is one, naming a key and the shapes."""
    path = tmp_path / STATE_FILE
    model, weighting = torch.nn.Sequential(torch.nn.Linear(2, 3)), torch.nn.Module()
    save_state(path, model, weighting, torch.optim.Adam(model.parameters()),
               torch.amp.GradScaler("cpu", enabled=False), TrainingState(), {"action": ["a"]})

    def refusal(other: torch.nn.Module) -> str:
        with pytest.raises(RunDirError) as caught:
            load_state(path, other, weighting, torch.optim.Adam(other.parameters()),
                       torch.amp.GradScaler("cpu", enabled=False))
        assert "\n" not in str(caught.value)
        return str(caught.value)

    wider = refusal(torch.nn.Sequential(torch.nn.Linear(2, 4)))
    assert wider.endswith("state does not fit this run's model: size mismatch for '0.weight': "
                          "[3, 2] in the state, [4, 2] in this run's model (and 1 more)"), wider
    deeper = refusal(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)))
    assert deeper.endswith("missing key '1.weight' (and 1 more)"), deeper
    other = refusal(torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(2, 3)))
    assert "missing key '1.weight' (and 1 more); unexpected key '0.bias' (and 1 more)" in other


def test_fine_tuning_into_the_run_that_holds_its_init_checkpoint_is_refused(
        finished_run: Path, small_set: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """init=RUN/best.safetensors --out RUN --overwrite deleted the checkpoint it started
    from (exit 0)."""
    from training.train.resume import RunDirError, check_new_run_dir

    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    before = _snapshot(run)
    init = run / "best.safetensors"
    with pytest.raises(RunDirError, match=r"best.safetensors is an input of this run and a "
                                          r"file it writes"):
        check_new_run_dir(run, True, [init])
    assert check_new_run_dir(run, True, [tmp_path / "elsewhere.safetensors"])
    config = tiny_config(small_set / "set.yaml", *RUN, f"init={init}")
    with pytest.raises(RunDirError):
        train(config, run, overwrite=True, progress=False, tensorboard=False)
    assert _snapshot(run) == before


def test_a_new_run_never_goes_inside_another_commands_output(tmp_path: Path) -> None:
    """train --out inside a synthetic set (or a bag, an evaluation) wrote files that
    output's manifest does not list: synth --overwrite refused that set for good."""
    from mtl_perception.manifest import write_manifest
    from training.tools.to_bag import OWNER as TO_BAG
    from training.train.resume import RunDirError, check_new_run_dir

    bag = tmp_path / "bag"
    bag.mkdir()
    write_manifest(bag, TO_BAG, {}, None, complete=True)
    for inside in (bag / "run", bag / "runs" / "a"):
        with pytest.raises(RunDirError, match=rf"--out {inside} lies inside {bag}, an earlier "
                                              "dataset_to_bag output"):
            check_new_run_dir(inside, False)
        assert not inside.exists()
    synthetic = tmp_path / "set"
    synthetic.mkdir()
    (synthetic / "synth.json").write_text('{"generator": "training.synthetic", '
                                          '"manifest_version": 2}')
    with pytest.raises(RunDirError, match="an earlier training.synthetic output"):
        check_new_run_dir(synthetic / "run", False)
    assert not check_new_run_dir(tmp_path / "run", False)  # beside them is fine


@pytest.mark.parametrize("kind", ["link", "fifo", "bad row", "superscript"])
def test_a_log_that_is_no_plain_log_is_refused_on_resume(
        finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        kind: str) -> None:
    """Resuming wrote the rows through a link into a user's file, blocked forever on a
    FIFO, and raised a ValueError traceback on an edited row."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    log = run / "train.csv"
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    if kind in ("bad row", "superscript"):
        log.write_text("iteration,loss\n" + ("abc" if kind == "bad row" else "\u00b2") + ",1\n")
    else:
        log.unlink()
        log.symlink_to(notes) if kind == "link" else os.mkfifo(log)
    assert main(["train", "--resume", str(run), "iterations=4"]) == 2
    (error,) = _errors(caplog)
    assert "train.csv" in error and "\n" not in error
    assert {"link": "symbolic link", "fifo": "FIFO", "bad row": "train.csv:2: iteration "
            "'abc' is not a whole number", "superscript": "train.csv:2: iteration '\u00b2' "
            "is not a whole number"}[kind] in error
    assert notes.read_text() == "mine\n"
