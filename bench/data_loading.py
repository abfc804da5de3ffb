"""Data-loading benchmark: 32-frame clips per second per core from UCF-101-like videos.

Run from the project root: `.venv/bin/python bench/data_loading.py`. It writes
a handful of 320x240 videos in UCF-101's format (mpeg4 in .avi, 25 fps, 7 s,
a keyframe every 12 frames like Xvid, about UCF-101's bit rate) with moving
content (a panning textured scene, a walking figure with swinging arms,
sensor noise: random noise would make every frame a hard-to-code keyframe,
flat colour would make decoding unrealistically cheap) into a temp folder,
then times `ClipDataset` items (open + seek + decode + RGB conversion +
clip sampling + `preprocess_frames`):

1. one process, one thread (`torch.set_num_threads(1)`, single-threaded FFmpeg
   decoding and colour conversion): training (random) clips, centre clips,
   with the time split by stage from the dataset's own counters;
2. a DataLoader with 2 workers (batch 8, training clips);
3. a bag source (`format: bag`): the same videos replayed as a rosbag2 of
   rgb8 images; cold (building the frame cache: decoding and preprocessing
   every sampled frame through the streaming core) and from the cache
   (training clips read from the memory-mapped cache).

The JSON summary is the last line printed and goes to
`bench/results/data_loading.json` with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from hostinfo import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_perception.preprocess import PreprocessConfig, preprocess_frames  # noqa: E402
from training.datasets.clip_dataset import (  # noqa: E402
    ClipDataset,
    ClipSamplingConfig,
    LoadStats,
    Mode,
    collate_clips,
)
from training.datasets.sample import VideoSample  # noqa: E402
from training.datasets.video import read_frames, write_video  # noqa: E402

LOG = logging.getLogger("bench.data_loading")
TARGET_PER_CORE = 25.0  # clips/s: a GPU training step of batch 8 every 0.3 s from one core
RESULT = ROOT / "bench" / "results" / "data_loading.json"


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    """Low-frequency texture in [0, 1]: coarse noise upsampled bilinearly."""
    coarse = torch.from_numpy(rng.random((1, 3, shape[0] // scale + 2, shape[1] // scale + 2)))
    fine = F.interpolate(coarse.float(), size=shape, mode="bilinear", align_corners=False)
    return fine[0].permute(1, 2, 0).numpy()


def moving_video(seed: int, frames: int = 175, height: int = 240, width: int = 320) -> np.ndarray:
    """A panning textured scene with a walking figure: content that codes like real video."""
    rng = np.random.default_rng(seed)
    scene_h, scene_w = height + 80, width + 160
    scene = 0.55 * smooth_noise(rng, (scene_h, scene_w), 40) + 0.3 * smooth_noise(
        rng, (scene_h, scene_w), 6
    )
    for _ in range(6):  # furniture-like edges
        y, x = rng.integers(0, scene_h - 60), rng.integers(0, scene_w - 60)
        scene[y : y + rng.integers(20, 80), x : x + rng.integers(20, 80)] = rng.random(3) * 0.8
    scene = (scene * 255).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    colour = rng.integers(40, 220, 3, dtype=np.uint8)
    video = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        dx = int(40 + 35 * np.sin(t / 40.0) + t * 0.3)
        dy = int(30 + 10 * np.sin(t / 25.0))
        frame = scene[dy : dy + height, dx : dx + width].copy()
        cx, cy = int(60 + t * 1.1) % (width + 40) - 20, 140
        body = ((xx - cx) / 18.0) ** 2 + ((yy - cy) / 45.0) ** 2 < 1
        head = (xx - cx) ** 2 + (yy - (cy - 60)) ** 2 < 14**2
        swing = int(25 * np.sin(t / 4.0))
        arm = (np.abs(yy - (cy - 20) - (xx - cx) * swing / 30.0) < 4) & (np.abs(xx - cx) < 30)
        frame[body | head | arm] = colour
        noise = rng.normal(0, 3, frame.shape)
        video[t] = (frame + noise).clip(0, 255).astype(np.uint8)
    return video


def make_videos(folder: Path, count: int) -> list[Path]:
    paths = []
    for n in range(count):
        path = folder / f"v_Bench_g{n:02d}_c01.avi"
        write_video(path, moving_video(n), fps=25.0, codec="mpeg4", gop=12, bit_rate=600_000)
        paths.append(path)
    return paths


def time_single(paths: list[Path], mode: Mode, clips: int, rounds: int) -> dict[str, Any]:
    """Clips/s of one process, one thread, and where the time goes (ms per clip).

    `rounds` timings of `clips` items each; the median round is reported (the
    build machines are shared, so single rounds are noisy).
    """
    items = [(VideoSample(path, label=n), 0) for n, path in enumerate(paths)]
    sampling = ClipSamplingConfig(decode_threads=1, num_eval_clips=10)
    dataset = ClipDataset(items, mode, PreprocessConfig(), sampling)
    for index in range(len(items)):  # warm-up: page cache, allocator, libav init
        dataset[index]
    results = []
    for round_ in range(rounds):
        dataset.stats = LoadStats()
        tic = time.perf_counter()
        for n in range(clips):
            dataset[(n % len(items), round_ * clips + n // len(items) + 1)]
        results.append((time.perf_counter() - tic, dataset.stats))
    elapsed, stats = sorted(results, key=lambda r: r[0])[len(results) // 2]
    per = 1000.0 / clips
    decode_ms, convert_ms = stats.decode.decode_s * per, stats.decode.convert_s * per
    preprocess_ms = stats.preprocess_s * per
    return {
        "items_per_s": round(clips / elapsed, 2),
        "items_per_s_rounds": [round(clips / r[0], 2) for r in results],
        "ms_per_item": round(elapsed * per, 2),
        "decode_ms": round(decode_ms, 2),
        "rgb_convert_ms": round(convert_ms, 2),
        "preprocess_ms": round(preprocess_ms, 2),
        "other_ms": round(elapsed * per - decode_ms - convert_ms - preprocess_ms, 2),
        "frames_decoded_per_item": round(stats.decode.frames_decoded / clips, 1),
        "frames_converted_per_item": round(stats.decode.frames_converted / clips, 1),
        "seeks_per_item": round(stats.decode.seeks / clips, 2),
        "fallbacks": stats.decode.fallbacks,
    }


def time_decode_from_start(paths: list[Path], clips: int) -> dict[str, float]:
    """Baseline without seeking: decode from frame 0 up to a random 32-frame clip."""
    rng = np.random.default_rng(0)
    tic = time.perf_counter()
    for n in range(clips):
        first = int(rng.integers(0, 175 - 32 + 1))
        with av.open(str(paths[n % len(paths)])) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"
            for index, frame in enumerate(container.decode(stream)):
                if index >= first:
                    frame.to_ndarray(format="rgb24", threads=1)
                if index >= first + 31:
                    break
    return {"ms_per_clip": round((time.perf_counter() - tic) * 1000 / clips, 2)}


def time_preprocess_split(paths: list[Path]) -> dict[str, float]:
    """Inside `preprocess_frames` on one decoded 32-frame clip: the resize vs the whole."""
    frames = read_frames(paths[0], range(32))
    config = PreprocessConfig()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    repeats = 20
    tic = time.perf_counter()
    for _ in range(repeats):
        F.interpolate(x, size=config.resize, mode="bilinear", align_corners=False).round_()
    resize = (time.perf_counter() - tic) / repeats
    tic = time.perf_counter()
    for _ in range(repeats):
        preprocess_frames(frames, config)
    whole = (time.perf_counter() - tic) / repeats
    return {"whole_ms": round(whole * 1000, 2), "bilinear_resize_ms": round(resize * 1000, 2)}


def time_loader(paths: list[Path], workers: int, batches: int) -> dict[str, float]:
    """Training clips/s through a DataLoader (torch makes each worker single-threaded)."""
    items = [(VideoSample(path, label=n), 0) for n, path in enumerate(paths)]
    dataset = ClipDataset(items, "train")
    sampler = [(n % len(items), n // len(items)) for n in range(8 * (batches + 2))]
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=8, sampler=sampler, num_workers=workers, collate_fn=collate_clips
    )
    iterator = iter(loader)
    for _ in range(2):  # worker start-up and warm-up
        next(iterator)
    tic = time.perf_counter()
    clips = sum(next(iterator)[0].shape[0] for _ in range(batches))
    elapsed = time.perf_counter() - tic
    return {
        "workers": workers,
        "clips_per_s": round(clips / elapsed, 2),
        "clips_per_s_per_worker": round(clips / elapsed / max(workers, 1), 2),
    }


def time_bag(paths: list[Path], folder: Path, clips: int, rounds: int) -> dict[str, Any]:
    """A bag source of the same videos: cache build (cold) and cached training clips."""
    from mtl_perception.bag.types import IMAGE
    from mtl_perception.bag.writer import BagWriter, image_message
    from training.datasets.bag_source import resolve_bag_items
    from training.datasets.sample import BagRef

    bag, start, rows = folder / "bench_bag", 1_700_000_000 * 10**9, []
    period, gap = 40_000_000, 10**9  # 25 fps, a 1 s pause between videos
    with BagWriter(bag, "mcap") as writer:
        stamp = start
        for n, path in enumerate(paths):
            video = read_frames(path, list(range(175)))
            first = stamp
            for frame in video:
                writer.write("/camera/image_raw", IMAGE, stamp, image_message(frame, stamp, "cam"))
                stamp += period
            rows.append(((first - start) / 1e9, (stamp - period - start) / 1e9, n))
            stamp += gap
    ref = BagRef(bag, "/camera/image_raw", 25.0, 0.5, folder / "cache")
    items = [(VideoSample(bag, n, round(a * 1e9), round(b * 1e9) + 1, bag=ref), 0)
             for a, b, n in rows]
    tic, cpu = time.perf_counter(), time.process_time()
    resolved = resolve_bag_items(items, PreprocessConfig())
    cold_s, cold_cpu = time.perf_counter() - tic, time.process_time() - cpu
    frames = float(len(paths) * 175)
    dataset = ClipDataset(resolved, "train", PreprocessConfig())
    results, cpu_times = [], []
    for round_ in range(rounds):
        tic, cpu = time.perf_counter(), time.process_time()
        for n in range(clips):
            dataset[(n % len(resolved), round_ * clips + n // len(resolved) + 1)]
        results.append(time.perf_counter() - tic)
        cpu_times.append(time.process_time() - cpu)
    elapsed, cpu_s = sorted(results)[len(results) // 2], sorted(cpu_times)[len(cpu_times) // 2]
    return {
        "bag": f"{len(paths)} x 175 rgb8 320x240 images at 25 fps, mcap",
        "cold_cache_build_s": round(cold_s, 2),
        "cold_frames_per_s": round(frames / cold_s, 1),
        # a 32-frame clip's worth of frames decoded, preprocessed and written
        "cold_clips_per_s": round(frames / cold_s / 32, 2),
        "cached_clips_per_s": round(clips / elapsed, 2),
        # CPU time of this one-thread process: the per-core rate on a machine shared with
        # other jobs, where wall-clock rates measure the neighbours too
        "cold_clips_per_cpu_s": round(frames / cold_cpu / 32, 2),
        "cached_clips_per_cpu_s": round(clips / cpu_s, 2),
        "cached_clips_per_s_rounds": [round(clips / r, 2) for r in results],
        "cache_bytes": sum(f.stat().st_size for f in (folder / "cache").rglob("*")
                           if f.is_file()),
    }


def bag_only(args: argparse.Namespace, host: dict[str, object]) -> None:
    """Rerun the bag-source rows alone, keeping the rest of an earlier result file."""
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        paths = make_videos(Path(tmp), args.videos)
        bag = time_bag(paths, Path(tmp), args.clips, args.rounds)
    LOG.info("bag source: %s", bag)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["bag_source_train"] = {**bag, "machine": host}
    per_core = result.get("clips_per_s_per_core")
    if per_core is not None:
        result["bag_source_meets_video_loader"] = bag["cached_clips_per_s"] >= per_core
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["bag_source_train"]))


def machine() -> dict[str, object]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "av": av.__version__,
        "libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
        "numpy": np.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=6, help="distinct videos to cycle through")
    parser.add_argument("--clips", type=int, default=60, help="items timed per round and mode")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (median reported)")
    parser.add_argument("--batches", type=int, default=15, help="batches of 8 timed per loader")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader workers")
    parser.add_argument("--out", type=Path, default=RESULT, help="JSON result file")
    parser.add_argument("--bag-only", action="store_true",
                        help="time only the bag source; update that entry of --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    host = machine()  # before the benchmark loads the machine itself
    if args.bag_only:
        bag_only(args, host)
        return
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        LOG.info("writing %d UCF-101-like videos to %s", args.videos, tmp)
        paths = make_videos(Path(tmp), args.videos)
        single = {}
        runs: list[tuple[Mode, int]] = [("train", args.clips), ("centre", args.clips), ("all", 10)]
        for mode, clips in runs:
            single[mode] = time_single(paths, mode, clips, args.rounds)
            LOG.info("1 core, %-6s: %s", mode, single[mode])
        baseline = time_decode_from_start(paths, args.clips)
        inside = time_preprocess_split(paths)
        loaders = [time_loader(paths, workers, args.batches) for workers in args.workers]
        for row in loaders:
            LOG.info("DataLoader: %s", row)
        bag = time_bag(paths, Path(tmp), args.clips, args.rounds)
        LOG.info("bag source: %s", bag)
    per_core = min(single[mode]["items_per_s"] for mode in ("train", "centre"))
    result = {
        "benchmark": "data_loading",
        "clip": "32 frames, step 1, 320x240 mpeg4 .avi 25 fps 175 frames gop 12 -> (3,32,112,112)",
        "machine": host,
        "single_thread": single,
        "note_all": "mode 'all' items are videos of 10 evenly spaced clips (video accuracy)",
        "no_seek_baseline": {"decode_from_frame_0": baseline},
        "preprocess_frames": inside,
        "dataloader_train": loaders,
        "bag_source_train": bag,
        "bag_source_meets_video_loader": bag["cached_clips_per_s"] >= per_core,
        "target_clips_per_s_per_core": TARGET_PER_CORE,
        "clips_per_s_per_core": per_core,
        "meets_target": per_core >= TARGET_PER_CORE,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
