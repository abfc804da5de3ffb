"""NVGesture reader on the real v2 lists: segments, and the label field over the folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers_datasets import copy_lists

from training.datasets.listfile import DatasetError
from training.datasets.nvgesture import NvgestureSource, read_list, read_split

TRAIN = "nvgesture_train_correct_cvpr2016_v2.lst"
TEST = "nvgesture_test_correct_cvpr2016_v2.lst"
ROOT = Path("/data/nvGesture")


@pytest.fixture(scope="module")
def nv(splits_dir: Path) -> NvgestureSource:
    lists = splits_dir / "nvgesture"
    return NvgestureSource(root=ROOT, train_list=lists / TRAIN, test_list=lists / TEST)


def test_counts_classes_and_segments(nv: NvgestureSource) -> None:
    train, test = read_split(nv, "train"), read_split(nv, "test")
    assert len(train.samples) == 1050 and len(test.samples) == 482
    assert train.class_names == [f"class_{i:02d}" for i in range(1, 26)]
    assert {s.label for s in train.samples} == set(range(25))
    first = train.samples[0]  # path:./Video_data/class_01/subject3_r0 ... color:sk_color:146:226
    assert first.path == ROOT / "Video_data/class_01/subject3_r0/sk_color.avi"
    assert (first.start, first.end, first.label) == (146, 226, 0)
    assert all(s.end is not None and s.end - s.start == 80 for s in train.samples + test.samples)


@pytest.mark.parametrize("name", [TRAIN, TEST])
def test_v2_relabels_honoured(splits_dir: Path, name: str) -> None:
    """Find lines whose `label:` differs from their class_NN folder: the label field wins."""
    lines = (splits_dir / "nvgesture" / name).read_text().splitlines()
    relabelled = []
    for i, line in enumerate(lines):
        folder = int(re.search(r"class_(\d+)/", line).group(1))
        label = int(re.search(r"label:(\d+)", line).group(1))
        if folder != label:
            relabelled.append((i, label))
    assert relabelled, "the v2 lists relabel some samples"
    samples = read_list(splits_dir / "nvgesture" / name, ROOT)
    for i, label in relabelled:
        assert samples[i].label == label - 1
        assert samples[i].path.parent.parent.name != f"class_{label:02d}"


def test_trailing_space_crlf_and_class_names(splits_dir: Path, tmp_path: Path) -> None:
    assert (splits_dir / "nvgesture" / TRAIN).read_text().splitlines()[0].endswith(" ")
    lists = copy_lists(splits_dir / "nvgesture", tmp_path, [TRAIN, TEST], crlf=True)
    names = tmp_path / "classes.txt"
    names.write_text("\r\n".join(f"gesture {i}" for i in range(25)) + "\r\n")
    src = NvgestureSource(root=ROOT, train_list=lists / TRAIN, test_list=lists / TEST,
                          class_names=names)
    crlf = read_split(src, "test")
    assert crlf.samples == read_list(splits_dir / "nvgesture" / TEST, ROOT)
    assert crlf.class_names[3] == "gesture 3"


def test_malformed_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.lst"
    bad.write_text("path:./a color:sk_color:1:81 label:1 \npath:./b color:sk_color:9 label:2\n")
    with pytest.raises(DatasetError, match=r"bad\.lst:2: color field"):
        read_list(bad, tmp_path)
    bad.write_text("path:./a color:sk_color:1:81\n")
    with pytest.raises(DatasetError, match=r"bad\.lst:1: missing field\(s\) label"):
        read_list(bad, tmp_path)
    bad.write_text("path:./a color:sk_color:1:81 label:26\n")
    with pytest.raises(DatasetError, match="exceeds the 25 class names"):
        read_split(NvgestureSource(root=tmp_path, train_list=bad), "train")
