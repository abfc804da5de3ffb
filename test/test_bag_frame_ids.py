"""evaluate_bag on a topic that carries two cameras (two header.frame_ids interleaved).

The stream never mixes two cameras in one clip (mtl_perception/stream/camera.py);
a bag evaluation says how many images that dropped, rather than scoring fewer
images without a word."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from helpers_bag import START_NS, TOPIC, frames, tiny_checkpoint

from mtl_perception.bag.evaluate import main
from mtl_perception.bag.types import IMAGE
from mtl_perception.bag.writer import BagWriter, image_message


def test_images_of_a_second_frame_id_are_dropped_counted_and_said(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    bag = tmp_path / "bag"
    with BagWriter(bag, "mcap") as writer:
        for i, frame in enumerate(frames(40)):
            stamp = START_NS + i * 100_000_000
            frame_id = "left" if i % 4 else "right"  # every 4th image: another camera
            writer.write(TOPIC, IMAGE, stamp, image_message(frame, stamp, frame_id))
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,task,label\n0,2,action,walk\n2,3.9,action,jump\n",
                      encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--bag", str(bag), "--checkpoint", str(tiny_checkpoint(tmp_path / "m.st")),
                 "--labels", str(labels), "--out", str(out), "--no-progress",
                 "--set", "target_fps=10", "inference_stride=2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # image 0 ("right") anchors the buffer, and "right" never falls silent for max_gap_s:
    # the 30 "left" images are dropped, the 10 "right" ones (0.4 s apart) make the clips
    camera = metrics["frames"]
    dropped = camera["frames_other_frame_id"]
    assert (dropped, camera["frames_dropped"], camera["frames_sampled"]) == (30, 30, 10)
    assert any(f"{dropped} images had another header.frame_id" in w
               for w in metrics["warnings"]), metrics["warnings"]
