"""Video decoding: frame-exact reads after keyframe seeks, fallbacks, bad files, frame folders.

Each test video encodes its frame number k in a row of black/white blocks
(robust to compression) over a moving texture (so the encoder really makes
P-frames between keyframes, and a seek that lands on the wrong frame shows).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from helpers_datasets import broken_videos
from PIL import Image

from training.datasets.frames import count_image_frames, read_image_frames
from training.datasets.video import (
    VideoReader,
    VideoReadError,
    VideoTooShortError,
    probe_video,
    read_frames,
    write_video,
)

BITS, BLOCK = 9, 16
FRAMES = 300


def coded_frames(count: int, height: int = 64, width: int = BITS * BLOCK) -> np.ndarray:
    """Frame k shows k in binary blocks along the top, over a scrolling texture."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height * 2, width * 2, 3), dtype=np.uint8)
    frames = np.empty((count, height, width, 3), np.uint8)
    for k in range(count):
        frame = np.roll(texture, (k * 2, k * 3), axis=(0, 1))[:height, :width].copy()
        for bit in range(BITS):
            frame[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (k >> bit) & 1 else 0
        frames[k] = frame
    return frames


def frame_id(frame: np.ndarray) -> int:
    inner = slice(3, BLOCK - 3)
    return sum(
        1 << bit
        for bit in range(BITS)
        if frame[inner, bit * BLOCK + 3 : (bit + 1) * BLOCK - 3].mean() > 128
    )


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    frames = coded_frames(FRAMES)
    paths = {
        "avi": folder / "coded.avi",  # UCF-101 / IsoGD / NTU style
        "mp4": folder / "coded.mp4",  # H.264 with B-frames
        "ts": folder / "coded.ts",  # MPEG-TS: no index, must fall back
    }
    write_video(paths["avi"], frames, codec="mpeg4", gop=12)
    write_video(paths["mp4"], frames, codec="libx264", gop=12)
    write_video(paths["ts"], frames, codec="mpeg4", gop=12)
    return paths


READS = [
    [0],
    [FRAMES - 1],
    [5, 6, 7],
    [100, 3, 250, 3],  # any order, repeats
    list(range(140, 172)),  # a 32-frame clip
    list(range(11, 75, 2)),  # a clip with step 2
    [0, 1, 290, 291],  # a gap with keyframes: seeks again
    [13, 13, 13, 200, 201],
]


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_frame_exact_reads_after_seeking(videos: dict[str, Path], kind: str) -> None:
    with VideoReader(videos[kind]) as reader:
        assert reader.num_frames == FRAMES
        for indices in READS:
            frames = reader.read(indices)
            assert frames.shape == (len(indices), 64, BITS * BLOCK, 3)
            assert [frame_id(f) for f in frames] == indices
        rng = np.random.default_rng(1)
        for _ in range(20):
            indices = sorted(rng.integers(0, FRAMES, rng.integers(1, 40)).tolist())
            assert [frame_id(f) for f in reader.read(indices)] == indices
        assert reader.stats.seeks > 0 and reader.stats.fallbacks == 0


def test_seeking_skips_the_frames_before_the_clip(videos: dict[str, Path]) -> None:
    container = av.open(str(videos["avi"]))
    entries = container.streams.video[0].index_entries
    keyframes = sum(entry.is_keyframe for entry in entries)
    container.close()
    assert 0 < keyframes < FRAMES // 2, "the test video must have P-frames"
    with VideoReader(videos["avi"]) as reader:
        reader.read(list(range(250, 282)))
        # From the keyframe at or before 250: at most a GOP (+ the clip), not 282.
        assert 32 <= reader.stats.frames_decoded <= 32 + 40
        assert reader.stats.frames_converted == 32


def test_container_without_index_falls_back_to_decoding_from_the_start(
    videos: dict[str, Path],
) -> None:
    with VideoReader(videos["ts"]) as reader:
        indices = [250, 3, 120]
        assert [frame_id(f) for f in reader.read(indices)] == indices
        assert reader.stats.fallbacks == 1
    assert probe_video(videos["ts"]).num_frames == FRAMES


def test_multithreaded_decoding_is_exact_too(videos: dict[str, Path]) -> None:
    indices = list(range(200, 232))
    frames = read_frames(videos["mp4"], indices, threads=0)
    assert [frame_id(f) for f in frames] == indices


def test_probe(videos: dict[str, Path]) -> None:
    info = probe_video(videos["avi"])
    assert (info.num_frames, info.fps, info.width, info.height) == (FRAMES, 25.0, 144, 64)


def test_read_past_the_end_names_the_file(videos: dict[str, Path]) -> None:
    with pytest.raises(VideoTooShortError, match="coded.avi") as err:
        read_frames(videos["avi"], [10, FRAMES + 5])
    assert err.value.available == FRAMES
    with pytest.raises(ValueError):
        read_frames(videos["avi"], [])
    with pytest.raises(ValueError):
        read_frames(videos["avi"], [-1])


def test_random_bytes_missing_and_truncated_files(tmp_path: Path, videos: dict[str, Path]) -> None:
    noise = tmp_path / "noise.avi"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="noise.avi"):
        probe_video(noise)
    with pytest.raises(VideoReadError, match="noise.avi"):
        read_frames(noise, [0])
    with pytest.raises(VideoReadError, match="absent.avi"):
        read_frames(tmp_path / "absent.avi", [0])
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(videos["avi"].read_bytes()[: videos["avi"].stat().st_size // 3])
    with pytest.raises(VideoReadError, match="truncated.avi"):
        read_frames(truncated, [FRAMES - 10])
    # What survives of a truncated file still decodes exactly.
    assert [frame_id(f) for f in read_frames(truncated, [2, 9])] == [2, 9]


def test_frame_folders(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(6):  # gray level 40 k survives JPEG
        image = Image.fromarray(np.full((24, 32, 3), 40 * k, np.uint8))
        image.save(folder / f"img_{k + 1:05d}.jpg")
    assert count_image_frames(folder) == 6
    frames = read_image_frames(folder, [4, 0, 4, 2])
    assert frames.shape == (4, 24, 32, 3) and frames.dtype == np.uint8
    assert [round(f.mean() / 40) for f in frames] == [4, 0, 4, 2]
    with pytest.raises(VideoTooShortError, match="img_00007.jpg"):
        read_image_frames(folder, [6])
    (folder / "img_00003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoReadError, match="img_00003.jpg"):
        read_image_frames(folder, [2])
    with pytest.raises(VideoReadError, match="not found"):
        count_image_frames(tmp_path / "nowhere")


def test_files_without_a_usable_video_stream(tmp_path: Path) -> None:
    """0 bytes, an unknown codec, header only, 0 frames, audio only: one error naming the file.

    An unknown codec used to escape as AttributeError (no codec context), which
    a dataset does not catch: one such file ended a training run.
    """
    for kind, path in broken_videos(tmp_path).items():
        with pytest.raises(VideoReadError, match=path.name):
            read_frames(path, [0])
        if kind in ("empty", "unknown_codec", "audio_only"):
            with pytest.raises(VideoReadError, match=path.name):
                probe_video(path)
