"""No hang, no traceback (issue 7, class 5): odd files are refused by stat, bad config values
are one message naming the setting, and the CLIs exit 2 with nothing half-written.

The FIFO tests carry a timeout: before the fix, opening a FIFO blocked forever.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml
from helpers_datasets import stand_in_video, write_yaml

from mtl_perception.settings import SettingsError, from_dict, load_yaml
from training.__main__ import main
from training.datasets.clip_dataset import ClipDataset
from training.datasets.frames import read_image_frames
from training.datasets.listfile import DatasetError, read_lines
from training.datasets.missing import MissingFilesError, require_files, wrong_kind
from training.datasets.sample import LabelledSplit, VideoSample
from training.datasets.sets import load_set
from training.datasets.video import VideoReader, VideoReadError, probe_video

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def odd_files(tmp_path: Path) -> dict[str, Path]:
    """Entries named like videos that are not regular files."""
    folder = tmp_path / "odd"
    folder.mkdir()
    fifo = folder / "fifo.avi"
    os.mkfifo(fifo)
    directory = folder / "dir.avi"
    directory.mkdir()
    device = folder / "device.avi"
    device.symlink_to("/dev/zero")  # reading it would never end
    sock_path = folder / "sock.avi"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    return {"a FIFO": fifo, "a directory": directory, "a character device": device,
            "a socket": sock_path}


def test_odd_files_are_refused_by_every_video_reader_without_opening(
        odd_files: dict[str, Path]) -> None:
    for kind, path in odd_files.items():
        for read in (lambda p: VideoReader(p), probe_video):
            with pytest.raises(VideoReadError, match=f"{path} is {kind}, not a regular file"):
                read(path)
        assert wrong_kind(VideoSample(path, 0)) == f"{kind}, not a video file"


def test_clip_dataset_skips_an_odd_file_and_counts_it(odd_files: dict[str, Path],
                                                      tmp_path: Path) -> None:
    good = stand_in_video(tmp_path / "good.avi", frames=8, width=32, height=32)
    items = [(VideoSample(p, 0), 0) for p in odd_files.values()] + [(VideoSample(good, 0), 0)]
    from mtl_perception.preprocess import PreprocessConfig

    dataset = ClipDataset(items, "centre", PreprocessConfig(clip_length=4, resize=(32, 32),
                                                            crop=(32, 32)))
    assert [dataset[i] is None for i in range(len(items))] == [True] * 4 + [False]
    assert dataset.skipped_count == 4
    with pytest.raises(MissingFilesError, match="4 of 5 files of the wrong kind"):
        dataset.check_files()
    with pytest.raises(MissingFilesError, match=r"a FIFO, not a video file"):
        require_files({"action": LabelledSplit([s for s, _ in items], ["a"], "x")})


def test_fifos_where_lists_settings_or_frames_are_expected(tmp_path: Path) -> None:
    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match="is not a regular file"):
        list(read_lines(fifo))
    with pytest.raises(SettingsError, match="is not a regular file"):
        load_yaml(fifo)
    frames = tmp_path / "frames"
    frames.mkdir()
    os.mkfifo(frames / "img_00001.jpg")
    with pytest.raises(VideoReadError, match="a FIFO"):
        read_image_frames(frames, [0])


@pytest.mark.parametrize(("text", "message"), [
    ("", r"tasks: missing"),
    ("name: x\n", r"tasks: missing"),
    ("- a\n- b\n", r"expected a mapping .* got list"),
    ("tasks: [action]\n", r"tasks: expected a mapping"),
    ("name: [a, b]\ntasks: {a: [{format: ucf101, root: r}]}\n", r"name: expected a string"),
    ("tasks: {a: [{format: [ucf101], root: r}]}\n", r"format: \['ucf101'\] is not one of"),
    ("tasks: {a: [{format: {x: 1}, root: r}]}\n", r"format: \{'x': 1\} is not one of"),
    ("tasks: {a: [{format: ucf101, root: ~nosuchuser_mtl/x}]}\n",
     r"tasks.a\[0\].root: cannot expand '~nosuchuser_mtl/x': no such user"),
    ("tasks: {a: [{format: ucf101, root: r, annotations: ~nosuchuser_mtl}]}\n",
     r"annotations: cannot expand"),
    ("tasks: {a: [{format: ucf101, root: ''}]}\n", r"root: '' is not a usable path"),
    ("tasks: {a: [{format: ucf101, root: \"a\\0b\"}]}\n", r"root: 'a\\x00b' is not a usable path"),
    ("tasks: {a: [{format: ucf101, root: r, split: [1]}]}\n", r"split: expected an integer"),
    ("tasks: {a: [{format: ucf101, root: r, split: 1.5}]}\n", r"split: expected an integer"),
    ("tasks: {a: [{format: ucf101}]}\n", r"missing required key\(s\) \['root'\]"),
    ("tasks: {a: [{format: ucf101, root: r}]}\nclass_merge: ''\n", r"class_merge: '' is not"),
    ("tasks: {a: [{format: ucf101, root: r}]}\nclass_merge: ~nosuchuser_mtl/m\n",
     r"class_merge: cannot expand"),
    ("tasks: {'': [{format: ucf101, root: r}]}\n", r"a task name is empty"),
    ("tasks: {1: [{format: ucf101, root: r}]}\n", r"tasks: expected a string, got 1"),
    ("tasks: {a: [{format: ucf101, root: r, 7: x}]}\n", r"expected a string, got 7"),
    ("tasks:\n  a: [{format: ucf101, root: r}]\n  a: []\n", r":3: key 'a' appears twice"),
    ("tasks: {a: [{format: ucf101, root: r}]\n", r"not valid YAML: line \d+, column \d+"),
])
def test_every_bad_config_value_is_one_message_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture, text: str, message: str) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_set(path)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "summary.json"
    assert main(["summarize", "--config", str(path), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before  # no summary, no temporary file


def test_from_dict_turns_a_dataclass_refusal_into_a_settings_error() -> None:
    from mtl_perception.preprocess import PreprocessConfig

    with pytest.raises(SettingsError, match=r"^preprocess: std must be > 0"):
        from_dict(PreprocessConfig, {"std": [0, 1, 1]}, "preprocess")
    with pytest.raises(SettingsError, match=r"unknown key\(s\) \['1', 'b'\]"):
        from_dict(PreprocessConfig, {1: 2, "b": 3})


@pytest.mark.parametrize("argv", [["--show", "-1"], ["--show", "x"], ["--splits", "dev"]])
def test_summarize_numbers_out_of_range_exit_2(tmp_path: Path, argv: list[str]) -> None:
    config = write_yaml(tmp_path / "set.yaml", {"tasks": {"a": [{"format": "ucf101",
                                                                 "root": "r"}]}})
    with pytest.raises(SystemExit) as info:
        main(["summarize", "--config", str(config), *argv])
    assert info.value.code == 2


def test_yaml_written_by_a_tool_still_loads(tmp_path: Path) -> None:
    data = {"name": "s", "tasks": {"a": [{"format": "ucf101", "root": "r", "split": 2}]}}
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_set(path).tasks["a"][0].settings.split == 2


@pytest.mark.parametrize("command", [["synth", "--out"], ["summarize", "--config"]])
def test_an_unknown_user_on_the_command_line_is_one_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture, command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*command, "~nosuchuser_mtl/x"]) == 2
    said = capsys.readouterr().err + caplog.text
    assert "cannot expand '~nosuchuser_mtl/x': no such user" in said
    assert list(tmp_path.iterdir()) == []


def test_deeply_nested_yaml_and_checkpoint_json_are_one_message(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("tasks: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SettingsError, match="nested too deeply"):
        load_set(path)
    import torch
    from safetensors.torch import save_file

    from mtl_perception.checkpoint import CheckpointError, load_checkpoint

    checkpoint = tmp_path / "deep.safetensors"
    save_file({"w": torch.zeros(1)}, str(checkpoint),
              metadata={"mtl_perception": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(CheckpointError, match="invalid metadata: nested too deeply"):
        load_checkpoint(checkpoint)


def test_absurd_sampling_numbers_are_refused() -> None:
    from training.datasets.clip_dataset import ClipSamplingConfig

    for changes in ({"num_eval_clips": 10**9}, {"frame_step": 10**12}, {"decode_threads": -1},
                    {"seed": -1}, {"flip_probability": float("nan")}):
        with pytest.raises(ValueError, match="must be"):
            ClipSamplingConfig(**changes)  # type: ignore[arg-type]
