"""The task gate's cost against one forward, and (issue 17b) its figures on untrimmed streams.

Run from the project root: `.venv/bin/python bench/gate.py [--width N] [--save FILE]`
(cost), `... --demo DEMO --no-cost --save bench/results/gate.json` (untrimmed figures
on a `make demo DEMO=DEMO` output, cost figures kept).
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

Untrimmed figures (`--demo DIR`, a `make demo` output: its gated
`model/best.safetensors` and `synthetic/set.yaml`): the set's untrimmed
sessions and background videos are replayed as bags (`to-bag --untrimmed
--background`), the held-out test split and, for validation, the train split
(the task heads never saw these sessions: they train on trimmed clips;
`fit-gate` did fit the gate on their `none` stretches, which favours the
gate there). Both bags run once through `evaluate_bag`'s
pipeline (`--unlabelled none`); the gesture events are then re-derived from
the same clip results with `detect_events` under
`dataclasses.replace(config, event_source=..., event_threshold=...)`: same
model, same clips, same event rule, only the activity differs (the gate's
gesture probability, or the gesture head's maximum softmax probability).
Each source's `event_threshold` is the one of `--thresholds` with the best
Levenshtein accuracy on the validation bag (ties: the higher threshold), the
same procedure for both; `levenshtein_gate`, `levenshtein_msp` etc. are
their figures on the test bag. `*_gate_default` are the gate's at the
stream's default `event_threshold` (what the node runs untuned), with
`target_met_default`.
`levenshtein_msp_best_on_test` is the baseline at its best threshold on the
test bag itself (an upper bound no tuning can beat). Targets (issue 17):
`levenshtein_gate >= levenshtein_msp + 0.10`, or false events per minute at
most half the baseline's at equal Levenshtein accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from hostinfo import cpu_model, report
from torch import nn

from mtl_perception.bag.evaluate import build_parser, evaluate
from mtl_perception.bag.run import Evaluation
from mtl_perception.models import ModelConfig, MultiTaskModel, build_model
from mtl_perception.models.config import Method
from mtl_perception.stream.config import EventSource

# the demo's stream settings (Makefile DEMO_STREAM): 25 fps / frame step 4
DEMO_STREAM = ["target_fps=6.25", "inference_stride=2"]
THRESHOLDS = [round(0.05 * i, 2) for i in range(3, 20)]  # 0.15 .. 0.95


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


def session_bag(python: str, set_path: Path, split: str, work: Path) -> Path:
    """The split's untrimmed sessions and background videos as a bag (labels.csv inside)."""
    out = work / f"{split}_bag"
    if (out / "labels.csv").exists():  # --work: made by an earlier run
        return out
    subprocess.run([python, "-m", "training", "to-bag", "--set", str(set_path), "--split", split,
                    "--untrimmed", "--background", "--out", str(out), "--overwrite"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def run_bag(bag: Path, checkpoint: Path, out: Path, stream: list[str]) -> Evaluation:
    """evaluate_bag --unlabelled none on the bag (its clip results are what we re-score)."""
    args = build_parser().parse_args([
        "--bag", str(bag), "--checkpoint", str(checkpoint), "--labels", str(bag / "labels.csv"),
        "--out", str(out), "--no-progress", "--overwrite", "--unlabelled", "none",
        "--threads", "1", "--set", *stream, "event_source=gate"])
    return evaluate(args)


def events_with(evaluation: Evaluation, source: EventSource, threshold: float) -> dict[str, Any]:
    """`gesture_events` of the same clip results under another activity source/threshold."""
    config = dataclasses.replace(evaluation.config, event_source=source,
                                 event_threshold=threshold)
    again = dataclasses.replace(evaluation, config=config, warnings=[], metrics={})
    events: dict[str, Any] = again.score(evaluation.intervals, "none")["gesture_events"]
    return events


def _brief(events: dict[str, Any], threshold: float) -> dict[str, Any]:
    return {"threshold": threshold, "levenshtein": events["levenshtein_accuracy"],
            "false_events_per_min": events["false_events_per_minute"],
            "events": events["events"], "missed": events["missed"],
            "detection_delay_p50_s": events["detection_delay_s"]["p50"]}


def untrimmed_figures(demo: Path | None, thresholds: list[float],
                      keep: Path | None = None) -> dict[str, Any]:
    """Held-out synthetic sessions, the gate against the max-softmax baseline."""
    if demo is None:
        return {}
    checkpoint, set_path = demo / "model" / "best.safetensors", demo / "synthetic" / "set.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        runs = {split: run_bag(session_bag(sys.executable, set_path, split, work), checkpoint,
                               work / f"{split}_eval", DEMO_STREAM)
                for split in ("train", "test")}
    if runs["test"].results[0].gate is None:
        raise SystemExit(f"{checkpoint}: the model has no task gate")
    default = runs["test"].config.event_threshold
    sources: tuple[EventSource, ...] = ("gate", "max_softmax")
    sweep = {split: {source: [_brief(events_with(run, source, t), t) for t in thresholds]
                     for source in sources}
             for split, run in runs.items()}

    def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return max(rows, key=lambda r: (r["levenshtein"], r["threshold"]))

    tuned = best(sweep["train"]["max_softmax"])["threshold"]
    gate_tuned = best(sweep["train"]["gate"])["threshold"]
    msp = _brief(events_with(runs["test"], "max_softmax", tuned), tuned)
    gate = _brief(events_with(runs["test"], "gate", gate_tuned), gate_tuned)
    gate_default = _brief(events_with(runs["test"], "gate", default), default)
    test_events = events_with(runs["test"], "gate", default)
    figures: dict[str, Any] = {
        "levenshtein_gate": gate["levenshtein"],
        "levenshtein_msp": msp["levenshtein"],
        "false_events_per_min_gate": gate["false_events_per_min"],
        "false_events_per_min_msp": msp["false_events_per_min"],
        "detection_delay_p50_s": gate["detection_delay_p50_s"],
        "detection_delay_p50_s_msp": msp["detection_delay_p50_s"],
        "msp_threshold_tuned": tuned,
        "gate_threshold_tuned": gate_tuned,
        "levenshtein_gate_default": gate_default["levenshtein"],
        "false_events_per_min_gate_default": gate_default["false_events_per_min"],
        "gate_threshold_default": default,
        "levenshtein_msp_best_on_test": best(sweep["test"]["max_softmax"])["levenshtein"],
        "true_gestures_test": test_events["true_gestures"],
        "true_gestures_validation": events_with(runs["train"], "gate", default)["true_gestures"],
        "none_minutes_test": test_events["none_minutes"],
        "gate_events": gate, "gate_default_events": gate_default, "msp_events": msp,
        "stream": DEMO_STREAM, "checkpoint": str(checkpoint), "sweep": sweep,
    }
    figures["target_met"] = _met(gate, msp)
    figures["target_met_default"] = _met(gate_default, msp)
    return figures


