"""Reading image messages from rosbag2 (mcap, sqlite3) and ROS 1 bags through `rosbags`.

`open_bag(path, image_topic)` refuses, before any image is read, a path that
is no bag and a bag without the image topic (naming the image topics it has).
A bag that `rosbags` cannot open whole, or that fails part-way, is read up to
its last readable message (`recover.py`) and `report` says so: what was
read, what the bag's metadata promised, and one warning line.

A single message that does not deserialize (its storage record is whole, its
CDR is not) is skipped and counted (`messages_skipped`); the read goes on, and
the same warning line says how many, by kind, with the first of each kind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rosbags.highlevel import AnyReader
from rosbags.typesys import get_types_from_msg

from mtl_perception.bag import recover
from mtl_perception.bag.types import IMAGE_TYPES, typestore
from mtl_perception.exits import one_line, os_error_line
from mtl_perception.fileio import require_regular_file

LOG = logging.getLogger(__name__)
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
_STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
_ROS1_MAGIC = b"#ROSBAG V2.0"


class BagError(RuntimeError):
    """A bag that cannot be evaluated; the one-line message names the bag and the problem."""


@dataclass
class ReadReport:
    """How much of the image topic was read, for metrics.json and the report."""

    path: str
    storage: str  # mcap | sqlite3 | ros1
    topic: str = ""
    msgtype: str = ""
    messages_read: int = 0
    messages_skipped: int = 0  # stored whole but not deserializable: skipped, read goes on
    messages_expected: int | None = None  # from the bag's metadata; None when it has none
    bytes_fraction: float | None = None  # recovery only: how far into the storage file(s)
    truncated: bool = False
    warning: str = ""

    @property
    def read_fraction(self) -> float | None:
        if self.messages_expected:
            # How far the read got: a skipped message was reached, so it counts.
            reached = self.messages_read + self.messages_skipped
            return min(reached / self.messages_expected, 1.0)
        if self.bytes_fraction is not None:
            return self.bytes_fraction
        return None if self.truncated else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "storage": self.storage, "topic": self.topic,
            "msgtype": self.msgtype, "messages_read": self.messages_read,
            "messages_skipped": self.messages_skipped,
            "messages_expected": self.messages_expected, "read_fraction": self.read_fraction,
            "truncated": self.truncated, "warning": self.warning,
        }


@dataclass(frozen=True)
class RawMessage:
    topic: str
    msgtype: str
    msgdef: str  # '.msg' text, '' if unknown
    log_time_ns: int
    data: bytes
    cdr: bool  # False: ROS 1 serialisation
    digest: str = ''  # RIHS01 hash of a rosbag2 connection's type ('' if unknown)


def bag_kind(path: Path) -> str | None:
    """'ros1', 'rosbag2', or None for a path that is no bag."""
    if path.is_dir():
        if (path / "metadata.yaml").is_file() or _storage_files(path):
            return "rosbag2"
        return None
    if path.suffix in _STORAGE_SUFFIXES:
        return "rosbag2"
    if path.suffix == ".bag":
        with open(path, "rb") as handle:
            return "ros1" if handle.read(len(_ROS1_MAGIC)) == _ROS1_MAGIC else None
    return None


def io_failure(exc: BaseException) -> str | None:
    """The OS error (EIO: a failing disk or network mount) behind a reader's exception, in
    words; None for what a truncated or corrupt file raises (parse errors, end of data)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return os_error_line(current)
        if "disk i/o error" in str(current).lower():  # sqlite3's word for EIO
            return "input/output error (a failing disk or a network file system)"
        current = current.__cause__ or current.__context__
    return None


def require_bag_files(path: Path) -> None:
    """Raise BagError unless the bag (a file, or a folder's metadata.yaml and storage
    files) is made of regular files; nothing is opened."""
    if not path.is_dir():
        require_regular_file(path, "bag", BagError)
        return
    for entry in sorted(path.iterdir()):
        if entry.name == "metadata.yaml" or entry.suffix in _STORAGE_SUFFIXES:
            require_regular_file(entry, "bag file", BagError)


