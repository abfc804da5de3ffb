"""Hostile image messages and settings against the streaming core.

Every bad message must end in `ImageDecodeError` (the pipeline then skips and
counts the frame); no other exception may escape `decode_image` or `push`,
whatever the message's field types (a malformed rclpy/rosbags message, a
decompression bomb in a CompressedImage).
"""

from __future__ import annotations

import struct
import types
import zlib
from typing import Any

import numpy as np
import pytest
import torch

from mtl_perception.checkpoint import CheckpointInfo
from mtl_perception.models import ModelConfig
from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.stream import (
    FrameHeader,
    ImageDecodeError,
    StreamPipeline,
    decode_image,
)

INFO = CheckpointInfo(ModelConfig(num_classes=(3, 2)), (("a", "b", "c"), ("x", "y")),
                      PreprocessConfig(clip_length=2, resize=(8, 8), crop=(8, 8)))


class ZeroModel(torch.nn.Module):
    def score_all(self, clips: torch.Tensor) -> list[torch.Tensor]:
        return [torch.zeros(clips.shape[0], 3), torch.zeros(clips.shape[0], 2)]


def raw(**fields: Any) -> Any:
    stamp = types.SimpleNamespace(sec=1, nanosec=0)
    values: dict[str, Any] = dict(header=types.SimpleNamespace(stamp=stamp, frame_id="c"),
                                  height=2, width=2, encoding="rgb8", is_bigendian=0, step=6,
                                  data=bytes(12))
    values.update(fields)
    return types.SimpleNamespace(**values)


def png_bomb() -> bytes:
    """A valid PNG header declaring 60000 x 60000 pixels: over OpenCV's pixel limit."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b""))


HOSTILE = {
    "width None": raw(width=None),
    "height NaN": raw(height=float("nan")),
    "width 2.5": raw(width=2.5),
    "width as text": raw(width="2"),
    "step None": raw(step=None),
    "no step field": types.SimpleNamespace(height=2, width=2, encoding="rgb8", data=bytes(12)),
    "huge sizes": raw(width=2**31, height=2**31, step=3 * 2**31),
    "negative step": raw(step=-6),
    "png bomb": types.SimpleNamespace(format="png", data=png_bomb()),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_decode_image_refuses_hostile_messages_with_its_own_error(name: str) -> None:
    with pytest.raises(ImageDecodeError) as error:
        decode_image(HOSTILE[name])
    assert "\n" not in str(error.value) and str(error.value)


def test_integral_sizes_of_any_int_type_still_decode() -> None:
    rgb = decode_image(raw(width=np.uint32(2), height=np.int64(2), step=np.uint32(6),
                           data=np.arange(12, dtype=np.uint8)))
    assert rgb.shape == (2, 2, 3) and rgb[1, 1].tolist() == [9, 10, 11]


def test_push_skips_and_counts_hostile_messages_and_keeps_going() -> None:
    errors: list[str] = []
    pipeline = StreamPipeline(ZeroModel(), INFO, realtime=False,
                              on_error=lambda camera, exc: errors.append(exc.kind))
    for msg in HOSTILE.values():
        if hasattr(msg, "header"):
            assert pipeline.push("cam", msg) is False
    assert pipeline.push_frame("cam", np.zeros((8, 8, 3), np.uint8), FrameHeader(2 * 10**9, "c"))
    stats = pipeline.stats().cameras["cam"]
    assert stats.decode_errors == sum(hasattr(m, "header") for m in HOSTILE.values())
    assert errors and set(errors) <= {"size", "corrupt", "unsupported"}


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "", "cuda:99"])
def test_an_unusable_device_is_a_stream_config_error(device: str) -> None:
    if device == "cuda:99" and not torch.cuda.is_available():
        device = "cuda"  # still refused here, with the CUDA message
    with pytest.raises(ValueError, match="device"):  # DeviceError, one line
        StreamPipeline(ZeroModel(), INFO, device=device)
