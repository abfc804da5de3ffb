"""Checks of a checkpoint's tensors: shapes and dtypes against the model its metadata
describes (built on the `meta` device, no memory), finite values, float32 on save."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mtl_perception.exits import one_line
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.models.state import state_mismatch


def _error(message: str) -> Exception:
    from mtl_perception.checkpoint import CheckpointError

    return CheckpointError(message)


def header_shapes(path: Path, handle: Any) -> dict[str, tuple[list[int], Any]]:
    """Name -> (shape, dtype) as the safetensors header declares them; no tensor is read."""
    shapes = {}
    for name in handle.keys():  # noqa: SIM118
        piece = handle.get_slice(name)
        code = piece.get_dtype()
        shapes[name] = (list(piece.get_shape()), _DTYPES.get(code, code))
    return shapes


def check_shapes(
    path: Path, config: ModelConfig, given: Mapping[str, tuple[list[int], Any]]
) -> None:
    """Compare declared shapes and dtypes with the model the metadata describes.

    The model is built on the `meta` device: parameters without storage, so a
    metadata width of a million costs no memory before it is refused.
    """
    try:
        with torch.device("meta"):
            expected = build_model(config).state_dict()
    except (RuntimeError, ValueError, OverflowError, MemoryError) as exc:
        raise _error(
            f"checkpoint {path}: cannot build the model its metadata describes: "
            + one_line(exc)
        ) from exc
    foreign = sorted(k for k, (_, dtype) in given.items() if isinstance(dtype, str))
    if foreign:
        raise _error(
            f"checkpoint {path}: tensor {foreign[0]} has dtype {given[foreign[0]][1]}, "
            "which no mtl_perception model uses"
        )
    declared = {
        k: torch.empty(shape, dtype=dtype, device="meta") for k, (shape, dtype) in given.items()
    }
    problems = state_mismatch(expected, declared)
    if problems:
        raise _error(
            f"checkpoint {path}: weights do not match the model its metadata describes: "
            + "; ".join(problems)
        )


def check_finite(path: Path, tensors: Mapping[str, torch.Tensor], prefix: str = "") -> None:
    """A diverged training run has NaN weights; the node would publish NaN scores."""
    bad = sorted(
        k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())
    )
    if bad:
        raise _error(
            f"{prefix}checkpoint {path} has non-finite (NaN or infinite) weights: "
            f"{len(bad)} tensors (first: {bad[:3]})"
        )


def check_float32(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Checkpoints hold float32 weights, the dtype `build_model` rebuilds on load.

    Half precision is an inference-time choice (autocast), not a checkpoint format.
    """
    other = sorted(
        k for k, v in tensors.items() if v.is_floating_point() and v.dtype != torch.float32
    )
    if other:
        raise _error(
            f"not saving {path}: checkpoints hold float32 weights; {other[0]} is "
            f"{tensors[other[0]].dtype}: call model.float() before saving"
        )


# safetensors' dtype codes; one missing here is a dtype no model of ours has.
_DTYPES: dict[str, torch.dtype] = {
    code: getattr(torch, name)
    for code, name in (
        ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"),
        ("I64", "int64"), ("I32", "int32"), ("I16", "int16"), ("I8", "int8"),
        ("U8", "uint8"), ("BOOL", "bool"), ("F8_E4M3", "float8_e4m3fn"),
        ("F8_E5M2", "float8_e5m2"),
    )
    if hasattr(torch, name)
}
