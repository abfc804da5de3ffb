"""Damage inside a bag that must not end (or crash) a read: one message that does not
deserialize, MCAP records whose length fields lie, a first image that does not decode.

Real bags (rosbags writer), hand-made MCAP records, a real tiny checkpoint from helpers_bag.
"""

from __future__ import annotations

import csv
import json
import logging
import struct
import zlib
from pathlib import Path

import lz4.frame
import numpy as np
import pytest
import torch
from helpers_bag import (
    START_NS,
    TOPIC,
    cut,
    frames,
    storage_file,
    tiny_checkpoint,
    write_image_bag,
)

from mtl_perception.bag import recover
from mtl_perception.bag.evaluate import main
from mtl_perception.bag.reader import Bag, BagError
from mtl_perception.bag.types import IMAGE, header, typestore
from mtl_perception.bag.writer import BagWriter, image_message

GARBAGE = b"\x00\x01\x00\x00garbage"  # a valid CDR header, then nothing an Image can be
SETTINGS = ["--set", "target_fps=10", "inference_stride=2"]


def _bag_with_garbage_at(path: Path, bad: set[int], count: int = 30,
                         storage: str = "mcap") -> Path:
    """`count` rgb8 images 0.1 s apart; the messages at `bad` are stored whole but are
    not CDR of an Image (what a buggy recorder or a flipped bit leaves)."""
    with BagWriter(path, storage) as writer:  # type: ignore[arg-type]
        for i, frame in enumerate(frames(count)):
            stamp = START_NS + i * 100_000_000
            if i in bad:
                writer.write_raw(TOPIC, IMAGE, "", "", stamp, GARBAGE)
            else:
                writer.write(TOPIC, IMAGE, stamp, image_message(frame, stamp, "cam"))
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_message_that_does_not_deserialize_is_skipped_and_the_read_goes_on(
        tmp_path: Path, storage: str) -> None:
    path = _bag_with_garbage_at(tmp_path / "b", {10, 20, 21}, storage=storage)
    with Bag(path) as bag:
        images = [(t, np.asarray(m.data, np.uint8).reshape(24, 32, 3)) for t, m in bag.images()]
    report = bag.report
    kept = [i for i in range(30) if i not in (10, 20, 21)]
    assert [t for t, _ in images] == [START_NS + i * 100_000_000 for i in kept]
    assert all(np.array_equal(p, frames(30)[i]) for (_, p), i in zip(images, kept, strict=True))
    assert (report.messages_read, report.messages_skipped, report.messages_expected) == (27, 3, 30)
    assert not report.truncated and report.read_fraction == 1.0
    # One line: the bag, the topic, how many, and the first one by index (one kind here).
    warning = report.warning
    assert "\n" not in warning and str(path) in warning and TOPIC in warning
    assert "3 messages do not deserialize" in warning and "message index 10," in warning
    assert warning.count("message index") == 1
    assert report.as_dict()["messages_skipped"] == 3


def test_a_truncated_bag_with_a_bad_message_says_both_truncation_first(tmp_path: Path) -> None:
    path = _bag_with_garbage_at(tmp_path / "b", {5}, count=200)
    cut(storage_file(path), 0.6)  # the file ends mid-chunk: still "up to its last message"
    with Bag(path) as bag:
        read = sum(1 for _ in bag.images())
    report = bag.report
    assert report.truncated and report.messages_skipped == 1 and read == report.messages_read
    assert report.warning.startswith(f"bag {path} is truncated or corrupt")
    assert f"evaluated up to its last readable message: {read} of 200" in report.warning
    assert "1 message does not deserialize" in report.warning and "\n" not in report.warning


# -- MCAP records whose length fields lie (the recovery reader) ------------------------------


def test_a_record_longer_than_the_file_is_one_line_not_a_memory_error(tmp_path: Path) -> None:
    path = tmp_path / "x.mcap"
    path.write_bytes(recover.MCAP_MAGIC + b"\x01" + struct.pack("<Q", 2**36) + b"abc")
    result = recover.ScanResult()
    assert list(recover.scan_mcap(path, result)) == []
    assert result.stopped.startswith("corrupt record at byte 8: record 0x01 claims 68719476736")
    with pytest.raises(BagError) as info:
        Bag(path)
    message = str(info.value)
    assert "\n" not in message and "x.mcap: corrupt record at byte 8" in message


def _records(bag: Path) -> tuple[bytes, bytes, bytes]:
    """(header record, the first chunk's fixed header, its records) of a rosbags mcap."""
    data = storage_file(bag).read_bytes()
    pos, head = 8, b""
    while True:
        op, size = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        body = data[pos + 9:pos + 9 + size]
        if op == 0x01:
            head = data[pos:pos + 9 + size]
        elif op == 0x06:
            name_len = struct.unpack_from("<I", body, 28)[0]
            assert body[32:32 + name_len] == b""  # rosbags writes uncompressed chunks
            length = struct.unpack_from("<Q", body, 32 + name_len)[0]
            start = 40 + name_len
            return head, body[:28], body[start:start + length]
        pos += 9 + size


def _lz4_chunk(fixed: bytes, records: bytes, claimed: int, crc: int = 0) -> bytes:
    """An lz4 chunk record (opcode 0x06) whose header claims `claimed` uncompressed bytes
    and the CRC-32 `crc` (0: none, as MCAP allows)."""
    packed = lz4.frame.compress(records)
    body = (fixed[:16] + struct.pack("<QI", claimed, crc) + struct.pack("<I", 3) + b"lz4"
            + struct.pack("<Q", len(packed)) + packed)
    return b"\x06" + struct.pack("<Q", len(body)) + body


