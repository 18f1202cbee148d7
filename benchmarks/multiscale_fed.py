"""Multi-scale FED's cost in the fused engine: one fused ONNX Runtime engine per setting, timed
in alternation in one run, printed as a ratio.

The paper suggests "a set of multi-scale FED detectors with aggregation"; ``fed_extra_rates``
runs the same FED again at 1/2 of the image and averages the scores. docs/fed_ablation.md says
whether it was adopted (chosen on the selection split); this script says what it would cost.

    python benchmarks/multiscale_fed.py --size 256x512 --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ros2_fed.pipeline.model_spec import DEFAULT_BACKBONE, DEFAULT_FED  # noqa: E402

SETTINGS = {"FED at 1/4 (node default)": (), "multi-scale FED, 1/4 + 1/2": (0.5,)}


def build(folder: Path, extra_rates: tuple, height: int, width: int, threads: int):
    """The fused engine for the default model with these extra FED rates."""
    from ros2_fed.detector import FusedDetector
    from ros2_fed.engine.export import export_engine
    from ros2_fed.engine.onnx_engine import OnnxEngine

    models = REPO / "models"
    detector = FusedDetector.from_checkpoints(
        models / DEFAULT_BACKBONE, models / DEFAULT_FED, fed_extra_rates=extra_rates
    )
    path, meta = export_engine(
        detector, folder / f"ms{len(extra_rates)}.onnx", height, width, progress=None
    )
    return OnnxEngine(path, meta, intra_op_threads=threads, allow_spinning=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default="256x512", help="camera size HxW (default 256x512)")
    p.add_argument("--runs", type=int, default=20, help="timed frames per setting (default 20)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    args = p.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    frame = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        engines = {
            name: build(Path(tmp), rates, height, width, args.threads)
            for name, rates in SETTINGS.items()
        }
        times: dict[str, list[float]] = {name: [] for name in engines}
        for engine in engines.values():
            engine.infer(frame)  # warm-up
        for _ in range(args.runs):  # alternate, so load on the machine hits both alike
            for name, engine in engines.items():
                start = time.perf_counter()
                engine.infer(frame)
                times[name].append(1000 * (time.perf_counter() - start))
    base = statistics.median(times[next(iter(times))])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name}: median {median:.1f} ms ({median / base:.2f}x), {args.size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
