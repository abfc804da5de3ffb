"""`synth --out` never deletes what it cannot prove it wrote (issue 7, classes 1 and 5).

A folder is an earlier set only when its manifest lists exactly the files in
it, with their hashes; an interrupted run leaves a partial sibling the next
run recognises. Out-of-range numbers end in one message, exit 2, nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import training.synthetic.cli as cli
from training.__main__ import main
from training.synthetic.output import SynthOutputError, old_folder, partial_folder, why_not_ours
from training.synthetic.writer import SynthSettings, generate

ROOT = Path(__file__).resolve().parents[1]
TINY = SynthSettings(
    actions_per_class=4, gestures_per_class=4, width=48, height=32, frames=8, gesture_frames=16,
    clips_per_group=2, reps_per_subject=2, actions=("Walk", "SitDown"), gestures=("wave", "stop"),
    train_sessions=0, test_sessions=0, backgrounds=0, real_footage=0,  # test_synth_sessions.py
)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_output") / "set"
    generate(TINY, out, workers=1)
    return out


def _copy(tiny_set: Path, where: Path) -> Path:
    shutil.copytree(tiny_set, where, symlinks=True)
    return where


def test_a_fresh_set_is_provably_ours(tiny_set: Path) -> None:
    assert why_not_ours(tiny_set) is None
    manifest = json.loads((tiny_set / "synth.json").read_text())
    assert manifest["state"] == "complete"
    on_disk = {k for k in _tree(tiny_set) if k != "synth.json"}
    assert set(manifest["files"]) == on_disk and len(on_disk) == 4 * 2 + 4 * 2 + 7


def test_user_data_beside_an_old_style_marker_is_refused_not_wiped(tmp_path: Path) -> None:
    """The probe's case: a user's UCF-101 videos plus any file named synth.json."""
    data = tmp_path / "datasets"
    (data / "UCF-101" / "YoYo").mkdir(parents=True)
    (data / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi").write_bytes(b"precious")
    (data / "synth.json").write_text(json.dumps({"generator": "training.synthetic",
                                                 "settings": {}}))
    before = _tree(data)
    with pytest.raises(SynthOutputError, match="not an earlier synthetic set .*no file list"):
        generate(TINY, data)
    assert _tree(data) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datasets"]


@pytest.mark.parametrize("foreign", ["notes.txt", "UCF-101/Walk/mine.avi", "UCF-101/extra/x",
                                     "nvGesture/Video_data/class_01/subject1_r0/sk_depth.avi"])
def test_a_set_with_any_foreign_file_is_refused_untouched(
        tiny_set: Path, tmp_path: Path, foreign: str) -> None:
    out = _copy(tiny_set, tmp_path / "set")
    (out / foreign).parent.mkdir(parents=True, exist_ok=True)
    (out / foreign).write_bytes(b"the user's")
    before = _tree(out)
    assert main(["synth", "--out", str(out), "--workers", "1", "--size", "48x32"]) == 2
    assert _tree(out) == before
    assert not partial_folder(out).exists() and not old_folder(out).exists()


def test_an_edited_or_shortened_set_or_a_copied_manifest_is_refused(
        tiny_set: Path, tmp_path: Path) -> None:
    edited = _copy(tiny_set, tmp_path / "edited")
    (edited / "ucfTrainTestlist" / "classInd.txt").write_text("1 Mine\n")
    assert "changed since synth wrote it" in (why_not_ours(edited) or "")
    shortened = _copy(tiny_set, tmp_path / "short")
    (shortened / "UCF-101" / "Walk" / "v_Walk_g01_c01.avi").unlink()
    assert "is gone" in (why_not_ours(shortened) or "")
    user = tmp_path / "user"
    (user / "UCF-101").mkdir(parents=True)
    (user / "UCF-101" / "clip.avi").write_bytes(b"x")
    shutil.copy(tiny_set / "synth.json", user / "synth.json")
    assert "did not write" in (why_not_ours(user) or "")
    forged = _copy(tiny_set, tmp_path / "forged")
    manifest = json.loads((forged / "synth.json").read_text())
    manifest["files"]["../outside.txt"] = None
    (forged / "synth.json").write_text(json.dumps(manifest))
    assert "edited or is damaged" in (why_not_ours(forged) or "")
    for folder in (edited, shortened, user, forged):
        with pytest.raises(SynthOutputError):
            generate(TINY, folder)


def test_a_symlink_or_fifo_inside_the_set_is_refused(tiny_set: Path, tmp_path: Path) -> None:
    linked = _copy(tiny_set, tmp_path / "linked")
    target = linked / "UCF-101" / "Walk" / "v_Walk_g01_c01.avi"
    target.unlink()
    elsewhere = tmp_path / "elsewhere.avi"
    elsewhere.write_bytes(b"user")
    target.symlink_to(elsewhere)
    assert "not a regular file" in (why_not_ours(linked) or "")
    with pytest.raises(SynthOutputError):
        generate(TINY, linked)
    assert elsewhere.read_bytes() == b"user"
    link_out = tmp_path / "link_out"
    link_out.symlink_to(tiny_set)
    with pytest.raises(SynthOutputError, match="symbolic link"):
        generate(TINY, link_out)


def test_a_failed_run_keeps_the_earlier_set_and_leaves_no_partial(
        tiny_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _copy(tiny_set, tmp_path / "set")
    before = _tree(out)
    import training.synthetic.writer as writer

    calls = []

    def failing(args):
        calls.append(args)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(args)

    real = writer._write_one
    monkeypatch.setattr(writer, "_write_one", failing)
    with pytest.raises(OSError, match="disk full"):
        generate(replace(TINY, seed=7), out)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_leftovers_of_a_run_killed_mid_swap_are_recognised(tiny_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    shutil.copytree(tiny_set, old_folder(out))  # killed after renaming the old set away
    shutil.copytree(tiny_set, partial_folder(out))  # ... and before renaming the new one in
    generate(TINY, out)
    assert _tree(out) == _tree(tiny_set)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_a_foreign_folder_in_the_partial_place_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "set"
    squatter = partial_folder(out)
    squatter.mkdir()
    (squatter / "mine.txt").write_text("x")
    with pytest.raises(SynthOutputError, match="in the way .*no synth.json"):
        generate(TINY, out)
    assert (squatter / "mine.txt").read_text() == "x" and not out.exists()


def test_a_killed_run_leaves_a_partial_set_the_next_run_replaces(
        tiny_set: Path, tmp_path: Path) -> None:
    """A real SIGKILL mid-render: `--out` is untouched, the next run cleans up and succeeds."""
    out = _copy(tiny_set, tmp_path / "set")
    before = _tree(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "training", "synth", "--out", str(out), "--workers", "1",
               "--size", "48x32", "--frames", "8", "--gesture-frames", "16",
               "--actions-per-class", "40", "--gestures-per-class", "40",
               "--train-sessions", "0", "--test-sessions", "0", "--backgrounds", "0"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    partial = partial_folder(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(partial.rglob("*.avi"))) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "test set-up: the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "test set-up: the run finished before the kill"
    assert _tree(out) == before  # the earlier set is intact
    assert partial.is_dir() and why_not_ours(partial) is None  # incomplete, but provably ours
    generate(TINY, out)
    assert _tree(out) == _tree(tiny_set)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


@pytest.mark.parametrize(("args", "option"), [
    (["--fps", "nan"], "--fps"), (["--fps", "inf"], "--fps"), (["--fps", "0"], "--fps"),
    (["--fps", "-25"], "--fps"), (["--seed", "-1"], "--seed"), (["--seed", str(2**64)], "--seed"),
    (["--frames", "1000000000"], "--frames"), (["--gesture-frames", "3"], "--gesture-frames"),
    (["--size", "100000x100000"], "--size"), (["--size", "33x24"], "--size"),
    (["--frames", "5000", "--size", "4096x4096"], "--frames"),
    (["--actions-per-class", "1000000000"], "--actions-per-class"),
    (["--bit-rate", "0"], "--bit-rate"), (["--workers", "0"], "--workers"),
    (["--workers", "-3"], "--workers"), (["--places", "0"], "--places"),
    (["--test-groups", "-1"], "--test-groups"),
])
def test_out_of_range_numbers_end_in_one_message_and_write_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        args: list[str], option: str) -> None:
    def must_not_run(*_args, **_kwargs):
        raise AssertionError("generate was reached with an out-of-range setting")

    monkeypatch.setattr(cli, "generate", must_not_run)
    out = tmp_path / "out"
    assert main(["synth", "--out", str(out), *args]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith(f"{option}: ")
    assert "\n" not in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_out_holding_the_current_folder_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    inner = tmp_path / "here"
    inner.mkdir()
    monkeypatch.chdir(inner)
    for out in (".", str(tmp_path)):
        with pytest.raises(SynthOutputError, match="holds the current folder"):
            generate(TINY, out)
    assert [p.name for p in tmp_path.iterdir()] == ["here"] and list(inner.iterdir()) == []
