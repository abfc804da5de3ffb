"""Driving the streaming core over a bag's images, offline and deterministically.

`run_pipeline` pushes every image into `StreamPipeline(realtime=False)`
from this thread and lets the pipeline score clips here too (no worker
thread): the order of every operation is fixed by the bag alone, so two runs
give identical predictions. It times the three stages it can see apart:
reading (bag I/O + deserialisation), push (image decoding + preprocessing +
buffering, and the inference the pipeline runs inside a push when its
offline queue is full) and inference (the model's forward passes, from the
results); push minus inference is decoding + preprocessing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtl_perception.bag.labels import Interval
from mtl_perception.bag.metrics import ClipRecord, compute
from mtl_perception.bag.order import DEFAULT_WINDOW_S, StampOrder
from mtl_perception.bag.progress import Progress
from mtl_perception.bag.reader import ReadReport
from mtl_perception.bag.shown import ShownSpan
from mtl_perception.bag.untrimmed import GESTURE, EmittedEvent, emitted, untrimmed_metrics
from mtl_perception.deploy.engine import Engine
from mtl_perception.settings import SettingsError, apply_overrides, from_dict, load_yaml
from mtl_perception.stream import (
    CameraStats,
    ClipResult,
    GestureEvent,
    ImageDecodeError,
    StreamConfig,
    StreamPipeline,
    StreamStats,
    detect_events,
)
from mtl_perception.stream.decode import header_of
from mtl_perception.stream.events import resolve_source

LOG = logging.getLogger("evaluate_bag")
NODE_SECTION = ("perception_node", "ros__parameters")


class EvaluationError(RuntimeError):
    """Nothing could be evaluated (no clip scored, an undecodable image topic)."""


def load_stream_config(path: Path | None, overrides: Sequence[str]) -> StreamConfig:
    """StreamConfig from a YAML file (plain, or the node's parameter file) plus overrides."""
    data = stream_settings(path, overrides)
    where = f"stream settings ({path})" if path is not None else "stream settings"
    config = from_dict(StreamConfig, data, where)
    if not isinstance(config, StreamConfig):  # from_dict's typing is generic
        raise SettingsError(f"{where}: not a StreamConfig")
    return config


def settings_that_can_act(config: StreamConfig, gated: bool
                          ) -> tuple[StreamConfig, list[str]]:
    """The settings a model without a task gate can honour, and a line for each one that
    cannot (gate publish/filter, event_source gate): what is used instead is what the
    outputs report, never a source that gave nothing."""
    if gated:
        return config, []
    lines = []
    changes: dict[str, Any] = {}
    if config.gate != "off":
        lines.append(f"gate={config.gate} asked for, but the model has no task gate: "
                     "results as with gate=off (add one with `python -m training fit-gate`)")
        changes["gate"] = "off"
    if config.event_source == "gate":
        lines.append("event_source=gate asked for, but the model has no task gate: gesture "
                     "events from max_softmax instead")
        changes["event_source"] = "max_softmax"
    return dataclasses.replace(config, **changes), lines


def stream_settings(path: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The stream settings the file and the overrides give, before defaults fill the rest.

    The node's parameter file (config/perception.yaml) is read as the node reads it:
    every `ros__parameters` section whose key names this node (`/**`, `perception_node`,
    `/robot1/perception_node`, nested `robot1: perception_node:`, `*`), later ones
    over earlier ones; sections for several namespaces are ambiguous and refused.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = load_yaml(path)
        sections = list(_parameter_sections(data, ()))
        if sections:  # the node's file: keep the stream's own settings
            data = _node_settings(path, sections)
        node_keys = [k for k in data if k == NODE_SECTION[0] or str(k).startswith("/")]
        if not sections and node_keys:  # a node's file without its parameters section
            raise SettingsError(f"{path}: {node_keys[0]}: expected {NODE_SECTION[1]}: with "
                                "a mapping of parameter names to values under it")
    return apply_overrides(data, overrides)


def _parameter_sections(data: Any, prefix: tuple[str, ...]
                        ) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(key path, parameters) of every `ros__parameters` section, in file order."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if not isinstance(value, dict):
            continue
        here = prefix + tuple(p for p in str(key).split("/") if p)
        if "ros__parameters" in value:
            yield here, value["ros__parameters"]
        else:
            yield from _parameter_sections(value, here)


def _node_settings(path: Path, sections: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(StreamConfig)}
    mine = [(key, params) for key, params in sections
            if key and key[-1] in ("**", "*", NODE_SECTION[0])]
    if not mine:
        found = ", ".join("/" + "/".join(key) for key, _ in sections)
        raise SettingsError(f"{path}: no ros__parameters for {NODE_SECTION[0]} (keys {found}; "
                            f"expected /**, {NODE_SECTION[0]} or /NAMESPACE/{NODE_SECTION[0]})")
    spaces = {key[:-1] for key, _ in mine if key[-1] != "**" and key[:-1] not in ((), ("**",))}
    if len(spaces) > 1:
        raise SettingsError(f"{path}: settings for several nodes ("
                            + ", ".join(sorted("/" + "/".join(s) for s in spaces))
                            + "); give evaluate_bag a file with one")
    data: dict[str, Any] = {}
    for key, params in mine:
        if not isinstance(params, dict):
            raise SettingsError(f"{path}: {'/' + '/'.join(key)}: ros__parameters: expected a "
                                "mapping of parameter names to values")
        data.update({k: v for k, v in params.items() if k in names})
    return data


@dataclass
class Evaluation:
    """Everything one run produced; `score` adds the metrics."""

    tasks: list[str]
    class_names: dict[str, tuple[str, ...]]
    config: StreamConfig
    read: ReadReport
    results: list[ClipResult]
    first_stamp_ns: int
    images: int
    timing: dict[str, float]
    stats: StreamStats
    device: str
    warnings: list[str] = field(default_factory=list)
    # clip sequence -> log time of the message that completed it (--write-bag); by
    # message, not by stamp: stamps may repeat (a looping bag)
    log_times: list[int] = field(default_factory=list)
    first_log_time_ns: int = 0
    order: StampOrder = field(default_factory=StampOrder)
    metrics: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    events: list[GestureEvent] = field(default_factory=list)  # set by `score`
    intervals: list[Interval] = field(default_factory=list)  # what `score` was given
    timeline: str | None = None  # the timeline plot's file name, --unlabelled none only
    engine: str = ""  # which engine ran the forward pass (backend, device, precision)
    shown: list[ShownSpan] = field(default_factory=list)  # what none time shows (shown.csv)

    def records(self) -> list[ClipRecord]:
        t0 = self.first_stamp_ns
        return [
            ClipRecord(
                first_s=(r.first_stamp_ns - t0) / 1e9,
                last_s=(r.last_stamp_ns - t0) / 1e9,
                probs={t: r.tasks[t].smoothed for t in self.tasks},
                raw={t: r.tasks[t].probabilities for t in self.tasks},
                gate=r.gate,
            )
            for r in self.results
        ]

    def score(self, intervals: Sequence[Interval], unlabelled: str = "ignore",
              late_s: float = 2.0) -> dict[str, Any]:
        """The metrics; with `unlabelled` "none" also the untrimmed-stream sections
        (`bag/untrimmed.py`). Sets `self.events`: the gesture events the node's rule
        gives on these results (`stream/events.py`, the stream settings' `event_*`)."""
        records = self.records()
        self.intervals = list(intervals)
        if GESTURE in self.class_names:
            self.events = detect_events(self.results, self.class_names[GESTURE], self.config)
        metrics = compute(records, intervals, self.class_names)
        if unlabelled == "none":
            metrics.update(self._untrimmed(records, intervals, late_s))
        for task in self.tasks:
            section = metrics[task]
            if section["segments"] and not section["segments_scored"]:
                self.warnings.append(
                    f"{task}: none of its {section['segments']} labelled intervals covers half "
                    "of any clip, so nothing was scored (labels outside the images, or shorter "
                    "than half a clip?)")
        wall = self.timing["wall_s"]
        inference = self.stats.inference_ms
        metrics.update(
            clips=len(self.results),
            latency_ms={"p50": _finite(inference.p50), "p95": _finite(inference.p95)},
            frames_per_second=self.images / wall if wall > 0 else 0.0,
        )
        self.metrics = metrics
        return metrics

    def emitted_events(self) -> list[EmittedEvent]:
        """`self.events` in seconds from the first image (what the metrics judge)."""
        return emitted(self.events, self.first_stamp_ns)

    def _untrimmed(self, records: list[ClipRecord], intervals: Sequence[Interval],
                   late_s: float) -> dict[str, Any]:
        out = untrimmed_metrics(records, intervals, self.class_names, self.emitted_events(),
                                self.config.target_fps, late_s, self.shown)
        if "gesture_events" in out:
            has_gate = any(r.gate is not None for r in self.results)
            out["gesture_events"]["source"] = resolve_source(self.config.event_source, has_gate)
        return out


def run_pipeline(
    engine: Engine,
    config: StreamConfig,
    images: Iterator[tuple[int, Any]],
    read: ReadReport,
    *,
    progress: Progress | None = None,
    keep_log_times: bool = False,
    reorder_window_s: float = DEFAULT_WINDOW_S,
) -> Evaluation:
    """Push every image, in stamp order (`order.py`), through the offline pipeline.

    Raises EvaluationError if no clip could be scored.
    """
    results: list[ClipResult] = []
    errors: list[str] = []

    def on_error(camera: str, error: ImageDecodeError) -> None:
        errors.append(f"{camera}: {error} (such frames skipped and counted)")
        LOG.warning("%s", errors[-1])

    pipeline = StreamPipeline(engine, config=config, on_result=results.append,
                              on_error=on_error, realtime=False)
    camera = read.topic
    log_times: list[int] = []
    count, first_stamp, first_log_time = 0, None, 0
    read_s = push_s = 0.0
    order = StampOrder(reorder_window_s, jump_s=config.max_gap_s)
    images = order.sorted(images)
    start = time.perf_counter()
    with torch.inference_mode():
        while True:
            tic = time.perf_counter()
            item = next(images, None)
            toc = time.perf_counter()
            read_s += toc - tic
            if item is None:
                break
            log_time, msg = item
            if first_stamp is None:  # an invalid stamp raises: push refuses that frame too
                with contextlib.suppress(ImageDecodeError):
                    first_stamp, first_log_time = header_of(msg).stamp_ns, log_time
            pipeline.push(camera, msg)
            if keep_log_times:  # the clips this message completed are logged at its time
                log_times += [log_time] * (pipeline.clips_made(camera) - len(log_times))
            push_s += time.perf_counter() - toc
            count += 1
            if progress is not None:
                progress.update(count)
        tic = time.perf_counter()
        pipeline.flush()
        push_s += time.perf_counter() - tic
    wall = time.perf_counter() - start
    if progress is not None:
        progress.close(count)
    stats = pipeline.stats()
    errors += _order_warnings(order, stats.cameras.get(camera))
    if not results:
        raise EvaluationError(_nothing_scored(read, count, stats, pipeline, errors))
    inference_s = _inference_seconds(results)
    timing = {
        "wall_s": wall, "read_s": read_s, "push_s": push_s, "inference_s": inference_s,
        "decode_preprocess_s": max(push_s - inference_s, 0.0),
    }
    info = engine.info
    return Evaluation(
        tasks=list(info.model.task_names),
        class_names={t: info.classes_of(t) for t in info.model.task_names},
        config=config, read=read, results=results, first_stamp_ns=first_stamp or 0,
        images=count, timing=timing, stats=stats, device=str(pipeline.device),
        warnings=errors, log_times=log_times, first_log_time_ns=first_log_time, order=order,
        engine=pipeline.engine,
    )


def _order_warnings(order: StampOrder, camera: CameraStats | None) -> list[str]:
    """Say what happened to images that were not in stamp order (nothing silently lost)."""
    notes = []
    if order.reordered:
        notes.append(f"{order.reordered} images were logged out of header-stamp order and "
                     f"were put back in order (--reorder-window-s {order.window_s})")
    if order.late:
        notes.append(f"{order.late} images came more than --reorder-window-s "
                     f"{order.window_s} s late and were dropped as out of order; a larger "
                     "window puts them back")
    elif camera is not None and order.window_s == 0 and camera.frames_late:
        notes.append(f"{camera.frames_late} images were stamped before an earlier image and "
                     "were dropped as out of order (--reorder-window-s puts them back in order)")
    if camera is not None and camera.frames_repeated:
        notes.append(f"{camera.frames_repeated} images repeated the header stamp of the image "
                     "before them and were dropped (a recorder that does not set header.stamp?)")
    if camera is not None and camera.frames_other_frame_id:
        notes.append(f"{camera.frames_other_frame_id} images had another header.frame_id than "
                     "the images before them (two cameras on one topic?) and were dropped: a "
                     "clip never mixes two cameras")
    if camera is not None and camera.clips_nonfinite:
        notes.append(f"the model gave NaN or inf for {camera.clips_nonfinite} clips: they were "
                     "skipped (an fp16 overflow under --autocast, or damaged weights?)")
    if order.jumps_back:
        notes.append(f"the header stamps jumped back by more than max_gap_s {order.jump_s} s "
                     f"{order.jumps_back} times (a bag that loops, or a restarted clock): the "
                     "stream started afresh each time, and label times (seconds from the first "
                     "image) cannot tell the passes apart")
    return notes


def _inference_seconds(results: list[ClipResult]) -> float:
    """Sum of forward passes: clips of one batch share one `inference_ms` value."""
    total, previous = 0.0, None
    for result in results:
        if result.inference_ms != previous:
            total += result.inference_ms / 1e3
        previous = result.inference_ms
    return total


def _nothing_scored(read: ReadReport, count: int, stats: StreamStats,
                    pipeline: StreamPipeline, errors: list[str]) -> str:
    camera = stats.cameras.get(read.topic)
    sampled = camera.frames_sampled if camera is not None else 0
    if errors and sampled == 0:
        return f"bag {read.path}: no image on {read.topic} could be decoded: {errors[0]}"
    stamps = _stamp_problems(camera, pipeline.config.max_gap_s)
    if stamps:
        return (f"bag {read.path}: no clip could be scored: of {count} images, {sampled} were "
                f"sampled; {stamps}; clips are cut by header stamp, so the stamps must rise "
                "(check the recorder's header.stamp)")
    return (f"bag {read.path}: no clip could be scored: {count} images read, {sampled} sampled "
            f"at target_fps {pipeline.config.target_fps}; a clip needs {pipeline.clip_length} "
            f"sampled frames without a stamp gap over max_gap_s {pipeline.config.max_gap_s} s")


def _stamp_problems(camera: CameraStats | None, max_gap_s: float) -> str:
    """What is wrong with the stamps, in words (all equal, looping, jumping), or ''."""
    if camera is None:
        return ""
    problems = []
    if camera.frames_repeated:
        problems.append(f"{camera.frames_repeated} repeat the stamp before them (all-equal "
                        "stamps?)")
    if camera.frames_late:
        problems.append(f"{camera.frames_late} are stamped before an earlier image (out of "
                        "order, or a clock that loops)")
    if camera.resets > 1:
        problems.append(f"the stamps jumped by more than max_gap_s {max_gap_s} s "
                        f"{camera.resets} times (a looping or restarted clock?)")
    return "; ".join(problems)


def _finite(value: float) -> float | None:
    return None if value != value else float(value)  # NaN before any sample
