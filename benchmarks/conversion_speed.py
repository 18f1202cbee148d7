"""Full-HD image conversions of fed_node against a plain copy of the same bytes, in one run.

Every frame goes through these conversions (camera message -> RGB, outputs -> messages, the
confidence colour map), so a per-pixel Python path would cost the node more than its engine.
Each conversion is timed with a copy of an array of the same size interleaved (best of
``--runs``), so load from other processes hits both alike and the ratio stays meaningful on a
shared machine; absolute milliseconds depend on the CPU. The table's last column is the
conversion's time in copies; ``--max-ratio`` makes the script exit 1 when one is above it (a
vectorised conversion is a few copies, a per-pixel loop thousands).

    python benchmarks/conversion_speed.py                  # 1920x1080
    python benchmarks/conversion_speed.py --size 64x128 --runs 2   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ros2_fed import codec, viz

#: Default bound of --max-ratio: generous for a loaded machine, far below a per-pixel loop.
DEFAULT_MAX_RATIO = 100.0


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def best_of(fn: Callable[[], object], reference: Callable[[], object], runs: int) -> tuple:
    """Best seconds of ``fn`` and of ``reference`` over ``runs`` interleaved runs (after one
    warm-up of each)."""
    fn(), reference()
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for i, f in enumerate((fn, reference)):
            start = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def conversions(height: int, width: int) -> dict[str, tuple[Callable[[], object], np.ndarray]]:
    """name -> (the conversion, an array as large as what it reads, for the reference copy)."""
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    conf = rng.random((height, width), dtype=np.float32)
    bgr = Image(height=height, width=width, encoding="bgr8", step=3 * width)
    bgr.data = np.ascontiguousarray(rgb[..., ::-1]).tobytes()
    return {
        "numpy_to_image rgb8": (lambda: codec.numpy_to_image(rgb, "rgb8"), rgb),
        "numpy_to_image 32FC1": (lambda: codec.numpy_to_image(conf, "32FC1"), conf),
        "to_rgb8 from bgr8": (lambda: codec.to_rgb8(bgr), rgb),
        "confidence_to_rgb": (lambda: viz.confidence_to_rgb(conf), rgb),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", default="1080x1920", help="HxW (default 1080x1920)")
    p.add_argument("--runs", type=int, default=7, help="interleaved runs, best of (default 7)")
    p.add_argument("--max-ratio", type=float, default=DEFAULT_MAX_RATIO)
    args = p.parse_args(argv)
    height, width = parse_size(args.size)
    print(f"Conversions at {height}x{width}, best of {args.runs} interleaved runs\n")
    print("| conversion | ms | copy of the same bytes, ms | ratio (copies) |")
    print("|---|---|---|---|")
    worst = 0.0
    for name, (fn, like) in conversions(height, width).items():
        took, copy = best_of(fn, like.copy, args.runs)
        ratio = took / max(copy, 1e-9)
        worst = max(worst, ratio)
        print(f"| {name} | {1000 * took:.2f} | {1000 * copy:.2f} | {ratio:.1f} |")
    if worst > args.max_ratio:
        print(f"\nslowest conversion is {worst:.1f} copies, above --max-ratio {args.max_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
