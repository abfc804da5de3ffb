"""The live node over real ROS 2 (Fast DDS): delivery of 640x480 images by QoS, latency, CPU.

Run from the project root where `.venv-ros` exists (`make ros-env`):
`.venv/bin/python bench/ros_live.py [--seconds S]`. The last line printed is
one JSON object, also written to bench/results/ros_live.json.

Every party is its own process, as on a robot: the node (its console script,
config/perception.yaml, a demo-size model with random weights: HPS r3d_18
width 8, 8-frame clips of 32x32 with frame differences, at the demo's
target_fps 6.25 and inference_stride 2), cameras publishing 640x480 rgb8 at
30 fps (test/ros_real/camera.py) and a subscriber (test/ros_real/driver.py).
DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, Fast DDS
defaults, its own ROS_DOMAIN_ID).

- delivery_*: frames the node received / frames sent in `seconds`, for the
  camera's and the node's reliability: best-effort node with a reliable
  camera (image_transport's default), with a best-effort camera (sensor-data
  QoS), reliable on both, and a best-effort camera with the default auto.
- latency_*: as users measure it: the result's arrival at the subscriber
  minus the image's stamp (the camera's wall clock at publishing); 1 and 4
  cameras, the node's default QoS; without a suffix Fast DDS defaults, with
  `_<reliable|best_effort>_camera_fastdds_shm_xml` config/fastdds_shm.xml in
  every process (shared memory with segments large enough for the frames).
- node_stamp_to_receive/publish_ms_p95_*: the same split by the node's own
  /diagnostics: image stamp to the node's callback (transport and executor
  queue), and to the result's publication.
- node_cpu_cores_4cam: the node process's CPU time / wall time with 4 cameras.
- load_average: of the machine at the end (other jobs delay every process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hostinfo import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "test" / "ros_real"), str(ROOT / "test")]
from ros_real_harness import (  # noqa: E402
    Driver,
    camera,
    camera_result,
    find_ros,
    next_domain,
    node,
    ros_env,
)

from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint  # noqa: E402
from mtl_perception.models import ModelConfig, build_model  # noqa: E402
from mtl_perception.preprocess import PreprocessConfig  # noqa: E402
from mtl_perception.ros.params import BY_NAME  # noqa: E402

OUT = ROOT / "bench" / "results" / "ros_live.json"
SIZE, FPS = "640x480", 30
CONFIGURE, CLEANUP, ACTIVATE, DEACTIVATE = 1, 2, 3, 4


def demo_checkpoint(folder: Path) -> Path:
    config = ModelConfig(method="hps", arch="r3d_18", width=8, frame_differences=True,
                         task_names=("action", "gesture"), num_classes=(6, 6))
    info = CheckpointInfo(
        model=config,
        class_names=tuple(tuple(f"{t}{i}" for i in range(6)) for t in config.task_names),
        preprocess=PreprocessConfig(clip_length=8, resize=(36, 48), crop=(32, 32)),
    )
    path = folder / "demo_size.safetensors"
    save_checkpoint(path, build_model(config), info)
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def camera_values(driver: Driver, topics: list[str], since: int) -> dict[str, dict[str, str]]:
    """Each camera's /diagnostics values in the newest message after `since` ones."""
    time.sleep(1.5)  # three diagnostics periods after the last frame
    messages = driver("messages", topic="/diagnostics")["messages"][since:]
    values: dict[str, dict[str, str]] = {t: {} for t in topics}
    for status in messages[-1]["status"] if messages else []:
        if status["hardware_id"] in values and "camera" in status["name"]:
            values[status["hardware_id"]] = status["values"]
    return values


def frames_received(driver: Driver, topics: list[str], since: int) -> dict[str, int]:
    """frames_received per camera in the newest /diagnostics message after `since` ones."""
    return {t: int(v.get("frames_received", 0))
            for t, v in camera_values(driver, topics, since).items()}


class Session:
    """One node process and one subscriber process on a private domain."""

    def __init__(self, folder: Path, checkpoint: Path, profile: Path | None = None) -> None:
        ros = find_ros()
        if ros is None:
            raise SystemExit("bench/ros_live.py: no .venv-ros (make ros-env) and no sourced ROS 2")
        self.ros, self.folder = ros, folder
        self.env = ros_env(next_domain(), folder / "ros_log")
        if profile is not None:  # every process of the graph, cameras too
            self.env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(profile)  # Fast DDS 2.x (Jazzy)
            self.env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)  # Fast DDS 3.x (Kilted)
            self.env["RMW_FASTRTPS_USE_QOS_FROM_XML"] = "0"
        self.topics = [f"/bench_cam{i}/image_raw" for i in range(4)]
        self.proc = node(ros, self.env, folder / "node.log", "-p", f"checkpoint:={checkpoint}",
                         "-p", "device:=cpu",
                         "-p", "image_topics:=[" + ",".join(self.topics) + "]",
                         "-p", "target_fps:=6.25", "-p", "inference_stride:=2",
                         "-p", "diagnostics_period_s:=0.5")
        self.driver = Driver(ros, self.env, folder / "driver.log")
        self.driver("wait_services", timeout=120)
        self.driver("subscribe", topic="/diagnostics", type="DiagnosticArray")
        for task in ("action", "gesture"):
            self.driver("subscribe", topic=f"/human/{task}", type="Classification")

    def configure(self, reliability: str) -> None:
        assert self.driver("set", params={"qos_reliability": reliability})["results"][0][0]
        assert self.driver("transition", id=CONFIGURE, timeout=120)["success"]
        assert self.driver("transition", id=ACTIVATE)["success"]

    def unconfigure(self) -> None:
        assert self.driver("transition", id=DEACTIVATE)["success"]
        assert self.driver("transition", id=CLEANUP)["success"]

    def stream(self, count: int, cams: int, reliability: str, name: str,
               fresh: bool = True) -> tuple[dict[str, int], float]:
        """Frames the node received per camera, and the cameras' streaming wall time;
        `fresh`: the node's counters start at 0 (just configured), else they count on."""
        topics = self.topics[:cams]
        since = len(self.driver("messages", topic="/diagnostics")["messages"])
        before = {} if fresh else frames_received(self.driver, topics, since - 1)
        sent = camera_result(camera(
            self.ros, self.env, self.folder / f"camera_{name}.log",
            [f"{t}:rgb8" for t in topics], "--frames", str(count), "--fps", str(FPS),
            "--size", SIZE, "--stamp-now", "--reliability", reliability),
            timeout=count / FPS + 120)
        assert all(len(s) == count for s in sent["sent"].values())
        self.last_values = camera_values(self.driver, topics, since)
        after = {t: int(v.get("frames_received", 0)) for t, v in self.last_values.items()}
        return {t: after[t] - before.get(t, 0) for t in topics}, float(sent["wall_s"])

    def close(self) -> None:
        self.driver.close()
        self.proc.close()


