"""Run ``fed_node`` in its own process with a :class:`FakeEngine` (tests and benchmarks only).

Why a separate script: the production entry point (``fed_node`` / ``ros2_fed.node:main``) has
no way to load test code from a parameter; tests inject the engine through ``main``'s
``engine_factory`` argument here instead. Everything after the options goes to rclpy, e.g.

    python tests/node_harness.py --delay 0.05 --shape 64x96 [--batch 3] [--lifecycle] \\
        --ros-args -r __ns:=/t1 -p diagnostics.period:=0.2

``--lifecycle`` runs the managed node (``fed_lifecycle_node``) instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_engine import make
from ros2_fed import lifecycle_node
from ros2_fed import node as fed_node


def main(argv: list[str]) -> int:
    delay, shape, batch = 0.0, None, 1
    rest = list(argv)
    managed = "--lifecycle" in rest[:1]
    rest = rest[1:] if managed else rest
    while rest[:1] in (["--delay"], ["--shape"], ["--batch"]):
        if rest[0] == "--delay":
            delay = float(rest[1])
        elif rest[0] == "--batch":
            batch = int(rest[1])
        else:
            h, w = rest[1].split("x")
            shape = (int(h), int(w))
        rest = rest[2:]
    entry = lifecycle_node.main if managed else fed_node.main
    return entry(args=["node_harness"] + rest, engine_factory=lambda: make(delay, shape, batch))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
