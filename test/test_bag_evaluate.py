"""evaluate_bag end to end: real bags, a real checkpoint, the real streaming core."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch
from helpers_bag import (
    START_NS,
    TOPIC,
    cut,
    raw_image,
    storage_file,
    tiny_checkpoint,
    write_image_bag,
    write_ros1_bag,
)

from mtl_perception.bag.evaluate import main
from mtl_perception.bag.reader import Bag
from mtl_perception.bag.types import IMAGE
from mtl_perception.bag.writer import BagWriter

INTERFACE_KEYS = {"cumulative_accuracy", "clips", "latency_ms", "frames_per_second"}
SETTINGS = ["--set", "target_fps=10", "inference_stride=2"]
# 40 frames at 10 fps, clips of 4 frames every 2: clips end at frames 3, 5, ..., 39.
EXPECTED_CLIPS = 19


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    labels = root / "labels.csv"
    labels.write_text("start,end,task,label\n0,2,action,walk\n2,4,action,jump\n"
                      "0.5,3.5,gesture,wave\n", encoding="utf-8")
    return {
        "checkpoint": tiny_checkpoint(root / "model.safetensors"),
        "bag": write_image_bag(root / "bag", count=40, fps=10.0, extra_topic=True),
        "labels": labels,
        "root": root,
    }


def _run(files: dict[str, Path], out: Path, *extra: str, bag: Path | None = None) -> int:
    return main(["--bag", str(bag or files["bag"]), "--checkpoint", str(files["checkpoint"]),
                 "--labels", str(files["labels"]), "--out", str(out), "--no-progress",
                 *SETTINGS, *extra])


def _error(caplog: pytest.LogCaptureFixture) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    return errors[0]


def test_metrics_report_and_plots(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(files, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert INTERFACE_KEYS | {"action", "gesture"} <= set(metrics)
    for task in ("action", "gesture"):
        assert {"clip_accuracy", "segment_accuracy", "per_class"} <= set(metrics[task])
    assert metrics["clips"] == EXPECTED_CLIPS
    assert metrics["action"]["clips_scored"] == EXPECTED_CLIPS  # every clip is in walk or jump
    assert metrics["action"]["segments_scored"] == 2
    assert metrics["gesture"]["segments_scored"] == 1
    assert set(metrics["latency_ms"]) == {"p50", "p95"} and metrics["latency_ms"]["p50"] > 0
    assert metrics["frames_per_second"] > 0 and metrics["images"] == 40
    assert metrics["read"]["read_fraction"] == 1.0 and metrics["warnings"] == []
    for task in ("action", "gesture"):
        assert (out / f"confusion_{task}.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "| action |" in report and "confusion_gesture.png" in report
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == EXPECTED_CLIPS
    assert float(rows[0]["first_s"]) == pytest.approx(0.0)
    assert float(rows[0]["last_s"]) == pytest.approx(0.3)
    assert float(rows[-1]["last_s"]) == pytest.approx(3.9)


def test_two_runs_give_the_same_predictions(files: dict[str, Path], tmp_path: Path) -> None:
    assert _run(files, tmp_path / "a") == 0
    assert _run(files, tmp_path / "b") == 0
    assert (tmp_path / "a/predictions.csv").read_bytes() == (tmp_path / "b/predictions.csv"
                                                              ).read_bytes()
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in "ab")
    assert a["action"] == b["action"] and a["gesture"] == b["gesture"]


def test_write_bag_reads_back_with_rosbags(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(files, out, "--write-bag") == 0
    with open(out / "predictions.csv") as handle:
        expected = [row["action"] for row in csv.DictReader(handle)]
    from rosbags.highlevel import AnyReader

    with AnyReader([out / "bag"]) as reader:
        topics = {name: (info.msgtype, info.msgcount) for name, info in reader.topics.items()}
        action = [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(
            [c for c in reader.connections if c.topic == "/human/action"])]
        info = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(
            [c for c in reader.connections if c.topic == "/human/gesture/label_info"])]
    assert topics[TOPIC] == (IMAGE, 40)
    assert topics["/chatter"] == ("std_msgs/msg/String", 40)  # other topics copied too
    assert topics["/human/action"] == ("vision_msgs/msg/Classification", EXPECTED_CLIPS)
    assert topics["/human/gesture"][1] == EXPECTED_CLIPS
    assert [c.class_name for c in info[0].class_map] == ["wave", "stop"]
    for (log_time, msg), name, k in zip(action, expected, range(3, 40, 2), strict=True):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp == log_time == START_NS + k * 100_000_000  # the clip's last frame
        assert msg.header.frame_id == "cam"
        assert msg.results[0].class_id == name
        scores = [h.score for h in msg.results]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3



def test_write_bag_of_a_bag_that_holds_predictions_keeps_only_this_runs(
        files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Evaluating an earlier --write-bag output (or a bag recorded with the node running)
    doubled /human/action and wrote label_info 3 times; a topic of another type there
    made the bag invalid. The input's own messages on those topics are left out now."""
    first = tmp_path / "first"
    assert _run(files, first, "--write-bag") == 0
    caplog.clear()
    second = tmp_path / "second"
    assert _run(files, second, "--write-bag", bag=first / "bag") == 0
    from rosbags.highlevel import AnyReader

    with AnyReader([second / "bag"]) as reader:
        counts = {name: info.msgcount for name, info in reader.topics.items()}
    assert counts["/human/action"] == EXPECTED_CLIPS
    assert counts["/human/action/label_info"] == 1 and counts["/chatter"] == 40
    warned = [r.getMessage() for r in caplog.records if "--write-bag:" in r.getMessage()]
    assert len(warned) == 1
    assert f"/human/action ({EXPECTED_CLIPS} messages)" in warned[0]
    # that output bag read back into its own folder: --overwrite had deleted the input
    caplog.clear()
    before = sorted((p.name, p.stat().st_size) for p in (first / "bag").iterdir())
    assert _run(files, first, "--overwrite", bag=first / "bag") == 2
    assert f"holds {first / 'bag'}, an input of this run" in _error(caplog)
    assert sorted((p.name, p.stat().st_size) for p in (first / "bag").iterdir()) == before


