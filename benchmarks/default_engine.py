"""The embedded default model's fused engine, as fed_node opens it: milliseconds per frame.

Opens (building it on the first run) the cached ONNX Runtime engine for the default model at the
given camera size exactly as ``fed_node`` does with empty ``engine_path`` (``ros2_fed.pipeline``),
with the node's CPU options (2 threads, no spinning), and times ``infer`` on synthroad frames.
Target (issue 13): <= 40 ms at 256x512 on 2 CPU cores.

    python benchmarks/default_engine.py --size 256x512 --runs 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ros2_fed.pipeline import ModelSpec, open_engine

TARGET_MS = 40.0


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", default="256x512", help="camera HxW (default 256x512)")
    p.add_argument("--runs", type=int, default=50, help="timed frames (default 50)")
    p.add_argument(
        "--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)"
    )
    args = p.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    spec = ModelSpec(
        height=height, width=width, runtime="onnxruntime", threads=args.threads
    ).resolved()
    engine = open_engine(spec)
    images = frames(height, width, 8)
    for image in images[:3]:
        engine.infer(image)
    times = []
    for i in range(args.runs):
        start = time.perf_counter()
        engine.infer(images[i % len(images)])
        times.append(1000 * (time.perf_counter() - start))
    median = statistics.median(times)
    p95 = float(np.percentile(times, 95))
    print(
        f"default engine ({spec.describe()}), {args.size}, {args.threads} threads: "
        f"median {median:.1f} ms, p95 {p95:.1f} ms over {args.runs} frames; "
        f"target <= {TARGET_MS:.0f} ms: "
        f"{'met' if median <= TARGET_MS else 'NOT met'} ({median / TARGET_MS:.2f}x the target)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
