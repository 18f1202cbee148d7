"""What FED costs on top of the backbone, per runtime, in the fused engine the node runs.

For one backbone and image size, builds three fused detectors (uint8 HWC image in, labels +
confidence at full resolution out; everything inside the graph):

- backbone-only: segmentation labels, no confidence (``score="none"``),
- + FED-U: FlowEneDet unconditional (8 blocks, 7x7, full covariance),
- + FED-C: FlowEneDet conditioned on the decoder features (P = 32),

and times ``engine.infer`` per available runtime (torch eager, ONNX Runtime CPU; the CUDA
ones when present). Runs are interleaved round-robin over all engines so that load from
other processes hits every row alike; the table reports the median and p99 of N runs after
warm-up, the FED overhead relative to backbone-only, and the eager -> ONNX Runtime speed-up.
FED weights are random (data-initialised ActNorm): latency does not depend on them.

Whole-engine differences of a few per cent drown in run-to-run noise on a shared CPU (a 20 s
SegFormer forward varies by +-10 %), so a second table times **the FED part alone**: exactly
the ops the fused graph adds after the backbone (flow on the 1/4-resolution logits, confidence
mapping, bilinear upsampling to the camera size), fed with tensors of the backbone's output
shapes, many runs. Its ratio to the backbone-only engine is the overhead estimate that noise
cannot hide or fake.

    python benchmarks/engine_latency.py --arch tiny --size 512x1024
    python benchmarks/engine_latency.py --arch segformer-b2 --size 512x1024 --runs 5
    python benchmarks/engine_latency.py --backbone path/to/ckpt --size 1024x2048 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from torch.nn import functional as F

from machine import cpu_name
from ros2_fed.detector import FusedDetector
from ros2_fed.engine.base import Engine
from ros2_fed.engine.export import export_onnx
from ros2_fed.engine.onnx_engine import OnnxEngine
from ros2_fed.engine.torch_engine import TorchEngine
from ros2_fed.fed import FEDConfig, FlowEneDet

ARCHS = ("tiny", "segformer-b2", "deeplabv3plus-r101")


def make_backbone(arch: Optional[str], checkpoint: Optional[str]) -> tuple[torch.nn.Module, str]:
    """A backbone with random weights by architecture id, or loaded from a checkpoint."""
    if checkpoint:
        from ros2_fed.backbones import load_backbone

        return load_backbone(checkpoint).eval(), Path(checkpoint).name
    from ros2_fed.backbones import DeepLabV3Plus, SegFormer, mit_config
    from ros2_fed.backbones.tinyseg import TinySeg

    torch.manual_seed(0)
    if arch == "tiny":
        return TinySeg().eval(), "TinySeg (embedded default architecture)"
    if arch == "segformer-b2":
        return SegFormer(**mit_config("b2")).eval(), "SegFormer MiT-B2 (SF-B2)"
    if arch == "deeplabv3plus-r101":
        return DeepLabV3Plus().eval(), "DeepLabV3+ R101-D8 (DL-R101)"
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


def make_random_fed(
    cfg: FEDConfig, logits: torch.Tensor, features: Optional[torch.Tensor] = None
) -> FlowEneDet:
    """A FED with data-initialised ActNorms (random weights: latency does not depend on them)."""
    fed = FlowEneDet(cfg)
    fed.initialize(logits, features if cfg.conditional else None)
    return fed.eval()


def build_detectors(
    backbone: torch.nn.Module, height: int, width: int, label_mode: str
) -> dict[str, FusedDetector]:
    sample = torch.randint(0, 256, (1, 3, min(height, 256), min(width, 512))).float()
    with torch.no_grad():
        logits, features = backbone(sample)
    # trained-like spread for the ActNorm init
    logits = logits.float() * (4.0 / max(float(logits.std()), 1e-6))
    num_classes, feat = int(logits.shape[1]), int(features.shape[1])
    fed_u = make_random_fed(FEDConfig(num_classes=num_classes), logits)
    fed_c = make_random_fed(
        FEDConfig(num_classes=num_classes, cond_dim=32, feat_channels=feat),
        logits,
        features.float(),
    )
    common = {"label_mode": label_mode}
    return {
        "backbone only": FusedDetector(backbone, None, score="none", **common),
        "+ FED-U": FusedDetector(backbone, fed_u, score="fed", **common),
        "+ FED-C": FusedDetector(backbone, fed_c, score="fed", **common),
    }


class FEDPart(torch.nn.Module):
    """The ops a FED detector adds to backbone-only: logits (+ features) -> confidence (B, H,
    W)."""

    def __init__(self, detector: FusedDetector, out_size: tuple[int, int]) -> None:
        super().__init__()
        self.detector = detector.eval()
        self.out_size = out_size

    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        wrong, _ = self.detector._wrongness(logits, features)
        confidence = self.detector._to_confidence(wrong, logits.shape[1])
        confidence = F.interpolate(
            confidence, size=self.out_size, mode="bilinear", align_corners=False
        )
        return confidence.clamp(0.0, 1.0)[:, 0]


def time_fed_parts(
    backbone: torch.nn.Module,
    detectors: dict[str, FusedDetector],
    height: int,
    width: int,
    runtimes: Sequence[str],
    threads: int,
    runs: int,
    folder: Path,
    say: Callable[[str], None],
) -> dict[tuple[str, str], list[float]]:
    """Seconds per call of each FED part, per runtime (interleaved like :func:`measure`)."""
    import onnxruntime as ort

    with torch.no_grad():
        logits, features = backbone(torch.zeros(1, 3, height, width))
    logits = torch.randn_like(logits.float()) * 4.0
    features = torch.randn_like(features.float())
    inputs = {"logits": logits.numpy(), "features": features.numpy()}
    calls: dict[tuple[str, str], Callable[[], object]] = {}
    for name, det in detectors.items():
        if det.score != "fed":
            continue
        part = FEDPart(det, (height, width))
        if "torch" in runtimes:

            def eager(part: FEDPart = part) -> object:
                with torch.inference_mode():
                    return part(logits, features)

            calls[(name, "torch")] = eager
        if "onnxruntime" in runtimes:
            path = folder / f"fed_part_{name.strip('+ ').replace('-', '_')}.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings: shapes are fixed here
                torch.onnx.export(
                    part,
                    (logits, features),
                    str(path),
                    input_names=["logits", "features"],
                    output_names=["confidence"],
                    opset_version=18,
                    dynamo=False,
                )
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            # FED-U's graph drops features
            feed = {i.name: inputs[i.name] for i in session.get_inputs()}
            calls[(name, "onnxruntime")] = lambda session=session, feed=feed: session.run(
                None, feed
            )
    for key, call in calls.items():
        say(f"warm-up FED part {key[0]} / {key[1]} ...")
        call()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for _ in range(runs):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    return times


def fed_part_table(
    parts: dict[tuple[str, str], list[float]],
    engines: dict[tuple[str, str], list[float]],
    runtimes: Sequence[str],
) -> str:
    header = ["FED part alone"]
    for rt in runtimes:
        header += [f"{rt} median ms", f"{rt} / backbone-only"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in dict.fromkeys(k[0] for k in parts):
        row = [variant.replace("+ ", "")]
        for rt in runtimes:
            if (variant, rt) not in parts or ("backbone only", rt) not in engines:
                row += ["—", "—"]
                continue
            here = statistics.median(parts[(variant, rt)])
            base = statistics.median(engines[("backbone only", rt)])
            row += [f"{1000 * here:.1f}", f"{100 * here / base:.2f} %"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def build_engines(
    detectors: dict[str, FusedDetector],
    height: int,
    width: int,
    runtimes: Sequence[str],
    threads: int,
    folder: Path,
    say: Callable[[str], None],
) -> dict[tuple[str, str], Engine]:
    engines: dict[tuple[str, str], Engine] = {}
    for name, det in detectors.items():
        if "torch" in runtimes:
            engines[(name, "torch")] = TorchEngine(
                det, input_shape=(height, width), threads=threads
            )
        if "onnxruntime" in runtimes:
            say(f"exporting {name} ...")
            t0 = time.perf_counter()
            path, _ = export_onnx(
                det, folder / f"{name.replace(' ', '_').replace('+', 'plus')}.onnx", height, width
            )
            engines[(name, "onnxruntime")] = OnnxEngine(path, intra_op_threads=threads)
            say(
                f"  exported + session in {time.perf_counter() - t0:.1f} s "
                f"({path.stat().st_size / 1e6:.1f} MB)"
            )
    return engines


def measure(
    engines: dict[tuple[str, str], Engine],
    image: np.ndarray,
    runs: int,
    warmup: int,
    say: Callable[[str], None],
) -> dict[tuple[str, str], list[float]]:
    """Round-robin timing: run r of every engine before run r+1 of any."""
    for key, engine in engines.items():
        say(f"warm-up {key[0]} / {key[1]} ...")
        for _ in range(warmup):
            engine.infer(image, copy=False)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in engines}
    for r in range(runs):
        for key, engine in engines.items():
            start = time.perf_counter()
            engine.infer(image, copy=False)
            times[key].append(time.perf_counter() - start)
        say(
            f"run {r + 1}/{runs}: "
            + ", ".join(f"{k[0]}/{k[1]} {1000 * v[-1]:.0f} ms" for k, v in times.items())
        )
    return times


def table(times: dict[tuple[str, str], list[float]], runtimes: Sequence[str]) -> str:
    def med(key: tuple[str, str]) -> Optional[float]:
        return statistics.median(times[key]) * 1000 if key in times else None

    def p99(key: tuple[str, str]) -> Optional[float]:
        return float(np.percentile(times[key], 99)) * 1000 if key in times else None

    def fmt(v: Optional[float], spec: str = ".1f", suffix: str = "") -> str:
        return "—" if v is None else f"{v:{spec}}{suffix}"

    variants = list(dict.fromkeys(k[0] for k in times))
    header = ["variant"]
    for rt in runtimes:
        header += [f"{rt} median ms", f"{rt} p99 ms", f"{rt} overhead"]
    if "torch" in runtimes and "onnxruntime" in runtimes:
        header.append("eager -> ORT speed-up")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in variants:
        row = [variant]
        for rt in runtimes:
            base, here = med(("backbone only", rt)), med((variant, rt))
            overhead = (
                None
                if base is None or here is None or variant == "backbone only"
                else 100.0 * (here / base - 1.0)
            )
            row += [
                fmt(here),
                fmt(p99((variant, rt))),
                "—" if overhead is None else f"{overhead:+.1f} %",
            ]
        if "torch" in runtimes and "onnxruntime" in runtimes:
            eager, onnx_rt = med((variant, "torch")), med((variant, "onnxruntime"))
            row.append(
                fmt(None if eager is None or onnx_rt is None else eager / onnx_rt, ".2f", "x")
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--arch", choices=ARCHS, default="tiny", help="random-weight backbone (default: tiny)"
    )
    src.add_argument(
        "--backbone", help="a backbone checkpoint instead (MMSeg .pth, HF folder, ours)"
    )
    p.add_argument("--size", default="512x1024", help="HxW camera image size (default 512x1024)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per engine (default 10)")
    p.add_argument(
        "--warmup", type=int, default=2, help="untimed runs per engine first (default 2)"
    )
    p.add_argument(
        "--runtimes", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"]
    )
    p.add_argument(
        "--threads",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="intra-op threads (default 2)",
    )
    p.add_argument("--label-mode", choices=("bilinear", "nearest"), default="bilinear")
    p.add_argument("--keep", help="keep the exported ONNX files in this folder")
    p.add_argument(
        "--part-runs", type=int, default=30, help="timed runs of the FED part alone (default 30)"
    )
    p.add_argument("--quiet", action="store_true", help="print only the table")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    say = (
        (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    )
    height, width = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    backbone, name = make_backbone(None if args.backbone else args.arch, args.backbone)
    detectors = build_detectors(backbone, height, width, args.label_mode)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        engines = build_engines(detectors, height, width, args.runtimes, args.threads, folder, say)
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        times = measure(engines, image, args.runs, args.warmup, say)
        parts = time_fed_parts(
            backbone,
            detectors,
            height,
            width,
            args.runtimes,
            args.threads,
            args.part_runs,
            folder,
            say,
        )
        providers = sorted(
            {p for e in engines.values() if isinstance(e, OnnxEngine) for p in e.providers}
        )
    import onnxruntime

    print(f"### Fused engine latency: {name}, {height}x{width}, labels {args.label_mode}")
    print()
    print(
        f"{cpu_name()}, {args.threads} threads; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__} "
        f"({', '.join(providers) or 'no session'}); median / p99 of {args.runs} interleaved runs "
        f"after {args.warmup} warm-up runs; overhead = median / backbone-only median - 1."
    )
    print()
    print(table(times, args.runtimes))
    print()
    print(
        f"FED part alone (flow on the 1/4-resolution logits -> confidence at {height}x{width}), "
        f"median of {args.part_runs} runs, relative to the backbone-only engine "
        "median above (targets at 1024x2048 on ONNX Runtime: FED-U <= 5 %, FED-C <= 10 %):"
    )
    print()
    print(fed_part_table(parts, times, args.runtimes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
