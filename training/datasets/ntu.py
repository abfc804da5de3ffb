"""NTU RGB+D 120 (and 60) RGB videos: `SsssCcccPpppRrrrAaaa_rgb.avi`, cross-subject split.

NTU ships no list of videos: the file name carries setup, camera, performer
(subject), replication and class. So the reader scans `root` recursively for
`*_rgb.avi` names (the archives extract to one flat `nturgb+d_rgb/` folder, but
users often keep one folder per archive), or reads an optional `video_list`
(one file name or sample id per line, relative to `root`) when scanning a slow
network disk is too costly or only part of the data should be used. With a
scan, a video is only listed when present, so nothing is ever "missing"; with a
list, absent files are reported like any other dataset's. One sample counts
once: a copy found in a second folder, or a list naming one sample id at two
paths, is used once (the first) with one warning.

The paper splits NTU's classes by hand into NTU_AR (actions) and NTU_GR
(gestures) and publishes no list: `part` picks one side, using the editable
gesture list (`config/classes/ntu_gesture_classes.yaml`, 25 classes by default).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtl_perception.settings import SettingsError, from_dict, load_yaml
from training.datasets import ntu_classes
from training.datasets.listfile import (
    DatasetError,
    parse_int,
    read_class_names,
    read_lines,
    require_entries,
    unique_samples,
)
from training.datasets.sample import LabelledSplit, VideoSample

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
# ASCII digits only (`\d` would also take other scripts' digits, which no NTU name has)
NAME = re.compile(r"S([0-9]{3})C([0-9]{3})P([0-9]{3})R([0-9]{3})A([0-9]{3})")
MAX_SUBJECT = 999  # a performer number has three digits in the names
RGB_SUFFIX = "_rgb.avi"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEFAULT_GESTURE_FILE = CONFIG_DIR / "classes" / "ntu_gesture_classes.yaml"


@dataclass
class NtuSource:
    """Settings of one NTU RGB+D source in a set config."""

    root: Path  # scanned recursively for `SsssCcccPpppRrrrAaaa_rgb.avi`
    part: Literal["action", "gesture", "all"] = "all"  # NTU_AR, NTU_GR or all classes
    version: Literal["ntu120", "ntu60"] = "ntu120"  # ntu60: setups S001-S017, A001-A060
    video_list: Path | None = field(default=None, metadata={"list": True})
    gesture_classes: Path | None = field(default=None, metadata={"list": True})
    train_subjects: Path | None = field(default=None, metadata={"list": True})
    class_names: Path | None = field(default=None, metadata={"list": True})
    # skeleton methods drop these; for RGB they are fine, so keep them by default
    exclude_missing_skeletons: bool = False
    missing_skeletons_list: Path | None = field(default=None, metadata={"list": True})


@dataclass
class GestureClassFile:
    """`ntu_gesture_classes.yaml`: NTU class ids (`A069` or 69) that form NTU_GR."""

    gesture_classes: list[int | str] = field(default_factory=list)


@dataclass(frozen=True)
class NtuName:
    """The fields of an NTU sample name."""

    setup: int
    camera: int
    subject: int
    replication: int
    action: int  # 1-based class id

    @property
    def sample_id(self) -> str:
        return (f"S{self.setup:03d}C{self.camera:03d}P{self.subject:03d}"
                f"R{self.replication:03d}A{self.action:03d}")


def parse_name(name: str) -> NtuName | None:
    """`S001C002P003R001A069_rgb.avi` (or the bare sample id) -> its fields; None otherwise."""
    match = NAME.fullmatch(name.removesuffix(RGB_SUFFIX))
    return NtuName(*(int(g) for g in match.groups())) if match else None


def class_id(token: int | str, where: str) -> int:
    """`A069`, `69` or 69 -> 69."""
    # at most three digits after the zeros: no int() of a thousand-digit string
    match = re.fullmatch(r"[Aa]?0*([0-9]{1,3})", str(token).strip())
    if not match or not 1 <= int(match.group(1)) <= len(ntu_classes.CLASS_NAMES):
        raise DatasetError(f"{where}: {token!r} is not an NTU class id A001..A120")
    return int(match.group(1))


def load_gesture_classes(path: Path | None) -> list[int]:
    """The NTU_GR class ids, ascending; the shipped file, else the documented default."""
    if path is None:
        if not DEFAULT_GESTURE_FILE.is_file():
            log.info("no %s; using the documented 25 NTU gesture classes", DEFAULT_GESTURE_FILE)
            return sorted(ntu_classes.DEFAULT_GESTURE_CLASSES)
        path = DEFAULT_GESTURE_FILE
    try:
        listed = from_dict(GestureClassFile, load_yaml(path), str(path)).gesture_classes
    except SettingsError as exc:
        raise DatasetError(str(exc)) from exc
    ids = [class_id(token, str(path)) for token in listed]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: a class is listed twice")
    if not ids:
        raise DatasetError(f"{path}: no gesture classes listed")
    return sorted(ids)


def read_subjects(path: Path) -> frozenset[int]:
    """A subject list file: one performer number per line (`P` prefix allowed)."""
    subjects = set()
    repeats = 0
    for number, line in read_lines(path):
        match = re.fullmatch(r"[Pp]?([0-9]+)", line)
        if not match:
            raise DatasetError(f"{path}:{number}: {line!r} is not a subject number")
        subject = parse_int(match.group(1), path, number, "subject", 0, MAX_SUBJECT)
        repeats += subject in subjects
        subjects.add(subject)
    if repeats:
        log.warning("%s: %d subject(s) listed more than once", path, repeats)
    return frozenset(require_entries(sorted(subjects), path))


def read_sample_ids(path: Path) -> frozenset[str]:
    """Sample ids in a file such as the missing-skeleton list (prose lines are skipped)."""
    return frozenset(m.group(0) for _, line in read_lines(path) if (m := NAME.search(line)))


@functools.lru_cache(maxsize=8)
def _scan(root: Path, mtime_ns: int) -> tuple[Path, ...]:
    found: dict[str, Path] = {}
    twice: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(RGB_SUFFIX) and parse_name(name):
                if name in found:
                    twice.append(Path(folder) / name)
                    continue
                found[name] = Path(folder) / name
    if twice:  # one sample, one vote: copies in two folders must not count twice
        log.warning("%s: %d video(s) found in two folders, each used once (first: %s, using %s)",
                    root, len(twice), twice[0], found[twice[0].name])
    return tuple(sorted(found.values(), key=lambda p: p.name))


def find_videos(source: NtuSource) -> list[tuple[Path, NtuName]]:
    """Every RGB video of the source (scanned, or from `video_list`) with its fields."""
    if source.video_list is None:
        if not source.root.is_dir():
            raise DatasetError(f"NTU video root not found: {source.root}")
        paths = _scan(source.root, source.root.stat().st_mtime_ns)
        if not paths:
            raise DatasetError(f"no SsssCcccPpppRrrrAaaa_rgb.avi videos under {source.root}")
        return [(p, parsed) for p in paths if (parsed := parse_name(p.name))]
    entries = []
    fields: dict[Path, NtuName] = {}
    first: dict[str, tuple[int, Path]] = {}  # sample id -> its first line and path
    elsewhere: list[tuple[int, str, int]] = []  # (line, sample id, its earlier line)
    for number, line in read_lines(source.video_list):
        relative = line if line.endswith(RGB_SUFFIX) else line + RGB_SUFFIX
        parsed = parse_name(Path(relative).name)
        if parsed is None:
            raise DatasetError(f"{source.video_list}:{number}: {line!r} is not an NTU sample name")
        path = source.root / relative
        earlier, seen = first.setdefault(parsed.sample_id, (number, path))
        if seen != path:  # one sample, one vote: as for a copy the scan finds in two folders
            elsewhere.append((number, parsed.sample_id, earlier))
            continue
        # the label comes from the name, so one path always has one label
        fields[path] = parsed
        entries.append((number, VideoSample(path, parsed.action)))
    if elsewhere:
        log.warning("%s: %d sample(s) listed at two paths, each used once at its first "
                    "(first: line %d names %s again, listed at line %d)",
                    source.video_list, len(elsewhere), *elsewhere[0])
    return [(s.path, fields[s.path]) for s in unique_samples(entries, source.video_list)]


def class_ids(source: NtuSource) -> list[int]:
    """The 1-based NTU class ids of the source's part, ascending (label order)."""
    last = 60 if source.version == "ntu60" else 120
    gestures = [c for c in load_gesture_classes(source.gesture_classes) if c <= last]
    if source.part == "gesture":
        return gestures
    if source.part == "action":
        gesture_set = set(gestures)
        return [c for c in range(1, last + 1) if c not in gesture_set]
    return list(range(1, last + 1))


