"""Backbone families on the CPU: GMAC per clip, latency per engine, accuracy per CPU-second.

Run from the project root:
`.venv/bin/python bench/backbones.py --save bench/results/backbones.json
[--parts speed accuracy step] [--set demo/synthetic/set.yaml] [--budget-cpu-s 80]
[--keep bench/results/backbones.json]` (`--keep`: the parts not rerun are kept).
Live results per second and latency per engine: `bench/live_archs.py`.

1. Cost and speed (`speed`): each arch at its published width (r3d_18 64,
   x3d_xs 24; causal_r18, which has no published weights, at the CPU demo's 16;
   one width per arch) as an HPS model (101 + 249 classes, random weights: speed does
   not depend on them). GMAC per clip counted by `torch.utils.flop_counter`
   (multiply-adds = FLOPs / 2) on `--frames`x`--size`x`--size` clips and on
   the paper's 32-frame clip. Latency at batch 1 on 1 and 2 threads: PyTorch
   eager, ONNX Runtime and OpenVINO on the fp32 export and on the int8 export
   (ONNX Runtime static quantisation calibrated on random clips: the speed of
   an int8 graph does not depend on its calibration). Every (arch, engine) is
   timed interleaved, repeat by repeat; a ratio is r3d_18 eager's time over
   the engine's within one repeat; figures are medians, spread min..max.
2. Accuracy per training CPU-second (`accuracy`): the CPU demo's recipe
   (`config/train/cpu_small.yaml`: 8 frames 4 apart, the whole frame at 48x64,
   frame differences, cosine lr over the run, from scratch) for each
   `--demo-archs` ARCH:WIDTH[:KEY=VALUE...] (training overrides), trained for
   the same budget of CPU-seconds (user + sys of the training process and
   its children, `os.wait4`: not wall time, the machine is shared) with
   `--seeds`; the iterations that fit the budget come from two short
   calibration runs (1 and `--calibration-iterations` iterations). Each run
   is then scored on the set's test split by `python -m training evaluate`
   (centre clips, video accuracy over all clips; trimmed).
3. Training step cost (`step`): CPU-seconds of one forward + backward + Adam
   step at the demo's clip and batch, per `--step-archs` ARCH:WIDTH[:LAYOUT]
   (channels-last or contiguous weights), one thread, interleaved.
The last line printed is the JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hostinfo import project_first

project_first()  # before `training` is imported: this folder's training.py would shadow it
_ROOT = str(Path(__file__).resolve().parents[1])  # the children's cwd and PYTHONPATH

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hostinfo import cpu_model, report  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from mtl_perception.checkpoint import CheckpointInfo  # noqa: E402
from mtl_perception.deploy.export import export_onnx  # noqa: E402
from mtl_perception.deploy.registry import build_engine  # noqa: E402
from mtl_perception.models import ModelConfig, build_model  # noqa: E402
from mtl_perception.preprocess import PreprocessConfig  # noqa: E402

CPU = torch.device("cpu")
BASE = "r3d_18"
ENGINES = ("torch", "onnxruntime", "openvino", "onnxruntime_int8", "openvino_int8")


def paper_model(arch: str, width: int) -> torch.nn.Module:
    config = ModelConfig(method="hps", arch=arch, width=width, num_classes=(101, 249))  # type: ignore[arg-type]
    return build_model(config).eval()


def gmac(model: torch.nn.Module, frames: int, size: int) -> float:
    """Multiply-adds of one clip through `score_all`, in billions."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.score_all(torch.zeros(1, 3, frames, size, size))  # type: ignore[operator]
    return counter.get_total_flops() / 2e9


