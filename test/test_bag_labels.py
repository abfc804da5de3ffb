"""Labels CSV: what parses, and one LabelsError naming file and line for each bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_perception.bag.labels import Interval, LabelsError, read_labels, write_labels

CLASSES = {"action": ("walk", "jump"), "gesture": ("wave", "stop")}


def _labels(tmp_path: Path, *rows: str, header: str = "start,end,task,label") -> Path:
    path = tmp_path / "labels.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_good_labels_parse(tmp_path: Path) -> None:
    path = _labels(tmp_path, "0,2.5,action,walk", " 3.0 , 4 , action , jump ", "",
                   "0.5,1.5,gesture,stop")
    intervals = read_labels(path, CLASSES, bag_span_s=4.2)
    assert intervals == [
        Interval(0.0, 2.5, "action", "walk", 2),
        Interval(3.0, 4.0, "action", "jump", 3),
        Interval(0.5, 1.5, "gesture", "stop", 5),
    ]
    assert intervals[0].overlap(2.0, 3.0) == pytest.approx(0.5)


def test_write_labels_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_labels(path, [(0.0, 1.92, "action", "walk"), (2.92, 4.0, "gesture", "wave")])
    intervals = read_labels(path, CLASSES)
    assert [(i.start, i.end, i.task, i.label) for i in intervals] == [
        (0.0, 1.92, "action", "walk"), (2.92, 4.0, "gesture", "wave")]


@pytest.mark.parametrize(
    ("rows", "line", "needle"),
    [
        (["0,1,action,walk", "1,2,action,run"], 3, "unknown action class 'run'"),
        (["0,1,action"], 2, "expected 4 columns"),
        (["0,one,action,walk"], 2, "end 'one' is not a number"),
        (["2,1,action,walk"], 2, "end 1.0 is not after start 2.0"),
        (["0,nan,action,walk"], 2, "not a finite number"),
        (["0,1,pose,walk"], 2, "unknown task 'pose'"),
        (["0,1,action,walk", "5,30,action,jump"], 3, "lies outside the bag"),
        (["-1,1,action,walk"], 2, "lies outside the bag"),
        (["0,2,action,walk", "1,3,action,jump"], 3, "overlaps line 2"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, rows: list[str], line: int,
                                     needle: str) -> None:
    path = _labels(tmp_path, *rows)
    with pytest.raises(LabelsError) as info:
        read_labels(path, CLASSES, bag_span_s=10.0)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ") and needle in message
    assert "\n" not in message


def test_the_unknown_class_message_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match=r"the checkpoint's gesture classes: wave, stop"):
        read_labels(_labels(tmp_path, "0,1,gesture,clap"), CLASSES)


def test_bad_header_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match=r":1: expected the header start,end,task,label"):
        read_labels(_labels(tmp_path, "0,1,action,walk", header="from,to,task,label"), CLASSES)
    with pytest.raises(LabelsError, match="no labelled intervals"):
        read_labels(_labels(tmp_path), CLASSES)
    with pytest.raises(LabelsError, match="labels file not found"):
        read_labels(tmp_path / "missing.csv", CLASSES)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(LabelsError, match="not a UTF-8 text file"):
        read_labels(binary, CLASSES)


def test_times_are_only_bounded_by_a_known_bag_length(tmp_path: Path) -> None:
    path = _labels(tmp_path, "0,100,action,walk")
    assert len(read_labels(path, CLASSES, bag_span_s=None)) == 1
    assert len(read_labels(path, CLASSES, bag_span_s=99.8)) == 1  # within the 0.5 s slack
    with pytest.raises(LabelsError, match="outside the bag"):
        read_labels(path, CLASSES, bag_span_s=99.0)


def test_a_labels_file_too_large_to_be_one_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    """An 8 GB labels file was read whole (a MemoryError); shown.csv is read the same way."""
    from mtl_perception.bag.shown import read_shown

    path = tmp_path / "labels.csv"
    with open(path, "wb") as handle:  # sparse: no disk, no time
        handle.truncate((256 << 20) + 1)
    with pytest.raises(LabelsError, match=r"labels.csv: 268435457 bytes, more than the 256 "
                                          r"MiB a labels file may have"):
        read_labels(path, CLASSES)
    with pytest.raises(LabelsError, match=r"more than the 256 MiB"):
        read_shown(path)
