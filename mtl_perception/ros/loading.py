"""Configure's model loading: settings -> a warmed-up streaming core (no rclpy here).

The node calls `load_pipeline` in its configure transition; a failure is a
`CheckpointError` or `ValueError` whose message is the one line the node logs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from mtl_perception.deploy.device import check_autocast, describe_device, resolve_device
from mtl_perception.deploy.load import load_engine
from mtl_perception.exits import os_error_line
from mtl_perception.ros import messages
from mtl_perception.ros.batching import cameras_batch
from mtl_perception.ros.gate_topics import no_gate_warning
from mtl_perception.ros.node_config import NodeConfig
from mtl_perception.ros.params import BY_NAME, missing_checkpoint_hint
from mtl_perception.stream import StreamPipeline
from mtl_perception.stream.camera import ErrorCallback
from mtl_perception.stream.decisions import explicit_settings, with_stored_decisions
from mtl_perception.stream.pipeline import ResultCallback
from mtl_perception.stream.rate import choose_target_fps, rate_warning


@dataclass(frozen=True)
class Loaded:
    pipeline: StreamPipeline
    config: NodeConfig  # with the target_fps the model asked for
    description: str  # model, checkpoint and engine, for the log and /diagnostics
    warmup_ms: float
    gated: bool  # the model has a task gate


def load_pipeline(config: NodeConfig, on_result: ResultCallback, on_error: ErrorCallback,
                  log: Any) -> Loaded:
    """Resolve the device, load the checkpoint, build and warm up the realtime core;
    `log` gets `info`/`warning` lines (the node's logger)."""
    device = resolve_device(config.node.device)
    log.info(describe_device(config.node.device, device))
    autocast, autocast_line = check_autocast(config.node.autocast, device)
    if autocast_line:
        log.warning(autocast_line)
    try:
        found = config.checkpoint.exists()
    except OSError as exc:  # a name too long for the file system: one line, not a traceback
        raise ValueError(f"checkpoint {os_error_line(exc)}") from exc
    if not found:
        raise ValueError(missing_checkpoint_hint(str(config.checkpoint.absolute())))
    if config.node.cpu_threads:  # before the engine is built: ONNX Runtime reads it then
        torch.set_num_threads(config.node.cpu_threads)
    stream = config.stream
    engine = load_engine(
        config.checkpoint, stream.backend, config.node.device, autocast=autocast,
        engine_cache=stream.engine_cache, clip_length=stream.clip_length,
        max_batch=stream.max_batch or len(config.node.image_topics))
    # A uniform-sampled model's own rate unless target_fps was changed from its default.
    changed = stream.target_fps != BY_NAME["target_fps"].default
    stream, rate_line = choose_target_fps(stream, engine.info, changed)
    if rate_line:
        log.info(rate_line)
    if (rate_problem := rate_warning(stream, engine.info)) is not None:  # once, at configure
        log.warning(rate_problem)
    # fit-gate's stored event settings where a parameter keeps its default (issue 24)
    stream, decisions_line = with_stored_decisions(stream, engine.info,
                                                   explicit_settings(config.stream))
    if decisions_line:
        log.info(decisions_line)
    if stream.max_batch == 0 and engine.device.type == "cpu":
        batch, batch_line = cameras_batch(
            lambda n: engine.warmup(n, stream.clip_length), len(config.node.image_topics))
        if batch_line:
            log.info(batch_line)
        stream = replace(stream, max_batch=batch)
    config = replace(config, stream=stream)
    pipeline = StreamPipeline(engine, config=stream, on_result=on_result, on_error=on_error,
                              realtime=True)
    warmup_ms = pipeline.warmup()
    description = (f"{messages.describe_model(engine.info, pipeline.clip_length)} "
                   f"({config.checkpoint.name}); engine {pipeline.engine}")
    gated = engine.has_gate  # from the model's metadata, whichever backend runs it
    if not gated and stream.gate != "off":
        log.warning(no_gate_warning(stream.gate))
    return Loaded(pipeline, config, description, warmup_ms, gated)

