"""`python -m training label-bag --bag PATH --out labels.csv`: help labelling a recording.

Writes a contact sheet (`--sheet`, default the CSV's name with .png) of
thumbnails, one at the first image at or after each multiple of `--every`
seconds, `--per-row` to a row, each captioned with its own image's time in
seconds from the first image (the time the labels CSV uses); a template
labels CSV in evaluate_bag's format, one row per motion proposal
(`label_motion.py`: stretches where the images change) labelled TODO (no
motion found, or `--no-proposals`: one row per sheet row); and an animated
GIF per proposal in a `_previews` folder beside the sheet. Edit the CSV:
correct the start and end times, replace TODO by class names and delete the
rows without a gesture. The thumbnails are decoded by the streaming core's
decoder (`decode_image`), so they show what the node receives.

`--relative ABS.csv` converts a labels file written with absolute ROS stamps
(seconds since 1970) into seconds from the bag's first image, into `--out`.

The first image's stamp stays the origin; stamps that make no timeline (all
equal, one outlier dominating the span) are refused before anything is
written, odd ones (repeated, backwards, gaps) said once per kind with a
count (`label_stamps.py`). Images that do not decode are left off the sheet
and said once per kind of error, with a count, at the end.

`--overwrite` replaces only what label-bag wrote: a labels CSV by its header
line (`start,end,task,label`, optionally `,split`), the contact sheet by the
PNG text chunk `Software: mtl_perception label-bag` it is written with (the
sheet's name comes from `--out` by default: a `holiday.png` of the user's
beside `holiday.csv` is not ours), the previews folder by its manifest.
Anything else is refused in one line and left alone.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from mtl_perception.bag.labels import HEADER, write_labels
from mtl_perception.bag.reader import Bag, BagError
from mtl_perception.exits import float_in, int_in
from mtl_perception.fileio import atomic_write
from mtl_perception.outputs import OutputError, check_out, check_out_file
from mtl_perception.stream.decode import ImageDecodeError, decode_image, header_of
from training.tools.label_motion import (
    PREVIEWS_OWNER,
    MotionSettings,
    first_stamp_s,
    motion_curve,
    propose,
    to_relative,
    write_previews,
)
from training.tools.label_stamps import StampCheck, check_stamps

LOG = logging.getLogger(__name__)
TODO = "TODO"
_TEXT = 12  # pixels of caption under each thumbnail
# The thumbnails and the sheet are held in memory (3 bytes a pixel each): 50 Mpx bounds
# both to ~150 MB, e.g. ~4,600 thumbnails of 120 x 90 (38 min at --every 0.5).
MAX_SHEET_PIXELS = 50_000_000
ERRORS = (BagError, ImageDecodeError, OutputError)  # one line, exit 2 (training/__main__)
# The contact sheet's PNG text chunk: what --overwrite recognises as a sheet of ours.
SOFTWARE = "mtl_perception label-bag"
# A labels CSV of ours (or the user's edit of one) begins with this header; `split`
# is the fifth column bag training reads with `split: column`.
_LABEL_HEADERS = (HEADER, (*HEADER, "split"))


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
    parser.add_argument("--no-proposals", action="store_true",
                        help="template rows per sheet row instead of motion proposals")
    parser.add_argument("--motion-fps", type=float_in(0.5, 60), default=10.0,
                        help="images per second decoded for motion and previews")
    parser.add_argument("--relative", type=Path, default=None, metavar="ABS_CSV",
                        help="convert this labels file's absolute stamps into --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace label-bag's own earlier outputs (your edited labels, too)")


def run(args: argparse.Namespace) -> int:
    sheet = args.sheet or args.out.with_suffix(".png")
    problem = _check(args, sheet)
    if problem:
        LOG.error("%s", problem)
        return 2
    if args.relative is not None:
        return _relative(args)
    try:
        thumbs, span = contact_frames(args.bag, args.image_topic, args.every, args.width)
        if not thumbs:  # before the previews folder is written
            LOG.error("bag %s: no image could be decoded", args.bag)
            return 2
        proposals = [] if args.no_proposals else propose(
            *motion_curve(args.bag, args.image_topic, args.motion_fps), MotionSettings())
        previews = write_previews(args.bag, args.image_topic, proposals,
                                  _previews(sheet), args.motion_fps, args.width, args.overwrite)
    except (BagError, ImageDecodeError, OutputError) as exc:
        LOG.error("%s", exc)
        return 2
    image = contact_sheet(thumbs, args.per_row)
    marker = PngInfo()
    marker.add_text("Software", SOFTWARE)  # how a later --overwrite knows the sheet is ours
    atomic_write(sheet, lambda tmp: image.save(tmp, format="PNG", pnginfo=marker))
    rows = ([(a, b, args.task, TODO) for a, b in proposals] if proposals else
            template_rows([t for t, _ in thumbs], args.per_row, args.every, span, args.task))
    atomic_write(args.out, lambda tmp: write_labels(tmp, rows))
    what = (f"one per motion proposal; previews: {len(previews)} GIFs in "
            f"{sheet.stem}_previews/" if proposals else "one per sheet row, no motion found")
    print(f"contact sheet: {sheet} ({len(thumbs)} thumbnails, the first image at or after "
          f"every {args.every:g} s, captioned with its own time; {args.per_row} per row)\n"
          f"template labels: {args.out} ({len(rows)} rows labelled {TODO}, {what}: correct "
          "start/end, set TODO to the class, delete the rest)")
    return 0


def _relative(args: argparse.Namespace) -> int:
    try:
        check_stamps(args.bag, args.image_topic)  # the first stamp is the origin: one that holds
        text, count = to_relative(args.relative, first_stamp_s(args.bag, args.image_topic))
    except (BagError, OSError, ValueError) as exc:
        LOG.error("%s", exc)
        return 2
    atomic_write(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"{args.out}: {count} rows converted from absolute stamps to seconds from the "
          f"first image of {args.bag}")
    return 0


def _previews(sheet: Path) -> Path:
    return sheet.with_name(sheet.stem + "_previews")


def _check(args: argparse.Namespace, sheet: Path) -> str | None:
    outputs = (args.out,) if args.relative is not None else (args.out, sheet)
    if Path(os.path.realpath(sheet)) == Path(os.path.realpath(args.out)):
        return f"--sheet {sheet} is --out: give them different names"
    try:  # never over the bag it reads (not even with --overwrite); writable, before the work
        check_out_file(args.out, args.overwrite, [args.bag] + ([args.relative]
                                                               if args.relative else []),
                       kind="csv")
        if args.relative is None:
            check_out_file(sheet, args.overwrite, [args.bag], option="--sheet", kind="png")
            if not args.no_proposals:  # a folder of its own: replaced whole, or refused
                check_out(_previews(sheet), PREVIEWS_OWNER, args.overwrite)
    except OutputError as exc:
        return str(exc)
    # Past check_out_file an existing output is a regular file and --overwrite was given:
    # replace it only when label-bag wrote it (a CSV or a PNG is not enough).
    sheet_name = "--sheet" if args.sheet else "the contact sheet (--out with .png)"
    for path, name, why in ((args.out, "--out", _not_labels),
                            *(((sheet, sheet_name, _not_sheet),) if args.relative is None
                              else ())):
        reason = why(path) if path.is_file() else None
        if reason:
            return (f"{name} {path} exists and is not a label-bag output ({reason}); "
                    "--overwrite replaces only files label-bag wrote, so it was left alone "
                    "(choose another name, or remove it yourself)")
    for path in outputs:
        if not path.parent.is_dir():
            return f"folder {path.parent} does not exist"
    return None


def _not_labels(path: Path) -> str | None:
    """Why the existing `path` is not a labels CSV (None: it is one, or empty)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not head:
        return None  # nothing to lose
    try:  # the header line alone; a BOM from a spreadsheet's "save as CSV" is fine
        line = head.split(b"\n", 1)[0].decode("utf-8-sig")
    except UnicodeDecodeError:
        return "not a UTF-8 text file"
    fields = tuple(f.strip() for f in next(csv.reader(io.StringIO(line)), []))
    if fields in _LABEL_HEADERS:
        return None
    return f"its first line is {line.strip()[:60]!r}, not the labels header {','.join(HEADER)}"


