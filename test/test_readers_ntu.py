"""NTU RGB+D reader: cross-subject split, NTU_AR / NTU_GR, on a fake root of named files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers_datasets import ntu_name, touch_all

from training.datasets import ntu_classes
from training.datasets.listfile import DatasetError, read_class_names
from training.datasets.ntu import DEFAULT_GESTURE_FILE, NtuSource, parse_name, read_split

# (subject, action) pairs: subjects 1, 2, 103 train; 3, 6, 106 test (ntu120 list)
PAIRS = [(1, 69), (2, 1), (103, 120), (3, 69), (6, 1), (106, 50), (1, 10), (3, 10)]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """Videos split over two archive folders, plus files that are not NTU RGB videos."""
    base = tmp_path / "nturgb+d_rgb"
    names = [ntu_name(1 + i % 32, 1 + i % 3, s, 1, a) for i, (s, a) in enumerate(PAIRS)]
    touch_all(base / ("s001" if i % 2 else "s018") / n for i, n in enumerate(names))
    touch_all([base / "readme.txt", base / "S001C001P001R001A001_depth.avi",
               base / "S001C001P001R001A001_rgb.mp4"])
    return base


def subjects(split_samples: list) -> list[tuple[int, int]]:
    return sorted((p.subject, p.action) for p in (parse_name(s.path.name) for s in split_samples))


def test_cross_subject_membership_all_classes(root: Path, splits_dir: Path) -> None:
    listed = {int(x) for x in (splits_dir / "ntu" / "ntu120_xsub_train_subjects.txt")
              .read_text().split()}
    assert listed == ntu_classes.XSUB_TRAIN_SUBJECTS_120
    train = read_split(NtuSource(root=root), "train")
    test = read_split(NtuSource(root=root), "test")
    assert len(train.class_names) == 120
    assert subjects(train.samples) == sorted(p for p in PAIRS if p[0] in listed)
    assert subjects(test.samples) == sorted(p for p in PAIRS if p[0] not in listed)
    for s in train.samples + test.samples:
        action = parse_name(s.path.name).action
        assert s.label == action - 1 and train.class_names[s.label] == ntu_classes.CLASS_NAMES[
            action - 1]


def test_gesture_and_action_parts(root: Path) -> None:
    gr = read_split(NtuSource(root=root, part="gesture"), "train")
    ar = read_split(NtuSource(root=root, part="action"), "train")
    assert len(gr.class_names) == 25 and len(ar.class_names) == 95
    assert not set(gr.class_names) & set(ar.class_names)
    assert "thumb up" in gr.class_names and "drink water" in ar.class_names
    assert gr.extra["ntu_class_ids"][0] == "A010"
    assert sorted(gr.class_names[s.label] for s in gr.samples) == [
        "clapping", "finger-guessing game (playing rock-paper-scissors)", "thumb up"]
    assert [ar.class_names[s.label] for s in ar.samples] == ["drink water"]


def test_shipped_gesture_file_is_the_documented_default(splits_dir: Path) -> None:
    listed = yaml.safe_load(DEFAULT_GESTURE_FILE.read_text())["gesture_classes"]
    assert [int(x[1:]) for x in listed] == list(ntu_classes.DEFAULT_GESTURE_CLASSES)
    assert len(listed) == 25
    shipped = read_class_names(splits_dir / "ntu" / "ntu120_classes.txt")
    assert shipped == list(ntu_classes.CLASS_NAMES)


def test_edited_gesture_list_and_subject_file(root: Path, tmp_path: Path) -> None:
    custom = tmp_path / "gestures.yaml"
    custom.write_text("gesture_classes: [69, A010]\n")
    subjects_file = tmp_path / "subjects.txt"
    subjects_file.write_text("P003\r\n6\r\n")
    src = NtuSource(root=root, part="gesture", gesture_classes=custom,
                    train_subjects=subjects_file)
    train = read_split(src, "train")
    assert train.class_names == ["clapping", "thumb up"]
    assert subjects(train.samples) == [(3, 10), (3, 69)]
    custom.write_text("gesture_classes: [A121]\n")
    with pytest.raises(DatasetError, match="not an NTU class id"):
        read_split(src, "train")


def test_missing_skeletons_setting(tmp_path: Path, splits_dir: Path) -> None:
    flagged = "S001C002P005R002A008"  # first entry of the shipped list (subject 5: train)
    base = tmp_path / "ntu"
    touch_all([base / f"{flagged}_rgb.avi", base / ntu_name(1, 2, 5, 1, 8)])
    keep = read_split(NtuSource(root=base), "train")
    assert len(keep.samples) == 2  # default: keep, RGB needs no skeleton
    drop = read_split(NtuSource(root=base, exclude_missing_skeletons=True,
                                missing_skeletons_list=splits_dir / "ntu"
                                / "NTU_RGBD120_samples_with_missing_skeletons.txt"), "train")
    assert [s.path.name for s in drop.samples] == [ntu_name(1, 2, 5, 1, 8)]
    with pytest.raises(DatasetError, match="needs missing_skeletons_list"):
        read_split(NtuSource(root=base, exclude_missing_skeletons=True), "train")


def test_video_list_and_ntu60(root: Path, tmp_path: Path) -> None:
    listing = tmp_path / "videos.txt"
    listing.write_text(f"s001/{ntu_name(2, 2, 2, 1, 1)}\r\nS001C001P001R001A069\r\n")
    train = read_split(NtuSource(root=root, video_list=listing), "train")
    assert [s.path.name for s in train.samples] == [ntu_name(2, 2, 2, 1, 1),
                                                    "S001C001P001R001A069_rgb.avi"]
    listing.write_text("not_a_name.avi\n")
    with pytest.raises(DatasetError, match=r"videos\.txt:1:"):
        read_split(NtuSource(root=root, video_list=listing), "train")
    ntu60 = read_split(NtuSource(root=root, version="ntu60"), "train")
    assert len(ntu60.class_names) == 60
    names = [parse_name(s.path.name) for s in ntu60.samples]
    assert sorted((n.subject, n.action) for n in names) == [(1, 10), (2, 1)]
    assert all(n.setup <= 17 and n.action <= 60 and n.subject in
               ntu_classes.XSUB_TRAIN_SUBJECTS_60 for n in names)
    with pytest.raises(DatasetError, match="root not found"):
        read_split(NtuSource(root=tmp_path / "nowhere"), "train")
