"""What limits gesture events on untrimmed streams (issue 24), measured per clip.

Run from the project root: `.venv/bin/python bench/gate_limits.py --set SET
--checkpoint CKPT [CKPT ...] --save bench/results/gate_limits.json` (several
checkpoints: training seeds of one recipe; each is measured alone under
`runs`, and `over_seeds` gives each gate variant's mean and spread).

Every video of the set (sessions, background and real-footage takes, trimmed
samples with their lead-in and lead-out) is cut into the clips the live
stream makes at the checkpoint's trained rate (a frame every `frame_step`, a
clip of `clip_length` sampled frames every `--stride` of them), and each clip
gets its true task by the untrimmed metrics' rule (a task when its motion
covers half of the clip, `none` when less than a quarter: the clips between
are left out of the per-clip figures) and what was shown (`shown.csv`). The
frozen model's pooled features and head probabilities are computed once;
then, without running the model again:

1. **Gates fitted on the train split's clips** (the fit-gate recipe: class
   balanced cross-entropy, full-batch Adam, 64 hidden units), scored per clip
   on the test split: with and without the sessions' motions as positives,
   and with the features of the previous `k` clips beside the current one
   (`context`: what a gate with memory could read). The distractor clips'
   `none` recall is also given by framing (`room`: sessions with gestures,
   `yard`: sessions with actions). **`in_sample`**: a gate of the same recipe
   fitted on the test clips themselves and scored on them: how much of the
   test clips such a gate can separate on the frozen features even when it
   has seen them (not a bound for every classifier: with few clips of a kind
   it can memorise them).
2. **Events** (the node's rule, `detect_events`, and the untrimmed metrics):
   settings chosen on the train sessions (each half scored by a gate fitted
   without it) as fit-gate chooses them, scored on the test videos; the best
   test figures over every candidate setting with at most
   `--max-false-per-min` false events (`test_best`: fit-gate's choice made on
   the test videos themselves, so how much a better choice of settings could
   add, not a result); and an **oracle gate** whose gesture probability
   is the clip's true overlap with a gesture: the ceiling the event rule and
   the gesture head allow.
3. **The gesture head** on stream clips: its accuracy on clips that lie
   wholly on a gesture and on clips that cover half of one.

The last line printed is JSON; `--save` writes it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from hostinfo import cpu_model, project_first, report

project_first()  # before `training` is imported: bench/training.py would shadow it

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mtl_perception.bag.labels import Interval  # noqa: E402
from mtl_perception.checkpoint import load_checkpoint  # noqa: E402
from mtl_perception.preprocess import preprocess_frame  # noqa: E402
from mtl_perception.stream import StreamConfig  # noqa: E402
from mtl_perception.stream.results import ClipResult, FrameHeader, TaskResult  # noqa: E402
from training.datasets.sets import build_task_split, load_set  # noqa: E402
from training.datasets.untrimmed import read_untrimmed  # noqa: E402
from training.datasets.video import VideoReader  # noqa: E402
from training.evaluation.cli import trained_frame_step  # noqa: E402
from training.methods.gate_fit import fit_gate  # noqa: E402
from training.methods.gate_tuning import Recorded, choose, score  # noqa: E402

TASKS = ("action", "gesture")
NONE = 2


@dataclasses.dataclass
class Video:
    path: Path
    split: str
    source: str  # session | background | trimmed
    intervals: list[Interval]
    shown: list[tuple[float, float, str]]


def videos_of(set_path: Path) -> list[Video]:
    config = load_set(set_path)
    out = []
    for split in ("train", "test"):
        for source in config.untrimmed:
            for v in read_untrimmed(source, split, background=False):
                out.append(Video(v.path, split, "session", [
                    Interval(i.start, i.end, i.task, i.label, 0) for i in v.intervals],
                    _shown(v.path)))
        for source in config.background:
            for v in read_untrimmed(source, split, background=True):
                out.append(Video(v.path, split, "background", [], _shown(v.path)))
        for task in TASKS:
            task_split = build_task_split(config, task, split)
            for s in task_split.samples:
                with VideoReader(s.path) as reader:
                    fps, frames = reader.fps, reader.num_frames
                end = frames if s.end is None else s.end
                out.append(Video(s.path, split, "trimmed", [Interval(
                    s.start / fps, end / fps, task, task_split.class_names[s.label], 0)], []))
    return out


def _shown(path: Path) -> list[tuple[float, float, str]]:
    file = path.with_suffix(".shown.csv")
    if not file.exists():
        return []
    with open(file, newline="") as handle:
        return [(float(a), float(b), k) for a, b, k in list(csv.reader(handle))[1:]]


def clips_of(model: Any, info: Any, video: Video, step: int, stride: int) -> list[dict[str, Any]]:
    """The stream's clips of one video: features, head probabilities, truth."""
    with VideoReader(video.path) as reader:
        fps = reader.fps
        indices = list(range(0, reader.num_frames, step))
        frames = [preprocess_frame(f, info.preprocess) for f in reader.read(indices)]
    length = info.preprocess.clip_length
    starts = list(range(0, len(frames) - length + 1, stride))
    rows = []
    for b in range(0, len(starts), 32):
        batch = torch.stack([torch.stack(frames[s:s + length], 1) for s in starts[b:b + 32]])
        with torch.no_grad():
            features = model.gate_features(batch)
            probs = [torch.softmax(head(features), 1) for head in model.heads]
        for j, s in enumerate(starts[b:b + 32]):
            first, last = indices[s] / fps, indices[s + length - 1] / fps
            cover = {t: max((i.overlap(first, last) for i in video.intervals if i.task == t),
                            default=0.0) / max(last - first, 1e-9) for t in TASKS}
            label = next((i.label for i in video.intervals if i.task == "gesture"
                          and i.overlap(first, last) >= 0.5 * (last - first)), "")
            task = next((k for k, t in enumerate(TASKS) if cover[t] >= 0.5), None)
            truth = task if task is not None else (NONE if max(cover.values()) < 0.25 else -1)
            middle = (first + last) / 2
            kind = next((k for a, e, k in video.shown if a <= middle < e), "")
            if video.source == "trimmed" and truth == NONE:
                kind = "lead"
            rows.append({"first": first, "last": last, "features": features[j].numpy(),
                         "action": probs[0][j].numpy(), "gesture": probs[1][j].numpy(),
                         "truth": truth, "gesture_cover": cover["gesture"], "label": label,
                         "kind": kind})
    return rows


