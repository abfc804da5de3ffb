"""Session labels (`untrimmed:` folders): one parser with evaluate_bag's checks, names
checked against the model or set, every defect one DatasetError naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_datasets import corrupt_video, stand_in_video

from training.datasets.listfile import DatasetError
from training.datasets.untrimmed import (
    LabelledInterval,
    UntrimmedSource,
    UntrimmedVideo,
    check_classes,
    read_untrimmed,
)

CLASSES = {"action": ["walk", "jump"], "gesture": ["wave", "stop"]}


def _folder(tmp_path: Path, rows: list[str], frames: int = 50) -> UntrimmedSource:
    """root/train/s.mp4 (50 frames at 25 fps: 2 s) with `rows` as its labels."""
    folder = tmp_path / "sessions" / "train"
    folder.mkdir(parents=True)
    stand_in_video(folder / "s.mp4", frames=frames, width=32, height=24)
    (folder / "s.csv").write_text("\n".join(["start,end,task,label", *rows]) + "\n")
    return UntrimmedSource(tmp_path / "sessions")


def test_a_session_is_read_with_its_header_and_the_lines_of_its_intervals(tmp_path: Path):
    source = _folder(tmp_path, ["0.2,0.9,gesture,wave", "", "0.5,1.5,action,walk"])
    [video] = read_untrimmed(source, "train", background=False)
    assert (video.frames, video.fps) == (50, 25.0)
    assert video.intervals == (LabelledInterval(0.2, 0.9, "gesture", "wave", 2),
                               LabelledInterval(0.5, 1.5, "action", "walk", 4))
    check_classes([video], CLASSES, "the checkpoint's")  # both known: no error


@pytest.mark.parametrize(("rows", "line", "message"), [
    # past the video's 2 s (one frame, 0.04 s, of slack): the huge values used to
    # overflow the frame arithmetic, or cut gigabytes of "none" past the end
    (["0.2,0.9,gesture,wave", "30,31,gesture,wave"], 3, "lies outside the video"),
    (["1e307,1e308,gesture,wave"], 2, "lies outside the video"),
    (["1.0,2.05,gesture,wave"], 2, "lies outside the video"),
    # one task's intervals may not overlap: a repeated row counted a gesture twice
    (["0.2,0.9,gesture,wave", "0.2,0.9,gesture,wave"], 3, "overlaps line 2"),
    (["0.2,0.9,gesture,wave", "0.5,1.2,gesture,stop"], 3, "overlaps line 2"),
    (["nan,1,gesture,wave"], 2, "is not a finite number"),
    (["0.9,0.2,gesture,wave"], 2, "is not after start"),
])
def test_a_defective_row_is_one_error_naming_the_file_and_line(
        tmp_path: Path, rows: list[str], line: int, message: str):
    source = _folder(tmp_path, rows)
    with pytest.raises(DatasetError, match=message) as caught:
        read_untrimmed(source, "train", background=False)
    assert f"s.csv:{line}:" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_last_frame_period_is_inside_and_tasks_may_overlap_each_other(tmp_path: Path):
    source = _folder(tmp_path, ["1.0,2.04,gesture,wave", "0.5,1.5,action,walk"])
    [video] = read_untrimmed(source, "train", background=False)
    assert [i.end for i in video.intervals] == [2.04, 1.5]


@pytest.mark.parametrize(("row", "message"), [
    ("0.2,0.9,gesture,STOPP", "s.csv:2: unknown gesture class 'STOPP'; the checkpoint's "
                              "gesture classes: wave, stop"),
    ("0.2,0.9,dance,tango", "s.csv:2: unknown task 'dance'; the checkpoint's tasks: "
                            "action, gesture"),
])
def test_names_are_checked_against_the_classes_given(tmp_path: Path, row: str, message: str):
    videos = read_untrimmed(_folder(tmp_path, [row]), "train", background=False)
    with pytest.raises(DatasetError) as caught:
        check_classes(videos, CLASSES, "the checkpoint's")
    assert str(caught.value).endswith(message)


def test_an_unreadable_or_empty_video_is_refused_when_the_folder_is_read(tmp_path: Path):
    folder = tmp_path / "bg" / "train"
    corrupt_video(folder / "broken.mp4")
    with pytest.raises(DatasetError, match=r"cannot read untrimmed video .*broken\.mp4"):
        read_untrimmed(UntrimmedSource(tmp_path / "bg"), "train", background=True)


def test_a_header_only_labels_file_is_a_session_without_motions(tmp_path: Path):
    [video] = read_untrimmed(_folder(tmp_path, []), "train", background=False)
    assert video.intervals == () and video.frames == 50


def test_a_video_made_in_code_names_its_labels_file():
    assert UntrimmedVideo(Path("/d/s.avi")).labels == Path("/d/s.csv")


def test_a_labelled_session_listed_as_background_is_refused(tmp_path: Path):
    source = _folder(tmp_path, ["0.2,0.9,gesture,wave"])  # NAME.csv beside the video
    with pytest.raises(DatasetError, match=r"s\.mp4: a labels file s\.csv lies beside it"):
        read_untrimmed(source, "train", background=True)
