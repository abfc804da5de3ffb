"""`label-bag` (contact sheet + template CSV) and `summarize` on bag sources."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers_bag import START_NS, TOPIC, frames, write_image_bag
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


def _stamped_bag(path: Path, stamps_s: list[float | None], start_ns: int = START_NS,
                 garbage: frozenset[int] = frozenset()) -> Path:
    """Images logged 0.1 s apart, header-stamped `start_ns` + `stamps_s` (None: stamp 0);
    the messages at `garbage` are stored whole but do not deserialize."""
    with BagWriter(path, "mcap") as writer:
        for i, (frame, t) in enumerate(zip(frames(len(stamps_s)), stamps_s, strict=True)):
            stamp = 0 if t is None else start_ns + round(t * 1e9)
            log_time = START_NS + i * 100_000_000
            if i in garbage:  # a valid CDR header, then nothing an Image can be read from
                writer.write_raw(TOPIC, IMAGE, "", "", log_time, b"\x00\x01\x00\x00garbage")
            else:
                writer.write(TOPIC, IMAGE, log_time, image_message(frame, stamp, "cam"))
    return path


_CLEAN = [i / 10 for i in range(30)]


@pytest.mark.parametrize(("stamps", "words"), [
    ([None] * 30, "all 30 images carry the same header stamp (0.000 s; message index 1"),
    ([None, *_CLEAN[1:]], "message index 0 is stamped 1700000000.100 s before every other"),
    ([*_CLEAN[:15], 4e8, *_CLEAN[16:]], "message index 15 is stamped 399999997.100 s after"),
    ([4e8, *_CLEAN[1:]], "message index 0 is stamped 399999997.100 s after every other"),
], ids=["all-equal", "first-at-zero", "one-far-ahead", "first-far-ahead"])
def test_stamps_that_make_no_timeline_are_refused_before_anything_is_written(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, stamps: list[float | None],
        words: str) -> None:
    """Before: exit 0, a template row `0,400000001.5` or `0,1.4`, one thumbnail, no warning."""
    bag = _stamped_bag(tmp_path / "bag", stamps)
    absolute = tmp_path / "abs.csv"
    absolute.write_text(f"start,end,task,label\n{START_NS / 1e9 + 1},{START_NS / 1e9 + 2},"
                        "gesture,wave\n")
    for extra in ([], ["--relative", str(absolute)]):  # --relative: the origin is that stamp
        caplog.clear()
        assert main(["label-bag", "--bag", str(bag), "--out", str(tmp_path / "t.csv"),
                     *extra]) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and words in errors[0], errors
        assert errors[0].startswith(f"bag {bag} topic {TOPIC}: ")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["abs.csv", "bag"]


def test_odd_stamps_are_said_once_per_kind_with_counts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: nothing said; the images after a step back silently left off the sheet."""
    from training.tools.label_bag import contact_frames

    stamps: list[float | None] = [i / 10 for i in range(20)]
    stamps[5] = stamps[6] = stamps[4]  # repeated twice
    stamps += [3.0 + i / 10 for i in range(10)]  # a gap of 1.1 s at index 20
    stamps += [0.5 + i / 10 for i in range(10)]  # back 3.4 s at index 30: a loop
    bag = _stamped_bag(tmp_path / "bag", stamps)
    thumbs, span = contact_frames(bag, None, 0.5, 32)
    # the origin stays the first image; the looped images are not on the sheet
    assert [round(t, 2) for t, _ in thumbs] == [0.0, 0.7, 1.0, 1.5, 3.0, 3.5]
    assert round(span, 2) == 3.9
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3, warnings
    repeat, back, gap = warnings
    assert "repeats the image before it 2 times (message index 5 first" in repeat
    assert ("backwards once (message index 30 first, by up to 3.400 s: a looping bag" in back
            and "the 10 images stamped before one already read" in back)
    assert "max_gap_s 0.5 s once (message index 20 first, the longest 1.100 s)" in gap
    caplog.clear()
    out = tmp_path / "t.csv"
    assert main(["label-bag", "--bag", str(bag), "--out", str(out), "--no-proposals"]) == 0
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 3
    assert list(csv.reader(out.open()))[1][:2] == ["0.000000", "3.900000"]


