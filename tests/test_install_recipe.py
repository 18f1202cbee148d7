"""The install recipes (docs/install.md) agree with what the code needs, as far as this machine
can check without a ROS apt install or a Docker daemon:

- every ROS package in package.xml is a pinned ``ros-*`` wheel of requirements/runtime.txt (the
  venv path) and back, and every ``python3-*`` rosdep key a pinned pip requirement;
- every third-party module ros2_fed imports comes from one of them (or is a named optional);
- docker/Dockerfile installs the requirement files that exist, drops exactly the ``ros-*``
  wheels as the install page does, and builds on the ROS distribution the wheels are pinned to.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "requirements" / "runtime.txt"
DOCKERFILE = REPO / "docker" / "Dockerfile"

# rosdep key -> the pip distribution that provides the same module in the venv
ROSDEP_TO_PIP = {
    "python3-numpy": "numpy",
    "python3-opencv": "opencv-python-headless",
    "python3-yaml": "pyyaml",
    "python3-tqdm": "tqdm",
}
# ROS packages only `ros2 launch` needs: the venv path runs the console scripts without launch
LAUNCH_ONLY = {"launch", "launch_ros"}
# wheels the PyPI rclpy needs that a ROS install has anyway (no package.xml key of ours)
ROS_WHEELS_WITHOUT_KEY = {"ros-rmw-fastrtps-cpp"}
# modules that come with rclpy itself (its own dependencies)
WITH_RCLPY = {"rcl_interfaces", "ament_index_python"}
# imported only where installed, each with where it comes from
OPTIONAL = {
    "ray": "requirements/test.txt (fed_fleet_eval --executor ray)",
    "tensorrt": "docker/requirements-cuda.txt",
    "torch_tensorrt": "GPU machines (docs/vehicle.md)",
    "cuda": "GPU machines (cuda-python, docs/vehicle.md)",
}
# rclpy's major version of each ROS 2 distribution the wheels could be pinned to
RCLPY_DISTRO = {3: "humble", 7: "jazzy", 9: "kilted", 10: "rolling"}


def _pins(path: Path) -> dict[str, str]:
    """name (lower case, '_' as '-') -> version of every ``name==version`` line."""
    pins = {}
    for line in path.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if found:
            pins[found.group(1).lower().replace("_", "-")] = found.group(2)
    return pins


def _exec_depends() -> list[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return [e.text.strip() for e in root.findall("exec_depend") if e.text]


def test_package_xml_and_the_runtime_requirements_name_the_same_dependencies() -> None:
    pins = _pins(RUNTIME)
    depends = _exec_depends()
    ros = [d for d in depends if not d.startswith("python3-")]
    for key in ros:
        wheel = "ros-" + key.replace("_", "-")
        assert key in LAUNCH_ONLY or wheel in pins, f"package.xml {key}: no {wheel}== pin"
    wheels = {name for name in pins if name.startswith("ros-")}
    keyed = {"ros-" + key.replace("_", "-") for key in ros}
    assert wheels - keyed == ROS_WHEELS_WITHOUT_KEY, wheels - keyed
    for key in (d for d in depends if d.startswith("python3-")):
        assert key in ROSDEP_TO_PIP, f"package.xml {key}: which pip requirement is it?"
        assert ROSDEP_TO_PIP[key] in pins, f"{key}: {ROSDEP_TO_PIP[key]} is not pinned"


def _imported_modules() -> set[str]:
    found = set()
    for path in (REPO / "ros2_fed").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"ros2_fed", "__future__"}


def test_every_module_ros2_fed_imports_is_installed_by_the_recipes() -> None:
    pins = _pins(RUNTIME)
    providers = metadata.packages_distributions()
    ros_keys = set(_exec_depends())
    missing = []
    for module in sorted(_imported_modules()):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        if dists & set(pins) or module in ros_keys or module in WITH_RCLPY | set(OPTIONAL):
            continue
        missing.append(f"{module} (from {sorted(dists) or 'nothing installed'})")
    assert not missing, f"imported but in no requirement or package.xml: {missing}"
    cuda = _pins(REPO / "docker" / "requirements-cuda.txt")
    assert any(name.startswith("tensorrt") for name in cuda)


def _dockerfile() -> str:
    return DOCKERFILE.read_text().replace("\\\n", " ")


def test_the_dockerfile_installs_the_requirement_files_there_are() -> None:
    text = _dockerfile()
    installed = re.findall(r"pip install [^&;]*?-r ([^\s;&]+)", text)
    assert installed, "no pip install -r in the Dockerfile"
    filtered = (
        "grep -v '^ros-' src/ros2_fed/requirements/runtime.txt > /tmp/runtime-without-ros.txt"
    )
    assert filtered in text
    for path in installed:
        if path.startswith("/tmp/"):
            assert path == "/tmp/runtime-without-ros.txt"
            continue
        assert path.startswith("src/ros2_fed/"), path
        assert (REPO / path.removeprefix("src/ros2_fed/")).is_file(), path
    # the same filter as the install page's colcon workspace
    page = (REPO / "docs" / "install.md").read_text()
    assert "grep -v '^ros-' src/ros2_fed/requirements/runtime.txt" in page


def test_the_dockerfile_builds_on_the_distribution_of_the_pinned_rclpy() -> None:
    text = _dockerfile()
    distro = re.search(r"^ARG ROS_DISTRO=(\w+)$", text, re.M)
    assert distro is not None
    assert re.search(r"^FROM ros:\$\{ROS_DISTRO\}-ros-base$", text, re.M)
    major = int(_pins(RUNTIME)["ros-rclpy"].split(".")[0])
    assert RCLPY_DISTRO[major] == distro.group(1)
    assert (
        f"source /opt/ros/{distro.group(1)}/setup.bash" in (REPO / "docs/install.md").read_text()
    )
    # colcon with the venv's python, the entrypoint there and runnable
    assert "python -m colcon build --packages-select ros2_fed" in text
    entry = REPO / "docker" / "entrypoint.sh"
    assert "COPY docker/entrypoint.sh" in text and os.access(entry, os.X_OK)
    # the build context leaves the developer's venv out
    ignored = (REPO / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and "runs" in ignored
