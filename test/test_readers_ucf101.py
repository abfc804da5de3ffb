"""UCF-101 reader on the real split-1 lists."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers_datasets import copy_lists

from training.datasets.listfile import DatasetError
from training.datasets.ucf101 import Ucf101Source, read_split

LISTS = ("classInd.txt", "trainlist01.txt", "testlist01.txt")


@pytest.fixture(scope="module")
def ucf(splits_dir: Path) -> Ucf101Source:
    return Ucf101Source(root=Path("/data/UCF-101"), annotations=splits_dir / "ucf101", split=1)


def test_split1_counts_and_classes(ucf: Ucf101Source) -> None:
    train, test = read_split(ucf, "train"), read_split(ucf, "test")
    assert len(train.samples) == 9537
    assert len(test.samples) == 3783
    assert len(train.class_names) == len(test.class_names) == 101
    assert train.class_names[0] == "ApplyEyeMakeup" and train.class_names[-1] == "YoYo"
    assert train.labelled and test.labelled


def test_labels_zero_based_from_folders(ucf: Ucf101Source) -> None:
    for split in ("train", "test"):
        data = read_split(ucf, split)
        labels = {s.label for s in data.samples}
        assert labels == set(range(101))  # every class present, 0..100
        for s in data.samples[:: 97]:
            assert data.class_names[s.label] == s.path.parent.name
    first = read_split(ucf, "train").samples[0]
    assert first.path == Path("/data/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi")
    assert first.label == 0


def test_handstand_pushups_quirk(ucf: Ucf101Source, caplog: pytest.LogCaptureFixture) -> None:
    """Files `v_HandStandPushups_*` sit in `HandstandPushups/`: the folder gives the class."""
    with caplog.at_level(logging.WARNING):
        data = read_split(ucf, "test")
    quirky = [s for s in data.samples if s.path.name.startswith("v_HandStandPushups_")]
    assert quirky, "the shipped test list holds the quirk"
    index = data.class_names.index("HandstandPushups")
    assert "HandStandPushups" not in data.class_names
    assert all(s.label == index and s.path.parent.name == "HandstandPushups" for s in quirky)
    with caplog.at_level(logging.WARNING):
        train = read_split(ucf, "train")
    assert any(s.path.name.startswith("v_HandStandPushups_") for s in train.samples)
    assert "disagree" not in caplog.text  # the train label column agrees with the folders


def test_crlf_shipped_and_lf_copy_read_the_same(splits_dir: Path, tmp_path: Path,
                                                ucf: Ucf101Source) -> None:
    assert b"\r\n" in (splits_dir / "ucf101" / "trainlist01.txt").read_bytes()[:200]
    lf = copy_lists(splits_dir / "ucf101", tmp_path / "lf", LISTS, crlf=False)
    lf_source = Ucf101Source(root=ucf.root, annotations=lf)
    for split in ("train", "test"):
        a, b = read_split(ucf, split), read_split(lf_source, split)
        assert a.samples == b.samples and a.class_names == b.class_names
        assert not any(name.endswith("\r") for name in a.class_names)
        assert not any(str(s.path).endswith("\r") for s in a.samples)


def test_other_split_number_and_bad_lines(splits_dir: Path, tmp_path: Path) -> None:
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "classInd.txt").write_bytes((splits_dir / "ucf101" / "classInd.txt").read_bytes())
    # split 2, and a label column that disagrees with the folder: the folder wins
    (ann / "trainlist02.txt").write_text("YoYo/v_YoYo_g01_c01.avi 3\r\n\r\n", encoding="utf-8")
    data = read_split(Ucf101Source(root=tmp_path, annotations=ann, split=2), "train")
    assert [s.label for s in data.samples] == [100]
    (ann / "testlist02.txt").write_text("ApplyEyeMakeup/a.avi\nNoSuchClass/v_x.avi\n")
    with pytest.raises(DatasetError, match=r"testlist02\.txt:2:"):
        read_split(Ucf101Source(root=tmp_path, annotations=ann, split=2), "test")
    with pytest.raises(DatasetError, match="split must be 1, 2 or 3"):
        Ucf101Source(root=tmp_path, split=4)
    with pytest.raises(DatasetError, match="list file not found"):
        read_split(Ucf101Source(root=tmp_path, annotations=ann, split=3), "train")
