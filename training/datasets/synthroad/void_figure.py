"""The void clutter picture and pixel-share figures of docs/synthroad_void.md.

    python -m training.datasets.synthroad.void_figure                 # docs/synthroad_void.png
    python -m training.datasets.synthroad.void_figure --measure 200   # + the share table

The picture: training images with clutter, next to their labels with the clutter's void in
cyan. The share: clutter void pixels (void with clutter, not void without it) over non-hood
pixels, and the part of them belonging to objects placed on the carriageway.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from training.datasets.base import VOID, write_png
from training.datasets.cityscapes import LABEL_ID_EGO_VEHICLE, colorize

from .io import render_indexed, sample_indexed
from .render import Frame, render_frame
from .void import VoidClutter

_CLUTTER_COLOUR = np.array([0, 255, 255], np.uint8)


def clutter_mask(with_clutter: Frame, without: Frame) -> np.ndarray:
    """Pixels that are void because of clutter."""
    return (with_clutter.train_ids == VOID) & (without.train_ids != VOID)


def _road_only(seed: int, split: str, index: int, size: tuple[int, int], c: VoidClutter):
    scene, cam, rng = sample_indexed(seed, split, index, *size, c)
    kept = [o for o in scene.objects if o.params.get("zone", "road") == "road"]
    return render_frame(dataclasses.replace(scene, objects=kept), cam, rng)


def measure(
    clutter: VoidClutter, count: int, size: tuple[int, int] = (256, 512), seed: int = 0
) -> dict[str, float]:
    """Clutter share of non-hood pixels over ``count`` train images (pooled), its on-road part,
    the share of images with any clutter on the road, and render time per image."""
    total = clutter_px = road_px = 0
    images_with_road = 0
    seconds = [0.0, 0.0]
    for i in range(count):
        t0 = time.perf_counter()
        plain = render_indexed(seed, "train", i, *size)
        t1 = time.perf_counter()
        full = render_indexed(seed, "train", i, *size, clutter)
        seconds[0] += t1 - t0
        seconds[1] += time.perf_counter() - t1
        mask = clutter_mask(full, plain)
        road = clutter_mask(_road_only(seed, "train", i, size, clutter), plain) & mask
        total += int((full.label_ids != LABEL_ID_EGO_VEHICLE).sum())
        clutter_px += int(mask.sum())
        road_px += int(road.sum())
        images_with_road += bool(road.any())
    return {
        "share": clutter_px / max(total, 1),
        "on_road_share": road_px / max(total, 1),
        "on_road_fraction": road_px / max(clutter_px, 1),
        "images_with_road_clutter": images_with_road / max(count, 1),
        "ms_plain": 1000 * seconds[0] / max(count, 1),
        "ms_clutter": 1000 * seconds[1] / max(count, 1),
    }


def mosaic(
    clutter: VoidClutter, indices: list[int], size: tuple[int, int] = (256, 512), seed: int = 0
) -> np.ndarray:
    """Rows of (image with clutter | its labels: Cityscapes colours, clutter void cyan, the
    other void -- hood, bins -- black)."""
    rows = []
    for i in indices:
        full = render_indexed(seed, "train", i, *size, clutter)
        mask = clutter_mask(full, render_indexed(seed, "train", i, *size))
        labels = colorize(full.train_ids)
        labels[mask] = _CLUTTER_COLOUR
        rows.append(np.concatenate([full.image, labels], 1))
    return np.concatenate(rows, 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.datasets.synthroad.void_figure",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("docs/synthroad_void.png"))
    p.add_argument("--share", type=float, default=0.04, help="clutter share (default 0.04)")
    p.add_argument("--images", default="1,3,5,7,8", help="train indices in the picture")
    p.add_argument("--size", default="128x256", help="picture tile size HxW (default 128x256)")
    p.add_argument("--measure", type=int, default=0, help="also measure the share on N images")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    clutter = VoidClutter(args.share)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    write_png(args.out, mosaic(clutter, [int(i) for i in args.images.split(",")], size))
    print(f"wrote {args.out}")
    if args.measure:
        m = measure(clutter, args.measure)
        print(
            f"{args.measure} train images 256x512, share {args.share}: clutter void "
            f"{100 * m['share']:.2f} % of non-hood pixels ({100 * m['on_road_share']:.2f} % on "
            f"the road = {100 * m['on_road_fraction']:.0f} % of it); images with road clutter "
            f"{100 * m['images_with_road_clutter']:.0f} %; render {m['ms_plain']:.1f} ms -> "
            f"{m['ms_clutter']:.1f} ms per image"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
