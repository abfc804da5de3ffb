"""Training iteration time and peak memory of SPS and LWS against HPS.

Run from the project root: `.venv/bin/python bench/training.py [--repeats N]
[--save bench/results/training.json]`. At the paper's size by default (r3d_18
width 64, 32x112x112 clips, batch 8 of both tasks, 101 + 249 classes, two
trainable stages, Adam, average loss weighting). One iteration is what the
trainer runs: `training.train.steps.Stepper.step`, i.e. forward, backward and
the optimiser step; for LWS the assignment (NES) step with 8 sampled
assignments on its own batch, then the weight step with 8.

Time: all methods live in one process and are timed interleaved, HPS SPS LWS
HPS SPS LWS ..., so that drift in machine speed (other jobs) hits all alike;
each round gives one ratio per method (its time / that round's HPS time); the
figure is the median ratio, with the min and max as its spread. LWS's time is
also split into its two steps (the assignment step timed alone).

Memory: each method runs two iterations in a fresh subprocess (`--memory-only
METHOD`), before the timing builds any model, so one method's allocator cache
cannot inflate another's peak: peak RSS (VmHWM) on CPU,
`torch.cuda.max_memory_allocated` on GPU. The last line printed is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

# Run as `python bench/training.py`, this file's folder comes first on sys.path
# and its name would shadow the `training` package: move the folder last and put
# the project root first (an editable install's finder only runs after every
# sys.path entry has been searched, the bench folder included).
_HERE = str(Path(__file__).resolve().parent)
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [_ROOT] + [
    p for p in sys.path if str(Path(p or ".").resolve()) not in (_HERE, _ROOT)
] + [_HERE]

import torch  # noqa: E402
from hostinfo import cpu_model, report  # noqa: E402

from mtl_perception.models import ModelConfig, build_model  # noqa: E402
from mtl_perception.models.config import Method  # noqa: E402
from training.methods.lws import LWSConfig, assignment_step  # noqa: E402
from training.methods.weighting import WeightingConfig, build_weighting  # noqa: E402
from training.train.distributed import DistContext  # noqa: E402
from training.train.steps import Batch, Stepper  # noqa: E402

METHODS: tuple[Method, ...] = ("hps", "sps", "lws")
NUM_CLASSES = (101, 249)


class Iteration:
    """One method's model, optimiser and stepper, with fixed batches."""

    def __init__(self, method: Method, args: argparse.Namespace, device: torch.device,
                 reuse_routes: bool = True) -> None:
        config = ModelConfig(method=method, width=args.width, num_classes=NUM_CLASSES)
        torch.manual_seed(0)
        self.model = build_model(config).to(device)
        weighting = build_weighting("average", 2, WeightingConfig()).to(device)
        groups = self.model.parameter_groups(args.lr) + weighting.parameter_groups(args.lr)
        optimizer = torch.optim.Adam(groups, lr=args.lr)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        self.lws = LWSConfig(nes_samples=args.lws_samples, sgd_samples=args.lws_samples,
                             per_task_forward=not args.lws_shared_forward,
                             reuse_routes=reuse_routes)
        ctx = DistContext(device=device)
        self.stepper = Stepper(self.model, weighting, optimizer, ctx, nullcontext, scaler,
                               self.lws)
        self.batch, self.nes = (_batch(args, device, seed) for seed in (1, 2))
        # The trainer draws the assignment step's batch apart from the weight step's.
        separate = method == "lws" and self.lws.separate_nes_batch
        self.nes_batch = self.nes if separate else None
        self.generator = torch.Generator().manual_seed(0)
        self.device = device

    def step(self) -> float:
        _sync(self.device)
        start = time.perf_counter()
        self.stepper.step(self.batch, self.generator, self.nes_batch)
        _sync(self.device)
        return time.perf_counter() - start

    def assignment_only(self) -> float:
        """The LWS assignment step alone (for the split of LWS's time)."""
        _sync(self.device)
        start = time.perf_counter()
        assignment_step(self.model, self.nes.clips, self.nes.labels,  # type: ignore[arg-type]
                        self.nes.task_ids, self.lws, self.generator)
        _sync(self.device)
        return time.perf_counter() - start


def _batch(args: argparse.Namespace, device: torch.device, seed: int) -> Batch:
    """Half action, half gesture samples (every batch holds both tasks)."""
    g = torch.Generator().manual_seed(seed)
    n = args.batch
    task_ids = torch.arange(n) % 2
    labels = torch.stack([torch.randint(NUM_CLASSES[int(t)], (), generator=g) for t in task_ids])
    clips = torch.randn(n, 3, args.frames, args.size, args.size, generator=g)
    counts = [int((task_ids == t).sum()) for t in range(2)]
    return Batch(clips.to(device), labels.to(device), task_ids.to(device), counts)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def peak_memory(method: Method, args: argparse.Namespace) -> float:
    """Peak memory (MiB) of a fresh process running two iterations of `method`."""
    command = [sys.executable, __file__, "--memory-only", method, "--width", str(args.width),
               "--frames", str(args.frames), "--size", str(args.size), "--batch",
               str(args.batch), "--lws-samples", str(args.lws_samples), "--device", args.device]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mib"])


