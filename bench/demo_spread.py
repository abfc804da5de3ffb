"""The spread of `make demo`'s printed figures across ATen's CPU kernels (issue 22).

Training is deterministic on one machine, but another CPU picks other kernels
(AVX-512 VNNI/BF16, AVX2, the portable default) whose sums round differently, and
the trained weights and so the demo's accuracies move by a few points. This runs
`make demo`'s steps (the Makefile's recipe, spelled out here: keep them in step)
once per `ATEN_CPU_CAPABILITY` on this machine, with the synthetic set and the bags
made once (they do not use ATen's kernels), and records the figures `make demo`
prints: each task's segment and clip accuracy on the trimmed test bag, and the
untrimmed bag's gesture-event figures.

    python bench/demo_spread.py --work /tmp/demo_spread \\
        --save bench/results/demo_spread.json [--capabilities default avx2 avx512]

Capabilities the CPU lacks are refused by ATen (it falls back silently), so the
script records `torch.backends.cpu.get_cpu_capability()` as each run saw it.
Takes one demo training per capability (minutes each on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hostinfo import cpu_model, report

ROOT = Path(__file__).resolve().parents[1]
STREAM: list[str] = []  # the Makefile's DEMO_STREAM: the checkpoint's stored rate and stride
TRIMMED = ["--with-trimmed", "4"]  # DEMO_TRIMMED: whole trimmed test videos in the session bag


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])}... failed ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")


def _capability(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu."
                           "get_cpu_capability())"], env=env, capture_output=True, text=True)
    return done.stdout.strip()


def _figures(trimmed: Path, untrimmed: Path) -> dict[str, Any]:
    metrics = json.loads((trimmed / "metrics.json").read_text())
    out: dict[str, Any] = {task: {"segment_accuracy": metrics[task]["segment_accuracy"],
                                  "clip_accuracy": metrics[task]["clip_accuracy"]}
                           for task in ("action", "gesture") if task in metrics}
    events = json.loads((untrimmed / "metrics.json").read_text()).get("gesture_events")
    if events:
        out["events"] = {k: events.get(k) for k in ("event_f1", "levenshtein_accuracy",
                                                    "false_events_per_minute", "events")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (GBs)")
    parser.add_argument("--capabilities", nargs="+", default=["default", "avx2", "avx512"])
    parser.add_argument("--train", nargs="*", default=[], help="DEMO_TRAIN overrides")
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work.resolve()
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    set_yaml = work / "synthetic" / "set.yaml"
    if not set_yaml.is_file():
        _run(["-m", "training", "synth", "--out", str(work / "synthetic")], base)
    for name, extra in (("bag", []), ("untrimmed_bag", ["--untrimmed", "--background", *TRIMMED])):
        if not (work / name).is_dir():
            _run(["-m", "training", "to-bag", "--set", str(set_yaml), "--split", "test",
                  *extra, "--out", str(work / name)], base)
    runs = []
    for capability in args.capabilities:
        env = {**base, "ATEN_CPU_CAPABILITY": capability}
        model = work / f"model_{capability}"
        start = time.monotonic()
        _run(["-m", "training", "train", "--config", "config/train/cpu_small.yaml", "--out",
              str(model), "--overwrite", "--progress", "lines", f"set={set_yaml}",
              *args.train], env)
        best = model / "best.safetensors"
        _run(["-m", "training", "fit-gate", "--checkpoint", str(best), "--set", str(set_yaml),
              "--out", str(best)], env)
        evaluations = {}
        for name, extra in (("bag", []), ("untrimmed_bag", ["--unlabelled", "none"])):
            out = work / f"eval_{name}_{capability}"
            _run(["-m", "mtl_perception.bag.evaluate", "--bag", str(work / name),
                  "--checkpoint", str(best), "--labels", str(work / name / "labels.csv"),
                  "--out", str(out), "--overwrite", "--no-progress", *extra, "--set", *STREAM], env)
            evaluations[name] = out
        runs.append({"asked": capability, "used": _capability(env),
                     "seconds": round(time.monotonic() - start),
                     **_figures(evaluations["bag"], evaluations["untrimmed_bag"])})
        print(json.dumps(runs[-1]), flush=True)
    spread = {}
    for task in ("action", "gesture"):
        values = [run[task]["segment_accuracy"] for run in runs if task in run]
        if values:
            spread[task] = {"segment_accuracy_min": min(values),
                            "segment_accuracy_max": max(values)}
    report({"benchmark": "demo_spread", "cpu": cpu_model(), "cpus": os.cpu_count(),
            "load_1min": os.getloadavg()[0], "train_overrides": args.train, "runs": runs,
            "spread": spread}, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
