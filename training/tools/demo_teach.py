"""`make demo-teach`: teach the demo model a gesture it has never seen, from recorded bags.

The whole loop of docs/own-gestures.md, on synthetic recordings:

1. render new takes (another seed: new actors and rooms) of the demo's eight
   gestures plus `zigzag`, which the default set and so the demo model lack;
2. replay them as two bags, as a camera would have recorded them: the
   training takes and the held-out takes (`to-bag`), each with its labels CSV
   (the generator's intervals, what a user writes with `label-bag`);
3. fine-tune the demo checkpoint (`init:`) on the training bag's gestures
   (bag source, cut by the streaming core) plus the demo's own action videos,
   so the model keeps both tasks; the gesture head is extended by one row;
4. `evaluate_bag` on the held-out bag and print the new class's accuracy next
   to the old classes' and to what the demo model scored before.

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
STREAM = ["target_fps=6.25", "inference_stride=2"]  # the demo's: 25 fps / frame_step 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_teach", description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo"), help="make demo's folder")
    parser.add_argument("--takes", type=int, default=16, help="takes per gesture class")
    parser.add_argument("--iterations", type=int, default=300, help="fine-tuning iterations")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more fine-tuning overrides")
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
    set_yaml = write_set(teach, demo / "synthetic" / "set.yaml", [*gestures, NEW])
    before = held_out(checkpoint, teach, "before", gestures)
    tic = cpu_seconds()
    if training(["train", "--config", str(CPU_SMALL), "--out", str(teach / "model"),
                 "--overwrite", "--progress", "lines", f"set={set_yaml}",
                 f"init={checkpoint}", f"iterations={args.iterations}",
                 f"val_every={args.iterations}", f"save_every={args.iterations}",
                 "val_max_per_task=40", *args.train]) != 0:
        return 2
    tuned = cpu_seconds()
    after = held_out(teach / "model" / "best.safetensors", teach, "after", gestures)
    if before is None or after is None:
        return 2
    report(after, before, gestures, time.monotonic() - start)
    print(f"            CPU time (user+sys): {rendered:.0f} s rendering and replaying"
          f"{' (reused)' if reuse else ''}, {tuned - tic:.0f} s fine-tuning, "
          f"{cpu_seconds():.0f} s in all")
    return 0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (renderers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def write_set(teach: Path, demo_set: Path, classes: list[str]) -> Path:
    """The fine-tuning set: the demo's action videos, the training bag's gestures,
    the held-out bag as the test split of the gestures."""
    demo = yaml.safe_load(demo_set.read_text())
    paths = ("root", "annotations", "train_list", "test_list", "class_names")
    action = [{k: str((demo_set.parent / v).resolve()) if k in paths else v
               for k, v in source.items()} for source in demo["tasks"]["action"]]
    bags = [{"format": "bag", "bag": str(teach / f"{split}_bag"),
             "labels": str(teach / f"{split}_bag" / "labels.csv"), "split": split,
             "target_fps": 25.0, "classes": classes, "cache": str(teach / "cache")}
            for split in ("train", "test")]
    path = teach / "set.yaml"
    path.write_text(yaml.safe_dump({"name": "demo_teach", "class_merge": "none",
                                    "tasks": {"action": action, "gesture": bags}}))
    return path


def held_out(checkpoint: Path, teach: Path, name: str, gestures: list[str]
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
                         "--no-progress", "--threads", "2", "--set", *STREAM])
    if code != 0:
        return None
    return dict(json.loads((out / "metrics.json").read_text())["gesture"])


def report(after: dict[str, Any], before: dict[str, Any], old: list[str], seconds: float
           ) -> None:
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


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
