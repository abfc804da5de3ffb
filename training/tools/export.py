"""`python -m training export --checkpoint FILE --format onnx`: a checkpoint -> one ONNX file.

The file has one input `clips` (N, 3, T, H, W) and one output per task (then
`gate` when the model has a task gate), the checkpoint's metadata and the
export's own in its metadata (`mtl_perception/deploy/onnx_file.py`). LWS's
argmax routing is frozen in. Before anything is written, the graph is run in
ONNX Runtime on random clips (and, with `--clips SET.yaml` or
`--calibration`, real clips of that set) and compared with PyTorch: a largest
difference above `--tolerance` refuses the export. The file is written
atomically. `--int8 --calibration SET.yaml` writes the int8 model calibrated
on clips of the set's train split instead, and prints its largest difference
from fp32 (accuracy: `python -m training evaluate --backend onnxruntime`).
The node and `evaluate_bag` take the file in place of a checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch

from mtl_perception.checkpoint import CheckpointError, checkpoint_sha256, load_checkpoint
from mtl_perception.deploy.export import (
    DEFAULT_OPSET,
    INT8_MIN_OPSET,
    ExportError,
    export_onnx,
    max_difference,
    opset_range,
    with_metadata,
)
from mtl_perception.deploy.onnx_file import BackendError, OnnxModel
from mtl_perception.exits import float_in, int_in
from mtl_perception.fileio import atomic_write
from mtl_perception.models import MultiTaskModel
from mtl_perception.outputs import OutputError, check_out_file
from mtl_perception.settings import SettingsError
from training.datasets.listfile import DatasetError

LOG = logging.getLogger("export")


class ExportUsageError(ValueError):
    """Arguments that cannot work together; one line."""


ERRORS = (CheckpointError, ExportError, ExportUsageError, BackendError, SettingsError,
          OutputError, DatasetError)  # one line, exit 2, wherever raised (training/__main__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="a .safetensors checkpoint")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    parser.add_argument("--out", type=Path, default=None,
                        help="output file (default: the checkpoint's name with .onnx, "
                             "or .int8.onnx with --int8)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("--batch", default="dynamic",
                        help="'dynamic' or a fixed batch size N (TensorRT builds one engine "
                             "per fixed shape)")
    parser.add_argument("--frames", type=int_in(0, 1024), default=0,
                        help="frames per clip (0: the checkpoint's clip length)")
    parser.add_argument("--tolerance", type=float_in(0.0, 1e12), default=1e-3,
                        help="largest |ONNX - PyTorch| logit difference accepted (fp32)")
    parser.add_argument("--check-clips", type=int_in(1, 64), default=4,
                        help="random clips the export is checked on")
    parser.add_argument("--clips", type=Path, default=None,
                        help="set YAML whose test-split clips the export is checked on too")
    parser.add_argument("--int8", action="store_true",
                        help="write the int8 (CPU) model, calibrated on --calibration")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="set YAML: int8 calibration uses clips of its train split")
    parser.add_argument("--calibration-clips", type=int_in(1, 10000), default=300,
                        help="clips for int8 calibration (spread over the split's videos)")
    parser.add_argument("--min-agreement", type=float, default=0.97,
                        help="int8: the least top-1 agreement with fp32 on held-out (test "
                             "split) clips; below it nothing is written")
    parser.add_argument("--accept-int8-loss", action="store_true",
                        help="int8: write the file even below --min-agreement (recorded in it)")
    parser.add_argument("--symmetric", action="store_true",
                        help="int8: signed activations with zero point 0 (what TensorRT takes)")
    parser.add_argument("--per-tensor", action="store_true",
                        help="int8: one weight scale per tensor instead of per channel")
    parser.add_argument("--seed", type=int_in(-(2**63), 2**63 - 1), default=0,
                        help="seed of the random check clips")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (never an input of this run)")


def run(args: argparse.Namespace) -> int:
    try:
        written = export(args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CheckpointError, ExportError, ExportUsageError, BackendError, SettingsError,
            OutputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0


def export(args: argparse.Namespace) -> Path:
    """Check the arguments, export, compare with PyTorch, write; returns the file written."""
    batch = _batch(args.batch)
    low, high = opset_range()
    if not low <= args.opset <= high:  # torch printed its whole graph on stdout, or wrote
        # a graph ONNX Runtime refused with a traceback
        raise ExportUsageError(f"--opset {args.opset}: this torch exports ONNX opsets "
                               f"{low}..{high}")
    _check_int8_options(args)
    if args.check_clips < 1 or args.calibration_clips < 1:
        raise ExportUsageError("--check-clips and --calibration-clips must be >= 1")
    if args.checkpoint.suffix.lower() == ".onnx":  # was: "--out ... is an input of this run"
        raise ExportUsageError(f"--checkpoint {args.checkpoint} is an exported ONNX model; "
                               "export reads the .safetensors checkpoint it came from")
    suffix = ".int8.onnx" if args.int8 else ".onnx"
    out = args.out or args.checkpoint.with_suffix(suffix)
    if out.suffix.lower() != ".onnx":
        raise ExportUsageError(f"--out {out}: the node and evaluate_bag know exported models "
                               "by the .onnx suffix")
    check_out_file(out, args.overwrite, [p for p in (args.checkpoint, args.clips,
                                                       args.calibration) if p is not None],
                   kind="onnx")
    torch.manual_seed(args.seed)
    loaded = load_checkpoint(args.checkpoint)
    model, info = loaded.model.eval(), loaded.info
    _check_example_size(max(batch, 1) * args.check_clips, args.frames or
                        info.preprocess.clip_length, info.preprocess.crop)
    exported = export_onnx(model, info, source_sha256=checkpoint_sha256(args.checkpoint),
                           opset=args.opset, batch=batch, frames=args.frames)
    frames, crop = exported.export.frames, info.preprocess.crop
    checks = [torch.randn(max(batch, 1) * args.check_clips, 3, frames, *crop)]
    real = args.clips or args.calibration
    if real is not None:
        checks += list(set_clips(real, "test", exported, model, 16, batch or 4))
    difference = max(max_difference(model, exported, clips) for clips in checks)
    LOG.info("largest |ONNX Runtime - PyTorch| logit difference: %.3g (%s)", difference,
             "random clips" + (f" and test clips of {real}" if real else ""))
    if not difference <= args.tolerance:  # NaN refuses too
        raise ExportError(f"export of {args.checkpoint} differs from PyTorch by {difference:.3g}"
                          f" > --tolerance {args.tolerance}; nothing written")
    exported = with_metadata(exported.data, exported.info,
                             replace(exported.export, max_abs_diff=difference))
    if args.int8:
        exported = _int8(args, exported, model, checks, out)
    atomic_write(out, lambda tmp: tmp.write_bytes(exported.data))
    LOG.info("%s: outputs %s, batch %s, %d frames, opset %d, %s, %.1f MB", out,
             list(exported.export.outputs), exported.export.batch or "dynamic", frames,
             args.opset, exported.export.precision, len(exported.data) / 1e6)
    return out


def _int8(args: argparse.Namespace, exported: OnnxModel, model: MultiTaskModel,
          checks: list[torch.Tensor], out: Path) -> OnnxModel:
    """Quantise, then check the int8 file against fp32 (top-1 agreement and the largest
    logit difference on held-out and calibration clips), record it, refuse a poor one."""
    from training.tools.quantize import agreement, fixed_batches, quantize_int8

    batch = exported.export.batch
    calibration = list(set_clips(args.calibration, "train", exported, model,
                                 args.calibration_clips, batch or 8))
    quantized = quantize_int8(exported, fixed_batches(iter(calibration), batch),
                              symmetric=args.symmetric, per_channel=not args.per_tensor)
    held_out = list(set_clips(args.clips or args.calibration, "test", exported, model,
                              args.calibration_clips, batch or 8))
    seen, held, clips = agreement(model, quantized, calibration), agreement(
        model, quantized, held_out), sum(len(c) for c in held_out)
    difference = max([max_difference(model, quantized, c) for c in checks + held_out])
    LOG.info("int8: top-1 agreement with fp32 %.2f %% on %d held-out clips (%.2f %% on the "
             "calibration clips), largest logit difference %.3g", 100 * held, clips,
             100 * seen, difference)
    if held < args.min_agreement and not args.accept_int8_loss:
        raise ExportError(
            f"int8 agrees with fp32 on {100 * held:.1f} % of {clips} held-out clips' top-1 "
            f"< --min-agreement {args.min_agreement:g}; nothing written (more "
            "--calibration-clips, --symmetric, or --accept-int8-loss to write it anyway)")
    return with_metadata(quantized.data, quantized.info, replace(
        quantized.export, max_abs_diff=difference, int8_agreement=round(held, 4),
        int8_agreement_calibration=round(seen, 4), int8_clips=clips))


INT8_ONLY = ("symmetric", "per_tensor", "accept_int8_loss")


def _check_int8_options(args: argparse.Namespace) -> None:
    """The int8 options, checked before any work: each int8-only flag without --int8 was
    ignored (--symmetric for TensorRT wrote an fp32 file and said nothing)."""
    if not args.int8:
        given = [f"--{name.replace('_', '-')}" for name in INT8_ONLY if getattr(args, name)]
        if given:
            raise ExportUsageError(f"{', '.join(given)} only apply with --int8")
        return
    if args.calibration is None:
        raise ExportUsageError("--int8 needs --calibration SET.yaml (clips to calibrate on)")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise ExportUsageError(f"--min-agreement must be in [0, 1], got {args.min_agreement}")
    if args.opset < INT8_MIN_OPSET:
        raise ExportUsageError(f"--int8 needs --opset {INT8_MIN_OPSET} or newer (older "
                               f"opsets cannot hold its QDQ graph), got {args.opset}")


def set_clips(path: Path, split: str, exported: OnnxModel, model: MultiTaskModel, count: int,
              batch_size: int) -> Iterator[torch.Tensor]:
    """Up to `count` centre clips of a set's split (spread over its videos), preprocessed
    as the exported model expects, in batches."""
    from training.datasets.sets import build_task_split, load_set
    from training.evaluation.cli import trained_frame_step
    from training.evaluation.scoring import EvalConfig, Evaluator

    info = exported.info
    set_config = load_set(path)
    missing = [t for t in info.model.task_names if t not in set_config.tasks]
    if missing:
        raise ExportUsageError(f"set {path} has no task {missing}")
    splits = {t: build_task_split(set_config, t, split) for t in info.model.task_names}
    per_task = max(1, math.ceil(count / info.model.num_tasks))
    config = EvalConfig(batch_size=batch_size, max_videos=per_task, video_accuracy=False,
                        frame_step=trained_frame_step(info))
    evaluator = Evaluator(splits, info.model.task_names, info.preprocess, config)
    for clips, _, _ in evaluator._batches(evaluator.centre, batch_size, torch.device("cpu")):
        yield clips


MAX_BATCH = 256  # a fixed engine batch beyond this is no robot's
MAX_EXAMPLE_BYTES = 1 << 30  # the random check clips live in memory at once


def _check_example_size(clips: int, frames: int, crop: tuple[int, int]) -> None:
    size = clips * 3 * frames * crop[0] * crop[1] * 4
    if size > MAX_EXAMPLE_BYTES:
        raise ExportUsageError(f"--batch x --check-clips = {clips} clips of {frames} frames "
                               f"would take {size / 2**30:.1f} GiB to check; at most "
                               f"{MAX_EXAMPLE_BYTES / 2**30:.0f} GiB: lower --batch or "
                               "--check-clips")


def _batch(text: str) -> int:
    if text == "dynamic":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_BATCH:
        raise ExportUsageError(f"--batch must be 'dynamic' or a whole number in 1..{MAX_BATCH}, "
                               f"got {text!r}")
    return value

