"""The embedded default model's fused engine against the backbone-only engine, as fed_node opens
them: milliseconds per frame and their ratio, measured in one run.

Opens (building them on the first run) the cached ONNX Runtime engines for the default model at
each camera size exactly as ``fed_node`` does with empty ``engine_path`` (``ros2_fed.pipeline``),
with the node's CPU options (2 threads, no spinning): the node's default (score ``fed``, FED-C
with its calibrated post-processing) and the backbone alone (score ``none``: labels only, the
same argmax at camera size). Both are timed on synthroad frames in alternation, frame by frame
with the order swapped every frame, after a warm-up, so that other jobs on a shared machine
slow both alike; medians are reported. Besides wall time each frame's process CPU time is
recorded (all threads; ONNX Runtime's threads do not spin, so waiting costs none): on a
machine whose cores other jobs hold, wall time mostly measures how long each operator waits
for a core, and the CPU-time ratio is the closer estimate of the ratio on an idle machine.

Targets: the default engine at most 1.25x the backbone-only engine at 512x1024, and at most
40 ms per frame at 256x512, on 2 CPU cores.

    python benchmarks/default_engine.py --sizes 512x1024,256x512 --runs 30 --json out.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name
from ros2_fed.jsonio import write_json
from ros2_fed.pipeline import ModelSpec, open_engine

TARGET_MS = 40.0  # the default engine at 256x512
TARGET_RATIO = 1.25  # the default engine / the backbone-only engine at 512x1024
RATIO_SIZE = "512x1024"
MS_SIZE = "256x512"
ROWS = {"backbone only": "none", "default": ""}  # row -> the node's `score` parameter


def frames(height: int, width: int, count: int) -> list[np.ndarray]:
    """Synthroad validation frames at the camera size (random pixels when training/ is absent)."""
    try:
        from training.datasets.synthroad import render_indexed

        return [render_indexed(0, "val", i, height, width).image for i in range(count)]
    except ImportError:
        return [
            np.random.default_rng(i).integers(0, 256, (height, width, 3), np.uint8)
            for i in range(count)
        ]


def time_alternating(
    engines: dict[str, Any], images: list[np.ndarray], runs: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall ms, process CPU ms) per frame of each engine, run in turn on the same frame, the
    order swapped each frame."""
    names = list(engines)
    for i in range(warmup):
        for name in names:
            engines[name].infer(images[i % len(images)])
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            cpu_start, start = time.process_time(), time.perf_counter()
            engines[name].infer(images[i % len(images)])
            wall[name].append(1000 * (time.perf_counter() - start))
            cpu[name].append(1000 * (time.process_time() - cpu_start))
    return wall, cpu


def measure_size(size: str, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    height, width = (int(v) for v in size.split("x"))
    engines, described = {}, {}
    for row, score in ROWS.items():
        spec = ModelSpec(
            height=height, width=width, runtime="onnxruntime", threads=threads, score=score
        ).resolved()
        engines[row] = open_engine(spec)
        described[row] = spec.describe()
    times, cpu = time_alternating(engines, frames(height, width, 8), runs, warmup)
    for engine in engines.values():
        close = getattr(engine, "close", None)
        if close:
            close()
    rows = {
        row: {
            "engine": described[row],
            "median_ms": statistics.median(t),
            "p95_ms": float(np.percentile(t, 95)),
            "cpu_median_ms": statistics.median(cpu[row]),
            "times_ms": [round(v, 2) for v in t],
            "cpu_times_ms": [round(v, 2) for v in cpu[row]],
        }
        for row, t in times.items()
    }
    default, alone = rows["default"], rows["backbone only"]
    return {
        "rows": rows,
        "ratio": default["median_ms"] / alone["median_ms"],
        "cpu_ratio": default["cpu_median_ms"] / alone["cpu_median_ms"],
    }


def report(result: dict[str, Any]) -> list[str]:
    lines = []
    for size, figures in result["sizes"].items():
        for row, r in figures["rows"].items():
            lines.append(
                f"{size} {row:13s} median {r['median_ms']:7.1f} ms, p95 {r['p95_ms']:7.1f} ms,"
                f" CPU {r['cpu_median_ms']:7.1f} ms  ({r['engine']})"
            )
        lines.append(
            f"{size} default / backbone only: {figures['ratio']:.3f}x wall, "
            f"{figures['cpu_ratio']:.3f}x CPU time"
        )
    for name, target in result["targets"].items():
        lines.append(
            f"target {name}: {target['value']:.3f} vs {target['limit']}: "
            f"{'met' if target['met'] else 'NOT met'}"
        )
    return lines


def targets(sizes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    if RATIO_SIZE in sizes:
        for key, name in (("ratio", "ratio"), ("cpu_ratio", "CPU-time ratio")):
            value = sizes[RATIO_SIZE][key]
            out[f"{name} at {RATIO_SIZE}"] = {
                "value": value,
                "limit": TARGET_RATIO,
                "met": value <= TARGET_RATIO,
            }
    if MS_SIZE in sizes:
        value = sizes[MS_SIZE]["rows"]["default"]["median_ms"]
        out[f"default ms at {MS_SIZE}"] = {
            "value": value,
            "limit": TARGET_MS,
            "met": value <= TARGET_MS,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes",
        default=f"{RATIO_SIZE},{MS_SIZE}",
        help=f"camera sizes HxW, comma-separated (default {RATIO_SIZE},{MS_SIZE})",
    )
    p.add_argument("--runs", type=int, default=30, help="timed frames per engine (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first (default 5)")
    p.add_argument(
        "--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)"
    )
    p.add_argument("--json", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    sizes = {
        size: measure_size(size, args.threads, args.runs, args.warmup)
        for size in args.sizes.split(",")
    }
    result = {
        "setup": {
            "cpu": cpu_name(),
            "threads": args.threads,
            "runs": args.runs,
            "warmup": args.warmup,
            "order": "alternating frame by frame, order swapped every frame",
            "command": "python benchmarks/default_engine.py " + " ".join(argv or sys.argv[1:]),
        },
        "sizes": sizes,
        "targets": targets(sizes),
    }
    print("\n".join(report(result)))
    if args.json:
        write_json(args.json, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