def _not_sheet(path: Path) -> str | None:
    """Why the existing `path` is not a contact sheet label-bag wrote (None: it is one)."""
    if path.stat().st_size == 0:
        return None  # nothing to lose
    try:  # the text chunks before the pixels: nothing is decoded
        with Image.open(path) as image:
            software = image.info.get("Software") if image.format == "PNG" else None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "not a PNG image Pillow can open"
    return None if software == SOFTWARE else f"no 'Software: {SOFTWARE}' marker"


def contact_frames(bag_path: Path, topic: str | None, every: float, width: int
                   ) -> tuple[list[tuple[float, Image.Image]], float]:
    """(seconds from the first image, thumbnail) every `every` seconds, and the images' span.

    Raises BagError when the stamps make no timeline (`label_stamps.py`); odd stamps and
    images that do not decode are said once per kind, with a count, at the end."""
    thumbs: list[tuple[float, Image.Image]] = []
    first, last, due = None, 0.0, 0.0
    # kind -> [images, message index of the first, its message]: one line each at the end
    failed: dict[str, list[Any]] = {}
    with Bag(bag_path, topic) as bag:
        stamps = StampCheck(bag_path, bag.image_topic)
        for _, msg in bag.images():
            index = bag.message_index  # skipped messages counted, as the reader counts them
            stamp = header_of(msg).stamp_ns
            stamps.add(index, stamp)
            first = stamp if first is None else first
            t = (stamp - first) / 1e9
            last = max(last, t)
            if t + 1e-9 < due:
                continue
            try:
                rgb = np.ascontiguousarray(decode_image(msg))
            except ImageDecodeError as exc:
                failed.setdefault(exc.kind, [0, index, str(exc)])[0] += 1
                continue
            height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
            thumb = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR)
            if (len(thumbs) + 1) * width * (height + _TEXT) > MAX_SHEET_PIXELS:  # bounded
                raise BagError(f"bag {bag_path}: more than {len(thumbs)} thumbnails {every:g} s "
                               f"apart would exceed the sheet's {MAX_SHEET_PIXELS / 1e6:g} "
                               "Mpx; raise --every or lower --width")
            thumbs.append((t, thumb))
            due = (math.floor(t / every + 1e-6) + 1) * every  # a grid: no drift
        stamps.finish()  # refuses before anything is written; else says the odd stamps
        if bag.report.warning:  # a recording cut short: the template ends where it does
            LOG.warning("%s", bag.report.warning)
        for count, index, message in failed.values():
            LOG.warning("bag %s topic %s: %d images could not be decoded and are not on the "
                        "sheet (the next image was tried instead); message index %d first: %s",
                        bag_path, bag.image_topic, count, index, message)
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
