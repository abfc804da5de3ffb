"""`python -m training summarize` on every shipped split file, with a sample of stand-in videos."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers_datasets import broken_videos, corrupt_video, populate, stand_in_video, write_yaml
from PIL import Image

from training.__main__ import main
from training.datasets.missing import (
    MissingFilesError,
    check_videos,
    find_missing,
    find_unreadable,
    require_files,
)
from training.datasets.sets import build_split, load_set

NV = "nvgesture_{}_correct_cvpr2016_v2.lst"


@pytest.fixture(scope="module")
def world(splits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two set configs over the real lists; stand-ins for some entries, one corrupt file."""
    tmp = tmp_path_factory.mktemp("summarize")
    isogd = {"format": "isogd", "root": "IsoGD_phase_1", "test_root": "IsoGD_phase_2",
             **{f"{s}_list": str(splits_dir / "isogd" / f"{s}_list.txt")
                for s in ("train", "valid", "test")}}
    main_set = write_yaml(tmp / "main.yaml", {"name": "every-list", "tasks": {
        "action": [{"format": "ucf101", "root": "UCF-101",
                    "annotations": str(splits_dir / "ucf101")}],
        "gesture": [{"format": "nvgesture", "root": "nvGesture",
                     "train_list": str(splits_dir / "nvgesture" / NV.format("train")),
                     "test_list": str(splits_dir / "nvgesture" / NV.format("test"))},
                    isogd]}})
    test_list_set = write_yaml(tmp / "isogd_test.yaml", {"tasks": {
        "gesture": [{**isogd, "test_split": "test"}]}})
    written: dict[tuple[str, str, str], int] = {}
    for name, path in (("main", main_set), ("isogd_test", test_list_set)):
        config = load_set(path)
        for split in ("train", "test"):
            for task, sources in config.tasks.items():
                for source in sources:
                    samples = source.read(split).samples
                    written[name, task, split] = written.get((name, task, split), 0) + len(
                        populate(samples, every=max(1, len(samples) // 4)))
    # one UCF test entry without a stand-in becomes a corrupt file
    ucf_test = build_split(load_set(main_set), "test")["action"].samples
    corrupt = next(s.path for s in ucf_test if not s.path.exists())
    corrupt_video(corrupt)
    return {"main": main_set, "isogd_test": test_list_set, "written": written,
            "corrupt": corrupt, "tmp": tmp}


def run_summarize(config: Path, out: Path, *extra: str) -> dict:
    assert main(["summarize", "--config", str(config), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def list_sizes(path: Path, label_of) -> tuple[int, int]:
    counts = Counter(label_of(line) for line in path.read_text().splitlines() if line.strip())
    return min(counts.values()), max(counts.values())


def test_counts_on_every_shipped_list(world: dict, splits_dir: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    summary = run_summarize(world["main"], world["tmp"] / "out" / "main.json")
    tasks = summary["tasks"]
    assert set(tasks) == {"action", "gesture"}
    assert all(set(tasks[t]) == {"train", "test"} for t in tasks)
    expected = {("action", "train"): (9537, 101), ("action", "test"): (3783, 101),
                ("gesture", "train"): (1050 + 35878, 25 + 249),
                ("gesture", "test"): (482 + 5784, 25 + 249)}  # IsoGD test = its valid list
    for (task, split), (samples, classes) in expected.items():
        row = tasks[task][split]
        assert {"samples", "classes", "missing", "unreadable", "class_size_min",
                "class_size_max"} <= set(row)
        assert (row["samples"], row["classes"]) == (samples, classes)
        corrupt = int((task, split) == ("action", "test"))  # present, so not missing
        present = world["written"]["main", task, split] + corrupt
        assert row["missing"] == samples - present
        assert row["unreadable"] is None  # only with --check-videos
    ucf = splits_dir / "ucf101"
    assert (tasks["action"]["train"]["class_size_min"], tasks["action"]["train"]
            ["class_size_max"]) == list_sizes(ucf / "trainlist01.txt", lambda x: x.split()[1])
    assert (tasks["action"]["test"]["class_size_min"], tasks["action"]["test"]
            ["class_size_max"]) == list_sizes(ucf / "testlist01.txt", lambda x: x.split("/")[0])
    table = capsys.readouterr().out
    assert "action" in table and "9537" in table and "missing:" in table


def test_isogd_test_list_and_check_videos(world: dict) -> None:
    summary = run_summarize(world["isogd_test"], world["tmp"] / "isogd.json", "--check-videos")
    test = summary["tasks"]["gesture"]["test"]
    assert test["samples"] == 6271 and test["classes"] == 249
    assert test["class_size_min"] is None and test["labelled"] is False  # placeholder labels
    assert test["missing"] == 6271 - world["written"]["isogd_test", "gesture", "test"]
    assert test["unreadable"] == 0
    train = summary["tasks"]["gesture"]["train"]
    assert train["samples"] == 35878 and train["unreadable"] == 0


def test_check_videos_counts_a_corrupt_file(world: dict, capsys: pytest.CaptureFixture) -> None:
    summary = run_summarize(world["main"], world["tmp"] / "checked.json", "--check-videos")
    row = summary["tasks"]["action"]["test"]
    assert row["unreadable"] == 1
    assert row["unreadable_examples"] == [str(world["corrupt"])]
    assert summary["tasks"]["action"]["train"]["unreadable"] == 0
    assert summary["tasks"]["gesture"]["test"]["unreadable"] == 0
    assert "unreadable: " + str(world["corrupt"]) in capsys.readouterr().out


def test_require_files_message(world: dict) -> None:
    splits = build_split(load_set(world["main"]), "test")
    report = find_missing(splits["gesture"], limit=2)
    assert report.count == 482 + 5784 - world["written"]["main", "gesture", "test"]
    assert len(report.first) == 2
    with pytest.raises(MissingFilesError) as info:
        require_files(splits, limit=2)
    message = str(info.value)
    assert f"{report.count} of 6266 files missing" in message
    assert str(report.first[0]) in message and "action:" in message


def test_errors_are_one_line_exit_2(world: dict, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    assert main(["summarize", "--config", str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: settings file not found") and "\n" not in err
    missing_list = write_yaml(tmp_path / "m.yaml", {"tasks": {"gesture": [
        {"format": "nvgesture", "root": "nv", "train_list": "gone.lst"}]}})
    assert main(["summarize", "--config", str(missing_list)]) == 2
    err = capsys.readouterr().err.strip()
    assert "list file not found" in err and "gone.lst" in err and "\n" not in err
    bad = tmp_path / "bad.lst"
    bad.write_text("path:./a color:sk_color:1:81 label:1\r\n"
                   "path:./b color:sk_color:x:9 label:1\r\n")
    malformed = write_yaml(tmp_path / "b.yaml", {"tasks": {"gesture": [
        {"format": "nvgesture", "root": "nv", "train_list": "bad.lst", "test_list": "bad.lst"}]}})
    assert main(["summarize", "--config", str(malformed)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bad}:2:" in err and "\n" not in err


def test_a_root_that_does_not_exist_is_named(splits_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    """All 9,537 files missing: the message says which folder is absent, not only 5 names."""
    config = write_yaml(tmp_path / "typo.yaml", {"tasks": {"action": [
        {"format": "ucf101", "root": "datsets/UCF-101",
         "annotations": str(splits_dir / "ucf101")}]}})
    summary = run_summarize(config, tmp_path / "typo.json")
    row = summary["tasks"]["action"]["train"]
    assert row["missing"] == row["samples"] == 9537
    assert row["missing_hint"] == f"folder {tmp_path / 'datsets'} does not exist"
    assert f"action/train: folder {tmp_path / 'datsets'} does not exist" in capsys.readouterr().out
    with pytest.raises(MissingFilesError, match=r"9537 of 9537 files missing.*datsets does not"):
        require_files(build_split(load_set(config), "train"))


def test_check_videos_decodes_rather_than_trusting_headers(tmp_path: Path) -> None:
    """Files whose header looks fine but that yield no clip count as unreadable.

    A header-only file, a segment past the video's end and a frame folder with a
    gap all used to pass `--check-videos`, then were skipped in training.
    """
    broken = broken_videos(tmp_path / "data" / "broken")
    good = stand_in_video(tmp_path / "data" / "good.avi", frames=12)
    beyond = stand_in_video(tmp_path / "data" / "beyond.avi", frames=12)
    gap = tmp_path / "data" / "gap"
    for k in (1, 2, 4):
        stand_in_frame = np.full((16, 16, 3), 60 * k, np.uint8)
        gap.mkdir(exist_ok=True)
        Image.fromarray(stand_in_frame).save(gap / f"img_{k:05d}.jpg")
    whole = tmp_path / "data" / "whole"
    shutil.copytree(gap, whole)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(whole / "img_00003.jpg")
    lines = [f"{p.relative_to(tmp_path / 'data')} 0" for p in (*broken.values(), good, beyond)]
    lines += ["gap 4 0", "whole 0 4 0", "whole 2 0"]  # frames: [dir [offset] total label]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    config = write_yaml(tmp_path / "set.yaml", {"tasks": {"action": [
        {"format": "mmaction", "root": "data", "train_list": "train.txt",
         "test_list": "train.txt"}]}})
    split = build_split(load_set(config), "train")["action"]
    segment = dataclasses.replace(split.samples[len(broken) + 1], start=20, end=30)
    split.samples[len(broken) + 1] = segment  # beyond.avi: 12 frames, segment [20, 30)
    report = find_unreadable(split, limit=20)
    assert sorted(p.name for p in report.first) == sorted(
        [p.name for p in broken.values()] + ["gap"])
    # a segment past the end is reported as such, not as unreadable (issue 7)
    past = check_videos(split, limit=20)["past_end"]
    assert [p.name for p in past.first] == ["beyond.avi"]
    assert past.reasons == ["segment starts at frame 20, the video holds 12 frames"]
    # each distinct (file, segment) once: `whole` is listed with two segments
    assert report.count == len(broken) + 1 and report.total == len(broken) + 5


def test_unknown_subcommand_is_one_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sumarize", "--config", "x.yaml"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sumarize'" in err and "Traceback" not in err


def test_json_never_replaces_the_set_it_reads_or_an_existing_file(
        world: dict, capsys: pytest.CaptureFixture) -> None:
    config: Path = world["main"]
    before = config.read_bytes()
    assert main(["summarize", "--config", str(config), "--json", str(config),
                 "--overwrite"]) == 2
    assert "an input of this run" in capsys.readouterr().err and config.read_bytes() == before
    mine = world["tmp"] / "mine.json"
    mine.write_text("a user's file")
    assert main(["summarize", "--config", str(config), "--json", str(mine)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert mine.read_text() == "a user's file"
    # --overwrite replaces a JSON file, never a file of another kind: a dataset's video
    # named by mistake was turned into JSON (the dataset root is not one of the inputs)
    video = world["tmp"] / "v_Walk_g01_c01.avi"
    video.write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(range(256)))
    before = video.read_bytes()
    assert main(["summarize", "--config", str(config), "--json", str(video), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists and is not a JSON file" in err and len(err.splitlines()) == 1
    assert video.read_bytes() == before
    mine.write_text('{"an": "other command\'s JSON"}')  # valid JSON, not summarize's
    assert main(["summarize", "--config", str(config), "--json", str(mine), "--overwrite"]) == 2
    assert "is not a JSON file written by python -m training summarize" in (
        capsys.readouterr().err)
    earlier = world["tmp"] / "earlier.json"
    assert main(["summarize", "--config", str(config), "--json", str(earlier)]) == 0
    assert json.loads(earlier.read_text())["written_by"] == "python -m training summarize"
    assert main(["summarize", "--config", str(config), "--json", str(earlier),
                 "--overwrite"]) == 0  # its own earlier output: replaced


def test_the_table_shows_control_characters_of_listed_paths_escaped() -> None:
    from training.tools.summarize import format_table

    split = {"samples": 1, "classes": 1, "missing": 1, "not_files": 0, "labelled": True,
             "class_size_min": 1,
             "class_size_max": 1, "source": "ucf101 trainlist01.txt",
             "missing_examples": ["UCF-101/a\x00b\x1b[2Jc.avi"]}
    text = format_table({"name": "s", "config": "s.yaml", "tasks": {"action": {"train": split}}})
    assert "\x00" not in text and "\x1b" not in text
    assert "a\\x00b\\x1b[2Jc.avi" in text


def test_a_test_video_also_listed_for_training_is_reported(tmp_path: Path) -> None:
    """A video in both trainlist01 and testlist01 was accepted without a word: its test
    scores are not held out."""
    from training.datasets.sample import LabelledSplit, VideoSample, shared_samples
    from training.tools.summarize import format_table, summarize

    a, b = VideoSample(tmp_path / "a.avi", 0), VideoSample(tmp_path / "b.avi", 1)
    segment = VideoSample(tmp_path / "a.avi", 0, start=10, end=20)  # another segment: not shared
    train = LabelledSplit([a, b], ["x", "y"])
    assert shared_samples(LabelledSplit([a, segment], ["x", "y"]), train) == [a]
    root = tmp_path / "ucf"
    (root / "ucfTrainTestlist").mkdir(parents=True)
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("1 Walk\n2 Jump\n")
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text(
        "Walk/v_Walk_g01_c01.avi 1\nJump/v_Jump_g01_c01.avi 2\n")
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text(
        "Walk/v_Walk_g01_c01.avi\nJump/v_Jump_g02_c01.avi\n")
    config = write_yaml(tmp_path / "set.yaml", {"class_merge": "none", "tasks": {"action": [
        {"format": "ucf101", "root": "ucf", "annotations": "ucf/ucfTrainTestlist"}]}})
    summary = summarize(load_set(config), ["train", "test"])
    assert summary["tasks"]["action"]["test"]["in_train"] == 1
    assert "in_train" not in summary["tasks"]["action"]["train"]
    assert ("action/test: 1 sample(s) also in the train split" in format_table(summary))


@pytest.mark.parametrize("value", ["0", "-1", "10001", "x"])
def test_clip_length_outside_1_to_10000_is_a_usage_error(
        value: str, capsys: pytest.CaptureFixture) -> None:
    """--clip-length 0 was quietly read as 1."""
    with pytest.raises(SystemExit) as info:
        main(["summarize", "--config", "x.yaml", "--clip-length", value])
    assert info.value.code == 2
    assert "--clip-length" in capsys.readouterr().err
