"""fed_lifecycle_node driven through the real lifecycle services from another process (``ros``).

The pytest process is the supervisor (``lifecycle_msgs/srv/ChangeState`` and ``GetState``
clients, as ``ros2 lifecycle set`` and Nav2's lifecycle manager call them), the camera and the
consumer; the node runs the default model as a real ONNX engine (or a missing one). Frames
carry increasing frame ids, so "nothing published while inactive" is exact: no output may
carry the id of a frame sent after the deactivate transition returned.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from test_node_ros import (  # noqa: E402
    RUN,
    Client,
    NodeProcess,
    diag_values,
    image_msg,
    ros_environment,
    wait_until,
)

pytestmark = pytest.mark.ros

LIFECYCLE_NODE = [sys.executable, "-m", "ros2_fed.lifecycle_node"]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    import os

    environment = ros_environment()
    saved = {k: os.environ.get(k) for k in environment}
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        os.environ[key] = environment[key]
    yield environment
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def client(env: dict[str, str]) -> Client:
    c = Client()
    c.subscribe("/diagnostics", DiagnosticArray)
    yield c
    c.close()


@pytest.fixture(scope="module")
def onnx_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model as an ONNX engine at 64x128 (exporting needs torch; this process has
    it, the node process never loads it)."""
    from ros2_fed.engine.cli_export import main as fed_export
    from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("engine") / "model.onnx"
    args = ["--backbone", str(repo / "models" / DEFAULT_BACKBONE)]
    args += ["--fed", str(repo / "models" / DEFAULT_FED), "--height", "64", "--width", "128"]
    assert fed_export(args + ["--out", str(out), "--quiet"]) == 0
    return out


class Supervisor:
    """ChangeState / GetState clients for one node, called as a lifecycle manager does."""

    def __init__(self, client: Client, node: str) -> None:
        self.client = client
        self.change = client.node.create_client(ChangeState, f"{node}/change_state")
        self.get = client.node.create_client(GetState, f"{node}/get_state")
        assert self.change.wait_for_service(timeout_sec=30.0), node
        assert self.get.wait_for_service(timeout_sec=30.0), node

    def _call(self, service: Any, request: Any, timeout: float = 60.0) -> Any:
        future = service.call_async(request)
        wait_until(future.done, timeout, f"{service.srv_name} response")
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, label: str) -> tuple[bool, float]:
        """(success, seconds the transition took, request to response)."""
        t0 = time.monotonic()
        result = self._call(self.change, ChangeState.Request(transition=Transition(label=label)))
        return result.success, time.monotonic() - t0


def lifecycle_status(client: Client, namespace: str) -> Optional[Any]:
    """The newest pipeline status of the node in ``namespace``."""
    name = f"{namespace.lstrip('/')}/fed_node: pipeline"
    found = [s for _, arr in client.messages("/diagnostics") for s in arr.status if s.name == name]
    return found[-1] if found else None


def wait_lifecycle(client: Client, namespace: str, value: str) -> Any:
    def check() -> Optional[Any]:
        status = lifecycle_status(client, namespace)
        return status if status and diag_values(status).get("lifecycle") == value else None

    return wait_until(check, 15, f"/diagnostics lifecycle={value}")


class Camera:
    """Publishes 64x128 frames at ``rate`` Hz with frame ids cam_1, cam_2, ... in a thread."""

    def __init__(self, client: Client, topic: str, rate: float = 20.0) -> None:
        self.pub = client.publisher(topic, Image)
        self.sent = 0
        self._rate = rate
        self._stop = threading.Event()
        self._frame = np.random.default_rng(5).integers(0, 256, (64, 128, 3), dtype=np.uint8)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0 / self._rate):
            msg = image_msg(self._frame, "rgb8")
            self.sent += 1
            msg.header.frame_id = f"cam_{self.sent}"
            self.pub.publish(msg)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def output_ids(client: Client, topic: str) -> list[int]:
    return [int(m.header.frame_id.split("_")[1]) for _, m in client.messages(topic)]


