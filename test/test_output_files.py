"""Single output files (`export`, `fit-gate`, `label-bag`) and option bounds (issue 29,
classes 3 and 4): refused before the work in one line, exit 2; inputs never written over."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers_bag import tiny_checkpoint, write_image_bag

from training.__main__ import main


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_label_bag_never_writes_over_the_bag_it_reads(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_image_bag(tmp_path / "rec", count=10)
    bag = next(folder.glob("*.mcap"))
    before = _digest(bag)
    for extra in ([], ["--overwrite"]):
        caplog.clear()
        assert main(["label-bag", "--bag", str(bag), "--out", str(bag), *extra]) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "is an input of this run" in errors[0], errors
        assert "--overwrite" not in errors[0]  # no hint to force it
    # inside an input bag folder: its metadata.yaml, or a new file next to it
    assert main(["label-bag", "--bag", str(folder), "--out",
                 str(folder / "metadata.yaml"), "--overwrite"]) == 2
    assert main(["label-bag", "--bag", str(bag), "--out", str(tmp_path / "t.csv"),
                 "--sheet", str(bag), "--overwrite"]) == 2
    assert _digest(bag) == before and sorted(p.name for p in tmp_path.iterdir()) == ["rec"]


def test_label_bag_bounds_and_a_bag_cut_short_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import training.tools.label_bag as label_bag

    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0)
    for option, value in (("--every", "0"), ("--every", "nan"), ("--per-row", "100000"),
                          ("--width", "9")):
        with pytest.raises(SystemExit) as stop:  # argparse: usage + one error line
            main(["label-bag", "--bag", str(bag), "--out", str(tmp_path / "t.csv"),
                  option, value])
        assert stop.value.code == 2
    monkeypatch.setattr(label_bag, "MAX_SHEET_PIXELS", 5 * 32 * (24 + 12))  # room for 5
    assert main(["label-bag", "--bag", str(bag), "--out", str(tmp_path / "t.csv"),
                 "--every", "0.1", "--width", "32"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "more than 5 thumbnails" in errors[0] and "--every" in errors[0]
    assert not (tmp_path / "t.csv").exists()
    monkeypatch.undo()
    storage = next(bag.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    caplog.clear()
    assert main(["label-bag", "--bag", str(bag), "--out", str(tmp_path / "t.csv")]) == 0
    assert any("truncated or corrupt" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")


def test_export_and_fit_gate_refuse_an_existing_out_before_the_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "model.safetensors")
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"a user's file")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(mine)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert mine.read_bytes() == b"a user's file"
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"another checkpoint")
    assert main(["fit-gate", "--checkpoint", str(checkpoint), "--set",
                 str(tmp_path / "set.yaml"), "--out", str(other)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert other.read_bytes() == b"another checkpoint"
    # the set it reads is an input: never written over, --overwrite or not
    assert main(["fit-gate", "--checkpoint", str(checkpoint), "--set", str(other),
                 "--out", str(other), "--overwrite"]) == 2
    assert "an input of this run" in capsys.readouterr().err


def test_an_unwritable_out_folder_is_found_before_the_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Root ignores permission bits, so the read-only folder is injected (EROFS)."""
    import errno
    import os

    import mtl_perception.outputs as outputs

    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".probe"))

    checkpoint = tiny_checkpoint(tmp_path / "model.safetensors")
    monkeypatch.setattr(outputs.tempfile, "mkdtemp", read_only)
    assert main(["export", "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "model.onnx")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write in {tmp_path}: Read-only file system" in err and ".tmp" not in err


@pytest.mark.parametrize(("args", "words"), [
    (["export", "--batch", "100000"], "--batch must be 'dynamic' or a whole number in 1..256"),
    (["export", "--batch", "256", "--check-clips", "64", "--frames", "64"], "GiB to check"),
    (["fit-gate", "--clips-per-video", "100000", "--set", "set.yaml"], None),
    (["fit-gate", "--threads", "-3", "--set", "set.yaml"], "--threads -3: expected 0 (default)"),
])
def test_size_options_are_bounded_before_any_allocation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        words: str | None) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "model.safetensors")
    command = [args[0], "--checkpoint", str(checkpoint), *args[1:]]
    if words is None:  # an argparse bound: usage line and one error line
        with pytest.raises(SystemExit) as stop:
            main(command)
        assert stop.value.code == 2
        assert "must be in 1..64, got 100000" in capsys.readouterr().err
        return
    assert main([*command, "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_the_writability_probe_leaves_the_folders_times_as_they_were(tmp_path: Path) -> None:
    """Every output check ends in this probe; a run refused after it (evaluate --json inside
    a dataset folder, refused once the set is read) had left that folder's time changed."""
    import os

    from mtl_perception.outputs import check_creatable

    folder = tmp_path / "videos"
    folder.mkdir()
    os.utime(folder, ns=(1_000_000_000_123, 2_000_000_000_456))
    check_creatable(folder / "results.json", "--json")
    check_creatable(folder / "new" / "deeper" / "out", "--out")  # probed in `folder` too
    assert (folder.stat().st_atime_ns, folder.stat().st_mtime_ns) == (
        1_000_000_000_123, 2_000_000_000_456)
    assert list(folder.iterdir()) == []


def test_no_output_goes_inside_an_earlier_output_of_another_command(tmp_path: Path) -> None:
    """An evaluate_bag --out or a --json inside a to-bag output (or any folder with one of
    the project's manifests) added files its manifest does not list: that output was no
    longer provably its command's, and its --overwrite refused it for good."""
    import pytest

    from mtl_perception.bag.outputs import OWNER as EVALUATE_BAG
    from mtl_perception.manifest import write_manifest
    from mtl_perception.outputs import OutputError, check_out, check_out_file, why_not_ours
    from training.tools.to_bag import OWNER as TO_BAG

    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "labels.csv").write_text("start,end,task,label\n")
    write_manifest(bag, TO_BAG, {}, None, complete=True)
    for check in (lambda: check_out(bag / "eval", EVALUATE_BAG, False),
                  lambda: check_out(bag / "a" / "b", EVALUATE_BAG, False),
                  lambda: check_out_file(bag / "metrics.json", False, option="--json")):
        with pytest.raises(OutputError, match=rf"lies inside {bag}, an earlier dataset_to_bag "
                                              "output"):
            check()
    assert why_not_ours(bag, TO_BAG) is None and sorted(p.name for p in bag.iterdir()) == [
        "dataset_to_bag.manifest.json", "labels.csv"]
    check_out(tmp_path / "eval", EVALUATE_BAG, False)  # beside it is fine
    other = tmp_path / "notes"  # a file named like a manifest that is none of ours
    other.mkdir()
    (other / "x.manifest.json").write_text('{"generator": "someone"}')
    check_out(other / "eval", EVALUATE_BAG, False)
