"""`dataset_to_bag` / `python -m training to-bag`: a labelled video list -> rosbag2 + labels CSV.

Replays a dataset split as if one camera saw it: every video's frames, one
video after another, on one image topic at the video's own frame rate, with
header stamps (= log times) that advance by one frame period; a pause of
`--gap-s` between videos (default 1 s: longer than the stream's default
`max_gap_s`, so the pipeline starts a fresh buffer per video and no clip mixes
two videos, as in training's per-video evaluation; 0 plays them back to
back). Beside the bag's `metadata.yaml` it writes `labels.csv`, the intervals
`evaluate_bag` scores: each sample's labelled frames (the whole video, or its
segment, e.g. NVGesture's `color:` range), in seconds from the first frame.

Input: a set config (`--set`, e.g. the synthetic set's `set.yaml`, or
`config/sets/set1.yaml`), or one source given inline (`--format`, `--task`,
`--source key=value ...`, the keys of that format's set-config entry).
With `--untrimmed` the bag replays the set's untrimmed sessions of the split
instead (its `untrimmed:` folders, each video's labels CSV shifted to the
bag's time line; `--background` adds the `background:` videos, which carry
no label): the stream a robot sees, for `evaluate_bag --unlabelled none`.
Frames are decoded by `training.datasets.video` (the training decoder).

The bag is written into the hidden sibling `.<out>.dataset_to_bag-partial`
and renamed when complete; an existing `--out` is replaced only with
`--overwrite` and only when it provably is an earlier output of this command:
exactly the files its manifest `dataset_to_bag.manifest.json` lists, unchanged
(`mtl_perception.outputs`, the rule every command that replaces a folder follows).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mtl_perception import outputs
from mtl_perception.bag.labels import write_labels
from mtl_perception.bag.shown import SHOWN_FILE, read_shown, write_shown
from mtl_perception.bag.types import COMPRESSED_IMAGE, IMAGE
from mtl_perception.bag.writer import STORAGES, BagWriter, compressed_message, image_message
from mtl_perception.exits import run_command
from mtl_perception.help_format import DefaultsHelpFormatter
from mtl_perception.names import class_name_problem, topic_problem
from mtl_perception.outputs import OutputError
from mtl_perception.settings import SettingsError, apply_overrides
from training.datasets import sets
from training.datasets.frames import count_image_frames, read_image_frames
from training.datasets.listfile import DatasetError
from training.datasets.sample import UNLABELLED
from training.datasets.untrimmed import check_classes, read_untrimmed
from training.datasets.video import VideoReader, VideoReadError, VideoTooShortError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
STAGES_OUT = True  # --out is staged: stopping leaves it as it was (training/__main__.py)
MARKER = "dataset_to_bag.json"  # the summary of what was written
LABELS = "labels.csv"
OWNER = outputs.Owner(tool="dataset_to_bag", manifest="dataset_to_bag.manifest.json",
                      tag="dataset_to_bag", name="dataset_to_bag", what="dataset_to_bag output",
                      writes=("metadata.yaml", "*.mcap", "*.db3", "*.db3-*", LABELS, MARKER,
                              # rosbags writes into a new folder, staged as partial/<out name>
                              "{target}/metadata.yaml", "{target}/*.mcap", "{target}/*.db3",
                              "{target}/*.db3-*"))
_CHUNK = 64  # frames decoded at a time (bounded memory for long videos)
_FOLDER_FPS = 30.0  # frame folders carry no rate


class ToBagError(ValueError):
    """Input or output that this command cannot use (one line)."""


@dataclass
class Video:
    """One file to replay and the (task, class name, start, end) labels it carries."""

    path: Path
    frames_dir: bool
    labels: list[tuple[str, str, int, int | None]] = field(default_factory=list)
    # what it shows, (start_s, end_s, kind) from its first frame (`mtl_perception.bag.shown`)
    shown: list[tuple[float, float, str]] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("input (a set config, or one source inline)")
    src.add_argument("--set", type=Path, help="set config YAML (the synthetic set's set.yaml too)")
    # not `bag`: a recorded bag is replayed as it is (evaluate_bag reads it with its labels)
    src.add_argument("--format", choices=sorted(f for f in sets.FORMATS if f != "bag"),
                     help="inline source: its format")
    src.add_argument("--task", default="action", help="inline source: the task it labels")
    src.add_argument("--source", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                     help="inline source: the format's set-config keys, e.g. root=/data/ucf101")
    parser.add_argument("--split", default="test", choices=sets.SPLIT_NAMES,
                        help="the set's split to replay")
    parser.add_argument("--tasks", default="", help="comma-separated tasks to include (all)")
    parser.add_argument("--max-videos", type=int, default=0,
                        help="per task, evenly spread over its list (0 = all)")
    parser.add_argument("--out", type=Path, required=True, help="the rosbag2 folder to create")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it is an earlier dataset_to_bag output")
    parser.add_argument("--storage", choices=STORAGES, default="mcap",
                        help="rosbag2 storage plugin of the bag written")
    parser.add_argument("--compressed", action="store_true",
                        help="sensor_msgs/CompressedImage (jpeg) instead of raw rgb8 Image")
    parser.add_argument("--jpeg-quality", type=int, default=90,
                        help="with --compressed: JPEG quality, 0 to 100")
    parser.add_argument("--topic", default="",
                        help="image topic (default /camera/image_raw, + /compressed if compressed)")
    parser.add_argument("--frame-id", default="camera", help="header frame_id of the images")
    parser.add_argument("--start-s", type=float, default=1_700_000_000.0,
                        help="header stamp of the first frame, seconds since the epoch")
    parser.add_argument("--gap-s", type=float, default=1.0, help="pause between two videos")
    parser.add_argument("--untrimmed", action="store_true",
                        help="replay the set's untrimmed sessions (untrimmed:) of --split")
    parser.add_argument("--background", action="store_true",
                        help="with --untrimmed: also the set's background videos (background:)")
    parser.add_argument("--with-trimmed", type=int, default=0, metavar="N",
                        help="with --untrimmed: also N trimmed videos per task of --split, "
                             "whole (their lead-in and lead-out are none)")


def run(args: argparse.Namespace) -> int:
    try:
        _check_numbers(args)
        outputs.check_out(args.out, OWNER, args.overwrite)
        videos = collect(args)
        convert(videos, args)
    except (ToBagError, DatasetError, SettingsError, OutputError) as exc:
        LOG.error("%s", exc)
        return 2
    return 0  # OS errors, Ctrl-C and SIGTERM: `mtl_perception.exits.run_command` (main)


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse settings that would fail (or write a misleading bag) after decoding began."""
    if not (math.isfinite(args.start_s) and 0 <= args.start_s <= MAX_START_S):
        raise ToBagError(f"--start-s {args.start_s}: expected seconds since the epoch in "
                         f"[0, {MAX_START_S:.0f}] (header stamps hold signed 32-bit seconds, "
                         "and the recording must fit after the start)")
    if not (math.isfinite(args.gap_s) and 0 <= args.gap_s <= 3600):
        raise ToBagError(f"--gap-s {args.gap_s}: expected 0 to 3600 seconds (a negative gap "
                         "would make stamps run backwards)")
    if not 0 <= args.jpeg_quality <= 100:
        raise ToBagError(f"--jpeg-quality {args.jpeg_quality}: expected 0 to 100")
    if args.max_videos < 0:
        raise ToBagError(f"--max-videos {args.max_videos}: expected 0 (all) or more")
    if args.topic and (problem := topic_problem(args.topic)) is not None:
        raise ToBagError(f"--topic {problem}")


