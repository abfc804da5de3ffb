"""mmaction2-style annotation lists, so data prepared for mmaction2 needs no conversion.

Three line forms (mmaction2's `VideoDataset` and `RawframeDataset`):
`path label` (a video file), `frame_dir total_frames label` and
`frame_dir offset total_frames label` (a folder of extracted frames
`img_00001.jpg`..., 1-based). Labels are 0-based as mmaction2 writes them
(`label_base: 1` for lists that count from 1). A line is a video when its
first field has a video extension and frames otherwise (`kind` forces one).
Without `class_names` the classes are numbered up to the largest label, so a
label is bounded (`MAX_CLASSES`) before any name is made for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from training.datasets.listfile import (
    MAX_CLASSES,
    MAX_FRAME,
    DatasetError,
    check_label,
    numbered_names,
    parse_int,
    read_class_names,
    read_lines,
    unique_samples,
)
from training.datasets.sample import LabelledSplit, VideoSample

SPLITS = ("train", "test")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v", ".flv",
                    ".wmv")


@dataclass
class MmactionSource:
    """Settings of one mmaction2-style list source in a set config."""

    root: Path  # mmaction2's `data_prefix`: list paths are relative to it
    train_list: Path = field(default=Path("train_list.txt"), metadata={"list": True})
    test_list: Path = field(default=Path("val_list.txt"), metadata={"list": True})
    kind: Literal["auto", "videos", "frames"] = "auto"
    label_base: int = 0  # mmaction2 lists count classes from 0
    class_names: Path | None = field(default=None, metadata={"list": True})

    def __post_init__(self) -> None:
        if self.label_base not in (0, 1):
            raise DatasetError(f"mmaction label_base must be 0 or 1, got {self.label_base}")


# (relative path, 0-based label, start, end or None, is a frames folder)
Row = tuple[str, int, int, int | None, bool]


def parse_line(line: str, path: Path, number: int, source: MmactionSource,
               num_classes: int = MAX_CLASSES) -> Row:
    """(relative path, 0-based label, start, end, is frames folder) of one list line; the
    label below `num_classes`."""
    parts = line.split()
    is_video = parts[0].lower().endswith(VIDEO_EXTENSIONS)
    frames = source.kind == "frames" or (source.kind == "auto" and not is_video)
    expected = (3, 4) if frames else (2,)
    if len(parts) not in expected:
        form = ("'frame_dir [offset] total_frames label'" if frames else "'video label'")
        raise DatasetError(f"{path}:{number}: expected {form}, got {len(parts)} fields")
    base = source.label_base
    label = parse_int(parts[-1], path, number, "label", base, base + MAX_CLASSES - 1) - base
    check_label(label, num_classes, path, number, base)
    if not frames:
        return parts[0], label, 0, None, False
    offset = parse_int(parts[1], path, number, "offset", 0, MAX_FRAME) if len(parts) == 4 else 0
    total = parse_int(parts[-2], path, number, "total_frames", 1, MAX_FRAME)
    return parts[0], label, offset, offset + total, True


def read_list(path: Path, source: MmactionSource,
              num_classes: int = MAX_CLASSES) -> list[VideoSample]:
    """Samples of one list file; labels below `num_classes`."""
    entries = []
    for number, line in read_lines(path):
        relative, label, start, end, frames = parse_line(line, path, number, source,
                                                         num_classes)
        entries.append((number, VideoSample(path=source.root / relative, label=label,
                                            start=start, end=end, frames_dir=frames)))
    return unique_samples(entries, path)


def read_split(source: MmactionSource, split: str) -> LabelledSplit:
    """`train` or `test`; without `class_names`, the class count is the largest label + 1
    over both lists, so that train and test agree."""
    if split not in SPLITS:
        raise DatasetError(f"mmaction lists have splits {list(SPLITS)}, not {split!r}")
    list_path = source.train_list if split == "train" else source.test_list
    if source.class_names is not None:
        names = read_class_names(source.class_names)
        samples = read_list(list_path, source, len(names))
    else:
        samples = read_list(list_path, source)
        other = read_list(source.test_list if split == "train" else source.train_list, source)
        names = numbered_names("class_", 1 + max(s.label for s in samples + other))
    return LabelledSplit(samples=samples, class_names=names, source=f"mmaction {list_path.name}")
