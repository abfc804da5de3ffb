"""The task gate's cost against one forward, and (issue 17b) its figures on untrimmed streams.

Run from the project root: `.venv/bin/python bench/gate.py [--width N] [--save FILE]`
(cost); `... --no-cost --set SET --checkpoints A B C --save bench/results/gate.json`
(issue 24's untrimmed figures over training seeds, bench/gate_untrimmed.py documents
them; the cost figures of --save are kept).
The last line printed is JSON; `--save bench/results/gate.json` commits it.

Cost (this file): for HPS, SPS and LWS at the paper's size, the median time
of the gate head alone on the pooled features (`model.gate(gate_features)`)
over the median time of `score_all` without the gate (what the node ran
before), batch 1 and 8, interleaved repeats; and the same ratio in
multiply-adds (convolutions and linear layers counted by forward hooks),
which does not depend on the machine. `gate_cost_over_forward` is the worst
measured ratio over methods and batches. A difference of two timings
(`score_all` with and without the gate) would drown the gate in noise; the
gate's own time is what it adds, since it reads features `score_all`
computes anyway.

Untrimmed figures: `bench/gate_untrimmed.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from gate_untrimmed import untrimmed_figures
from hostinfo import cpu_model, report
from torch import nn

from mtl_perception.models import ModelConfig, MultiTaskModel, build_model
from mtl_perception.models.config import Method


def gated(method: Method, width: int) -> MultiTaskModel:
    return build_model(ModelConfig(method=method, width=width, num_classes=(101, 249),
                                   gate=True)).eval()


def multiply_adds(module: nn.Module, run: Any) -> int:
    """Multiply-adds of the Conv3d and Linear layers `run()` calls on `module`."""
    total = 0

    def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv3d):
            kernel = layer.weight.shape[1] * layer.weight[0, 0].numel()
            total += output.numel() * kernel
        elif isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv3d, nn.Linear))]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return total


def gate_cost(method: Method, width: int, frames: int, size: int, batches: list[int],
              repeats: int) -> dict[str, Any]:
    """Measured and counted cost of the gate over `score_all` without it, per batch size."""
    torch.manual_seed(0)
    model = gated(method, width)
    gate = model.gate
    assert gate is not None
    out: dict[str, Any] = {}
    for batch in batches:
        clips = torch.randn(batch, 3, frames, size, size)
        with torch.inference_mode():
            features = model.gate_features(clips)
            model.gate = None  # score_all as a gate-less model runs it

            def forward(clips: torch.Tensor = clips) -> None:
                model.score_all(clips)

            def head(features: torch.Tensor = features) -> None:
                gate(features)

            forward()  # warm-up
            head()
            times: dict[str, list[float]] = {"forward": [], "gate": []}
            for _ in range(repeats):
                for name, run in (("forward", forward), ("gate", head)):
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
            macs_forward = multiply_adds(model, forward)
            macs_gate = multiply_adds(gate, head)
            model.gate = gate
        seconds = {k: statistics.median(v) for k, v in times.items()}
        out[f"batch{batch}"] = {
            "forward_s": seconds["forward"], "gate_s": seconds["gate"],
            "measured_ratio": seconds["gate"] / seconds["forward"],
            "macs_forward": macs_forward, "macs_gate": macs_gate,
            "macs_ratio": macs_gate / macs_forward,
        }
    return out


def main() -> None:
    result: dict[str, Any]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64, help="backbone base width (64 = paper)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["hps", "sps", "lws"])
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--set", type=Path, default=None,
                        help="a synthetic set with sessions: also the untrimmed figures "
                             "(bench/gate_untrimmed.py)")
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[],
                        help="with --set: one task model per training seed, without a gate")
    parser.add_argument("--with-trimmed", type=int, default=8,
                        help="whole trimmed test videos per task in the test bag")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_gate"),
                        help="the test bag, gated checkpoints and evaluations (reused)")
    parser.add_argument("--fit-gate-options", default="",
                        help="more fit-gate options for every seed, e.g. '--context 0'")
    parser.add_argument("--no-cost", action="store_true",
                        help="untrimmed figures only; the cost figures are kept from --save")
    args = parser.parse_args()
    if args.no_cost:  # the cost figures of an earlier run (a loaded machine's timing)
        if args.save is None or not args.save.exists():
            raise SystemExit("--no-cost keeps the cost figures of --save FILE: give one")
        result = json.loads(args.save.read_text())
        result = {k: v for k, v in result.items() if k in COST_KEYS}
        result.update(untrimmed(args))
        report(result, args.save)
        return
    result = {"device": f"{cpu_model()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "width": args.width,
              "frames": args.frames, "size": args.size, "cost": {}}
    for method in args.methods:
        result["cost"][method] = gate_cost(method, args.width, args.frames, args.size,
                                           args.batches, args.repeats)
        print(method, {b: round(v["measured_ratio"], 6) for b, v in
                       result["cost"][method].items()}, flush=True)
    ratios = [v for m in result["cost"].values() for v in m.values()]
    result["gate_cost_over_forward"] = max(r["measured_ratio"] for r in ratios)
    result["gate_macs_over_forward"] = max(r["macs_ratio"] for r in ratios)
    result.update(untrimmed(args))
    report(result, args.save)


COST_KEYS = ("device", "torch", "width", "frames", "size", "cost", "gate_cost_over_forward",
             "gate_macs_over_forward")


def untrimmed(args: argparse.Namespace) -> dict[str, Any]:
    if args.set is None:
        return {}
    if not args.checkpoints:
        raise SystemExit("--set needs --checkpoints (one task model per training seed)")
    figures = untrimmed_figures(args.set, args.checkpoints, args.work, args.with_trimmed,
                                shlex.split(args.fit_gate_options))
    figures["load_average"] = os.getloadavg()
    return figures


if __name__ == "__main__":
    main()
