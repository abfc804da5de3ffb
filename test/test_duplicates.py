"""Duplicates are never silent (issue 7, class 4).

Refused: a key written twice in one YAML mapping, the same source twice in a
task, one video listed by two sources of a task, a class name twice in
classInd.txt, a merge name used by two groups, a segment listed with two
labels. Warned about once with the count (and counted once): a list line
repeated verbatim, an NTU video present in two folders, a subject repeated.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers_datasets import ntu_name, touch_all, write_yaml

from mtl_perception.settings import SettingsError, apply_overrides, load_yaml
from training.datasets import mmaction, ntu, nvgesture, ucf101
from training.datasets.class_merge import load_merges
from training.datasets.listfile import DatasetError
from training.datasets.sets import build_task_split, load_set


def _ucf(tmp_path: Path, train: str, classes: str = "1 Walk\n2 Jump\n") -> ucf101.Ucf101Source:
    lists = tmp_path / "lists"
    lists.mkdir(exist_ok=True)
    (lists / "classInd.txt").write_text(classes)
    (lists / "trainlist01.txt").write_text(train)
    return ucf101.Ucf101Source(root=tmp_path / "UCF-101", annotations=lists)


def test_a_yaml_key_written_twice_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text("name: a\ntasks:\n  action:\n    - format: ucf101\n      root: x\n"
                    "      split: 1\n      root: y\n")
    with pytest.raises(SettingsError, match=rf"^{path}:7: key 'root' appears twice in one "
                                            r"mapping \(first at line 5\)$"):
        load_set(path)
    path.write_text("tasks: {}\nname: a\ntasks: {}\n")
    with pytest.raises(SettingsError, match=r":3: key 'tasks' appears twice"):
        load_yaml(path)
    with pytest.raises(SettingsError, match="key 'a' appears twice"):
        apply_overrides({}, ["x={a: 1, a: 2}"])


def test_yaml_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text("base: &b {split: 1, root: x}\nmine:\n  <<: *b\n  split: 2\n")
    assert load_yaml(path)["mine"] == {"split": 2, "root": "x"}


def test_the_same_source_twice_in_a_task_is_refused(tmp_path: Path) -> None:
    source = {"format": "ucf101", "root": "UCF-101", "annotations": "lists"}
    spelled_otherwise = {**source, "root": str(tmp_path / "UCF-101"), "split": 1}
    path = write_yaml(tmp_path / "set.yaml", {"tasks": {"action": [source, spelled_otherwise]}})
    with pytest.raises(SettingsError, match=r"tasks.action\[1\]: the same source as "
                                            r"tasks.action\[0\]; its samples would count twice"):
        load_set(path)


def test_one_video_listed_by_two_sources_of_a_task_is_refused(tmp_path: Path) -> None:
    _ucf(tmp_path, "Walk/v_Walk_g01_c01.avi 1\nJump/v_Jump_g01_c01.avi 2\n")
    (tmp_path / "mm.txt").write_text("Walk/v_Walk_g01_c01.avi 0\n")
    path = write_yaml(tmp_path / "set.yaml", {"class_merge": "none", "tasks": {"action": [
        {"format": "ucf101", "root": "UCF-101", "annotations": "lists"},
        {"format": "mmaction", "root": "UCF-101", "train_list": "mm.txt", "test_list": "mm.txt"},
    ]}})
    with pytest.raises(DatasetError, match=r"task action \(train\): 1 video\(s\) listed by two "
                                           r"sources.*v_Walk_g01_c01.avi in ucf101"):
        build_task_split(load_set(path), "action", "train")


def test_a_repeated_list_line_counts_once_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    line = "Walk/v_Walk_g01_c01.avi 1\n"
    source = _ucf(tmp_path, line * 3 + "Jump/v_Jump_g01_c01.avi 2\n" + line)
    with caplog.at_level(logging.WARNING):
        split = ucf101.read_split(source, "train")
    assert [s.path.name for s in split.samples] == ["v_Walk_g01_c01.avi", "v_Jump_g01_c01.avi"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 repeated line(s) ignored" in warnings[0] and "line 2 repeats line 1" in warnings[0]


@pytest.mark.parametrize(("fmt", "lines"), [
    ("ucf101", "Walk/v_Walk_g01_c01.avi 1\nWalk/v_Walk_g01_c01.avi 2\n"),
    ("nvgesture", "path:./a color:sk_color:1:9 label:1\npath:./a color:sk_color:1:9 label:2\n"),
    ("mmaction", "a.avi 0\nb.avi 1\na.avi 1\n"),
])
def test_one_segment_with_two_labels_is_refused(tmp_path: Path, fmt: str, lines: str) -> None:
    if fmt == "ucf101":
        # the label column loses to the folder: two labels are the same sample, counted once
        split = ucf101.read_split(_ucf(tmp_path, lines), "train")
        assert len(split.samples) == 1
        return
    listed = tmp_path / "list.txt"
    listed.write_text(lines)
    with pytest.raises(DatasetError, match=rf"{listed}:\d: .* is listed at line \d with another "
                                           "label"):
        if fmt == "nvgesture":
            nvgesture.read_list(listed, tmp_path)
        else:
            mmaction.read_list(listed, mmaction.MmactionSource(root=tmp_path))


def test_nvgesture_segments_of_one_video_are_not_repeats(tmp_path: Path) -> None:
    listed = tmp_path / "list.lst"
    listed.write_text("path:./a color:sk_color:1:9 label:1\npath:./a color:sk_color:9:20 label:2\n")
    assert len(nvgesture.read_list(listed, tmp_path)) == 2


def test_a_class_name_twice_in_classind_is_refused(tmp_path: Path) -> None:
    source = _ucf(tmp_path, "Walk/v_Walk_g01_c01.avi\n", classes="1 Walk\n2 Jump\n3 Walk\n")
    with pytest.raises(DatasetError, match=r"classInd.txt:3: class name 'Walk' appears twice "
                                           r"\(first as class 1\)"):
        ucf101.read_split(source, "train")


def test_a_merge_name_used_by_two_groups_is_refused(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "merge.yaml", {"merges": [
        {"name": "ok", "members": {"ntu": "make ok sign", "isogd": "isogd_001"}},
        {"name": "ok", "members": {"ntu": "thumb up", "nvgesture": "class_03"}}]})
    with pytest.raises(DatasetError, match="merge name 'ok' is used by two groups"):
        load_merges(path)


def test_ntu_duplicates_warn_once_and_count_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    names = [ntu_name(1, 1, 1, 1, 69), ntu_name(1, 1, 3, 1, 69)]
    touch_all([tmp_path / "a" / n for n in names] + [tmp_path / "b" / n for n in names])
    listed = tmp_path / "videos.txt"
    listed.write_text("\n".join([names[0], names[0].removesuffix("_rgb.avi"), names[1]]) + "\n")
    subjects = tmp_path / "subjects.txt"
    subjects.write_text("1\nP001\n3\n")
    with caplog.at_level(logging.WARNING):
        scanned = ntu.read_split(ntu.NtuSource(root=tmp_path, part="gesture"), "train")
        listed_split = ntu.read_split(ntu.NtuSource(root=tmp_path / "a", part="gesture",
                                                    video_list=listed,
                                                    train_subjects=subjects), "train")
    assert len(scanned.samples) == 1  # P001 only (P003 is a test subject)
    assert len(listed_split.samples) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    for expected in ("2 video(s) found in two folders", "1 repeated line(s) ignored",
                     "1 subject(s) listed more than once"):
        assert sum(expected in w for w in warnings) == 1


def test_a_field_twice_in_one_nvgesture_line_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "list.lst"
    listed.write_text("path:./a color:sk_color:1:9 label:1 label:2\n")
    with pytest.raises(DatasetError, match=rf"{listed}:1: field 'label' appears twice"):
        nvgesture.read_list(listed, tmp_path)


def test_one_source_feeding_two_tasks_is_warned_about_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = {"format": "ucf101", "root": "UCF-101", "annotations": "lists"}
    path = write_yaml(tmp_path / "set.yaml", {"tasks": {"action": [source],
                                                         "gesture": [source]}})
    with caplog.at_level(logging.WARNING):
        config = load_set(path)
    assert list(config.tasks) == ["action", "gesture"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "1 source(s) feed two tasks" in warnings[0] and "tasks.gesture[0] = tasks.action[0]" \
        in warnings[0]


def test_a_settings_file_too_large_to_be_one_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    """An 8 GB --config was read whole (a MemoryError); the size is checked first."""
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:  # sparse: 17 MiB of nothing, written in no time
        handle.truncate(17 << 20)
    with pytest.raises(SettingsError, match=r"huge.yaml is 17825792 bytes; a settings file "
                                            r"is at most 16 MiB"):
        load_yaml(path)
