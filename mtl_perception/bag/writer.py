"""Writing rosbag2 files (mcap or sqlite3): images, predictions, and copied messages.

Shared by `evaluate_bag --write-bag` (the input's messages plus the
predictions) and `dataset_to_bag` (videos as an image topic). Messages are
serialised as CDR with the ROS 2 Humble definitions plus the package's
vision_msgs definitions (`types.py`), so the bag carries every definition it
uses and needs no ROS installation to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer

from mtl_perception.bag.types import COMPRESSED_IMAGE, IMAGE, header, typestore

Storage = Literal["mcap", "sqlite3"]
STORAGES: tuple[Storage, ...] = ("mcap", "sqlite3")
# rosbag2 metadata version 8 (Iron/Jazzy); rosbags writes 8 or 9, and 8 is the older.
BAG_VERSION: Literal[8] = 8


class BagWriter:
    """A new rosbag2 folder at `path`; topics are added on first write. Use as a context."""

    def __init__(self, path: str | Path, storage: Storage = "mcap") -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.path = Path(path)
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)
        self._connections: dict[tuple[str, str], Connection] = {}
        self.count = 0

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msgtype: str, log_time_ns: int, msg: Any) -> None:
        """Serialise `msg` (a type of `types.typestore()`) onto `topic`."""
        store = typestore()
        connection = self._connection(topic, msgtype, None)
        self._writer.write(connection, log_time_ns, store.serialize_cdr(msg, msgtype))
        self.count += 1

    def write_raw(self, topic: str, msgtype: str, msgdef: str, digest: str,
                  log_time_ns: int, data: bytes) -> None:
        """Copy one CDR message as stored (its own definition when `msgdef` is given)."""
        definition = (msgdef, digest) if msgdef and digest else None
        self._writer.write(self._connection(topic, msgtype, definition), log_time_ns, data)
        self.count += 1

    def _connection(self, topic: str, msgtype: str,
                    definition: tuple[str, str] | None) -> Connection:
        key = (topic, msgtype)
        if key not in self._connections:
            if definition is None:
                conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            else:
                conn = self._writer.add_connection(
                    topic, msgtype, msgdef=definition[0], rihs01=definition[1]
                )
            self._connections[key] = conn
        return self._connections[key]


def image_message(frame: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """RGB uint8 (H, W, 3) -> `sensor_msgs/Image` with encoding rgb8, unpadded rows."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.shape} {frame.dtype}")
    height, width = frame.shape[:2]
    cls = typestore().types[IMAGE]
    return cls(
        header=header(stamp_ns, frame_id), height=height, width=width, encoding="rgb8",
        is_bigendian=0, step=width * 3, data=np.ascontiguousarray(frame).reshape(-1),
    )


def compressed_message(frame: np.ndarray, stamp_ns: int, frame_id: str,
                       quality: int = 90) -> Any:
    """RGB uint8 (H, W, 3) -> `sensor_msgs/CompressedImage` with format 'jpeg'."""
    import cv2  # runtime dependency; imported here so that reading bags does not need it

    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                               [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    cls = typestore().types[COMPRESSED_IMAGE]
    return cls(header=header(stamp_ns, frame_id), format="jpeg",
               data=np.asarray(encoded, dtype=np.uint8).reshape(-1))


def ros2_image(msg: Any, msgtype: str) -> Any:
    """A ROS 1 (or any) Image/CompressedImage object -> the ROS 2 message of the same data."""
    stamp = msg.header.stamp
    stamp_ns = int(stamp.sec) * 10**9 + int(stamp.nanosec)
    head = header(stamp_ns, str(msg.header.frame_id))
    cls = typestore().types[msgtype]
    if msgtype == COMPRESSED_IMAGE:
        return cls(header=head, format=str(msg.format), data=np.asarray(msg.data, np.uint8))
    return cls(header=head, height=int(msg.height), width=int(msg.width),
               encoding=str(msg.encoding), is_bigendian=int(msg.is_bigendian),
               step=int(msg.step), data=np.asarray(msg.data, np.uint8))
