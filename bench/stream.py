"""Streaming core: per-frame cost, core throughput, overload memory, and a naive node side by side.

Run from the project root: `.venv/bin/python bench/stream.py [--live-seconds S] [--rounds N]`.
Everything runs on one CPU thread (torch and OpenCV). Measurements of the
same kind are interleaved (A B A B ...) so drift in machine speed hits all
alike; figures are medians. The last line printed is one JSON object, also
written to bench/results/stream.json.

- frame_ms_*: decode_image + preprocess_frame of one rosbags Image message.
- max_abs_diff_vs_preset: our clip vs torchvision's R3D_18 Kinetics preset.
- core_fps_*: frames per second through StreamPipeline.push with a model that
  returns at once (every frame sampled: target_fps = camera rate).
- overload_*: 10,000 frames from 4 cameras at 9.6 times the clip rate a
  40 ms model keeps up with; RSS growth after warm-up.
- live: r3d_18 HPS (random weights, 16-frame clips) on CPU, 30 fps cameras
  replayed in real time into a subscription queue (depth 5, keep last, one
  executor thread, as rclpy runs callbacks), through StreamPipeline and
  through a naive node written like existing ROS activity-recognition nodes
  (convert every image, resize the full frame, deque, model on every new
  frame, synchronously, one camera at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from hostinfo import cpu_model
from rosbags.typesys import Stores, get_typestore
from torchvision.models.video import R3D_18_Weights

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig, preprocess_frames
from mtl_perception.stream import StreamConfig, StreamPipeline, prepare_frame

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
RESULTS = Path(__file__).resolve().parent / "results"
RNG = np.random.default_rng(0)


def message(data: np.ndarray, width: int, encoding: str, stamp_ns: int, camera: str) -> Any:
    height = data.shape[0]
    header = TYPES["std_msgs/msg/Header"](
        stamp=TYPES["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
        frame_id=camera,
    )
    step = data.size // height
    return TYPES["sensor_msgs/msg/Image"](
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=data.reshape(-1),
    )


def frame_costs(reps: int) -> dict[str, float]:
    config = PreprocessConfig()
    cases = {
        "frame_ms_640x480_rgb8": message(
            RNG.integers(0, 256, (480, 1920), np.uint8), 640, "rgb8", 0, "c"
        ),
        "frame_ms_1080p_rgb8": message(
            RNG.integers(0, 256, (1080, 5760), np.uint8), 1920, "rgb8", 0, "c"
        ),
        "frame_ms_1080p_yuv422": message(
            RNG.integers(0, 256, (1080, 3840), np.uint8), 1920, "yuv422", 0, "c"
        ),
        "frame_ms_640x480_bgr8": message(
            RNG.integers(0, 256, (480, 1920), np.uint8), 640, "bgr8", 0, "c"
        ),
    }
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    wall: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(reps):
        for key, msg in cases.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            prepare_frame(msg, config)  # what push() does with a sampled frame
            cpu[key].append((time.thread_time() - start_cpu) * 1e3)
            wall[key].append((time.perf_counter() - start) * 1e3)
    out = {k: round(statistics.median(v[2:]), 3) for k, v in cpu.items()}
    out.update({f"{k}_wall": round(statistics.median(v[2:]), 3) for k, v in wall.items()})
    return out


def preset_diff() -> float:
    preset = R3D_18_Weights.KINETICS400_V1.transforms()
    worst = 0.0
    for shape in ((480, 640), (1080, 1920), (240, 320)):
        frames = RNG.integers(0, 256, (4, *shape, 3), dtype=np.uint8)
        expected = preset(torch.from_numpy(frames).permute(0, 3, 1, 2))
        worst = max(
            worst, float((preprocess_frames(frames, PreprocessConfig()) - expected).abs().max())
        )
    return worst


class InstantModel(torch.nn.Module):
    def __init__(self, classes: tuple[int, ...], delay_s: float = 0.0) -> None:
        super().__init__()
        self.classes, self.delay_s = classes, delay_s

    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return [torch.zeros(clips.shape[0], c) for c in self.classes]


def info(clip_length: int = 16) -> CheckpointInfo:
    model = ModelConfig(method="hps", arch="r3d_18", num_classes=(101, 249))
    names = tuple(tuple(f"{t}{i}" for i in range(n)) for t, n in zip("ag", model.num_classes))
    return CheckpointInfo(model, names, PreprocessConfig(clip_length=clip_length))


def core_fps(cameras: int, frames: int) -> tuple[float, float]:
    """(frames per CPU second of the whole process, frames per wall second)."""
    data = RNG.integers(0, 256, (480, 1920), np.uint8)
    msgs = [
        message(data, 640, "rgb8", i * 33_333_333, f"cam{c}")
        for i in range(frames)
        for c in range(cameras)
    ]
    pipeline = StreamPipeline(InstantModel((101, 249)), info(), StreamConfig(target_fps=30))
    with pipeline:
        start, start_cpu = time.perf_counter(), time.process_time()
        for msg in msgs:
            pipeline.push(msg.header.frame_id, msg)
        pipeline.flush()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    assert pipeline.stats().cameras["cam0"].frames_sampled == frames
    return len(msgs) / cpu, len(msgs) / elapsed


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def overload(total: int = 10_000, cameras: int = 4, model_s: float = 0.04) -> dict[str, Any]:
    # The model scores one batch (one clip per camera) every 40 ms: 25 clips/s per camera.
    # Cameras at 240 fps (target_fps's upper bound, mtl_perception/schema.py) with a clip
    # every sampled frame: 240 clips/s per camera, 9.6 times that.
    fps = min(10 / model_s, 240.0)
    data = RNG.integers(0, 256, (480, 1920), np.uint8)
    config = StreamConfig(target_fps=fps, inference_stride=1, max_gap_s=1.0)
    pipeline = StreamPipeline(InstantModel((101, 249), model_s), info(), config)
    warm, samples = 0.0, []
    with pipeline:
        start = time.perf_counter()
        for i in range(total // cameras):
            due = start + i / fps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for c in range(cameras):
                pipeline.push(
                    f"cam{c}", message(data, 640, "rgb8", round(i * 1e9 / fps), f"cam{c}")
                )
            if i == total // cameras // 5:
                warm = rss_mb()
            elif i > total // cameras // 5 and i % 50 == 0:
                samples.append(rss_mb())
        elapsed = time.perf_counter() - start
    stats = pipeline.stats()
    return {
        "overload_rss_growth_mb": round(max(samples) - warm, 2),
        "overload_frames": total,
        "overload_seconds": round(elapsed, 1),
        "overload_clips_made": sum(c.clips_made for c in stats.cameras.values()),
        "overload_clips_run": stats.clips_run,
        "overload_clips_dropped": stats.clips_dropped,
    }


class NaiveNode:
    """How many ROS activity-recognition nodes do it, for comparison (not used by the package)."""

    def __init__(self, model: Any, config: PreprocessConfig, on_result: Any) -> None:
        self.model, self.config, self.on_result = model, config, on_result
        self.frames: dict[str, deque[tuple[torch.Tensor, int]]] = {}
        std = torch.tensor(config.std).view(3, 1, 1)
        self.mean, self.std = torch.tensor(config.mean).view(3, 1, 1), std

    def image_cb(self, camera: str, msg: Any) -> None:
        rgb = (
            np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3).copy()
        )  # cv_bridge
        small = cv2.resize(rgb, self.config.resize[::-1], interpolation=cv2.INTER_LINEAR)
        top = (small.shape[0] - self.config.crop[0]) // 2
        left = (small.shape[1] - self.config.crop[1]) // 2
        crop = small[top : top + self.config.crop[0], left : left + self.config.crop[1]]
        x = (torch.from_numpy(crop).permute(2, 0, 1).float() / 255 - self.mean) / self.std
        frames = self.frames.setdefault(camera, deque(maxlen=self.config.clip_length))
        frames.append((x, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec))
        if len(frames) == self.config.clip_length:
            with torch.no_grad():
                logits = self.model.score_all(torch.stack([f for f, _ in frames], dim=1)[None])
            scores = [torch.softmax(t, 1) for t in logits]
            self.on_result(camera, frames[0][1], frames[-1][1], scores)


def live(mode: str, cameras: int, seconds: float, model: Any,
         checkpoint: CheckpointInfo | None = None,
         stream: StreamConfig | None = None) -> dict[str, float]:
    """Replay 30 fps cameras in real time through a depth-5 keep-last queue and one executor.

    `model`: a module with `score_all` or an `Engine` (`load_engine`); `checkpoint` and
    `stream` default to r3d_18's 16-frame clips at 15 fps, a clip every 8 sampled frames
    (bench/live_archs.py passes other archs, clip sizes and rates; ours only).
    A result is "coherent" when its clip covers at most 1.5x the camera time its
    frames would span at the intended rate (ours: 16 frames at 15 fps = 1.0 s;
    naive: 16 consecutive frames at 30 fps = 0.5 s), i.e. it shows one moment of
    motion rather than frames picked seconds apart.
    """
    checkpoint = checkpoint or info()
    stream = stream or StreamConfig(target_fps=15, inference_stride=8)
    frames = checkpoint.preprocess.clip_length
    nominal = (frames - 1) / (stream.target_fps if mode == "ours" else 30.0)
    queues: dict[str, deque[Any]] = {f"cam{c}": deque(maxlen=5) for c in range(cameras)}
    published: dict[tuple[str, int], float] = {}
    latencies: list[float] = []
    spans: list[float] = []  # seconds of camera time one scored clip covers
    times: list[float] = []  # when each result came
    lock = threading.Condition()
    data = RNG.integers(0, 256, (480, 1920), np.uint8)
    stop = threading.Event()
    begin = time.perf_counter()

    def record(camera: str, first_ns: int, last_ns: int) -> None:
        if time.perf_counter() - begin <= seconds:
            latencies.append((time.perf_counter() - published[(camera, last_ns)]) * 1e3)
            spans.append((last_ns - first_ns) / 1e9)
            times.append(time.perf_counter())

    if mode == "ours":
        pipeline = StreamPipeline(
            model,
            checkpoint,
            stream,
            on_result=lambda r: record(r.camera, r.first_stamp_ns, r.last_stamp_ns),
        )
        pipeline.start()
        callback: Any = pipeline.push
    else:
        naive = NaiveNode(
            model,
            checkpoint.preprocess,
            lambda camera, first, last, _: record(camera, first, last),
        )
        callback = naive.image_cb

    def publish() -> None:
        for i in range(int(seconds * 30)):
            delay = begin + i / 30 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            stamp = round(i * 1e9 / 30)
            with lock:
                for camera, queue in queues.items():
                    published[(camera, stamp)] = time.perf_counter()
                    queue.append(message(data, 640, "rgb8", stamp, camera))
                lock.notify()
        stop.set()

    def execute() -> None:  # rclpy's single-threaded executor: one callback at a time
        while not stop.is_set():
            with lock:
                ready = [(q[0].header.stamp, c) for c, q in queues.items() if q]
                if not ready:
                    lock.wait(0.05)
                    continue
                camera = min(ready, key=lambda item: (item[0].sec, item[0].nanosec))[1]
                msg = queues[camera].popleft()
            callback(camera, msg)

    cpu_start = time.process_time()
    threads = [threading.Thread(target=publish), threading.Thread(target=execute)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if mode == "ours":
        pipeline.stop()
    coherent = sum(span <= 1.5 * nominal for span in spans)
    return {
        "coherent_results_per_s": coherent / seconds,
        "process_cpu_s_per_s": (time.process_time() - cpu_start) / seconds,
        "results": len(latencies),
        "results_per_s": len(latencies) / seconds,
        # once the first clip is full: the rate a robot sees after start-up
        "steady_results_per_s": (len(times) - 1) / (times[-1] - times[0])
        if len(times) > 1 else 0.0,
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "clip_span_s_p50": float(np.percentile(spans, 50)) if spans else float("nan"),
    }


def live_ratios(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Ours over naive per interleaved round; the median ratio and its spread (min, max)."""
    out: dict[str, Any] = {}
    for cameras in (1, 4):
        ours, naive = runs[f"ours_{cameras}cam"], runs[f"naive_{cameras}cam"]
        pairs = {
            "results_per_s_over_naive": [
                o["results_per_s"] / max(n["results_per_s"], 1e-9) for o, n in zip(ours, naive)
            ],
            "latency_p50_naive_over_ours": [
                n["latency_p50_ms"] / o["latency_p50_ms"] for o, n in zip(ours, naive)
            ],
            "coherent_results_per_s_over_naive": [
                o["coherent_results_per_s"] / max(n["coherent_results_per_s"], 1e-9)
                for o, n in zip(ours, naive)
            ],
        }
        for name, ratios in pairs.items():
            out[f"{name}_{cameras}cam"] = round(statistics.median(ratios), 2)
            out[f"{name}_{cameras}cam_spread"] = [round(min(ratios), 2), round(max(ratios), 2)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=60, help="per-frame timing repeats")
    parser.add_argument("--live-seconds", type=float, default=40.0, help="length of one live run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of live runs")
    parser.add_argument(
        "--skip-live",
        action="store_true",
        help="skip the r3d_18 live runs, keeping their figures from an earlier stream.json",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    out: dict[str, Any] = {"machine": f"{cpu_model()}, 1 thread, shared by other jobs"}
    out.update(frame_costs(args.reps))
    out["max_abs_diff_vs_preset"] = preset_diff()
    fps: dict[int, list[tuple[float, float]]] = {1: [], 4: []}
    for _ in range(3):
        for cameras in (1, 4):
            fps[cameras].append(core_fps(cameras, 400 // cameras))
    for cameras, measured in fps.items():
        out[f"core_fps_{cameras}cam"] = round(statistics.median(r[0] for r in measured), 1)
        out[f"core_fps_{cameras}cam_wall"] = round(statistics.median(r[1] for r in measured), 1)
    out.update(overload())
    if not args.skip_live:
        model = build_model(info().model).eval()
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for cameras in (1, 4):
                for mode in ("ours", "naive"):
                    key = f"{mode}_{cameras}cam"
                    runs.setdefault(key, []).append(live(mode, cameras, args.live_seconds, model))
                    print(key, runs[key][-1], flush=True)
        live_out = {
            key: {m: round(statistics.median(r[m] for r in rs), 3) for m in rs[0]}
            for key, rs in runs.items()
        }
        out["live_r3d18_hps_cpu"] = live_out
        out.update(live_ratios(runs))
        out["latency_p50_ms_r3d18_hps_cpu_1cam"] = live_out["ours_1cam"]["latency_p50_ms"]
        out["latency_p95_ms_r3d18_hps_cpu_1cam"] = live_out["ours_1cam"]["latency_p95_ms"]
    previous = RESULTS / "stream.json"
    if args.skip_live and previous.is_file():
        kept = json.loads(previous.read_text())
        out = {**{k: v for k, v in kept.items() if k not in out}, **out}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