def fit(x: np.ndarray, y: np.ndarray) -> Any:
    """fit-gate's own fit (training/methods/gate_fit.py, its defaults) on a feature matrix;
    the fitted gate's softmax as a function of features."""
    gate = fit_gate(torch.tensor(x, dtype=torch.float32), torch.tensor(y), len(TASKS))
    return lambda z: torch.softmax(gate(torch.tensor(z, dtype=torch.float32)),
                                   1).detach().numpy()


def with_context(rows: list[dict[str, Any]], owners: list[int], k: int) -> np.ndarray:
    """Each clip's features beside those of the `k` clips before it in its video."""
    x = np.stack([r["features"] for r in rows])
    parts = [x]
    for lag in range(1, k + 1):
        prior = np.array([i - lag if i - lag >= 0 and owners[i - lag] == owners[i] else i
                          for i in range(len(rows))])
        parts.append(x[prior])
    return np.concatenate(parts, 1)


def framing(video: Video) -> str:
    """`room` (a session with gestures), `yard` (with actions) or "" (anything else)."""
    tasks = {i.task for i in video.intervals}
    if video.source != "session" or len(tasks) != 1:
        return ""
    return "room" if tasks == {"gesture"} else "yard"


def per_clip(p: np.ndarray, rows: list[dict[str, Any]], mask: np.ndarray) -> dict[str, Any]:
    truth = np.array([r["truth"] for r in rows])
    kinds = np.array([r["kind"] for r in rows])
    framings = np.array([r["framing"] for r in rows])
    predicted = p.argmax(1)
    out: dict[str, Any] = {}
    for c, name in enumerate((*TASKS, "none")):
        sel = mask & (truth == c)
        out[f"recall_{name}"] = float((predicted[sel] == c).mean()) if sel.any() else None
        out[f"clips_{name}"] = int(sel.sum())
    out["none_by_kind"] = {
        str(k): {"recall": float((predicted[sel] == NONE).mean()), "clips": int(sel.sum())}
        for k in sorted(set(kinds[mask & (truth == NONE)]))
        if (sel := mask & (truth == NONE) & (kinds == k)).any()}
    out["distractor_by_framing"] = {
        f: {"recall": float((predicted[sel] == NONE).mean()), "clips": int(sel.sum())}
        for f in ("room", "yard")
        if (sel := mask & (truth == NONE) & (kinds == "distractor") & (framings == f)).any()}
    return out


