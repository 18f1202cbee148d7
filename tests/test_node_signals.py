"""fed_node stops cleanly on SIGINT and SIGTERM at every stage (issue 15; ``ros`` marker).

Before: SIGINT during start-up printed a KeyboardInterrupt traceback (exit -2 / 1), SIGTERM while
the engine loaded an ``RCLError ... context is invalid`` traceback (exit 1), and most shutdowns
logged a spurious ERROR "frame processing failed: ... publisher's context is invalid".
Contract: exit code 0, no traceback, no ERROR or FATAL line, whatever the stage.

Stages are hit on purpose with tests/signal_harness.py (it prints when the engine starts and
ends loading; warm-up takes warmup_runs x --delay). Each case runs FED_SIGNAL_REPEATS times
(default 2; the issue asks for 5: ``FED_SIGNAL_REPEATS=5``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import Image

from test_node_ros import REPO, RUN, Client, client, env, image_msg, wait_until  # noqa: F401  (fixtures, used by name)

pytestmark = pytest.mark.ros

HARNESS = REPO / "tests" / "signal_harness.py"
REPEATS = int(os.environ.get("FED_SIGNAL_REPEATS", "2"))
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
STAGES = ("engine load", "warm-up", "idle", "processing", "shutdown")


class Harness:
    """One signal_harness process; all its output lines (stdout + stderr) collected."""

    def __init__(
        self,
        env: dict[str, str],
        namespace: str,
        *,
        load_delay: float,
        delay: float,
        warmup_runs: int,
    ):
        cmd = [
            sys.executable,
            str(HARNESS),
            "--load-delay",
            str(load_delay),
            "--delay",
            str(delay),
            "--ros-args",
            "-r",
            f"__ns:={namespace}",
            "-p",
            f"warmup_runs:={warmup_runs}",
            "-p",
            "diagnostics.period:=0.2",
        ]
        self.namespace = namespace
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return -999
        finally:
            self._reader.join(timeout=5)


def run_case(
    env: dict[str, str], client: Client, stage: str, sig: signal.Signals, index: int
) -> tuple[int, str]:
    ns = f"/{RUN}_sig_{stage.replace(' ', '_').replace('-', '_')}_{sig.name}_{index}"
    delay = {"warm-up": 1.0, "processing": 0.3, "shutdown": 0.3}.get(stage, 0.0)
    node = Harness(
        env,
        ns,
        load_delay=3.0 if stage == "engine load" else 0.0,
        delay=delay,
        warmup_runs=3 if stage == "warm-up" else 0,
    )
    try:
        if stage == "engine load":
            wait_until(
                lambda: node.saw("harness: loading engine") or node.proc.poll() is not None,
                60,
                "loading",
            )
            time.sleep(1.0)
        elif stage == "warm-up":
            wait_until(
                lambda: node.saw("harness: engine loaded") or node.proc.poll() is not None,
                60,
                "loaded",
            )
            time.sleep(1.5)  # inside the 3 s warm-up
            assert not node.saw("ready:"), "warm-up already over"
        else:
            wait_until(lambda: node.saw("ready:") or node.proc.poll() is not None, 60, "ready")
            if stage in ("processing", "shutdown"):
                pub = client.publisher(f"{ns}/image", Image)
                wait_until(lambda: pub.get_subscription_count() > 0, 30, "subscription")
                frame = image_msg(np.zeros((64, 64, 3), np.uint8), "rgb8")
                for _ in range(
                    15
                ):  # 30 Hz into a 0.3 s engine: the worker is busy when the signal comes
                    pub.publish(frame)
                    time.sleep(1 / 30)
            else:
                time.sleep(0.3)
        assert node.proc.poll() is None, "\n".join(node.lines)
        if (
            stage == "shutdown"
        ):  # a first signal starts the shutdown; the second arrives while it runs
            node.proc.send_signal(signal.SIGINT if sig == signal.SIGTERM else signal.SIGTERM)
            time.sleep(0.05)
        node.proc.send_signal(sig)
    finally:
        code = node.finish()
    return code, "\n".join(node.lines)


@pytest.mark.parametrize("sig_name", sorted(SIGNALS))
@pytest.mark.parametrize("stage", STAGES)
def test_signal_exits_cleanly(
    env: dict[str, str], client: Client, stage: str, sig_name: str
) -> None:
    for index in range(REPEATS):
        code, output = run_case(env, client, stage, SIGNALS[sig_name], index)
        assert code == 0, f"{stage} {sig_name} run {index}: exit {code}\n{output[-3000:]}"
        assert "Traceback" not in output, output[-3000:]
        bad = [line for line in output.splitlines() if "[ERROR]" in line or "[FATAL]" in line]
        assert not bad, bad
