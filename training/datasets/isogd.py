"""ChaLearn IsoGD as published: `IsoGD_phase_1/{train,valid}`, `IsoGD_phase_2/test`.

List lines are `train/001/M_00001.avi train/001/K_00001.avi 26` (RGB, depth,
label 1..249). Released test lists come with two columns (no label), with a
real third column, or, in public copies, with a placeholder label 0. A list
whose labels are all missing or 0 is read as unlabelled (usable for
inference, not for scoring); a 0 among real labels is an error, because it
would silently become a wrong class. The `train` split is refused when its
list is unlabelled: training on it could only fail later, inside the loss.

The user-facing `test` split reads the *valid* list by default: the test
list that circulates has placeholder labels, so the valid list is what
papers (and this one) report on. `test_split: test` switches to the test list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from training.datasets.listfile import (
    DatasetError,
    numbered_names,
    parse_int,
    read_class_names,
    read_lines,
    unique_samples,
)
from training.datasets.sample import UNLABELLED, LabelledSplit, VideoSample

NUM_CLASSES = 249
SPLITS = ("train", "test", "valid")


@dataclass
class IsogdSource:
    """Settings of one IsoGD source in a set config."""

    root: Path  # `IsoGD_phase_1`: list paths `train/...`, `valid/...` are relative to it
    train_list: Path = field(default=Path("train_list.txt"), metadata={"list": True})
    valid_list: Path = field(default=Path("valid_list.txt"), metadata={"list": True})
    test_list: Path = field(default=Path("test_list.txt"), metadata={"list": True})
    test_root: Path | None = None  # `IsoGD_phase_2` (test videos); default: root
    test_split: Literal["valid", "test"] = "valid"  # which list the `test` split reads
    class_names: Path | None = field(default=None, metadata={"list": True})


def read_list(path: Path, root: Path, num_classes: int = NUM_CLASSES) -> list[VideoSample]:
    """Samples of one IsoGD list (RGB `M_` videos); labels 0-based or `UNLABELLED`."""
    rows: list[tuple[int, str, int | None]] = []
    for number, line in read_lines(path):
        parts = line.split()
        if len(parts) not in (1, 2, 3) or not parts[0].lower().endswith(".avi"):
            raise DatasetError(f"{path}:{number}: expected 'M_video.avi [K_video.avi] [label]'")
        if Path(parts[0]).name.startswith("K_"):  # IsoGD's depth video: not a camera frame
            raise DatasetError(f"{path}:{number}: {parts[0]} is a depth (K_) video; the first "
                               "column is the RGB M_ video")
        label = None
        if len(parts) > 1 and not parts[-1].lower().endswith(".avi"):
            # 1..the class names' count, or the placeholder 0 (no label); `+3` is 3, not a
            # depth file name
            label = parse_int(parts[-1], path, number, "label", 0, num_classes)
        elif len(parts) == 3:
            raise DatasetError(f"{path}:{number}: label {parts[-1]!r} is not an integer")
        rows.append((number, parts[0], label))
    labelled = any(label for _, _, label in rows)
    entries = []
    for number, relative, label in rows:
        if labelled and not label:
            raise DatasetError(
                f"{path}:{number}: missing or placeholder label 0 in a list with real labels"
            )
        value = label - 1 if labelled and label else UNLABELLED
        entries.append((number, VideoSample(path=root / relative, label=value)))
    return unique_samples(entries, path)


def read_split(source: IsogdSource, split: str) -> LabelledSplit:
    """`train`, `test` (the `test_split` list) or `valid`."""
    if split not in SPLITS:
        raise DatasetError(f"isogd has splits {list(SPLITS)}, not {split!r}")
    which = source.test_split if split == "test" else split
    list_path = {"train": source.train_list, "valid": source.valid_list,
                 "test": source.test_list}[which]
    root = (source.test_root or source.root) if which == "test" else source.root
    names = (read_class_names(source.class_names) if source.class_names
             else numbered_names("isogd_", NUM_CLASSES))
    samples = read_list(list_path, root, len(names))
    if which == "train" and all(s.label == UNLABELLED for s in samples):
        raise DatasetError(
            f"{list_path}: no line has a real label (two columns, or the placeholder 0 only); "
            "the train split must be labelled (an unlabelled list is for inference)"
        )
    return LabelledSplit(samples=samples, class_names=names, source=f"isogd {list_path.name}")
