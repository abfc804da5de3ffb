"""The live node over real ROS 2 (Fast DDS): delivery of 640x480 images by QoS, latency, CPU.

Run from the project root where `.venv-ros` exists (`make ros-env`):
`.venv/bin/python bench/ros_live.py [--seconds S] [--rounds N] [--quiet-wait S]`.
The last line printed is one JSON object (without the runs), all of it is
written to bench/results/ros_live.json.

Every party is its own process, as on a robot: the node (its console script,
config/perception.yaml, a demo-size model with random weights: HPS r3d_18
width 8, 8-frame clips of 32x32 with frame differences, at the demo's
target_fps 6.25 and inference_stride 2), cameras publishing 640x480 rgb8 at
30 fps (test/ros_real/camera.py) and a subscriber (test/ros_real/driver.py).
DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, Fast DDS
defaults, its own ROS_DOMAIN_ID).

- runs / summary: for each round (`--rounds`, the two transports interleaved:
  A B A B) and transport (config/fastdds_shm.xml in every process, or Fast DDS
  defaults), a reliable and a best-effort camera (sensor-data QoS) against the
  node's default QoS (auto), 1 then 4 cameras: latency as users measure it
  (the result's arrival at the subscriber minus the image's stamp, the
  camera's wall clock at publishing), frames the node received / sent, the
  node process's CPU time / wall time, the node's own /diagnostics split
  (image stamp to its callback: transport and executor queue; to the
  result's publication), and the 1-minute load average. `summary`: median,
  min and max of each over the rounds.
- The issue's keys (latency_p95_ms_1cam, latency_p95_ms_4cam,
  frames_received_over_sent_640x480 (4 cameras), node_cpu_cores_4cam): the
  worse camera QoS's median, with the profile; `_fastdds_defaults` without.
- delivery_640x480_30fps_1cam_fastdds_defaults: frames received / sent for the
  camera's and the node's reliability on Fast DDS defaults (why auto).
- load_average: at the end, and the 1-minute figure's range over the runs;
  `--quiet-wait S` first waits up to S seconds for a load below `--quiet-load`.
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

    def __init__(self, folder: Path, checkpoint: Path, profile: Path | None = None,
                 params: tuple[str, ...] = ()) -> None:
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
                         "-p", "diagnostics_period_s:=0.5",
                         *(arg for param in params for arg in ("-p", param)))
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


def latency(session: Session, frames: int, camera_qos: str) -> list[dict[str, Any]]:
    """1 then 4 cameras on the node's default QoS: the latency a subscriber sees (image
    stamp to the result's arrival), where the node says it goes, delivery, CPU, load."""
    runs = []
    for cams in (1, 4):
        start = len(session.driver("messages", topic="/human/action")["messages"])
        cpu0 = cpu_seconds(session.proc.popen.pid)
        got, wall = session.stream(frames, cams, camera_qos, f"latency_{cams}_{camera_qos}",
                                   fresh=cams == 1)
        cpu = cpu_seconds(session.proc.popen.pid) - cpu0
        results = session.driver("messages", topic="/human/action")["messages"][start:]
        ms = [(r["received_ns"] - (r["stamp"][0] * 10**9 + r["stamp"][1])) / 1e6
              for r in results]
        run: dict[str, Any] = {
            "cams": cams, "camera_qos": camera_qos, "results": len(results),
            "latency_p50_ms": round(statistics.median(ms), 1) if ms else None,
            "latency_p95_ms": round(percentile(ms, 0.95), 1) if ms else None,
            "frames_received_over_sent": round(sum(got.values()) / (cams * frames), 4),
            # CPU over the cameras' streaming time (the node idles before it)
            "node_cpu_cores": round(cpu / wall, 3),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
        # Where the time goes: the node's own stamp -> receive (transport and the
        # executor's queue) and stamp -> publish (its /diagnostics, the worst camera).
        for name in ("stamp_to_receive_ms_p95", "stamp_to_publish_ms_p95"):
            values = [v.get(name, "n/a") for v in session.last_values.values()]
            run[f"node_{name}"] = max((float(v) for v in values if v != "n/a"), default=None)
        runs.append(run)
    return runs


def wait_for_quiet(load: float, seconds: float) -> dict[str, Any]:
    """Wait up to `seconds` for a 1-minute load average below `load` (other jobs share
    the machine); say whether it came."""
    deadline = time.monotonic() + seconds
    while os.getloadavg()[0] >= load and time.monotonic() < deadline:
        time.sleep(10)
    now = os.getloadavg()[0]
    return {"wanted_below": load, "waited_up_to_s": seconds, "at_start": round(now, 2),
            "quiet": now < load}


SETUPS = {"fastdds_shm_xml": ROOT / "config" / "fastdds_shm.xml", "fastdds_defaults": None}


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    checkpoint = demo_checkpoint(folder)
    frames = int(args.seconds * FPS)
    default = str(BY_NAME["qos_reliability"].default)
    out: dict[str, Any] = {"default_qos_reliability": default}
    out["quiet_window"] = wait_for_quiet(args.quiet_load, args.quiet_wait)
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):  # the two transports interleaved: A B A B
        for setup, profile in SETUPS.items():
            session = Session(folder, checkpoint, profile)
            try:
                for camera_qos in ("reliable", "best_effort"):
                    session.configure(default)  # the node's counters start at 0 again
                    for one in latency(session, frames, camera_qos):
                        runs.append({"round": round_, "setup": setup, **one})
                        print(json.dumps(runs[-1]), flush=True)
                    session.unconfigure()
            finally:
                session.close()
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
    finally:
        session.close()
    out.update(headline(runs))
    out["summary"] = summary(runs)
    out["runs"] = runs
    out["delivery_640x480_30fps_1cam_fastdds_defaults"] = delivery
    return out