def _peak_rss_mib() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the process image, while
    `ru_maxrss` survives fork + exec and would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Peak memory per method, each in a fresh subprocess, and the ratios to HPS."""
    peaks = {m: peak_memory(m, args) for m in METHODS}
    result: dict[str, Any] = {
        "peak_memory_mib": peaks,
        "memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS",
    }
    for method in ("sps", "lws"):
        result[f"{method}_memory_over_hps"] = round(peaks[method] / peaks["hps"], 3)
    return result


def memory_only(args: argparse.Namespace, device: torch.device) -> None:
    iteration = Iteration(args.memory_only, args, device)
    for _ in range(2):  # the second step has the optimiser's moments allocated
        iteration.step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _peak_rss_mib()
    print(json.dumps({"method": args.memory_only, "peak_mib": round(peak, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64, help="backbone base width (64 = paper)")
    parser.add_argument("--frames", type=int, default=32, help="clip length")
    parser.add_argument("--size", type=int, default=112, help="crop size (pixels)")
    parser.add_argument("--batch", type=int, default=8, help="clips per iteration")
    parser.add_argument("--lws-samples", type=int, default=8,
                        help="sampled assignments in each LWS step")
    parser.add_argument("--lws-shared-forward", action="store_true",
                        help="LWS: one forward for both tasks' samples "
                        "(lws.per_task_forward=false)")
    parser.add_argument("--lws-loop", action="store_true",
                        help="also time LWS with one forward per sampled assignment "
                        "(lws.reuse_routes=false) as 'lws_loop'")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-only", choices=METHODS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-only-all", action="store_true",
                        help="measure peak memory only (no timing)")
    parser.add_argument("--save", type=Path, default=None,
                        help="also write the JSON here (the committed one: "
                             "bench/results/training.json)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_only:
        memory_only(args, device)
        return

    # Memory first, while this process holds no model: nothing of ours competes.
    peak_memory_first = memory(args, device)
    if args.memory_only_all:
        print(json.dumps(peak_memory_first))
        return
    iterations: dict[str, Iteration] = {m: Iteration(m, args, device) for m in METHODS}
    if args.lws_loop:
        iterations["lws_loop"] = Iteration("lws", args, device, reuse_routes=False)
    for it in iterations.values():  # warm-up: allocator, kernels, caches, Adam moments
        it.step()
    times: dict[str, list[float]] = {m: [] for m in iterations}
    for round_ in range(args.repeats):
        for method, it in iterations.items():
            times[method].append(it.step())
        print(f"round {round_ + 1}: " + ", ".join(
            f"{m} {times[m][-1]:.2f} s" for m in iterations), flush=True)
    nes = [iterations["lws"].assignment_only() for _ in range(max(1, args.repeats // 2))]
    del iterations

    result: dict[str, Any] = {
        "device": machine(device), "torch": torch.__version__, "width": args.width,
        "frames": args.frames, "size": args.size, "batch": args.batch,
        "lws_samples": args.lws_samples, "repeats": args.repeats,
        "lws_per_task_forward": not args.lws_shared_forward,
        "seconds": {m: round(statistics.median(t), 3) for m, t in times.items()},
        "seconds_all": {m: [round(s, 3) for s in t] for m, t in times.items()},
    }
    for method in [m for m in times if m != "hps"]:
        ratios = [a / h for a, h in zip(times[method], times["hps"], strict=True)]
        result[f"{method}_over_hps"] = round(statistics.median(ratios), 3)
        result[f"{method}_over_hps_spread"] = [round(min(ratios), 3), round(max(ratios), 3)]
    if "lws_loop" in times:  # what reusing shared routes saves, round by round
        ratios = [a / b for a, b in zip(times["lws"], times["lws_loop"], strict=True)]
        result["lws_over_lws_loop"] = round(statistics.median(ratios), 3)
        result["lws_over_lws_loop_spread"] = [round(min(ratios), 3), round(max(ratios), 3)]
    nes_s = statistics.median(nes)
    result["lws_assignment_step_s"] = round(nes_s, 3)
    result["lws_weight_step_s"] = round(result["seconds"]["lws"] - nes_s, 3)
    result.update(peak_memory_first)
    report(result, args.save)


if __name__ == "__main__":
    main()
