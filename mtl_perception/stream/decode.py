"""sensor_msgs/Image and CompressedImage -> RGB uint8 (H, W, 3), without cv_bridge.

Works on anything with the messages' fields: rclpy messages (data is an
`array.array`), `rosbags` dataclasses (data is a NumPy array), or plain
objects in tests (bytes, bytearray, list). The output equals cv_bridge's
`imgmsg_to_cv2(msg, "rgb8")`:

- rgb8 / bgr8 / rgba8 / bgra8: channel reorder, alpha dropped.
- mono8: grey replicated into three channels.
- mono16 (either byte order): grey replicated, then scaled to 8 bits as
  cv_bridge does (`convertTo(CV_8U, 255/65535)`, rounding to nearest), which
  is `round(v / 257)`; the halfway case never occurs for integers.
- yuv422 (UYVY byte order) and yuv422_yuy2 (YUYV): OpenCV's BT.601 conversion,
  the one cv_bridge calls.
- CompressedImage: jpeg / png through `cv2.imdecode` (colour, BGR -> RGB), as
  cv_bridge does. compressedDepth is refused, and so is a header declaring more
  than `MAX_PIXELS` (8192 x 8192), before anything is decoded.

Size checks follow cv_bridge's: `step >= width * bytes per pixel` and
`len(data) == height * step`. Everything is checked before any pixel work.
The result may be a read-only view of the message's buffer (no copy for
rgb8): copy it before writing into it.
"""

from __future__ import annotations

import array
import operator
from typing import Any

import cv2
import numpy as np
import torch

from mtl_perception.preprocess import (
    PreprocessConfig,
    frame_rows,
    preprocess_frame,
    preprocess_rows,
)
from mtl_perception.stream.results import FrameHeader

# encoding -> bytes per pixel
_BYTES_PER_PIXEL: dict[str, int] = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "mono16": 2,
    "yuv422": 2,
    "yuv422_yuy2": 2,
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_BYTES_PER_PIXEL)
SUPPORTED_FORMATS: tuple[str, ...] = ("jpeg", "png")

_JPEG_MAGIC = b"\xff\xd8"
_PNG_MAGIC = b"\x89PNG"
# 8192 x 8192: more than any robot camera (8K UHD is 33 MP). A compressed frame's
# header may claim any size: a 631-byte JPEG claiming 30000 x 30000 decoded to 5.7 GB
# of grey, scored as a good frame.
MAX_PIXELS = 1 << 26
# JPEG start-of-frame markers (SOF0..SOF15 but DHT, JPG and DAC), which hold the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageDecodeError(ValueError):
    """An image message that cannot be decoded; one line naming the problem.

    `kind` groups errors so a caller can log once per source and kind rather
    than once per frame: "unsupported" (encoding or format we do not decode),
    "size" (fields that do not describe the data), "corrupt" (compressed data
    that does not decode), "stamp" (a header stamp that is no valid time).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def is_compressed(msg: Any) -> bool:
    """True for a CompressedImage-like object (has `format`, no `encoding`)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def header_of(msg: Any) -> FrameHeader:
    """The message header as plain values (works for rclpy and rosbags messages).

    Raises ImageDecodeError (kind "stamp") for a `nanosec` outside 0..999999999:
    ROS 2 keeps whole seconds in `sec`, and such a stamp read as sec + nanosec
    would give results a stamp no frame had."""
    header = msg.header
    stamp = header.stamp
    nanosec = int(stamp.nanosec)
    if not 0 <= nanosec < 1_000_000_000:
        raise ImageDecodeError(f"header stamp nanosec {nanosec} is not in 0..999999999 (not a "
                               "valid ROS 2 time)", "stamp")
    return FrameHeader(int(stamp.sec) * 1_000_000_000 + nanosec, str(header.frame_id))


def decode_image(msg: Any, rows: np.ndarray | None = None) -> np.ndarray:
    """An Image or CompressedImage message -> RGB uint8 array (H, W, 3).

    `rows` (ascending row indices): convert only these rows and return them
    as (len(rows), W, 3); what `preprocess_rows` needs, at a fraction of the
    colour-conversion cost for large frames. The whole message is still
    validated first.
    """
    try:
        if is_compressed(msg):
            rgb = _decode_compressed(msg)
            return rgb if rows is None else rgb[rows]
        return _decode_raw(msg, rows)
    except AttributeError as exc:  # not shaped like an image message at all
        raise ImageDecodeError(f"not an image message: {exc}", "size") from exc


def _integer(msg: Any, name: str) -> int:
    """A size field as an int; a float, string or None there is a malformed message."""
    value = getattr(msg, name)
    try:
        return operator.index(value)
    except TypeError:
        raise ImageDecodeError(f"image {name} {value!r} is not an integer", "size") from None


