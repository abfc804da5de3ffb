"""label-bag's help beyond the contact sheet: motion proposals, previews, absolute stamps.

Motion proposals: every image at up to `fps` per second is decoded (the
streaming core's decoder), shrunk to a small grey image, and its mean
absolute difference to the previous one is the motion at that time. The
motion is smoothed over `smooth_s`; a proposal is a stretch where it stays
above `factor` times its 25th percentile (the still background's level; at
least `floor` grey levels), merged across gaps under `merge_s` and kept
when at least `min_s` long. On `make demo-teach`'s held-out bag (54
gestures in 9.5 minutes, scene cuts between takes) this proposed 52
stretches, 50 of them on a gesture, and found 48 of the 54 gestures;
`factor` 2 gave 38 (36 found), the median plus 4 median deviations 6. The proposals are
written as the template's rows: a gesture's start and end to correct rather
than a fixed chunk to rewrite.

Previews: one animated GIF per proposal (`NN_start-end.gif`, Pillow's GIF
encoder) of the proposal's frames at the motion rate, beside the contact
sheet, to name it without a player.

Absolute stamps: a labels file whose times are ROS stamps (seconds since
1970) rather than seconds from the first image is converted by
`to_relative` (`label-bag --bag B --relative ABS.csv --out REL.csv`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mtl_perception.bag.labels import HEADER
from mtl_perception.bag.reader import Bag
from mtl_perception.fileio import read_timed_rows, require_regular_file
from mtl_perception.outputs import Owner, staged
from mtl_perception.stream.decode import ImageDecodeError, decode_image, header_of

GREY = (32, 24)  # motion is measured on images this small: cheap, insensitive to noise
ABSOLUTE_S = 1e8  # times beyond ~3 years can only be stamps since 1970


@dataclass(frozen=True)
class MotionSettings:
    fps: float = 10.0
    smooth_s: float = 0.3
    factor: float = 1.5
    floor: float = 0.5
    merge_s: float = 0.4
    min_s: float = 0.4


def motion_curve(bag_path: Path, topic: str | None, fps: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(times in s from the first image, motion per time): one decoded image per 1/fps s."""
    times, motion, previous = [], [], None
    first, due = None, 0.0
    with Bag(bag_path, topic) as bag:
        for _, msg in bag.images():
            stamp = header_of(msg).stamp_ns
            first = stamp if first is None else first
            t = (stamp - first) / 1e9
            if t + 1e-9 < due:
                continue
            try:
                rgb = np.ascontiguousarray(decode_image(msg))
            except ImageDecodeError:
                continue
            due = (np.floor(t * fps + 1e-6) + 1) / fps
            grey = np.asarray(Image.fromarray(rgb).convert("L").resize(GREY), np.float32)
            if previous is not None:
                times.append(t)
                motion.append(float(np.abs(grey - previous).mean()))
            previous = grey
    return np.asarray(times), np.asarray(motion)


def propose(times: np.ndarray, motion: np.ndarray, settings: MotionSettings
            ) -> list[tuple[float, float]]:
    """Stretches of high motion (see the module docstring), as (start, end) seconds."""
    if len(motion) < 3:
        return []
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / settings.fps
    width = max(1, round(settings.smooth_s / max(step, 1e-6)))
    smooth = np.convolve(motion, np.ones(width) / width, mode="same")
    high = smooth > max(settings.factor * float(np.percentile(smooth, 25)), settings.floor)
    spans: list[list[float]] = []
    for i in np.flatnonzero(high):
        start, end = float(times[i]) - step, float(times[i])
        if spans and start - spans[-1][1] <= settings.merge_s:
            spans[-1][1] = end
        else:
            spans.append([max(0.0, start), end])
    return [(round(a, 3), round(b, 3)) for a, b in spans if b - a >= settings.min_s]


PREVIEWS_OWNER = Owner(tool="label-bag", manifest="label_bag_previews.manifest.json",
                       tag="label-bag", name="label-bag", what="label-bag previews folder",
                       option="previews folder",
                       writes=("*.gif",))


def write_previews(bag_path: Path, topic: str | None, proposals: list[tuple[float, float]],
                   folder: Path, fps: float, width: int, overwrite: bool) -> list[Path]:
    """One animated GIF per proposal, of its images at `fps` (at most 40 frames each),
    into `folder` as an owned, staged output folder (mtl_perception.outputs: replaced
    whole, never a folder of someone else's). Each GIF is written once its proposal has
    passed, so memory holds the open proposals' frames only."""
    if not proposals:
        return []
    frames: dict[int, list[Image.Image]] = {n: [] for n in range(len(proposals))}
    written: list[Path] = []
    first, due = None, 0.0
    with staged(folder, PREVIEWS_OWNER, overwrite) as stage, Bag(bag_path, topic) as bag:

        def flush(n: int) -> None:
            images = frames.pop(n)
            if images:
                a, b = proposals[n]
                name = f"{n + 1:02d}_{a:.2f}-{b:.2f}.gif"
                images[0].save(stage / name, format="GIF", save_all=True,
                               append_images=images[1:], duration=round(1000 / fps), loop=0)
                written.append(folder / name)

        for _, msg in bag.images():
            stamp = header_of(msg).stamp_ns
            first = stamp if first is None else first
            t = (stamp - first) / 1e9
            for n in [n for n in frames if proposals[n][1] < t]:
                flush(n)
            if t + 1e-9 < due:
                continue
            due = (np.floor(t * fps + 1e-6) + 1) / fps
            inside = [n for n in frames if proposals[n][0] <= t <= proposals[n][1]
                      and len(frames[n]) < 40]
            if not inside:
                continue
            try:
                rgb = np.ascontiguousarray(decode_image(msg))
            except ImageDecodeError:
                continue
            height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
            thumb = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR)
            for n in inside:
                frames[n].append(thumb)
        for n in list(frames):
            flush(n)
    return sorted(written)


def first_stamp_s(bag_path: Path, topic: str | None) -> float:
    with Bag(bag_path, topic) as bag:
        first = next(bag.images(), None)
        if first is None:
            raise ValueError(f"bag {bag_path} has no image")
        return header_of(first[1]).stamp_ns / 1e9


def to_relative(labels: Path, first_s: float) -> tuple[str, int]:
    """The labels file's text with absolute stamps made seconds from the first image; rows
    already relative are refused (a mix would be a mistake either way). Read by the
    labels' own row checks (header, fields, finite 0 <= start < end), a regular file
    only (a FIFO would block the read, a device never end)."""
    require_regular_file(labels, "labels file")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    converted = 0
    for number, start, end, row in read_timed_rows(labels, HEADER, ValueError):
        if start < ABSOLUTE_S:
            raise ValueError(f"{labels}:{number}: {start} is not an absolute stamp (seconds "
                             "since 1970); the file needs no conversion")
        writer.writerow([f"{start - first_s:.6f}", f"{end - first_s:.6f}", *row[2:]])
        converted += 1
    return out.getvalue(), converted
