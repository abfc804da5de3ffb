"""decode_image on real rosbags message dataclasses vs independent per-pixel references.

The references are written from the encodings' definitions (byte order,
BT.601 video-range YUV as OpenCV implements it, cv_bridge's 16 -> 8 bit
scaling), not with the decoder's code path.
"""

from __future__ import annotations

import array
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from mtl_perception.stream import ImageDecodeError, decode_image, header_of

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
Image = TYPES["sensor_msgs/msg/Image"]
CompressedImage = TYPES["sensor_msgs/msg/CompressedImage"]
Header = TYPES["std_msgs/msg/Header"]
Time = TYPES["builtin_interfaces/msg/Time"]

H, W = 6, 8
RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def header(sec: int = 12, nanosec: int = 345, frame_id: str = "cam") -> Any:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image(encoding: str, pixels: np.ndarray, pad: int = 0, big: bool = False) -> Any:
    """An Image message with `pad` junk bytes at the end of every row."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    return Image(
        header=header(),
        height=pixels.shape[0],
        width=pixels.shape[1],
        encoding=encoding,
        is_bigendian=int(big),
        step=data.shape[1],
        data=data.reshape(-1),
    )


def grey_of(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0]  # any single channel will do as a grey image


def reference_mono(grey: np.ndarray) -> np.ndarray:
    out = np.empty((*grey.shape, 3), np.uint8)
    for y in range(grey.shape[0]):
        for x in range(grey.shape[1]):
            out[y, x] = (grey[y, x],) * 3
    return out


def reference_yuv(y: int, u: int, v: int) -> tuple[int, int, int]:
    """BT.601, video range, as OpenCV's YUV 4:2:2 conversions (and so cv_bridge) use.

    OpenCV clamps luma below the video range (y < 16) to black before scaling.
    """
    c = 1.164 * max(y - 16, 0)
    r = c + 1.596 * (v - 128)
    g = c - 0.813 * (v - 128) - 0.391 * (u - 128)
    b = c + 2.018 * (u - 128)
    return tuple(int(min(255, max(0, round(ch)))) for ch in (r, g, b))  # type: ignore[return-value]


def reference_packed_yuv(data: np.ndarray, order: str) -> np.ndarray:
    """order "uyvy" or "yuyv": 4 bytes = 2 pixels sharing U and V."""
    out = np.empty((data.shape[0], data.shape[1] // 2, 3), np.uint8)
    for row in range(data.shape[0]):
        for pair in range(data.shape[1] // 4):
            b = [int(v) for v in data[row, 4 * pair : 4 * pair + 4]]
            if order == "uyvy":
                u, y0, v, y1 = b
            else:
                y0, u, y1, v = b
            out[row, 2 * pair] = reference_yuv(y0, u, v)
            out[row, 2 * pair + 1] = reference_yuv(y1, u, v)
    return out


@pytest.mark.parametrize("pad", [0, 5])
def test_rgb_family(pad: int) -> None:
    alpha = RNG.integers(0, 256, (H, W, 1), dtype=np.uint8)
    cases = {
        "rgb8": RGB,
        "bgr8": RGB[..., ::-1],
        "rgba8": np.concatenate([RGB, alpha], axis=2),
        "bgra8": np.concatenate([RGB[..., ::-1], alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        out = decode_image(image(encoding, np.ascontiguousarray(pixels), pad))
        assert out.shape == (H, W, 3) and out.dtype == np.uint8, encoding
        np.testing.assert_array_equal(out, RGB, err_msg=encoding)


@pytest.mark.parametrize("pad", [0, 3])
def test_mono8(pad: int) -> None:
    grey = grey_of(RGB)
    np.testing.assert_array_equal(
        decode_image(image("mono8", np.ascontiguousarray(grey), pad)), reference_mono(grey)
    )


@pytest.mark.parametrize(("big", "pad"), [(False, 0), (True, 0), (False, 2), (True, 4)])
def test_mono16_either_byte_order_scaled_like_cv_bridge(big: bool, pad: int) -> None:
    grey16 = RNG.integers(0, 65536, (H, W), dtype=np.uint32).astype(np.uint16)
    grey16[0, :4] = [0, 65535, 128, 385]  # 128/257 rounds down, 385/257 = 1.498 rounds down
    stored = grey16.astype(">u2" if big else "<u2")
    out = decode_image(image("mono16", stored, pad, big=big))
    # cv_bridge: convertTo(CV_8U, 255 / 65535), nearest rounding, per pixel.
    expected = np.array(
        [[round(int(v) * 255 / 65535) for v in row] for row in grey16], dtype=np.uint8
    )
    np.testing.assert_array_equal(out, reference_mono(expected))
    assert out[0, :4, 0].tolist() == [0, 255, 0, 1]


@pytest.mark.parametrize(("encoding", "order"), [("yuv422", "uyvy"), ("yuv422_yuy2", "yuyv")])
@pytest.mark.parametrize("pad", [0, 6])
def test_yuv422(encoding: str, order: str, pad: int) -> None:
    packed = RNG.integers(0, 256, (H, 2 * W), dtype=np.uint8)
    packed[0, :4] = [128, 16, 128, 235]  # black and white in either order's luma slots
    msg = image(encoding, packed.reshape(H, W, 2), pad)
    out = decode_image(msg)
    expected = reference_packed_yuv(packed, order)
    # OpenCV converts in fixed point; the float reference may differ by one level.
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "array", "list", "numpy"])
def test_every_data_container(kind: str) -> None:
    raw = RGB.tobytes()
    data: Any = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "array": array.array("B", raw),  # what rclpy gives
        "list": list(raw),
        "numpy": np.frombuffer(raw, np.uint8),  # what rosbags gives
    }[kind]
    msg = Image(
        header=header(), height=H, width=W, encoding="rgb8", is_bigendian=0, step=3 * W, data=data
    )
    np.testing.assert_array_equal(decode_image(msg), RGB)


def test_header_of_reads_stamp_and_frame_id() -> None:
    h = header_of(image("rgb8", RGB))
    assert h.stamp_ns == 12 * 10**9 + 345 and h.frame_id == "cam"
    assert (h.sec, h.nanosec) == (12, 345)


def test_png_is_lossless_and_jpeg_close() -> None:
    smooth = np.clip(np.add.outer(np.arange(32) * 6, np.arange(48) * 4), 0, 255).astype(np.uint8)
    rgb = np.stack([smooth, smooth[::-1], 255 - smooth], axis=2)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    for fmt, ext in (("png", ".png"), ("rgb8; jpeg compressed bgr8", ".jpg")):
        ok, buf = cv2.imencode(ext, bgr)
        assert ok
        msg = CompressedImage(header=header(), format=fmt, data=buf.reshape(-1))
        out = decode_image(msg)
        assert out.shape == rgb.shape
        error = np.abs(out.astype(int) - rgb.astype(int))
        if ext == ".png":
            assert error.max() == 0
        else:  # channel order right: swapped R and B would be off by ~100
            assert error.mean() < 3


def one_line_error(msg: Any, kind: str, match: str) -> None:
    with pytest.raises(ImageDecodeError, match=match) as info:
        decode_image(msg)
    assert info.value.kind == kind and "\n" not in str(info.value)


def test_bad_sizes_are_one_line_errors() -> None:
    good = image("rgb8", RGB)
    short = Image(**{**good.__dict__, "data": good.data[:-1]})
    one_line_error(short, "size", r"data has 143 bytes, expected height \* step = 6 \* 24 = 144")
    long = Image(**{**good.__dict__, "data": np.concatenate([good.data, good.data[:3]])})
    one_line_error(long, "size", "data has 147 bytes")
    narrow = Image(**{**good.__dict__, "step": 20})
    one_line_error(narrow, "size", "step 20 < width \\* 3 bytes per pixel")
    empty = Image(**{**good.__dict__, "height": 0, "data": good.data[:0]})
    one_line_error(empty, "size", "has size 8x0")
    odd = image("yuv422", RNG.integers(0, 256, (2, 3, 2), dtype=np.uint8))
    one_line_error(odd, "size", "odd width 3")
    bad_list = Image(**{**good.__dict__, "data": [300] * good.data.size})
    one_line_error(bad_list, "size", "not a list of bytes")


def test_unsupported_and_corrupt() -> None:
    bayer = image("bayer_rggb8", grey_of(RGB).copy())
    one_line_error(
        bayer, "unsupported", "unsupported image encoding 'bayer_rggb8'; supported: rgb8"
    )
    one_line_error(image("32FC1", RNG.random((H, W), dtype=np.float32)), "unsupported", "'32FC1'")
    ok, png = cv2.imencode(".png", RGB)
    assert ok
    truncated = CompressedImage(header=header(), format="png", data=png.reshape(-1)[:40])
    one_line_error(truncated, "corrupt", "corrupt or truncated")
    bmp = CompressedImage(
        header=header(), format="bmp", data=np.frombuffer(b"BM" + bytes(60), np.uint8)
    )
    one_line_error(bmp, "unsupported", "neither JPEG nor PNG")
    depth = CompressedImage(
        header=header(), format="16UC1; compressedDepth png", data=png.reshape(-1)
    )
    one_line_error(depth, "unsupported", "compressedDepth")
    nothing = CompressedImage(header=header(), format="jpeg", data=np.zeros(0, np.uint8))
    one_line_error(nothing, "size", "has no data")



def _claiming(ext: str, height: int, width: int) -> Any:
    """A small real JPEG/PNG whose header is patched to declare height x width."""
    ok, encoded = cv2.imencode(ext, np.zeros((8, 8, 3), np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    if ext == ".png":
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    else:
        at = data.find(b"\xff\xc0")
        data[at + 5:at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return CompressedImage(header=header(), format=ext[1:],
                           data=np.frombuffer(bytes(data), np.uint8))


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_a_compressed_frame_claiming_a_huge_size_is_refused_before_decoding(ext: str) -> None:
    """A 631-byte JPEG claiming 30000 x 30000 decoded to 5.7 GB of grey, scored as good."""
    one_line_error(_claiming(ext, 30000, 30000), "size",
                   "declares 30000x30000 pixels, more than 67108864")
    assert decode_image(_claiming(".jpg", 8, 8)).shape == (8, 8, 3)  # the patch itself is fine


def test_matches_cv_bridge_where_installed() -> None:
    cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge (ROS) not installed")
    sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS) not installed")
    bridge = cv_bridge.CvBridge()
    grey16 = RNG.integers(0, 65536, (H, W), dtype=np.uint32).astype(np.uint16)
    packed = RNG.integers(0, 256, (H, W, 2), dtype=np.uint8)
    cases = [
        ("rgb8", RGB, False),
        ("bgr8", np.ascontiguousarray(RGB[..., ::-1]), False),
        ("mono8", np.ascontiguousarray(grey_of(RGB)), False),
        ("mono16", grey16.astype("<u2"), False),
        ("mono16", grey16.astype(">u2"), True),
        ("yuv422", packed, False),
    ]
    for encoding, pixels, big in cases:
        ours = image(encoding, pixels, pad=4, big=big)
        msg = sensor_msgs.Image()
        msg.height, msg.width, msg.encoding = ours.height, ours.width, encoding
        msg.is_bigendian, msg.step = ours.is_bigendian, ours.step
        msg.data = ours.data.tobytes()
        expected = bridge.imgmsg_to_cv2(msg, "rgb8")
        np.testing.assert_array_equal(decode_image(ours), expected, err_msg=encoding)
