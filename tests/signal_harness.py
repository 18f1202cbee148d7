"""``fed_node`` with a FakeEngine whose loading takes a while and says when it starts and ends.

Why: the signal tests (tests/test_node_signals.py) must hit each start-up stage on purpose:
this harness prints ``harness: loading engine`` / ``harness: engine loaded`` (stderr, flushed)
around a ``--load-delay`` sleep; warm-up then takes ``warmup_runs`` x ``--delay``.

    python tests/signal_harness.py --load-delay 3 --delay 0.5 \
        --ros-args -r __ns:=/s1 -p warmup_runs:=2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_engine import make
from ros2_fed import node as fed_node


def main(argv: list[str]) -> int:
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("--load-delay", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0)
    opts = parser.parse_args(argv[:split])

    def factory():
        print("harness: loading engine", file=sys.stderr, flush=True)
        time.sleep(opts.load_delay)
        engine = make(opts.delay)
        print("harness: engine loaded", file=sys.stderr, flush=True)
        return engine

    return fed_node.main(args=["signal_harness"] + argv[split:], engine_factory=factory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
