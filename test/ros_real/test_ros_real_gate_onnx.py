"""A gated model exported to ONNX, run by the node on ONNX Runtime over real DDS: the gate
topics are published (whether a model has a gate is its metadata's word, whichever
backend runs it; a gated `.onnx` on `backend=onnxruntime` used to publish nothing on
`/human/task` and `/human/gesture/events`)."""

from __future__ import annotations

from pathlib import Path

import torch
from ros_real_harness import Driver, RosPython, camera, camera_result
from test_ros_real_node import ACTIVATE, CONFIGURE, DEACTIVATE, FPS, streaming_node

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig
from training.__main__ import main as training_main

FRAMES = 40


def gated_onnx(folder: Path) -> Path:
    """The tiny node model with a task gate that always says "gesture" (its last layer's
    weights zeroed, its bias favouring gesture), exported to ONNX (parity checked)."""
    config = ModelConfig(width=4, task_names=("action", "gesture"), num_classes=(3, 4),
                         gate=True)
    model = build_model(config)
    last = model.gate.classifier[-1]  # type: ignore[union-attr,index]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([-5.0, 5.0, -5.0]))  # action, gesture, none
    info = CheckpointInfo(
        model=config, class_names=(("wave", "walk", "sit"), ("one", "two", "three", "four")),
        preprocess=PreprocessConfig(clip_length=4, resize=(32, 32), crop=(32, 32)))
    checkpoint = folder / "gated.safetensors"
    save_checkpoint(checkpoint, model.eval(), info)
    assert training_main(["export", "--checkpoint", str(checkpoint)]) == 0
    return checkpoint.with_suffix(".onnx")


def test_a_gated_onnx_on_onnxruntime_publishes_the_gate_topics(
        ros: RosPython, env: dict[str, str], tmp_path: Path) -> None:
    model = gated_onnx(tmp_path)
    topic = "/cam_rgb/image_raw"
    proc = streaming_node(ros, env, tmp_path / "node", model, [topic],
                          "-p", "backend:=onnxruntime", "-p", "gate:=publish",
                          "-p", "event_max_s:=0.5")
    driver = Driver(ros, env, tmp_path / "driver.log")
    try:
        driver("wait_services", timeout=60)
        assert driver("transition", id=CONFIGURE, timeout=60) == {"success": True}
        for name in ("/human/action", "/human/task", "/human/gesture/events"):
            driver("subscribe", topic=name, type="Classification")
        assert driver("transition", id=ACTIVATE) == {"success": True}
        camera_result(camera(ros, env, tmp_path / "camera.log", [f"{topic}:rgb8:cam_rgb"],
                             "--frames", str(FRAMES), "--fps", str(FPS)))
        assert driver("wait", topic="/human/task", count=3, timeout=30)["count"] >= 3
        assert driver("wait", topic="/human/gesture/events", count=1, timeout=30)["count"] >= 1
        tasks = driver("messages", topic="/human/task")["messages"]
        for message in tasks:  # every gate class, best first: gesture, as the bias says
            assert sorted(c for c, _ in message["results"]) == ["action", "gesture", "none"]
            assert message["results"][0][0] == "gesture" and message["results"][0][1] > 0.99
        event = driver("messages", topic="/human/gesture/events")["messages"][0]
        assert event["results"][0][0] in ("one", "two", "three", "four")
        actions = driver("messages", topic="/human/action")["messages"]
        assert {tuple(m["stamp"]) for m in tasks} <= {tuple(m["stamp"]) for m in actions}
        assert driver("transition", id=DEACTIVATE) == {"success": True}
    finally:
        driver.close()
        proc.close()
    log = (tmp_path / "node" / "node.log").read_text()
    assert "no task gate" not in log and "Traceback" not in log
    assert "engine onnxruntime on cpu, fp32" in log