def _refuse_out_among_inputs(out: Path, config: sets.SetConfig, tasks: list[str]) -> None:
    """--out may neither hold what the set reads nor lie inside a folder this run reads
    videos from (a task source's `root`, which a set's other commands leave out of
    `inputs()` as too broad: to-bag walks it, and a bag written there sits among the
    videos)."""
    roots = [root for task in tasks for source in config.tasks[task]
             if isinstance(root := getattr(source.settings, "root", None), Path)]
    outputs.check_out_inputs(out, [*config.inputs(), *roots])


def collect(args: argparse.Namespace) -> list[Video]:
    """The split's samples grouped by file (a file labelled for two tasks is played once)."""
    if (args.set is None) == (args.format is None):
        raise ToBagError("give either --set FILE or --format NAME with --source KEY=VALUE ...")
    if args.set is not None:
        config = sets.load_set(args.set)
    else:
        item = apply_overrides({"format": args.format}, args.source)
        where = f"--format {args.format} --source"
        source = sets._source(item, Path.cwd(), where)
        config = sets.SetConfig(name="inline", tasks={args.task: [source]}, class_merge=None)
    wanted = [t for t in args.tasks.split(",") if t] or list(config.tasks)
    unknown = [t for t in wanted if t not in config.tasks]
    if unknown:
        raise ToBagError(f"--tasks {unknown} not in the set's tasks {list(config.tasks)}")
    _refuse_out_among_inputs(args.out, config, wanted)
    if getattr(args, "untrimmed", False):
        found = _untrimmed_videos(config, args.split, wanted, args.background, args.max_videos)
        if getattr(args, "with_trimmed", 0) > 0:
            found += _trimmed_videos(config, args.split, wanted, args.with_trimmed)
        return found
    if getattr(args, "background", False) or getattr(args, "with_trimmed", 0):
        raise ToBagError("--background and --with-trimmed go with --untrimmed")
    return _trimmed_videos(config, args.split, wanted, args.max_videos)


