"""`python -m training summarize --config SET.yaml`: what a set config will train on.

Per task and split: samples, classes, missing files, entries of the wrong
kind (a directory named like a video, a FIFO), with `--check-videos` the
unreadable ones (videos and every frame of frame folders decoded), the
segments that start past a video's end and the videos whose container claims
more frames than decode ("short"), and the class-size range, as a table
and optionally as JSON (`tasks.<task>.<split>.samples` ...). Meant to be run
once after pointing a set config at the data, before hours of training find
out that half a dataset is elsewhere. Config and list errors are one line and
exit 2, and every list is read before the first video is decoded.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from mtl_perception.exits import int_in
from mtl_perception.fileio import atomic_write_text
from mtl_perception.outputs import WRITTEN_BY, OutputError, check_out_file
from mtl_perception.settings import SettingsError
from training.datasets.listfile import DatasetError, shown
from training.datasets.missing import check_videos, find_missing, find_wrong_kind
from training.datasets.sample import UNLABELLED, LabelledSplit, shared_samples
from training.datasets.sets import SPLIT_NAMES, SetConfig, build_task_split, load_set

log = logging.getLogger(__name__)
JSON_WRITER = "python -m training summarize"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="set config YAML")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the summary here (a new file; --overwrite to replace "
                             "one; never one of the set's files)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument("--check-videos", action="store_true",
                        help="decode every present video and frame folder to count the unreadable, "
                             "past-end and short ones (slow)")
    parser.add_argument("--splits", nargs="+", default=list(SPLIT_NAMES), choices=SPLIT_NAMES,
                        help="splits to summarize")
    parser.add_argument("--show", type=int_in(0, 10_000), default=3,
                        help="how many missing/unreadable paths to name per split")
    parser.add_argument("--clip-length", type=int_in(1, 10_000), default=32,
                        help="bag sources: count the clips of this many frames per class")


def summarize_split(split: LabelledSplit, check: bool, show: int, clip_length: int = 32
                    ) -> dict[str, Any]:
    """The numbers of one task's split, as they go into the JSON."""
    missing = find_missing(split, show)
    odd = find_wrong_kind(split, show)
    labels = [s.label for s in split.samples if s.label != UNLABELLED]
    sizes = Counter(labels)
    per_class = [sizes.get(i, 0) for i in range(len(split.class_names))]
    result: dict[str, Any] = {
        "samples": len(split.samples),
        "classes": len(split.class_names),
        "missing": missing.count,
        "not_files": odd.count,
        "unreadable": None,
        "past_end": None,
        "short": None,
        "class_size_min": min(per_class) if labels else None,
        "class_size_max": max(per_class) if labels else None,
        "labelled": bool(labels),
        "source": split.source,
        "missing_examples": [str(p) for p in missing.first],
        "not_file_examples": [str(p) for p in odd.first],
        "not_file_reasons": odd.reasons,
    }
    if missing.hint:
        result["missing_hint"] = missing.hint
    if check:
        for kind, report in check_videos(split, show).items():
            result[kind] = report.count
            result[f"{kind}_examples"] = [str(p) for p in report.first]
            result[f"{kind}_reasons"] = report.reasons
    merged = split.extra.get("merged_classes")
    if merged:
        result["merged_classes"] = merged
    if any(s.bag is not None for s in split.samples):
        result["bags"] = bag_summary(split, clip_length)
    return result


def bag_summary(split: LabelledSplit, clip_length: int) -> dict[str, Any]:
    """Per class of a split's bag intervals: intervals, labelled seconds, and clips, the
    positions of a consecutive `clip_length`-frame clip at the source's target_fps (an
    interval shorter than a clip counts one, loop-padded as training pads it)."""
    names = split.class_names
    intervals = dict.fromkeys(names, 0)
    seconds = dict.fromkeys(names, 0.0)
    clips = dict.fromkeys(names, 0)
    for s in split.samples:
        if s.bag is None or s.label == UNLABELLED or s.end is None:
            continue
        name, length = names[s.label], (s.end - s.start) / 1e9
        intervals[name] += 1
        seconds[name] = round(seconds[name] + length, 6)
        clips[name] += max(int(length * s.bag.target_fps) - clip_length + 1, 1)
    return {"intervals": intervals, "labelled_s": seconds, "clips": clips,
            "clip_length": clip_length}


