"""fed_node footprint at the vehicle's camera size: resident memory and time to ready, with
ONNX Runtime's memory pattern off (the default) and on, plus the engine's frame time both ways.

Per round, alternating so that load from anything else on the machine hits both alike:
1. fed_node (default model, default 512x1024, the cached ONNX engine) is started with
   ``ROS2_FED_ORT_MEMORY_PATTERN`` 0 / 1; the wall time from start to its "ready:" line, the
   load time it logs, and its RSS / anonymous memory (``/proc/PID/smaps_rollup``) one second
   after ready (the node's warm-up frames have run by then) are taken;
2. this process times ``infer`` on two open engines, one per setting, frame after frame
   alternately.

    python benchmarks/footprint.py                  # 3 rounds, 10 frames a round
    python benchmarks/footprint.py --rounds 1 --frames 4

Prints a markdown table (medians over rounds) and the goal check (RSS <= 300 MiB, ready <= 2 s).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PATTERN_ENV = "ROS2_FED_ORT_MEMORY_PATTERN"
SETTINGS = {"memory pattern off (default)": "0", "memory pattern on": "1"}
GOAL_RSS_MIB, GOAL_READY_S = 300.0, 2.0


def smaps_mib(pid: int) -> dict[str, float]:
    """Rss and Anonymous of a process, MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Anonymous"):
            out[key] = float(value.split()[0]) / 1024
    return out


def node_footprint(pattern: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """Start fed_node with the memory pattern setting; ready wall time, logged load time, RSS."""
    env = dict(os.environ, **{PATTERN_ENV: pattern, "ROS_DOMAIN_ID": str(90 + os.getpid() % 9)})
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ros2_fed.node"],
        env=env,
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = ""
        for line in proc.stdout:  # type: ignore[union-attr]
            if "ready:" in line:
                ready = line
                break
            if time.monotonic() - t0 > timeout_s:
                break
        if not ready:
            proc.wait(timeout=20)
            raise SystemExit(f"fed_node did not get ready (exit {proc.returncode})")
        wall = time.monotonic() - t0
        time.sleep(1.0)
        memory = smaps_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    loaded = re.search(r"loaded in ([0-9.]+) s", ready)
    engine = re.search(r"ready: engine (\S+)", ready)
    return {
        "engine": engine.group(1) if engine else "",
        "wall_s": wall,
        "load_s": float(loaded.group(1)) if loaded else float("nan"),
        "rss": memory["Rss"],
        "anon": memory["Anonymous"],
    }


def open_engines(path: str) -> dict[str, Any]:
    """The engine file fed_node opened, opened here once per setting."""
    from ros2_fed.engine.onnx_engine import OnnxEngine

    engines = {}
    for name, pattern in SETTINGS.items():
        os.environ[PATTERN_ENV] = pattern
        engines[name] = OnnxEngine(path)
    os.environ.pop(PATTERN_ENV, None)
    return engines


def frame_times(engines: dict[str, Any], frames: int) -> dict[str, list[float]]:
    """Seconds per infer, the engines taking turns frame by frame."""
    frame = np.random.default_rng(0).integers(0, 256, (512, 1024, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(frames):
        for name, engine in engines.items():
            t0 = time.perf_counter()
            engine.infer(frame)
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=10, help="engine frames per round")
    args = parser.parse_args(argv)
    engines: dict[str, Any] = {}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    # An unmeasured first start: on an empty engine cache it builds the engine (and loads torch
    # to export it), which is not the footprint of a node that opens a cached engine.
    node_footprint("")
    for round_ in range(args.rounds):
        order = list(SETTINGS.items())[:: 1 if round_ % 2 == 0 else -1]
        for name, pattern in order:
            runs[name].append(node_footprint(pattern))
        engines = engines or open_engines(str(runs[name][-1]["engine"]))
        for name, values in frame_times(engines, args.frames).items():
            times[name] += values
    print(
        "| ONNX Runtime | node RSS (MiB) | anonymous (MiB) | ready, wall (s) | load (s) "
        "| engine p50 (ms) |"
    )
    print("|---|---|---|---|---|---|")
    medians = {}
    for name in SETTINGS:
        keys = ("wall_s", "load_s", "rss", "anon")
        m = {k: statistics.median(float(r[k]) for r in runs[name]) for k in keys}
        m["ms"] = statistics.median(times[name]) * 1e3
        medians[name] = m
        print(
            f"| {name} | {m['rss']:.0f} | {m['anon']:.0f} | {m['wall_s']:.2f} | "
            f"{m['load_s']:.2f} | {m['ms']:.0f} |"
        )
    off, on = medians.values()
    print(
        f"\nframe time off / on: {off['ms'] / on['ms']:.2f}; RSS goal <= {GOAL_RSS_MIB:.0f} MiB: "
        f"{'met' if off['rss'] <= GOAL_RSS_MIB else 'NOT met'}; ready (logged load) goal <= "
        f"{GOAL_READY_S:.0f} s: {'met' if off['load_s'] <= GOAL_READY_S else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
