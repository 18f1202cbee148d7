"""`fed_synthroad`: generate the synthroad dataset (Cityscapes layout + Fishyscapes-style OOD
split).

Example (what ``make default-model`` runs)::

    fed_synthroad --out runs/default_model/synthroad --train 3000 --val 300 --ood 300 \
        --size 256x512 --seed 0

Every image depends only on (seed, split, index), so the output is identical on every machine
and growing a split keeps its first images. ``--void-clutter 0.04`` adds Cityscapes-like
unlabelled clutter (void) to the training split only; without it the data is unchanged. The
layout is described in ``training/datasets/synthroad/__init__.py`` and recorded in
``OUT/synthroad.json``.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_synthroad", __name__)  # first: a signal during the imports stops it

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

from tqdm import tqdm  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x512, got {text!r}") from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError("frames must be at least 32x32")
    return h, w


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("counts must be >= 0")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 0.5:
        raise argparse.ArgumentTypeError("the void clutter share must be in [0, 0.5]")
    return value


def _splits(text: str) -> tuple[str, ...]:
    from training.datasets.synthroad import SPLITS

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in SPLITS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown split(s) {', '.join(unknown)}; choose from {', '.join(SPLITS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_synthroad",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output root (gets leftImg8bit/, gtFine/, ...)"
    )
    p.add_argument("--train", type=_count, default=1000, help="training images (default 1000)")
    p.add_argument(
        "--val", type=_count, default=100, help="validation images, in-distribution (default 100)"
    )
    p.add_argument(
        "--ood",
        type=_count,
        default=100,
        help="OOD images: unseen objects on the road (default 100)",
    )
    p.add_argument(
        "--obstacle",
        type=_count,
        default=0,
        help="obstacle images (RoadObstacle21-style: 1-3 small objects of the seven OOD kinds "
        "far ahead on the road, most under 1,000 px at 256x512; the OOD mask is void off the "
        "road). The reported split: --obstacle 100 --seed 9901 "
        "(training/datasets/synthroad/seeds.py). Default 0",
    )
    p.add_argument(
        "--size", type=_size, default=(256, 512), help="frame size HxW (default 256x512)"
    )
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    p.add_argument(
        "--void-clutter",
        type=_share,
        default=0.0,
        metavar="SHARE",
        help="unlabelled void clutter (street furniture, prams, manholes, rails, ...) on and "
        "beside the road, as a fraction of the non-hood pixels; 0.04 matches Cityscapes "
        "(docs/synthroad_void.md). Default 0 = none",
    )
    p.add_argument(
        "--void-clutter-splits",
        type=_splits,
        default=("train",),
        metavar="SPLITS",
        help="comma-separated splits that get the clutter (default train: val and ood stay "
        "comparable with earlier results)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from training.datasets.synthroad import VoidClutter, write_dataset

    counts = {"train": args.train, "val": args.val, "ood": args.ood}
    if args.obstacle:  # only when asked for: an earlier obstacle split in --out is left alone
        counts["obstacle"] = args.obstacle
    total = sum(counts.values())
    height, width = args.size
    start = time.monotonic()
    written = [0]

    def done(n: int) -> None:
        written[0] += n
        bar.update(n)

    try:
        stopping.started()  # a stop signal is a KeyboardInterrupt from here on
        with tqdm(
            total=total,
            desc="fed_synthroad",
            unit="img",
            disable=args.no_progress,
            dynamic_ncols=True,
        ) as bar:
            write_dataset(
                args.out,
                counts,
                height,
                width,
                seed=args.seed,
                workers=max(1, args.workers),
                progress=done,
                void_clutter=VoidClutter(args.void_clutter, args.void_clutter_splits),
            )
    except KeyboardInterrupt:
        print(
            f"fed_synthroad: stopped; kept the {written[0]} of {total} images written to "
            f"{args.out} (each complete; the dataset is not): the same command writes it "
            "whole, identically",
            file=sys.stderr,
            flush=True,
        )
        return stopping.interrupted_exit_code()
    finally:
        stopping.stopping()
    elapsed = time.monotonic() - start
    print(
        f"fed_synthroad: wrote {total} images "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}) "
        f"of {height}x{width} to {args.out} in {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