def recorded(rows: list[dict[str, Any]], owners: list[int], videos: list[Video], gate: np.ndarray,
             which: set[int]) -> list[Recorded]:
    out = []
    for v in sorted(which):
        results = []
        for n, i in enumerate(i for i in range(len(rows)) if owners[i] == v):
            r = rows[i]
            stamp = round(r["last"] * 1e9)
            tasks = {t: TaskResult(t, r[t], r[t], ()) for t in TASKS}
            results.append(ClipResult("cam", n, round(r["first"] * 1e9), stamp,
                                      FrameHeader(stamp), tasks, 0.0, 0.0,
                                      gate=gate[i].astype(np.float64)))
        if results:
            out.append(Recorded(videos[v].path, results, videos[v].intervals,
                                results[-1].last_stamp_ns / 1e9))
    return out


def run(args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    loaded = load_checkpoint(checkpoint)
    model, info = loaded.model.eval(), loaded.info
    step = trained_frame_step(info)
    videos = videos_of(args.set)
    rows: list[dict[str, Any]] = []
    owners: list[int] = []
    began = time.process_time()
    for v, video in enumerate(videos):
        clips = clips_of(model, info, video, step, args.stride)
        for clip in clips:
            clip["framing"] = framing(video)
        rows += clips
        owners += [v] * len(clips)
    extract_s = time.process_time() - began
    truth = np.array([r["truth"] for r in rows])
    split = np.array([videos[o].split for o in owners])
    source = np.array([videos[o].source for o in owners])
    train, test = split == "train", split == "test"
    sessions = sorted({o for o in owners if videos[o].source == "session"
                       and videos[o].split == "train"})
    # fit-gate's halves (split_validation): pairs of sessions in turn
    half_of = [{o for i, o in enumerate(sessions) if (i // 2) % 2 == h} for h in (0, 1)]
    test_videos = {o for o in owners if videos[o].split == "test"}
    classes = info.classes_of("gesture")
    base = StreamConfig(target_fps=6.25, inference_stride=args.stride, event_source="gate",
                        max_gap_s=max(0.5, 2.0 * step / 25.0))
    owner = np.array(owners)

    def gate_variant(motions: bool, context: int) -> dict[str, Any]:
        x = with_context(rows, owners, context)
        usable = train & (truth >= 0)
        if not motions:
            usable &= ~((source == "session") & (truth < NONE))
        crossed = np.zeros((len(rows), 3))
        for h in (0, 1):  # each half of the train sessions scored by a gate fitted without it
            mask = usable & ~np.isin(owner, list(half_of[h]))
            crossed[np.isin(owner, list(half_of[h]))] = fit(x[mask], truth[mask])(
                x[np.isin(owner, list(half_of[h]))])
        gate = fit(x[usable], truth[usable])(x)
        validation = set().union(*half_of)
        gate[np.isin(owner, list(validation))] = crossed[np.isin(owner, list(validation))]
        settings, figures = choose(recorded(rows, owners, videos, gate, validation), classes,
                                   base, args.max_false_per_min)
        on_test = recorded(rows, owners, videos, gate, test_videos)
        events = score(on_test, classes, dataclasses.replace(base, **settings))
        return {"per_clip_test": per_clip(gate, rows, test & (truth >= 0)),
                "settings": settings, "validation": figures, "test_events": events,
                "test_best": dict(zip(("settings", "figures"), choose(
                    on_test, classes, base, args.max_false_per_min)))}

    variants = {name: gate_variant(*VARIANTS[name]) for name in args.variants}
    x, scored = with_context(rows, owners, 0), test & (truth >= 0)
    in_sample = per_clip(fit(x[scored], truth[scored])(x), rows, scored)
    cover = np.array([r["gesture_cover"] for r in rows])
    actions = np.array([max((i.overlap(r["first"], r["last"]) for i in videos[o].intervals
                             if i.task == "action"), default=0.0) / (r["last"] - r["first"])
                        for r, o in zip(rows, owners)])
    oracle = np.clip(np.stack([actions, cover, 1 - cover - actions], 1), 1e-3, 1)
    oracle /= oracle.sum(1, keepdims=True)
    oracle_settings: dict[str, Any] = {"event_smoothing": "none", "event_threshold": 0.5,
                       "event_hysteresis": 0.1, "event_min_s": 0.3,
                       "event_class_weights": "activity"}
    oracle_events = score(recorded(rows, owners, videos, oracle, test_videos), classes,
                          dataclasses.replace(base, **oracle_settings))
    head: dict[str, Any] = {}
    labels = np.array([r["label"] for r in rows])
    guessed = np.array([classes[int(np.argmax(r["gesture"]))] for r in rows])
    for name, low in (("whole_clip_on_gesture", 0.99), ("half_clip_on_gesture", 0.5)):
        sel = test & (cover >= low) & (labels != "")
        head[name] = {"accuracy": float((guessed[sel] == labels[sel]).mean()),
                      "clips": int(sel.sum())}
    return {
        "benchmark": "gate_limits", "checkpoint": str(checkpoint), "set": str(args.set),
        "cpu": cpu_model(), "threads": 1, "stride": args.stride, "frame_step": step,
        "clips": {"train": int(train.sum()), "test": int(test.sum())},
        "test_gestures": sum(1 for o in test_videos for i in videos[o].intervals
                             if i.task == "gesture"),
        "extract_cpu_s": round(extract_s, 1), "gates": variants, "in_sample": in_sample,
        "oracle_gate": {"settings": oracle_settings, "test_events": oracle_events},
        "gesture_head": head,
    }


# name -> (the sessions' motions as gate positives, previous clips' features read)
VARIANTS: dict[str, tuple[bool, int]] = {
    "trimmed_only_context0": (False, 0), "motions_context0": (True, 0),
    "motions_context2": (True, 2), "motions_context4": (True, 4)}
SUMMARISED = ("event_f1", "precision", "recall", "false_events_per_minute")


def over_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per gate variant: the test events' figures and the distractor clips' `none`
    recall as mean, population std, min, max and values over the runs."""
    def spread(values: list[float]) -> dict[str, Any]:
        a = np.array(values, dtype=np.float64)
        return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
                "max": float(a.max()), "values": [round(float(v), 4) for v in a]}
    out: dict[str, Any] = {}
    for name in runs[0]["gates"]:
        gates = [r["gates"][name] for r in runs]
        out[name] = {key: spread([g["test_events"][key] for g in gates]) for key in SUMMARISED}
        out[name]["none_recall_distractor"] = spread(
            [g["per_clip_test"]["none_by_kind"].get("distractor", {}).get("recall", float("nan"))
             for g in gates])
        out[name]["none_recall_distractor_room"] = spread(
            [g["per_clip_test"]["distractor_by_framing"].get("room", {}).get(
                "recall", float("nan")) for g in gates])
        out[name]["test_best_event_f1"] = spread([g["test_best"]["figures"]["event_f1"]
                                                  for g in gates])
    out["in_sample_none_recall_distractor_room"] = spread(
        [r["in_sample"]["distractor_by_framing"].get("room", {}).get("recall", float("nan"))
         for r in runs])
    out["oracle_gate_event_f1"] = spread([r["oracle_gate"]["test_events"]["event_f1"]
                                          for r in runs])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, nargs="+", required=True,
                        help="one or more checkpoints (training seeds of one recipe)")
    parser.add_argument("--stride", type=int, default=2, help="a clip every N sampled frames")
    parser.add_argument("--max-false-per-min", type=float, default=1.0)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="the gate variants to fit (each costs a search over the "
                             "decision grid on validation and on test)")
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = [run(args, checkpoint) for checkpoint in args.checkpoint]
    if len(runs) == 1:
        report(runs[0], args.save)
        return 0
    report({"benchmark": "gate_limits", "set": str(args.set), "cpu": cpu_model(), "threads": 1,
            "seeds": len(runs), "test_gestures_per_run": runs[0]["test_gestures"],
            "over_seeds": over_seeds(runs), "runs": runs}, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