def test_results_are_refused_unless_overwrite(files: dict[str, Path], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    assert _run(files, out) == 0
    before = (out / "metrics.json").read_bytes()
    caplog.clear()
    assert _run(files, out) == 2
    assert "already holds results; pass --overwrite" in _error(caplog)
    assert (out / "metrics.json").read_bytes() == before
    assert _run(files, out, "--overwrite") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    caplog.clear()
    assert _run(files, foreign, "--overwrite") == 2
    assert "not an earlier evaluate_bag output (no evaluate_bag.manifest.json" in _error(caplog)
    assert (foreign / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_truncated_bag_is_evaluated_up_to_its_last_message(
    files: dict[str, Path], tmp_path: Path, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0, storage=storage)
    cut(storage_file(bag), 0.55)
    caplog.set_level(logging.WARNING)
    assert _run(files, tmp_path / "out", bag=bag) == 0
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    read = metrics["read"]
    assert read["truncated"] and read["messages_expected"] == 40
    assert 15 <= read["messages_read"] < 25 and read["read_fraction"] == read["messages_read"] / 40
    assert metrics["clips"] == (read["messages_read"] - 4) // 2 + 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "truncated" in w]) == 1
    assert metrics["warnings"][0].startswith(f"bag {bag} is truncated or corrupt")
    assert "truncated or corrupt" in (tmp_path / "out/report.md").read_text()


def test_a_ros1_bag_evaluates(files: dict[str, Path], tmp_path: Path) -> None:
    bag = write_ros1_bag(tmp_path / "r.bag", count=40, fps=10.0)
    assert _run(files, tmp_path / "out", "--write-bag", bag=bag) == 0
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["clips"] == EXPECTED_CLIPS and metrics["read"]["storage"] == "ros1"
    with Bag(tmp_path / "out/bag") as copy:  # the ROS 1 images, converted to a rosbag2
        assert sum(1 for _ in copy.images()) == 40


@pytest.mark.parametrize("case", ["no_bag", "no_topic", "encoding", "labels", "too_short"])
def test_bad_inputs_exit_2_with_one_message_and_write_nothing(
    files: dict[str, Path], tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    bag, extra = files["bag"], []
    if case == "no_bag":
        bag = tmp_path / "notes.txt"
        bag.write_text("not a bag")
        needle = "is not a bag"
    elif case == "no_topic":
        extra, needle = ["--image-topic", "/rear/image_raw"], "its image topics: ['/camera"
    elif case == "encoding":
        bag = tmp_path / "bayer"
        with BagWriter(bag) as writer:
            for i in range(10):
                writer.write(TOPIC, IMAGE, START_NS + i, raw_image(START_NS + i, "bayer_rggb8"))
        needle = "bayer_rggb8"
    elif case == "labels":
        files = {**files, "labels": tmp_path / "labels.csv"}
        files["labels"].write_text("start,end,task,label\n0,1,action,dance\n")
        needle = "labels.csv:2: unknown action class 'dance'"
    else:
        bag = write_image_bag(tmp_path / "short", count=3, fps=10.0)
        files = {**files, "labels": tmp_path / "labels.csv"}
        files["labels"].write_text("start,end,task,label\n0,0.2,action,walk\n")
        needle = "no clip could be scored: 3 images read"
    out = tmp_path / "out"
    assert _run(files, out, *extra, bag=bag) == 2
    assert needle in _error(caplog)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_frames_that_fail_to_decode_mid_bag_are_skipped_and_counted(
    files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from helpers_bag import frames as make_frames

    from mtl_perception.bag.writer import image_message

    bag = tmp_path / "mixed"
    with BagWriter(bag) as writer:
        for i, frame in enumerate(make_frames(40)):
            stamp = START_NS + i * 100_000_000
            msg = image_message(frame, stamp, "cam")
            if i >= 30:  # three bytes short: the size no longer matches height * step
                msg.data = msg.data[:-3]
            writer.write(TOPIC, IMAGE, stamp, msg)
    caplog.set_level(logging.WARNING)
    assert _run(files, tmp_path / "out", bag=bag) == 0
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["frames"]["decode_errors"] == 10 and metrics["images"] == 40
    assert metrics["clips"] == (30 - 4) // 2 + 1
    assert len(metrics["warnings"]) == 1 and "skipped and counted" in metrics["warnings"][0]
    assert sum("skipped and counted" in r.getMessage() for r in caplog.records) == 1
