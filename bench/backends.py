"""Inference engines against PyTorch eager: r3d_18 HPS clips per second, int8 accuracy.

Run from the project root:
`.venv/bin/python bench/backends.py --save bench/results/backends.json
[--checkpoint demo/model/best.safetensors --set demo/synthetic/set.yaml]
[--bag demo/bag --labels demo/bag/labels.csv]`.

1. Speed: r3d_18 HPS at the paper's width (101 + 249 classes, random weights;
   speed does not depend on them) on 16x112x112 clips, `--batch` clips (1: the
   node on a CPU), at each of `--thread-counts` (1 and 2): every backend
   through its `Engine` (PyTorch eager, ONNX Runtime and OpenVINO on the fp32
   export, both on the int8 export: ONNX Runtime static quantisation,
   calibrated on random clips; its speed does not depend on the calibration).
   Engines are timed interleaved, round by round, the order rotated each round
   (A B C, B C A, C A B, ...); `threads_N` holds torch's time over the
   engine's within one round at N threads (median, min and max); `best_threads`
   each engine at its own best thread count against PyTorch at its own best
   (ratio of medians): a loaded machine can make PyTorch slower at 2 threads
   than at 1, which would inflate a same-thread ratio. The load average is
   recorded before and after.
2. Accuracy (with `--checkpoint` and `--set`): the checkpoint exported fp32
   and int8 (calibrated on `--calibration-clips` clips of the set's train
   split), each scored on the test split (centre clips) by the evaluator of
   `python -m training evaluate`; the change is in points of cumulative clip
   accuracy against PyTorch; `int8_agreement`: per engine, the share of test
   clips (every task) whose top-1 class equals PyTorch's.
3. Consistency (with `--bag` and `--labels`): `evaluate_bag`'s pipeline on the
   bag with each backend; the share of clips whose top class (every task)
   equals torch's, and the change in segment accuracy.
The last line printed is the JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from hostinfo import project_first

project_first()  # before `training` is imported: this folder's training.py would shadow it

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hostinfo import cpu_model, report  # noqa: E402

from mtl_perception.checkpoint import CheckpointInfo, load_checkpoint  # noqa: E402
from mtl_perception.deploy.export import export_onnx  # noqa: E402
from mtl_perception.deploy.registry import build_engine  # noqa: E402
from mtl_perception.models import ModelConfig, build_model  # noqa: E402
from mtl_perception.preprocess import PreprocessConfig  # noqa: E402

CPU = torch.device("cpu")


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Clips per second of each engine at each thread count; ratios to PyTorch."""
    from training.tools.quantize import quantize_int8

    config = ModelConfig(method="hps", width=64, num_classes=(101, 249))
    model = build_model(config).eval()
    names = tuple(tuple(f"c{i}" for i in range(n)) for n in config.num_classes)
    pre = PreprocessConfig(clip_length=args.frames, resize=(128, 171),
                           crop=(args.size, args.size))
    info = CheckpointInfo(config, names, pre)
    fp32 = export_onnx(model, info)
    tic = time.perf_counter()
    calibration = iter([np.random.default_rng(s).standard_normal(
        (2, 3, args.frames, args.size, args.size)).astype(np.float32) for s in range(4)])
    int8 = quantize_int8(fp32, calibration)
    quantize_s = time.perf_counter() - tic
    x = np.random.default_rng(0).standard_normal(
        (args.batch, 3, args.frames, args.size, args.size)).astype(np.float32)
    times: dict[int, dict[str, list[float]]] = {}
    for threads in args.thread_counts:
        torch.set_num_threads(threads)  # every engine takes torch's thread count when built
        engines = {"torch": build_engine(model, "torch", CPU, info=info),
                   "onnxruntime": build_engine(fp32, "onnxruntime", CPU),
                   "openvino": build_engine(fp32, "openvino", CPU),
                   "onnxruntime_int8": build_engine(int8, "onnxruntime", CPU),
                   "openvino_int8": build_engine(int8, "openvino", CPU)}
        order = list(engines)
        times[threads] = {name: [] for name in order}
        for engine in engines.values():  # warm-up
            engine(x)
        for round_ in range(args.repeats):
            shift = round_ % len(order)  # rotated: no engine always runs first or last
            for name in order[shift:] + order[:shift]:
                start = time.perf_counter()
                engines[name](x)
                times[threads][name].append(time.perf_counter() - start)
        print(f"{threads} thread(s): " + ", ".join(
            f"{n} {args.batch / statistics.median(t):.3f} clips/s"
            for n, t in times[threads].items()), flush=True)
    result: dict[str, Any] = {"quantize_s": round(quantize_s, 1), "batch": args.batch}
    for threads, section in times.items():
        result[f"threads_{threads}"] = {name: _against(section["torch"], seconds, args.batch)
                                        for name, seconds in section.items()}
    # Each engine at its own best thread count against PyTorch at its own best.
    best: dict[str, Any] = {}
    torch_t = min(times, key=lambda t: statistics.median(times[t]["torch"]))
    for name in times[torch_t]:
        own = min(times, key=lambda t: statistics.median(times[t][name]))
        best[name] = {"threads": own, "torch_threads": torch_t, "over_torch": round(
            statistics.median(times[torch_t]["torch"]) / statistics.median(times[own][name]), 3)}
    result["best_threads"] = best
    return result