def _storage_files(folder: Path) -> list[Path]:
    """The storage files of a rosbag2 folder, in recording order."""
    meta = folder / "metadata.yaml"
    if meta.is_file():
        try:
            info = yaml.safe_load(meta.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
            files = [folder / name for name in info["relative_file_paths"]]
            if files and all(f.is_file() for f in files):
                return files
        except (yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError):
            pass
    return sorted(p for p in folder.iterdir() if p.suffix in _STORAGE_SUFFIXES)


def _expected_counts(path: Path) -> dict[str, int]:
    """topic -> message count from metadata.yaml ({} without one)."""
    meta = path / "metadata.yaml" if path.is_dir() else None
    if meta is None or not meta.is_file():
        return {}
    try:
        info = yaml.safe_load(meta.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
        return {
            t["topic_metadata"]["name"]: int(t["message_count"])
            for t in info["topics_with_message_count"]
        }
    except (yaml.YAMLError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        return {}


def _metadata_end(path: Path) -> int | None:
    """starting_time + duration from metadata.yaml (a damaged bag's promised end)."""
    meta = path / "metadata.yaml" if path.is_dir() else None
    if meta is None or not meta.is_file():
        return None
    try:
        info = yaml.safe_load(meta.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
        start = int(info["starting_time"]["nanoseconds_since_epoch"])
        return start + int(info["duration"]["nanoseconds"]) + 1
    except (yaml.YAMLError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        return None


class Bag:
    """An open bag and the image topic chosen in it; iterate `images()` once."""

    def __init__(self, path: str | Path, image_topic: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        require_bag_files(self.path)  # a named pipe would block the reads below forever
        kind = bag_kind(self.path)
        if kind is None:
            raise BagError(
                f"{self.path} is not a bag: expected a rosbag2 folder (metadata.yaml with "
                ".mcap or .db3 files), an .mcap or .db3 file, or a ROS 1 .bag file"
            )
        self._reader: AnyReader | None = None
        self._recover_error = ""
        self._damage = ""  # the truncation part of report.warning
        # Undeserializable messages by kind: count, and the first one (index, log time, error).
        self._skipped: dict[str, tuple[int, str]] = {}
        try:
            reader = AnyReader([self.path], default_typestore=typestore())
            reader.open()
            self._reader = reader
        except Exception as exc:
            if (failure := io_failure(exc)) is not None:
                raise BagError(f"cannot read bag {self.path}: {failure}") from exc
            if kind != "rosbag2":  # ROS 1: rosbags needs the index a killed recorder omits
                raise BagError(f"cannot read bag {self.path}: {one_line(exc)} (a ROS 1 "
                               "recording cut short needs `rosbag reindex` first)") from exc
            self._recover_error = one_line(exc)
        self.report = ReadReport(str(self.path), self._storage(kind))
        self.topics = self._topics()
        self.image_topic = self._choose(image_topic)
        self.report.topic = self.image_topic
        self.report.msgtype = self.topics[self.image_topic]
        if self._reader is not None:
            self.report.messages_expected = self._reader.topics[self.image_topic].msgcount
        else:
            self.report.messages_expected = _expected_counts(self.path).get(self.image_topic)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def end_time_ns(self) -> int | None:
        """Log time just after the bag's last message (all topics); None if unknown."""
        if self._reader is not None:
            return self._reader.end_time
        return _metadata_end(self.path)

    @property
    def message_index(self) -> int:
        """The index of the image message `images` yielded last, counted from 0 over every
        message of the topic in log order, skipped ones included: the index the reader's
        own warnings give, so every tool names one message by one number."""
        return self.report.messages_read + self.report.messages_skipped - 1

    def images(self) -> Iterator[tuple[int, Any]]:
        """`(log time ns, message)` of the image topic in log-time order; stops at damage
        to the storage file, skips (and counts) a message that does not deserialize."""
        for raw in self._raw([self.image_topic]):
            try:
                msg = self.deserialize(raw)
            except Exception as exc:  # rosbags' serde and typesys errors have no common base
                # Its record was whole (the storage layer read it), so the messages after it
                # are intact: one bad message must not end an hours-long evaluation.
                self._skip(raw, exc)
                continue
            self.report.messages_read += 1
            yield raw.log_time_ns, msg
        if self.report.truncated:
            return
        expected = self.report.messages_expected
        reached = self.report.messages_read + self.report.messages_skipped
        if self._recover_error:
            self._damaged("")
        elif expected is not None and reached < expected:
            # A corrupt chunk can end rosbags' indexed read early without an error.
            self._damaged(f"only {self.report.messages_read} of the {expected} messages its "
                          "index lists could be read")

    def raw_messages(self) -> Iterator[RawMessage]:
        """Every message of every topic, serialised as stored (for the --write-bag copy)."""
        yield from self._raw(None)

    # -- internals -------------------------------------------------------------------

    def _storage(self, kind: str) -> str:
        if kind == "ros1":
            return "ros1"
        files = [self.path] if self.path.is_file() else _storage_files(self.path)
        return _STORAGE_SUFFIXES.get(files[0].suffix, "unknown") if files else "unknown"

    def _topics(self) -> dict[str, str]:
        if self._reader is not None:
            return {name: info.msgtype or "" for name, info in self._reader.topics.items()}
        topics: dict[str, str] = {}
        stopped: list[str] = []
        for _, topic in self._scan_topics(stopped):
            topics.setdefault(topic.name, topic.msgtype)
        if not topics:  # say where the files' own records went wrong, not only rosbags' word
            where = "".join(f"; {line}" for line in stopped)
            raise BagError(f"cannot read bag {self.path}: {self._recover_error}{where}; "
                           "no readable topic in it")
        return topics

    def _choose(self, wanted: str | None) -> str:
        images = sorted(t for t, kind in self.topics.items() if kind in IMAGE_TYPES)
        if wanted is None:
            if len(images) == 1:
                return images[0]
            if DEFAULT_IMAGE_TOPIC in images:
                return DEFAULT_IMAGE_TOPIC
            if not images:
                raise BagError(f"bag {self.path} has no image topic (sensor_msgs Image or "
                               f"CompressedImage); its topics: {sorted(self.topics)}")
            raise BagError(f"bag {self.path} has several image topics {images}; "
                           "choose one with --image-topic")
        if wanted not in self.topics:
            raise BagError(f"bag {self.path} has no topic {wanted}; its image topics: "
                           f"{images or 'none'}")
        if self.topics[wanted] not in IMAGE_TYPES:
            raise BagError(f"topic {wanted} in bag {self.path} is {self.topics[wanted]}, not an "
                           f"image; its image topics: {images or 'none'}")
        return wanted

    def _raw(self, topics: list[str] | None) -> Iterator[RawMessage]:
        if self._reader is not None:
            yield from self._raw_rosbags(self._reader, topics)
        else:
            yield from self._raw_recovered(topics)

    def _raw_rosbags(self, reader: AnyReader, topics: list[str] | None) -> Iterator[RawMessage]:
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        try:
            for conn, time_ns, data in reader.messages(connections=connections):
                yield RawMessage(conn.topic, conn.msgtype, conn.msgdef.data, time_ns,
                                 bytes(data), reader.is2, conn.digest or "")
        except Exception as exc:
            failure = io_failure(exc)
            if failure is not None:  # a failing disk is not a bag cut short: stop, exit 2
                raise BagError(f"cannot read bag {self.path}: {failure}") from exc
            self._damaged(one_line(exc))

    def _raw_recovered(self, topics: list[str] | None) -> Iterator[RawMessage]:
        files = [self.path] if self.path.is_file() else _storage_files(self.path)
        total = sum(f.stat().st_size for f in files) or 1
        done = 0
        for index, file in enumerate(files):
            result = recover.ScanResult()
            scan = recover.scan_mcap if file.suffix == ".mcap" else recover.scan_sqlite
            try:
                for channel, time_ns, data in scan(file, result):
                    topic = result.topics.get(channel)
                    if topic is None or (topics is not None and topic.name not in topics):
                        continue
                    yield RawMessage(topic.name, topic.msgtype, topic.msgdef, time_ns, data, True)
            except ValueError as exc:  # a storage file that is not mcap/sqlite at all
                result.stopped = str(exc)
            self.report.bytes_fraction = (done + result.bytes_read) / total
            done += result.file_size
            if result.stopped:
                self._recover_error += f"; {file.name}: {result.stopped}"
                if index < len(files) - 1:
                    continue  # later files of a split bag may still be whole

    def _scan_topics(self, stopped: list[str]) -> Iterator[tuple[int, recover.Topic]]:
        """Topics of a damaged bag: from the storage files' own tables/records; a scan that
        ended before any message adds `<file>: why` to `stopped`."""
        files = [self.path] if self.path.is_file() else _storage_files(self.path)
        for file in files:
            result = recover.ScanResult()
            scan = recover.scan_mcap if file.suffix == ".mcap" else recover.scan_sqlite
            try:
                for _ in scan(file, result):
                    break  # channels precede their first message
            except ValueError:
                continue
            if result.stopped:
                stopped.append(f"{file.name}: {result.stopped}")
            yield from ((k, t) for k, t in result.topics.items() if k >= 0 and t.name)

    def deserialize(self, raw: RawMessage) -> Any:
        """One stored message as an object of the bag's (or the package's) types."""
        if self._reader is not None:
            return self._reader.deserialize(raw.data, raw.msgtype)
        store = typestore()
        if raw.msgtype not in store.types and raw.msgdef:
            store.register(get_types_from_msg(raw.msgdef, raw.msgtype))
        return store.deserialize_cdr(raw.data, raw.msgtype)

    def _damaged(self, reason: str) -> None:
        """Record the one warning: what stopped the read, and how much was read."""
        self.report.truncated = True
        why = "; ".join(r for r in (self._recover_error, reason) if r)
        expected = self.report.messages_expected
        of = f" of {expected}" if expected else ""
        self._damage = (
            f"bag {self.path} is truncated or corrupt ({why}); evaluated up to its last "
            f"readable message: {self.report.messages_read}{of} images on {self.report.topic}"
        )
        self._warn()

    def _skip(self, raw: RawMessage, exc: Exception) -> None:
        """Count one undeserializable message under its kind (the error's text up to its
        first colon: what failed, without this message's offsets)."""
        index = self.report.messages_read + self.report.messages_skipped
        self.report.messages_skipped += 1
        error = one_line(exc)
        kind = f"{type(exc).__name__}: {error.split(':', 1)[0]}"
        count, first = self._skipped.get(
            kind, (0, f"message index {index}, log time {raw.log_time_ns} ns ({error})"))
        self._skipped[kind] = (count + 1, first)
        self._warn()  # kept current: a caller may stop iterating at any message

    def _warn(self) -> None:
        """report.warning: the truncation line, then the skipped messages, on one line.
        Every caller logs report.warning once, so each kind is said once, with its count."""
        skipped = ""
        if self._skipped:
            total = self.report.messages_skipped
            kinds = "; ".join(first if count == 1 else f"{count}, the first {first}"
                              for count, first in self._skipped.values())
            skipped = (f"bag {self.path} topic {self.report.topic}: {total} message"
                       f"{'s do' if total > 1 else ' does'} not deserialize, skipped and "
                       f"counted (read.messages_skipped): {kinds}")
        self.report.warning = "; ".join(w for w in (self._damage, skipped) if w)