def test_transitions_under_a_running_camera(
    env: dict[str, str], client: Client, onnx_engine: Path
) -> None:
    """configure loads the engine (nothing subscribed yet), activate subscribes once and
    publishes, deactivate unsubscribes (0 subscriptions on the camera topic), publishes nothing
    more and keeps the engine, re-activate is instant with 1 subscription, cleanup and shutdown
    end the process with code 0; /diagnostics follows every state."""
    namespace = f"/{RUN}_lifecycle"
    proc = NodeProcess(
        env,
        namespace,
        node=LIFECYCLE_NODE,
        params={"engine_path": str(onnx_engine), "diagnostics.period": 0.25},
    )
    camera: Optional[Camera] = None
    try:
        wait_until(lambda: proc.count("waiting for configure") or not proc.alive(), 60, "start")
        boss = Supervisor(client, f"{namespace}/fed_node")
        assert boss.state() == "unconfigured"
        wait_lifecycle(client, namespace, "unconfigured")
        topic = f"{namespace}/fed_node/segmentation"
        seg = client.subscribe(topic, Image)
        camera = Camera(client, f"{namespace}/image")

        ok, configure_s = boss.transition("configure")
        assert ok and boss.state() == "inactive", proc.output
        wait_lifecycle(client, namespace, "inactive")
        assert camera.pub.get_subscription_count() == 0  # configured, not yet listening
        assert proc.count("configured: engine loaded") == 1

        ok, activate_s = boss.transition("activate")
        assert ok and boss.state() == "active"
        wait_until(lambda: camera.pub.get_subscription_count() == 1, 10, "the camera subscription")
        wait_until(lambda: seg.get_publisher_count() > 0, 30, "segmentation publisher")
        wait_until(lambda: len(output_ids(client, topic)) >= 5, 30, "outputs while active")
        assert diag_values(wait_lifecycle(client, namespace, "active"))["state"] == "ready"

        ok, _ = boss.transition("deactivate")
        last_sent = camera.sent  # every frame after this one was sent to an inactive node
        assert ok and boss.state() == "inactive"
        # the node's subscription to the camera is gone (not merely ignored), seen from the
        # camera's publisher in this process
        wait_until(
            lambda: camera.pub.get_subscription_count() == 0,
            10,
            "no camera subscription after deactivate",
        )
        wait_until(lambda: camera.sent >= last_sent + 20, 10, "frames sent while inactive")
        time.sleep(0.5)  # anything the node still published would have arrived by now
        late = [i for i in output_ids(client, topic) if i > last_sent]
        assert not late, f"published while inactive: frames {late[:10]}"

        ok, reactivate_s = boss.transition("activate")
        resumed_from = camera.sent
        assert ok and boss.state() == "active"
        wait_until(
            lambda: any(i > resumed_from for i in output_ids(client, topic)),
            15,
            "outputs after re-activate",
        )
        assert proc.count("configured: engine loaded") == 1  # the engine was not loaded again
        # exactly one subscription again (a deactivate that kept the old one would leave two)
        wait_until(lambda: camera.pub.get_subscription_count() >= 1, 10, "re-subscribed")
        time.sleep(0.5)  # a second subscription would be discovered by now
        assert camera.pub.get_subscription_count() == 1
        assert reactivate_s < max(0.5, configure_s / 2), (configure_s, reactivate_s)
        print(
            f"\nlifecycle with an ONNX engine at 64x128: configure {configure_s * 1000:.0f} ms, "
            f"activate {activate_s * 1000:.0f} ms, re-activate {reactivate_s * 1000:.0f} ms "
            "(request to response, between processes)"
        )

        assert boss.transition("deactivate")[0] and boss.transition("cleanup")[0]
        assert boss.state() == "unconfigured"
        wait_lifecycle(client, namespace, "unconfigured")
        assert proc.count("cleaned up: engine released") == 1
        assert boss.transition("shutdown")[0]
        assert proc.proc.wait(timeout=20) == 0, proc.output[-3000:]
    finally:
        if camera is not None:
            camera.stop()
        proc.stop()
    assert "Traceback" not in proc.output, proc.output


def test_configure_fails_on_a_missing_engine(
    env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """A configure that cannot open the engine: the transition fails, the node stays
    unconfigured and alive, the reason is in the log and on /diagnostics (ERROR); shutdown from
    unconfigured exits 0."""
    namespace = f"/{RUN}_lifecycle_missing"
    missing = str(tmp_path / "nope" / "model.onnx")
    proc = NodeProcess(
        env,
        namespace,
        node=LIFECYCLE_NODE,
        params={"engine_path": missing, "diagnostics.period": 0.25},
    )
    try:
        wait_until(lambda: proc.count("waiting for configure") or not proc.alive(), 60, "start")
        boss = Supervisor(client, f"{namespace}/fed_node")
        ok, _ = boss.transition("configure")
        assert not ok
        assert boss.state() == "unconfigured" and proc.alive()
        failed = [line for line in proc.lines if "configure failed" in line]
        assert len(failed) == 1 and missing in failed[0] and "not found" in failed[0], proc.output
        status = wait_until(
            lambda: (s := lifecycle_status(client, namespace)) and s.level == b"\x02" and s,
            15,
            "ERROR status",
        )
        assert missing in status.message and diag_values(status)["lifecycle"] == "unconfigured"
        assert boss.transition("shutdown")[0]
        assert proc.proc.wait(timeout=20) == 0, proc.output[-3000:]
    finally:
        proc.stop()
    assert "Traceback" not in proc.output, proc.output


def test_bad_parameters_stop_the_lifecycle_node_at_start(env: dict[str, str]) -> None:
    """Unusable parameter values are one FATAL line and exit 1 before any transition."""
    cmd = LIFECYCLE_NODE + ["--ros-args", "-r", f"__ns:=/{RUN}_lc_bad", "-p", "model.height:=0"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    fatal = [line for line in (out.stdout + out.stderr).splitlines() if "FATAL" in line]
    assert out.returncode == 1 and len(fatal) == 1 and "model.height" in fatal[0], out


def test_a_stop_signal_while_active_exits_cleanly(env: dict[str, str], client: Client) -> None:
    """SIGINT to an active managed node (as launch stops it): exit code 0, no traceback."""
    namespace = f"/{RUN}_lifecycle_signal"
    harness = Path(__file__).resolve().parent / "node_harness.py"
    proc = NodeProcess(env, namespace, node=[sys.executable, str(harness), "--lifecycle"])
    try:
        wait_until(lambda: proc.count("waiting for configure") or not proc.alive(), 60, "start")
        boss = Supervisor(client, f"{namespace}/fed_node")
        assert boss.transition("configure")[0] and boss.transition("activate")[0]
        assert boss.state() == "active"
    finally:
        code = proc.stop()
    assert code == 0 and "Traceback" not in proc.output, proc.output


def test_help_names_the_lifecycle_executable(capsys: pytest.CaptureFixture[str]) -> None:
    from ros2_fed import lifecycle_node

    assert lifecycle_node.main(["fed_lifecycle_node", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ros2 run ros2_fed fed_lifecycle_node")
    assert "managed (lifecycle) node" in out and "strict_parameters" in out
