"""Live on the CPU per arch and engine: results per second and latency for one camera.

Run from the project root:
`.venv/bin/python bench/live_archs.py [--cases ...] [--threads 1 2]
[--seconds 20] [--rounds 2] [--save bench/results/backbones.json]`.

Each case `ARCH:WIDTH:FRAMESxHEIGHTxWIDTH:TARGET_FPS:STRIDE[:ENGINE+...]` is an HPS model
(random weights, 101 + 249 classes, frame differences as the CPU demo) saved
as a checkpoint and loaded by `load_engine` on each engine, as the node loads
it: `torch`, `onnxruntime`, `openvino` (the checkpoint, exported in memory)
and `*_int8` (an int8 ONNX file written first, calibrated on random clips: an
int8 graph's speed does not depend on its calibration). One 30 fps 640x480
rgb8 camera is replayed in real time through `bench/stream.py`'s live loop
(a depth-5 keep-last queue served by one executor thread, as rclpy runs
callbacks) into `StreamPipeline`. The target of issue 23: at least 6 results
per second (steady: once the first clip filled) with a p95 latency (last frame
published -> result) of at most 150 ms, on 2 cores. Runs of one thread count
are interleaved over engines and cases (A B A B ...); per (case, engine,
threads) the median over rounds and the spread. With `--save` the figures go
under the file's `live` key (the rest of the file is kept). The last line
printed is the JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# As in bench/backbones.py: this folder's training.py would shadow the `training` package.
_HERE = str(Path(__file__).resolve().parent)
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [_ROOT] + [
    p for p in sys.path if str(Path(p or ".").resolve()) not in (_HERE, _ROOT)
] + [_HERE]

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hostinfo import cpu_model  # noqa: E402
from stream import live  # noqa: E402

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint  # noqa: E402
from mtl_perception.deploy.export import export_onnx  # noqa: E402
from mtl_perception.deploy.load import load_engine  # noqa: E402
from mtl_perception.models import ModelConfig, build_model  # noqa: E402
from mtl_perception.preprocess import PreprocessConfig  # noqa: E402
from mtl_perception.stream import StreamConfig  # noqa: E402

CASES = [
    # the CPU demo's model (cpu_small.yaml) at its rate (8 frames 4 apart at 25 fps)
    "r3d_18:16:8x48x64:6.25:1:torch+openvino+openvino_int8",
    # X3D at its published width on the demo's clip
    "x3d_xs:24:8x48x64:6.25:1:torch+onnxruntime+openvino+openvino_int8",
    # X3D at the published weights' scale, a result every 2 frames at 15 fps
    "x3d_xs:24:16x112x112:15:2:torch+openvino+openvino_int8",
    # causal_r18 (frame reuse in torch; the exports take whole clips), both clips
    "causal_r18:16:16x112x112:15:2:torch+openvino+openvino_int8",
    "causal_r18:16:8x48x64:6.25:1:torch+openvino",
    # the paper's r3d_18 on the same clip, for reference
    "r3d_18:64:16x112x112:15:2:torch+openvino_int8",
]
ENGINES = ("torch", "onnxruntime", "openvino", "onnxruntime_int8", "openvino_int8")


def parse_case(text: str) -> dict[str, Any]:
    """`ARCH:WIDTH:FRAMESxHEIGHTxWIDTH:TARGET_FPS:STRIDE[:ENGINE+ENGINE...]`."""
    arch, width, clip, fps, stride, *engines = text.split(":")
    frames, height, wide = (int(v) for v in clip.split("x"))
    chosen = engines[0].split("+") if engines else list(ENGINES)
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown:
        raise SystemExit(f"case {text}: unknown engine {unknown[0]} (choices: {ENGINES})")
    return {"arch": arch, "width": int(width), "clip": [frames, height, wide],
            "target_fps": float(fps), "inference_stride": int(stride), "engines": chosen}


def write_model(case: dict[str, Any], folder: Path, int8: bool) -> tuple[Path, CheckpointInfo]:
    """The case's checkpoint (and its int8 ONNX file when `int8`), written into `folder`."""
    frames, height, width = case["clip"]
    config = ModelConfig(method="hps", arch=case["arch"], width=case["width"],
                         num_classes=(101, 249), frame_differences=True)
    torch.manual_seed(0)
    model = build_model(config).eval()
    resize = (128, 171) if (height, width) == (112, 112) else (height, width)
    names = tuple(tuple(f"c{i}" for i in range(n)) for n in config.num_classes)
    info = CheckpointInfo(config, names, PreprocessConfig(
        clip_length=frames, resize=resize, crop=(height, width)))
    checkpoint = folder / f"{case['arch']}_w{case['width']}_{frames}x{height}x{width}.safetensors"
    save_checkpoint(checkpoint, model, info)
    if not int8:
        return checkpoint, info
    from training.tools.quantize import quantize_int8

    calibration = iter([np.random.default_rng(s).standard_normal(
        (1, 3, frames, height, width)).astype(np.float32) for s in range(4)])
    quantized = quantize_int8(export_onnx(model, info), calibration)
    path = checkpoint.with_suffix(".int8.onnx")
    path.write_bytes(quantized.data)
    return path, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=CASES)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one live run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--save", type=Path, default=None,
                        help="a JSON file whose `live` key gets the figures")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    cases = {text: parse_case(text) for text in args.cases}
    out: dict[str, Any] = {
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch": torch.__version__,
        "camera": "1 camera, 640x480 rgb8 at 30 fps, real time", "seconds": args.seconds,
        "rounds": args.rounds, "target": ">= 6 results/s, p95 <= 150 ms",
        "load_average_start": [round(v, 2) for v in os.getloadavg()], "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = {(text, int8): write_model(case, Path(tmp), int8) for text, case in cases.items()
                 for int8 in {e.endswith("_int8") for e in case["engines"]}}
        for threads in args.threads:
            torch.set_num_threads(threads)  # every engine takes torch's count when built
            engines = {}
            for text, case in cases.items():
                for name in case["engines"]:
                    backend, _, precision = name.partition("_")
                    path, info = files[(text, precision == "int8")]
                    engine = load_engine(path, backend)
                    engine.warmup(1)
                    stream = StreamConfig(target_fps=case["target_fps"],
                                          inference_stride=case["inference_stride"])
                    engines[(text, name)] = (engine, info, stream)
            runs: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in engines}
            for _ in range(args.rounds):
                for key, (engine, info, stream) in engines.items():
                    load = os.getloadavg()[0]
                    start = time.perf_counter()
                    result = live("ours", 1, args.seconds, engine, info, stream)
                    result["load_average_1min"] = load
                    result["wall_s"] = time.perf_counter() - start
                    runs[key].append(result)
                    print(f"{threads} thread(s) {key}: " + ", ".join(
                        f"{k} {v:.3g}" for k, v in result.items()), flush=True)
            for (text, name), results in runs.items():
                entry = out["runs"].setdefault(text, {**cases[text]}).setdefault(
                    name, {})
                entry[str(threads)] = summary(results, cases[text])
    out["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    if args.save is not None:
        document = json.loads(args.save.read_text()) if args.save.is_file() else {}
        document["live"] = out
        args.save.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(out))


def summary(results: list[dict[str, float]], case: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds with min..max; whether the median run meets the target."""
    def figure(key: str) -> dict[str, Any]:
        values = [r[key] for r in results]
        return {"median": round(statistics.median(values), 2),
                "spread": [round(min(values), 2), round(max(values), 2)]}

    keys = ("steady_results_per_s", "results_per_s", "latency_p50_ms", "latency_p95_ms",
            "process_cpu_s_per_s", "load_average_1min")
    out: dict[str, Any] = {k: figure(k) for k in keys}
    out["results"] = int(sum(r["results"] for r in results))
    out["most_results_per_s"] = case["target_fps"] / case["inference_stride"]
    out["meets_target"] = (out["steady_results_per_s"]["median"] >= 6
                           and out["latency_p95_ms"]["median"] <= 150)
    return out


if __name__ == "__main__":
    main()
