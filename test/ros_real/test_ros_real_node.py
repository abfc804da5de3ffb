"""The node under real ROS 2 (rclpy, Fast DDS, real vision_msgs): the reference tests.

Each test runs the node as its own process (its console script, the shipped
config/perception.yaml, a tiny checkpoint), cameras publishing from another
process, and a test client (driver.py) that goes through the real lifecycle
and parameter services. test/test_node.py checks the same logic faster against
an rclpy stand-in; these check it on a real graph.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from ros_real_harness import (
    YAML,
    Driver,
    RosPython,
    camera,
    camera_result,
    error_lines,
    node,
)

# lifecycle_msgs/Transition ids
CONFIGURE, ACTIVATE, DEACTIVATE, SHUTDOWN_INACTIVE = 1, 3, 4, 6
CAMERAS = {  # topic -> (encoding, frame_id)
    "/cam_rgb/image_raw": ("rgb8", "cam_rgb"),
    "/cam_bgr/image_raw": ("bgr8", "cam_bgr"),
    "/cam_jpeg/image_raw/compressed": ("jpeg", "cam_jpeg"),
}
FPS, FRAMES = 30, 40
# 30 fps sampled at 15 keeps frames 0, 2, 4, ...; clips of 4 kept frames, a new
# one every 2 kept frames: results for frames 6, 10, 14, ..., 38 (7.5 a second).
TARGET_FPS, STRIDE, CLIP = 15.0, 2, 4
EXPECTED_FRAMES = list(range(2 * (CLIP - 1), FRAMES, 2 * STRIDE))
START_S = 100.0


def stamp_of(index: int, start: float = START_S) -> list[int]:
    return list(divmod(round(start * 1e9) + round(index * 1e9 / FPS), 1_000_000_000))


def topic_list(topics: list[str]) -> str:
    return "image_topics:=[" + ",".join(f'"{t}"' for t in topics) + "]"


def streaming_node(ros: RosPython, env: dict[str, str], folder: Path, checkpoint: Path,
                   topics: list[str], *extra: str) -> Any:
    folder.mkdir(exist_ok=True)
    return node(ros, env, folder / "node.log",
                "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu",
                "-p", topic_list(topics), "-p", f"target_fps:={TARGET_FPS}",
                "-p", f"inference_stride:={STRIDE}", "-p", "diagnostics_period_s:=0.2",
                # Exact accounting of every frame: the default auto QoS (reliable for
                # these reliable cameras, subscribed once they publish), and a
                # history deep enough that a busy CI machine overwrites none.
                "-p", "qos_depth:=100", *extra)


def diag_values(message: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {s["hardware_id"] if "camera" in s["name"] else "inference": s["values"]
            for s in message["status"]}


def wait_for_diagnostics(driver: Driver, frames: int, timeout: float = 20.0) -> dict:
    """The first /diagnostics message that counts `frames` frames on every camera."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(driver("messages", topic="/diagnostics")["messages"]):
            values = diag_values(message)
            if all(values.get(t, {}).get("frames_received") == str(frames) for t in CAMERAS):
                return values
        time.sleep(0.2)
    raise AssertionError(f"no /diagnostics with {frames} frames on every camera")


