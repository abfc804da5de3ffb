"""One ownership rule for every command that replaces a folder (issue 15, class 1).

`mtl_perception.outputs`: a folder is replaced only when its manifest lists
exactly the files in it, unchanged; a partial folder left by a killed run is
recognised by its manifest and removed by the next run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from mtl_perception import manifest as manifest_module
from mtl_perception import outputs
from mtl_perception.outputs import OutputError, Owner

OWNER = Owner(tool="demo_tool", manifest="demo.manifest.json", tag="demo", name="demo",
              what="demo output")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _write(out: Path, overwrite: bool = True, text: str = "new") -> None:
    with outputs.staged(out, OWNER, overwrite, {"run": text}) as stage:
        (stage / "report.md").write_text(text)
        (stage / "bag").mkdir()
        (stage / "bag" / "data.mcap").write_text(text * 3)


@pytest.fixture
def earlier(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    _write(out, text="old")
    return out


def test_a_written_folder_is_provably_ours_and_replaced(earlier: Path) -> None:
    manifest = json.loads((earlier / OWNER.manifest).read_text())
    assert manifest["state"] == "complete"
    assert set(manifest["files"]) == {"report.md", "bag/data.mcap"}
    assert outputs.why_not_ours(earlier, OWNER) is None
    _write(earlier)
    assert (earlier / "report.md").read_text() == "new"
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["out"]


@pytest.mark.parametrize(("edit", "named"), [
    (lambda o: (o / "bag" / "notes.txt").write_text("mine"), "bag/notes.txt"),
    (lambda o: ((o / "report.md").unlink(), (o / "report.md").mkdir(),
                (o / "report.md" / "x").write_text("mine")), "report.md"),
    (lambda o: (o / "report.md").write_text("edited"), "report.md changed"),
    (lambda o: (o / "bag" / "data.mcap").unlink(), "bag/data.mcap (written by demo) is gone"),
    (lambda o: (o / "bag" / "link").symlink_to("/etc/passwd"), "bag/link"),
    (lambda o: os.mkfifo(o / "fifo"), "fifo, which is not a regular file"),
    (lambda o: (o / "empty").mkdir(), "folder demo did not make: empty"),
])
def test_anything_the_command_did_not_write_is_refused_and_kept(earlier: Path, edit,
                                                                 named: str) -> None:
    edit(earlier)
    before = sorted(str(p.relative_to(earlier)) for p in earlier.rglob("*"))
    with pytest.raises(OutputError, match="not an earlier demo output") as info:
        _write(earlier)
    assert named in str(info.value) and "\n" not in str(info.value)
    assert sorted(str(p.relative_to(earlier)) for p in earlier.rglob("*")) == before
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["out"]


def test_an_edited_manifest_is_refused(earlier: Path) -> None:
    manifest = json.loads((earlier / OWNER.manifest).read_text())
    manifest["files"]["notes.txt"] = manifest["files"].pop("report.md")
    (earlier / OWNER.manifest).write_text(json.dumps(manifest))
    with pytest.raises(OutputError, match="edited or is damaged"):
        _write(earlier)


def test_without_overwrite_results_are_refused(earlier: Path) -> None:
    with pytest.raises(OutputError, match="already holds results; pass --overwrite"):
        _write(earlier, overwrite=False)


def test_a_failure_or_interrupt_leaves_the_earlier_output_and_no_partial(earlier: Path) -> None:
    before = _tree(earlier)
    for error in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(error)), outputs.staged(earlier, OWNER, True) as stage:
            (stage / "report.md").write_text("half")
            raise error
        assert _tree(earlier) == before
        assert sorted(p.name for p in earlier.parent.iterdir()) == ["out"]


def test_a_killed_runs_partial_folder_is_removed_by_the_next_run(tmp_path: Path,
                                                                 caplog) -> None:
    out = tmp_path / "out"
    partial = outputs.prepare(out, OWNER, False, {})
    (partial / "half.mcap").write_bytes(b"x" * 10)
    manifest = json.loads((partial / OWNER.manifest).read_text())
    assert manifest["state"] == "incomplete" and manifest["target"] == "out"
    # as if the writer had died: its process id no longer runs
    manifest["pid"] = _dead_pid()
    manifest.pop("digest")
    manifest["digest"] = manifest_module._digest(manifest)
    (partial / OWNER.manifest).write_text(json.dumps(manifest))
    caplog.set_level(logging.INFO)
    _write(out)
    assert "left by an interrupted demo run" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]



@pytest.mark.parametrize("removed", ["report only", "every file", "all but the folder"])
def test_an_earlier_output_half_removed_by_a_kill_is_finished_by_the_next_run(
        earlier: Path, caplog, removed: str) -> None:
    """A SIGKILL while the replaced output was being deleted left `-old` with some of its
    files; every later run refused it ("... is gone: the folder was edited"). Its manifest
    is now deleted last, so what is left is still provably ours."""
    old = OWNER.old(earlier)
    os.rename(earlier, old)
    shutil.copytree(old, earlier)  # the new output in place, as after the swap
    if removed == "all but the folder":
        for path in sorted(old.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
    else:
        (old / "report.md").unlink()
        if removed == "every file":
            (old / "bag" / "data.mcap").unlink()
    caplog.set_level(logging.INFO)
    _write(earlier)
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["out"]
    # what a removal leaves still has to match: an edited file is not deleted
    os.rename(earlier, old)
    shutil.copytree(old, earlier)
    (old / "report.md").unlink()
    (old / "bag" / "data.mcap").write_text("edited")
    with pytest.raises(OutputError, match="bag/data.mcap changed"):
        _write(earlier)
    assert (old / "bag" / "data.mcap").read_text() == "edited"


def test_removing_an_output_deletes_its_manifest_last(earlier: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real_unlink = Path.unlink
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: (
        order.append(self.name), real_unlink(self, missing_ok=missing_ok))[1])
    outputs.remove_own(earlier, OWNER)
    assert order[-1] == OWNER.manifest and not earlier.exists()


def test_a_partial_folder_of_a_live_run_or_a_stranger_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    outputs.prepare(out, OWNER, False, {})
    manifest = json.loads((OWNER.partial(out) / OWNER.manifest).read_text())
    manifest["pid"] = os.getppid()  # alive, and not us
    manifest["started"] = manifest_module.start_time(os.getppid())
    manifest.pop("digest")
    manifest["digest"] = manifest_module._digest(manifest)
    (OWNER.partial(out) / OWNER.manifest).write_text(json.dumps(manifest))
    with pytest.raises(OutputError, match="being written by another demo run"):
        _write(out)
    # the same id, but another process now (the writer died, its id was reused): removed
    manifest.pop("digest")
    manifest["started"] = -1
    manifest["digest"] = manifest_module._digest(manifest)
    (OWNER.partial(out) / OWNER.manifest).write_text(json.dumps(manifest))
    _write(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    outputs.prepare(out, OWNER, True, {})
    shutil.rmtree(OWNER.partial(out))
    OWNER.partial(out).mkdir()
    (OWNER.partial(out) / "mine.txt").write_text("x")
    with pytest.raises(OutputError, match="in the way .*no demo.manifest.json"):
        _write(out)
    assert (OWNER.partial(out) / "mine.txt").read_text() == "x"


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# -- the commands use it ---------------------------------------------------------------


def test_dataset_to_bag_overwrite_keeps_a_users_file_inside_the_earlier_bag(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from helpers_bag import frames

    from training.datasets.video import write_video
    from training.tools.to_bag import OWNER as TO_BAG
    from training.tools.to_bag import main

    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "a.avi", frames(4, 1, size=(24, 32)), fps=10.0)
    (root / "val_list.txt").write_text("a.avi 0\n")
    (root / "classes.txt").write_text("walk\n")
    out = tmp_path / "bag"
    argv = ["--format", "mmaction", "--source", f"root={root}", "class_names=classes.txt",
            "--out", str(out), "--overwrite"]
    assert main(argv) == 0
    assert outputs.why_not_ours(out, TO_BAG) is None
    (out / "notes.txt").write_text("mine")
    caplog.clear()
    assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "did not write: notes.txt" in errors[0]
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert main(argv) == 0


def test_a_training_run_with_a_folder_at_an_output_name_is_not_replaced(tmp_path: Path) -> None:
    from training.train.resume import RUN_FILE, RUN_KIND, RunDirError, check_new_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_FILE).write_text(json.dumps({"kind": RUN_KIND, "config": {}}))
    (run / "train.csv").mkdir()
    (run / "train.csv" / "mine.txt").write_text("x")
    with pytest.raises(RunDirError, match="train.csv: not a file the training run wrote"):
        check_new_run_dir(run, overwrite=True)
    assert (run / "train.csv" / "mine.txt").read_text() == "x"


def test_an_out_that_holds_the_current_folder_is_refused(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    for out in (".", "..", "../..", str(tmp_path), "../b"):
        with pytest.raises(OutputError, match="holds the current folder"):
            _write(Path(out))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]


@pytest.mark.parametrize("other_thread", [False, True])
def test_a_stop_during_the_swap_waits_for_it(earlier: Path, monkeypatch: pytest.MonkeyPatch,
                                             other_thread: bool) -> None:
    """SIGTERM between the two renames would leave neither output: it is held back, also
    when another thread of the process (a torch or DDS thread) is the one the kernel hands
    the signal to: Python runs the handler in the main thread whichever thread got it."""
    import signal
    import threading

    from mtl_perception.exits import Terminated, sigterm_as_interrupt

    if other_thread:  # started before the swap: it does not block the signals
        stop = threading.Event()
        helper = threading.Thread(target=stop.wait, daemon=True)
        helper.start()

    real_rename = os.rename
    sent = []

    def rename(src: object, dst: object) -> None:
        if not sent:  # the first rename of the swap: out -> old
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(outputs.os, "rename", rename)
    try:
        with sigterm_as_interrupt(), pytest.raises(Terminated):
            _write(earlier, text="newer")
    finally:
        if other_thread:
            stop.set()
            helper.join()
    assert sent and (earlier / "report.md").read_text() == "newer"
    assert outputs.why_not_ours(earlier, OWNER) is None