def speed(args: argparse.Namespace) -> dict[str, Any]:
    from training.tools.quantize import quantize_int8

    archs = dict(a.split(":") for a in args.speed_archs)
    models: dict[str, Any] = {}
    exports: dict[str, dict[str, Any]] = {}
    out: dict[str, dict[str, Any]] = {}
    for arch, width in archs.items():
        model = paper_model(arch, int(width))
        models[arch] = model
        names = tuple(tuple(f"c{i}" for i in range(n)) for n in (101, 249))
        pre = PreprocessConfig(clip_length=args.frames, resize=(128, 171),
                               crop=(args.size, args.size))
        info = CheckpointInfo(model.config, names, pre)  # type: ignore[arg-type]
        fp32 = export_onnx(model, info)
        calibration = iter([np.random.default_rng(s).standard_normal(
            (1, 3, args.frames, args.size, args.size)).astype(np.float32) for s in range(4)])
        exports[arch] = {"fp32": fp32, "int8": quantize_int8(fp32, calibration)}
        out[arch] = {
            "width": int(width),
            "parameters": sum(p.numel() for p in model.parameters()),
            "gmac": round(gmac(model, args.frames, args.size), 3),
            "gmac_32x112": round(gmac(model, 32, 112), 3),
        }
        print(f"{arch}: {out[arch]}", flush=True)
    for arch in archs:
        out[arch]["gmac_ratio"] = round(out[arch]["gmac"] / out[BASE]["gmac"], 4)
    x = torch.randn(1, 3, args.frames, args.size, args.size)
    for threads in args.threads:
        torch.set_num_threads(threads)  # the engines take torch's thread count when built
        runners: dict[tuple[str, str], Callable[[], Any]] = {}
        for arch, model in models.items():
            runners[(arch, "torch")] = functools.partial(model.score_all, x)
            for engine in ENGINES[1:]:
                backend, _, precision = engine.partition("_")
                built = build_engine(exports[arch][precision or "fp32"], backend, CPU)
                runners[(arch, engine)] = functools.partial(built, x.numpy())
        with torch.inference_mode():
            times = interleaved(runners, args.repeats, time.perf_counter)
        base = times[(BASE, "torch")]
        for (arch, engine), seconds in times.items():
            ratios = [b / s for b, s in zip(base, seconds)]
            out[arch].setdefault("latency_ms", {}).setdefault(str(threads), {})[engine] = {
                "median": round(1000 * statistics.median(seconds), 2),
                "spread": [round(1000 * min(seconds), 2), round(1000 * max(seconds), 2)],
                "over_r3d18_torch": round(statistics.median(ratios), 3),
                "over_spread": [round(min(ratios), 3), round(max(ratios), 3)],
            }
        print(f"{threads} thread(s): " + ", ".join(
            f"{a}/{e} {1000 * statistics.median(s):.1f} ms" for (a, e), s in times.items()),
            flush=True)
    for arch in archs:
        per_threads = out[arch]["latency_ms"]
        best = {t: max(per_threads[t].items(), key=lambda kv: kv[1]["over_r3d18_torch"])
                for t in per_threads}
        out[arch]["best_engine"] = {t: {"engine": e, "over_r3d18_torch": v["over_r3d18_torch"]}
                                    for t, (e, v) in best.items()}
        first = str(args.threads[0])
        out[arch]["best_engine_over_r3d18_torch"] = best[first][1]["over_r3d18_torch"]
    return out


K = TypeVar("K")  # a runner's key


def interleaved(runners: dict[K, Callable[[], Any]], repeats: int,
                clock: Callable[[], float]) -> dict[K, list[float]]:
    """Each runner's `clock` time over `repeats` rounds, the runners taken in turn within
    a round (A B A B ...: a drift in the machine's load hits every side alike), after one
    warm-up call each."""
    for runner in runners.values():
        runner()
    times: dict[K, list[float]] = {key: [] for key in runners}
    for _ in range(repeats):
        for key, runner in runners.items():
            start = clock()
            runner()
            times[key].append(clock() - start)
    return times