def test_lifecycle_images_results_parameters_and_shutdown(
        ros: RosPython, env: dict[str, str], tmp_path: Path, checkpoint: Path) -> None:
    proc = streaming_node(ros, env, tmp_path, checkpoint, list(CAMERAS))
    driver = Driver(ros, env, tmp_path / "driver.log")
    try:
        driver("wait_services", timeout=60)
        assert driver("state")["label"] == "unconfigured"
        assert driver("transition", id=CONFIGURE, timeout=60) == {"success": True}
        assert driver("state")["label"] == "inactive"

        # LabelInfo: published once at configure; a subscriber arriving later gets it.
        for task in ("action", "gesture"):
            driver("subscribe", topic=f"/human/{task}/label_info", type="LabelInfo", latched=True)
        for task in ("action", "gesture"):
            assert driver("wait", topic=f"/human/{task}/label_info", count=1, timeout=10)[
                "count"] == 1
        for topic in ("/human/action", "/human/gesture", "/diagnostics"):
            driver("subscribe", topic=topic,
                   type="DiagnosticArray" if topic == "/diagnostics" else "Classification")
        assert driver("transition", id=ACTIVATE) == {"success": True}
        assert driver("state")["label"] == "active"

        streams = [f"{t}:{enc}:{frame}" for t, (enc, frame) in CAMERAS.items()]
        sent = camera_result(camera(ros, env, tmp_path / "camera.log", streams,
                                    "--frames", str(FRAMES), "--fps", str(FPS)))["sent"]
        for topic in CAMERAS:
            assert sent[topic] == [stamp_of(i) for i in range(FRAMES)]
        diagnostics = wait_for_diagnostics(driver, FRAMES)
        expected_count = len(EXPECTED_FRAMES) * len(CAMERAS)
        dropped = sum(int(diagnostics[t]["clips_dropped"]) for t in CAMERAS)
        for task in ("action", "gesture"):
            driver("wait", topic=f"/human/{task}", count=expected_count - dropped, timeout=20)

        labels = {task: driver("messages", topic=f"/human/{task}/label_info")["messages"]
                  for task in ("action", "gesture")}
        time.sleep(0.5)  # a second copy would have arrived by now
        for task, names in (("action", ["wave", "walk", "sit"]),
                            ("gesture", ["one", "two", "three", "four"])):
            again = driver("messages", topic=f"/human/{task}/label_info")["messages"]
            assert again == labels[task] and len(again) == 1, f"{task}: LabelInfo not once"
            assert again[0]["class_map"] == [[i, n] for i, n in enumerate(names)]
            assert again[0]["threshold"] == 0.0

        for task, classes in (("action", 3), ("gesture", 4)):
            results = driver("messages", topic=f"/human/{task}")["messages"]
            for topic, (encoding, frame_id) in CAMERAS.items():
                mine = [r for r in results if r["frame_id"] == frame_id]
                stamps = [r["stamp"] for r in mine]
                expected = [stamp_of(i) for i in EXPECTED_FRAMES]
                lost = int(diagnostics[topic]["clips_dropped"])
                # The images' own stamps, in order, at target_fps / inference_stride.
                assert len(stamps) == len(expected) - lost, (task, encoding, stamps)
                assert all(s in expected for s in stamps), (task, encoding, stamps)
                assert stamps == sorted(stamps)
                if lost == 0:
                    assert stamps == expected
                # top_k 5 of 3 or 4 classes, best first, threshold 0: every class.
                for r in mine:
                    assert len(r["results"]) == classes
                    scores = [score for _, score in r["results"]]
                    assert scores == sorted(scores, reverse=True)
                    assert abs(sum(scores) - 1.0) < 1e-4
            assert len(results) == len(EXPECTED_FRAMES) * len(CAMERAS) - dropped

        # /diagnostics: every frame counted, one status per camera, inference ran.
        for topic in CAMERAS:
            assert diagnostics[topic]["decode_errors"] == "0"
            assert diagnostics[topic]["frames_sampled"] == str(FRAMES // 2)
        assert int(diagnostics["inference"]["clips_run"]) == expected_count - dropped

        # Live parameters: applied at once; configure-time ones refused with the reason.
        assert driver("set", params={"top_k": 2})["results"] == [[True, ""]]
        (ok, reason), = driver("set", params={"target_fps": 10.0})["results"]
        assert not ok and "read when the node is configured" in reason
        (ok, reason), = driver("set", params={"top_k": 0})["results"]
        assert not ok and "top_k" in reason  # the declared range, checked by rclpy
        assert driver("get", names=["top_k", "target_fps"])["values"] == [2, TARGET_FPS]
        before = {t: len(driver("messages", topic=f"/human/{t}")["messages"])
                  for t in ("action", "gesture")}
        more = camera_result(camera(ros, env, tmp_path / "camera2.log", streams[:1],
                                    "--frames", "12", "--fps", str(FPS),
                                    "--start", str(START_S + FRAMES / FPS)))
        assert len(more["sent"]) == 1
        for task in ("action", "gesture"):
            driver("wait", topic=f"/human/{task}", count=before[task] + 1, timeout=20)
            new = driver("messages", topic=f"/human/{task}")["messages"][before[task]:]
            assert new and all(len(r["results"]) == 2 for r in new), new

        # deactivate, then the shutdown transition: finalized, the process exits 0.
        assert driver("transition", id=DEACTIVATE) == {"success": True}
        assert driver("transition", id=SHUTDOWN_INACTIVE) == {"success": True}
        assert proc.wait(30) == 0, proc.output()
        assert "Traceback" not in proc.output()
    finally:
        driver.close()
        proc.close()


def test_sigint_and_sigterm_while_streaming_exit_0(
        ros: RosPython, env: dict[str, str], tmp_path: Path, checkpoint: Path) -> None:
    """Two nodes on one camera, both active and scoring: one gets SIGINT, one SIGTERM."""
    topic = "/cam/image_raw"
    procs = {signum: streaming_node(ros, env, tmp_path / name, checkpoint, [topic],
                                    "-r", f"__node:={name}")
             for signum, name in ((signal.SIGINT, "sigint_node"), (signal.SIGTERM, "sigterm_node"))}
    driver = Driver(ros, env, tmp_path / "driver.log")
    cam = None
    try:
        driver("subscribe", topic="/human/action", type="Classification")
        for name in ("/sigint_node", "/sigterm_node"):
            driver("wait_services", node=name, timeout=60)
            assert driver("transition", node=name, id=CONFIGURE, timeout=60)["success"]
            assert driver("transition", node=name, id=ACTIVATE)["success"]
        cam = camera(ros, env, tmp_path / "camera.log", [f"{topic}:rgb8"],
                     "--frames", "600", "--fps", str(FPS))
        got = driver("wait", topic="/human/action", count=2, timeout=60)["count"]
        assert got >= 2, "\n".join([f"{got} results", cam.output(),
                                    *(p.output() for p in procs.values())])
        for signum, proc in procs.items():  # while images still come in
            assert proc.signal(signum) == 0, f"{signal.Signals(signum).name}:\n{proc.output()}"
            assert "Traceback" not in proc.output()
    finally:
        if cam is not None:
            cam.close()
        driver.close()
        for proc in procs.values():
            proc.close()


def bad_start_cases(tmp_path: Path, checkpoint: Path) -> dict[str, tuple[list[str], Any]]:
    """name -> (ROS arguments after the shipped YAML, params file), each must exit 2."""
    empty_topics = tmp_path / "empty_topics.yaml"
    empty_topics.write_text("/**:\n  ros__parameters:\n    image_topics: []\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("perception_node: [\n")
    ok = ["-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu"]
    return {
        "missing checkpoint": (["-p", f"checkpoint:={tmp_path / 'none.safetensors'}"], YAML),
        "top_k out of range": ([*ok, "-p", "top_k:=0"], YAML),
        # rcl keeps a file's value when a later -p or file gives another type
        # (or an empty list): these two come without the shipped file.
        "wrong type": ([*ok, "-p", "target_fps:=fast"], None),
        "image_topics []": (ok, empty_topics),
        "missing params file": (ok, tmp_path / "no_such.yaml"),
        "malformed params file": (ok, broken),
    }


def test_bad_input_exits_2_with_one_line(ros: RosPython, env: dict[str, str], tmp_path: Path,
                                         checkpoint: Path) -> None:
    cases = bad_start_cases(tmp_path, checkpoint)
    # All at once: each start pays the import of torch, none needs the others.
    procs = {name: node(ros, env, tmp_path / f"bad_{i}.log", *args, params_file=params)
             for i, (name, (args, params)) in enumerate(cases.items())}
    try:
        for name, proc in procs.items():
            code = proc.wait(120)
            lines = error_lines(proc.output())
            assert code == 2, f"{name}: exit {code}\n{proc.output()}"
            assert len(lines) == 1 and "ERROR" in lines[0], f"{name}:\n{proc.output()}"
    finally:
        for proc in procs.values():
            proc.close()


def test_shipped_yaml_applies_under_any_namespace_and_node_name(
        ros: RosPython, env: dict[str, str], tmp_path: Path, checkpoint: Path) -> None:
    """The shipped file's keying (`/**`), with one value changed to see it applied."""
    text = YAML.read_text(encoding="utf-8")
    assert "\n    top_k: 5\n" in text
    changed = tmp_path / "perception.yaml"
    changed.write_text(text.replace("\n    top_k: 5\n", "\n    top_k: 3\n"))
    proc = node(ros, env, tmp_path / "node.log", "-r", "__ns:=/robot1",
                "-r", "__node:=left_perception", "-p", f"checkpoint:={checkpoint}",
                "-p", "device:=cpu", params_file=changed)
    driver = Driver(ros, env, tmp_path / "driver.log")
    try:
        name = "/robot1/left_perception"
        driver("wait_services", node=name, timeout=60)
        assert driver("get", node=name, names=["top_k", "device"])["values"] == [3, "cpu"]
        assert proc.signal(signal.SIGTERM) == 0, proc.output()
    finally:
        driver.close()
        proc.close()
