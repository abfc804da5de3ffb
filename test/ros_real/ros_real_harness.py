"""Processes of the real-DDS suite: the node, a test client and cameras over real ROS 2.

pytest runs in `.venv`, which has no ROS; everything that speaks DDS runs as
its own process under the ROS environment's Python:
- `.venv-ros` (built by `make ros-env`; MTL_ROS_VENV names another, `none`
  skips it), or
- a sourced ROS 2 install (ROS_DISTRO set): `python3` of the PATH, which must
  then import torch and this package as the node does on a robot.
DDS stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, Fast DDS,
and a private ROS_DOMAIN_ID per test.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
YAML = ROOT / "config" / "perception.yaml"
_DOMAINS = itertools.count()


@dataclass(frozen=True)
class RosPython:
    python: str
    node_command: tuple[str, ...]  # the console script, or `python -m` where there is none
    origin: str


def find_ros() -> RosPython | None:
    """`.venv-ros` (MTL_ROS_VENV names another; `none`: never), else a sourced ROS 2."""
    venv = Path(os.environ.get("MTL_ROS_VENV", ROOT / ".venv-ros"))
    if not venv.is_absolute():
        venv = ROOT / venv
    if os.environ.get("MTL_ROS_VENV") != "none" and (venv / "bin" / "python").exists():
        script = venv / "bin" / "perception_node"
        return RosPython(str(venv / "bin" / "python"), (str(script),), f"{venv}")
    if os.environ.get("ROS_DISTRO"):
        python = shutil.which("python3") or "python3"
        script = shutil.which("perception_node")
        command = (script,) if script else (python, "-m", "mtl_perception.ros.node")
        return RosPython(python, command, f"sourced ROS 2 {os.environ['ROS_DISTRO']}")
    return None


def require_ros() -> RosPython:
    """The ROS environment, or a skip (a failure where `make test` demands it)."""
    ros = find_ros()
    if ros is None:
        reason = ("real ROS 2 not available: no .venv-ros (build it: make ros-env) "
                  "and no sourced ROS 2 install")
        if os.environ.get("MTL_ROS_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return ros


def ros_env(domain: int, log_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "_ROS_WHEELS_BOOTSTRAP_COMPLETE"}
    env.update({
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOCALHOST_ONLY": "1",  # the same for Humble, which predates the range
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "ROS_LOG_DIR": str(log_dir),
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    })
    if env.get("ROS_DISTRO") in ("humble",):
        env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE")
    else:
        env.pop("ROS_LOCALHOST_ONLY")  # deprecated from Jazzy on, it would warn
    return env


def next_domain() -> int:
    """A ROS_DOMAIN_ID of its own for each test (1..100), apart from other runs' by pid."""
    return 1 + (os.getpid() * 7 + next(_DOMAINS)) % 100


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A child process whose output goes to a file (no pipe to fill up)."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        # SIGINT at its default action: a `make test` started in the background hands
        # its children SIGINT ignored, and the SIGINT tests would then test nothing.
        self.popen = subprocess.Popen(command, env=env, cwd=ROOT, stdout=self._out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      preexec_fn=_default_sigint)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.popen.args[0]} did not exit in {timeout} s; "
                                 f"output:\n{self.output()}") from None

    def signal(self, signum: int, timeout: float = 30.0) -> int:
        self.popen.send_signal(signum)
        return self.wait(timeout)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()


class Driver:
    """The test client (driver.py) as a process: one JSON request, one JSON answer."""

    def __init__(self, ros: RosPython, env: dict[str, str], log: Path) -> None:
        self._err = log.open("w")
        self.popen = subprocess.Popen([ros.python, str(HERE / "driver.py")], env=env, cwd=ROOT,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._err, text=True)
        self.log = log
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next(60.0).get("ready"), "driver did not start"

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line)

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            return json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"driver silent for {timeout} s; stderr:\n"
                                 f"{self.log.read_text(errors='replace')}") from None

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.popen.stdin.flush()
        answer = self._next(float(fields.get("timeout", 30.0)) + 30.0)
        assert "error" not in answer, f"{op}: {answer['error']}"
        return answer

    def close(self) -> None:
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._err.close()


def camera(ros: RosPython, env: dict[str, str], log: Path, streams: list[str],
           *args: str) -> Proc:
    """camera.py publishing `streams` (TOPIC:ENCODING[:FRAME_ID]) from its own process."""
    return Proc([ros.python, str(HERE / "camera.py"), *streams, *args], env, log)


def camera_result(proc: Proc, timeout: float = 60.0) -> dict[str, Any]:
    code = proc.wait(timeout)
    lines = [ln for ln in proc.output().splitlines() if ln.startswith("{")]
    assert code == 0 and lines, f"camera failed ({code}):\n{proc.output()}"
    return json.loads(lines[-1])


def node(ros: RosPython, env: dict[str, str], log: Path, *ros_args: str,
         params_file: Path | None = YAML) -> Proc:
    """The node as a user starts it: its console script, the shipped YAML, overrides."""
    command = [*ros.node_command, "--ros-args"]
    if params_file is not None:
        command += ["--params-file", str(params_file)]
    return Proc([*command, *ros_args], env, log)


def tiny_checkpoint(folder: Path) -> Path:
    """Width-4 HPS model, 4-frame clips of 32x32: milliseconds per forward on a CPU."""
    from helpers_models import write_tiny_checkpoint

    return write_tiny_checkpoint(folder / "tiny.safetensors")


def error_lines(output: str) -> list[str]:
    """The non-empty lines a process printed (the node logs to stderr)."""
    return [line for line in output.splitlines() if line.strip()]
