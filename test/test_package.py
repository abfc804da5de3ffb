"""The ROS 2 package manifest and install layout that colcon relies on."""

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_ament_python_with_runtime_dependencies() -> None:
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "mtl_perception"
    assert root.findtext("export/build_type") == "ament_python"
    exec_depends = {e.text for e in root.findall("exec_depend")}
    assert {
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "vision_msgs",
        "diagnostic_msgs",
        "launch",
        "launch_ros",
    } <= exec_depends


def test_setup_installs_the_marker_manifest_launch_and_config() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    text = ast.unparse(tree)
    assert "share/ament_index/resource_index/packages" in text
    assert "resource/{PACKAGE}" in text
    for folder in ("launch", "config", "config/sets", "config/classes"):
        assert f"share/{{PACKAGE}}/{folder}" in text
    assert (ROOT / "resource" / "mtl_perception").is_file()
    setup_cfg = (ROOT / "setup.cfg").read_text()
    # ros2 run looks for executables in lib/<package>.
    assert "install_scripts=$base/lib/mtl_perception" in setup_cfg


def test_runtime_package_never_imports_training_code() -> None:
    offenders = []
    for path in (ROOT / "mtl_perception").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "training"]
    assert offenders == []


def test_only_the_node_imports_rclpy() -> None:
    importers = []
    for path in ROOT.rglob("*.py"):
        # .typestubs: the rclpy sources that `make typecheck-node` reads (not ours);
        # .venv-ros: real ROS 2 for test/ros_real (`make ros-env`).
        skipped = {".venv", ".venv-ros", ".typestubs", "test"}
        if skipped & set(path.parts):
            continue
        text = path.read_text()
        if "import rclpy" in text or "from rclpy" in text:
            importers.append(path.relative_to(ROOT).as_posix())
    assert set(importers) <= {"mtl_perception/ros/node.py"}
