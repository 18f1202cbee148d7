"""The launch file's camera_topic remaps the node input that input_transport selects (issue 15).

launch / launch_ros are not installed here, so the launch file's remapping rules are taken
from its AST (the ``remappings=[...]`` list in ``_node`` and ``camera_base_topic``), evaluated,
and handed to real rclpy as ``-r`` rules: the oracle is ROS's own name resolution, which remaps
each name on its own (a rule for ``image`` leaves ``image/compressed`` where it was).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "fed.launch.py"
# Fast DDS reads its XML profile once per process, at the first participant: the probes below
# must not be that first participant without it, or the ROS tests later in this process lose
# the large-data transport they need for camera-sized frames.
os.environ.setdefault(
    "FASTDDS_DEFAULT_PROFILES_FILE", str(LAUNCH.parents[1] / "config" / "fastdds_large_data.xml")
)


def launch_helpers() -> dict:
    """The launch file's pure helpers (camera_base_topic, name_list, camera_remappings), run."""
    tree = ast.parse(LAUNCH.read_text())
    wanted = {"camera_base_topic", "name_list", "camera_remappings"}
    helpers = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {h.name for h in helpers} == wanted
    namespace: dict = {}
    exec("import re", namespace)
    exec(compile(ast.Module(body=helpers, type_ignores=[]), str(LAUNCH), "exec"), namespace)
    return namespace


def launch_remappings(
    camera_topic: str, cameras: str = "", camera_topics: str = ""
) -> list[tuple[str, str]]:
    """The rules ``_node`` passes for these launch arguments (its call of camera_remappings)."""
    helpers = launch_helpers()
    tree = ast.parse(LAUNCH.read_text())
    node_fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_node")
    assert any(
        isinstance(n, ast.Call) and getattr(n.func, "id", "") == "camera_remappings"
        for n in ast.walk(node_fn)
    )
    return helpers["camera_remappings"](
        camera_topic, helpers["name_list"](cameras), helpers["name_list"](camera_topics)
    )


def subscribed_topic(rules: list[tuple[str, str]], compressed: bool, name: str = "image") -> str:
    args = ["--ros-args"] + [a for src, dst in rules for a in ("-r", f"{src}:={dst}")]
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node("remap_probe", context=context, cli_args=args)
        sub = node.create_subscription(
            CompressedImage if compressed else Image,
            f"{name}/compressed" if compressed else name,
            lambda _: None,
            1,
        )
        topic = sub.topic_name
        node.destroy_node()
        return topic
    finally:
        rclpy.shutdown(context=context)


def test_a_rule_for_image_alone_leaves_the_compressed_input_behind() -> None:
    """The defect: fed.yaml suggested -r image:=/cam/image, which compressed input ignores."""
    assert subscribed_topic([("image", "/cam/image")], compressed=True) == "/image/compressed"


@pytest.mark.parametrize("camera_topic", ["/cam/image", "/cam/image/", "/cam/image/compressed"])
@pytest.mark.parametrize("compressed", [False, True])
def test_launch_camera_topic_remaps_both_transports(camera_topic: str, compressed: bool) -> None:
    rules = launch_remappings(camera_topic)
    expected = "/cam/image/compressed" if compressed else "/cam/image"
    assert subscribed_topic(rules, compressed) == expected


def test_fed_yaml_documents_the_compressed_rule() -> None:
    text = (LAUNCH.parents[1] / "config" / "fed.yaml").read_text()
    assert "-r image/compressed:=/cam/image/compressed" in text


@pytest.mark.parametrize("cameras", ["front,left", "[front, left]", "front left"])
@pytest.mark.parametrize("compressed", [False, True])
def test_launch_maps_every_camera_onto_its_topic(cameras: str, compressed: bool) -> None:
    rules = launch_remappings("/unused", cameras, "/cam_f/image_raw,/cam_l/image_raw/compressed")
    suffix = "/compressed" if compressed else ""
    assert subscribed_topic(rules, compressed, "front/image") == "/cam_f/image_raw" + suffix
    assert subscribed_topic(rules, compressed, "left/image") == "/cam_l/image_raw" + suffix
    assert (
        subscribed_topic(rules, compressed, "image") == "/image" + suffix
    )  # no single-camera rule


def test_launch_cameras_without_topics_keep_the_node_names() -> None:
    assert launch_remappings("/cam/image", "front,rear") == []
    assert subscribed_topic([], False, "rear/image") == "/rear/image"


def test_launch_refuses_a_topic_count_that_does_not_match() -> None:
    with pytest.raises(ValueError, match="2 topics for 3 cameras"):
        launch_remappings("", "a,b,c", "/x,/y")


# ------------------------------------------------------------------ managed:=true (lifecycle)


def _calls_in(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
    ]


def test_launch_managed_starts_the_lifecycle_executable() -> None:
    """managed:=true builds launch_ros's LifecycleNode (it needs name and namespace) on the
    fed_lifecycle_node console script, with the same parameters and remappings as the plain
    node; managed is declared, default false."""
    tree = ast.parse(LAUNCH.read_text())
    consts = {
        t.id: ast.literal_eval(s.value)
        for s in tree.body
        if isinstance(s, ast.Assign)
        for t in s.targets
        if isinstance(t, ast.Name) and isinstance(s.value, ast.Constant)
    }
    node_fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_node")
    (managed,) = _calls_in(node_fn, "LifecycleNode")
    (plain,) = _calls_in(node_fn, "Node")
    for call in (managed, plain):
        kwargs = {kw.arg: kw.value for kw in call.keywords}
        assert ast.literal_eval(kwargs["name"]) == "fed_node"
        assert ast.unparse(kwargs[None]) == "options"  # the same **options for both
    options = next(
        c
        for c in _calls_in(node_fn, "dict")
        if {"namespace", "remappings"} <= {k.arg for k in c.keywords}
    )
    assert {"namespace", "parameters", "remappings"} <= {k.arg for k in options.keywords}
    executable = {kw.arg: kw.value for kw in managed.keywords}["executable"]
    assert consts[executable.id] == "fed_lifecycle_node"
    setup = (LAUNCH.parents[1] / "setup.py").read_text()
    assert '"fed_lifecycle_node = ros2_fed.lifecycle_node:main"' in setup
    declared = {
        ast.literal_eval(c.args[0]): {k.arg: k.value for k in c.keywords}
        for c in _calls_in(tree, "DeclareLaunchArgument")
    }
    assert ast.literal_eval(declared["managed"]["default_value"]) == "false"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("1", True), ("false", False), ("", False), ("no", False)],
)
def test_launch_managed_argument_values(text: str, expected: bool) -> None:
    tree = ast.parse(LAUNCH.read_text())
    helper = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "is_true")
    namespace: dict = {}
    exec(compile(ast.Module(body=[helper], type_ignores=[]), str(LAUNCH), "exec"), namespace)
    assert namespace["is_true"](text) is expected


def test_launch_remaps_camera_info_next_to_the_image() -> None:
    """camera_info comes from the camera's namespace, as drivers publish it."""
    rules = launch_remappings("/cam/image_raw/compressed")
    assert subscribed_topic(rules, False, "camera_info") == "/cam/camera_info"
    rules = launch_remappings("/unused", "front,left", "/cam_f/image_raw,/cam_l/x/image")
    assert subscribed_topic(rules, False, "front/camera_info") == "/cam_f/camera_info"
    assert subscribed_topic(rules, False, "left/camera_info") == "/cam_l/x/camera_info"
