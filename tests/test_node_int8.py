"""fed_node builds and caches an int8 engine itself: ``precision:=int8 calibration_data:=DIR``
(``ros`` + ``slow``: the first start exports, quantises and verifies the engine in the node
process).

The cache goes to a fresh ``ROS2_FED_CACHE``; the engine the node reports ready with must be the
int8 one (its sidecar says so, with the calibration images' fingerprint), its outputs reach a
subscriber in another process, and a second start with the same folder reuses it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
cv2 = pytest.importorskip("cv2")

from ros2_fed.engine.int8 import calibration_set  # noqa: E402
from test_node_ros import (  # noqa: E402
    RUN,
    Client,
    NodeProcess,
    image_msg,
    ros_environment,
    wait_until,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _calibration_folder(root: Path, count: int = 6) -> Path:
    """Road-like frames: a grey lower half (road), a brighter upper half, some noise."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(count):
        frame = np.zeros((64, 128, 3), np.uint8)
        frame[:32] = (150, 170, 200)
        frame[32:] = (90, 90, 95)
        noise = rng.integers(-20, 20, frame.shape)
        cv2.imwrite(str(root / f"{i:03d}.png"), np.clip(frame + noise, 0, 255).astype(np.uint8))
    return root


def _ready_engine(proc: NodeProcess) -> Path:
    proc.wait_ready(timeout=600)
    ready = next(line for line in proc.lines if "ready:" in line)
    return Path(ready.split("ready: engine ", 1)[1].split(" (", 1)[0])


def test_node_builds_and_reuses_an_int8_engine(tmp_path: Path) -> None:
    env = ros_environment()
    env["ROS2_FED_CACHE"] = str(tmp_path / "cache")
    env["OMP_NUM_THREADS"] = "1"
    calib = _calibration_folder(tmp_path / "calib")
    params = {
        "precision": "int8",
        "calibration_data": str(calib),
        "model.height": 64,
        "model.width": 128,
        "diagnostics.period": 0.25,
    }
    node = [sys.executable, "-m", "ros2_fed.node"]
    proc = NodeProcess(env, f"/{RUN}_int8", node=node, params=params)
    client = None
    try:
        engine = _ready_engine(proc)
        assert engine.is_file() and str(tmp_path / "cache") in str(engine), proc.output
        meta = json.loads(Path(str(engine) + ".json").read_text())
        assert meta["precision"] == "int8" and meta["fed_dtype"] == "float32"
        assert meta["calibration_fingerprint"] == calibration_set(calib).fingerprint

        import os

        os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ.setdefault(
            "FASTDDS_DEFAULT_PROFILES_FILE", env["FASTDDS_DEFAULT_PROFILES_FILE"]
        )
        client = Client()
        from sensor_msgs.msg import Image

        topic = f"/{RUN}_int8/fed_node/segmentation"
        sub = client.subscribe(topic, Image)
        pub = client.publisher(f"/{RUN}_int8/image", Image)
        wait_until(lambda: sub.get_publisher_count() and pub.get_subscription_count(), 30, "match")
        frame = cv2.imread(str(calib / "000.png"))[:, :, ::-1].copy()

        def sent_and_seen() -> bool:
            pub.publish(image_msg(frame, "rgb8"))
            return bool(client.messages(topic))

        wait_until(sent_and_seen, 30, "int8 segmentation output", interval=0.2)
    finally:
        if client is not None:
            client.close()
        code = proc.stop()
    assert code == 0, proc.output[-3000:]

    again = NodeProcess(env, f"/{RUN}_int8_again", node=node, params=params)
    try:
        assert _ready_engine(again) == engine  # the cached int8 engine, not a second build
    finally:
        assert again.stop() == 0, again.output[-3000:]
