"""ClipDataset: modes, segments, loop padding, flips per task, determinism, bad and missing files.

Preprocessing is set to the videos' own size (no resize, no crop) so that each
clip frame can be turned back into the frame number it shows (blocks coding
k in binary) and the exact frames of a clip checked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers_datasets import broken_videos
from PIL import Image
from torch.utils.data import DataLoader

from mtl_perception.preprocess import PreprocessConfig, preprocess_frames
from training.datasets.clip_dataset import ClipDataset, ClipSamplingConfig, collate_clips
from training.datasets.clips import centre_clip_indices, evenly_spaced_clips
from training.datasets.missing import MissingFilesError
from training.datasets.sample import LabelledSplit, VideoSample
from training.datasets.video import read_frames, write_video

BITS, BLOCK, HEIGHT = 7, 16, 32
WIDTH = BITS * BLOCK
CONFIG = PreprocessConfig(clip_length=8, resize=(HEIGHT, WIDTH), crop=(HEIGHT, WIDTH))


def write_coded(path: Path, count: int) -> Path:
    """Frame k shows k in binary blocks over a scrolling texture (real P-frames)."""
    texture = np.random.default_rng(1).integers(0, 255, (HEIGHT * 2, WIDTH * 2, 3), np.uint8)
    frames = np.empty((count, HEIGHT, WIDTH, 3), np.uint8)
    for k in range(count):
        frames[k] = np.roll(texture, (k, 2 * k), axis=(0, 1))[:HEIGHT, :WIDTH]
        for bit in range(BITS):
            frames[k, :BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (k >> bit) & 1 else 0
    write_video(path, frames, codec="mpeg4", gop=6)
    return path


def frame_ids(clip: torch.Tensor) -> list[int]:
    """(3, T, H, W) normalised clip -> the frame number each frame shows."""
    mean = torch.tensor(CONFIG.mean).view(3, 1, 1, 1)
    std = torch.tensor(CONFIG.std).view(3, 1, 1, 1)
    pixels = (clip * std + mean) * 255
    ids = []
    for t in range(clip.shape[1]):
        rows = pixels[:, t, 3 : BLOCK - 3]
        blocks = [rows[..., b * BLOCK + 3 : (b + 1) * BLOCK - 3] for b in range(BITS)]
        ids.append(sum(1 << b for b, block in enumerate(blocks) if block.mean() > 128))
    return ids


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    noise = folder / "noise.avi"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 9000, dtype=np.uint8).tobytes())
    long = write_coded(folder / "long.avi", 40)
    truncated = folder / "truncated.avi"
    truncated.write_bytes(long.read_bytes()[:1500])
    frames_dir = folder / "frames"
    frames_dir.mkdir()
    for k in range(5):
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 50 * k, np.uint8)).save(
            frames_dir / f"img_{k + 1:05d}.jpg"
        )
    return {
        "long": long,
        "other": write_coded(folder / "other.avi", 30),
        "short": write_coded(folder / "short.avi", 6),
        "noise": noise,
        "truncated": truncated,
        "missing": folder / "missing.avi",
        "frames": frames_dir,
    }


def sampling(**kwargs: object) -> ClipSamplingConfig:
    return ClipSamplingConfig(**{"num_eval_clips": 3, **kwargs})  # type: ignore[arg-type]


def test_centre_and_all_clips(files: dict[str, Path]) -> None:
    items = [(VideoSample(files["long"], 4), 1)]
    clip, label, task = ClipDataset(items, "centre", CONFIG, sampling())[0]
    assert clip.shape == (3, 8, HEIGHT, WIDTH) and clip.dtype == torch.float32
    assert (label, task) == (4, 1)
    assert frame_ids(clip) == list(range(16, 24))
    clips, _, _ = ClipDataset(items, "all", CONFIG, sampling(frame_step=2))[0]
    assert clips.shape == (3, 3, 8, HEIGHT, WIDTH)
    assert [frame_ids(c) for c in clips] == evenly_spaced_clips(40, 8, 2, 3)


def test_preprocessing_is_the_runtime_copy(files: dict[str, Path]) -> None:
    config = PreprocessConfig(clip_length=8)  # the real resize and crop
    clip, _, _ = ClipDataset([(VideoSample(files["long"], 0), 0)], "centre", config)[0]
    expected = preprocess_frames(read_frames(files["long"], range(16, 24)), config)
    assert clip.shape == (3, 8, 112, 112)
    torch.testing.assert_close(clip, expected, rtol=0, atol=0)
    # mode "all": 36 distinct frames, preprocessed in chunks, then gathered
    items = [(VideoSample(files["long"], 0), 0)]
    clips, _, _ = ClipDataset(items, "all", config, sampling(num_eval_clips=5))[0]
    for clip, indices in zip(clips, evenly_spaced_clips(40, 8, 1, 5), strict=True):
        expected = preprocess_frames(read_frames(files["long"], indices), config)
        torch.testing.assert_close(clip, expected, rtol=0, atol=0)


def test_segments_and_loop_padding(files: dict[str, Path]) -> None:
    items = [
        (VideoSample(files["long"], 0, start=10, end=20), 0),  # NVGesture-style segment
        (VideoSample(files["short"], 1), 0),  # 6 frames: loop-padded
        (VideoSample(files["long"], 2, start=30, end=33), 0),  # short segment
    ]
    data = ClipDataset(items, "centre", CONFIG, sampling())
    assert frame_ids(data[0][0]) == list(range(11, 19))
    assert frame_ids(data[1][0]) == [0, 1, 2, 3, 4, 5, 0, 1]
    assert frame_ids(data[2][0]) == [30, 31, 32, 30, 31, 32, 30, 31]
    train = ClipDataset(items, "train", CONFIG, sampling(flip_probability=0.0))
    for epoch in range(6):
        train.set_epoch(epoch)
        ids = frame_ids(train[0][0])
        assert ids == list(range(ids[0], ids[0] + 8)) and 10 <= ids[0] <= 12
        assert frame_ids(train[1][0]) == [0, 1, 2, 3, 4, 5, 0, 1]


def test_training_clips_are_deterministic_per_seed_epoch_and_index(files: dict[str, Path]) -> None:
    items = [(VideoSample(files["long"], 0), 0), (VideoSample(files["other"], 1), 0)]
    first = ClipDataset(items, "train", CONFIG, sampling(seed=3))
    again = ClipDataset(items, "train", CONFIG, sampling(seed=3))
    clips = []
    for epoch in range(5):
        first.set_epoch(epoch)
        clips.append(first[0][0])  # random position and random flip
        torch.testing.assert_close(clips[-1], again[(0, epoch)][0], rtol=0, atol=0)
    assert any(not torch.equal(clips[0], clip) for clip in clips[1:])  # epochs differ
    other_seed = ClipDataset(items, "train", CONFIG, sampling(seed=4))
    assert any(
        not torch.equal(other_seed[(0, e)][0], again[(0, e)][0]) for e in range(5)
    )


def test_flip_only_for_action_tasks_in_training(files: dict[str, Path]) -> None:
    items = [(VideoSample(files["long"], 0), 0), (VideoSample(files["long"], 0), 1)]
    flip_on = sampling(flip_probability=1.0, flip_tasks=(0,))
    flip_off = sampling(flip_probability=0.0)
    flipped = ClipDataset(items, "train", CONFIG, flip_on)
    plain = ClipDataset(items, "train", CONFIG, flip_off)
    for epoch in range(3):
        action, gesture = flipped[(0, epoch)], flipped[(1, epoch)]
        torch.testing.assert_close(action[0], plain[(0, epoch)][0].flip(-1), rtol=0, atol=0)
        torch.testing.assert_close(gesture[0], plain[(1, epoch)][0], rtol=0, atol=0)
        start = frame_ids(gesture[0])[0]
        assert frame_ids(gesture[0]) == list(range(start, start + 8))
    centre = ClipDataset(items, "centre", CONFIG, flip_on)  # evaluation: never flipped
    assert frame_ids(centre[0][0]) == list(range(16, 24))


def test_frame_folder_samples(files: dict[str, Path]) -> None:
    items = [(VideoSample(files["frames"], 2, frames_dir=True), 0)]
    clip, label, _ = ClipDataset(items, "centre", CONFIG)[0]
    pixels = (clip * torch.tensor(CONFIG.std).view(3, 1, 1, 1)
              + torch.tensor(CONFIG.mean).view(3, 1, 1, 1)) * 255
    levels = [round(float(pixels[:, t].mean()) / 50) for t in range(8)]
    assert levels == [0, 1, 2, 3, 4, 0, 1, 2] and label == 2


def bad_list(files: dict[str, Path]) -> list[tuple[VideoSample, int]]:
    return [
        (VideoSample(files["long"], 0), 0),
        (VideoSample(files["noise"], 1), 0),
        (VideoSample(files["truncated"], 2), 0),
        (VideoSample(files["missing"], 3), 0),
        (VideoSample(files["other"], 4), 0),
    ]


def test_bad_files_are_counted_warned_once_and_skipped(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    data = ClipDataset(bad_list(files), "centre", CONFIG)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # a second pass neither retries nor warns again
            items = [data[i] for i in range(len(data))]
    assert [item is None for item in items] == [False, True, True, True, False]
    assert data.skipped_count == 3
    assert data.skipped_paths() == [files["noise"], files["truncated"], files["missing"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all(name in " ".join(warnings) for name in ("noise.avi", "truncated.avi", "missing.avi"))
    batch = collate_clips(items)
    assert batch is not None and batch[0].shape[0] == 2 and batch[1].tolist() == [0, 4]
    assert collate_clips([None, None]) is None


def test_bad_files_counted_across_dataloader_workers(files: dict[str, Path]) -> None:
    data = ClipDataset(bad_list(files), "centre", CONFIG)
    loader = DataLoader(data, batch_size=2, num_workers=2, collate_fn=collate_clips)
    labels = [label for batch in loader if batch is not None for label in batch[1].tolist()]
    assert labels == [0, 4]
    assert data.skipped_count == 3  # read in the main process, flagged in the workers


def test_file_shorter_than_its_header_is_used_with_one_warning(
    files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cut = tmp_path / "cut.avi"  # a cut download: the header still says 40 frames
    data = files["long"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with av.open(str(cut)) as container:
        stream = container.streams.video[0]
        header, decodable = stream.frames, sum(1 for _ in container.decode(stream))
    assert header == 40 and 8 < decodable < 24  # the centre clip of 40 (16..23) is past the end
    dataset = ClipDataset([(VideoSample(cut, 0), 0)], "centre", CONFIG)
    with caplog.at_level(logging.WARNING):
        clips = [dataset[0][0] for _ in range(2)]
    assert frame_ids(clips[0]) == centre_clip_indices(decodable, 8, 1) == frame_ids(clips[1])
    assert dataset.short_paths() == [cut] and dataset.skipped_count == 0
    assert [r.getMessage() for r in caplog.records if "cut.avi" in r.getMessage()] == [
        f"{cut}: header says 40 frames but only {decodable} decode; using those"
    ]


def test_training_substitutes_the_next_good_sample_of_the_task(files: dict[str, Path]) -> None:
    items = [*bad_list(files), (VideoSample(files["other"], 9), 1)]
    data = ClipDataset(items, "train", CONFIG)
    labels = [data[(i, 0)][1] for i in range(len(items))]
    assert labels == [0, 4, 4, 4, 4, 9]  # task 0 stays task 0; batches keep their size
    tasks = [data[(i, 0)][2] for i in range(len(items))]
    assert tasks == [0, 0, 0, 0, 0, 1]
    torch.testing.assert_close(data[(1, 0)][0], data[(1, 0)][0], rtol=0, atol=0)
    everything_bad = ClipDataset([(VideoSample(files["noise"], 0), 0)], "train", CONFIG)
    with pytest.raises(RuntimeError, match="every one of the 1 samples of task 0"):
        everything_bad[0]


def test_missing_files_check_before_training(files: dict[str, Path]) -> None:
    data = ClipDataset(bad_list(files), "train", CONFIG)
    with pytest.raises(MissingFilesError, match=r"1 of 5 files missing.*missing\.avi"):
        data.check_files()
    assert data.check_files(allow_missing=True) == 1
    # training names the task and its list ("task 0 ... (task 0)" named neither)
    with pytest.raises(MissingFilesError) as error:
        data.check_files(sources=[("gesture", "nvgesture train.lst")])
    assert str(error.value).startswith("gesture: ") and "nvgesture train.lst" in str(error.value)
    assert "task 0" not in str(error.value)
    good = ClipDataset([(VideoSample(files["long"], 0), 0)], "train", CONFIG)
    assert good.check_files() == 0


def test_from_splits_assigns_task_ids(files: dict[str, Path]) -> None:
    samples = [VideoSample(files["long"], 0), VideoSample(files["other"], 1)]
    action = LabelledSplit(samples, ["a", "b"])
    gesture = LabelledSplit([VideoSample(files["short"], 0)], ["g"])
    data = ClipDataset.from_splits([action, gesture], "centre", CONFIG)
    assert data.task_ids == [0, 0, 1] and data.indices_of_task(1) == [2]
    mapped = ClipDataset.from_splits({1: action, 0: gesture}, "centre", CONFIG)
    assert mapped.task_ids == [1, 1, 0]
    with pytest.raises(ValueError, match="mode"):
        ClipDataset.from_splits([action], "test", CONFIG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flip_probability"):
        ClipSamplingConfig(flip_probability=2.0)


def test_every_kind_of_broken_file_is_skipped_and_counted(
    files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run over a list full of broken files goes on; each is warned about once, by name."""
    broken = broken_videos(tmp_path / "broken")
    gap = tmp_path / "gap"  # a frame folder with frame 3 of 5 missing
    gap.mkdir()
    for k in (1, 2, 4, 5):
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 50 * k, np.uint8)).save(
            gap / f"img_{k:05d}.jpg")
    beyond = write_coded(tmp_path / "beyond.avi", 20)  # its listed segment lies past the end
    bad = [VideoSample(p, 1) for p in broken.values()] + [
        VideoSample(gap, 1, frames_dir=True), VideoSample(beyond, 1, start=50, end=60)]
    items = [(VideoSample(files["long"], 0), 0)] + [(s, 0) for s in bad]
    for mode in ("centre", "all", "train"):
        data = ClipDataset(items, mode, CONFIG, sampling())  # type: ignore[arg-type]
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            results = [data[i] for i in range(len(data))]
        assert data.skipped_count == len(bad)
        if mode == "train":  # replaced by the one good sample of the task
            assert all(r is not None and r[1] == 0 for r in results)
        else:
            assert [r is None for r in results] == [False] + [True] * len(bad)
        text = caplog.text
        for sample in bad:
            assert sample.path.name in text
        assert "img_00003.jpg" in text and "segment [50, 60)" in text