def compare(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """`--compare NAME=A,B`: the node with each value of one parameter, interleaved
    (A B A B), config/fastdds_shm.xml everywhere, a reliable camera, 1 and 4 cameras."""
    name, values = args.compare.split("=", 1)
    checkpoint = demo_checkpoint(folder)
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for value in values.split(","):
            session = Session(folder, checkpoint, SETUPS["fastdds_shm_xml"],
                              (f"{name}:={value}",))
            try:
                session.configure(str(BY_NAME["qos_reliability"].default))
                for one in latency(session, int(args.seconds * FPS), "reliable"):
                    runs.append({"round": round_, name: value, **one})
                    print(json.dumps(runs[-1]), flush=True)
            finally:
                session.close()
    table = {value: {f"{cams}cam": {figure: spread([r[figure] for r in runs
                                                   if r[name] == value and r["cams"] == cams])
                                    for figure in FIGURES} for cams in (1, 4)}
             for value in values.split(",")}
    return {"compared": name, "summary": table, "runs": runs}


FIGURES = ("latency_p50_ms", "latency_p95_ms", "frames_received_over_sent", "node_cpu_cores",
           "node_stamp_to_receive_ms_p95", "node_stamp_to_publish_ms_p95", "load_average_1min")


def spread(values: list[float]) -> dict[str, float]:
    """Median and range over rounds (None where a run had no result)."""
    kept = [v for v in values if v is not None and v == v]
    if not kept:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": round(statistics.median(kept), 3), "min": min(kept), "max": max(kept),
            "n": len(kept)}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """setup -> camera QoS -> cameras -> figure -> median, min, max over the rounds."""
    out: dict[str, Any] = {}
    for run_ in runs:
        key = (run_["setup"], f"{run_['camera_qos']}_camera", f"{run_['cams']}cam")
        out.setdefault(key[0], {}).setdefault(key[1], {}).setdefault(key[2], [])
        out[key[0]][key[1]][key[2]].append(run_)
    return {setup: {qos: {cams: {name: spread([r[name] for r in group]) for name in FIGURES}
                          for cams, group in by_cams.items()}
                    for qos, by_cams in by_qos.items()}
            for setup, by_qos in out.items()}


def headline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's keys: per transport, the worse of a reliable and a best-effort camera
    (median over rounds); unsuffixed for config/fastdds_shm.xml in every process."""
    out: dict[str, Any] = {}
    table = summary(runs)
    for setup, by_qos in table.items():
        suffix = "" if setup == "fastdds_shm_xml" else f"_{setup}"

        def worst(cams: str, name: str, low: bool = False,
                  by_qos: dict[str, Any] = by_qos) -> float:
            values = [by_qos[q][cams][name]["median"] for q in by_qos]
            return float(min(values) if low else max(values))

        out[f"latency_p95_ms_1cam{suffix}"] = worst("1cam", "latency_p95_ms")
        out[f"latency_p95_ms_4cam{suffix}"] = worst("4cam", "latency_p95_ms")
        out[f"frames_received_over_sent_640x480{suffix}"] = worst(
            "4cam", "frames_received_over_sent", low=True)
        out[f"frames_received_over_sent_640x480_1cam{suffix}"] = worst(
            "1cam", "frames_received_over_sent", low=True)
        out[f"node_cpu_cores_4cam{suffix}"] = worst("4cam", "node_cpu_cores")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of 30 fps images per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the two transports, interleaved (A B A B)")
    parser.add_argument("--quiet-load", type=float, default=2.5,
                        help="wait for a 1-minute load average below this before starting")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="seconds to wait for that at most (then run anyway)")
    parser.add_argument("--compare", metavar="NAME=A,B",
                        help="instead: the node with each value of one parameter, interleaved")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = parser.parse_args()
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="ros_live_") as folder:
        result = (compare if args.compare else run)(args, Path(folder))
    loads = [r["load_average_1min"] for r in result["runs"]]
    result.update({} if args.compare else {
        "headline": ("unsuffixed keys: config/fastdds_shm.xml in every process (the node's, "
                     "the cameras', the subscriber's), the worse of a reliable and a "
                     "best-effort camera, median over the rounds; _fastdds_defaults: the "
                     "same without the profile; frames_received_over_sent_640x480: 4 cameras")})
    result.update({
        "model": "HPS r3d_18 width 8, 8-frame clips of 32x32, frame differences (demo size)",
        "stream": "target_fps 6.25, inference_stride 2, device cpu, node qos_reliability auto",
        "images": f"{SIZE} rgb8 at {FPS} fps, {args.seconds:g} s per measurement, "
                  f"{args.rounds} rounds",
        "middleware": "ROS 2 Jazzy wheels, rmw_fastrtps_cpp, localhost",
        "cpu": cpu_model(),
        # Other jobs on the machine delay every process of the graph: latency
        # figures are only comparable at similar load.
        "load_average": [round(v, 2) for v in os.getloadavg()],  # 1, 5, 15 min, at the end
        "load_average_1min_during": [min(loads), max(loads)],
        "cpu_count": os.cpu_count(),
        "node_torch_threads": 1,  # OMP_NUM_THREADS=1 in every ROS process (ros_env)
    })
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "summary")}))


if __name__ == "__main__":
    main()
