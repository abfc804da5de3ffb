"""NVGesture as published: `nvgesture_{train,test}_correct_cvpr2016_v2.lst`.

A line is `key:value` fields separated by spaces (with a trailing space):
`path:./Video_data/class_01/subject3_r0 depth:sk_depth:146:226
color:sk_color:146:226 duo_left:duo_left:170:263 label:1`. The RGB video is
`<path>/<color name>.avi` (`sk_color.avi`) and the gesture is its frames
[start, end) from the `color:` field. The label comes from `label:` only:
the v2 lists relabel samples without moving them out of their `class_NN`
folder, so the folder name is wrong for those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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

NUM_CLASSES = 25
SPLITS = ("train", "test")


@dataclass
class NvgestureSource:
    """Settings of one NVGesture source in a set config."""

    root: Path  # the folder the lists' `path:./Video_data/...` entries are relative to
    train_list: Path = field(default=Path("nvgesture_train_correct_cvpr2016_v2.lst"),
                             metadata={"list": True})
    test_list: Path = field(default=Path("nvgesture_test_correct_cvpr2016_v2.lst"),
                            metadata={"list": True})
    # one name per line in label order; default class_01..class_25 (the lists carry numbers)
    class_names: Path | None = field(default=None, metadata={"list": True})


def parse_line(line: str, path: Path, number: int, num_classes: int = MAX_CLASSES
               ) -> tuple[str, str, int, int, int]:
    """(video folder, colour stream name, start, end, 1-based label) of one list line;
    the label at most `num_classes`."""
    fields: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition(":")
        if not sep:
            raise DatasetError(f"{path}:{number}: field {token!r} has no 'key:'")
        if key in fields:  # which one would be meant? (two labels, two segments)
            raise DatasetError(f"{path}:{number}: field {key!r} appears twice")
        fields[key] = value
    missing = [key for key in ("path", "color", "label") if key not in fields]
    if missing:
        raise DatasetError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
    color = fields["color"].split(":")
    if len(color) != 3:
        raise DatasetError(
            f"{path}:{number}: color field {fields['color']!r} is not name:start:end"
        )
    start = parse_int(color[1], path, number, "color start", 0, MAX_FRAME)
    end = parse_int(color[2], path, number, "color end", 0, MAX_FRAME)
    if not start < end:
        raise DatasetError(f"{path}:{number}: color segment [{start}, {end}) is empty")
    label = parse_int(fields["label"], path, number, "label", 1, MAX_CLASSES)
    check_label(label - 1, num_classes, path, number)
    return fields["path"], color[0], start, end, label


def read_list(path: Path, root: Path, num_classes: int = MAX_CLASSES) -> list[VideoSample]:
    """Samples (RGB segments) of one `.lst` file; labels 0-based, below `num_classes`."""
    entries = []
    for number, line in read_lines(path):
        folder, stream, start, end, label = parse_line(line, path, number, num_classes)
        video = root / folder / f"{stream}.avi"
        entries.append((number, VideoSample(path=video, label=label - 1, start=start, end=end)))
    return unique_samples(entries, path)


def read_split(source: NvgestureSource, split: str) -> LabelledSplit:
    """`train` or `test`."""
    if split not in SPLITS:
        raise DatasetError(f"nvgesture has splits {list(SPLITS)}, not {split!r}")
    list_path = source.train_list if split == "train" else source.test_list
    names = (read_class_names(source.class_names) if source.class_names
             else numbered_names("class_", NUM_CLASSES))
    samples = read_list(list_path, source.root, len(names))
    return LabelledSplit(samples=samples, class_names=names,
                         source=f"nvgesture {list_path.name}")
