"""Where four raw cameras' frames wait before a node sees them, and what fixes it.

`.venv/bin/python bench/ros_transport.py [--rounds 2]` (needs `.venv-ros`).
A plain subscriber (test/ros_real/transport_subscriber.py, no model) and a camera
process (test/ros_real/camera.py: 4 topics of 640x480 rgb8 at 30 fps, stamped
with the wall clock), reliable, on a private domain; Fast DDS defaults versus
config/fastdds_shm.xml in both processes, versus the profile in the
subscriber only; A B C A B C. Writes bench/results/ros_transport.json: per
run, the p50/p95 of image stamp -> DDS receive (transport), receive ->
callback (executor queue), and both, and the frames received of those sent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hostinfo import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "test" / "ros_real")]
from ros_real_harness import find_ros, next_domain, ros_env  # noqa: E402

OUT = ROOT / "bench" / "results" / "ros_transport.json"
PROFILE = ROOT / "config" / "fastdds_shm.xml"
CAMS, FPS, FRAMES = 4, 30, 300


def with_profile(env: dict[str, str], profile: bool) -> dict[str, str]:
    env = dict(env)
    if profile:
        for name in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"):
            env[name] = str(PROFILE)
        env["RMW_FASTRTPS_USE_QOS_FROM_XML"] = "0"
    return env


def one_run(python: str, camera_profile: bool, subscriber_profile: bool) -> dict[str, Any]:
    env = ros_env(next_domain(), Path("/tmp") / "ros_transport_log")
    seconds = FRAMES / FPS + 4
    subscriber = subprocess.Popen(
        [python, str(ROOT / "test" / "ros_real" / "transport_subscriber.py"), str(CAMS),
         str(seconds)], env=with_profile(env, subscriber_profile), stdout=subprocess.PIPE,
        text=True)
    time.sleep(2)  # the subscriptions exist before the first frame
    streams = [f"/probe_cam{i}/image_raw:rgb8" for i in range(CAMS)]
    subprocess.run([python, str(ROOT / "test" / "ros_real" / "camera.py"), *streams,
                    "--frames", str(FRAMES), "--fps", str(FPS), "--size", "640x480",
                    "--stamp-now", "--wait", "30"], env=with_profile(env, camera_profile),
                   stdout=subprocess.DEVNULL, check=True, timeout=seconds + 60)
    out, _ = subscriber.communicate(timeout=seconds + 60)
    result = json.loads(out.strip().splitlines()[-1])
    result["received_over_sent"] = round(result["frames"] / (CAMS * FRAMES), 4)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ros = find_ros()
    if ros is None:
        raise SystemExit("bench/ros_transport.py: no .venv-ros (make ros-env)")
    setups = {"fastdds_defaults": (False, False), "fastdds_shm_xml_both": (True, True),
              "fastdds_shm_xml_subscriber_only": (False, True)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
    for _ in range(args.rounds):  # interleaved: A B C A B C
        for name, (camera_profile, subscriber_profile) in setups.items():
            runs[name].append(one_run(ros.python, camera_profile, subscriber_profile))
            print(name, json.dumps(runs[name][-1]), flush=True)
    result = {
        "runs": runs,
        "cameras": f"{CAMS} x 640x480 rgb8 at {FPS} fps, {FRAMES} frames each, reliable",
        "subscriber": ("rclpy SingleThreadedExecutor, no model "
                       "(test/ros_real/transport_subscriber.py)"),
        "middleware": "ROS 2 Jazzy wheels, rmw_fastrtps_cpp, localhost",
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
