"""`summarize --check-videos` checks what it says (issue 7, class 6).

Frame folders are decoded, not just listed; a directory named like a video is
reported as one; a segment past a video's end is reported as such; and a
malformed list stops the run before any video is decoded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_datasets import stand_in_video, write_yaml
from PIL import Image

import training.datasets.video as video
from training.__main__ import main
from training.datasets.frames import check_frame_folder


def _frames(folder: Path, count: int, size: tuple[int, int] = (32, 24)) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{k + 1:05d}.jpg", quality=90)
    return folder


def _summary(tmp_path: Path, lines: list[str]) -> dict:
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    config = write_yaml(tmp_path / "set.yaml", {"tasks": {"action": [
        {"format": "mmaction", "root": "data", "train_list": "list.txt",
         "test_list": "list.txt"}]}})
    out = tmp_path / "summary.json"
    code = main(["summarize", "--config", str(config), "--check-videos", "--splits", "train",
                 "--json", str(out), "--show", "10"])
    assert code == 0
    return json.loads(out.read_text())["tasks"]["action"]["train"]


def test_frame_folders_are_decoded_not_just_listed(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    _frames(data / "good", 5)
    cut = _frames(data / "cut", 5)
    jpeg = (cut / "img_00003.jpg").read_bytes()
    (cut / "img_00003.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # an interrupted copy
    garbage = _frames(data / "garbage", 5)
    (garbage / "img_00004.jpg").write_bytes(b"\xff\xd8\xff" + bytes(200))
    resized = _frames(data / "resized", 5)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(resized / "img_00005.jpg")
    row = _summary(tmp_path, ["good 5 0", "cut 5 0", "garbage 5 1", "resized 5 1"])
    assert row["unreadable"] == 3 and row["past_end"] == 0 and row["missing"] == 0
    reasons = dict(zip((Path(p).name for p in row["unreadable_examples"]),
                       row["unreadable_reasons"]))
    assert set(reasons) == {"cut", "garbage", "resized"}
    assert reasons["cut"].startswith("cannot decode img_00003.jpg")
    assert reasons["garbage"].startswith("cannot decode img_00004.jpg")
    assert reasons["resized"] == "img_00005.jpg is 64x48, img_00001.jpg 32x24"
    assert "unreadable: " in capsys.readouterr().out


def test_a_directory_named_like_a_video_is_reported_as_one(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    (data / "clip.avi").mkdir(parents=True)
    stand_in_video(data / "real.avi", frames=8)
    (data / "frames_as_file").write_bytes(b"x")
    row = _summary(tmp_path, ["clip.avi 0", "real.avi 0", "frames_as_file 4 0"])
    assert row["missing"] == 0 and row["unreadable"] == 0
    assert row["not_files"] == 2
    assert row["not_file_reasons"] == ["a directory, not a video file",
                                       "a file, not a frame folder"]
    out = capsys.readouterr().out
    assert f"not a file: {data / 'clip.avi'} (a directory, not a video file)" in out


def test_a_segment_past_the_end_is_reported_as_such(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stand_in_video(data / "short.avi", frames=10)
    _frames(data / "frames", 4)
    # mmaction: `frame_dir offset total label`: frames [6, 8) of a 4-frame folder
    row = _summary(tmp_path, ["short.avi 0", "frames 6 2 0", "frames 0 4 1"])
    assert row["unreadable"] == 0 and row["past_end"] == 1
    assert row["past_end_reasons"] == ["segment starts at frame 6, the folder holds 4 frames"]
    assert check_frame_folder(data / "frames", 0, None) is None


def test_a_malformed_list_is_found_before_any_video_is_decoded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    stand_in_video(data / "a.avi", frames=8)
    (tmp_path / "good.txt").write_text("a.avi 0\n")
    (tmp_path / "bad.txt").write_text("a.avi 0\nb.avi zero\n")
    config = write_yaml(tmp_path / "set.yaml", {"tasks": {
        "action": [{"format": "mmaction", "root": "data", "train_list": "good.txt",
                    "test_list": "good.txt"}],
        "gesture": [{"format": "mmaction", "root": "data", "train_list": "good.txt",
                     "test_list": "bad.txt"}]}})
    opened = []

    class Recording(video.VideoReader):
        def __init__(self, path, threads=1):
            opened.append(path)
            super().__init__(path, threads)

    monkeypatch.setattr(video, "VideoReader", Recording)
    assert main(["summarize", "--config", str(config), "--check-videos"]) == 2
    err = capsys.readouterr().err
    assert "bad.txt:2: label 'zero' is not an integer" in err
    assert opened == []


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width x height pixels (a decompression bomb for Pillow)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_a_decompression_bomb_frame_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    from training.datasets.frames import read_image_frames
    from training.datasets.video import VideoReadError

    folder = _frames(tmp_path / "data" / "bomb", 3)
    _png_header_only(folder / "img_00002.jpg", 40_000, 40_000)
    kind, reason = check_frame_folder(folder, 0, None) or ("", "")
    assert kind == "unreadable" and "img_00002.jpg" in reason
    with pytest.raises(VideoReadError, match="img_00002.jpg"):
        read_image_frames(folder, [1])


def test_a_video_shorter_than_its_header_is_reported(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Issue 15: a container claiming more frames than decode (a cut download)."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 256, (40, 32, 48, 3), dtype=np.uint8)
    video.write_video(data / "whole.avi", clip, fps=10.0)
    raw = (data / "whole.avi").read_bytes()
    (data / "cut.avi").write_bytes(raw[: len(raw) // 2])
    row = _summary(tmp_path, ["whole.avi 0", "cut.avi 1"])
    assert row["short"] == 1 and row["unreadable"] == 0 and row["past_end"] == 0
    assert [Path(p).name for p in row["short_examples"]] == ["cut.avi"]
    assert row["short_reasons"][0].startswith("its header claims 40 frames, ")
    out = capsys.readouterr().out
    assert "shorter than its header: " in out and "cut.avi (its header claims 40" in out