def test_a_message_index_is_the_bag_readers_with_skipped_messages_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Message 2 does not deserialize (the reader skips it and names message index 2), and
    message 6 repeats message 5's stamp. Before, label-bag counted only the messages read,
    so it named the repeat message index 5: another message than the reader's 5."""
    from training.tools.label_bag import contact_frames

    stamps: list[float | None] = [i / 10 for i in range(12)]
    stamps[6] = stamps[5]
    bag = _stamped_bag(tmp_path / "bag", stamps, garbage=frozenset({2}))
    caplog.set_level(logging.WARNING)
    contact_frames(bag, None, 0.5, 32)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("message index 2, log time" in w for w in warnings), warnings  # the reader's
    assert any("repeats the image before it once (message index 6 first" in w
               for w in warnings), warnings
    caplog.clear()
    same = _stamped_bag(tmp_path / "same", [None] * 5, garbage=frozenset({0}))
    assert main(["label-bag", "--bag", str(same), "--out", str(tmp_path / "t.csv")]) == 2
    assert "message index 2 repeats message index 1's" in caplog.text


def test_images_that_do_not_decode_are_said_once_per_kind_with_a_count(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: one WARNING line per image (30 truncated JPEGs: 30 lines)."""
    from mtl_perception.bag.types import COMPRESSED_IMAGE
    from mtl_perception.bag.writer import compressed_message

    with BagWriter(tmp_path / "bag", "mcap") as writer:
        for i, frame in enumerate(frames(30)):
            stamp = START_NS + i * 100_000_000
            msg = compressed_message(frame, stamp, "cam")
            if 10 <= i < 20:  # truncated: tried at 1.0 s, then each next image in turn
                msg.data = msg.data[: len(msg.data) // 2]
            elif i in (25, 26):  # another kind of error: not JPEG or PNG data
                msg.data = np.frombuffer(b"GIF89a" + bytes(50), np.uint8)
            writer.write(TOPIC + "/compressed", COMPRESSED_IMAGE, stamp, msg)
    out = tmp_path / "t.csv"
    assert main(["label-bag", "--bag", str(tmp_path / "bag"), "--out", str(out),
                 "--no-proposals"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert "10 images could not be decoded" in warnings[0] and "message index 10 first" in \
        warnings[0]
    assert "2 images could not be decoded" in warnings[1] and "message index 25 first" in \
        warnings[1]


def test_overwrite_replaces_only_files_label_bag_wrote(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: a user's holiday.png beside holiday.csv became the contact sheet, and a CSV
    headed `a,b` the template, with --overwrite (a CSV and a PNG were enough)."""
    bag = write_image_bag(tmp_path / "bag", count=20, fps=10.0)
    photo = tmp_path / "holiday.png"
    Image.new("RGB", (8, 6), "red").save(photo)
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    kept = {p: p.read_bytes() for p in (photo, data)}
    absolute = tmp_path / "abs.csv"
    absolute.write_text(f"start,end,task,label\n{START_NS / 1e9 + 1},{START_NS / 1e9 + 2},"
                        "gesture,wave\n")
    for args, words in [
        (["--out", str(tmp_path / "holiday.csv")], f"the contact sheet (--out with .png) "
         f"{photo} exists and is not a label-bag output (no 'Software: mtl_perception "
         "label-bag' marker)"),
        (["--out", str(data), "--sheet", str(tmp_path / "s.png")],
         f"--out {data} exists and is not a label-bag output (its first line is 'a,b'"),
        (["--out", str(data), "--relative", str(absolute)], f"--out {data} exists and is not"),
    ]:
        caplog.clear()
        assert main(["label-bag", "--bag", str(bag), *args, "--overwrite"]) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and words in errors[0] and "left alone" in errors[0], errors
        assert {p: p.read_bytes() for p in kept} == kept
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "abs.csv", "bag", "data.csv", "holiday.png"]
    # what label-bag wrote (the sheet carries its marker), and the user's edit of the
    # labels (a split column), are replaced
    out = tmp_path / "take.csv"
    command = ["label-bag", "--bag", str(bag), "--out", str(out), "--no-proposals"]
    assert main(command) == 0
    with Image.open(tmp_path / "take.png") as sheet:
        assert sheet.info["Software"] == "mtl_perception label-bag"
    out.write_text("\ufeffstart,end,task,label,split\n0.1,1.0,gesture,wave,train\n")
    assert main([*command, "--overwrite"]) == 0
    assert out.read_text().startswith("start,end,task,label\n0.000000,")