def _trimmed_videos(config: sets.SetConfig, split_name: str, wanted: list[str], limit: int
                    ) -> list[Video]:
    videos: dict[tuple[Path, bool], Video] = {}
    for task in wanted:
        split = sets.build_task_split(config, task, split_name)
        for sample in _spread(split.samples, limit):
            if sample.label == UNLABELLED:
                continue
            if sample.bag is not None:
                raise ToBagError(f"task {task}: {sample.path} is a bag source (format: bag), "
                                 "already a bag: evaluate_bag reads it with its labels CSV; "
                                 "to-bag replays video sources (give --tasks without it)")
            video = videos.setdefault((sample.path, sample.frames_dir),
                                      Video(sample.path, sample.frames_dir))
            name = split.class_names[sample.label]
            if (problem := class_name_problem(name)) is not None:  # it goes into labels.csv
                raise ToBagError(f"task {task}: {problem}")
            video.labels.append((task, name, sample.start, sample.end))
    if not videos:
        raise ToBagError(f"no labelled samples in the {split_name} split of {wanted}")
    return list(videos.values())


def _shown_of(video: Path) -> list[tuple[float, float, str]]:
    """A synthetic video's `NAME.shown.csv`, when it has one."""
    path = video.with_name(video.stem + ".shown.csv")
    return [(s.start, s.end, s.kind) for s in read_shown(path)] if path.is_file() else []


def _untrimmed_videos(config: sets.SetConfig, split: str, tasks: list[str], background: bool,
                      limit: int) -> list[Video]:
    """The split's sessions with their labels in frames (then backgrounds, unlabelled)."""
    if not config.untrimmed:
        raise ToBagError(f"--untrimmed: set {config.path} lists no untrimmed: folders")
    videos: list[Video] = []
    classes = {t: sets.build_task_split(config, t, split).class_names for t in config.tasks}
    for source in config.untrimmed:
        sessions = read_untrimmed(source, split, background=False)
        check_classes(sessions, classes, "the set's")  # the bag's labels must be readable
        for session in _spread(sessions, limit):
            labels: list[tuple[str, str, int, int | None]] = [
                (i.task, i.label, round(i.start * session.fps), round(i.end * session.fps))
                for i in session.intervals if i.task in tasks]
            videos.append(Video(session.path, False, labels, _shown_of(session.path)))
    for source in config.background if background else []:
        videos += [Video(v.path, False, shown=_shown_of(v.path)) for v in _spread(
            read_untrimmed(source, split, background=True), limit)]
    if not videos:
        raise ToBagError(f"--untrimmed: no untrimmed videos in the {split} split")
    return videos


