"""Bounds of the list readers: what a list may make them do before it is refused.

A list without labels may not be trained on; a number from a list is bounded
before anything is built from it (a frame number before a seek, a label before
a class name is made for it); a list file is bounded in size before it is read;
one NTU sample counts once; a refusal names the list line and shows control
characters escaped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from helpers_datasets import ntu_name, touch_all, write_yaml
from helpers_hostile import one_line

from training.datasets import isogd, listfile, mmaction, ntu, nvgesture, ucf101
from training.datasets.listfile import DatasetError, read_class_names
from training.datasets.missing import FileReport, require_files
from training.datasets.sample import UNLABELLED, LabelledSplit, VideoSample
from training.datasets.sets import build_task_split, load_set

HUGE = "99999999999999999999999999"  # far past a C long
ENORMOUS = "9" * 5000  # past the 4300 digits `int()` converts at all (a plain ValueError)
NV_LINE = "path:./Video_data/class_01/subject1_r0 color:sk_color:{}:{} label:{}\n"


def _refused(call, pattern: str) -> str:
    """The one-line `DatasetError` of `call`, which must match `pattern`."""
    with pytest.raises(DatasetError) as info:
        call()
    message = str(info.value)
    one_line(message)
    assert re.search(pattern, message), message
    return message


# -- 1: a train list without real labels -----------------------------------------------------

@pytest.mark.parametrize("label", ["", " 0"], ids=["two-columns", "placeholder-0"])
def test_an_unlabelled_isogd_train_list_is_refused_naming_it(tmp_path: Path, label: str) -> None:
    listed = tmp_path / "train_list.txt"
    listed.write_text("".join(f"train/001/M_0000{i}.avi train/001/K_0000{i}.avi{label}\n"
                              for i in (1, 2)))
    source = isogd.IsogdSource(root=tmp_path, train_list=listed, test_list=listed,
                               test_split="test")
    _refused(lambda: isogd.read_split(source, "train"),
             rf"^{re.escape(str(listed))}: no line has a real label")
    # the same list stays readable as a test split (inference), unlabelled
    assert [s.label for s in isogd.read_split(source, "test").samples] == [UNLABELLED] * 2
    config = write_yaml(tmp_path / "set.yaml", {"tasks": {"gesture": [
        {"format": "isogd", "root": ".", "train_list": "train_list.txt"}]}})
    _refused(lambda: build_task_split(load_set(config), "gesture", "train"),
             r"train_list\.txt: no line has a real label")


# -- 2: every integer of every list is bounded -----------------------------------------------

def _nv(path: Path) -> object:
    return nvgesture.read_list(path, path.parent)


def _iso(path: Path) -> object:
    return isogd.read_list(path, path.parent)


def _mm(path: Path) -> object:
    return mmaction.read_list(path, mmaction.MmactionSource(root=path.parent))


def _ucf_list(path: Path) -> object:
    (path.parent / "classInd.txt").write_text("1 Walk\n")
    path.rename(path.parent / "trainlist01.txt")
    source = ucf101.Ucf101Source(root=path.parent, annotations=path.parent)
    return ucf101.read_split(source, "train")


def _class_index(path: Path) -> object:
    return ucf101.read_class_index(path)


def _subjects(path: Path) -> object:
    return ntu.read_subjects(path)


CASES = [  # (reader, a good first line, the bad second line with {} for the number, field)
    (_nv, NV_LINE.format(1, 9, 1), NV_LINE.format("{}", "{}", 1), "color start"),
    (_nv, NV_LINE.format(1, 9, 1), NV_LINE.format(1, "{}", 1), "color end"),
    (_nv, NV_LINE.format(1, 9, 1), NV_LINE.format(1, 9, "{}"), "label"),
    (_iso, "a/M_1.avi a/K_1.avi 1\n", "a/M_2.avi a/K_2.avi {}\n", "label"),
    (_mm, "a.mp4 0\n", "b.mp4 {}\n", "label"),
    (_mm, "a 3 0\n", "b {} 3 0\n", "offset"),
    (_mm, "a 3 0\n", "b {} 0\n", "total_frames"),
    (_ucf_list, "Walk/a.avi 1\n", "Walk/b.avi {}\n", "label"),
    (_class_index, "1 Walk\n", "{} Jump\n", "class index"),
    (_subjects, "1\n", "P{}\n", "subject"),
]


@pytest.mark.parametrize("number", [HUGE, ENORMOUS], ids=["26-digits", "5000-digits"])
@pytest.mark.parametrize(("read", "good", "bad", "field"), CASES,
                         ids=[f"{case[0].__name__[1:]}-{case[3]}" for case in CASES])
def test_every_integer_of_every_list_is_bounded(tmp_path: Path, read, good: str, bad: str,
                                                field: str, number: str) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text(good + bad.replace("{}", number))
    message = _refused(lambda: read(listed), rf"\.txt:2: {field} 9+(\.\.\.)? outside ")
    assert len(message) < 300  # the number is cut, not printed in full


def test_class_file_ids_are_compared_as_text(tmp_path: Path) -> None:
    names = tmp_path / "classes.txt"
    names.write_text(f"1 Walk\n{ENORMOUS} Jump\n")
    _refused(lambda: read_class_names(names), r"classes\.txt:2: class id 9+\.\.\., expected 2")
    names.write_text("A001\tdrink water\nA02\teat\n")
    assert read_class_names(names) == ["drink water", "eat"]
    names.write_text("Walk\nJump\nWalk\n")
    _refused(lambda: read_class_names(names),
             r"classes\.txt:3: class name 'Walk' appears twice \(first at line 1\)")


def test_the_largest_frame_number_is_read(tmp_path: Path) -> None:
    listed = tmp_path / "list.lst"
    top = listfile.MAX_FRAME
    listed.write_text(NV_LINE.format(top - 1, top, 25))
    (sample,) = nvgesture.read_list(listed, tmp_path)
    assert (sample.start, sample.end, sample.label) == (top - 1, top, 24)


# -- 3: a large mmaction label makes no class names ------------------------------------------

def test_an_mmaction_label_is_bounded_before_names_are_made(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a.mp4 0\nb.mp4 200000\n")
    (tmp_path / "test.txt").write_text("a.mp4 0\n")
    source = mmaction.MmactionSource(root=tmp_path, train_list=tmp_path / "train.txt",
                                     test_list=tmp_path / "test.txt")
    _refused(lambda: mmaction.read_split(source, "test"), r"train\.txt:2: label 200000 outside")
    (tmp_path / "train.txt").write_text(f"a.mp4 0\nb.mp4 {listfile.MAX_CLASSES - 1}\n")
    assert len(mmaction.read_split(source, "test").class_names) == listfile.MAX_CLASSES


# -- 4: a list file is bounded in size before it is read -------------------------------------

def test_an_oversized_list_is_refused_before_it_is_read(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text("a.mp4 0\n" * 125)  # 1000 bytes
    monkeypatch.setattr(listfile, "MAX_LIST_BYTES", 1000)
    assert len(_mm(listed)) == 1  # type: ignore[arg-type]
    with listed.open("a") as file:
        file.write("\n")
    _refused(lambda: _mm(listed), rf"^{re.escape(str(listed))}: 1001 bytes, more than the 1000")


def test_an_8_gb_list_is_refused_from_its_size(tmp_path: Path) -> None:
    assert listfile.MAX_LIST_BYTES < 8 << 30  # (so that the read below never happens)
    listed = tmp_path / "trainlist01.txt"
    with listed.open("wb") as file:
        file.truncate(8 << 30)  # sparse: no disk space, and never read
    _refused(lambda: _ucf_list(tmp_path / "trainlist01.txt"),
             r"trainlist01\.txt: 8589934592 bytes, more than")


# -- 5: one NTU sample, one vote --------------------------------------------------------------

def test_an_ntu_sample_listed_at_two_paths_counts_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    name = ntu_name(1, 1, 1, 1, 69)
    touch_all([tmp_path / name, tmp_path / "sub" / name])
    listed = tmp_path / "videos.txt"
    listed.write_text(f"{name.removesuffix('_rgb.avi')}\nsub/{name}\n")
    with caplog.at_level(logging.WARNING):
        split = ntu.read_split(ntu.NtuSource(root=tmp_path, video_list=listed), "train")
    assert [s.path for s in split.samples] == [tmp_path / name]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "1 sample(s) listed at two paths" in warnings[0]
    assert "line 2 names S001C001P001R001A069 again, listed at line 1" in warnings[0]


# -- 6: a label past the class names names its line ------------------------------------------

def test_a_label_past_the_class_names_names_file_and_line(tmp_path: Path) -> None:
    listed = tmp_path / "train.lst"
    listed.write_text(NV_LINE.format(1, 9, 1) + NV_LINE.format(1, 9, 26))
    source = nvgesture.NvgestureSource(root=tmp_path, train_list=listed)
    _refused(lambda: nvgesture.read_split(source, "train"),
             r"train\.lst:2: label 26 exceeds the 25 class names")
    (tmp_path / "names.txt").write_text("one\ntwo\n")
    (tmp_path / "train.txt").write_text("a.mp4 1\nb.mp4 3\n")
    mm = mmaction.MmactionSource(root=tmp_path, train_list=tmp_path / "train.txt",
                                 label_base=1, class_names=tmp_path / "names.txt")
    _refused(lambda: mmaction.read_split(mm, "train"),
             r"train\.txt:2: label 3 exceeds the 2 class names")


# -- 7: control characters are shown escaped -------------------------------------------------

def test_control_characters_from_a_list_are_shown_escaped(tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text("a\0\x1b[2J.mp4 0\na\0\x1b[2J.mp4 1\n")
    message = _refused(lambda: _mm(listed), r"list\.txt:2: a\\x00\\x1b\[2J\.mp4 is listed")
    assert message.isprintable()
    split = LabelledSplit([VideoSample(tmp_path / "x\0\x07\u202e.avi", 0)], ["c"], "s\x1b")
    message = _refused(lambda: require_files({"task": split}), r"x\\x00\\x07\\u202e\.avi")
    assert message.isprintable() and r"(s\x1b)" in message
    report = FileReport(total=1, count=1, first=[Path("/d\r\n/x.avi")], hint="folder /d\0")
    assert report.message() == r"1 of 1 files missing: /d\r\n/x.avi (folder /d\x00)"
    assert str(DatasetError("é ü 日本 \t\0")) == "é ü 日本 \\t\\x00"  # letters stay as they are


def test_escaping_survives_a_pickle_round_trip() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(DatasetError("a\0b")))
    assert isinstance(error, DatasetError) and str(error) == r"a\x00b"



def test_validation_on_an_unlabelled_isogd_test_list_is_refused_before_training(
        tmp_path: Path) -> None:
    """`val_split: test` with IsoGD's published test list (labels held back) started the
    run and failed at the first validation ("no labelled sample to score")."""
    from mtl_perception.settings import SettingsError
    from training.train.config import load_train_config
    from training.train.data import build_data

    train = tmp_path / "train_list.txt"
    train.write_text("".join(f"train/001/M_0000{i}.avi train/001/K_0000{i}.avi {1 + i % 2}\n"
                             for i in (1, 2, 3, 4)))
    test = tmp_path / "test_list.txt"
    test.write_text("test/001/M_00001.avi test/001/K_00001.avi\n")
    config = write_yaml(tmp_path / "set.yaml", {"class_merge": "none", "tasks": {"gesture": [
        {"format": "isogd", "root": ".", "train_list": "train_list.txt",
         "test_list": "test_list.txt", "test_split": "test"}]}})
    cpu_small = Path(__file__).resolve().parents[1] / "config" / "train" / "cpu_small.yaml"
    train_config = load_train_config(cpu_small, [f"set={config}", "val_split=test",
                                                 "pretrained=none"])
    with pytest.raises(SettingsError, match=r"task 'gesture': val_split test: .*test_list"
                                            r"\.txt has no labels to validate on"):
        build_data(train_config)


def test_isogd_reads_a_signed_label_as_a_label_and_refuses_a_depth_video(
        tmp_path: Path) -> None:
    """`M_1.avi +3` was read as a video with a depth file named `+3` (unlabelled), and a
    depth `K_` video in the RGB column was accepted."""
    listed = tmp_path / "list.txt"
    listed.write_text("train/001/M_00001.avi +3\ntrain/001/M_00002.avi 2\n")
    assert [s.label for s in isogd.read_list(listed, tmp_path)] == [2, 1]
    listed.write_text("train/001/M_00001.avi x3\n")
    _refused(lambda: isogd.read_list(listed, tmp_path), r"list.txt:1: label 'x3' is not an "
                                                        r"integer")
    listed.write_text("train/001/K_00001.avi train/001/M_00001.avi 3\n")
    _refused(lambda: isogd.read_list(listed, tmp_path), r"list.txt:1: .*K_00001.avi is a depth")