def _against(torch_s: list[float], seconds: list[float], batch: int) -> dict[str, Any]:
    """Clips/s, and torch's time over the engine's within each round (median, spread)."""
    ratios = [t / s for t, s in zip(torch_s, seconds)]
    return {"clips_per_s": round(batch / statistics.median(seconds), 3),
            "over_torch": round(statistics.median(ratios), 3),
            "spread": [round(min(ratios), 3), round(max(ratios), 3)]}


def accuracy(args: argparse.Namespace) -> dict[str, Any]:
    """Cumulative clip accuracy on the test split: torch, fp32 and int8 engines."""
    from training.datasets.sets import build_task_split, load_set
    from training.evaluation.cli import trained_frame_step
    from training.evaluation.engine_model import EngineModel
    from training.evaluation.scoring import EvalConfig, Evaluator
    from training.tools.export import set_clips
    from training.tools.quantize import fixed_batches, quantize_int8

    loaded = load_checkpoint(args.checkpoint)
    model, info = loaded.model.eval(), loaded.info
    fp32 = export_onnx(model, info)
    calibration = set_clips(args.set, "train", fp32, model, args.calibration_clips, 8)
    int8 = quantize_int8(fp32, fixed_batches(calibration, 0))
    set_config = load_set(args.set)
    splits = {t: build_task_split(set_config, t, "test") for t in info.model.task_names}
    config = EvalConfig(batch_size=8, video_accuracy=False, frame_step=trained_frame_step(info))
    evaluator = Evaluator(splits, info.model.task_names, info.preprocess, config)
    runs: dict[str, Any] = {"torch": model}
    for name, exported, backend in [("onnxruntime", fp32, "onnxruntime"),
                                    ("openvino", fp32, "openvino"),
                                    ("onnxruntime_int8", int8, "onnxruntime"),
                                    ("openvino_int8", int8, "openvino")]:
        runs[name] = EngineModel(build_engine(exported, backend, CPU))
    agreement = _agreement(model, runs, set_clips(args.set, "test", fp32, model, 10**6, 8))
    scores = {}
    for name, run in runs.items():
        result = evaluator(run, CPU)
        scores[name] = {"cumulative_clip_accuracy": round(result.cumulative_clip_accuracy, 4),
                        **{t.task: round(t.clip_accuracy, 4) for t in result.tasks}}
        print(f"accuracy {name}: {scores[name]}", flush=True)
    base = scores["torch"]["cumulative_clip_accuracy"]
    change = {n: round(100 * (s["cumulative_clip_accuracy"] - base), 2)
              for n, s in scores.items() if n != "torch"}
    return {"checkpoint": str(args.checkpoint), "set": str(args.set),
            "calibration_clips": args.calibration_clips, "clips": evaluator.centre.__len__(),
            "scores": scores, "change_points": change, "int8_agreement": agreement}


