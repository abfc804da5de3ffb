"""Messages from a rosbag2 storage file cut short (a recording killed mid-write).

`rosbags` refuses such files at open: an MCAP file without its footer ("File
end magic is invalid") or an SQLite file shorter than its header says
("database disk image is malformed"). These scanners read what is there, in
file order, and stop at the first record that is incomplete; `ScanResult`
says how far they got.

- MCAP: records are `opcode u8, length u64, body`; schemas and channels come
  before the messages that use them. Chunks are decompressed whole; an
  uncompressed chunk that is itself cut short is read record by record, so
  only the last partial message is lost. A record whose fields cannot be
  right (a length over 1 GiB, a chunk that does not decompress to the size
  its header gives, a whole chunk whose contents do not match its header's
  CRC-32) ends the scan the same way: what precedes it is kept and
  `stopped` says "corrupt record at byte N: ...". No length is trusted before
  it is checked: nothing is read or allocated past the file's end or the cap.
- SQLite: a temporary copy trimmed to whole pages, with the header's page
  count set to what is left, then `messages` read in `id` (insertion) order
  until the first missing page.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_FOOTER, _OP_DATA_END = (
    0x03, 0x04, 0x05, 0x06, 0x02, 0x0F,
)
# Far above any chunk a recorder writes (rosbag2's default is a few MiB), far below what
# a damaged length field can claim (2**64): a record or decompressed chunk over it is corrupt.
MAX_RECORD_BYTES = 1 << 30


class IncompleteRecord(Exception):
    """The file ends inside a record."""


class CorruptRecord(Exception):
    """A whole record whose fields cannot be right (a length, a chunk's contents)."""


@dataclass(frozen=True)
class Topic:
    name: str
    msgtype: str
    msgdef: str  # `.msg` text ('' when the file has none)
    encoding: str  # 'ros2msg' or 'ros2idl'


@dataclass
class ScanResult:
    """How far a scan got; filled in as messages are yielded."""

    topics: dict[int, Topic] = field(default_factory=dict)
    bytes_read: int = 0  # end of the last complete record
    file_size: int = 0
    stopped: str = ""  # why the scan ended early ('' when it reached the end)


def scan_mcap(path: Path, result: ScanResult) -> Iterator[tuple[int, int, bytes]]:
    """Yield `(channel id, log time ns, raw CDR)` in file order; `result` tracks progress."""
    result.file_size = path.stat().st_size
    with open(path, "rb") as handle:
        if handle.read(8) != MCAP_MAGIC:
            raise ValueError(f"{path} is not an MCAP file")
        start = handle.tell()
        try:
            while True:
                start = handle.tell()
                head = handle.read(9)
                if len(head) == 0:
                    result.stopped = "the file ends without its MCAP footer"
                    return
                if len(head) < 9:
                    raise IncompleteRecord("a record header")
                op, size = head[0], struct.unpack("<Q", head[1:])[0]
                if op in (_OP_FOOTER, _OP_DATA_END):
                    result.bytes_read = result.file_size
                    return
                if size > MAX_RECORD_BYTES:
                    raise CorruptRecord(f"record 0x{op:02x} claims {size} bytes (over the "
                                        f"{MAX_RECORD_BYTES} a record may hold)")
                # read(n) allocates n bytes before reading: never ask for more than is left.
                left = max(result.file_size - handle.tell(), 0)
                body = handle.read(min(size, left))
                if op == _OP_CHUNK:
                    yield from _chunk(body, size, result)
                elif len(body) < size:
                    raise IncompleteRecord(f"record 0x{op:02x} at byte {start}")
                else:
                    yield from _record(op, body, result)
                result.bytes_read = handle.tell()
        except IncompleteRecord as exc:
            result.stopped = f"the file ends inside {exc}"
        except (CorruptRecord, struct.error, ValueError, UnicodeDecodeError) as exc:
            result.stopped = f"corrupt record at byte {start}: {exc}"


def _chunk(body: bytes, size: int, result: ScanResult) -> Iterator[tuple[int, int, bytes]]:
    rec = BytesIO(body)
    fixed = rec.read(28)  # start time, end time, uncompressed size (u64 each), crc (u32)
    if len(fixed) < 28:
        raise IncompleteRecord("a chunk header")
    uncompressed_size, crc = struct.unpack_from("<QI", fixed, 16)
    compression = _string(rec)
    length = struct.unpack("<Q", _exact(rec, 8, "a chunk header"))[0]
    data = rec.read(length)
    if compression == "":
        if len(body) == size and len(data) == length:
            _check_crc(data, crc, "uncompressed")  # whole: a flipped byte shows
        # Read what is there record by record: a cut chunk loses only its last message.
        inner = BytesIO(data)
        while inner.tell() < len(data):
            head = inner.read(9)
            if len(head) < 9:
                raise IncompleteRecord("a message inside a cut chunk")
            op, rsize = head[0], struct.unpack("<Q", head[1:])[0]
            rbody = inner.read(rsize)
            if len(rbody) < rsize:
                raise IncompleteRecord("a message inside a cut chunk")
            yield from _record(op, rbody, result)
        if len(body) < size:
            raise IncompleteRecord("a chunk")
        return
    if len(body) < size or len(data) < length:
        raise IncompleteRecord(f"a {compression} chunk")
    if uncompressed_size > MAX_RECORD_BYTES:
        raise CorruptRecord(f"{compression} chunk claims {uncompressed_size} bytes uncompressed "
                            f"(over the {MAX_RECORD_BYTES} a chunk may hold)")
    raw = _decompress(data, compression, uncompressed_size)
    _check_crc(raw, crc, compression)
    inner = BytesIO(raw)
    try:
        while inner.tell() < len(raw):
            op = inner.read(1)[0]
            rsize = struct.unpack("<Q", _exact(inner, 8, "a chunk record"))[0]
            yield from _record(op, _exact(inner, rsize, "a chunk record"), result)
    except IncompleteRecord as exc:  # the chunk decompressed whole: this is no cut file
        raise CorruptRecord(f"{exc} overruns its {compression} chunk") from exc


def _check_crc(raw: bytes, crc: int, kind: str) -> None:
    """A chunk's uncompressed records against its header's CRC-32 (0: the writer left it
    out, as MCAP allows). A damaged byte inside a message would otherwise be read as
    image data without any sign."""
    if crc != 0 and zlib.crc32(raw) != crc:
        raise CorruptRecord(f"{kind} chunk's records do not match its CRC-32 (0x{crc:08x}): "
                            "damaged")


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    """A chunk's records, never more than `size` + 1 bytes of output (a chunk whose data
    inflates past its header's size is refused without holding what it would inflate to)."""
    out = bytearray()
    rest = data
    try:
        while rest and len(out) <= size:  # a chunk may hold several frames back to back
            decompressor = _decompressor(compression)
            out += decompressor.decompress(rest, max_length=size + 1 - len(out))
            if not decompressor.eof:
                break  # output over `size`, or data cut short: the check below says which
            rest = decompressor.unused_data
    except CorruptRecord:
        raise
    except Exception as exc:  # lz4 raises RuntimeError, zstd ZstdError: no common base
        raise CorruptRecord(f"{compression} chunk does not decompress: {exc}") from exc
    if len(out) != size:
        got = f"more than {size}" if len(out) > size else str(len(out))
        raise CorruptRecord(f"{compression} chunk decompresses to {got} bytes, its header "
                            f"says {size}")
    return bytes(out)


def _decompressor(compression: str) -> Any:
    """A fresh streaming decompressor for one frame (the codecs rosbags itself uses)."""
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameDecompressor()
    if compression == "zstd":
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            from backports import zstd  # what rosbags installs before 3.14
        return zstd.ZstdDecompressor()
    raise CorruptRecord(f"unsupported chunk compression {compression!r}")


def _record(op: int, body: bytes, result: ScanResult) -> Iterator[tuple[int, int, bytes]]:
    rec = BytesIO(body)
    if op == _OP_SCHEMA:
        schema_id = struct.unpack("<H", _exact(rec, 2, "a schema"))[0]
        name, encoding = _string(rec), _string(rec)
        data_len = struct.unpack("<I", _exact(rec, 4, "a schema"))[0]
        data = _exact(rec, data_len, "a schema").decode()
        result.topics[-schema_id - 1] = Topic("", name, data, encoding)  # schemas: negative keys
    elif op == _OP_CHANNEL:
        channel_id, schema_id = struct.unpack("<HH", _exact(rec, 4, "a channel"))
        topic = _string(rec)
        schema = result.topics.get(-schema_id - 1, Topic("", "", "", ""))
        result.topics[channel_id] = Topic(topic, schema.msgtype, schema.msgdef, schema.encoding)
    elif op == _OP_MESSAGE:
        channel_id, _, log_time, _ = struct.unpack("<HIQQ", _exact(rec, 22, "a message"))
        yield channel_id, log_time, body[22:]


def _exact(rec: BytesIO, size: int, what: str) -> bytes:
    data = rec.read(size)
    if len(data) < size:
        raise IncompleteRecord(what)
    return data


def _string(rec: BytesIO) -> str:
    length = struct.unpack("<I", _exact(rec, 4, "a string"))[0]
    return _exact(rec, length, "a string").decode()


def scan_sqlite(path: Path, result: ScanResult) -> Iterator[tuple[int, int, bytes]]:
    """Yield `(topic id, log time ns, raw CDR)` in insertion order from a cut `.db3`."""
    result.file_size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(100)
        if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
            raise ValueError(f"{path} is not an SQLite database")
        page_size = struct.unpack(">H", header[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        pages = result.file_size // page_size
        with _trimmed_copy(handle, pages, page_size) as copy:
            connection = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
            try:
                yield from _sqlite_rows(connection, result, pages * page_size)
            finally:
                connection.close()


def _sqlite_rows(
    connection: sqlite3.Connection, result: ScanResult, size: int
) -> Iterator[tuple[int, int, bytes]]:
    try:
        definitions = _sqlite_definitions(connection)
        for topic_id, name, msgtype in connection.execute("SELECT id, name, type FROM topics"):
            text = definitions.get(msgtype, ("", ""))
            result.topics[int(topic_id)] = Topic(name, msgtype, text[1], text[0])
        rows = connection.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id")
        for topic_id, timestamp, data in rows:
            yield int(topic_id), int(timestamp), bytes(data)
        result.bytes_read = size
    except sqlite3.DatabaseError as exc:
        result.stopped = f"the database ends early ({exc})"


def _sqlite_definitions(connection: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """msgtype -> (encoding, definition) from the v9 `message_definitions` table, if any."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if "message_definitions" not in tables:
        return {}
    query = "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
    return {t: (e, d) for t, e, d in connection.execute(query)}


@contextlib.contextmanager
def _trimmed_copy(handle: BinaryIO, pages: int, page_size: int) -> Iterator[str]:
    """A temporary copy of the first `pages` pages whose header claims exactly those."""
    fd, name = tempfile.mkstemp(suffix=".db3")
    try:
        with os.fdopen(fd, "wb") as out:
            handle.seek(0)
            remaining = pages * page_size
            first = True
            while remaining > 0:
                block = handle.read(min(remaining, 1 << 22))
                if not block:
                    break
                if first:
                    block = block[:28] + struct.pack(">I", pages) + block[32:]
                    first = False
                out.write(block)
                remaining -= len(block)
        yield name
    finally:
        os.unlink(name)