@pytest.mark.parametrize("claimed", ["right", "2**40", "one_more"])
def test_an_lz4_chunk_whose_size_lies_ends_the_read_where_it_starts(
        tmp_path: Path, claimed: str) -> None:
    """A footerless mcap (the recovery reader): a good lz4 chunk of 5 images, then a chunk
    whose uncompressed size is right, absurd (2**40), or one byte off."""
    head, fixed, records = _records(write_image_bag(tmp_path / "src", count=5))
    size = {"right": len(records), "2**40": 2**40, "one_more": len(records) + 1}[claimed]
    good = recover.MCAP_MAGIC + head + _lz4_chunk(fixed, records, len(records))
    path = tmp_path / "x.mcap"
    path.write_bytes(good + _lz4_chunk(fixed, records, size))
    with Bag(path) as bag:
        read = sum(1 for _ in bag.images())
    warning = bag.report.warning
    assert bag.report.truncated and "\n" not in warning  # no footer: always cut short
    if claimed == "right":
        assert read == 10 and "corrupt record" not in warning
        return
    assert read == 5  # the first chunk's images, none invented from the bad one
    why = ("lz4 chunk claims 1099511627776 bytes uncompressed" if claimed == "2**40"
           else f"lz4 chunk decompresses to {len(records)} bytes, its header says {size}")
    assert f"x.mcap: corrupt record at byte {len(good)}: {why}" in warning


@pytest.mark.parametrize("compression", ["lz4", "none"])
def test_a_chunk_that_does_not_match_its_crc_ends_the_read_where_it_starts(
        tmp_path: Path, compression: str) -> None:
    """A footerless mcap: a good chunk of 5 images with its CRC-32, then the same chunk with
    one byte of its last image's data flipped (the CRC left as it was). Without the check,
    the damaged image was read as a good one."""
    head, fixed, records = _records(write_image_bag(tmp_path / "src", count=5))
    crc = zlib.crc32(records)
    damaged = bytearray(records)
    damaged[-40] ^= 0xFF  # inside the last message's pixels
    if compression == "lz4":
        good, bad = (_lz4_chunk(fixed, r, len(records), crc) for r in (records, bytes(damaged)))
    else:
        good, bad = (_plain_chunk(fixed, r, crc) for r in (records, bytes(damaged)))
    path = tmp_path / "x.mcap"
    path.write_bytes(recover.MCAP_MAGIC + head + good + bad)
    with Bag(path) as bag:
        read = sum(1 for _ in bag.images())
    kind = "uncompressed" if compression == "none" else "lz4"
    assert read == 5
    assert (f"x.mcap: corrupt record at byte {len(recover.MCAP_MAGIC + head + good)}: {kind} "
            f"chunk's records do not match its CRC-32 (0x{crc:08x})") in bag.report.warning


def _plain_chunk(fixed: bytes, records: bytes, crc: int) -> bytes:
    """An uncompressed chunk record holding `records`, with the CRC-32 `crc`."""
    body = (fixed[:16] + struct.pack("<QI", len(records), crc) + struct.pack("<I", 0)
            + struct.pack("<Q", len(records)) + records)
    return b"\x06" + struct.pack("<Q", len(body)) + body


# -- evaluate_bag end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("damaged")
    labels = root / "labels.csv"
    labels.write_text("start,end,task,label\n0,2,action,walk\n2,4,action,jump\n"
                      "0.5,3.5,gesture,wave\n", encoding="utf-8")
    return {"checkpoint": tiny_checkpoint(root / "model.safetensors"), "labels": labels}


def _evaluate(model: dict[str, Path], bag: Path, out: Path) -> int:
    return main(["--bag", str(bag), "--checkpoint", str(model["checkpoint"]), "--labels",
                 str(model["labels"]), "--out", str(out), "--no-progress", *SETTINGS])


def test_evaluate_bag_goes_past_a_message_that_does_not_deserialize(
        model: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bag = _bag_with_garbage_at(tmp_path / "bag", {10}, count=40)
    caplog.set_level(logging.WARNING)
    assert _evaluate(model, bag, tmp_path / "out") == 0
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    read = metrics["read"]
    assert (read["messages_read"], read["messages_skipped"], read["truncated"]) == (39, 1, False)
    assert metrics["images"] == 39 and metrics["clips"] > 10  # the images after it were used
    assert [w for w in metrics["warnings"] if "does not deserialize" in w] == [read["warning"]]
    assert "does not deserialize" in (tmp_path / "out/report.md").read_text()
    said = [r.getMessage() for r in caplog.records if "does not deserialize" in r.getMessage()]
    assert len(said) == 1 and "message index 10," in said[0]


def test_an_undecodable_first_image_is_skipped_and_still_anchors_the_labels(
        model: dict[str, Path], tmp_path: Path) -> None:
    """Image 0 claims 100000x100000 pixels in 10 bytes: skipped and counted as it would be
    anywhere else; the label times still count from its header stamp (labels.py)."""
    cls = typestore().types[IMAGE]
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:
        for i, frame in enumerate(frames(40)):
            stamp = START_NS + i * 100_000_000
            msg = (cls(header=header(stamp, "cam"), height=100000, width=100000,
                       encoding="rgb8", is_bigendian=0, step=300000,
                       data=np.zeros(10, np.uint8))
                   if i == 0 else image_message(frame, stamp, "cam"))
            writer.write(TOPIC, IMAGE, stamp, msg)
    assert _evaluate(model, bag, tmp_path / "out") == 0
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["frames"]["decode_errors"] == 1 and metrics["images"] == 40
    assert any("data has 10 bytes" in w for w in metrics["warnings"])
    with open(tmp_path / "out/predictions.csv", encoding="utf-8") as handle:
        first_s = float(next(csv.DictReader(handle))["first_s"])
    assert first_s == pytest.approx(0.1)  # image 1, timed from image 0's stamp
