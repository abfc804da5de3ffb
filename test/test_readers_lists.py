"""mmaction2-style lists and plain class-folder trees."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_datasets import touch_all

from training.datasets import isogd, ntu, nvgesture, ucf101
from training.datasets.folders import FoldersSource
from training.datasets.folders import read_split as read_folders
from training.datasets.listfile import DatasetError
from training.datasets.mmaction import MmactionSource
from training.datasets.mmaction import read_split as read_mmaction


def test_mmaction_video_and_frame_lists(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a/v1.mp4 0\r\na/v2.AVI 2\r\n")
    (tmp_path / "val.txt").write_text("frames/v3 40 1\nframes/v4 10 30 3\n")
    src = MmactionSource(root=tmp_path / "data", train_list=tmp_path / "train.txt",
                         test_list=tmp_path / "val.txt")
    train, test = read_mmaction(src, "train"), read_mmaction(src, "test")
    assert [(s.path.name, s.label, s.frames_dir) for s in train.samples] == [
        ("v1.mp4", 0, False), ("v2.AVI", 2, False)]
    v3, v4 = test.samples
    assert (v3.path, v3.label, v3.start, v3.end, v3.frames_dir) == (
        tmp_path / "data/frames/v3", 1, 0, 40, True)
    assert (v4.start, v4.end, v4.label) == (10, 40, 3)
    # without class names: largest label over both lists + 1, same for both splits
    assert train.class_names == test.class_names == ["class_01", "class_02", "class_03",
                                                     "class_04"]


def test_mmaction_label_base_and_errors(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("v1.mp4 1\nv2.mp4 2\n")
    (tmp_path / "names.txt").write_text("first\nsecond\n")
    src = MmactionSource(root=tmp_path, train_list=tmp_path / "train.txt",
                         test_list=tmp_path / "train.txt", label_base=1,
                         class_names=tmp_path / "names.txt")
    assert [s.label for s in read_mmaction(src, "train").samples] == [0, 1]
    (tmp_path / "bad.txt").write_text("v1.mp4 0\nv2.mp4 0 extra\n")
    bad = MmactionSource(root=tmp_path, train_list=tmp_path / "bad.txt",
                         test_list=tmp_path / "bad.txt")
    with pytest.raises(DatasetError, match=r"bad\.txt:2: expected 'video label'"):
        read_mmaction(bad, "train")
    (tmp_path / "bad.txt").write_text("frames/x ten 0\n")
    with pytest.raises(DatasetError, match=r"bad\.txt:1: total_frames 'ten'"):
        read_mmaction(bad, "train")


def test_class_folders(tmp_path: Path) -> None:
    touch_all([tmp_path / "train/wave/a.mp4", tmp_path / "train/wave/b.avi",
               tmp_path / "train/clap/c.mkv", tmp_path / "train/clap/notes.txt",
               tmp_path / "test/clap/d.mp4"])
    (tmp_path / "train/.cache").mkdir()
    src = FoldersSource(root=tmp_path / "train", test_root=tmp_path / "test")
    train, test = read_folders(src, "train"), read_folders(src, "test")
    assert train.class_names == test.class_names == ["clap", "wave"]
    assert [(s.path.name, s.label) for s in train.samples] == [
        ("c.mkv", 0), ("a.mp4", 1), ("b.avi", 1)]
    assert [(s.path.name, s.label) for s in test.samples] == [("d.mp4", 0)]
    touch_all([tmp_path / "test/jump/e.mp4"])
    with pytest.raises(DatasetError, match="not in the training tree"):
        read_folders(src, "test")
    with pytest.raises(DatasetError, match="no test_root"):
        read_folders(FoldersSource(root=tmp_path / "train"), "test")


def empty_list_sources(tmp_path: Path) -> dict[str, tuple[Callable[[], object], Path]]:
    """Per reader: a call that reads an empty (or blank-lines-only) list, and that list."""
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\r\n  \r\n")  # blank lines only: as empty as a 0-byte file
    ann = tmp_path / "ucf"
    ann.mkdir()
    (ann / "classInd.txt").write_text("1 A\n2 B\n")
    (ann / "trainlist01.txt").write_bytes(empty.read_bytes())
    ntu_root = tmp_path / "ntu"
    touch_all([ntu_root / "S001C001P001R001A001_rgb.avi"])
    return {
        "ucf101": (lambda: ucf101.read_split(ucf101.Ucf101Source(tmp_path, ann), "train"),
                   ann / "trainlist01.txt"),
        "isogd": (lambda: isogd.read_list(empty, tmp_path), empty),
        "nvgesture": (lambda: nvgesture.read_list(empty, tmp_path), empty),
        "mmaction": (lambda: read_mmaction(MmactionSource(tmp_path, empty, empty), "train"),
                     empty),
        "ntu video_list": (lambda: ntu.read_split(ntu.NtuSource(ntu_root, video_list=empty),
                                                  "train"), empty),
        "ntu subjects": (lambda: ntu.read_split(ntu.NtuSource(ntu_root, train_subjects=empty),
                                                "train"), empty),
    }


@pytest.mark.parametrize("reader", ["ucf101", "isogd", "nvgesture", "mmaction",
                                    "ntu video_list", "ntu subjects"])
def test_an_empty_list_is_an_error_naming_it(tmp_path: Path, reader: str) -> None:
    """Not a split of 0 samples that fails far away (or, for subjects, puts all in test)."""
    read, path = empty_list_sources(tmp_path)[reader]
    with pytest.raises(DatasetError, match=re.escape(str(path))):
        read()


def test_a_non_utf8_byte_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"a/v1.mp4 0\r\nb/caf\xe9.mp4 1\r\n")  # Latin-1, not UTF-8
    with pytest.raises(DatasetError, match=r"latin1\.txt:2: not UTF-8"):
        read_mmaction(MmactionSource(tmp_path, bad, bad), "train")
