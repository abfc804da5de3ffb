"""Inference engines against PyTorch eager: r3d_18 HPS clips per second, int8 accuracy.

Run from the project root:
`.venv/bin/python bench/backends.py --save bench/results/backends.json
[--checkpoint demo/model/best.safetensors --set demo/synthetic/set.yaml]
[--bag demo/bag --labels demo/bag/labels.csv]`.

1. Speed: r3d_18 HPS at the paper's width (101 + 249 classes, random weights;
   speed does not depend on them) on 16x112x112 clips, batch 1 and 4, on
   `--threads` threads: PyTorch eager, PyTorch channels-last 3D (a
   reference), ONNX Runtime and OpenVINO on the fp32 export, both on the int8
   export (ONNX Runtime static quantisation, calibrated on random clips: the
   speed of an int8 graph does not depend on its calibration). Engines are
   timed interleaved, repeat by repeat (A B C ... A B C ...); each ratio is
   torch's time over the engine's within one repeat, and the figure is the
   median of those ratios, with their min and max as the spread.
2. Accuracy (with `--checkpoint` and `--set`): the checkpoint exported fp32
   and int8 (calibrated on `--calibration-clips` clips of the set's train
   split), each scored on the test split (centre clips) by the evaluator of
   `python -m training evaluate`; the change is in points of cumulative clip
   accuracy against PyTorch.
3. Consistency (with `--bag` and `--labels`): `evaluate_bag`'s pipeline on the
   bag with each backend; the share of clips whose top class (every task)
   equals torch's, and the change in segment accuracy.
The last line printed is the JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# As in bench/training.py: this folder's training.py would shadow the `training`
# package that the accuracy part imports; project root first, this folder last.
_HERE = str(Path(__file__).resolve().parent)
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [_ROOT] + [
    p for p in sys.path if str(Path(p or ".").resolve()) not in (_HERE, _ROOT)
] + [_HERE]

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
    channels_last = build_model(config).eval()
    channels_last.load_state_dict(model.state_dict())
    channels_last = channels_last.to(memory_format=torch.channels_last_3d)
    engines = {
        "onnxruntime": build_engine(fp32, "onnxruntime", CPU),
        "openvino": build_engine(fp32, "openvino", CPU),
        "onnxruntime_int8": build_engine(int8, "onnxruntime", CPU),
        "openvino_int8": build_engine(int8, "openvino", CPU),
    }
    runners: dict[str, Callable[[torch.Tensor], Any]] = {
        "torch": lambda x: model.score_all(x),
        "torch_channels_last": lambda x: channels_last.score_all(
            x.contiguous(memory_format=torch.channels_last_3d)),
        **{name: _numpy_runner(engine) for name, engine in engines.items()},
    }
    result: dict[str, Any] = {"quantize_s": round(quantize_s, 1), "batches": {}}
    for batch in args.batches:
        x = torch.randn(batch, 3, args.frames, args.size, args.size)
        times: dict[str, list[float]] = {name: [] for name in runners}
        with torch.inference_mode():
            for run in runners.values():  # warm-up
                run(x)
            for _ in range(args.repeats):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run(x)
                    times[name].append(time.perf_counter() - start)
        section: dict[str, Any] = {}
        for name, seconds in times.items():
            ratios = [t / s for t, s in zip(times["torch"], seconds)]
            section[name] = {
                "clips_per_s": round(batch / statistics.median(seconds), 3),
                "over_torch": round(statistics.median(ratios), 3),
                "spread": [round(min(ratios), 3), round(max(ratios), 3)],
            }
        result["batches"][str(batch)] = section
        print(f"batch {batch}: " + ", ".join(
            f"{n} {s['clips_per_s']:.2f} clips/s ({s['over_torch']}x)" for n, s in section.items()),
            flush=True)
    return result


def _numpy_runner(engine: Callable[[np.ndarray], Any]) -> Callable[[torch.Tensor], Any]:
    return lambda x: engine(x.numpy())


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
            "scores": scores, "change_points": change}


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
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
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
    result: dict[str, Any] = {"machine": f"{cpu_model()}, {args.threads} threads",
                              "torch": torch.__version__, "frames": args.frames,
                              "size": args.size, "repeats": args.repeats}
    for module in ("onnxruntime", "openvino"):
        result[module] = __import__(module).__version__
    if not args.skip_speed:
        result["speed"] = speed(args)
        first = result["speed"]["batches"][str(args.batches[0])]
        # Headlines: batch 1, what the node runs on a CPU (one clip per forward pass).
        result["onnxruntime_over_torch"] = first["onnxruntime"]["over_torch"]
        result["openvino_over_torch"] = first["openvino"]["over_torch"]
        best = max(("onnxruntime_int8", "openvino_int8"), key=lambda n: first[n]["over_torch"])
        result["best_int8"] = best
        result["best_int8_over_torch"] = first[best]["over_torch"]
    if args.checkpoint is not None and args.set is not None:
        result["accuracy"] = accuracy(args)
        best = result.get("best_int8", "onnxruntime_int8")
        result["int8_accuracy_change_points"] = result["accuracy"]["change_points"][best]
    if args.checkpoint is not None and args.bag is not None and args.labels is not None:
        result["consistency"] = consistency(args)
    report(result, args.save)


if __name__ == "__main__":
    main()
