"""Samples of one or more tasks -> model-ready clips: a torch `Dataset`.

Each item is `(clip, label, task_id)`: clip float32 `(3, T, h, w)` for modes
`train` (random position) and `centre` (clip accuracy), `(N, 3, T, h, w)` for
mode `all` (N evenly spaced clips, video accuracy). Frames go through
`mtl_perception.preprocess.preprocess_frames`, the runtime's only copy of
preprocessing; only the distinct frames of a sample are decoded and
preprocessed once (the step is per frame, so gathering afterwards is exact).

Determinism: item `i` of epoch `e` draws from `default_rng([seed, e, i,
attempt])`, so a resumed run rebuilds the same clips whatever the worker
count or the order in which workers fetch. Call `set_epoch` before creating
each epoch's DataLoader iterator (the value lives in shared memory, so
persistent workers see it too), or index with `(i, epoch)` pairs from an
iteration-based sampler.

Horizontal flip: training only, only for tasks in `flip_tasks` (action
tasks; never gestures, where it turns swipe-left into swipe-right). The flip
is applied to the decoded uint8 frames, so the clip is exactly what the one
preprocessing copy gives for a mirrored scene; flipping after the centre crop
would not be (171 -> 112 leaves 30 columns on the left, 29 on the right).

Bag sources (`bag_source.py`): samples are labelled intervals of a bag's
frame cache, already decoded, sampled and preprocessed by the streaming
core; they are never flipped. `temporal` sampling (`clip_sampling.py`).

Bad files: a video that cannot be opened or decoded is flagged once (one
warning naming it) in a bitmap in shared memory, so the count is the same in
the main process and every DataLoader worker (fork or spawn; the dataset must
reach workers as a DataLoader argument, not through a pickle of one's own).
(Without a lock, two workers failing on the same file in the same instant
could both warn; flags are only ever set, so the count is exact.) A file
whose header promises more frames than decode (dropped-frame AVIs, a cut
download) is used for the frames it has, with one warning (`short_paths`).
In `train` mode the item is replaced, deterministically, by the next sample
of the same task that loads (batches keep their size and task mix); in the
evaluation modes the item is `None` and `collate_clips` drops it, because an
accuracy must not count another video twice. A flagged file is not retried.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from mtl_perception.preprocess import PreprocessConfig, preprocess_frames
from training.datasets.bag_cache import read_cached
from training.datasets.bag_source import resolve_bag_items
from training.datasets.clip_sampling import (
    ClipSamplingConfig,
    LoadStats,
)
from training.datasets.clips import (
    centre_clip_indices,
    evenly_spaced_clips,
    training_clip_indices,
    uniform_clip_indices,
    uniform_evenly_spaced_clips,
)
from training.datasets.frames import count_image_frames, read_image_frames
from training.datasets.listfile import DatasetError
from training.datasets.missing import SHOWN, find_missing, require_files
from training.datasets.sample import LabelledSplit, VideoSample
from training.datasets.video import (
    VideoReader,
    VideoReadError,
    VideoTooShortError,
)

LOG = logging.getLogger(__name__)

Mode = Literal["train", "centre", "all"]
_CHUNK = 32  # frames preprocessed at a time
_OK, _BAD, _SHORT = 0, 1, 2  # per-file flags in shared memory
Item = tuple[torch.Tensor, int, int]


class ClipDataset(Dataset):
    """`(VideoSample, task_id)` pairs -> `(clip, label, task_id)`; see the module docstring."""

    def __init__(
        self,
        items: Sequence[tuple[VideoSample, int]],
        mode: Mode,
        preprocess: PreprocessConfig | None = None,
        sampling: ClipSamplingConfig | None = None,
    ) -> None:
        if mode not in ("train", "centre", "all"):
            raise ValueError(f"mode must be 'train', 'centre' or 'all', got {mode!r}")
        if not items:
            raise ValueError("a ClipDataset needs at least one sample")
        # Bag intervals -> samples of the bag's cache of preprocessed frames (built once).
        items = resolve_bag_items(items, preprocess or PreprocessConfig())
        if not items:
            raise DatasetError("no labelled bag interval holds a sampled frame (see the "
                               "warnings): nothing to make clips of")
        self.samples = [sample for sample, _ in items]
        self.task_ids = [int(task) for _, task in items]
        self.mode: Mode = mode
        self.preprocess = preprocess or PreprocessConfig()
        self.sampling = sampling or ClipSamplingConfig()
        self.stats = LoadStats()
        paths = {p: n for n, p in enumerate(dict.fromkeys(s.path for s in self.samples))}
        self._path_ids = [paths[s.path] for s in self.samples]
        self._paths = list(paths)
        # Shared memory without a lock: a lock made here would be bound to this
        # process's start method and break DataLoaders that spawn their workers.
        self._flags = mp.RawArray("b", len(self._paths))
        self._epoch = mp.RawValue("q", 0)
        # Seconds from first to last frame of each sample's latest clip (NaN: not loaded
        # yet, or a frame folder without a frame rate): the checkpoint's `clip_span_s`.
        self._spans = mp.RawArray("d", len(self.samples))
        self._spans[:] = [math.nan] * len(self.samples)
        self._by_task: dict[int, list[int]] = {}
        self._rank: list[int] = []  # position of each sample among its task's samples
        for index, task in enumerate(self.task_ids):
            self._rank.append(len(self._by_task.setdefault(task, [])))
            self._by_task[task].append(index)

    @classmethod
    def from_splits(
        cls,
        splits: Sequence[LabelledSplit] | Mapping[int, LabelledSplit],
        mode: Mode,
        preprocess: PreprocessConfig | None = None,
        sampling: ClipSamplingConfig | None = None,
    ) -> ClipDataset:
        """One split per task: a sequence gives task ids 0, 1, ...; a mapping its keys."""
        pairs = splits.items() if isinstance(splits, Mapping) else enumerate(splits)
        items = [(sample, int(task)) for task, split in pairs for sample in split.samples]
        return cls(items, mode, preprocess, sampling)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random clips (shared with workers, persistent ones too)."""
        self._epoch.value = int(epoch)

    def indices_of_task(self, task: int) -> list[int]:
        """Dataset indices of one task's samples, for a multi-task sampler."""
        return list(self._by_task.get(task, []))

    @property
    def skipped_count(self) -> int:
        """Distinct files that failed to load so far, over all worker processes."""
        return self._flags[:].count(_BAD)

    def skipped_paths(self) -> list[Path]:
        """The files counted by `skipped_count`, in list order."""
        return [p for p, flag in zip(self._paths, self._flags[:], strict=True) if flag == _BAD]

    def short_paths(self) -> list[Path]:
        """Files used although fewer frames decode than their header says (warned once)."""
        return [p for p, flag in zip(self._paths, self._flags[:], strict=True) if flag == _SHORT]

    def median_clip_span(self) -> float | None:
        """Median seconds covered by the clips loaded so far (all workers); None if none."""
        spans = [s for s in self._spans[:] if math.isfinite(s)]
        return statistics.median(spans) if spans else None

    def check_files(self, allow_missing: bool = False, limit: int = SHOWN,
                    sources: Sequence[tuple[str, str]] = ()) -> int:
        """Run before training: raise `MissingFilesError` naming the first missing files.

        With `allow_missing`, log one warning instead and return the count; the
        missing files are then skipped and counted as they come up. `sources`:
        (task name, where its samples come from: "ucf101 trainlist01.txt") per task
        id, so the message names them (else "task 0").
        """
        def named(task: int) -> tuple[str, str]:
            if task < len(sources):
                return sources[task]
            return ("none", "the `none` clips") if sources else (f"task {task}", f"task {task}")

        splits = {
            named(task)[0]: LabelledSplit([self.samples[i] for i in idx], [], named(task)[1])
            for task, idx in self._by_task.items()
        }
        if not allow_missing:
            require_files(splits, limit)
            return 0
        missing = 0
        for name, split in splits.items():
            report = find_missing(split, limit)
            if report.count:
                LOG.warning("%s: %s", name, report.message(where=split.source))
            missing += report.count
        return missing

    def __getitem__(self, key: int | tuple[int, int]) -> Item | None:
        index, epoch = (key if isinstance(key, tuple) else (key, self._epoch.value))
        index, epoch = int(index), int(epoch)
        if not 0 <= index < len(self.samples):
            raise IndexError(f"index {index} out of range for {len(self.samples)} samples")
        task = self.task_ids[index]
        candidates = self._by_task[task]
        attempts = len(candidates) if self.mode == "train" else 1
        for attempt in range(attempts):
            chosen = candidates[(self._rank[index] + attempt) % len(candidates)]
            if self._flags[self._path_ids[chosen]] == _BAD:
                if self.mode != "train":
                    return None
                continue
            rng = np.random.default_rng([self.sampling.seed, epoch, index, attempt])
            try:
                clip = self._load(chosen, task, rng)
            except VideoReadError as exc:
                self._flag_bad(chosen, exc)
                if self.mode != "train":
                    return None
                continue
            return clip, self.samples[chosen].label, task
        raise RuntimeError(
            f"every one of the {len(candidates)} samples of task {task} failed to load "
            f"({self.skipped_count} bad files; see the warnings)"
        )

    # -- loading -------------------------------------------------------------------

    def _load(self, index: int, task: int, rng: np.random.Generator) -> torch.Tensor:
        tic = time.perf_counter()
        sample = self.samples[index]
        stamps: Callable[[int], float] | None
        if sample.cached:  # preprocessed by the streaming core (bag sources); never flipped
            video, clips, stamps = self._read_cached(sample, rng)
        else:
            video, clips, stamps = self._decode(sample, index, task, rng)
        if stamps is not None:
            self._spans[index] = stamps(max(clips[0])) - stamps(min(clips[0]))
        unique = sorted({i for clip in clips for i in clip})
        if self.mode == "all":
            out = torch.stack([_gather(video, unique, clip) for clip in clips])
        else:
            out = _gather(video, unique, clips[0])
        self.stats.items += 1
        self.stats.total_s += time.perf_counter() - tic
        return out

    def _decode(self, sample: VideoSample, index: int, task: int, rng: np.random.Generator
                ) -> tuple[torch.Tensor, list[list[int]], Callable[[int], float] | None]:
        """A video's or frame folder's clips, decoded and preprocessed: (3, U, h, w)."""
        frames: np.ndarray | torch.Tensor
        if sample.frames_dir:
            frames, clips, fps = self._read_folder(sample, rng)
        else:
            frames, clips, fps = self._read_video(sample, self._path_ids[index], rng)
        wants_flip = self.mode == "train" and task in self.sampling.flip_tasks
        if wants_flip and rng.random() < self.sampling.flip_probability:
            # torch.flip copies 10x faster than numpy's negative-stride copy of RGB triplets.
            frames = torch.flip(torch.from_numpy(frames), dims=(2,))
        pre = time.perf_counter()
        video = self._preprocess(frames)  # (3, U, h, w) for the U distinct frames
        self.stats.preprocess_s += time.perf_counter() - pre
        return video, clips, None if fps is None else _frame_seconds(fps)

    def _read_cached(self, sample: VideoSample, rng: np.random.Generator
                     ) -> tuple[torch.Tensor, list[list[int]], Callable[[int], float]]:
        """A bag sample's clips from its cache of preprocessed frames: (3, U, h, w)."""
        tic = time.perf_counter()
        cache = read_cached(sample.path)
        clips = self._clips(len(cache.stamps_ns), sample, rng)
        video = cache.frames_tensor(sorted({i for clip in clips for i in clip}))
        self.stats.decode.decode_s += time.perf_counter() - tic
        return video, clips, cache.seconds

    def _preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """`preprocess_frames` in chunks of `_CHUNK` frames (exact: the step is per frame).

        A whole video's worth of float frames (mode "all") at once overflows the
        CPU caches and preprocesses 1.7x slower.
        """
        if len(frames) <= _CHUNK:
            return preprocess_frames(frames, self.preprocess)
        chunks = [
            preprocess_frames(frames[i : i + _CHUNK], self.preprocess)
            for i in range(0, len(frames), _CHUNK)
        ]
        return torch.cat(chunks, dim=1)

    def _clips(self, num_frames: int, sample: VideoSample, rng: np.random.Generator
               ) -> list[list[int]]:
        length, step = self.preprocess.clip_length, self.sampling.frame_step
        start, end = sample.start, sample.end
        try:
            if self.sampling.temporal == "uniform":
                if self.mode == "train":
                    return [uniform_clip_indices(num_frames, length, rng, start, end)]
                if self.mode == "centre":
                    return [uniform_clip_indices(num_frames, length, None, start, end)]
                return uniform_evenly_spaced_clips(
                    num_frames, length, self.sampling.num_eval_clips, start, end
                )
            if self.mode == "train":
                return [training_clip_indices(num_frames, length, step, rng, start, end)]
            if self.mode == "centre":
                return [centre_clip_indices(num_frames, length, step, start, end)]
            return evenly_spaced_clips(
                num_frames, length, step, self.sampling.num_eval_clips, start, end
            )
        except ValueError as exc:  # the segment lies past the frames the file holds
            raise VideoReadError(f"{sample.path}: {exc}") from exc

    def _read_video(self, sample: VideoSample, path_id: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, list[list[int]], float | None]:
        with VideoReader(sample.path, threads=self.sampling.decode_threads) as reader:
            try:
                num_frames = reader.num_frames
                state = rng.bit_generator.state
                clips = self._clips(num_frames, sample, rng)
                try:
                    frames = reader.read(sorted({i for clip in clips for i in clip}))
                except VideoTooShortError as exc:
                    if not 0 < exc.available < num_frames:
                        raise
                    # The header over-counts (dropped-frame AVIs, cut files): draw
                    # again, with the same random numbers, among the frames that
                    # decode. Not cached, so a clip never depends on what a worker
                    # has read before.
                    self._flag_short(path_id, num_frames, exc.available)
                    rng.bit_generator.state = state
                    clips = self._clips(exc.available, sample, rng)
                    frames = reader.read(sorted({i for clip in clips for i in clip}))
            finally:
                self.stats.decode.add(reader.stats)
            fps = reader.fps if reader.fps > 0 else None
        return frames, clips, fps

    def _read_folder(self, sample: VideoSample, rng: np.random.Generator
                     ) -> tuple[np.ndarray, list[list[int]], float | None]:
        num_frames = sample.end if sample.end is not None else count_image_frames(sample.path)
        clips = self._clips(num_frames, sample, rng)
        tic = time.perf_counter()
        frames = read_image_frames(sample.path, sorted({i for clip in clips for i in clip}))
        self.stats.decode.decode_s += time.perf_counter() - tic
        return frames, clips, None  # extracted frames carry no frame rate

    def _flag_short(self, path_id: int, header: int, available: int) -> None:
        if self._flags[path_id] == _OK:
            self._flags[path_id] = _SHORT
            LOG.warning("%s: header says %d frames but only %d decode; using those",
                        self._paths[path_id], header, available)

    def _flag_bad(self, index: int, exc: Exception) -> None:
        path_id = self._path_ids[index]
        if self._flags[path_id] == _BAD:
            return
        self._flags[path_id] = _BAD
        LOG.warning("skipping unreadable video %s (task %d): %s",
                    self._paths[path_id], self.task_ids[index], exc)


def _frame_seconds(fps: float) -> Callable[[int], float]:
    """Frame index -> seconds from the video's first frame."""
    return lambda index: index / fps


def _gather(video: torch.Tensor, unique: list[int], clip: list[int]) -> torch.Tensor:
    """The clip's frames from `video`, which holds the frames `unique` in that order."""
    if clip == unique:
        return video  # the usual clip: no copy
    where = {frame: n for n, frame in enumerate(unique)}
    return video[:, [where[i] for i in clip]]


def collate_clips(batch: Sequence[Item | None]) -> tuple[torch.Tensor, ...] | None:
    """`default_collate` without the `None` items of skipped videos; None if all were."""
    kept = [item for item in batch if item is not None]
    return default_collate(kept) if kept else None
