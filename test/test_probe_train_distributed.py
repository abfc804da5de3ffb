"""Probe of torchrun training: its environment, a process that dies, skips on one rank.

- RANK/WORLD_SIZE that are no numbers were an int() traceback; a RANK outside the
  world waited for a rank 0 forever; a rendezvous without MASTER_ADDR was a
  traceback: each is now one line, exit 2, before anything is written.
- A process dying mid-run left the others with gloo's multi-line traceback; now each
  survivor says in one line that the group failed and which saved state to resume.
- A video found unreadable on rank 1 only was missing from the run's `skipped`
  count, summary and state (only rank 0's were known); now the union of all ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from test_train_helpers import CONFIG, TINY_OVERRIDES, tiny_config, tiny_set

from training.__main__ import main
from training.train import distributed as D
from training.train.resume import STATE_FILE, STATE_KEY
from training.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# Rank 1 ends hard (as a SIGKILL or a lost machine would) in its 3rd step, after the
# state of iteration 2 was saved; then the usual command line runs.
DYING_RANK = """
import os, sys
from training.train import steps
if os.environ.get("RANK") == "1":
    step = steps.Stepper.step
    calls = []
    def dying_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os._exit(9)
        return step(self, *args, **kwargs)
    steps.Stepper.step = dying_step
from training.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def set_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_set(tmp_path_factory)


@pytest.mark.parametrize(("env", "words"), [
    ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not a whole number"),
    ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK=5 is outside WORLD_SIZE=2"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE='0'"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"}, "LOCAL_RANK='-1'"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "cannot join the process group"),  # no MASTER_ADDR
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "abc"},
     "cannot join the process group"),
])
def test_a_junk_torchrun_environment_is_one_line(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], words: str) -> None:
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(D.DistributedError) as caught:
        D.setup("cpu")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_the_command_line_says_it_and_writes_nothing(
        set_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "run"
    assert main(["train", "--config", str(CONFIG), f"set={set_yaml}", *TINY_OVERRIDES,
                 "iterations=1", "--out", str(out)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "RANK=3 is outside WORLD_SIZE=2" in errors[0]
    assert not out.exists()


def _skipped(state: Path) -> list[str]:
    with safe_open(str(state), framework="pt") as handle:
        return list(json.loads((handle.metadata() or {})[STATE_KEY])["state"]["skipped"])


def test_a_dying_rank_is_one_line_on_the_others_and_skips_of_every_rank_count(
        set_yaml: Path, tmp_path: Path) -> None:
    """2 processes (gloo), every other training action video garbage, rank 1 dies in
    iteration 3. Rank 0 names the failure and the state of iteration 2 in one line (no
    traceback of ours), and that state lists the videos both ranks skipped: those a
    single process skips on the same global batches."""
    torch.set_num_threads(1)
    copy = tmp_path / "set"
    shutil.copytree(set_yaml.parent, copy)
    listed = (copy / "ucfTrainTestlist" / "trainlist01.txt").read_text().split("\n")
    for line in listed[1::2]:
        if line.strip():
            (copy / "UCF-101" / line.split()[0]).write_bytes(b"not a video")
    settings = [f"set={copy / 'set.yaml'}", *TINY_OVERRIDES, "save_every=2",
                "val_every=100", "val_max_per_task=1"]
    script = tmp_path / "dying_rank.py"
    script.write_text(DYING_RANK)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path)}  # torchrun's agent leaves a torchelastic_* folder there
    # the agent notices the dead rank only every 5 s: rank 0 has said its line by then
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "--monitor-interval", "5", str(script), "train",
               "--config", str(CONFIG), *settings, "iterations=20", "--out",
               str(tmp_path / "two"), "--progress", "lines"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("[rank0]")]
    assert not any("Traceback" in line for line in ours), "\n".join(ours[-20:])
    lines = [line for line in done.stderr.splitlines()
             if "ERROR training.train.cli: rank 0: the process group failed" in line]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "the state saved at iteration 2 is on disk" in lines[0]

    one = train(tiny_config(copy / "set.yaml", *settings[len(TINY_OVERRIDES) + 1:],
                            "iterations=2"), tmp_path / "one", progress=False, tensorboard=False)
    expected = _skipped(tmp_path / "one" / STATE_FILE)
    assert expected == one.skipped_files and expected  # the single process skipped some
    assert _skipped(tmp_path / "two" / STATE_FILE) == expected