def _as_byte_array(data: Any) -> np.ndarray:
    """The message's data as a 1-D uint8 array, without copying where possible."""
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1)
        if flat.dtype == np.uint8:
            return flat
        if flat.dtype.kind in "iu" and flat.dtype.itemsize == 1:
            return flat.view(np.uint8)
        raise ImageDecodeError(f"image data has dtype {flat.dtype}, expected uint8", "size")
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8)
        except (OverflowError, ValueError, TypeError) as exc:
            raise ImageDecodeError(f"image data is not a list of bytes: {exc}", "size") from exc
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except TypeError as exc:
        raise ImageDecodeError(
            f"image data of type {type(data).__name__} is not a byte buffer", "size"
        ) from exc


def _decode_raw(msg: Any, select: np.ndarray | None) -> np.ndarray:
    encoding = str(msg.encoding)
    bpp = _BYTES_PER_PIXEL.get(encoding.lower())
    if bpp is None:
        raise ImageDecodeError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}",
            "unsupported",
        )
    encoding = encoding.lower()
    height, width, step = (_integer(msg, name) for name in ("height", "width", "step"))
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{encoding} image has size {width}x{height}", "size")
    if step < width * bpp:
        raise ImageDecodeError(
            f"{encoding} image {width}x{height}: step {step} < width * {bpp} bytes per pixel",
            "size",
        )
    if encoding.startswith("yuv422") and width % 2:
        raise ImageDecodeError(f"{encoding} image has odd width {width}", "size")
    buf = _as_byte_array(msg.data)
    if buf.size != height * step:
        raise ImageDecodeError(
            f"{encoding} image {width}x{height}: data has {buf.size} bytes, "
            f"expected height * step = {height} * {step} = {height * step}",
            "size",
        )
    rows = buf.reshape(height, step)[:, : width * bpp]
    if select is not None:
        if len(select) and (select[0] < 0 or select[-1] >= height):
            raise ImageDecodeError(
                f"rows {select[0]}..{select[-1]} outside 0..{height - 1}", "size"
            )
        rows = rows[select]
        height = rows.shape[0]
    if encoding == "rgb8":
        return rows.reshape(height, width, 3)
    if encoding == "bgr8":
        return rows.reshape(height, width, 3)[:, :, ::-1]
    if encoding == "rgba8":
        return rows.reshape(height, width, 4)[:, :, :3]
    if encoding == "bgra8":
        return rows.reshape(height, width, 4)[:, :, 2::-1]
    if encoding == "mono8":
        return cv2.cvtColor(np.ascontiguousarray(rows), cv2.COLOR_GRAY2RGB)
    if encoding == "mono16":
        big = bool(msg.is_bigendian)
        grey16 = np.ascontiguousarray(rows).view(">u2" if big else "<u2")
        # round(v * 255 / 65535) = round(v / 257) = floor((2v + 257) / 514), exactly.
        grey8 = ((grey16.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
        return cv2.cvtColor(grey8, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_YUV2RGB_UYVY if encoding == "yuv422" else cv2.COLOR_YUV2RGB_YUY2
    return cv2.cvtColor(np.ascontiguousarray(rows).reshape(height, width, 2), code)


def _decode_compressed(msg: Any) -> np.ndarray:
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise ImageDecodeError(
            f"unsupported compressed format {fmt!r} (depth images are not camera frames)",
            "unsupported",
        )
    buf = _as_byte_array(msg.data)
    head = buf[:4].tobytes()
    if not (head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)):
        if buf.size == 0:
            raise ImageDecodeError(f"compressed image ({fmt!r}) has no data", "size")
        raise ImageDecodeError(
            f"unsupported compressed format {fmt!r}: data is neither JPEG nor PNG", "unsupported"
        )
    size = _declared_size(buf)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ImageDecodeError(
            f"compressed image ({fmt!r}, {buf.size} bytes) declares {size[1]}x{size[0]} "
            f"pixels, more than {MAX_PIXELS} (corrupt, or not a camera frame)", "size")
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. a header declaring more pixels than OpenCV's limit (a bomb)
        bgr = None
    if bgr is None:
        raise ImageDecodeError(
            f"compressed image ({fmt!r}, {buf.size} bytes) is corrupt or truncated", "corrupt"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _declared_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(height, width) a JPEG's start-of-frame or a PNG's IHDR declares; None when the
    header holds none (cv2 then finds the data corrupt)."""
    data = buf[:1 << 16].tobytes()  # the frame header comes before the scan data
    if data.startswith(_PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in _SOF_MARKERS:
            return (int.from_bytes(data[at + 5:at + 7], "big"),
                    int.from_bytes(data[at + 7:at + 9], "big"))
        if marker == 0xDA:  # start of scan without a frame header
            return None
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


def prepare_frame(msg: Any, config: PreprocessConfig) -> torch.Tensor:
    """An Image/CompressedImage message -> preprocessed frame (3, crop_h, crop_w), as push() does.

    Raw images convert only the rows preprocessing reads (same bits as
    `preprocess_frame(decode_image(msg), config)`, a fraction of the work).
    """
    if not is_compressed(msg):
        height, width = getattr(msg, "height", None), getattr(msg, "width", None)
        # Sizes that are not positive ints: decode_image below says what is wrong.
        if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            rows = frame_rows(height, width, config)
            if rows is not None:
                return preprocess_rows(decode_image(msg, rows), (height, width), config)
    return preprocess_frame(decode_image(msg), config)
