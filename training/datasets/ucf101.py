"""UCF-101 as published: `UCF-101/<Class>/v_<Class>_gGG_cCC.avi` + `ucfTrainTestlist/`.

The class of a video is always its folder, looked up in `classInd.txt`:
`testlistNN.txt` has no label column, and the folder `HandstandPushups/`
holds files named `v_HandStandPushups_*`, so neither the label column nor
the file name can be the source of truth for both lists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from training.datasets.listfile import (
    MAX_CLASSES,
    DatasetError,
    parse_int,
    read_lines,
    unique_samples,
)
from training.datasets.sample import LabelledSplit, VideoSample

log = logging.getLogger(__name__)

SPLITS = ("train", "test")


@dataclass
class Ucf101Source:
    """Settings of one UCF-101 source in a set config."""

    root: Path  # the folder holding the 101 class folders (`UCF-101/`)
    annotations: Path = field(default=Path("ucfTrainTestlist"), metadata={"list": True})
    split: int = 1  # the published splits 1..3; the paper uses 1

    def __post_init__(self) -> None:
        if self.split not in (1, 2, 3):
            raise DatasetError(f"ucf101 split must be 1, 2 or 3, got {self.split}")


def read_class_index(path: Path) -> list[str]:
    """`classInd.txt`: `1 ApplyEyeMakeup` ... `101 YoYo`, 1-based, in order."""
    names: list[str] = []
    for number, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(f"{path}:{number}: expected 'index ClassName', got {line!r}")
        index = parse_int(parts[0], path, number, "class index", 1, MAX_CLASSES)
        if index != len(names) + 1:
            raise DatasetError(f"{path}:{number}: class index {index}, expected {len(names) + 1}")
        if parts[1] in names:  # the second would be a class without a sample
            raise DatasetError(f"{path}:{number}: class name {parts[1]!r} appears twice "
                               f"(first as class {names.index(parts[1]) + 1})")
        names.append(parts[1])
    if not names:
        raise DatasetError(f"{path}: no classes")
    return names


def read_split(source: Ucf101Source, split: str) -> LabelledSplit:
    """The `train` (trainlistNN) or `test` (testlistNN) samples of one split."""
    if split not in SPLITS:
        raise DatasetError(f"ucf101 has splits {list(SPLITS)}, not {split!r}")
    class_names = read_class_index(source.annotations / "classInd.txt")
    index = {name: i for i, name in enumerate(class_names)}
    list_path = source.annotations / f"{split}list{source.split:02d}.txt"
    entries: list[tuple[int, VideoSample]] = []
    disagreements = 0
    for number, line in read_lines(list_path):
        parts = line.split()
        if len(parts) not in (1, 2):
            raise DatasetError(f"{list_path}:{number}: expected 'Class/video.avi [label]'")
        relative = parts[0].replace("\\", "/")
        folder = relative.split("/")[0]
        if "/" not in relative or folder not in index:
            raise DatasetError(
                f"{list_path}:{number}: {relative!r} is not under a class folder of classInd.txt"
            )
        label = index[folder]
        # the column is only compared with the folder (a disagreement is warned about), so
        # any label-sized number passes; a longer one is damage
        if len(parts) == 2 and parse_int(parts[1], list_path, number, "label", -MAX_CLASSES,
                                         MAX_CLASSES) - 1 != label:
            disagreements += 1
        entries.append((number, VideoSample(path=source.root / relative, label=label)))
    samples = unique_samples(entries, list_path)
    if disagreements:
        log.warning("%s: %d label column(s) disagree with the class folder; the folder wins",
                    list_path, disagreements)
    return LabelledSplit(samples=samples, class_names=class_names,
                         source=f"ucf101 {list_path.name}")
