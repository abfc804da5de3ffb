"""A model -> ONNX bytes carrying its metadata, and the parity check against PyTorch.

Exporter: torch's TorchScript-based `torch.onnx.export(dynamo=False)`. It
traces one forward pass, so LWS's argmax routing (`score_all` reads the route
with `.tolist()`) is frozen into the graph as constants, which is what
inference wants; the torch.export-based exporter refuses that data-dependent
read, and takes 5 to 40 times longer on these models.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from mtl_perception.checkpoint import METADATA_KEY, CheckpointInfo, info_metadata
from mtl_perception.deploy.onnx_file import (
    CHECKSUM_KEY,
    EXPORT_KEY,
    GATE_OUTPUT,
    INPUT_NAME,
    ExportInfo,
    OnnxModel,
    content_checksum,
    graph_digest,
    output_names,
    parse_onnx,
    require,
)
from mtl_perception.exits import one_line
from mtl_perception.models.archs import clip_length_problem

DEFAULT_OPSET = 17
INT8_MIN_OPSET = 13  # QDQ with per-channel scales (the `axis` of DequantizeLinear)


def opset_range() -> tuple[int, int]:
    """The ONNX opsets torch's exporter writes; outside them it printed its whole graph on
    stdout (above) or wrote a graph no engine runs (below 7)."""
    constants = getattr(torch.onnx, "_constants", None)
    return (int(getattr(constants, "ONNX_MIN_OPSET", 7)),
            int(getattr(constants, "ONNX_MAX_OPSET", DEFAULT_OPSET)))


class ExportError(ValueError):
    """A model that cannot be exported as asked; one line."""


class _ScoreAll(nn.Module):
    """`score_all` as a forward with a tuple of outputs (what the exporter traces)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, ...]:
        score_all = cast(Callable[[torch.Tensor], list[torch.Tensor]], self.model.score_all)
        return tuple(score_all(clips))


def model_outputs(model: nn.Module, info: CheckpointInfo) -> tuple[str, ...]:
    """Output names for `model`; a gate on the model but not in the metadata is refused."""
    names = output_names(info)
    if (getattr(model, "gate", None) is not None) != (GATE_OUTPUT in names):
        raise ExportError("the model's task gate and its metadata's model config disagree")
    return names


def export_onnx(
    model: nn.Module,
    info: CheckpointInfo,
    *,
    source_sha256: str = "",
    opset: int = DEFAULT_OPSET,
    batch: int = 0,
    frames: int = 0,
    max_abs_diff: float = math.nan,
) -> OnnxModel:
    """Trace `model.score_all` into ONNX; `batch` 0 = dynamic, `frames` 0 = the checkpoint's.

    The metadata's clip length becomes `frames`, so whoever runs the file cuts
    clips of the length the graph takes.
    """
    onnx = require("onnx", "onnx", "exporting to ONNX")
    low, high = opset_range()
    if not low <= opset <= high:
        raise ExportError(f"opset {opset}: this torch exports ONNX opsets {low}..{high} "
                          f"(default {DEFAULT_OPSET})")
    frames = frames or info.preprocess.clip_length
    if batch < 0 or frames < 1:
        raise ExportError(
            f"batch must be >= 0 (0 = dynamic) and frames >= 1, got {batch}, {frames}"
        )
    problem = clip_length_problem(info.model.arch, info.model.frame_differences, frames)
    if problem is not None:  # frame differences need 2 frames, a causal arch its field
        raise ExportError(f"export frames: {problem}")
    if frames > info.preprocess.clip_length:  # as the stream's settings: narrower only
        raise ExportError(f"export frames {frames} > the {info.preprocess.clip_length} the "
                          "model was trained on: a longer clip than trained scores worse, "
                          "silently (16 for 8 lost 10-13 points on the demo's bag)")
    info = replace(info, preprocess=replace(info.preprocess, clip_length=frames))
    names = model_outputs(model, info)
    wrapper = _ScoreAll(model)
    was_training = model.training
    wrapper.eval()  # the exporter restores the wrapper's mode afterwards: keep it eval
    example = torch.zeros((batch or 2, 3, frames, *info.preprocess.crop))
    dynamic = None
    if batch == 0:
        dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *names)}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # TracerWarnings about LWS's route read as Python numbers: that freeze is wanted.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (example.to(_device_of(model)),), cast(Any, buffer), dynamo=False,
                opset_version=opset, input_names=[INPUT_NAME], output_names=list(names),
                dynamic_axes=dynamic, do_constant_folding=True,
            )
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ExportError(f"ONNX export failed (opset {opset}): {one_line(exc)}") from exc
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "mtl_perception"
    export = ExportInfo(
        source_sha256=source_sha256, outputs=names, batch=batch, frames=frames, opset=opset,
        precision="fp32", max_abs_diff=max_abs_diff,
    )
    return with_metadata(proto.SerializeToString(), info, export)


def with_metadata(data: bytes, info: CheckpointInfo, export: ExportInfo) -> OnnxModel:
    """ONNX bytes with the two metadata documents set (graph checksum computed here),
    read back through the same checks a user's file goes through."""
    onnx = require("onnx", "onnx", "exporting to ONNX")
    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    export = replace(export, graph_sha256=graph_digest(data))
    for key, value in ((METADATA_KEY, info_metadata(info)), (EXPORT_KEY, export.to_json())):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    checksum = content_checksum(proto)  # last: over the model and every property above
    entry = proto.metadata_props.add()
    entry.key, entry.value = CHECKSUM_KEY, checksum
    return parse_onnx(proto.SerializeToString())


def max_difference(model: nn.Module, exported: OnnxModel, clips: torch.Tensor) -> float:
    """Largest |ONNX Runtime - PyTorch| over every output and clip (float32 logits).

    A fixed-batch graph gets its last, short batch padded with zeros and only the real
    rows compared (they were skipped: real clips fewer than the batch went unchecked).
    A graph ONNX Runtime cannot load or run is one ExportError line."""
    ort = require("onnxruntime", "onnx", "checking an export against PyTorch")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = _checked(lambda: ort.InferenceSession(
        exported.data, options, providers=["CPUExecutionProvider"]), exported)
    worst = 0.0
    step = exported.export.batch or max(1, clips.shape[0])
    score_all = cast(Callable[[torch.Tensor], list[torch.Tensor]], model.score_all)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, clips.shape[0], step):
            x = clips[start:start + step]
            with torch.no_grad():
                reference = [t.float().cpu().numpy() for t in score_all(x)]
            feed = np.zeros((step, *x.shape[1:]), np.float32)
            feed[:len(x)] = x.cpu().numpy()
            got = _checked(partial(session.run, None, {INPUT_NAME: feed}), exported)
            for a, b in zip(got, reference):
                worst = max(worst, float(np.abs(a[:len(x)] - b).max()))
    finally:
        model.train(was_training)
    return worst


def _checked(call: Callable[[], Any], exported: OnnxModel) -> Any:
    """ONNX Runtime's own exception types (Fail, NotImplemented, InvalidGraph: none of
    them a ValueError) as one ExportError line naming the export."""
    try:
        return call()
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot run the export (opset "
                          f"{exported.export.opset}, {exported.export.precision}): "
                          f"{one_line(exc)}") from exc


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
