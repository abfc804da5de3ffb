"""Reading bags: rosbag2 mcap and sqlite3, ROS 1, damaged files, wrong paths and topics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_bag import START_NS, TOPIC, cut, frames, storage_file, write_image_bag, write_ros1_bag

from mtl_perception.bag.reader import Bag, BagError
from mtl_perception.bag.types import (
    CLASSIFICATION,
    LABEL_INFO,
    classification,
    label_info,
    typestore,
)


def _read_all(bag: Bag) -> list[tuple[int, np.ndarray, int]]:
    """(log time, pixels, header stamp) of every image."""
    out = []
    for log_time, msg in bag.images():
        pixels = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        out.append((log_time, pixels, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rosbag2_images_come_back_in_order_with_their_pixels(tmp_path: Path, storage: str) -> None:
    path = write_image_bag(tmp_path / "b", count=12, fps=10.0, storage=storage, extra_topic=True)
    with Bag(path) as bag:
        assert bag.image_topic == TOPIC  # the only image topic, chosen without --image-topic
        assert bag.report.storage == storage
        images = _read_all(bag)
    expected = frames(12)
    assert [t for t, _, _ in images] == [START_NS + i * 100_000_000 for i in range(12)]
    assert [s for _, _, s in images] == [t for t, _, _ in images]
    assert all(np.array_equal(p, e) for (_, p, _), e in zip(images, expected, strict=True))
    assert bag.report.messages_read == bag.report.messages_expected == 12
    assert bag.report.read_fraction == 1.0 and not bag.report.truncated


def test_a_bare_mcap_file_is_a_bag_too(tmp_path: Path) -> None:
    path = write_image_bag(tmp_path / "b", count=5)
    with Bag(storage_file(path)) as bag:
        assert len(_read_all(bag)) == 5


def test_ros1_bag(tmp_path: Path) -> None:
    path = write_ros1_bag(tmp_path / "r.bag", count=7)
    with Bag(path) as bag:
        assert bag.report.storage == "ros1"
        images = _read_all(bag)
    assert len(images) == 7
    assert np.array_equal(images[3][1], frames(7)[3])
    assert images[3][2] == START_NS + 300_000_000


@pytest.mark.parametrize("make", ["missing", "folder", "text", "fake_ros1"])
def test_a_path_that_is_no_bag_is_one_clear_error(tmp_path: Path, make: str) -> None:
    path = tmp_path / {"missing": "nothing", "folder": "empty", "text": "notes.txt",
                       "fake_ros1": "fake.bag"}[make]
    if make == "folder":
        path.mkdir()
    elif make == "text":
        path.write_text("hello\n")
    elif make == "fake_ros1":
        path.write_bytes(b"PK\x03\x04 not a bag")
    with pytest.raises(BagError) as info:
        Bag(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert ("not found" in message) if make == "missing" else ("is not a bag" in message)


def test_a_bag_without_the_topic_lists_its_image_topics(tmp_path: Path) -> None:
    path = write_image_bag(tmp_path / "b", count=3, topic="/front/image_raw", extra_topic=True)
    with pytest.raises(BagError, match=r"no topic /camera/image_raw; its image topics: "
                                       r"\['/front/image_raw'\]"):
        Bag(path, "/camera/image_raw")
    with pytest.raises(BagError, match=r"/chatter .* is std_msgs/msg/String, not an image"):
        Bag(path, "/chatter")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_truncated_bag_is_read_up_to_its_last_whole_message(tmp_path: Path,
                                                              storage: str) -> None:
    # 200 images of 2.3 kB: the mcap file holds one chunk, so the cut lands inside it.
    path = write_image_bag(tmp_path / "b", count=200, storage=storage)
    cut(storage_file(path), 0.6)
    with Bag(path) as bag:
        images = _read_all(bag)
    report = bag.report
    assert report.truncated and report.messages_expected == 200
    assert 100 <= len(images) < 125  # about 60% of the messages, none invented
    assert report.messages_read == len(images)
    assert report.read_fraction == pytest.approx(len(images) / 200)
    # Whatever was read is exact and in order.
    expected = frames(len(images))
    assert all(np.array_equal(p, e) for (_, p, _), e in zip(images, expected, strict=True))
    assert "truncated or corrupt" in report.warning and f"{len(images)} of 200" in report.warning


def test_a_bag_cut_before_its_first_message_is_an_error(tmp_path: Path) -> None:
    path = write_image_bag(tmp_path / "b", count=10)
    cut(storage_file(path), 0.001)
    with pytest.raises(BagError, match="cannot read bag"):
        Bag(path)


def test_vision_msgs_round_trip_through_cdr() -> None:
    store = typestore()
    msg = classification(5 * 10**9 + 7, "cam", [("wave", 0.75), ("stop", 0.25)])
    back = store.deserialize_cdr(store.serialize_cdr(msg, CLASSIFICATION), CLASSIFICATION)
    assert [(h.class_id, h.score) for h in back.results] == [("wave", 0.75), ("stop", 0.25)]
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (5, 7)
    info = label_info(0, "", ["a", "b", "c"], 0.5)
    back = store.deserialize_cdr(store.serialize_cdr(info, LABEL_INFO), LABEL_INFO)
    assert [(c.class_id, c.class_name) for c in back.class_map] == [(0, "a"), (1, "b"), (2, "c")]
    assert back.threshold == pytest.approx(0.5)


def test_a_cut_ros1_bag_is_one_line_naming_reindex(tmp_path: Path) -> None:
    path = cut(write_ros1_bag(tmp_path / "r.bag", count=30), 0.6)
    with pytest.raises(BagError, match=r"cannot read bag .*r\.bag: .*rosbag reindex"):
        Bag(path)


def test_corrupt_bytes_inside_an_mcap_are_noticed(tmp_path: Path) -> None:
    """Scrambled bytes mid-file: rosbags' indexed read stops early without an error."""
    path = write_image_bag(tmp_path / "b", count=60)
    file = storage_file(path)
    data = bytearray(file.read_bytes())
    for k in range(len(data) // 2, len(data) // 2 + 2000):
        data[k] = (data[k] * 7 + 13) % 256
    file.write_bytes(bytes(data))
    with Bag(path) as bag:
        images = _read_all(bag)
    assert 0 < len(images) < 60
    assert bag.report.truncated and bag.report.read_fraction == len(images) / 60
    assert f"{len(images)} of 60 images" in bag.report.warning