def _agreement(model: Any, runs: dict[str, Any], batches: Any) -> dict[str, float]:
    """Share of test clips (every task) whose top-1 class each engine shares with torch."""
    same = dict.fromkeys(runs, 0)
    total = 0
    for clips in batches:
        with torch.no_grad():
            reference = [t.argmax(1) for t in model.score_all(clips)]
        total += sum(len(r) for r in reference)
        for name, run in runs.items():
            outputs = run.score_all(clips)
            same[name] += sum(int((o.argmax(1) == r).sum()) for o, r in zip(outputs, reference))
    return {name: round(count / max(1, total), 4) for name, count in same.items()
            if name != "torch"}


def consistency(args: argparse.Namespace) -> dict[str, Any]:
    """Same top classes as torch on the bag's clips, per backend (fp32 and int8)."""
    from mtl_perception.bag.labels import read_labels
    from mtl_perception.bag.reader import Bag
    from mtl_perception.bag.run import load_stream_config, run_pipeline
    from training.tools.export import set_clips
    from training.tools.quantize import fixed_batches, quantize_int8

    loaded = load_checkpoint(args.checkpoint)
    fp32 = export_onnx(loaded.model.eval(), loaded.info)
    models: dict[str, Any] = {"torch": loaded.model, "onnxruntime": fp32, "openvino": fp32}
    if args.set is not None:
        calibration = set_clips(args.set, "train", fp32, loaded.model, args.calibration_clips, 8)
        int8 = quantize_int8(fp32, fixed_batches(calibration, 0))
        models.update(onnxruntime_int8=int8, openvino_int8=int8)
    top: dict[str, list[tuple[int, ...]]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        backend = name.removesuffix("_int8")
        config = load_stream_config(None, [*args.stream, f"backend={backend}"])
        with Bag(args.bag, None) as bag:
            classes = {t: loaded.info.classes_of(t) for t in loaded.info.model.task_names}
            intervals = read_labels(args.labels, classes, None)
            engine = build_engine(model, backend, CPU, info=loaded.info)
            evaluation = run_pipeline(engine, config, bag.images(), bag.report)
        scores = evaluation.score(intervals)
        top[name] = [tuple(int(np.argmax(r.tasks[t].probabilities)) for t in evaluation.tasks)
                     for r in evaluation.results]
        metrics[name] = {t: scores[t]["segment_accuracy"] for t in evaluation.tasks}
        print(f"bag {name}: {len(top[name])} clips, segment accuracy {metrics[name]}", flush=True)
    out: dict[str, Any] = {"bag": str(args.bag), "clips": len(top["torch"]), "backends": {}}
    for name in models:
        same = sum(a == b for a, b in zip(top[name], top["torch"])) / max(1, len(top["torch"]))
        out["backends"][name] = {
            "same_predictions": round(same, 4),
            "segment_accuracy_change_points": {
                t: round(100 * (metrics[name][t] - metrics["torch"][t]), 2)
                for t in metrics["torch"]},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=1, help="clips per forward pass (the "
                        "node's on a CPU: 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2, help="for the accuracy parts")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--set", type=Path, default=None)
    parser.add_argument("--calibration-clips", type=int, default=300)
    parser.add_argument("--bag", type=Path, default=None)
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--stream", nargs="*", default=["target_fps=6.25", "inference_stride=2"],
                        help="stream settings for the bag (the demo's)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result: dict[str, Any] = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
                              "load_average_before": [round(v, 2) for v in os.getloadavg()],
                              "torch": torch.__version__, "frames": args.frames,
                              "size": args.size, "repeats": args.repeats}
    for module in ("onnxruntime", "openvino"):
        result[module] = __import__(module).__version__
    if not args.skip_speed:
        speeds = speed(args)
        result["speed"] = speeds
        for threads in args.thread_counts:  # the headline ratios, per thread count
            result[f"threads_{threads}"] = {name: figures["over_torch"] for name, figures
                                            in speeds[f"threads_{threads}"].items()
                                            if name != "torch"}
        torch.set_num_threads(args.threads)
    if args.checkpoint is not None and args.set is not None:
        result["accuracy"] = accuracy(args)
        result["int8_agreement"] = result["accuracy"]["int8_agreement"]
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    if args.checkpoint is not None and args.bag is not None and args.labels is not None:
        result["consistency"] = consistency(args)
    report(result, args.save)


if __name__ == "__main__":
    main()
