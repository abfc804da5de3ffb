"""Device and autocast names -> what the engines run on (the one `resolve_device`).

Training, the streaming core, bag evaluation and the node all resolve a
device name here, so `auto`, `cuda:N` and a missing GPU read the same
everywhere.
"""

from __future__ import annotations

import torch

from mtl_perception.deploy.errors import DeviceError

AUTOCAST_MODES: dict[str, torch.dtype | None] = {
    "none": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` (the GPU when there is one) | `cpu` | `cuda` | `cuda:N` -> a torch device;
    one DeviceError line for a name that is not a device or a GPU this machine lacks."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device {device!r} is not auto, cpu, cuda or cuda:N") from exc
    if resolved.type not in ("cpu", "cuda"):  # mps, xpu, meta...: torch knows the name, but
        # no engine here runs there (torch failed on its first tensor, the ONNX engines ran
        # on the CPU while saying mps)
        raise DeviceError(f"device {device!r} is not auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} asked for, but CUDA is not available")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise DeviceError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return resolved


def describe_device(name: str, device: torch.device) -> str:
    """One log line: which device a name gave, and why (the node logs it at configure)."""
    if device.type != "cuda":
        why = " (no CUDA device available)" if name == "auto" else ""
        return f"device {name}: using cpu{why}"
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"device {name}: using cuda:{index} ({torch.cuda.get_device_name(index)})"


def check_autocast(name: str, device: torch.device) -> tuple[str, str | None]:
    """The autocast mode to run with on `device`, and a log line when it is ignored.

    Mixed precision is a GPU speed-up; on the CPU engines run float32.
    """
    if name not in AUTOCAST_MODES:
        raise DeviceError(f"autocast must be one of {list(AUTOCAST_MODES)}, got {name!r}")
    if name == "none":
        return name, None
    if device.type != "cuda":
        return "none", f"autocast {name} ignored on {device}: running float32"
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"autocast bf16: {device} does not support bfloat16; use fp16")
    return name, None
