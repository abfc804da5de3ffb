"""IsoGD reader on the real train / valid / test lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_datasets import copy_lists

from training.datasets.isogd import IsogdSource, read_list, read_split
from training.datasets.listfile import DatasetError
from training.datasets.sample import UNLABELLED

LISTS = ("train_list.txt", "valid_list.txt", "test_list.txt")


def source(lists: Path, **kw: object) -> IsogdSource:
    return IsogdSource(root=Path("/data/IsoGD_phase_1"), train_list=lists / "train_list.txt",
                       valid_list=lists / "valid_list.txt", test_list=lists / "test_list.txt",
                       **kw)  # type: ignore[arg-type]


def test_counts_and_labels(splits_dir: Path) -> None:
    src = source(splits_dir / "isogd", test_root=Path("/data/IsoGD_phase_2"))
    train, valid = read_split(src, "train"), read_split(src, "valid")
    assert len(train.samples) == 35878 and len(valid.samples) == 5784
    assert len(train.class_names) == 249 and train.class_names[0] == "isogd_001"
    labels = {s.label for s in train.samples}
    assert min(labels) == 0 and max(labels) == 248 and len(labels) == 249  # 1..249 -> 0..248
    first = train.samples[0]
    assert first.path == Path("/data/IsoGD_phase_1/train/001/M_00001.avi")  # RGB, not depth
    assert first.label == 26 - 1


def test_test_list_placeholder_is_unlabelled(splits_dir: Path) -> None:
    src = source(splits_dir / "isogd", test_root=Path("/data/IsoGD_phase_2"), test_split="test")
    test = read_split(src, "test")
    assert len(test.samples) == 6271
    assert all(s.label == UNLABELLED for s in test.samples)
    assert not test.labelled and len(test.class_names) == 249  # readable, not scorable
    assert test.samples[0].path == Path("/data/IsoGD_phase_2/test/001/M_00001.avi")


def test_test_split_defaults_to_valid_list(splits_dir: Path) -> None:
    test = read_split(source(splits_dir / "isogd"), "test")
    assert len(test.samples) == 5784 and test.labelled
    assert "valid_list.txt" in test.source


def test_two_and_three_column_forms_and_crlf(splits_dir: Path, tmp_path: Path) -> None:
    crlf = copy_lists(splits_dir / "isogd", tmp_path, ["valid_list.txt"], crlf=True)
    assert read_list(crlf / "valid_list.txt", Path("/r")) == read_list(
        splits_dir / "isogd" / "valid_list.txt", Path("/r"))
    two = tmp_path / "two.txt"
    two.write_text("test/001/M_00001.avi test/001/K_00001.avi\r\ntest/001/M_00002.avi "
                   "test/001/K_00002.avi\r\n")
    assert [s.label for s in read_list(two, Path("/r"))] == [UNLABELLED, UNLABELLED]
    three = tmp_path / "three.txt"
    three.write_text("test/001/M_00001.avi test/001/K_00001.avi 249\n")
    assert [s.label for s in read_list(three, Path("/r"))] == [248]


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("a/M_1.avi a/K_1.avi 3\na/M_2.avi a/K_2.avi 0\n")
    with pytest.raises(DatasetError, match=r"bad\.txt:2: missing or placeholder label"):
        read_list(bad, tmp_path)
    bad.write_text("a/M_1.avi a/K_1.avi 3\na/M_2.avi a/K_2.avi 250\n")
    with pytest.raises(DatasetError, match=r"bad\.txt:2: label 250 outside"):
        read_list(bad, tmp_path)
    bad.write_text("a/M_1.avi a/K_1.avi x\n")
    with pytest.raises(DatasetError, match=r"bad\.txt:1: label 'x'"):
        read_list(bad, tmp_path)