def summarize(set_config: SetConfig, splits: list[str], check_videos: bool = False,
              show: int = 3, clip_length: int = 32) -> dict[str, Any]:
    """`{"name", "config", "tasks": {task: {split: {...}}}}` for a loaded set."""
    # Every list first: a malformed one must not wait behind an hour of decoding.
    built = {(task, split): build_task_split(set_config, task, split)
             for task in set_config.tasks for split in splits}
    tasks: dict[str, dict[str, Any]] = {task: {} for task in set_config.tasks}
    for (task, split), labelled in built.items():
        tasks[task][split] = summarize_split(labelled, check_videos, show, clip_length)
    for task in set_config.tasks:  # a test video also trained on scores what was learnt
        if (task, "train") in built and (task, "test") in built:
            shared = shared_samples(built[task, "test"], built[task, "train"])
            tasks[task]["test"]["in_train"] = len(shared)
            tasks[task]["test"]["in_train_examples"] = [str(s.path) for s in shared[:show]]
    return {"name": set_config.name, "config": str(set_config.path), "tasks": tasks}


def format_table(summary: dict[str, Any]) -> str:
    """A fixed-width table plus the first missing/unreadable names under it."""
    header = ("task", "split", "samples", "classes", "missing", "not file", "unreadable",
              "past end", "short", "class size", "source")
    rows = []
    notes = []
    for task, splits in summary["tasks"].items():
        for split, s in splits.items():
            if s["labelled"]:
                size = f"{s['class_size_min']}..{s['class_size_max']}"
            else:
                size = "unlabelled"
            checked = ["-" if s.get(k) is None else str(s[k])
                       for k in ("unreadable", "past_end", "short")]
            rows.append((task, split, str(s["samples"]), str(s["classes"]), str(s["missing"]),
                         str(s["not_files"]), *checked, size, s["source"]))
            for what, count, key in (("missing", "missing", "missing"),
                                     ("not a file", "not_files", "not_file"),
                                     ("unreadable", "unreadable", "unreadable"),
                                     ("past the end", "past_end", "past_end"),
                                     ("shorter than its header", "short", "short")):
                paths, reasons = s.get(f"{key}_examples"), s.get(f"{key}_reasons") or []
                if paths:
                    named = [shown(f"{p} ({r})" if r else p)  # a NUL in a list: escaped
                             for p, r in zip(paths, reasons or [""] * len(paths))]
                    notes.append(f"{task}/{split} {what}: {', '.join(named)}"
                                 + (", ..." if s[count] > len(paths) else ""))
            if s.get("missing_hint"):
                notes.append(f"{task}/{split}: {s['missing_hint']}")
            if s.get("in_train"):
                notes.append(shown(
                    f"{task}/{split}: {s['in_train']} sample(s) also in the train split (the "
                    f"same file and segment: scores on them are not held out): "
                    f"{', '.join(s['in_train_examples'])}"
                    + (", ..." if s["in_train"] > len(s["in_train_examples"]) else "")))
            for name, items in s.get("merged_classes", {}).items():
                notes.append(f"{task}/{split} merged class {name!r}: {', '.join(items)}")
            bags = s.get("bags")
            if bags:
                notes.append(f"{task}/{split} bag intervals (class: intervals, labelled time, "
                             f"clips of {bags['clip_length']} frames): " + "; ".join(
                                 f"{n}: {bags['intervals'][n]}, {bags['labelled_s'][n]:.1f} s, "
                                 f"{bags['clips'][n]}" for n in bags["intervals"]))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4, 5, 6, 7, 8}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [f"set {summary['name']} ({summary['config']})", line(header),
           line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    return "\n".join(out + notes)


def run(args: argparse.Namespace) -> int:
    for option in ("config", "json"):
        value = getattr(args, option)
        try:  # a quoted "~user/..." that the shell did not expand
            setattr(args, option, value.expanduser() if value is not None else None)
        except RuntimeError:
            print(f"error: --{option}: cannot expand {str(value)!r}: no such user",
                  file=sys.stderr)
            return 2
    try:
        if args.json is not None:  # before any work; never over what this run reads
            check_out_file(args.json, args.overwrite, [args.config], option="--json")
        set_config = load_set(args.config)
        if args.json is not None:
            check_out_file(args.json, args.overwrite, set_config.inputs(), option="--json",
                           kind="json", writer=JSON_WRITER)
        summary = summarize(set_config, list(args.splits), args.check_videos, args.show,
                            args.clip_length)
    except (SettingsError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DatasetError as exc:  # a list or root named by the config: say which config
        print(f"error: {exc} (set config {args.config})", file=sys.stderr)
        return 2
    print(format_table(summary))
    if args.json is not None:
        try:  # atomic: a failed write leaves no half summary for a script to read
            document = {WRITTEN_BY: JSON_WRITER, **summary}  # proves the file ours later
            atomic_write_text(args.json, json.dumps(document, indent=2) + "\n")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        log.info("summary written to %s", args.json)
    return 0