def _spread(samples: list[T], limit: int) -> list[T]:
    if limit <= 0 or limit >= len(samples):
        return samples
    return [samples[(2 * i + 1) * len(samples) // (2 * limit)] for i in range(limit)]


def convert(videos: list[Video], args: argparse.Namespace) -> None:
    out: Path = args.out
    with outputs.staged(out, OWNER, args.overwrite) as staging:
        bag = staging / out.name  # rosbags writes only into a new folder: move it up after
        summary = _write(videos, bag, args)
        (bag / MARKER).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        for item in bag.iterdir():
            item.rename(staging / item.name)
        bag.rmdir()
    LOG.info("wrote %s: %d images of %d videos (%d skipped) on %s; labels %s",
             out, summary["images"], summary["videos"], len(summary["skipped"]),
             summary["topic"], out / LABELS)


MAX_START_S = 2**31 - 10**7  # leaves 115 days of recording before the int32 seconds end
_STAMP_LIMIT_NS = 2**31 * 10**9


def _write(videos: list[Video], bag: Path, args: argparse.Namespace) -> dict[str, Any]:
    topic = args.topic or ("/camera/image_raw/compressed" if args.compressed
                           else "/camera/image_raw")
    msgtype = COMPRESSED_IMAGE if args.compressed else IMAGE
    start_ns = round(args.start_s * 1e9)
    clock = start_ns
    rows: list[tuple[float, float, str, str]] = []
    shown: list[tuple[float, float, str]] = []
    skipped: list[str] = []
    images = 0
    with BagWriter(bag, args.storage) as writer:
        for number, video in enumerate(videos, start=1):
            first, count, fps = clock, 0, _FOLDER_FPS
            try:
                fps, frames = _frames(video)
                for index, frame in frames:
                    stamp = first + round(index * 1e9 / fps)
                    if stamp >= _STAMP_LIMIT_NS:  # builtin_interfaces/Time.sec is an int32
                        raise ToBagError(f"--start-s {args.start_s}: {video.path} would be "
                                         "stamped past 2**31 s (2038); give an earlier start")
                    if args.compressed:
                        msg = compressed_message(frame, stamp, args.frame_id, args.jpeg_quality)
                    else:
                        msg = image_message(frame, stamp, args.frame_id)
                    writer.write(topic, msgtype, stamp, msg)
                    count += 1
            except VideoReadError as exc:
                LOG.warning("skipping %s: %s", video.path, exc)
                skipped.append(str(video.path))
                if count:  # frames written before the damage stay; no label for them
                    clock = first + round(count * 1e9 / fps) + round(args.gap_s * 1e9)
                continue
            images += count
            shown += _shown_rows(video, (first - start_ns) / 1e9, count, fps)
            for task, label, seg_start, seg_end in video.labels:
                end = count if seg_end is None else min(seg_end, count)
                if seg_start >= end:
                    continue
                rows.append(((first - start_ns) / 1e9 + seg_start / fps,
                             (first - start_ns) / 1e9 + end / fps, task, label))
            clock = first + round(count * 1e9 / fps) + round(args.gap_s * 1e9)
            if number % 20 == 0 or number == len(videos):
                LOG.info("%d/%d videos, %d images", number, len(videos), images)
    if images == 0:
        raise ToBagError("no video could be decoded; nothing written")
    write_labels(bag / LABELS, rows)
    if shown:
        write_shown(bag / SHOWN_FILE, shown)
    return {"topic": topic, "msgtype": msgtype, "storage": args.storage, "images": images,
            "videos": len(videos) - len(skipped), "skipped": skipped,
            "gap_s": args.gap_s, "split": args.split, "labels": LABELS}


def _shown_rows(video: Video, offset: float, count: int, fps: float
                ) -> list[tuple[float, float, str]]:
    """What the video shows on the bag's time line: its own spans, or for a trimmed video
    its labelled segments and `lead` around them."""
    end = count / fps
    spans = video.shown
    if not spans and video.labels:
        spans, cursor = [], 0.0
        for task, _, a, b in sorted(video.labels, key=lambda x: x[2]):
            a_s, b_s = a / fps, (count if b is None else min(b, count)) / fps
            if a_s > cursor:
                spans.append((cursor, a_s, "lead"))
            spans.append((a_s, b_s, task))
            cursor = max(cursor, b_s)
        if cursor < end:
            spans.append((cursor, end, "lead"))
    return [(offset + a, offset + min(b, end), k) for a, b, k in spans if a < end]


def _frames(video: Video) -> tuple[float, Iterator[tuple[int, np.ndarray]]]:
    """The video's frame rate and an iterator over its `(index, RGB frame)`."""
    if video.frames_dir:
        total = count_image_frames(video.path)

        def folder() -> Iterator[tuple[int, np.ndarray]]:
            for begin in range(0, total, _CHUNK):
                chunk = read_image_frames(video.path, range(begin, min(begin + _CHUNK, total)))
                yield from zip(range(begin, begin + len(chunk)), chunk)

        return _FOLDER_FPS, folder()
    reader = VideoReader(video.path)

    def decoded() -> Iterator[tuple[int, np.ndarray]]:
        with reader:
            total = reader.num_frames
            for begin in range(0, total, _CHUNK):
                indices = list(range(begin, min(begin + _CHUNK, total)))
                try:
                    chunk = reader.read(indices)
                except VideoTooShortError as exc:  # header over-counts: keep what decodes
                    LOG.warning("%s: its header claims %d frames but %d decode; converted "
                                "the %d", video.path, total, exc.available, exc.available)
                    if exc.available <= begin:
                        return
                    chunk = reader.read(list(range(begin, exc.available)))
                    yield from zip(range(begin, begin + len(chunk)), chunk)
                    return
                yield from zip(indices, chunk)

    return reader.fps, decoded()


def main(argv: list[str] | None = None) -> int:
    """Console script `dataset_to_bag`."""
    parser = argparse.ArgumentParser(
        prog="dataset_to_bag", description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # the bag is staged: a half-written one never appears
    return run_command(lambda: run(args), LOG, stopped=f"nothing written to {args.out}",
                       where=args.out)


if __name__ == "__main__":
    sys.exit(main())
