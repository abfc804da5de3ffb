"""--resume after a Ctrl-C equals an uninterrupted run, bitwise on CPU."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from test_train_helpers import read_tensors, tiny_config, tiny_set

from training.__main__ import main
from training.train.resume import STATE_FILE
from training.train.trainer import stored_config, train


@pytest.fixture(scope="module")
def set_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_set(tmp_path_factory)


def _rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _interrupt_after_rows(csv_path: Path, rows: int) -> threading.Thread:
    """Send this process SIGINT (Ctrl-C) once the run has logged `rows` iterations."""

    def watch() -> None:
        for _ in range(3000):
            if csv_path.is_file() and len(csv_path.read_text().splitlines()) > rows:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.numerics
def test_resume_after_ctrl_c_is_bitwise_the_uninterrupted_run(
        set_yaml: Path, tmp_path: Path) -> None:
    """LWS with DWA (windows of 2 iterations) and a separate NES batch: the run with the
    most state (routing probabilities, DWA windows and lambdas, Adam moments, per-
    iteration assignment draws, random clip positions and flips). Whenever the Ctrl-C
    lands, the resumed run must end with the same bits as the uninterrupted one."""
    torch.set_num_threads(1)
    config = tiny_config(set_yaml, "method=lws", "weighting.method=dwa",
                         "weighting.dwa_window=2", "iterations=8", "val_every=8",
                         "val_max_per_task=2", "lws.nes_samples=2", "lws.sgd_samples=2",
                         "model.trainable_stages=2", "save_every=100")
    whole = train(config, tmp_path / "whole", progress=False, tensorboard=False)
    assert whole.iterations == 8

    run = tmp_path / "cut"
    # What the run must restore: Python's default, or SIG_IGN when the suite runs in the
    # background of a non-interactive shell (nohup, `make test &`, some CI runners).
    before = signal.getsignal(signal.SIGINT)
    watcher = _interrupt_after_rows(run / "train.csv", rows=2)
    cut = train(config, run, progress=False, tensorboard=False)
    watcher.join()
    assert cut.interrupted and 2 <= cut.iterations < 8, cut.iterations
    assert signal.getsignal(signal.SIGINT) == before  # restored
    resumed = train(stored_config(run), run, resume=True, progress=False, tensorboard=False)
    assert resumed.iterations == 8 and not resumed.interrupted

    a, b = read_tensors(tmp_path / "whole" / STATE_FILE), read_tensors(run / STATE_FILE)
    assert set(a) == set(b)
    differing = [k for k in a if not k.startswith("rng.") and not torch.equal(a[k], b[k])]
    assert differing == []
    assert not torch.equal(a["model.routing_probs"], torch.full_like(a["model.routing_probs"], .5))
    assert int(a["weighting.windows_done"]) == 4
    last_a, last_b = read_tensors(whole.last), read_tensors(resumed.last)
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    assert resumed.history == whole.history
    logs = [_rows(p / "train.csv") for p in (tmp_path / "whole", run)]
    strip = [[row[:-3] + row[-2:] for row in log] for log in logs]  # clips/s differs
    assert strip[0] == strip[1]


def test_resume_of_a_finished_run_returns_at_once_and_can_extend(
        set_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    config = tiny_config(set_yaml, "iterations=2", "val_every=2", "val_max_per_task=2")
    run = tmp_path / "run"
    train(config, run, progress=False, tensorboard=False)
    again = train(stored_config(run), run, resume=True, progress=False, tensorboard=False)
    assert again.iterations == 2
    assert main(["train", "--resume", str(run), "iterations=3", "--progress", "lines"]) == 0
    assert "it 3/3" in capsys.readouterr().out
    assert main(["train", "--resume", str(run), "lr=0.1"]) == 2


def _flip_bit(path: Path, tensor: str) -> None:
    """Flip one bit in the middle of `tensor`'s bytes (the safetensors header stays valid)."""
    import json

    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    begin, end = header[tensor]["data_offsets"]
    data[8 + size + (begin + end) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_the_resumable_state_is_refused_and_fewer_iterations_too(
        set_yaml: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15, class 3: weights, optimiser moments and RNG state are all checksummed."""
    import shutil

    from safetensors import safe_open

    torch.set_num_threads(1)
    config = tiny_config(set_yaml, "iterations=2", "val_every=2", "val_max_per_task=2")
    run = tmp_path / "run"
    train(config, run, progress=False, tensorboard=False)
    state = run / STATE_FILE
    good = state.read_bytes()
    with safe_open(str(state), framework="pt") as handle:
        names = list(handle.keys())
    weight = next(n for n in names if n.startswith("model.") and "weight" in n)
    moment = next(n for n in names if n.startswith("optim.") and n.endswith("exp_avg"))
    last = (run / "last.safetensors").read_bytes()
    for tensor in (weight, moment, "rng.torch"):
        state.write_bytes(good)
        _flip_bit(state, tensor)
        caplog.clear()
        assert main(["train", "--resume", str(run), "iterations=3"]) == 2, tensor
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "fails its checksum" in errors[0], errors
        assert (run / "last.safetensors").read_bytes() == last
    edited = good.replace(b'\\"iteration\\": 2', b'\\"iteration\\": 3')
    assert edited != good
    state.write_bytes(edited)
    caplog.clear()
    assert main(["train", "--resume", str(run), "iterations=4"]) == 2
    assert "fails its checksum" in caplog.text
    state.write_bytes(good)
    caplog.clear()
    assert main(["train", "--resume", str(run), "iterations=1"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "has done 2 iterations; iterations=1 is fewer" in errors[0]
    shutil.copy(state, tmp_path / "kept")
    run_json = (run / "run.json").read_text()
    (run / "run.json").write_text(run_json.replace('"lr": 0.001', '"lr": 0.002'))
    assert (run / "run.json").read_text() != run_json
    caplog.clear()
    assert main(["train", "--resume", str(run), "iterations=3"]) == 2
    assert "run.json is corrupt or was edited" in caplog.text
    (run / "run.json").write_text(run_json)
    assert main(["train", "--resume", str(run), "iterations=3"]) == 0


def test_a_fine_tuned_run_resumes_without_its_init_file_and_keeps_its_origin(
        set_yaml: Path, tmp_path: Path) -> None:
    """resume.safetensors holds every weight: the `init:` file may move, and a file that
    now sits at its path does not change the provenance recorded at the start."""
    import hashlib

    from mtl_perception.checkpoint import read_checkpoint_info

    torch.set_num_threads(1)
    base = train(tiny_config(set_yaml, "iterations=1", "val_every=1", "val_max_per_task=2"),
                 tmp_path / "base", progress=False, tensorboard=False)
    init = tmp_path / "init.safetensors"
    base.best.rename(init)
    original = hashlib.sha256(init.read_bytes()).hexdigest()
    run = tmp_path / "tuned"
    tuned = train(tiny_config(set_yaml, "iterations=1", "val_every=1", "val_max_per_task=2",
                              f"init={init}"), run, progress=False, tensorboard=False)
    assert read_checkpoint_info(tuned.last).provenance["init"]["sha256"] == original
    init.rename(tmp_path / "moved.safetensors")
    assert main(["train", "--resume", str(run), "iterations=2"]) == 0  # not needed again
    (tmp_path / "base").rename(tmp_path / "other")
    (tmp_path / "other" / "last.safetensors").rename(init)  # another file at that path
    assert main(["train", "--resume", str(run), "iterations=3"]) == 0
    info = read_checkpoint_info(run / "last.safetensors")
    assert info.provenance["iteration"] == 3
    assert info.provenance["init"]["sha256"] == original
