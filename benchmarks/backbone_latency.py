"""CPU latency of the paper's two backbones (random weights) at Cityscapes resolutions.

Prints a Markdown table: DeepLabV3+ R101-D8 ("DL-R101") and SegFormer MiT-B2 ("SF-B2", MMSeg
head width 256) at 512x1024 and 1024x2048, whole-image forward (uint8 RGB in, 1/4-resolution
logits + decoder features out), plus SF-B2 with the paper's 1024x1024 / stride-768 sliding
window at 1024x2048. Weights are random: latency does not depend on them. All rows are
measured in one run of this script, on the same machine, so their ratios are meaningful;
absolute numbers depend on the CPU and on whatever else runs on it.

    python benchmarks/backbone_latency.py    # full table (several minutes on 2 cores)
    python benchmarks/backbone_latency.py --sizes 512x1024 --runs 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name
from ros2_fed.backbones import DeepLabV3Plus, SegFormer, mit_config, slide_inference

LARGE = 1024 * 2048


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def time_runs(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", nargs="+", default=["512x1024", "1024x2048"], help="HxW image sizes")
    p.add_argument(
        "--backbones", nargs="+", default=["dl-r101", "sf-b2"], choices=["dl-r101", "sf-b2"]
    )
    p.add_argument(
        "--runs",
        type=int,
        default=3,
        help="timed runs per row below 1024x2048 (after one warm-up)",
    )
    p.add_argument(
        "--runs-large",
        type=int,
        default=2,
        help="timed runs per row at >= 1024x2048 (no warm-up: these rows take tens of seconds)",
    )
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--no-slide", action="store_true", help="skip the SF-B2 sliding-window row")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {}
    if "dl-r101" in args.backbones:
        models["DL-R101 (DeepLabV3+ R101-D8)"] = DeepLabV3Plus().eval()
    if "sf-b2" in args.backbones:
        models["SF-B2 (SegFormer MiT-B2)"] = SegFormer(**mit_config("b2")).eval()
    rows = []
    for size in map(parse_size, args.sizes):
        large = size[0] * size[1] >= LARGE
        runs, warmup = (args.runs_large, 0) if large else (args.runs, 1)
        image = torch.randint(0, 256, (1, 3, *size), dtype=torch.uint8)
        for name, model in models.items():
            modes: list[tuple[str, Callable[[], object]]] = [("whole", lambda m=model: m(image))]
            if (
                isinstance(model, SegFormer)
                and not args.no_slide
                and (size[0] > 1024 or size[1] > 1024)
            ):
                modes.append(
                    ("slide 1024/768", lambda m=model: slide_inference(m, image, 1024, 768))
                )
            for mode, fn in modes:
                with torch.inference_mode():
                    times = time_runs(fn, runs, warmup)
                params = sum(p.numel() for p in model.parameters()) / 1e6
                rows.append(
                    (
                        name,
                        f"{size[0]}x{size[1]}",
                        mode,
                        f"{params:.1f}",
                        f"{statistics.median(times):.2f}",
                        f"{min(times):.2f}",
                        str(runs),
                    )
                )
                print(
                    f"  measured {name} {size} {mode}: {[round(t, 2) for t in times]}",
                    file=sys.stderr,
                )
    print(
        "Backbone CPU latency, random weights, batch 1, uint8 RGB in -> 1/4-res logits + "
        f"features; torch {torch.__version__}, {args.threads} threads, {cpu_name()}\n"
    )
    print("| backbone | input (HxW) | mode | params (M) | median (s) | min (s) | runs |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
