"""`make demo-teach`: teach the demo model a gesture it has never seen, from recorded bags.

The whole loop of docs/own-gestures.md, on synthetic recordings:

1. render new takes (another seed: new actors and rooms) of the demo's eight
   gestures plus `zigzag`, which the default set and so the demo model lack;
2. replay them as two bags, as a camera would have recorded them: the
   training takes and the held-out takes (`to-bag`), each with its labels CSV
   (the generator's intervals, what a user writes with `label-bag`);
3. fine-tune the demo checkpoint (`init:`) on the training bag's gestures
   (bag source at the recording's 25 fps, cut by the streaming core), with
   `new_classes: [gesture/zigzag]` and `replay: init` (a sample of the demo's
   own training set, so both tasks and the old gestures keep being seen),
   600 iterations; `class_sampling` auto gives zigzag (10 takes) the same
   share of the gesture slots as each old class (22 samples);
   every task and class of the demo model is kept, the gesture head gains a row;
4. `fit-gate` on the fine-tuned checkpoint with the same set (the bags'
   unlabelled time is the gate's `none`): a gated, deployable checkpoint;
5. `evaluate_bag` on the held-out bag (at the rate and stride the checkpoint
   records, 25 fps / the trained frame step, no setting needed) and print the new class's
   accuracy next to the old classes' and to what the demo model scored before;
   `--result FILE` writes the figures as JSON (bench/results/teach.json).

The held-out bag's takes are rendered apart from the training takes (the
test split of another seed's render: other actors, rooms and performances).

Run `make demo` first (it writes the demo checkpoint and its action videos).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mtl_perception.bag.evaluate import main as evaluate_bag
from mtl_perception.checkpoint import read_checkpoint_info
from training.__main__ import main as training
from training.synthetic.motions import EXTRA_GESTURE_CLASSES

NEW = EXTRA_GESTURE_CLASSES[0]
CPU_SMALL = Path(__file__).resolve().parents[2] / "config" / "train" / "cpu_small.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_teach", description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo"), help="make demo's folder")
    parser.add_argument("--takes", type=int, default=16, help="takes per gesture class")
    parser.add_argument("--iterations", type=int, default=600, help="fine-tuning iterations")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more fine-tuning overrides")
    parser.add_argument("--replay-per-class", type=int, default=12,
                        help="samples per class replayed from the demo's training set")
    parser.add_argument("--threads", type=int, default=2, help="evaluate_bag's torch threads")
    parser.add_argument("--result", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--reuse-model", action="store_true",
                        help="keep an earlier run's fine-tuned model (skip fine-tuning)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the bags of an earlier run (skip rendering and replay)")
    args = parser.parse_args(argv)
    demo = args.demo.resolve()
    checkpoint = demo / "model" / "best.safetensors"
    if not checkpoint.is_file() or not (demo / "synthetic" / "set.yaml").is_file():
        print(f"demo_teach: {checkpoint} or {demo}/synthetic missing: run `make demo` first",
              file=sys.stderr)
        return 2
    teach, start = demo / "teach", time.monotonic()
    gestures = list(read_checkpoint_info(checkpoint).classes_of("gesture"))
    steps = [
        ["synth", "--out", str(teach / "synthetic"), "--seed", "1", "--gestures",
         ",".join([*gestures, NEW]), "--gestures-per-class", str(args.takes),
         "--actions", "Walk", "--actions-per-class", "4", "--workers", "2"],
        *(["to-bag", "--set", str(teach / "synthetic" / "set.yaml"), "--split", split,
           "--tasks", "gesture", "--out", str(teach / f"{split}_bag"), "--overwrite"]
          for split in ("train", "test")),
    ]
    reuse = args.reuse and all((teach / f"{s}_bag" / "labels.csv").is_file()
                               for s in ("train", "test"))
    for step in [] if reuse else steps:
        if training(step) != 0:
            return 2
    rendered = cpu_seconds()
    set_yaml = write_set(teach, [*gestures, NEW])
    before = held_out(checkpoint, teach, "before", gestures, args.threads)
    tic = cpu_seconds()
    tuned_ckpt, gated = teach / "model" / "best.safetensors", teach / "model" / "gated.safetensors"
    if args.reuse_model and tuned_ckpt.is_file():
        pass
    elif training(["train", "--config", str(CPU_SMALL), "--out", str(teach / "model"),
                 "--overwrite", "--progress", "lines", f"set={set_yaml}",
                 f"init={checkpoint}", f"new_classes=[gesture/{NEW}]", "replay=init",
                 f"replay_per_class={args.replay_per_class}", f"iterations={args.iterations}",
                 f"val_every={args.iterations}", f"save_every={args.iterations}",
                 "val_max_per_task=40", *args.train]) != 0:
        return 2
    tuned = cpu_seconds()
    if training(["fit-gate", "--checkpoint", str(tuned_ckpt), "--set", str(set_yaml),
                 str(demo / "synthetic" / "set.yaml"), "--out", str(gated),
                 "--overwrite"]) != 0:  # its own file of an earlier run
        return 2
    after = held_out(gated, teach, "after", gestures, args.threads)
    if before is None or after is None:
        return 2
    figures = report(after, before, gestures, time.monotonic() - start)
    figures |= kept_everything(checkpoint, gated)
    print(f"            CPU time (user+sys): {rendered:.0f} s rendering and replaying"
          f"{' (reused)' if reuse else ''}, {tuned - tic:.0f} s fine-tuning, "
          f"{cpu_seconds():.0f} s in all")
    if args.result is not None:
        figures |= {"iterations": args.iterations, "replay_per_class": args.replay_per_class,
                    "takes_per_class": args.takes, "cpu_s": round(cpu_seconds(), 1),
                    "wall_s": round(time.monotonic() - start, 1), "checkpoint": str(gated)}
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def kept_everything(before: Path, after: Path) -> dict[str, Any]:
    """Every task and class of the starting checkpoint in the fine-tuned one?"""
    old, new = read_checkpoint_info(before), read_checkpoint_info(after)
    lost = [f"{t}/{c}" for t in old.model.task_names for c in old.classes_of(t)
            if t not in new.model.task_names or c not in new.classes_of(t)]
    return {"lost_classes": lost, "gate": bool(new.model.gate),
            "stream": new.provenance.get("stream")}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (renderers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def write_set(teach: Path, classes: list[str]) -> Path:
    """The fine-tuning set, as the docs write it: the training bag's gestures, the
    held-out bag as their test split (the demo's own videos come from `replay`)."""
    bags = [{"format": "bag", "bag": str(teach / f"{split}_bag"),
             "labels": str(teach / f"{split}_bag" / "labels.csv"), "split": split,
             "target_fps": 25.0, "classes": classes, "cache": str(teach / "cache")}
            for split in ("train", "test")]
    path = teach / "set.yaml"
    path.write_text(yaml.safe_dump({"name": "demo_teach", "class_merge": "none",
                                    "tasks": {"gesture": bags}}))
    return path


def held_out(checkpoint: Path, teach: Path, name: str, gestures: list[str], threads: int
             ) -> dict[str, Any] | None:
    """evaluate_bag's gesture metrics on the held-out bag (the demo model: old classes only)."""
    labels = teach / "test_bag" / "labels.csv"
    if name == "before":  # the demo model cannot name the new class: score its own classes
        rows = labels.read_text().splitlines()
        labels = teach / "labels_old_classes.csv"
        labels.write_text("\n".join(r for r in rows if not r.endswith(f",{NEW}")) + "\n")
    out = teach / f"evaluation_{name}"
    code = evaluate_bag(["--bag", str(teach / "test_bag"), "--checkpoint", str(checkpoint),
                         "--labels", str(labels), "--out", str(out), "--overwrite",
                         "--no-progress", "--threads", str(threads)])  # rate: the checkpoint's
    if code != 0:
        return None
    return dict(json.loads((out / "metrics.json").read_text())["gesture"])


def report(after: dict[str, Any], before: dict[str, Any], old: list[str], seconds: float
           ) -> dict[str, Any]:
    classes = after["per_class"]
    new = classes[NEW]["recall"]
    old_after = _mean([classes[c]["recall"] for c in old])
    old_before = _mean([before["per_class"][c]["recall"] for c in old])
    chance = 1 / (len(old) + 1)
    print(f"demo-teach: new gesture {NEW!r} on held-out takes: {_pct(new)} of "
          f"{classes[NEW]['support']} segments (chance {_pct(chance)}; the demo model had no "
          f"such class)\n            old gestures: {_pct(old_after)} mean per class after, "
          f"{_pct(old_before)} before; all gestures: segment accuracy "
          f"{_pct(after['segment_accuracy'])}\n            {seconds:.0f} s wall clock from "
          "start to this line")
    # The starting model on every held-out segment: it cannot name the new class, so
    # those segments count as misses.
    correct = sum((before["per_class"][c]["recall"] or 0) * before["per_class"][c]["support"]
                  for c in old)
    total = sum(classes[c]["support"] for c in [*old, NEW])
    start_all = correct / total if total else None
    print(f"            held-out segment accuracy, all gestures: {_pct(start_all)} before "
          f"(the new class counted as missed), {_pct(after['segment_accuracy'])} after")
    return {
        "heldout_gain_points": _points(after["segment_accuracy"], start_all),
        "old_class_change_points": _points(old_after, old_before),
        "heldout_segments": total, "new_class_segments": classes[NEW]["support"],
        "heldout_accuracy_before": start_all, "heldout_accuracy_after": after["segment_accuracy"],
        "old_class_mean_before": old_before, "old_class_mean_after": old_after,
        "new_class_recall": new,
    }


def _points(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else round(100 * (after - before), 2)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