def latency(session: Session, frames: int, camera_qos: str, suffix: str,
            out: dict[str, Any]) -> None:
    """1 then 4 cameras on the node's default QoS: the latency a subscriber sees (image
    stamp to the result's arrival), where the node says it goes, delivery, CPU."""
    for cams in (1, 4):
        start = len(session.driver("messages", topic="/human/action")["messages"])
        cpu0 = cpu_seconds(session.proc.popen.pid)
        got, wall = session.stream(frames, cams, camera_qos, f"latency_{cams}{suffix}",
                                   fresh=cams == 1)
        cpu = cpu_seconds(session.proc.popen.pid) - cpu0
        results = session.driver("messages", topic="/human/action")["messages"][start:]
        ms = [(r["received_ns"] - (r["stamp"][0] * 10**9 + r["stamp"][1])) / 1e6
              for r in results]
        out[f"results_{cams}cam{suffix}"] = len(results)
        out[f"latency_p50_ms_{cams}cam{suffix}"] = round(statistics.median(ms), 1)
        out[f"latency_p95_ms_{cams}cam{suffix}"] = round(percentile(ms, 0.95), 1)
        key = "frames_received_over_sent_640x480" + ("_4cam" if cams == 4 else "")
        out[key + suffix] = round(sum(got.values()) / (cams * frames), 4)
        # Where the time goes: the node's own stamp -> receive (transport and the
        # executor's queue) and stamp -> publish (its /diagnostics, the worst camera).
        for name in ("stamp_to_receive_ms_p95", "stamp_to_publish_ms_p95"):
            out[f"node_{name}_{cams}cam{suffix}"] = max(
                float(v.get(name, "nan")) for v in session.last_values.values())
        if cams == 4:  # CPU over the cameras' streaming time (the node idles before it)
            out[f"node_cpu_cores_4cam{suffix}"] = round(cpu / wall, 2)


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    checkpoint = demo_checkpoint(folder)
    frames = int(args.seconds * FPS)
    default = str(BY_NAME["qos_reliability"].default)
    out: dict[str, Any] = {"default_qos_reliability": default}
    delivery = {}
    session = Session(folder, checkpoint)
    try:
        for camera_qos, node_qos in (("reliable", "best_effort"), ("best_effort", "best_effort"),
                                     ("reliable", "reliable"), ("best_effort", "auto")):
            session.configure(node_qos)
            got, _ = session.stream(frames, 1, camera_qos, f"{camera_qos}_{node_qos}")
            delivery[f"camera_{camera_qos}_node_{node_qos}"] = round(
                sum(got.values()) / frames, 4)
            session.unconfigure()
        session.configure(default)
        latency(session, frames, "reliable", "", out)
    finally:
        session.close()
    # Every process with config/fastdds_shm.xml (shared memory, 32 MB segments).
    session = Session(folder, checkpoint, ROOT / "config" / "fastdds_shm.xml")
    try:
        for camera_qos in ("reliable", "best_effort"):
            session.configure(default)  # the node's counters start at 0 again
            latency(session, frames, camera_qos, f"_{camera_qos}_camera_fastdds_shm_xml", out)
            session.unconfigure()
    finally:
        session.close()
    out["delivery_640x480_30fps_1cam"] = delivery
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="seconds of 30 fps images per measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = parser.parse_args()
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="ros_live_") as folder:
        result = run(args, Path(folder))
    result.update({
        "model": "HPS r3d_18 width 8, 8-frame clips of 32x32, frame differences (demo size)",
        "stream": "target_fps 6.25, inference_stride 2, device cpu",
        "images": f"{SIZE} rgb8 at {FPS} fps, {args.seconds:g} s per measurement",
        "middleware": "ROS 2 Jazzy wheels, rmw_fastrtps_cpp defaults, localhost",
        "cpu": cpu_model(),
        # Other jobs on the machine delay every process of the graph: latency
        # figures are only comparable at similar load.
        "load_average": [round(v, 2) for v in os.getloadavg()],  # 1, 5, 15 min, at the end
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    })
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
