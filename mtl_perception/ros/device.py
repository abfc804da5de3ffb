"""The node's `device` and `autocast` parameters -> a torch device and dtype (no rclpy)."""

from __future__ import annotations

import torch

AUTOCAST_MODES = ("none", "fp16", "bf16")


class DeviceError(ValueError):
    """A device that this machine does not have."""


def resolve_device(name: str) -> tuple[torch.device, str]:
    """`auto` | `cpu` | `cuda` | `cuda:N` -> (device, one log line saying which and why)."""
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
            return device, f"device auto: using {device} ({torch.cuda.get_device_name(device)})"
        return torch.device("cpu"), "device auto: using cpu (no CUDA device available)"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name}: CUDA is not available on this machine")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        device = torch.device("cuda", index)
        return device, f"device {name}: using {device} ({torch.cuda.get_device_name(device)})"
    return device, f"device {name}: using cpu"


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
