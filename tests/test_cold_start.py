"""First starts of the real fed_node on an empty engine cache (``ros`` and ``slow`` markers).

The shipped parameter file (config/fed.yaml, 512x1024) starts twice with one camera and twice
with three (``cameras:=[front, left, rear]``, a batch-3 engine), each time with its own empty
``ROS2_FED_CACHE``: every start exports the engine, checks it against the float32 eager
detector (ros2_fed/engine/verify.py) and must reach "ready". A check that refuses the node's
own fresh engine (as a rule on the single largest confidence difference did, on some frames)
fails here. Each start costs one 512x1024 export and check (about 15-60 s on 2 cores);
``python benchmarks/cold_starts.py`` runs many in a row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from test_node_ros import RUN, NodeProcess, ros_environment

pytestmark = [pytest.mark.ros, pytest.mark.slow]

STARTS = 2  # per camera setting
READY_TIMEOUT_S = 600.0  # a loaded 2-core machine; a refusal ends the process at once
SETTINGS = {"one camera": [], "three cameras": ["front", "left", "rear"]}


@pytest.mark.parametrize("start", range(STARTS))
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_a_cold_start_of_the_shipped_config_reaches_ready(
    setting: str, start: int, tmp_path: Path
) -> None:
    cameras = SETTINGS[setting]
    env = ros_environment()
    env.pop("ROS2_FED_VERIFY", None)  # the check runs, as on a vehicle
    env["ROS2_FED_CACHE"] = str(tmp_path / "cache")  # empty: this start builds the engine
    proc = NodeProcess(
        env,
        f"/{RUN}_cold{len(cameras)}_{start}",
        node=[sys.executable, "-m", "ros2_fed.node"],
        params={"cameras": cameras} if cameras else None,
    )
    try:
        proc.wait_ready(timeout=READY_TIMEOUT_S)
        assert proc.count("engine cache miss") == 1, proc.output  # built now, not reused
        assert proc.count("verified against the float32 eager detector") == 1, proc.output
        ready = next(line for line in proc.lines if "ready:" in line)
        assert "input (512, 1024)" in ready, ready  # the shipped size, not a smaller one
        if cameras:
            assert "batch 3" in ready, ready
        else:
            assert ", batch " not in ready, ready
        assert not any("Traceback" in line or "FATAL" in line for line in proc.lines), proc.output
    finally:
        proc.stop()  # exit codes are test_node_signals' concern (a loaded machine may need a kill)
    entries = list((tmp_path / "cache" / "onnxruntime").iterdir())
    batch = len(cameras) or 1
    assert [e.name.split("-")[:2] for e in entries] == [["512x1024", f"b{batch}"]], entries
