"""Scene health between real processes (``ros`` marker): a fed_node with three cameras, one of
them blocked (black frames).

The node runs a batch-3 FakeEngine (tests/node_harness.py, confidence = G / 255) with
``cameras:=[front, left, rear]``; the pytest process is the three cameras and the consumer.
Checked: ``/diagnostics`` carries one scene status per camera; the blocked camera's goes ERROR
("perception unusable: black frame ...") while the others stay OK; the blocked camera's
``~/alerts`` carries its scene status after its alert status.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from test_node_ros import (
    HARNESS,
    RUN,
    Client,
    NodeProcess,
    Stamp,
    client,
    env,
    image_msg,
    wait_until,
)

pytestmark = pytest.mark.ros

CAMERAS = ("front", "left", "rear")
BLOCKED = "left"
__all__ = ["client", "env"]  # fixtures used here by name


@pytest.fixture(scope="module")
def node(env: dict[str, str]) -> NodeProcess:
    params = {
        "cameras": list(CAMERAS),
        "diagnostics.period": 0.2,
        "diagnostics.input_timeout": 0.0,
        "diagnostics.error_log_throttle": 60.0,
    }
    harness = [sys.executable, str(HARNESS), "--delay", "0.02", "--batch", "3"]
    proc = NodeProcess(env, f"/{RUN}_scene", params=params, node=harness)
    try:
        proc.wait_ready()
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, proc.output[-3000:]


def _frame(camera: str, round_: int) -> np.ndarray:
    """A new confident textured frame every round (G high: confidence > 0.78), black for the
    blocked camera."""
    if camera == BLOCKED:
        return np.zeros((48, 64, 3), np.uint8)
    rng = np.random.default_rng([CAMERAS.index(camera), round_])
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frame[..., 1] = rng.integers(200, 256, (48, 64), dtype=np.uint8)
    return frame


def _scene_statuses(client: Client, proc: NodeProcess) -> dict[str, Any]:
    """The newest scene status of every camera on /diagnostics, by camera."""
    prefix = f"{proc.namespace.lstrip('/')}/fed_node: "
    latest = {}
    for _, arr in client.messages("/diagnostics"):
        for status in arr.status:
            for camera in CAMERAS:
                if status.name == f"{prefix}{camera} scene":
                    latest[camera] = status
    return latest


def test_one_blocked_camera_errors_and_the_others_stay_ok(
    node: NodeProcess, client: Client
) -> None:
    alerts = client.subscribe(f"{node.namespace}/fed_node/{BLOCKED}/alerts", DiagnosticArray)
    pubs = {cam: client.publisher(f"{node.namespace}/{cam}/image", Image) for cam in CAMERAS}
    wait_until(
        lambda: (
            all(p.get_subscription_count() > 0 for p in pubs.values())
            and alerts.get_publisher_count() > 0
        ),
        30,
        "camera subscriptions and the alerts publisher",
    )

    def settled() -> Any:
        """Levels as expected and the blocked camera's fault counted: the uncertain-fraction
        rule may reach ERROR on a black frame a frame before the fault rule does."""
        latest = _scene_statuses(client, node)
        levels = {cam: s.level[0] for cam, s in latest.items()}
        if levels != {"front": 0, "left": 2, "rear": 0}:
            return None
        values = {kv.key: kv.value for kv in latest[BLOCKED].values}
        faulted = values.get("fault") == "black" and int(values.get("fault_frames", 0)) >= 3
        return latest if faulted else None

    sent = [0]

    def send_a_round() -> Any:
        """Every camera's next frame (a new stamp each), then the statuses if settled."""
        for cam in CAMERAS:
            msg = image_msg(_frame(cam, sent[0]), "rgb8")
            Stamp.header(msg, cam)
            pubs[cam].publish(msg)
        sent[0] += 1
        time.sleep(0.1)  # the batch runs (latest frame wins: back-to-back rounds would drop)
        return settled()

    latest = wait_until(send_a_round, 30, "the blocked camera's scene ERROR", interval=0.0)
    assert latest[BLOCKED].message.startswith("perception unusable: black frame")
    values = {kv.key: kv.value for kv in latest[BLOCKED].values}
    assert values["fault"] == "black" and int(values["fault_frames"]) >= 3
    for cam in ("front", "rear"):
        assert latest[cam].message.startswith("ok:"), latest[cam].message
    names = [
        [s.name for s in arr.status]
        for _, arr in client.messages(f"{node.namespace}/fed_node/{BLOCKED}/alerts")
    ]
    assert names and all(n[0].endswith(f"{BLOCKED} alerts") for n in names)
    assert all(n[1].endswith(f"{BLOCKED} scene") for n in names)
