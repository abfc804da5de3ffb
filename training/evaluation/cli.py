"""`python -m training evaluate --checkpoint FILE --config SET.yaml`: score a checkpoint.

Prints per-task clip accuracy (centre clip), video accuracy (mean softmax over
evenly spaced clips), cumulative accuracy, per-class accuracy and the
confusion counts; `--json OUT` writes the same as JSON. Everything that can be
refused is refused before any video is decoded: a missing or unusable
checkpoint, a set without one of the checkpoint's tasks, class names that
differ from the ones the checkpoint was trained with (a model scored against
another label order would report nonsense), missing video files (unless
`--allow-missing`). Each is one line on stderr and exit status 2.

A checkpoint with a task gate also gets the gate's accuracy (over the task
clips and the `none` stretches of the set's `untrimmed:`/`background:`
folders and around trimmed segments, split `--split`) and the task-agnostic
clip accuracy (right only when the gate picks the clip's task and that head
its class) beside the task-given accuracies.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import cast

import torch

from mtl_perception.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    atomic_write,
    load_checkpoint,
)
from mtl_perception.deploy.device import DeviceError, check_autocast, resolve_device
from mtl_perception.deploy.load import is_exported, load_engine, read_model_info
from mtl_perception.deploy.registry import BACKEND_NAMES as BACKENDS
from mtl_perception.exits import float_in
from mtl_perception.models import MultiTaskModel
from mtl_perception.outputs import WRITTEN_BY, OutputError, check_out_file
from mtl_perception.settings import SettingsError
from training.datasets.clip_sampling import TemporalSampling
from training.datasets.clips import clip_span
from training.datasets.listfile import DatasetError
from training.datasets.missing import require_files
from training.datasets.none_clips import none_samples
from training.datasets.sample import LabelledSplit
from training.datasets.sets import SPLIT_NAMES, SetConfig, build_task_split, load_set
from training.evaluation.engine_model import EngineModel
from training.evaluation.scoring import (
    EvalConfig,
    EvaluationError,
    EvaluationResult,
    Evaluator,
    Precision,
)

LOG = logging.getLogger(__name__)
JSON_WRITER = "python -m training evaluate"


class EvaluateUsageError(ValueError):
    """The checkpoint and the set do not fit together; one line naming both."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = EvalConfig()
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a .safetensors checkpoint, or an exported .onnx model "
                             "(python -m training export; with a non-torch --backend)")
    parser.add_argument("--config", type=Path, required=True, help="the set config (YAML)")
    parser.add_argument("--split", choices=SPLIT_NAMES, default="test", help="split to score")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result here (a new file; --overwrite to replace "
                             "one; never one of this run's inputs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu, cuda, cuda:1, ..., or auto (the GPU when "
                             "there is one)")
    parser.add_argument("--autocast", choices=("none", "bf16", "fp16"), default=d.autocast,
                        help="mixed precision for the forward pass on a GPU (ignored on the "
                             "CPU, as the node ignores it)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="inference engine of the forward pass, as the node's `backend`")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="clips per forward")
    parser.add_argument("--num-workers", type=int, default=d.num_workers,
                        help="DataLoader worker processes")
    parser.add_argument("--num-eval-clips", type=int, default=d.num_eval_clips,
                        help="evenly spaced clips per video for video accuracy")
    parser.add_argument("--frame-step", type=int, default=None,
                        help="frames between consecutive clip frames (default: the checkpoint's "
                        f"training clip.frame_step, else {d.frame_step})")
    parser.add_argument("--max-videos", type=int, default=None,
                        help="score at most this many videos per task (spread over the list)")
    parser.add_argument("--no-video", action="store_true",
                        help="clip accuracy only (skips the N-clips-per-video pass)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip and count missing video files instead of refusing")
    parser.add_argument("--none-margin-s", type=float_in(0.0, 3600.0), default=0.3,
                        help="gated checkpoints: none clips keep this far from labelled intervals")


def trained_frame_step(info: CheckpointInfo) -> int:
    """The frame step the model was trained with (its provenance), else EvalConfig's default.

    Clips must be sampled as in training: a model trained on every 4th frame scored
    on consecutive frames sees its motions 4x too slow and scores near chance.
    """
    config = info.provenance.get("config")
    clip = config.get("clip") if isinstance(config, dict) else None
    step = clip.get("frame_step") if isinstance(clip, dict) else None
    if isinstance(step, int) and not isinstance(step, bool) and step >= 1:
        return step
    return EvalConfig().frame_step


def trained_temporal_sampling(info: CheckpointInfo) -> TemporalSampling:
    """consecutive or uniform, as the model was trained (its provenance); else consecutive."""
    value = info.provenance.get("temporal_sampling")
    return "uniform" if value == "uniform" else "consecutive"


def check_classes(info: CheckpointInfo, splits: dict[str, LabelledSplit], checkpoint: Path,
                  set_config: SetConfig) -> None:
    """Refuse a set whose tasks or class names differ from the checkpoint's."""
    where = f"checkpoint {checkpoint} vs set {set_config.path or set_config.name}"
    for task, names in zip(info.model.task_names, info.class_names, strict=True):
        ours = tuple(splits[task].class_names)
        if ours != names:
            differ = next((i for i, (a, b) in enumerate(zip(names, ours)) if a != b),
                          min(len(names), len(ours)))
            detail = (f"class {differ} is {names[differ]!r} in the checkpoint, "
                      f"{ours[differ]!r} in the set" if differ < min(len(names), len(ours))
                      else f"{len(names)} classes in the checkpoint, {len(ours)} in the set")
            raise EvaluateUsageError(f"{where}: task {task!r} class names differ: {detail}")


def format_result(result: EvaluationResult, title: str = "") -> str:
    """The text report: a summary table, then per-class accuracy and confusion per task."""
    lines = [title] if title else []
    lines.append(f"{'task':<12} {'videos':>7} {'skipped':>7} {'clip acc':>9} {'video acc':>9}")
    for t in result.tasks:
        lines.append(f"{t.task:<12} {t.clip.total:>7} {t.skipped:>7} "
                     f"{_pct(t.clip_accuracy):>9} {_pct(t.video_accuracy):>9}")
    lines.append(f"{'cumulative':<12} {sum(t.clip.total for t in result.tasks):>7} "
                 f"{result.skipped:>7} {_pct(result.cumulative_clip_accuracy):>9} "
                 f"{_pct(result.cumulative_video_accuracy):>9}")
    if result.gate is not None:
        gate = result.gate
        lines += ["", f"task gate: accuracy {_pct(gate.accuracy)} over "
                  f"{sum(map(sum, gate.confusion))} clips ({sum(gate.confusion[-1])} none); "
                  f"task-agnostic clip accuracy {_pct(gate.task_agnostic_accuracy)} "
                  f"(task-given {_pct(result.cumulative_clip_accuracy)})",
                  "  gate confusion (rows = true): " + " | ".join(
                      f"{name}: " + " ".join(str(c) for c in row)
                      for name, row in zip(gate.class_names, gate.confusion))]
    for t in result.tasks:
        scores = t.video or t.clip
        kind = "video" if t.video is not None else "clip"
        lines += ["", f"{t.task}: per-class {kind} accuracy (%), confusion rows = true class"]
        width = max(len(n) for n in t.class_names)
        for i, name in enumerate(t.class_names):
            counts = " ".join(f"{c:>3}" for c in scores.confusion[i])
            lines.append(f"  {name:<{width}} {_pct(scores.per_class[name]):>6}  {counts}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        info = read_model_info(args.checkpoint)
        if args.backend == "torch" and is_exported(args.checkpoint):
            raise EvaluateUsageError(f"{args.checkpoint} is an exported model: score it with "
                                     "--backend onnxruntime, openvino or tensorrt")
        frame_step = args.frame_step if args.frame_step is not None else trained_frame_step(info)
        try:
            device = resolve_device(args.device)
        except DeviceError as exc:
            raise EvaluateUsageError(f"--device: {exc}") from exc
        try:  # as the node and evaluate_bag run it: mixed precision on a GPU only, so a
            # CPU's figures are float32's whatever --autocast says (one line when ignored)
            autocast, ignored = check_autocast(args.autocast, device)
        except DeviceError as exc:
            raise EvaluateUsageError(f"--autocast: {exc}") from exc
        if ignored is not None:
            LOG.warning("%s", ignored)
        config = EvalConfig(
            batch_size=args.batch_size, num_workers=args.num_workers,
            max_videos=args.max_videos, video_accuracy=not args.no_video,
            num_eval_clips=args.num_eval_clips, frame_step=frame_step,
            autocast=cast(Precision, autocast),  # one of AUTOCAST_MODES: checked above
            temporal_sampling=trained_temporal_sampling(info),
        )
        if args.json is not None:  # before any work; never over what this run reads
            check_out_file(args.json, args.overwrite, [args.checkpoint, args.config],
                           option="--json")
        set_config = load_set(args.config)
        if args.json is not None:
            check_out_file(args.json, args.overwrite, set_config.inputs(), option="--json",
                           kind="json", writer=JSON_WRITER)
        missing = [t for t in info.model.task_names if t not in set_config.tasks]
        if missing:
            raise EvaluateUsageError(
                f"checkpoint {args.checkpoint} vs set {args.config}: the set has no task "
                f"{missing}; its tasks are {sorted(set_config.tasks)}")
        splits = {t: build_task_split(set_config, t, args.split) for t in info.model.task_names}
        check_classes(info, splits, args.checkpoint, set_config)
        if not args.allow_missing:
            require_files(splits)
        nones = None
        if info.model.gate:
            span = clip_span(info.preprocess.clip_length, frame_step)
            nones = none_samples(set_config, args.split, list(splits.values()),
                                 args.none_margin_s, span, classes=(
                                     {t: info.classes_of(t) for t in info.model.task_names},
                                     "the checkpoint's"))
        evaluator = Evaluator(splits, info.model.task_names, info.preprocess, config,
                              none_samples=nones)
        model = _model(args, info, device)
    except DatasetError as exc:  # a list or root named by the set config: say which
        print(f"error: {exc} (set config {args.config})", file=sys.stderr)
        return 2
    except (CheckpointError, SettingsError, EvaluateUsageError, EvaluationError, OutputError,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # e.g. a CUDA device that does not exist
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    result = evaluator(model, device)
    engine = f" ({model.describe()})" if isinstance(model, EngineModel) else ""
    print(format_result(result, f"{args.checkpoint}{engine} on {set_config.name} {args.split}"))
    if args.json is not None:
        try:
            # `written_by`: what lets a later `--json ... --overwrite` prove the file is ours
            text = json.dumps({WRITTEN_BY: JSON_WRITER, **json.loads(result.to_json())},
                              indent=2) + "\n"
            atomic_write(args.json, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        LOG.info("result written to %s", args.json)
    return 0


def _model(args: argparse.Namespace, info: CheckpointInfo, device: torch.device
           ) -> MultiTaskModel:
    """The checkpoint's model on `device`, or the engine `--backend` names (typed as the
    model the evaluator takes: it uses the same four members of either)."""
    if args.backend == "torch":
        return load_checkpoint(args.checkpoint, device).model
    engine = load_engine(args.checkpoint, args.backend, args.device, autocast=args.autocast)
    return cast(MultiTaskModel, EngineModel(engine))


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.2f}"
