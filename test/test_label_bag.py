"""`label-bag` (contact sheet + template CSV) and `summarize` on bag sources."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers_bag import START_NS, TOPIC, write_image_bag
from PIL import Image

from mtl_perception.bag.types import IMAGE
from mtl_perception.bag.writer import BagWriter, image_message
from training.__main__ import main


def test_contact_sheet_and_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0)  # 0.0 .. 3.9 s, 24x32
    out = tmp_path / "labels.csv"
    assert main(["label-bag", "--bag", str(bag), "--out", str(out), "--every", "0.5",
                 "--per-row", "3", "--width", "64", "--no-proposals"]) == 0
    sheet = Image.open(tmp_path / "labels.png")
    # thumbnails at 0.0, 0.5, ..., 3.5 s: 8, in 3 rows of 3; 64x48 each + a caption line
    assert sheet.size == (3 * 64, 3 * (48 + 12))
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["start", "end", "task", "label"]
    assert rows[1:] == [["0.000000", "1.500000", "gesture", "TODO"],
                        ["1.500000", "3.000000", "gesture", "TODO"],
                        ["3.000000", "3.900000", "gesture", "TODO"]]
    assert "3 rows labelled TODO" in capsys.readouterr().out
    # an existing labels file is never replaced without --overwrite
    assert main(["label-bag", "--bag", str(bag), "--out", str(out)]) == 2


def _still_then_moving_bag(path: Path, fps: float, moving: tuple[float, float],
                           seconds: float) -> Path:
    """Images of one still scene, shifted one pixel per frame only inside `moving` (s)."""
    base = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    shift = 0
    with BagWriter(path, "mcap") as writer:  # type: ignore[arg-type]
        for i in range(round(seconds * fps)):
            t = i / fps
            shift += 3 if moving[0] <= t < moving[1] else 0
            stamp = START_NS + round(t * 1e9)
            writer.write(TOPIC, IMAGE, stamp,
                         image_message(np.roll(base, shift, axis=1), stamp, "cam"))
    return path


def test_motion_proposals_become_template_rows_with_a_gif_preview(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = _still_then_moving_bag(tmp_path / "bag", 25.0, (2.0, 3.0), 6.0)
    out = tmp_path / "take.csv"
    assert main(["label-bag", "--bag", str(bag), "--out", str(out), "--width", "32"]) == 0
    rows = list(csv.reader(out.open()))[1:]
    assert len(rows) == 1 and rows[0][2:] == ["gesture", "TODO"]
    start, end = float(rows[0][0]), float(rows[0][1])
    # motion from 2.0 to 3.0 s, measured at 10 images per second: within 0.2 s
    assert abs(start - 2.0) <= 0.2 and abs(end - 3.0) <= 0.2, (start, end)
    previews = tmp_path / "take_previews"  # an owned folder: its manifest and the GIFs
    gifs = sorted(previews.glob("*.gif"))
    assert sorted(p.name for p in previews.iterdir()) == sorted(
        [g.name for g in gifs] + ["label_bag_previews.manifest.json"]) and len(gifs) == 1
    with Image.open(gifs[0]) as gif:  # a real GIF, read back frame by frame
        assert gif.format == "GIF" and gif.n_frames >= 8
    assert "one per motion proposal" in capsys.readouterr().out
    # again: refused without --overwrite; with it the folder is replaced whole
    assert main(["label-bag", "--bag", str(bag), "--out", str(out), "--width", "32"]) == 2
    (previews / "99_old.gif").write_bytes(b"a gif of an earlier run")
    assert main(["label-bag", "--bag", str(bag), "--out", str(out), "--width", "32",
                 "--overwrite"]) == 2  # a file the manifest does not list: not ours to delete
    (previews / "99_old.gif").unlink()
    assert main(["label-bag", "--bag", str(bag), "--out", str(out), "--width", "32",
                 "--overwrite"]) == 0
    assert sorted(previews.glob("*.gif")) == gifs
    # a folder of someone else's where the previews go is refused before any work
    mine = tmp_path / "mine_previews"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["label-bag", "--bag", str(bag), "--out", str(tmp_path / "mine.csv"),
                 "--sheet", str(tmp_path / "mine.png"), "--overwrite"]) == 2
    assert (mine / "notes.txt").read_text() == "mine" and not (tmp_path / "mine.csv").exists()


def test_thumbnails_sit_on_a_grid_and_captions_give_their_own_time(tmp_path: Path) -> None:
    """At 25 fps, 0.5 s is 12.5 frames: the old `due = t + every` drifted to 0.52 s apart."""
    from training.tools.label_bag import contact_frames

    bag = write_image_bag(tmp_path / "bag", count=100, fps=25.0)
    thumbs, _ = contact_frames(bag, None, 0.5, 32)
    times = [round(t, 2) for t, _ in thumbs]
    assert times == [0.0, 0.52, 1.0, 1.52, 2.0, 2.52, 3.0, 3.52]


def test_absolute_stamps_are_detected_and_converted(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0)
    first = START_NS / 1e9
    absolute = tmp_path / "abs.csv"
    absolute.write_text(f"start,end,task,label\n{first + 0.5},{first + 1.5},gesture,wave\n")
    # the sets' reader names the problem and the one command that fixes it
    (tmp_path / "set.yaml").write_text(json.dumps({"class_merge": "none", "tasks": {"gesture": [
        {"format": "bag", "bag": "bag", "labels": "abs.csv", "target_fps": 10.0}]}}))
    from training.datasets.listfile import DatasetError
    from training.datasets.sets import build_task_split, load_set

    with pytest.raises(DatasetError, match=r"look like absolute ROS stamps.*--relative"):
        build_task_split(load_set(tmp_path / "set.yaml"), "gesture", "train")
    out = tmp_path / "rel.csv"
    assert main(["label-bag", "--bag", str(bag), "--relative", str(absolute), "--out",
                 str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[1] == ["0.500000", "1.500000", "gesture", "wave"]
    assert main(["label-bag", "--bag", str(bag), "--relative", str(out), "--out",
                 str(tmp_path / "again.csv")]) == 2  # already relative: refused
    # rows the labels reader would refuse are refused here, naming the line, nothing written
    for row, words in [("nan,nan,gesture,wave", "abs.csv:3: need 0 <= start < end"),
                       (f"{first + 2},{first + 1},gesture,wave", "abs.csv:3: need 0 <= start"),
                       (f"{first + 2},gesture", "abs.csv:3: expected 4 fields")]:
        absolute.write_text(f"start,end,task,label\n{first + 0.5},{first + 1.5},gesture,"
                            f"wave\n{row}\n")
        caplog.clear()
        assert main(["label-bag", "--bag", str(bag), "--relative", str(absolute), "--out",
                     str(tmp_path / "bad.csv")]) == 2
        assert words in caplog.text and not (tmp_path / "bad.csv").exists()
    import os

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # would block the read forever
    caplog.clear()
    assert main(["label-bag", "--bag", str(bag), "--relative", str(fifo), "--out",
                 str(tmp_path / "bad.csv")]) == 2
    assert "not a regular file" in caplog.text


def test_summarize_reads_bag_sources(tmp_path: Path) -> None:
    write_image_bag(tmp_path / "bag", count=40, fps=10.0)
    (tmp_path / "labels.csv").write_text(
        "start,end,task,label,split\n0.0,1.0,gesture,wave,train\n1.0,3.5,gesture,stop,train\n"
        "3.5,3.9,gesture,wave,test\n")
    (tmp_path / "set.yaml").write_text(json.dumps({"class_merge": "none", "tasks": {"gesture": [
        {"format": "bag", "bag": "bag", "labels": "labels.csv", "split": "column",
         "target_fps": 10.0, "cache": "cache"}]}}))
    report = tmp_path / "summary.json"
    assert main(["summarize", "--config", str(tmp_path / "set.yaml"), "--clip-length", "8",
                 "--json", str(report)]) == 0
    train = json.loads(report.read_text())["tasks"]["gesture"]["train"]
    assert (train["samples"], train["classes"], train["missing"], train["not_files"]) == (
        2, 2, 0, 0)
    # 1 s at 10 fps = 10 frames: 3 positions of an 8-frame clip; 2.5 s: 25 - 8 + 1 = 18
    assert train["bags"] == {"intervals": {"stop": 1, "wave": 1},
                             "labelled_s": {"stop": 2.5, "wave": 1.0},
                             "clips": {"stop": 18, "wave": 3}, "clip_length": 8}
    assert not (tmp_path / "cache").exists()  # summarize decodes nothing
