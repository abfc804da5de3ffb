"""The node's `device` and `autocast` parameters -> a torch device and dtype (no rclpy)."""

from __future__ import annotations

import torch

from mtl_perception.stream.config import StreamConfigError
from mtl_perception.stream.inference import resolve_device as stream_device

AUTOCAST_MODES = ("none", "fp16", "bf16")


class DeviceError(ValueError):
    """A device that this machine does not have."""


def resolve_device(name: str) -> tuple[torch.device, str]:
    """`auto` | `cpu` | `cuda` | `cuda:N` -> (device, one log line saying which and why).

    The checks are the streaming core's (the node hands the same name to it); this
    only adds the node's log line and pins a bare `cuda` to the current device.
    """
    try:
        device = stream_device(name)
    except StreamConfigError as exc:
        raise DeviceError(str(exc)) from exc
    if device.type != "cuda":
        why = " (no CUDA device available)" if name == "auto" else ""
        return device, f"device {name}: using cpu{why}"
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device, f"device {name}: using {device} ({torch.cuda.get_device_name(device)})"


def check_autocast(name: str, device: torch.device) -> tuple[str, str | None]:
    """The autocast mode to run with on `device`, and a log line when the setting is ignored.

    Mixed precision is a GPU speed-up; on the CPU the node runs float32.
    """
    if name not in AUTOCAST_MODES:
        raise DeviceError(f"autocast: {name!r} is not one of {list(AUTOCAST_MODES)}")
    if name == "none":
        return name, None
    if device.type != "cuda":
        return "none", f"autocast {name} ignored on {device}: running float32"
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"autocast bf16: {device} does not support bfloat16; use fp16")
    return name, None