def read_split(source: NtuSource, split: str) -> LabelledSplit:
    """Cross-subject `train` (listed subjects) or `test` (all others)."""
    if split not in SPLITS:
        raise DatasetError(f"ntu has splits {list(SPLITS)}, not {split!r}")
    all_names = (read_class_names(source.class_names) if source.class_names
                 else list(ntu_classes.CLASS_NAMES))
    if len(all_names) != len(ntu_classes.CLASS_NAMES):
        raise DatasetError(f"{source.class_names}: expected 120 NTU class names, "
                           f"got {len(all_names)}")
    if source.train_subjects is not None:
        train_subjects = read_subjects(source.train_subjects)
    elif source.version == "ntu60":
        train_subjects = ntu_classes.XSUB_TRAIN_SUBJECTS_60
    else:
        train_subjects = ntu_classes.XSUB_TRAIN_SUBJECTS_120
    excluded: frozenset[str] = frozenset()
    if source.exclude_missing_skeletons:
        if source.missing_skeletons_list is None:
            raise DatasetError("ntu: exclude_missing_skeletons needs missing_skeletons_list")
        excluded = read_sample_ids(source.missing_skeletons_list)
    ids = class_ids(source)
    label_of = {c: i for i, c in enumerate(ids)}
    samples = []
    for path, name in find_videos(source):
        if name.action not in label_of or name.sample_id in excluded:
            continue
        if source.version == "ntu60" and name.setup > 17:
            continue
        if (name.subject in train_subjects) == (split == "train"):
            samples.append(VideoSample(path=path, label=label_of[name.action]))
    where = source.video_list.name if source.video_list else str(source.root)
    part = {"action": "NTU_AR", "gesture": "NTU_GR", "all": "NTU"}[source.part]
    return LabelledSplit(samples=samples, class_names=[all_names[c - 1] for c in ids],
                         source=f"ntu {part} {split} ({where})",
                         extra={"ntu_class_ids": [f"A{c:03d}" for c in ids]})
