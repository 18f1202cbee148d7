"""The launch file's camera_topic remaps the node input that input_transport selects (issue 15).

launch / launch_ros are not installed here, so the launch file's remapping rules are taken
from its AST (the ``remappings=[...]`` list in ``_node`` and ``camera_base_topic``), evaluated,
and handed to real rclpy as ``-r`` rules: the oracle is ROS's own name resolution, which remaps
each name on its own (a rule for ``image`` leaves ``image/compressed`` where it was).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "fed.launch.py"


def launch_remappings(camera_topic: str) -> list[tuple[str, str]]:
    tree = ast.parse(LAUNCH.read_text())
    helper = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "camera_base_topic")
    namespace: dict = {}
    exec(compile(ast.Module(body=[helper], type_ignores=[]), str(LAUNCH), "exec"), namespace)
    node_fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_node")
    rules = next(k.value for n in ast.walk(node_fn) if isinstance(n, ast.Call)
                 for k in n.keywords if k.arg == "remappings")
    return eval(compile(ast.Expression(rules), str(LAUNCH), "eval"),
                {"camera": namespace["camera_base_topic"](camera_topic)})


def subscribed_topic(rules: list[tuple[str, str]], compressed: bool) -> str:
    args = ["--ros-args"] + [a for src, dst in rules for a in ("-r", f"{src}:={dst}")]
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node("remap_probe", context=context, cli_args=args)
        sub = node.create_subscription(CompressedImage if compressed else Image,
                                       "image/compressed" if compressed else "image", lambda _: None, 1)
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
