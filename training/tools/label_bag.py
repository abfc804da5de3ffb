"""`python -m training label-bag --bag PATH --out labels.csv`: help labelling a recording.

Writes two files: a contact sheet (`--sheet`, default the CSV's name with
.png) of thumbnails every `--every` seconds, one row per `--per-row`
thumbnails, each stamped with its time in seconds from the first image (the
time the labels CSV uses); and a template labels CSV in evaluate_bag's
format, one row per sheet row with the label TODO. Edit the CSV in a text
editor: merge, split and move the rows to the gestures' start and end times,
replace TODO by class names and delete the rows without a gesture. The
thumbnails are decoded by the streaming core's decoder (`decode_image`), so
they show what the node receives.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mtl_perception.bag.labels import write_labels
from mtl_perception.bag.reader import Bag, BagError
from mtl_perception.exits import float_in, int_in
from mtl_perception.fileio import atomic_write
from mtl_perception.outputs import OutputError, check_out_file
from mtl_perception.stream.decode import ImageDecodeError, decode_image, header_of

LOG = logging.getLogger(__name__)
TODO = "TODO"
_TEXT = 12  # pixels of caption under each thumbnail
# The thumbnails and the sheet are held in memory (3 bytes a pixel each): 50 Mpx bounds
# both to ~150 MB, e.g. ~4,600 thumbnails of 120 x 90 (38 min at --every 0.5).
MAX_SHEET_PIXELS = 50_000_000
ERRORS = (BagError, ImageDecodeError, OutputError)  # one line, exit 2 (training/__main__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", type=Path, required=True,
                        help="rosbag2 folder, .mcap or .db3 file, or ROS 1 .bag file")
    parser.add_argument("--out", type=Path, required=True, help="template labels CSV to write")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="contact sheet PNG (default: --out with .png)")
    parser.add_argument("--image-topic", default=None,
                        help="image topic (default: the bag's only image topic)")
    parser.add_argument("--task", default="gesture", help="task column of the template rows")
    parser.add_argument("--every", type=float_in(0.01, 3600), default=0.5,
                        help="seconds between thumbnails")
    parser.add_argument("--per-row", type=int_in(1, 64), default=8,
                        help="thumbnails per sheet row")
    parser.add_argument("--width", type=int_in(16, 1024), default=120,
                        help="thumbnail width in pixels")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files (your edited labels, too)")


def run(args: argparse.Namespace) -> int:
    sheet = args.sheet or args.out.with_suffix(".png")
    problem = _check(args, sheet)
    if problem:
        LOG.error("%s", problem)
        return 2
    try:
        thumbs, span = contact_frames(args.bag, args.image_topic, args.every, args.width)
    except (BagError, ImageDecodeError) as exc:
        LOG.error("%s", exc)
        return 2
    if not thumbs:
        LOG.error("bag %s: no image could be decoded", args.bag)
        return 2
    image = contact_sheet(thumbs, args.per_row)
    atomic_write(sheet, lambda tmp: image.save(tmp, format="PNG"))
    rows = template_rows([t for t, _ in thumbs], args.per_row, args.every, span, args.task)
    atomic_write(args.out, lambda tmp: write_labels(tmp, rows))
    print(f"contact sheet: {sheet} ({len(thumbs)} thumbnails, {args.every:g} s apart, "
          f"{args.per_row} per row)\ntemplate labels: {args.out} ({len(rows)} rows labelled "
          f"{TODO}: set start/end to each gesture, TODO to its class, delete the rest)")
    return 0


def _check(args: argparse.Namespace, sheet: Path) -> str | None:
    if Path(os.path.realpath(sheet)) == Path(os.path.realpath(args.out)):
        return f"--sheet {sheet} is --out: give them different names"
    try:  # never over the bag it reads (not even with --overwrite); writable, before the work
        check_out_file(args.out, args.overwrite, [args.bag])
        check_out_file(sheet, args.overwrite, [args.bag], option="--sheet")
    except OutputError as exc:
        return str(exc)
    for path in (args.out, sheet):
        if not path.parent.is_dir():
            return f"folder {path.parent} does not exist"
    return None


def contact_frames(bag_path: Path, topic: str | None, every: float, width: int
                   ) -> tuple[list[tuple[float, Image.Image]], float]:
    """(seconds from the first image, thumbnail) every `every` seconds, and the images' span."""
    thumbs: list[tuple[float, Image.Image]] = []
    first, last, due = None, 0.0, 0.0
    with Bag(bag_path, topic) as bag:
        for _, msg in bag.images():
            stamp = header_of(msg).stamp_ns
            first = stamp if first is None else first
            t = (stamp - first) / 1e9
            last = max(last, t)
            if t + 1e-9 < due:
                continue
            try:
                rgb = np.ascontiguousarray(decode_image(msg))
            except ImageDecodeError as exc:
                LOG.warning("bag %s: image at %.2f s skipped: %s", bag_path, t, exc)
                continue
            height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
            thumb = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR)
            if (len(thumbs) + 1) * width * (height + _TEXT) > MAX_SHEET_PIXELS:  # bounded
                raise BagError(f"bag {bag_path}: more than {len(thumbs)} thumbnails {every:g} s "
                               f"apart would exceed the sheet's {MAX_SHEET_PIXELS / 1e6:g} "
                               "Mpx; raise --every or lower --width")
            thumbs.append((t, thumb))
            due = t + every
        if bag.report.warning:  # a recording cut short: the template ends where it does
            LOG.warning("%s", bag.report.warning)
    return thumbs, last


def contact_sheet(thumbs: list[tuple[float, Any]], per_row: int) -> Image.Image:
    """Thumbnails in rows of `per_row`, each captioned with its time."""
    width = max(img.width for _, img in thumbs)
    height = max(img.height for _, img in thumbs) + _TEXT
    rows = (len(thumbs) + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * width, rows * height), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (t, img) in enumerate(thumbs):
        x, y = (n % per_row) * width, (n // per_row) * height
        sheet.paste(img, (x, y))
        draw.text((x + 2, y + height - _TEXT), f"{t:.2f} s", fill="black")
    return sheet


def template_rows(times: list[float], per_row: int, every: float, span: float, task: str
                  ) -> list[tuple[float, float, str, str]]:
    """One row per sheet row: its first thumbnail's time to the next row's (or the end)."""
    starts = times[::per_row]
    ends = [*starts[1:], max(span, starts[-1] + every)]
    return [(a, b, task, TODO) for a, b in zip(starts, ends, strict=True)]