def step_cost(args: argparse.Namespace) -> dict[str, Any]:
    """CPU-seconds of one training step (forward, backward, Adam) per `--step-archs`
    ARCH:WIDTH[:contiguous] at the demo's clip (`--step-clip`), batch 8, one thread,
    HPS with the synthetic set's 7 + 8 classes and frame differences; interleaved."""
    torch.set_num_threads(1)
    frames, height, width = args.step_clip
    clips = torch.randn(8, 3, frames, height, width)
    task_ids = torch.tensor([0, 1] * 4)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    runners: dict[str, Callable[[], None]] = {}
    for spec in args.step_archs:
        arch, wide, *layout = spec.split(":")
        config = ModelConfig(method="hps", arch=arch, width=int(wide),
                             num_classes=(7, 8), frame_differences=True)
        model = build_model(config).train()
        if layout == ["contiguous"]:
            model.to(memory_format=torch.contiguous_format)
        elif layout == ["channels_last"]:
            model.to(memory_format=torch.channels_last_3d)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def one_step(model: Any = model, optimizer: Any = optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            logits = model(clips, task_ids)
            loss = sum(torch.nn.functional.cross_entropy(t, labels[task_ids == i] % t.shape[1])
                       for i, t in enumerate(logits))
            loss.backward()  # type: ignore[union-attr]
            optimizer.step()

        runners[spec] = one_step
    times = interleaved(runners, args.step_repeats, time.thread_time)
    base = times[args.step_archs[0]]
    out = {"clip": args.step_clip, "batch": 8, "threads": 1, "repeats": args.step_repeats}
    for key, seconds in times.items():
        ratios = [s / b for s, b in zip(seconds, base)]
        out[key] = {"cpu_s": round(statistics.median(seconds), 4),
                    "spread": [round(min(seconds), 4), round(max(seconds), 4)],
                    "over_first": round(statistics.median(ratios), 3)}
        print(f"step {key}: {out[key]}", flush=True)
    return out


def _train(args: argparse.Namespace, arch: str, width: int, seed: int, iterations: int,
           out: Path, overrides: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "training", "train", "--config", str(args.train_config),
               "--out", str(out), "--overwrite", f"set={Path(args.set).resolve()}",
               f"model.arch={arch}", f"model.width={width}", f"seed={seed}",
               f"iterations={iterations}", f"val_every={iterations}",
               f"save_every={iterations}", "workers=0", "log_every=50", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": _ROOT}
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115 (the child holds it to its exit)
    return subprocess.Popen(command, cwd=_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_cpu(process: subprocess.Popen[bytes]) -> float:
    """The child's CPU-seconds (user + sys, its own children included), after it exits."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"training failed ({process.returncode}): {process.args!r}")
    return usage.ru_utime + usage.ru_stime


def _run_all(jobs: list[Callable[[], subprocess.Popen[bytes]]], parallel: int) -> list[float]:
    """Run the training jobs, `parallel` at a time; CPU-seconds of each, in order."""
    cpu: list[float] = [0.0] * len(jobs)
    running: list[tuple[int, subprocess.Popen[bytes]]] = []
    pending = list(enumerate(jobs))
    while pending or running:
        while pending and len(running) < parallel:
            index, start = pending.pop(0)
            running.append((index, start()))
        index, process = running.pop(0)
        cpu[index] = _wait_cpu(process)
    return cpu


def _evaluate(args: argparse.Namespace, run: Path) -> dict[str, Any]:
    target = run / "test.json"
    command = [sys.executable, "-m", "training", "evaluate", "--checkpoint",
               str(run / "last.safetensors"), "--config", str(args.set), "--split", "test",
               "--frame-step", "4", "--json", str(target), "--overwrite", "--num-workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": _ROOT}
    subprocess.run(command, cwd=_ROOT, env=env, check=True, capture_output=True)
    result = json.loads(target.read_text())
    tasks = result["tasks"]
    return {"clip": {t: tasks[t]["clip_accuracy"] for t in tasks},
            "video": {t: tasks[t]["video_accuracy"] for t in tasks},
            "clip_mean": statistics.mean(tasks[t]["clip_accuracy"] for t in tasks),
            "video_mean": statistics.mean(tasks[t]["video_accuracy"] for t in tasks)}


def demo_run(spec: str) -> tuple[str, str, int, tuple[str, ...]]:
    """`ARCH:WIDTH[:KEY=VALUE...]` -> (result key, arch, width, training overrides)."""
    arch, width, *overrides = spec.split(":")
    key = "_".join([f"{arch}_w{width}", *overrides]).replace("=", "-").replace(",", "x")
    return key, arch, int(width), tuple(overrides)


def accuracy(args: argparse.Namespace) -> dict[str, Any]:
    runs = Path(args.runs)
    specs = [demo_run(s) for s in args.demo_archs]
    out: dict[str, Any] = {}
    k = args.calibration_iterations
    calibrated: dict[tuple[str, ...], tuple[float, float]] = {}
    for key, arch, width, overrides in specs:  # CPU-s = fixed + per_iteration * iterations
        # what changes the cost per iteration: the model and the clip (not lr, seed, ...)
        costly = tuple(o for o in overrides if o.startswith(("clip.", "model.", "batch")))
        cost_key = (arch, str(width), *costly)
        if cost_key not in calibrated:
            folder = runs / "_".join(cost_key).replace("=", "-").replace(",", "x")
            one, many = _run_all([
                functools.partial(_train, args, arch, width, 0, 1, folder / "calibrate_1",
                                  costly),
                functools.partial(_train, args, arch, width, 0, k, folder / f"calibrate_{k}",
                                  costly),
            ], args.parallel)
            per_iteration = max(1e-3, (many - one) / (k - 1))
            calibrated[cost_key] = (per_iteration, one - per_iteration)
        per_iteration, fixed = calibrated[cost_key]
        iterations = max(1, round((args.budget_cpu_s - fixed) / per_iteration))
        out[key] = {"arch": arch, "width": width, "overrides": list(overrides),
                    "cpu_s_per_iteration": round(per_iteration, 4),
                    "cpu_s_fixed": round(fixed, 2), "iterations": iterations}
        print(f"{key}: {per_iteration:.3f} CPU-s/iteration + {fixed:.1f} CPU-s "
              f"fixed -> {iterations} iterations in {args.budget_cpu_s} CPU-s", flush=True)
    jobs: list[Callable[[], subprocess.Popen[bytes]]] = []
    keys: list[tuple[str, int, Path]] = []
    for key, arch, width, overrides in specs:
        for seed in args.seeds:
            folder = runs / key / f"seed{seed}"
            jobs.append(functools.partial(_train, args, arch, width, seed,
                                          out[key]["iterations"], folder, overrides))
            keys.append((key, seed, folder))
    cpu = _run_all(jobs, args.parallel)
    for (key, seed, folder), seconds in zip(keys, cpu):
        scores = _evaluate(args, folder)
        out[key].setdefault("seeds", {})[str(seed)] = {"cpu_s": round(seconds, 1), **scores}
        print(f"{key} seed {seed}: {seconds:.0f} CPU-s, clip {scores['clip']}, "
              f"video {scores['video']}", flush=True)
    for entry in out.values():
        seeds = entry["seeds"].values()
        for metric in ("clip_mean", "video_mean", "cpu_s"):
            values = [s[metric] for s in seeds]
            entry[metric] = {"mean": round(statistics.mean(values), 4),
                             "spread": [round(min(values), 4), round(max(values), 4)]}
    return out


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Per arch, the three figures the issue's check reads: GMAC over r3d_18's (published
    widths), its fastest engine over r3d_18 eager (1 thread, batch 1), and its accuracy
    (mean clip accuracy over tasks and seeds, in points) minus r3d_18's at the demo widths
    (the best width of that arch)."""
    speed, accuracy = result.get("speed", {}), result.get("accuracy", {})
    base = max((v["clip_mean"]["mean"] for v in accuracy.values() if v["arch"] == BASE),
               default=None)
    out: dict[str, Any] = {}
    for arch, figures in speed.items():
        entry: dict[str, Any] = {"gmac_ratio": figures["gmac_ratio"],
                                 "best_engine_over_r3d18_torch":
                                 figures["best_engine_over_r3d18_torch"]}
        runs = {k: v for k, v in accuracy.items() if v["arch"] == arch}
        if runs and base is not None:
            key = max(runs, key=lambda k: runs[k]["clip_mean"]["mean"])
            entry["accuracy_minus_r3d18"] = round(
                100 * (runs[key]["clip_mean"]["mean"] - base), 2)
            entry["accuracy_run"] = key
        out[arch] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--parts", nargs="+", choices=("speed", "accuracy", "step"),
                        default=["speed", "accuracy"])
    parser.add_argument("--speed-archs", nargs="+",
                        default=["r3d_18:64", "x3d_xs:24", "causal_r18:16"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--demo-archs", nargs="+",
                        default=["r3d_18:16", "x3d_xs:8", "causal_r18:16"],
                        help="ARCH:WIDTH[:KEY=VALUE...] (training overrides, e.g. lr=0.003)")
    parser.add_argument("--step-archs", nargs="+",
                        default=["r3d_18:16", "x3d_xs:8", "x3d_xs:16", "x3d_xs:24", "causal_r18:16",
                                 "x3d_xs:16:contiguous", "r3d_18:16:channels_last"])
    parser.add_argument("--step-clip", type=int, nargs=3, default=[8, 48, 64])
    parser.add_argument("--step-repeats", type=int, default=10)
    parser.add_argument("--keep", type=Path, default=None,
                        help="a results file whose parts not rerun are kept")
    parser.add_argument("--set", default="demo/synthetic/set.yaml")
    parser.add_argument("--train-config", default="config/train/cpu_small.yaml")
    parser.add_argument("--runs", default="runs/bench_backbones")
    parser.add_argument("--budget-cpu-s", type=float, default=80.0)
    parser.add_argument("--calibration-iterations", type=int, default=21)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="training runs at a time")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch": torch.__version__,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "batch": 1, "clip": [args.frames, args.size, args.size],
    }
    if args.keep is not None and args.keep.is_file():
        kept = json.loads(args.keep.read_text())
        result = {**kept, **result, "load_average_start_" + "_".join(args.parts):
                  result.pop("load_average_start")}
    if "step" in args.parts:
        result["step"] = step_cost(args)
        result["load_average_after_step"] = [round(v, 2) for v in os.getloadavg()]
    if "speed" in args.parts:
        result["speed"] = speed(args)
        result["load_average_after_speed"] = [round(v, 2) for v in os.getloadavg()]
    if "accuracy" in args.parts:
        result["accuracy"] = accuracy(args)
        result["budget_cpu_s"] = args.budget_cpu_s
        result["load_average_after_accuracy"] = [round(v, 2) for v in os.getloadavg()]
    result["archs"] = summarise(result)
    report(result, args.save)


if __name__ == "__main__":
    main()
