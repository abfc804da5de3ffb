"""A plain class-folder tree, `root/<class>/<video>`: the layout of home-made data.

There is no list, so the tree is the truth: classes are the sub-folders of the
training tree in sorted order (or the order of a `class_names` file, which may
also leave folders out), and every video file inside is a sample. The test
split is a second tree with the same class folders (`test_root`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.datasets.listfile import DatasetError, read_class_names
from training.datasets.mmaction import VIDEO_EXTENSIONS
from training.datasets.sample import LabelledSplit, VideoSample

SPLITS = ("train", "test")


@dataclass
class FoldersSource:
    """Settings of one class-folder tree source in a set config."""

    root: Path  # training tree: root/<class>/<video>
    test_root: Path | None = None  # test tree with the same class folders
    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    class_names: Path | None = field(default=None, metadata={"list": True})


def class_folders(root: Path) -> list[str]:
    """Sorted names of the class folders directly under `root` (hidden ones skipped)."""
    if not root.is_dir():
        raise DatasetError(f"class-folder root not found: {root}")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DatasetError(f"{root}: no class folders")
    return names


def read_split(source: FoldersSource, split: str) -> LabelledSplit:
    """`train` (the `root` tree) or `test` (the `test_root` tree)."""
    if split not in SPLITS:
        raise DatasetError(f"folders has splits {list(SPLITS)}, not {split!r}")
    names = (read_class_names(source.class_names) if source.class_names
             else class_folders(source.root))
    if split == "train":
        tree = source.root
    elif source.test_root is None:
        raise DatasetError(f"folders source {source.root} has no test_root for the test split")
    else:
        tree = source.test_root
    unknown = sorted(set(class_folders(tree)) - set(names))
    if unknown and source.class_names is None:
        raise DatasetError(f"{tree}: class folder(s) {unknown[:5]} not in the training tree")
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}"
                       for e in source.extensions)
    samples = []
    for label, name in enumerate(names):
        folder = tree / name
        if not folder.is_dir():
            continue  # a class without test videos; counted as size 0 by summarize
        for video in sorted(folder.rglob("*")):
            # not is_dir(): a FIFO or device named like a video is a sample the readers
            # refuse and count (reported), not a file skipped without a word
            if not video.is_dir() and video.suffix.lower() in extensions:
                samples.append(VideoSample(path=video, label=label))
    if not samples:
        raise DatasetError(f"{tree}: no videos with extensions {list(extensions)}")
    return LabelledSplit(samples=samples, class_names=names, source=f"folders {tree}")
