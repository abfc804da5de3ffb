"""dataset_to_bag: real videos -> a rosbag2 with real stamps and the labels CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers_bag import frames

from mtl_perception.bag.reader import Bag
from training.datasets.video import read_frames, write_video
from training.tools.to_bag import main

FPS = 10.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mmaction-style list of three short videos (two classes), one labelled twice."""
    root = tmp_path_factory.mktemp("videos")
    for name, count, seed in (("a.avi", 6, 1), ("b.avi", 4, 2), ("c.avi", 5, 3)):
        write_video(root / name, frames(count, seed, size=(24, 32)), fps=FPS)
    (root / "val_list.txt").write_text("a.avi 0\nb.avi 1\nc.avi 1\n")
    (root / "train_list.txt").write_text("a.avi 0\n")
    (root / "classes.txt").write_text("walk\njump\n")
    return root


def _convert(dataset: Path, out: Path, *extra: str) -> int:
    return main(["--format", "mmaction", "--task", "action", "--source", f"root={dataset}",
                 "class_names=classes.txt", "--out", str(out), "--gap-s", "0.5", *extra])


def _images(bag: Path) -> list[tuple[int, object]]:
    with Bag(bag) as reader:
        return list(reader.images())


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_videos_become_one_image_topic_with_real_stamps(dataset: Path, tmp_path: Path,
                                                        storage: str) -> None:
    out = tmp_path / "bag"
    assert _convert(dataset, out, "--storage", storage) == 0
    images = _images(out)
    assert len(images) == 6 + 4 + 5
    start = 1_700_000_000 * 10**9
    period, gap = 100_000_000, 500_000_000
    starts = [start, start + 6 * period + gap, start + 10 * period + 2 * gap]
    expected = [s + i * period for s, n in zip(starts, (6, 4, 5), strict=True) for i in range(n)]
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images]
    assert stamps == expected and [t for t, _ in images] == expected
    # Pixels are the training decoder's frames, unchanged (raw rgb8).
    first = images[6][1]
    assert first.encoding == "rgb8"  # type: ignore[attr-defined]
    pixels = np.asarray(first.data).reshape(24, 32, 3)  # type: ignore[attr-defined]
    assert np.array_equal(pixels, read_frames(dataset / "b.avi", [0])[0])
    with open(out / "labels.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["start", "end", "task", "label"]
    spans = [(float(a), float(b), t, c) for a, b, t, c in rows[1:]]
    assert spans == pytest.approx([(0.0, 0.6, "action", "walk"), (1.1, 1.5, "action", "jump"),
                                   (2.0, 2.5, "action", "jump")])
    summary = json.loads((out / "dataset_to_bag.json").read_text())
    assert summary["images"] == 15 and summary["storage"] == storage


def test_compressed_images(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "bag"
    assert _convert(dataset, out, "--compressed") == 0
    with Bag(out) as reader:
        assert reader.image_topic == "/camera/image_raw/compressed"
        msgs = [m for _, m in reader.images()]
    assert len(msgs) == 15 and {m.format for m in msgs} == {"jpeg"}
    assert bytes(msgs[0].data[:2]) == b"\xff\xd8"


def test_the_synthetic_set_config_is_accepted(tmp_path: Path) -> None:
    from training.synthetic.writer import SynthSettings, generate

    settings = SynthSettings(actions_per_class=2, gestures_per_class=2, width=32, height=24,
                             frames=8, gesture_frames=16, actions=("Walk", "Jump"),
                             gestures=("wave", "stop"), clips_per_group=1, reps_per_subject=1,
                             train_sessions=0, test_sessions=0, backgrounds=0)
    generate(settings, tmp_path / "synthetic")
    out = tmp_path / "bag"
    assert main(["--set", str(tmp_path / "synthetic/set.yaml"), "--out", str(out)]) == 0
    with open(out / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    tasks = {r["task"] for r in rows}
    assert tasks == {"action", "gesture"}
    gesture = [r for r in rows if r["task"] == "gesture"]
    # NVGesture-style segments: a gesture is labelled inside its longer video only.
    assert all(float(r["end"]) - float(r["start"]) < 16 / 25 for r in gesture)
    assert len(_images(out)) == 2 * 8 + 2 * 16  # one test video per class


def test_an_existing_output_is_only_replaced_when_ours(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "bag"
    assert _convert(dataset, out) == 0
    assert _convert(dataset, out) == 2
    assert _convert(dataset, out, "--overwrite", "--storage", "sqlite3") == 0
    assert any(p.suffix == ".db3" for p in out.iterdir())
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert _convert(dataset, other, "--overwrite") == 2
    assert (other / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "other"]


def test_bad_input_is_one_line_and_exit_2(dataset: Path, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--out", str(tmp_path / "x")]) == 2
    assert main(["--format", "mmaction", "--source", f"root={dataset}", "test_list=none.txt",
                 "--out", str(tmp_path / "x")]) == 2
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "give either --set FILE or --format" in messages[0]
    assert "list file not found" in messages[1] and "none.txt" in messages[1]
    assert not (tmp_path / "x").exists()
