"""Frames in stamp order, anything dropped said; predictions at their own message's time.

Issue 15, classes 6 and 7: `evaluate_bag` puts images logged out of stamp
order back in order within `--reorder-window-s` (the result equals the
in-order bag's), the live core counts late and repeated stamps and warns
once, all-equal stamps are named as the problem, and `--write-bag` logs each
prediction at the log time of the message that completed its clip.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_bag import START_NS, TOPIC, frames, tiny_checkpoint

from mtl_perception.bag.evaluate import main
from mtl_perception.bag.order import StampOrder
from mtl_perception.bag.reader import Bag
from mtl_perception.bag.types import IMAGE
from mtl_perception.bag.writer import BagWriter, image_message

SETTINGS = ["--set", "target_fps=10", "inference_stride=2"]
PERIOD = 100_000_000  # 10 fps


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("order")
    labels = root / "labels.csv"
    labels.write_text("start,end,task,label\n0,2,action,walk\n2,4,action,jump\n",
                      encoding="utf-8")
    return {"checkpoint": tiny_checkpoint(root / "model.safetensors"), "labels": labels}


def _bag(path: Path, stamps: list[int]) -> Path:
    """Images logged in list order (log times rising by 1 ms... per message), stamped as given."""
    images = frames(len(stamps), seed=3)
    with BagWriter(path, "mcap") as writer:
        for i, stamp in enumerate(stamps):
            log_time = START_NS + i * PERIOD  # the recorder's clock: always rising
            writer.write(TOPIC, IMAGE, log_time, image_message(images[i], stamp, "cam"))
    return path


def _evaluate(model: dict[str, Path], bag: Path, out: Path, *extra: str) -> int:
    return main(["--bag", str(bag), "--checkpoint", str(model["checkpoint"]), "--labels",
                 str(model["labels"]), "--out", str(out), "--no-progress", *SETTINGS, *extra])


def test_the_reorder_buffer_sorts_within_its_window_and_keeps_loops_apart() -> None:
    class Msg:
        def __init__(self, stamp: int) -> None:
            self.header = type("H", (), {"stamp": type("S", (), {
                "sec": stamp // 10**9, "nanosec": stamp % 10**9})()})()

    def order(stamps: list[int], **kw: float) -> tuple[list[int], StampOrder]:
        sorter = StampOrder(**kw)
        got = [log for log, _ in sorter.sorted(iter([(s, Msg(s)) for s in stamps]))]
        return got, sorter

    ms = 10**6
    got, sorter = order([0, 200 * ms, 100 * ms, 300 * ms, 400 * ms], window_s=0.5)
    assert got == [0, 100 * ms, 200 * ms, 300 * ms, 400 * ms] and sorter.reordered == 1
    # a loop: the second pass starts 2 s back; the first pass is passed on whole first
    loop = [0, 1000 * ms, 2000 * ms, 0, 1000 * ms, 2000 * ms]
    got, sorter = order(loop, window_s=0.5, jump_s=1.0)
    assert got == loop and sorter.reordered == 0 and sorter.jumps_back == 1
    # later than the window (but no jump): passed on in bag order and counted
    got, sorter = order([0, 900 * ms, 1000 * ms, 1100 * ms, 300 * ms], window_s=0.1,
                        jump_s=1.0)
    assert got == [0, 900 * ms, 1000 * ms, 300 * ms, 1100 * ms] and sorter.late == 1
    got, sorter = order([0, 200 * ms, 100 * ms], window_s=0.0)
    assert got == [0, 200 * ms, 100 * ms]  # 0: the bag's order
    with pytest.raises(ValueError, match="expected 0 to 60 s"):
        StampOrder(float("nan"))


def test_an_out_of_order_bag_gives_the_in_order_result(model: dict[str, Path],
                                                       tmp_path: Path) -> None:
    stamps = [START_NS + i * PERIOD for i in range(40)]
    shuffled = list(stamps)
    for i in range(1, 38, 5):  # swap neighbours: a network camera's jitter
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    # the pixels follow their stamps: the same frames, only logged in another order
    ordered_bag = _bag(tmp_path / "ordered", stamps)
    images = frames(40, seed=3)
    with BagWriter(tmp_path / "shuffled", "mcap") as writer:
        for i, stamp in enumerate(shuffled):
            index = stamps.index(stamp)
            writer.write(TOPIC, IMAGE, START_NS + i * PERIOD,
                         image_message(images[index], stamp, "cam"))
    assert _evaluate(model, ordered_bag, tmp_path / "a") == 0
    assert _evaluate(model, tmp_path / "shuffled", tmp_path / "b") == 0
    a, b = ((tmp_path / o / "predictions.csv").read_text() for o in "ab")
    assert a == b
    ma, mb = (json.loads((tmp_path / o / "metrics.json").read_text()) for o in "ab")
    ma["frames"].pop("input_fps"), mb["frames"].pop("input_fps")  # wall clock
    assert ma["action"] == mb["action"] and ma["frames"] == mb["frames"]
    assert mb["stamp_order"]["reordered"] == 8 and mb["stamp_order"]["late"] == 0
    assert any("put back in order" in w for w in mb["warnings"])
    # the paper's behaviour (bag order): the late frames are dropped, counted and said
    assert _evaluate(model, tmp_path / "shuffled", tmp_path / "c",
                     "--reorder-window-s", "0") == 0
    mc = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert mc["frames"]["frames_late"] == 8
    assert any("8 images were stamped before an earlier image" in w for w in mc["warnings"])


def test_all_equal_stamps_are_named(model: dict[str, Path], tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    bag = _bag(tmp_path / "equal", [START_NS] * 45)
    assert _evaluate(model, bag, tmp_path / "out") == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "44 repeat the stamp before them (all-equal stamps?)" in errors[0]


def test_write_bag_logs_each_prediction_at_its_own_messages_time(
        model: dict[str, Path], tmp_path: Path) -> None:
    """Stamps that repeat (a bag played twice): each pass's predictions in its own pass."""
    one_pass = [START_NS + i * PERIOD for i in range(20)]
    bag = _bag(tmp_path / "loop", one_pass + one_pass)
    assert _evaluate(model, bag, tmp_path / "out", "--write-bag") == 0
    second_pass_starts = START_NS + 20 * PERIOD  # log time of message 20
    with Bag(tmp_path / "out" / "bag") as copy:
        logged = [raw.log_time_ns for raw in copy.raw_messages() if raw.topic == "/human/action"]
    with open(tmp_path / "out" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(logged) == len(rows) and len(rows) % 2 == 0
    first = [t for t in logged if t < second_pass_starts]
    assert len(first) == len(rows) // 2  # the old lookup by stamp put them all in pass two
    # each at the log time of the image that completed its clip: one per stride of 2 frames
    assert np.all(np.diff(logged) >= 0)
    assert first[0] == START_NS + 3 * PERIOD  # a 4-frame clip is complete at image 3
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["stamp_order"]["jumps_back"] == 1
    assert any("jumped back by more than max_gap_s" in w for w in metrics["warnings"])


def test_live_late_and_repeated_frames_are_counted_and_warned_once(
        model: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    from mtl_perception.checkpoint import load_checkpoint
    from mtl_perception.ros.messages import _camera_status
    from mtl_perception.stream import StreamConfig, StreamPipeline
    from mtl_perception.stream.results import FrameHeader

    loaded = load_checkpoint(model["checkpoint"])
    pipeline = StreamPipeline(loaded.model, loaded.info, StreamConfig(target_fps=10),
                              realtime=False)
    rgb = frames(1)[0]
    caplog.set_level(logging.WARNING)
    for stamp in (0, 100, 200, 150, 120, 200, 300):  # two late, one repeated
        pipeline.push_frame("cam", rgb, FrameHeader(START_NS + stamp * 10**6))
    camera = pipeline.stats().cameras["cam"]
    assert (camera.frames_late, camera.frames_repeated, camera.frames_dropped) == (2, 1, 3)
    warnings = [r.getMessage() for r in caplog.records if "camera cam" in r.getMessage()]
    assert len(warnings) == 2 and "arrived late" in warnings[0]
    assert "repeats the stamp" in warnings[1]
    status = _camera_status("cam", camera, None, "node")
    assert ("frames_late", "2") in status.values and "arrived late" in status.message
