"""Fleet replay: bags per minute with 1 and 2 workers, process pool against Ray, on this machine.

Writes ``--bags`` synthroad drives (``--frames`` frames of ``--size``, seeds 0..N-1) under
``--work``, builds the engine once (a warm-up run on one bag), then runs ``fed_fleet_eval`` on
all of them for every (executor, workers) pair, ``--repeats`` times in alternating order, each
run from scratch (``--redo``), with the embedded default model and one intra-op thread per
worker. Per run, from its report.json:

- bags/min: bags / the executor's time (worker or Ray start, engine opening, every bag;
  discovery and the report excluded, they are the same for both executors);
- frames/s: frames / the same time;
- not evaluating s: the executor's time minus the time its workers spent inside bags (summed
  over bags / workers): starting worker processes or Ray and its actors, handing bags out,
  workers waiting for the last bag;
- overhead per bag ms: median over bags of (round trip seen by the driver - time inside the
  worker): handing a bag out and its result (report, PNGs, scorer state) back. The median,
  because each worker's first round trip also holds its start;
- CPU ms per frame: the workers' CPU time inside bags per frame (load on the machine from other
  work stretches wall time, much less CPU time).

``--fleet-args "--histograms --mosaic-frames 0"`` passes options to every run (``--no-gt``:
the cost without ground truth, as on an unlabelled fleet). The machine's load average is printed
with the table: the figures mean little without it.

The table shows the best repeat of each pair; then the 2-worker / 1-worker ratios and Ray /
local. On a 2-core machine shared with other work, 2 workers cannot give 2x; the ratio is what
this machine gives.

    python benchmarks/fleet.py                                 # 8 bags x 20 frames 256x512
    python benchmarks/fleet.py --bags 4 --frames 10 --size 128x256 --repeats 1
    python benchmarks/fleet.py --executors local --workers 1   # one pair only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_name  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def write_bags(folder: Path, bags: int, frames: int, size: tuple[int, int]) -> None:
    from training.synthroad_bag import write_synthroad_bag

    for seed in range(bags):
        path = folder / f"drive_{seed:03d}"
        if not path.exists():
            write_synthroad_bag(path, frames=frames, size=size, seed=seed)


def fleet_eval(inputs: list[str], out: Path, *extra: str) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    argv = [sys.executable, "-m", "ros2_fed.eval.fleet.cli", *inputs, "--out", str(out)]
    done = subprocess.run(
        argv + ["--quiet", "--redo", *extra], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"fed_fleet_eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text())


def measure(report: dict[str, Any]) -> dict[str, float]:
    """The figures of one run (see the module docstring)."""
    rows, timing = report["rows"], report["timing"]
    seconds, workers = float(timing["executor_s"]), int(report["executor"]["workers"])
    busy = sum(float(r["wall_s"]) for r in rows) / workers
    frames = int(timing["frames_now"])
    overhead = [float(r["round_trip_s"]) - float(r["wall_s"]) for r in rows]
    return {
        "wall_s": float(timing["wall_s"]),
        "executor_s": seconds,
        "bags_per_min": 60.0 * len(rows) / seconds,
        "frames_per_s": float(timing["frames_now"]) / seconds,
        "idle_s": max(0.0, seconds - busy),
        "overhead_ms": 1e3 * float(np.median(overhead)),
        "cpu_ms_per_frame": 1e3 * sum(float(r["cpu_s"]) for r in rows) / max(1, frames),
    }


def run_pairs(args: argparse.Namespace, bags: Path) -> dict[tuple[str, int], dict[str, float]]:
    """Every (executor, workers) pair, ``repeats`` times alternating; the best run of each."""
    pairs = [(e, w) for e in args.executors.split(",") for w in args.workers]
    best: dict[tuple[str, int], dict[str, float]] = {}
    for repeat in range(args.repeats):
        for executor, workers in pairs if repeat % 2 == 0 else pairs[::-1]:
            out = Path(args.work) / f"out_{executor}_{workers}"
            extra = ["--executor", executor, "--workers", str(workers), *args.fleet_args.split()]
            figures = measure(fleet_eval([str(bags)], out, *extra))
            key = (executor, workers)
            if key not in best or figures["executor_s"] < best[key]["executor_s"]:
                best[key] = figures
            print(
                f"# {executor} x{workers} run {repeat + 1}: "
                f"{figures['bags_per_min']:.1f} bags/min",
                flush=True,
            )
    return best


def print_table(args: argparse.Namespace, best: dict[tuple[str, int], dict[str, float]]) -> None:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"\nfed_fleet_eval {args.fleet_args} on {args.bags} bags x {args.frames} frames "
        f"{args.size}, default model (onnxruntime, 1 thread per worker); {os.cpu_count()} CPUs "
        f"({cpu_name()}), load average {load} (1, 5, 15 min); best of {args.repeats}\n"
    )
    print(
        "| executor | workers | bags/min | frames/s | not evaluating s | overhead per bag ms "
        "| CPU ms per frame | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (executor, workers), f in sorted(best.items()):
        print(
            f"| {executor} | {workers} | {f['bags_per_min']:.1f} | {f['frames_per_s']:.1f} | "
            f"{f['idle_s']:.1f} | {f['overhead_ms']:.0f} | {f['cpu_ms_per_frame']:.0f} | "
            f"{f['wall_s']:.1f} |"
        )
    print()
    for executor in args.executors.split(","):
        one, two = best.get((executor, 1)), best.get((executor, 2))
        if one and two:
            ratio = two["bags_per_min"] / one["bags_per_min"]
            print(f"{executor}: 2 workers / 1 worker = {ratio:.2f}x bags/min")
    for workers in args.workers:
        local, ray = best.get(("local", workers)), best.get(("ray", workers))
        if local and ray:
            ratio = ray["bags_per_min"] / local["bags_per_min"]
            print(f"{workers} worker(s): ray / local = {ratio:.2f}x bags/min")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bags", type=int, default=8)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--size", default="256x512")
    p.add_argument("--executors", default="local,ray", help="comma-separated: local, ray")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", default=None, help="folder for the bags and outputs (default: temp)")
    p.add_argument("--fleet-args", default="", help="more fed_fleet_eval options for every run")
    args = p.parse_args(argv)
    args.work = args.work or tempfile.mkdtemp(prefix="fleet_bench_")
    bags = Path(args.work) / "bags"
    t0 = time.monotonic()
    write_bags(bags, args.bags, args.frames, parse_size(args.size))
    print(f"# {args.bags} bags in {bags} ({time.monotonic() - t0:.0f} s)", flush=True)
    first = [str(next(iter(sorted(bags.iterdir()))))]
    fleet_eval(first, Path(args.work) / "warmup", "--workers", "1")  # builds the engine cache
    print_table(args, run_pairs(args, bags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
