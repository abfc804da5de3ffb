"""`evaluate_bag`: score a checkpoint on a recorded bag exactly as the robot would see it.

The bag's image messages go, in header-stamp order (log-time order put back
in stamp order within `--reorder-window-s`, `order.py`), through the live node's
streaming core (`mtl_perception.stream.StreamPipeline`, unchanged) in its
offline mode (`realtime=False`): same decoding, per-frame preprocessing,
sampling by header stamp at `target_fps`, clips every `inference_stride`
sampled frames, inference and smoothing; no clip is dropped and the clips
are scored in order, one batch shape, in this thread, so two runs give the
same predictions. The clips are then scored against a labels CSV
(`labels.py`, `metrics.py`).

Outputs (`--out`, written whole or not at all, `outputs.py`): metrics.json,
report.md, predictions.csv, confusion_<task>.png, and with `--write-bag` a
copy of the bag (`bag/`) with the predictions on `/human/<task>`
(vision_msgs/Classification) and `/human/<task>/label_info`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtl_perception.bag.labels import LabelsError, read_labels
from mtl_perception.bag.order import DEFAULT_WINDOW_S, StampOrder
from mtl_perception.bag.outputs import OutputError, check_out, staged
from mtl_perception.bag.progress import Progress
from mtl_perception.bag.reader import Bag, BagError
from mtl_perception.bag.results import write_outputs
from mtl_perception.bag.run import (
    Evaluation,
    EvaluationError,
    load_stream_config,
    run_pipeline,
    settings_that_can_act,
    stream_settings,
)
from mtl_perception.bag.shown import SHOWN_FILE, read_shown
from mtl_perception.checkpoint import CheckpointError
from mtl_perception.deploy.errors import BackendError, DeviceError
from mtl_perception.deploy.load import load_engine
from mtl_perception.exits import run_command
from mtl_perception.help_format import DefaultsHelpFormatter
from mtl_perception.names import threads_problem
from mtl_perception.outputs import input_holding
from mtl_perception.settings import SettingsError
from mtl_perception.stream import StreamConfig, StreamConfigError
from mtl_perception.stream.decisions import explicit_settings, with_stored_decisions
from mtl_perception.stream.rate import choose_target_fps, rate_warning

LOG = logging.getLogger("evaluate_bag")
_ERRORS = (BagError, LabelsError, CheckpointError, OutputError, SettingsError,
           StreamConfigError, EvaluationError, BackendError, DeviceError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate_bag", description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--bag", type=Path, required=True,
                        help="rosbag2 folder, .mcap or .db3 file, or ROS 1 .bag file")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help=".safetensors checkpoint, or a model exported with "
                             "`python -m training export` (.onnx; needs backend=onnxruntime, "
                             "openvino or tensorrt in --set)")
    parser.add_argument("--labels", type=Path, required=True,
                        help="CSV start,end,task,label (seconds from the first image's stamp)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created whole)")
    parser.add_argument("--image-topic", default=None,
                        help="image topic (default: the bag's only image topic, else "
                             "/camera/image_raw)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--autocast", default="none", choices=("none", "fp16", "bf16"),
                        help="half-precision inference on a GPU")
    parser.add_argument("--write-bag", action="store_true",
                        help="also write a copy of the bag with the predictions (out/bag)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it holds an earlier evaluate_bag output")
    parser.add_argument("--config", type=Path, default=None,
                        help="stream settings YAML (StreamConfig fields, or the node's "
                             "config/perception.yaml)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        dest="overrides",
                        help="stream settings, e.g. target_fps=25 inference_stride=4 "
                             "smoothing=ema backend=onnxruntime")
    parser.add_argument("--reorder-window-s", type=float, default=DEFAULT_WINDOW_S,
                        help="put images logged out of header-stamp order back in order "
                             "within this many seconds (0: the bag's order)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for inference (0: torch's default); 1 is faster on "
                             "a machine busy with other work")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--unlabelled", choices=("ignore", "none"), default="ignore",
                        help="time no label covers: ignore it (trimmed metrics only), or count "
                             "it as `none` (untrimmed streams: task confusion, gesture events, "
                             "per-frame AP, timeline plot)")
    parser.add_argument("--event-late-s", type=float, default=2.0,
                        help="with --unlabelled none: a gesture event detects a true gesture "
                             "when it comes while the gesture lasts or at most this many "
                             "seconds after it ended")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console script `evaluate_bag` (also `ros2 run mtl_perception evaluate_bag`)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def body() -> int:
        _summary(evaluate(args), args.out)
        return 0

    # Outputs are staged: an error, Ctrl-C or SIGTERM leaves nothing half-written behind.
    return run_command(body, LOG, _ERRORS, stopped=f"nothing written to {args.out}",
                       where=args.out)


def evaluate(args: argparse.Namespace) -> Evaluation:
    """Check every input cheaply, then run the bag through the pipeline and write outputs."""
    if (problem := threads_problem(args.threads, "--threads")) is not None:
        raise EvaluationError(problem)
    if not 0 <= args.event_late_s <= 3600:  # inf would write `Infinity`: not JSON
        raise EvaluationError(f"--event-late-s must be 0..3600 seconds, got "
                              f"{args.event_late_s}")
    try:
        StampOrder(args.reorder_window_s)
    except ValueError as exc:
        raise EvaluationError(f"--reorder-window-s: {exc}") from None
    untrimmed = args.unlabelled == "none"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = load_stream_config(args.config, args.overrides)
    if Path(args.bag).is_dir() and input_holding(args.out, [args.bag]) is not None:
        raise EvaluationError(f"--out {args.out} lies inside the bag folder {args.bag} it "
                              "reads: write the results elsewhere")
    check_out(args.out, args.overwrite, [p for p in (args.bag, args.labels, args.checkpoint,
                                                      args.config) if p is not None])
    # Loaded (and its checksum verified) once, before the bag is opened: a checkpoint or
    # exported file that cannot be used is refused before any image is decoded.
    engine = load_engine(args.checkpoint, config.backend, args.device, autocast=args.autocast,
                         engine_cache=config.engine_cache, max_batch=config.max_batch,
                         clip_length=config.clip_length)
    info = engine.info
    # --set target_fps=... is the user's choice; a file's value only when it is not the
    # default (config/perception.yaml lists the default), as the node decides.
    explicit = ("target_fps" in stream_settings(None, args.overrides)
                or config.target_fps != StreamConfig().target_fps)
    config, rate_line = choose_target_fps(config, info, explicit)
    if rate_line:
        LOG.info("%s", rate_line)
    if (rate_problem := rate_warning(config, info)) is not None:
        LOG.warning("%s", rate_problem)
    # The gesture events' settings fit-gate chose and stored, unless given (stream/decisions.py)
    named = stream_settings(None, args.overrides)
    config, decisions_line = with_stored_decisions(config, info, explicit_settings(config, named))
    if decisions_line:
        LOG.info("%s", decisions_line)
    config, unusable = settings_that_can_act(config, engine.has_gate)
    for line in unusable:  # once each; the metrics record the settings really used
        LOG.warning("%s", line)
    with Bag(args.bag, args.image_topic) as bag:
        images = bag.images()
        first = _first_image(bag, images)
        span_s = None
        if bag.end_time_ns is not None:
            span_s = (bag.end_time_ns - first[0]) / 1e9
        classes = {t: info.classes_of(t) for t in info.model.task_names}
        intervals = read_labels(args.labels, classes, span_s, allow_empty=untrimmed)
        shown_file = Path(args.labels).parent / SHOWN_FILE  # to-bag --untrimmed writes it
        # read before any image is decoded, as the labels are
        shown = read_shown(shown_file, span_s) if untrimmed and shown_file.is_file() else []
        progress = Progress(bag.report.messages_expected, enabled=not args.no_progress)
        evaluation = run_pipeline(
            engine, config, _chain(first, images), bag.report, progress=progress,
            keep_log_times=args.write_bag, reorder_window_s=args.reorder_window_s,
        )
    if bag.report.warning:
        LOG.warning("%s", bag.report.warning)
        evaluation.warnings.insert(0, bag.report.warning)
    before = len(evaluation.warnings)
    evaluation.shown = shown
    metrics = evaluation.score(intervals, args.unlabelled, args.event_late_s)
    for warning in evaluation.warnings[before:]:
        LOG.warning("%s", warning)
    if not untrimmed and not any(metrics[task]["clips_scored"] for task in evaluation.tasks):
        raise EvaluationError(
            f"labels {args.labels}: none of the {len(evaluation.results)} scored clips lies "
            "in a labelled interval, so nothing could be evaluated (are the times seconds "
            "from the first image's stamp?)")
    with staged(args.out, args.overwrite) as stage:
        write_outputs(stage, evaluation, args)
    return evaluation


def _first_image(bag: Bag, images: Iterator[tuple[int, Any]]) -> tuple[int, Any]:
    """The first image (its stamp anchors the labels); refuse a topic we cannot decode.

    Only an encoding or format the decoder does not support at all refuses the bag here:
    a first image that is merely damaged (its size fields do not fit its data, corrupt
    JPEG) goes to the pipeline, which skips and counts it like any other; its header
    stamp still anchors the labels, as documented."""
    from mtl_perception.stream import ImageDecodeError, decode_image

    first = next(images, None)
    if first is None:
        raise BagError(f"bag {bag.path} has no readable message on {bag.image_topic}"
                       + (f" ({bag.report.warning})" if bag.report.warning else ""))
    try:
        decode_image(first[1])
    except ImageDecodeError as exc:
        if exc.kind == "unsupported":
            raise EvaluationError(f"bag {bag.path} topic {bag.image_topic}: first image "
                                  f"cannot be decoded: {exc}") from exc
    return first


def _chain(first: tuple[int, Any], rest: Iterator[tuple[int, Any]]
           ) -> Iterator[tuple[int, Any]]:
    yield first
    yield from rest


def _summary(evaluation: Evaluation, out: Path) -> None:
    """The headline figures on stdout (what `make demo` shows), chance level beside them."""
    metrics = evaluation.metrics
    for task in evaluation.tasks:
        section = metrics[task]
        chance = 1 / len(evaluation.class_names[task])
        print(f"{task:>8}: segment accuracy {_pct(section['segment_accuracy'])} "
              f"({section['segments_scored']} labelled segments; chance {_pct(chance)}), "
              f"clip accuracy {_pct(section['clip_accuracy'])} ({section['clips_scored']} clips)")
    events = metrics.get("gesture_events")
    if events is not None:
        delay = events["detection_delay_s"]
        print(f"{'events':>8}: gesture Levenshtein accuracy "
              f"{_pct(events['levenshtein_accuracy'])} ({events['events']} events, "
              f"{events['true_gestures']} gestures, {events['missed']} missed), false events "
              f"{_num(events['false_events_per_minute'])} per minute of none, detection delay "
              f"p50 {_num(delay['p50'])} s, p95 {_num(delay['p95'])} s ({events['source']})")
        f1 = events["event_f1"]
        print(f"{'':>8}  time-matched events with the right class: F1 {_num(f1['f1'])}, "
              f"precision {_pct(f1['precision'])}, recall {_pct(f1['recall'])} "
              f"({f1['right_class']} of {events['true_gestures']} gestures)")
    tasks = metrics.get("task_confusion")
    if tasks is not None:
        print(f"{'gate':>8}: per-clip task accuracy {_pct(tasks['accuracy'])} "
              f"({tasks['clips']} clips); per-frame mAP {_pct(metrics['frame_ap']['mean'])}")
    recall = metrics.get("none_recall")
    if recall is not None:
        kinds = ", ".join(f"{k} {_pct(v['recall'])} of {v['clips']}"
                          for k, v in recall["by_kind"].items())
        print(f"{'none':>8}: per-clip none recall {_pct(recall['recall'])} "
              f"({recall['clips']} clips; {kinds})")
    print(f"{'speed':>8}: {metrics['frames_per_second']:.0f} images/s on {evaluation.device}"
          + (f" ({evaluation.engine})" if evaluation.engine else ""))
    print(f"{'report':>8}: {out / 'report.md'}")
    print(f"{'plots':>8}: {', '.join(str(out / p) for p in evaluation.plots)}")
    if evaluation.timeline:
        print(f"{'timeline':>8}: {out / evaluation.timeline}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"



if __name__ == "__main__":
    sys.exit(main())
