"""`python -m training fit-gate --checkpoint FILE --set SET.yaml [--out FILE]`: add a task gate.

Fits a task gate (`action | gesture | none`, mtl_perception/models/gate.py) to
an existing checkpoint without touching its weights: the frozen model's gate
features are extracted once from the set's training split (the task samples,
labelled by their task, and the `none` stretches of its `untrimmed:` and
`background:` folders and around trimmed segments), a gate is fitted on them
(training/methods/gate_fit.py), and a new checkpoint is written with the same
weights, the gate, `gate: true` in its model config and the fit's figures in
its provenance (`gate_fit`). Its task scores are bitwise those of the input.
The test split, when it has `none` stretches too, is scored for the report.
Recorded bags (`format: bag` sources) serve too: their time that no labels
row covers is `none`. `--set` takes several sets, so a fine-tuned model's
gate can learn from the bags of its fine-tuning set and from its original
set at once: each task's samples come from the first set that has the
task, `none` from all of them. Clips are sampled as the checkpoint's
training sampled them (`frame_step`, `temporal_sampling`).

With sessions in the train split (two pairs at least) it also chooses the
gesture events' settings and stores them in the checkpoint (`stream_defaults`):
the gate is fitted twice more, each time without one half of the sessions'
`none` clips, and each half is streamed through the gate that did not see it
(training/methods/gate_tuning.py); the gate written is fitted on everything.
`--no-tune` stores none. Every refusal is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_perception.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from mtl_perception.exits import float_in, int_in
from mtl_perception.models import build_model
from mtl_perception.models.config import MAX_GATE_CONTEXT
from mtl_perception.models.gate import TaskGate, gate_classes
from mtl_perception.names import threads_problem
from mtl_perception.outputs import OutputError, check_out_file
from mtl_perception.settings import SettingsError
from mtl_perception.stream.decisions import PROVENANCE_KEY
from mtl_perception.stream.events import GESTURE_TASK as GESTURE
from training.datasets.bag_source import none_of_bags
from training.datasets.clips import clip_span
from training.datasets.listfile import DatasetError
from training.datasets.none_clips import none_samples
from training.datasets.sample import UNLABELLED, VideoSample
from training.datasets.sets import SetConfig, build_task_split, load_set, task_owner
from training.datasets.untrimmed import (
    UntrimmedVideo,
    check_classes,
    none_from_untrimmed,
    read_untrimmed,
    tasks_from_untrimmed,
)
from training.datasets.video import VideoReadError
from training.evaluation.cli import (
    EvaluateUsageError,
    trained_frame_step,
    trained_temporal_sampling,
)
from training.evaluation.scoring import subset
from training.methods.gate_composed import plan_excerpts, record_composed
from training.methods.gate_fit import (
    GateFitConfig,
    extract_gate_features,
    fit_gate,
    gate_confusion,
)
from training.methods.gate_tuning import (
    Recorded,
    choose,
    record,
    split_validation,
    stream_defaults,
    stream_for,
)
from training.tools.fit_gate_windows import check_context, fit_on_windows

LOG = logging.getLogger(__name__)
# One line and exit 2 wherever in the run they are raised (training/__main__.py).
ERRORS = (CheckpointError, SettingsError, DatasetError, EvaluateUsageError, OutputError,
          VideoReadError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = GateFitConfig()
    parser.add_argument("--checkpoint", type=Path, required=True, help="a .safetensors checkpoint")
    parser.add_argument("--set", type=Path, required=True, nargs="+",
                        help="set config(s) with the checkpoint's tasks and none stretches "
                             "(untrimmed:/background: folders, bags' unlabelled time)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the new checkpoint (default: CHECKPOINT_gate.safetensors)")
    parser.add_argument("--clips-per-video", type=int_in(1, 64), default=4,
                        help="evenly spaced clips per sample and none stretch")
    parser.add_argument("--max-videos", type=int_in(1, 10**6), default=None,
                        help="at most this many samples per task and of none (spread out)")
    parser.add_argument("--none-margin-s", type=float, default=0.3,
                        help="none clips keep this far from labelled intervals")
    parser.add_argument("--no-around-segments", action="store_true",
                        help="no none clips from the frames around trimmed segments")
    parser.add_argument("--lead-overlap", type=float, default=0.4,
                        help="none clips of a trimmed video's lead-in/out may reach this share "
                             "of a clip into the segment (0: keep --none-margin-s away). With "
                             "--context: a stream clip less than this share on every motion is "
                             "none, half or more is the motion's task, between is left out "
                             "(0: no clip left out)")
    parser.add_argument("--none-piece-clips", type=float, default=2.0,
                        help="none stretches are cut into pieces of this many clip spans, each "
                             "giving --clips-per-video clips (0: one piece per stretch)")
    parser.add_argument("--session-reach", type=float, default=0.25,
                        help="the sessions' labelled motions teach the gate their task too, "
                             "with clips reaching this share of a clip span past their ends "
                             "(-1: sessions give none clips only, as before issue 24's round 2)")
    parser.add_argument("--context", type=int_in(0, MAX_GATE_CONTEXT), default=0,
                        help="previous clips of the stream the gate reads too (default 0: "
                             "each clip alone; docs/gate.md has what 4 measured). With memory "
                             "the gate learns from every clip of every video file as the "
                             "stream cuts them (--inference-stride), so --clips-per-video, "
                             "--none-piece-clips, --session-reach and --none-margin-s do not "
                             "apply")
    parser.add_argument("--hidden", type=int, default=None,
                        help=f"gate hidden units (0: linear; default {d.hidden} without "
                             "memory, 0 with it: docs/gate.md)")
    parser.add_argument("--steps", type=int_in(1, 10**7), default=d.steps,
                        help="full-batch Adam steps")
    parser.add_argument("--lr", type=float_in(1e-12, 1e3), default=d.lr,
                        help="Adam learning rate")
    parser.add_argument("--weight-decay", type=float_in(0.0, 1e3), default=d.weight_decay,
                        help="Adam weight decay of the gate's weights")
    parser.add_argument("--seed", type=int_in(-(2**63), 2**63 - 1), default=d.seed,
                        help="seed of the gate's initialisation and of the tuning's "
                             "composed excerpts")
    parser.add_argument("--batch-size", type=int_in(1, 1024), default=16,
                        help="clips per forward")
    parser.add_argument("--device", default="cpu", help="torch device for feature extraction")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (0: torch's default, all cores). 1 by "
                             "default: the tuning step scores the stream one clip at a "
                             "time, which a second thread barely speeds up, and on cores "
                             "shared with other work 2 threads cost 12x the CPU time "
                             "(docs/gate.md)")
    parser.add_argument("--no-tune", action="store_true",
                        help="fit on every session and store no event settings (before issue 24)")
    parser.add_argument("--no-composed", action="store_true",
                        help="tuning: score the validation sessions only, not also a stream "
                             "joined from their motions' excerpts as a recording composed "
                             "from short videos is (training/methods/gate_composed.py)")
    parser.add_argument("--max-false-per-min", type=float_in(0.0, 1e6), default=1.0,
                        help="tuning: the most false events per minute of none allowed")
    parser.add_argument("--inference-stride", type=int_in(1, 1000), default=2,
                        help="a clip every this many sampled frames, as the stream will cut "
                             "them: for tuning the event settings, and (--context) for the "
                             "gate's windows; run the node at the same inference_stride")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (never --checkpoint itself "
                             "unless --out names it)")


def gate_items(sets: list[SetConfig], info: CheckpointInfo, split: str, margin_s: float,
               frame_step: int, around_segments: bool, max_videos: int | None,
               held_out: frozenset[Path] = frozenset(), lead_overlap: float = 0.0,
               piece_clips: float = 0.0) -> list[tuple[VideoSample, int]]:
    """(sample, gate label) pairs of one split: each task's samples (from the first set
    that has the task), then the none ones (from every set; none from the `held_out`
    videos: they are for choosing the event settings)."""
    tasks = info.model.task_names
    owner = {t: task_owner(sets, t) for t in tasks}
    splits = {t: build_task_split(owner[t], t, split) for t in tasks}
    items: list[tuple[VideoSample, int]] = []
    for t, task in enumerate(tasks):
        labelled = [s for s in splits[task].samples if s.label != UNLABELLED]
        items += [(s, t) for s in subset(labelled, max_videos)]
    span = clip_span(info.preprocess.clip_length, frame_step)
    classes = ({t: info.classes_of(t) for t in tasks}, "the checkpoint's")
    nones: list[VideoSample] = []
    for set_config in sets:
        # bag samples have no frames around them to read: their none is the unlabelled time
        mine = [dataclasses.replace(splits[t], samples=[s for s in splits[t].samples
                                                        if s.bag is None])
                for t in tasks if owner[t] is set_config]
        nones += [s for s in none_samples(set_config, split, mine, margin_s, span,
                                          around_segments, lead_overlap,
                                          round(piece_clips * span), classes)
                  if s.path not in held_out]
        nones += _bag_nones(set_config, split, margin_s, frame_step, info)
    items += [(s, len(tasks)) for s in subset(nones, max_videos)]
    return items


def session_items(videos: list[UntrimmedVideo], info: CheckpointInfo, span: int,
                  args: argparse.Namespace, nones: bool = True) -> list[tuple[VideoSample, int]]:
    """(sample, gate label) pairs of sessions: their labelled motions by task, with the
    clips that begin or end on them (`--session-reach`), and (`nones`) their none stretches.
    The motions matter: a stream's clips straddle a motion's edges, which clips of the
    trimmed samples never do."""
    items = tasks_from_untrimmed(videos, info.model.task_names, span, args.session_reach) \
        if args.session_reach >= 0 else []
    if nones:
        items += [(s, info.model.num_tasks) for s in none_from_untrimmed(
            videos, args.none_margin_s, span, round(args.none_piece_clips * span))]
    return items


def _bag_nones(set_config: SetConfig, split: str, margin_s: float, frame_step: int,
               info: CheckpointInfo) -> list[VideoSample]:
    bags = [s.settings for sources in set_config.tasks.values() for s in sources
            if s.format == "bag"]
    return none_of_bags(bags, split, margin_s, (info.preprocess.clip_length - 1) * frame_step)


def check_set_classes(info: CheckpointInfo, sets: list[SetConfig], paths: list[Path]) -> None:
    """Each task's classes in its set must be classes of the checkpoint (a subset will do:
    the gate learns tasks, not classes)."""
    for task in info.model.task_names:
        n = next(i for i, s in enumerate(sets) if task in s.tasks)
        names = build_task_split(sets[n], task, "train").class_names
        unknown = [c for c in names if c not in info.classes_of(task)]
        if unknown:
            raise EvaluateUsageError(f"set {paths[n]}: task {task!r} has class(es) {unknown} "
                                     f"that the checkpoint lacks")


def run(args: argparse.Namespace) -> int:
    try:
        if (problem := threads_problem(args.threads, "--threads")) is not None:
            raise EvaluateUsageError(problem)
        if args.threads:
            torch.set_num_threads(args.threads)
        hidden = args.hidden
        fit = GateFitConfig(steps=args.steps, lr=args.lr,
                            weight_decay=args.weight_decay, seed=args.seed)
        if args.clips_per_video < 1 or args.none_margin_s < 0:
            raise EvaluateUsageError("--clips-per-video must be >= 1 and --none-margin-s >= 0")
        if not 0 <= args.none_piece_clips <= 1000:
            raise EvaluateUsageError(f"--none-piece-clips must be in [0, 1000], got "
                                     f"{args.none_piece_clips}")
        if not (args.session_reach == -1 or 0 <= args.session_reach < 0.5):
            raise EvaluateUsageError(f"--session-reach must be -1 or in [0, 0.5), got "
                                     f"{args.session_reach}")
        if not 0 <= args.lead_overlap < 0.5:
            raise EvaluateUsageError(f"--lead-overlap must be in [0, 0.5), got "
                                     f"{args.lead_overlap}")
        info = read_checkpoint_info(args.checkpoint)
        if info.model.method == "stl":
            raise EvaluateUsageError(f"{args.checkpoint}: an STL model has no task gate")
        out = args.out or args.checkpoint.with_name(args.checkpoint.stem + "_gate.safetensors")
        # --out equal to --checkpoint is the documented in-place update (make demo): the
        # checkpoint is read whole before it is replaced, atomically. Anything else that
        # exists needs --overwrite; the sets' files and folders are never written into.
        replace = args.overwrite or out.resolve() == args.checkpoint.resolve()
        check_out_file(out, replace, list(args.set))
        sets = [load_set(path) for path in args.set]
        check_out_file(out, replace, [p for s in sets for p in s.inputs()],
                       kind="checkpoint")
        missing = [t for t in info.model.task_names if not any(t in s.tasks for s in sets)]
        if missing:
            raise EvaluateUsageError(f"set {' '.join(map(str, args.set))} has no task "
                                     f"{missing}: give a set that has it too (--set A B)")
        check_set_classes(info, sets, args.set)
        step = trained_frame_step(info)
        temporal = trained_temporal_sampling(info)
        context = check_context(args.context, sets, info)
        if hidden is None:
            hidden = 0 if context else GateFitConfig().hidden
        fit = dataclasses.replace(fit, hidden=hidden)

        sessions = [v for set_config in sets for source in set_config.untrimmed
                    for v in read_untrimmed(source, "train", background=False)]
        check_classes(sessions, {t: info.classes_of(t) for t in info.model.task_names},
                      "the checkpoint's")
        halves = split_validation(sessions)
        if sessions and not all(halves) and not args.no_tune:
            LOG.warning("%d train-split session(s): choosing the event settings needs 3 or "
                        "more (pairs of sessions take turns to fit the gate and to score "
                        "it); none chosen, the node's defaults apply", len(sessions))
        tune = not args.no_tune and all(halves) and _tunable(sessions)
        # tuning: the sessions' none clips apart, to fit one gate per half (cross-fitting)
        held = frozenset(v.path for v in sessions) if tune else frozenset()
        span = clip_span(info.preprocess.clip_length, step)
        half_items = [session_items(half, info, span, args) for half in halves] \
            if tune else [[], []]

        def items_of(split: str) -> list[tuple[VideoSample, int]]:
            return gate_items(sets, info, split, args.none_margin_s, step,
                              not args.no_around_segments, args.max_videos,
                              held if split == "train" else frozenset(), args.lead_overlap,
                              args.none_piece_clips)

        train_items = items_of("train")
        if not tune:  # every session is for fitting: its motions too
            train_items += session_items(sessions, info, span, args, nones=False)
        if not any(label == info.model.num_tasks
                   for _, label in train_items + half_items[0] + half_items[1]):
            raise EvaluateUsageError(f"set {' '.join(map(str, args.set))} gives no none clips "
                                     "for training: add untrimmed: or background: folders, or "
                                     "bags with unlabelled time")
        loaded = load_checkpoint(args.checkpoint, args.device)
    except (CheckpointError, SettingsError, DatasetError, EvaluateUsageError, OutputError,
            ValueError, RuntimeError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    model = loaded.model
    report: dict[str, Any] = {"set": " ".join(map(str, args.set)),
                              "source": str(args.checkpoint), "temporal_sampling": temporal,
                              "clips_per_video": args.clips_per_video, "hidden": fit.hidden,
                              "steps": fit.steps}
    if context:
        try:
            fitted = fit_on_windows(model, info, sets, sessions, halves, tune, context, fit,
                                    step, args)
        except (DatasetError, ValueError) as exc:  # no readable video, a class without clips
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
        gate, crossed_gates = fitted.gate, fitted.crossed
        report.update({key: _figures(v) if key in ("train", "test") else v
                       for key, v in fitted.report.items()})
        del report["clips_per_video"]  # every clip of every video: stream windows
    else:
        try:
            gate, crossed_gates = _fit_on_clips(model, info, train_items, half_items,
                                                items_of, report, fit, step, temporal, args)
        except ValueError as exc:  # a gate class whose clips all fell away (bag intervals
            # without a sampled frame): known only once the clips are read
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
    config = dataclasses.replace(info.model, gate=True, gate_hidden=fit.hidden,
                                 gate_context=context)
    gated = _with_gate(model, config, gate)
    provenance = dict(info.provenance, gate_fit=report)
    provenance.pop(PROVENANCE_KEY, None)  # chosen for an old gate: not valid for this one
    if tune:
        # each half's sessions scored by a gate fitted without them (cross-fitting)
        crossed = [(_with_gate(model, config, g), halves[held])
                   for g, held in zip(crossed_gates, (1, 0), strict=True)]
        provenance[PROVENANCE_KEY] = _tune(crossed, CheckpointInfo(
            config, info.class_names, info.preprocess, provenance), step, args)
    try:
        save_checkpoint(out, gated.eval(), CheckpointInfo(config, info.class_names,
                                                          info.preprocess, provenance))
    except (CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = gate_classes(info.model.task_names)
    for split in ("train", "test"):
        if split in report:
            figures = report[split]
            print(f"gate {split}: accuracy {100 * figures['accuracy']:.1f}% over "
                  f"{figures['clips']} clips; per class "
                  + ", ".join(f"{n} {_pct(a)}" for n, a in zip(names, figures["per_class"])))
    print(f"checkpoint with gate: {out}")
    return 0


def _fit_on_clips(model: torch.nn.Module, info: CheckpointInfo,
                  train_items: list[tuple[VideoSample, int]],
                  half_items: list[list[tuple[VideoSample, int]]],
                  items_of: Callable[[str], list[tuple[VideoSample, int]]],
                  report: dict[str, Any], fit: GateFitConfig, step: int, temporal: str,
                  args: argparse.Namespace) -> tuple[TaskGate, list[TaskGate]]:
    """The one-clip gate (`--context 0`): fitted on a few clips per sample; the gate
    fitted on everything and the two cross-fitted ones (without half 1, then without
    half 0; none without tuning). Adds the train and test figures to `report`."""
    k = info.model.num_tasks
    extract = dict(preprocess=info.preprocess, clips_per_sample=args.clips_per_video,
                   frame_step=step, temporal=temporal, batch_size=args.batch_size,
                   device=args.device)
    base = extract_gate_features(model, train_items, **extract)  # type: ignore[arg-type]
    parts = [extract_gate_features(model, h, **extract) if h else None  # type: ignore[arg-type]
             for h in half_items]
    features, labels = _joined([base, *parts])
    LOG.info("gate features: %d clips (%s)", len(labels), _counts(labels, k, info))
    gate = fit_gate(features, labels, k, fit)
    report["train"] = _figures(gate_confusion(gate, features, labels, k + 1))
    try:
        test_f, test_l = extract_gate_features(model, items_of("test"),  # type: ignore[arg-type]
                                               **extract)
        report["test"] = _figures(gate_confusion(gate, test_f, test_l, k + 1))
    except (DatasetError, ValueError) as exc:  # a set without a test split of none clips
        LOG.warning("no test figures: %s", str(exc).splitlines()[0])
    crossed = [fit_gate(*_joined([base, part]), k, fit) for part in parts if part is not None]
    return gate, crossed


def _joined(parts: list[tuple[torch.Tensor, torch.Tensor] | None]
            ) -> tuple[torch.Tensor, torch.Tensor]:
    present = [p for p in parts if p is not None]
    return torch.cat([p[0] for p in present]), torch.cat([p[1] for p in present])


def _with_gate(model: torch.nn.Module, config: Any, gate: torch.nn.Module) -> Any:
    """A copy of `model` (same task weights) with `gate` as its task gate."""
    gated = build_model(config)
    state = {k_: v for k_, v in model.state_dict().items() if not k_.startswith("gate.")}
    unexpected = gated.load_state_dict(state, strict=False)
    assert all(key.startswith("gate.") for key in unexpected.missing_keys)
    assert gated.gate is not None
    gated.gate.load_state_dict(gate.state_dict())
    return gated.eval()


def _tunable(sessions: list[UntrimmedVideo]) -> bool:
    """Whether the sessions can choose the event settings: False (with a warning) when
    they hold no gesture; refused when their frame rates differ (the settings are
    chosen at one stream rate, the trained frame step's)."""
    rates: dict[float, UntrimmedVideo] = {}
    for video in sessions:
        rates.setdefault(round(video.fps, 3), video)
    if len(rates) > 1:
        (a, first), (b, second) = list(rates.items())[:2]
        raise EvaluateUsageError(
            f"the train split's sessions have different frame rates ({first.path.name} "
            f"{a:g} fps, {second.path.name} {b:g} fps): the event settings are chosen at one "
            "stream rate; re-encode them at one rate, or pass --no-tune")
    if not any(i.task == GESTURE for v in sessions for i in v.intervals):
        LOG.warning("the train split's sessions label no gesture: event settings not "
                    "chosen (the node's defaults apply, as with --no-tune)")
        return False
    return True


def _tune(crossed: list[tuple[torch.nn.Module, list[UntrimmedVideo]]], info: CheckpointInfo,
          step: int, args: argparse.Namespace) -> dict[str, Any]:
    """The event settings chosen on the held-out sessions (training/methods/gate_tuning.py):
    each half of the train sessions scored by the gate fitted without it."""
    base = stream_for(info, crossed[0][1][0].fps, step, args.inference_stride)
    recorded: list[Recorded] = []
    composed: list[Recorded] = []
    with torch.inference_mode():
        for order, (model, videos) in enumerate(crossed):
            done = record(model, info, base, videos)
            recorded += done
            readable = {r.path for r in done}  # a damaged video gives no excerpts either
            videos = [v for v in videos if v.path in readable]
            if not args.no_composed and videos:  # the same held-out motions, as excerpts
                rng = np.random.default_rng((args.seed + order) % 2**32)
                excerpts = plan_excerpts(videos, rng)
                if excerpts:  # named after the sessions it was cut from
                    name = f"composed:{videos[0].path.name}..{videos[-1].path.name}"
                    composed.append(record_composed(model, info, base, excerpts, name))
    if not recorded:
        raise DatasetError("no train-split session decoded to its end: the event settings "
                           "cannot be chosen (see the warnings; or pass --no-tune)")
    settings, figures = choose(recorded + composed, info.classes_of(GESTURE), base,
                               args.max_false_per_min)
    LOG.info("event settings chosen on %d validation sessions and %d composed streams: %s",
             len(recorded), len(composed), settings)
    print(f"events on {len(recorded)} validation sessions and {len(composed)} streams joined "
          f"from their motions ({figures['gestures']} gestures): F1 "
          f"{figures['event_f1']:.2f}, {figures['false_events_per_minute']:.2f} false events "
          f"per minute of none with " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return stream_defaults(settings, figures, base, recorded + composed,
                           args.max_false_per_min)


def _figures(confusion: np.ndarray) -> dict[str, Any]:
    rows = confusion.sum(axis=1)
    return {"accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
            "clips": int(confusion.sum()), "confusion": confusion.tolist(),
            "per_class": [float(confusion[i, i] / rows[i]) if rows[i] else None
                          for i in range(len(rows))]}


def _counts(labels: torch.Tensor, k: int, info: CheckpointInfo) -> str:
    counts = torch.bincount(labels, minlength=k + 1).tolist()
    return ", ".join(f"{n} {c}" for n, c in zip(gate_classes(info.model.task_names), counts))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
