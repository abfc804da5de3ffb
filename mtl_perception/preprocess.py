"""Frames -> normalised clip tensor: the project's only copy of this step.

Training, bag evaluation and the live node all call these functions, so an
accuracy measured offline is the accuracy the robot gets. The defaults follow
torchvision's video classification preset for the Kinetics-400 R3D weights:
bilinear resize to 128x171 (no antialiasing, as the preset hard-codes), centre
crop 112x112, scale to [0, 1], normalise with the Kinetics-400 statistics.

Every step works per frame, so preprocessing frames one at a time as they
arrive (the node's ring buffer) gives exactly the clip that preprocessing the
whole clip at once gives (training).
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
# Bounds far beyond any real model input: a value past them is a typo or a hostile file,
# and would otherwise allocate gigabytes per frame before anything failed.
MAX_SIDE = 4096
MAX_CLIP_LENGTH = 1024


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw RGB frames become a model input; stored in every checkpoint."""

    clip_length: int = 32
    resize: tuple[int, int] = (128, 171)  # (H, W) before the crop
    crop: tuple[int, int] = (112, 112)  # (H, W) fed to the network
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    antialias: bool = False

    def __post_init__(self) -> None:
        # Every consumer (checkpoint loader, training, the node) builds this dataclass,
        # so a value that cannot work is refused here once, before any frame is touched.
        _check_int("clip_length", self.clip_length, 1, MAX_CLIP_LENGTH)
        for name in ("resize", "crop", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list):  # from hand-written code; stored as a tuple
                object.__setattr__(self, name, tuple(value))
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 2:
                raise ValueError(f"{name} must be a (height, width) pair, got {value!r}")
            for side in value:
                _check_int(name, side, 1, MAX_SIDE)
        if self.crop[0] > self.resize[0] or self.crop[1] > self.resize[1]:
            raise ValueError(f"crop {self.crop} is larger than resize {self.resize}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 3:
                raise ValueError(f"{name} must be three numbers (R, G, B), got {value!r}")
            for number in value:
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    raise ValueError(f"{name} must hold numbers, got {number!r}")
                if not math.isfinite(number):
                    raise ValueError(f"{name} must be finite, got {value}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0 (it divides), got {self.std}")
        if not isinstance(self.antialias, bool):
            raise ValueError(f"antialias must be true or false, got {self.antialias!r}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


def preprocess_frames(frames: np.ndarray | torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """RGB uint8 frames (T, H, W, 3) -> float32 tensor (3, T, crop_h, crop_w).

    Frames on the CPU (NumPy arrays or CPU tensors) go one by one through
    `preprocess_frame`, so a clip preprocessed here (training) is bit for bit
    the clip the node assembles from frames preprocessed on arrival. A tensor
    on another device stays there and is processed as one batch (same
    arithmetic, equal up to float rounding).
    """
    if isinstance(frames, torch.Tensor) and frames.device.type != "cpu":
        return _preprocess_batch(_as_uint8_tensor(frames), config)
    video = _as_uint8_array(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected RGB frames shaped (T, H, W, 3), got {tuple(video.shape)}")
    if len(video) == 0:
        raise ValueError("cannot build a clip from zero frames")
    return torch.stack([_preprocess_one(frame, config) for frame in video], dim=1)


def preprocess_frame(frame: np.ndarray | torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """One RGB uint8 frame (H, W, 3) -> (3, crop_h, crop_w), for per-frame buffering.

    Any strides are fine (a BGR view reversed with `[..., ::-1]`, padded rows):
    only the pixels the resize reads are gathered, never the whole frame.
    """
    if isinstance(frame, torch.Tensor) and frame.device.type != "cpu":
        return _preprocess_batch(_as_uint8_tensor(frame).unsqueeze(0), config)[:, 0]
    image = _as_uint8_array(frame)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB frame shaped (H, W, 3), got {tuple(image.shape)}")
    return _preprocess_one(image, config)


def stack_clip(frames: list[torch.Tensor]) -> torch.Tensor:
    """Per-frame outputs of `preprocess_frame` -> one clip (3, T, h, w)."""
    if not frames:
        raise ValueError("cannot build a clip from zero frames")
    return torch.stack(frames, dim=1)


def _as_uint8_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = (
        torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    )
    if tensor.dtype != torch.uint8:
        raise ValueError(f"expected uint8 RGB frames, got dtype {tensor.dtype}")
    return tensor


def _as_uint8_array(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 RGB frames, got dtype {frames.dtype}")
        return frames.numpy()
    array = np.asarray(frames)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames, got dtype {array.dtype}")
    return array


def _preprocess_batch(video: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """The whole-batch path (device tensors): resize, crop, round, normalise."""
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected RGB frames shaped (T, H, W, 3), got {tuple(video.shape)}")
    # Channels-last float (a view of the HWC frames): interpolate is fastest on it.
    x = video.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    if tuple(x.shape[-2:]) != tuple(config.resize):
        x = _resize(x, config)
    x = _centre_crop(x, config.crop)
    return _normalise(x.permute(1, 0, 2, 3), config)


def _resize(x: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """torchvision's resize of uint8 frames: float bilinear, then rounded back to 0..255."""
    x = F.interpolate(
        x, size=config.resize, mode="bilinear", align_corners=False, antialias=config.antialias
    )
    # torchvision resizes uint8 frames to uint8: round the same way so that
    # the published weights see the inputs they were trained on.
    return x.round().clamp_(0, 255)


def _normalise(x: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """(x / 255 - mean) / std as one multiply-add on channels-first x (3, ...)."""
    shape = (3,) + (1,) * (x.ndim - 1)
    std = torch.tensor(config.std, device=x.device)
    scale = (1.0 / (255.0 * std)).view(shape)
    shift = (-torch.tensor(config.mean, device=x.device) / std).view(shape)
    return torch.addcmul(shift, x, scale).contiguous()


def _preprocess_one(frame: np.ndarray, config: PreprocessConfig) -> torch.Tensor:
    """One frame (H, W, 3) uint8 with any strides -> (3, crop_h, crop_w) float32.

    Bilinear resizing without antialiasing reads at most two source rows and
    two source columns per output pixel, and only the centre crop of the
    output is kept: about 2 x 112 of 1080 rows. Only those rows (and only the
    span of columns the crop reads) are converted to float, into a per-thread,
    per-size float buffer, and torch's own interpolate runs on that buffer, so
    the arithmetic, and therefore every output bit, is torch's. The other
    buffer entries hold finite leftovers that only feed output pixels the crop
    discards, or get weight zero. Converting the whole frame to float first
    (the obvious way) costs several times more at 1080p.
    """
    height, width = frame.shape[:2]
    if (height, width) == tuple(config.resize):
        top, left = _crop_origin((height, width), config.crop)
        crop = frame[top : top + config.crop[0], left : left + config.crop[1]]
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float()
        return _normalise(x, config)
    if config.antialias:  # antialiasing reads whole windows: no shortcut
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).unsqueeze(0).float()
        return _normalise(_centre_crop(_resize(x, config), config.crop)[0], config)
    rows, (col0, col1) = _source_lines((height, width), config.resize, config.crop)
    if frame.strides[-1] < 0:  # BGR reversed as a view: gather from the forward view
        block = frame[..., ::-1][rows, col0:col1][..., ::-1]
    else:
        block = frame[rows, col0:col1]
    return _from_rows(block, (height, width), config)


def frame_rows(height: int, width: int, config: PreprocessConfig) -> np.ndarray | None:
    """The source rows `preprocess_frame` reads from a frame of this size, ascending.

    None when it needs the whole frame (no resize, or antialiasing). A decoder
    can convert just these rows (`decode_image(msg, rows=...)`) and hand them
    to `preprocess_rows`: same output bits, a fraction of the colour
    conversion work (about 224 of 1080 rows).
    """
    if (height, width) == tuple(config.resize) or config.antialias:
        return None
    return _source_lines((height, width), config.resize, config.crop)[0]


def preprocess_rows(
    rows: np.ndarray, size: tuple[int, int], config: PreprocessConfig
) -> torch.Tensor:
    """`preprocess_frame` of a frame of `size` (H, W) given only its `frame_rows` (R, W, 3)."""
    expected = frame_rows(size[0], size[1], config)
    if expected is None:
        raise ValueError(f"a {size[0]}x{size[1]} frame needs every row; use preprocess_frame")
    if rows.shape != (len(expected), size[1], 3) or rows.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 rows shaped {(len(expected), size[1], 3)}, "
            f"got {rows.dtype} {tuple(rows.shape)}"
        )
    col0, col1 = _source_lines(size, config.resize, config.crop)[1]
    return _from_rows(rows[:, col0:col1], size, config)


def _from_rows(block: np.ndarray, size: tuple[int, int], config: PreprocessConfig) -> torch.Tensor:
    """The resize's source rows x column span (R, C, 3) -> the preprocessed frame."""
    rows, (col0, col1) = _source_lines(size, config.resize, config.crop)
    buffer = _float_buffer(*size)
    if block.strides[-1] < 0:  # a BGR view reversed: numpy copies reversed channels slowly
        block = cv2.cvtColor(np.ascontiguousarray(block[..., ::-1]), cv2.COLOR_BGR2RGB)
    buffer[rows, col0:col1] = block
    x = torch.from_numpy(buffer).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W) channels-last
    x = F.interpolate(x, size=config.resize, mode="bilinear", align_corners=False, antialias=False)
    # No clamp: a convex mix of values in 0..255 rounds back into 0..255.
    x = _centre_crop(x, config.crop)[0].round()
    scale, shift = _affine(config.mean, config.std)
    out = torch.empty(x.shape)  # contiguous (3, h, w), written in one pass
    return torch.addcmul(shift, x, scale, out=out)


@functools.lru_cache(maxsize=16)
def _affine(
    mean: tuple[float, float, float], std: tuple[float, float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of (x / 255 - mean) / std = x * scale + shift, per channel (3, 1, 1)."""
    std_t = torch.tensor(std)
    scale = (1.0 / (255.0 * std_t)).view(3, 1, 1)
    shift = (-torch.tensor(mean) / std_t).view(3, 1, 1)
    return scale, shift


@functools.lru_cache(maxsize=64)
def _source_lines(
    size: tuple[int, int], resize: tuple[int, int], crop: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int]]:
    """Source rows, and the span of source columns, that the crop's output pixels read."""
    top, left = _crop_origin(resize, crop)
    rows = _needed(size[0], resize[0], top, top + crop[0])
    cols = _needed(size[1], resize[1], left, left + crop[1])
    return rows, (int(cols[0]), int(cols[-1]) + 1)


def _needed(in_size: int, out_size: int, lo: int, hi: int) -> np.ndarray:
    """Both neighbours of every source coordinate of outputs lo..hi-1.

    Source coordinate as torch computes it (align_corners=False): scale *
    (dst + 0.5) - 0.5, clamped at 0. Taking the floor a little below and above
    it covers float32 vs float64 rounding at integer coordinates.
    """
    scale = in_size / out_size
    src = np.maximum(scale * (np.arange(lo, hi) + 0.5) - 0.5, 0.0)
    low = np.floor(src - 1e-3).astype(np.int64)
    high = np.floor(src + 1e-3).astype(np.int64) + 1
    idx = np.concatenate([low, low + 1, high - 1, high])
    return np.unique(np.clip(idx, 0, in_size - 1))


_local = threading.local()
_MAX_BUFFERS = 4  # frame sizes remembered per thread (cameras rarely change size)


def _float_buffer(height: int, width: int) -> np.ndarray:
    """A zero-initialised float32 (H, W, 3) scratch frame, reused per thread and size."""
    buffers: dict[tuple[int, int], np.ndarray] = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get((height, width))
    if buffer is None:
        if len(buffers) >= _MAX_BUFFERS:
            buffers.pop(next(iter(buffers)))
        buffer = buffers[(height, width)] = np.zeros((height, width, 3), np.float32)
    return buffer


def _crop_origin(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    # Same rounding as torchvision's center_crop.
    return round((size[0] - crop[0]) / 2.0), round((size[1] - crop[1]) / 2.0)


def _centre_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    top, left = _crop_origin((int(x.shape[-2]), int(x.shape[-1])), size)
    return x[..., top : top + size[0], left : left + size[1]]
