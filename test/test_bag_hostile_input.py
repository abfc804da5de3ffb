"""evaluate_bag under hostile input: one line, exit 2, nothing half-written.

Real bags (rosbags writer) and a real tiny checkpoint from helpers_bag.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers_bag import (
    ACTIONS,
    START_NS,
    TOPIC,
    frames,
    storage_file,
    tiny_checkpoint,
    write_image_bag,
)

from mtl_perception.bag.evaluate import main
from mtl_perception.bag.labels import LabelsError, read_labels
from mtl_perception.bag.outputs import OutputError, check_out
from mtl_perception.bag.reader import Bag
from mtl_perception.bag.types import IMAGE, header, typestore
from mtl_perception.bag.writer import BagWriter

LABELS = "start,end,task,label\n0.0,1.5,action,walk\n1.5,3.9,action,jump\n0.0,3.9,gesture,wave\n"
CLASSES = {"action": ACTIONS, "gesture": ("wave", "stop")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("probe_bag")
    labels = root / "labels.csv"
    labels.write_text(LABELS)
    return {"bag": write_image_bag(root / "bag", count=40), "labels": labels,
            "checkpoint": tiny_checkpoint(root / "model.safetensors"), "root": root}


def _run(inputs: dict[str, Path], out: Path, *extra: str, bag: Path | None = None,
         labels: Path | None = None) -> int:
    return main(["--bag", str(bag or inputs["bag"]), "--checkpoint", str(inputs["checkpoint"]),
                 "--labels", str(labels or inputs["labels"]), "--out", str(out),
                 "--no-progress", *extra])


def test_an_out_that_cannot_be_created_is_refused_before_any_work(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("user data")
    for out in (afile / "sub", afile / "deeper" / "sub", Path("/proc/no_such_dir/out")):
        with pytest.raises(OutputError, match="--out") as error:
            check_out(out, overwrite=False)
        assert "\n" not in str(error.value)
    assert afile.read_text() == "user data"


def test_cli_exit_2_for_an_out_under_a_file_and_for_an_unknown_device(
        inputs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    afile = tmp_path / "afile"
    afile.write_text("user data")
    assert _run(inputs, afile / "out") == 2
    assert _run(inputs, tmp_path / "out", "--device", "tpu") == 2
    assert "device 'tpu'" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no staging left behind


def test_a_bag_that_ends_early_without_an_error_is_reported_as_damaged(
        inputs: dict[str, Path], tmp_path: Path) -> None:
    """Bytes scrambled mid-file: whatever rosbags makes of it, fewer images than the index
    lists must never pass as a whole bag."""
    bag = tmp_path / "bag"
    shutil.copytree(inputs["bag"], bag)
    file = storage_file(bag)
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = bytes((b * 7 + 13) % 256 for b in data[middle:middle + 2000])
    file.write_bytes(bytes(data))
    try:
        reader = Bag(bag)
    except Exception as exc:  # refused whole: also fine, if it is the reader's own error
        assert type(exc).__name__ == "BagError"
        return
    with reader:
        read = sum(1 for _ in reader.images())
    assert read == reader.report.messages_read
    if read < 40:
        assert reader.report.truncated and f"{read} of 40" in reader.report.warning


def _bag_with_bad_frames(path: Path) -> Path:
    """40 rgb8 frames; from the 6th on, each image's data is 3 bytes short."""
    cls = typestore().types[IMAGE]
    with BagWriter(path, "mcap") as writer:
        for i, frame in enumerate(frames(40)):
            stamp = START_NS + i * 100_000_000
            data = frame.reshape(-1) if i < 5 else frame.reshape(-1)[:-3]
            msg = cls(header=header(stamp, "cam"), height=24, width=32, encoding="rgb8",
                      is_bigendian=0, step=96, data=np.ascontiguousarray(data))
            writer.write(TOPIC, IMAGE, stamp, msg)
    return path


def test_skipped_frames_are_said_on_the_console_not_only_in_metrics(
        inputs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bag = _bag_with_bad_frames(tmp_path / "bag")
    with caplog.at_level(logging.WARNING):
        _run(inputs, tmp_path / "out", bag=bag)
    assert any("data has 2301 bytes" in r.message and r.levelno == logging.WARNING
               for r in caplog.records)


def test_labels_that_no_clip_reaches_exit_2_and_write_nothing(
        inputs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    labels = tmp_path / "late.csv"
    labels.write_text("start,end,task,label\n3.85,3.9,action,walk\n")
    assert _run(inputs, tmp_path / "out", labels=labels) == 2
    assert "nothing could be evaluated" in caplog.text
    assert not (tmp_path / "out").exists()


def test_labels_folder_and_a_quoted_line_break_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="is a directory, not a regular file"):
        read_labels(tmp_path, CLASSES)
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('start,end,task,label\n0,1,action,"wa\nlk"\n')
    with pytest.raises(LabelsError, match="unknown action class"):
        read_labels(quoted, CLASSES)
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(b"\xef\xbb\xbfstart,end,task,label\r\n0,1,action,walk\r\n")
    assert [(i.start, i.end, i.label, i.line) for i in read_labels(crlf, CLASSES)] == [
        (0.0, 1.0, "walk", 2)]


def test_a_node_yaml_whose_parameters_are_not_a_mapping_is_refused(
        inputs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for number, text in enumerate(("perception_node: 5\n",
                                   "perception_node:\n  ros__parameters: [1]\n")):
        config = tmp_path / f"node{number}.yaml"
        config.write_text(text)
        assert _run(inputs, tmp_path / "out", "--config", str(config)) == 2
        assert "ros__parameters" in caplog.text
    assert not (tmp_path / "out").exists()


def test_ctrl_c_during_the_run_exits_130_and_leaves_nothing(
        inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mtl_perception.bag import evaluate as module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run_pipeline", interrupted)
    try:
        assert _run(inputs, tmp_path / "out") == 130
    except KeyboardInterrupt:  # escaping it would stop the whole test session
        pytest.fail("Ctrl-C escaped evaluate_bag's main")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["inf", "-1", "nan"])
def test_event_late_s_is_a_finite_number_of_seconds(
        inputs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        value: str) -> None:
    """inf was accepted and wrote `Infinity` into metrics.json, which is not JSON."""
    assert _run(inputs, tmp_path / "out", "--unlabelled", "none", "--event-late-s", value) == 2
    assert "--event-late-s must be 0..3600 seconds" in caplog.text
    assert not (tmp_path / "out").exists()


def test_results_never_go_inside_the_bag_folder_they_read(
        inputs: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    before = sorted(p.name for p in inputs["bag"].iterdir())
    assert _run(inputs, inputs["bag"] / "results") == 2
    assert "lies inside the bag folder" in caplog.text
    assert sorted(p.name for p in inputs["bag"].iterdir()) == before
