"""config/fed.rviz: a valid rviz2 config with fed_node's overlay, its segmentation and the camera.

Checked against what it must match: the node name and default camera topic of the launch file,
and setup.py installing it next to the other config files.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
RVIZ = REPO / "config" / "fed.rviz"


def _displays() -> list[dict]:
    config = yaml.safe_load(RVIZ.read_text())
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(config)
    assert any(panel["Class"] == "rviz_common/Displays" for panel in config["Panels"])
    return config["Visualization Manager"]["Displays"]


def test_rviz_shows_overlay_segmentation_and_camera_images() -> None:
    launch = (REPO / "launch" / "fed.launch.py").read_text()
    node = re.search(r'name="([^"]+)"', launch).group(1)
    camera = next(
        kw.value.value
        for call in ast.walk(ast.parse(launch))
        if isinstance(call, ast.Call)
        and getattr(call.func, "id", "") == "DeclareLaunchArgument"
        and call.args
        and getattr(call.args[0], "value", None) == "camera_topic"
        for kw in call.keywords
        if kw.arg == "default_value"
    )
    displays = _displays()
    assert all(
        d["Class"] == "rviz_default_plugins/Image" and d["Enabled"] is True for d in displays
    )
    topics = [d["Topic"]["Value"] for d in displays]
    assert topics == [f"/{node}/overlay", f"/{node}/segmentation_color", camera]
    assert topics[:2] == ["/fed_node/overlay", "/fed_node/segmentation_color"]


def test_camera_is_subscribed_best_effort() -> None:
    """A Reliable subscription would get nothing from a best-effort (sensor-data) camera driver."""
    camera = _displays()[-1]
    assert camera["Topic"]["Reliability Policy"] == "Best Effort"


def test_setup_installs_the_rviz_file_with_the_config() -> None:
    tree = ast.parse((REPO / "setup.py").read_text())
    patterns = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and n.value.startswith("config/")
    ]
    assert any(fnmatch.fnmatch("config/fed.rviz", p) for p in patterns), patterns
