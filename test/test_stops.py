"""Every way of stopping is clean (issue 15, classes 2 and 4), with real child processes.

SIGTERM is handled like Ctrl-C by every command (`mtl_perception.exits`):
staged output removed, exit 143, one line. A partial folder left by SIGKILL
is recognised by its manifest and removed by the next run into the same
place. OS errors (a full disk, a name too long, a read-only folder) are one
line naming the path and the cause.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers_bag import frames, tiny_checkpoint, write_image_bag
from helpers_signals import signal_and_wait, start_ready_child

from mtl_perception import exits
from mtl_perception.bag.outputs import OWNER as EVAL_OWNER
from mtl_perception.outputs import why_not_ours

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

# A child that runs a command with its output step slowed down: it writes one file
# into the staging folder, says so, and waits to be stopped.
EVAL_CHILD = """
import sys, time
import mtl_perception.bag.evaluate as evaluate

def slow(stage, evaluation, args):
    (stage / "report.md").write_text("half")
    print("STAGED", flush=True)
    time.sleep(60)

evaluate.write_outputs = slow
sys.exit(evaluate.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("stops")
    labels = root / "labels.csv"
    labels.write_text("start,end,task,label\n0,2,action,walk\n", encoding="utf-8")
    return {"checkpoint": tiny_checkpoint(root / "model.safetensors"),
            "bag": write_image_bag(root / "bag", count=20, fps=10.0), "labels": labels}


def _eval_args(files: dict[str, Path], out: Path) -> list[str]:
    return ["--bag", str(files["bag"]), "--checkpoint", str(files["checkpoint"]), "--labels",
            str(files["labels"]), "--out", str(out), "--no-progress", "--overwrite",
            "--set", "target_fps=10", "inference_stride=2"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _staged_child(files: dict[str, Path], out: Path) -> subprocess.Popen[str]:
    # STAGED: the staging folder holds a file and the child waits 60 s to be stopped
    child = start_ready_child([sys.executable, "-c", EVAL_CHILD, *_eval_args(files, out)],
                              "STAGED", ENV, out.parent)
    assert EVAL_OWNER.partial(out).is_dir()
    return child


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ERROR")]


def test_sigterm_removes_the_staged_output_and_keeps_the_earlier_one(
        files: dict[str, Path], tmp_path: Path) -> None:
    from mtl_perception.bag.evaluate import main

    out = tmp_path / "out"
    assert main(_eval_args(files, out)) == 0
    before = _tree(out)
    child = _staged_child(files, out)
    stderr = signal_and_wait(child, signal.SIGTERM)
    assert child.returncode == 143, stderr
    errors = _errors(stderr)
    assert len(errors) == 1 and "terminated (SIGTERM)" in errors[0], stderr
    assert f"nothing written to {out}" in errors[0] and "Traceback" not in stderr
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# A child converting one 30-frame video, slowed per frame: it has staged its output
# (the partial folder exists) when it prints FRAME, and then waits 60 s for the signal.
TO_BAG_CHILD = textwrap.dedent("""
    import sys, time
    import training.tools.to_bag as to_bag
    from training.__main__ import main
    real = to_bag.image_message
    def slow(*args, **kwargs):
        print("FRAME", flush=True)
        time.sleep(60)
        return real(*args, **kwargs)
    to_bag.image_message = slow
    sys.exit(main(sys.argv[1:]))
""")


def _to_bag_child(tmp_path: Path, out: Path) -> subprocess.Popen[str]:
    from training.datasets.video import write_video

    root = tmp_path / "videos"
    if not root.is_dir():
        root.mkdir()
        write_video(root / "a.avi", frames(30, 1, size=(24, 32)), fps=10.0)
        (root / "val_list.txt").write_text("a.avi 0\n")
        (root / "classes.txt").write_text("walk\n")
    return start_ready_child(
        [sys.executable, "-c", TO_BAG_CHILD, "to-bag", "--format", "mmaction", "--source",
         f"root={root}", "class_names=classes.txt", "--out", str(out), "--overwrite"],
        "FRAME", ENV, tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_every_training_subcommand_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """`python -m training` commands share the handler (here to-bag)."""
    from training.tools.to_bag import OWNER

    out = tmp_path / "bag"
    child = _to_bag_child(tmp_path, out)
    assert OWNER.partial(out).is_dir()
    stderr = signal_and_wait(child, sig)
    assert child.returncode == 128 + sig, stderr
    errors = _errors(stderr)
    word = "terminated (SIGTERM)" if sig == signal.SIGTERM else "interrupted (Ctrl-C)"
    assert len(errors) == 1 and word in errors[0] and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos"]


def test_a_partial_folder_left_by_sigkill_is_removed_by_the_next_run(tmp_path: Path) -> None:
    from training.tools.to_bag import OWNER
    from training.tools.to_bag import main as to_bag

    out = tmp_path / "bag"
    child = _to_bag_child(tmp_path, out)
    signal_and_wait(child, signal.SIGKILL)
    partial = OWNER.partial(out)
    assert partial.is_dir() and why_not_ours(partial, OWNER) is None
    manifest = json.loads((partial / OWNER.manifest).read_text())
    assert manifest["state"] == "incomplete" and manifest["target"] == "bag"
    assert to_bag(["--format", "mmaction", "--source", f"root={tmp_path / 'videos'}",
                   "class_names=classes.txt", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "videos"]
    assert why_not_ours(out, OWNER) is None


# -- OS errors -------------------------------------------------------------------------


def test_an_injected_full_disk_is_one_line_naming_the_path_exit_1(
        files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import mtl_perception.bag.results as results
    from mtl_perception.bag.evaluate import main

    def full(path: Path, evaluation: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(results, "_predictions_csv", full)
    out = tmp_path / "out"
    assert main(_eval_args(files, out)) == 1  # the work had started
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].endswith("predictions.csv: no space left on the device")
    assert list(tmp_path.iterdir()) == []


def test_a_name_too_long_is_refused_before_any_work(
        files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mtl_perception.bag.evaluate import main

    out = tmp_path / ("x" * 250)
    assert main(_eval_args(files, out)) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "name too long (250 bytes" in errors[0]
    assert list(tmp_path.iterdir()) == []


def _tmpfs(where: Path, options: str):
    """Mount a tmpfs at `where` for the test (root that may mount), else skip."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True, check=False).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (not root or no mount privilege)")
    try:
        yield where
    finally:
        gc.collect()  # a writer that failed on the full disk may still hold its file
        if subprocess.run(["umount", str(where)], capture_output=True,
                          check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 256 KiB tmpfs: a disk that fills up."""
    yield from _tmpfs(tmp_path / "small", "size=256k")


@pytest.fixture
def read_only_fs(tmp_path: Path):
    """A read-only tmpfs: refused even to root, unlike permission bits."""
    yield from _tmpfs(tmp_path / "ro", "ro,size=64k")


def test_a_really_read_only_folder_is_one_line_exit_2(
        files: dict[str, Path], read_only_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mtl_perception.bag.evaluate import main

    assert main(_eval_args(files, read_only_fs / "out")) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"cannot write in {read_only_fs}" in errors[0]
    assert "Read-only file system" in errors[0]


def test_a_really_full_disk_writing_a_bag_is_one_line_and_nothing_stays(
        small_fs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from training.datasets.video import write_video
    from training.tools.to_bag import main

    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "a.avi", frames(60, 1, size=(96, 128)), fps=10.0)  # 2.2 MB raw
    (root / "val_list.txt").write_text("a.avi 0\n")
    (root / "classes.txt").write_text("walk\n")
    out = small_fs / "bag"
    code = main(["--format", "mmaction", "--source", f"root={root}", "class_names=classes.txt",
                 "--out", str(out)])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 1 and len(errors) == 1, errors
    assert "no space left on the device" in errors[0] and str(small_fs) in errors[0]
    assert list(small_fs.iterdir()) == []


def test_a_read_only_folder_is_one_line_exit_2(
        files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Root ignores permission bits, so the read-only mount is injected (EROFS)."""
    import mtl_perception.outputs as outputs
    from mtl_perception.bag.evaluate import main

    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".probe"))

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", read_only)
    assert main(_eval_args(files, tmp_path / "out")) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"cannot write in {tmp_path}" in errors[0]
    assert "Read-only file system" in errors[0]


def test_os_error_lines_name_path_and_cause() -> None:
    rename = OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")
    assert exits.os_error_line(rename) == "/a -> /b: Invalid cross-device link"
    assert exits.os_error_line(OSError(errno.ENAMETOOLONG, "x", "/p")) == "/p: file name too long"


def test_an_unreadable_checkpoint_is_one_line(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's checkpoint check and every CLI go through `checkpoint._open`."""
    import builtins

    from mtl_perception.checkpoint import CheckpointError, read_checkpoint_info

    path = tiny_checkpoint(tmp_path / "model.safetensors")
    real_open = builtins.open

    def failing(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file) == str(path):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing)
    with pytest.raises(CheckpointError, match="cannot read it: .*input/output error"):
        read_checkpoint_info(path)



def test_the_nodes_checkpoint_check_names_a_name_too_long(tmp_path: Path) -> None:
    from mtl_perception.ros.node_config import check_checkpoint

    problem = check_checkpoint(tmp_path / ("m" * 300 + ".safetensors"))
    assert problem is not None and problem.endswith("file name too long")
    assert "\n" not in problem


def test_a_file_placed_in_a_killed_runs_partial_folder_is_not_removed_with_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The manifest proves the folder is a killed run's; not a file someone put there."""
    from mtl_perception.outputs import write_manifest
    from training.tools.to_bag import OWNER
    from training.tools.to_bag import main as to_bag

    out = tmp_path / "bag"
    partial = OWNER.partial(out)
    partial.mkdir()
    write_manifest(partial, OWNER, {}, None, complete=False, target="bag")
    (partial / "bag_0.mcap").write_bytes(b"half a bag")  # what the killed run wrote
    (partial / "mine.txt").write_text("keep me")
    root = tmp_path / "videos"
    root.mkdir()
    from training.datasets.video import write_video

    write_video(root / "a.avi", frames(8, 1, size=(24, 32)), fps=10.0)
    (root / "val_list.txt").write_text("a.avi 0\n")
    (root / "classes.txt").write_text("walk\n")
    args = ["--format", "mmaction", "--source", f"root={root}", "class_names=classes.txt",
            "--out", str(out)]
    assert to_bag(args) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "does not write: mine.txt" in errors[0], errors
    assert (partial / "mine.txt").read_text() == "keep me" and not out.exists()
    (partial / "mine.txt").unlink()  # only what the command writes: removed, run goes on
    assert to_bag(args) == 0 and not partial.exists()


# A child that stops in the subcommand's import (torch: seconds), saying so first.
START_CHILD = textwrap.dedent("""
    import importlib, sys, time
    from training.__main__ import main
    real = importlib.import_module
    def slow(name, *args):
        if name.startswith("training.tools"):
            print("IMPORTING", flush=True)
            time.sleep(60)
        return real(name, *args)
    importlib.import_module = slow
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_start_up_is_one_line(tmp_path: Path, sig: signal.Signals) -> None:
    child = start_ready_child([sys.executable, "-c", START_CHILD, "summarize", "--config",
                               "x.yaml"], "IMPORTING", ENV, tmp_path)
    stderr = signal_and_wait(child, sig)
    assert child.returncode == 128 + sig, stderr
    word = "terminated (SIGTERM)" if sig == signal.SIGTERM else "interrupted (Ctrl-C)"
    assert f"{word} during start-up; nothing was written" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_a_really_full_disk_during_train_is_one_line_not_a_safetensors_traceback(
        small_fs: Path, tmp_path_factory: pytest.TempPathFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    from test_train_helpers import TINY_OVERRIDES, tiny_set

    from training.__main__ import main

    set_yaml = tiny_set(tmp_path_factory)
    code = main(["train", "--config", str(ROOT / "config" / "train" / "cpu_small.yaml"),
                 "--out", str(small_fs / "run"), "--progress", "lines", f"set={set_yaml}",
                 *TINY_OVERRIDES, "iterations=1", "val_every=1", "val_max_per_task=2"])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 1 and len(errors) == 1, errors
    assert "no space left on the device" in errors[0] and str(small_fs) in errors[0]
    assert "SafetensorError" not in caplog.text


def test_a_console_script_stopped_while_importing_is_one_line(tmp_path: Path) -> None:
    """`evaluate_bag` and `dataset_to_bag` import through `exits.guarded_entry`."""
    (tmp_path / "slow_module.py").write_text(
        "import time\nprint('IMPORTING', flush=True)\ntime.sleep(60)\ndef main():\n    return 0\n")
    script = ("import sys\nfrom mtl_perception.exits import guarded_entry\n"
              "sys.exit(guarded_entry('slow_module:main', 'evaluate_bag')())\n")
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    child = start_ready_child([sys.executable, "-c", script], "IMPORTING", env, tmp_path)
    stderr = signal_and_wait(child, signal.SIGTERM)
    assert child.returncode == 143, stderr
    assert stderr.strip() == ("ERROR evaluate_bag: terminated (SIGTERM) during start-up; "
                              "nothing was written")