def _met(gate: dict[str, Any], msp: dict[str, Any]) -> bool:
    """Levenshtein >= baseline + 10 points, or <= half its false events at no lower one."""
    lev_gate, lev_msp = gate["levenshtein"], msp["levenshtein"]
    fe_gate, fe_msp = gate["false_events_per_min"], msp["false_events_per_min"]
    return bool(lev_gate is not None and lev_msp is not None
                and (lev_gate >= lev_msp + 0.10
                     or (lev_gate >= lev_msp and fe_gate is not None and fe_msp is not None
                         and fe_gate <= fe_msp / 2)))


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
    parser.add_argument("--demo", type=Path, default=None,
                        help="a `make demo` output folder: also the untrimmed figures")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS,
                        help="event_threshold values the baseline is tuned over")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the session bags here and reuse them on the next run")
    parser.add_argument("--no-cost", action="store_true",
                        help="untrimmed figures only; the cost figures are kept from --save")
    args = parser.parse_args()
    if args.no_cost:  # the cost figures of an earlier run (a loaded machine's timing)
        if args.save is None or not args.save.exists():
            raise SystemExit("--no-cost keeps the cost figures of --save FILE: give one")
        result = json.loads(args.save.read_text())
        result.update(untrimmed_figures(args.demo, args.thresholds, args.work))
        args.save.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))
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
    result.update(untrimmed_figures(args.demo, args.thresholds, args.work))
    report(result, args.save)


if __name__ == "__main__":
    main()
