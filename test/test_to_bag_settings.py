"""dataset_to_bag under hostile settings: exit 2, one line, nothing written.

Each setting here used to end in a traceback after decoding had started
(NaN or negative stamps, an --out under a file), or to write a bag that ROS 2
cannot use (a negative gap: stamps running backwards; an invalid topic name).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_bag import frames

from training.datasets.video import write_video
from training.tools.to_bag import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe_videos")
    write_video(root / "a.avi", frames(4, 1, size=(24, 32)), fps=10.0)
    (root / "val_list.txt").write_text("a.avi 0\n")
    (root / "classes.txt").write_text("walk\n")
    return root


def _convert(dataset: Path, out: Path, *extra: str) -> int:
    return main(["--format", "mmaction", "--task", "action", "--source", f"root={dataset}",
                 "class_names=classes.txt", "--out", str(out), *extra])


@pytest.mark.parametrize("extra, words", [
    (("--start-s", "nan"), "--start-s"),
    (("--start-s", "-5"), "--start-s"),
    (("--start-s", "1e30"), "--start-s"),
    (("--start-s", "3000000000"), "hold signed 32-bit seconds"),
    (("--start-s", "2147483647"), "--start-s"),  # was struct.error: 'i' format requires ...
    (("--gap-s", "-100"), "--gap-s"),
    (("--gap-s", "inf"), "--gap-s"),
    (("--compressed", "--jpeg-quality", "500"), "--jpeg-quality"),
    (("--max-videos", "-3"), "--max-videos"),
    (("--topic", "not a topic"), "not a valid ROS 2 topic name"),
    (("--topic", "/camera/"), "not a valid ROS 2 topic name"),
])
def test_bad_settings_exit_2_with_one_line_and_write_nothing(
        dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        extra: tuple[str, ...], words: str) -> None:
    assert _convert(dataset, tmp_path / "bag", *extra) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and words in errors[0] and "\n" not in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_an_out_under_a_file_exits_2_and_the_file_stays(dataset: Path, tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("user data")
    assert _convert(dataset, afile / "bag") == 2
    assert afile.read_text() == "user data" and sorted(tmp_path.iterdir()) == [afile]


def test_a_valid_relative_topic_and_a_zero_gap_still_convert(dataset: Path,
                                                             tmp_path: Path) -> None:
    assert _convert(dataset, tmp_path / "bag", "--topic", "cam_1/image", "--gap-s", "0") == 0
    assert (tmp_path / "bag" / "labels.csv").is_file()


def test_ctrl_c_while_writing_exits_130_and_leaves_nothing(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.tools import to_bag

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(to_bag, "write_labels", interrupted)  # after every frame is written
    try:
        assert _convert(dataset, tmp_path / "bag") == 130
    except KeyboardInterrupt:  # escaping it would stop the whole test session
        pytest.fail("Ctrl-C escaped dataset_to_bag's main")
    assert list(tmp_path.iterdir()) == []


def test_an_out_inside_the_video_root_is_refused(
        dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: a bag written among the dataset's videos, exit 0."""
    assert _convert(dataset, dataset / "bags" / "test") == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"lies inside {dataset}, a folder this run reads" in errors[0]
    assert sorted(p.name for p in dataset.iterdir()) == ["a.avi", "classes.txt", "val_list.txt"]
