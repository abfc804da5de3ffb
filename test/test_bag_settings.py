"""evaluate_bag's settings (issue 29, classes 5 and 6): the node's own parameter file,
and gate settings that a model without a gate cannot act on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from helpers_bag import tiny_checkpoint, write_image_bag

from mtl_perception.bag.run import load_stream_config
from mtl_perception.settings import SettingsError
from mtl_perception.stream import StreamConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "perception.yaml"


def _shipped_parameters() -> dict:
    return yaml.safe_load(SHIPPED.read_text())["/**"]["ros__parameters"]


def test_the_shipped_node_file_is_read_as_the_node_reads_it() -> None:
    params = _shipped_parameters()
    config = load_stream_config(SHIPPED, [])
    names = [n for n in params if hasattr(StreamConfig(), n)]
    assert len(names) >= 10  # the stream's settings are in the shipped file
    assert {n: getattr(config, n) for n in names} == {
        n: (float(params[n]) if isinstance(getattr(StreamConfig(), n), float) else params[n])
        for n in names}


@pytest.mark.parametrize("keys", [["perception_node"], ["/perception_node"],
                                  ["/robot1/perception_node"], ["robot1", "perception_node"],
                                  ["/**/perception_node"]])
def test_every_key_the_node_accepts(tmp_path: Path, keys: list[str]) -> None:
    body: dict = {"ros__parameters": {"top_k": 3, "checkpoint": "x.safetensors"}}
    for key in reversed(keys):
        body = {key: body}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"top_k": 2}}, **body}))
    assert load_stream_config(path, []).top_k == 3  # the node's own section over /**


def test_settings_for_several_robots_or_another_node_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "/robot1/perception_node": {"ros__parameters": {"top_k": 3}},
        "/robot2/perception_node": {"ros__parameters": {"top_k": 4}}}))
    with pytest.raises(SettingsError, match="settings for several nodes"):
        load_stream_config(path, [])
    path.write_text(yaml.safe_dump({"camera_node": {"ros__parameters": {"top_k": 3}}}))
    with pytest.raises(SettingsError, match="no ros__parameters for perception_node"):
        load_stream_config(path, [])


def test_evaluate_bag_runs_with_the_shipped_config(tmp_path: Path) -> None:
    from mtl_perception.bag.evaluate import main

    bag = write_image_bag(tmp_path / "bag", count=30, fps=10.0)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,task,label\n0,2.9,action,walk\n")
    out = tmp_path / "out"
    checkpoint = tiny_checkpoint(tmp_path / "m.safetensors")
    assert main(["--bag", str(bag), "--checkpoint", str(checkpoint),
                 "--labels", str(labels), "--out", str(out), "--no-progress",
                 "--config", str(SHIPPED), "--set", "target_fps=10", "inference_stride=2"]) == 0
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert settings["top_k"] == _shipped_parameters()["top_k"]


def test_gate_settings_on_a_gateless_model_warn_once_and_report_what_was_used(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mtl_perception.bag.evaluate import main

    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,task,label\n1.0,2.5,gesture,wave\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert main(["--bag", str(bag), "--checkpoint",
                     str(tiny_checkpoint(tmp_path / "m.safetensors")), "--labels", str(labels),
                     "--out", str(out), "--no-progress", "--unlabelled", "none",
                     "--set", "target_fps=10", "inference_stride=2", "gate=filter",
                     "event_source=gate"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("gate=filter asked for, but the model has no task gate" in w
               for w in warnings) == 1
    assert sum("event_source=gate asked for, but the model has no task gate" in w
               for w in warnings) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["gate"] == "off"
    assert metrics["settings"]["event_source"] == "max_softmax"
    assert metrics["gesture_events"]["source"] == "max_softmax"
    assert "gate_filter" not in metrics
