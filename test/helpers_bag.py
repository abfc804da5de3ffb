"""Real bags, videos and checkpoints for the bag-evaluation tests (small and fast)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_perception.bag.evaluate import main as evaluate_bag
from mtl_perception.bag.types import IMAGE, header, typestore
from mtl_perception.bag.writer import BagWriter, image_message
from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig

ACTIONS = ("walk", "jump", "sit")
GESTURES = ("wave", "stop")
START_NS = 1_700_000_000 * 10**9
TOPIC = "/camera/image_raw"


def frames(count: int, seed: int = 0, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    """Deterministic RGB uint8 frames (count, H, W, 3) with some motion."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
    return np.stack([np.roll(base, shift=i, axis=1) for i in range(count)])


def write_image_bag(path: Path, count: int = 24, fps: float = 10.0, storage: str = "mcap",
                    topic: str = TOPIC, seed: int = 0, extra_topic: bool = False) -> Path:
    """A rosbag2 with `count` rgb8 images `1/fps` apart from START_NS (log time = stamp)."""
    with BagWriter(path, storage) as writer:  # type: ignore[arg-type]
        for i, frame in enumerate(frames(count, seed)):
            stamp = START_NS + round(i * 1e9 / fps)
            writer.write(topic, IMAGE, stamp, image_message(frame, stamp, "cam"))
            if extra_topic:
                writer.write("/chatter", "std_msgs/msg/String", stamp,
                             typestore().types["std_msgs/msg/String"](data=f"m{i}"))
    return path


def raw_image(stamp_ns: int, encoding: str, width: int = 8, height: int = 6) -> Any:
    """A sensor_msgs/Image with any encoding string (for unsupported-encoding tests)."""
    cls = typestore().types[IMAGE]
    data = np.zeros(width * height * 3, np.uint8)
    return cls(header=header(stamp_ns, "cam"), height=height, width=width, encoding=encoding,
               is_bigendian=0, step=width * 3, data=data)


def write_ros1_bag(path: Path, count: int = 24, fps: float = 10.0) -> Path:
    """A ROS 1 bag of rgb8 images (rosbags' ROS 1 writer and Noetic types)."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    image_cls = store.types["sensor_msgs/msg/Image"]
    header_cls = store.types["std_msgs/msg/Header"]
    time_cls = store.types["builtin_interfaces/msg/Time"]
    with Writer(path) as writer:
        conn = writer.add_connection(TOPIC, image_cls.__msgtype__, typestore=store)
        for i, frame in enumerate(frames(count)):
            stamp = START_NS + round(i * 1e9 / fps)
            msg = image_cls(
                header=header_cls(seq=i, stamp=time_cls(sec=stamp // 10**9,
                                                        nanosec=stamp % 10**9), frame_id="cam"),
                height=frame.shape[0], width=frame.shape[1], encoding="rgb8", is_bigendian=0,
                step=frame.shape[1] * 3, data=frame.reshape(-1))
            writer.write(conn, stamp, store.serialize_ros1(msg, image_cls.__msgtype__))
    return path


def tiny_checkpoint(path: Path, clip_length: int = 4, seed: int = 0) -> Path:
    """A width-4 HPS R3D-18 on 32x32 crops with ACTIONS and GESTURES (random weights)."""
    torch.manual_seed(seed)
    config = ModelConfig(method="hps", width=4, task_names=("action", "gesture"),
                         num_classes=(len(ACTIONS), len(GESTURES)))
    model = build_model(config)
    info = CheckpointInfo(config, (ACTIONS, GESTURES),
                          PreprocessConfig(clip_length=clip_length, resize=(32, 40), crop=(32, 32)))
    save_checkpoint(path, model, info)
    return path


def cut(path: Path, fraction: float) -> Path:
    """Truncate a file to `fraction` of its length (a recording killed mid-write)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def metrics_torch_and_onnx(tmp_path: Path, checkpoint: Path, onnx: Path, count: int
                           ) -> dict[str, dict[str, Any]]:
    """evaluate_bag's metrics.json, by name ("torch": the checkpoint in PyTorch, "ort": its
    export in ONNX Runtime), on one image bag of `count` frames at 10 fps with one labelled
    gesture, scored at inference_stride 2 with `--unlabelled none` (gate metrics)."""
    bag = write_image_bag(tmp_path / "bag", count=count, fps=10.0)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,task,label\n0.5,2.5,gesture,wave\n", encoding="utf-8")
    metrics = {}
    for name, source, backend in (("torch", checkpoint, "torch"),
                                  ("ort", onnx, "onnxruntime")):
        out = tmp_path / name
        assert evaluate_bag(["--bag", str(bag), "--checkpoint", str(source), "--labels",
                             str(labels), "--out", str(out), "--no-progress", "--unlabelled",
                             "none", "--set", "target_fps=10", "inference_stride=2",
                             f"backend={backend}"]) == 0
        metrics[name] = json.loads((out / "metrics.json").read_text())
    return metrics
