"""Which uncertain regions on object-free road force the alert's ``warn_size`` up?

Why: the rule's ``warn_size`` is set so that frames without any unknown object stay quiet; every
region those frames hold above a small size costs the far, small objects their early warning.
This script lists those regions on the selection drives (``training.drive_cache``): each
object-free frame's judged region under the shipped alert defaults (the largest by size below
the horizon), where it is, what the backbone labels it, how much more uncertain it is than a
ring around it, and whether the same place is uncertain with another score post-processing
(``none``, ``gaussian``: the same drives cached with ``--postprocess``; each judged at the
threshold that leaves the same share of the object-free ROI pixels uncertain as the default at
its calibrated threshold, so only the shape of the uncertainty differs, not its amount).

    python -m training.false_alarm_regions --cache runs/alert_track/drives \\
        --seeds 100-139 --compare-seeds 103,107 --json docs/false_alarm_regions.json \\
        --png docs/false_alarm_regions.png
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ros2_fed import jsonio
from ros2_fed.alerts import AlertConfig, AlertMonitor
from ros2_fed.names import CITYSCAPES_CLASSES
from ros2_fed.region_tracker import candidates
from ros2_fed.viz import confidence_to_rgb
from training.drive_cache import CachedDrive, load_or_compute, parse_seeds

SHAPE = (256, 512)
#: The FED-C's calibrated threshold (models/fed_c_synthroad.json, 2 % calibration false alarms).
DEFAULT_THRESHOLD = 0.7086498737335205


def judged_regions(config: AlertConfig, drive: CachedDrive) -> list[dict[str, Any]]:
    """The judged region of every object-free frame of ``drive`` under ``config``."""
    monitor = AlertMonitor(config)
    out = []
    presence = drive.presence
    h = drive.confidence.shape[1]
    for i, (conf16, labels) in enumerate(zip(drive.confidence, drive.labels)):
        conf = conf16.astype(np.float32)
        state = monitor.update(conf, labels=labels)
        if presence[i] is not False:
            continue
        row: dict[str, Any] = {"seed": drive.seed, "frame": i, "size": state.region_size}
        if state.region_bbox is not None:
            x0, y0, x1, y1 = state.region_bbox
            crop = labels[y0 : y1 + 1, x0 : x1 + 1]
            below = conf[y0 : y1 + 1, x0 : x1 + 1] < config.confidence_threshold
            names = Counter(CITYSCAPES_CLASSES[v] for v in crop[below].tolist())
            mask = np.zeros(conf.shape, np.uint8)
            mask[y0 : y1 + 1, x0 : x1 + 1] = np.where(below, 255, 0)
            cand = candidates(mask, np.nan_to_num(conf, nan=0.0), h, 0, None)
            row.update(
                bbox=list(state.region_bbox),
                area=state.region_area,
                rows_below_horizon=y1 + 1 - config.horizon * h,
                x_centre=(x0 + x1) / 2 / conf.shape[1],
                labels=dict(names.most_common(3)),
                mean_confidence=float(conf[y0 : y1 + 1, x0 : x1 + 1][below].mean()),
                contrast=max(c.contrast for c in cand) if cand else None,
            )
        out.append(row)
    return out


def matched_threshold(
    drives: Sequence[CachedDrive], base: Sequence[CachedDrive], thr: float
) -> float:
    """The threshold at which ``drives`` have as many uncertain object-free ROI-corridor pixels as
    ``base`` at ``thr`` (the same frames, another post-processing)."""
    from ros2_fed.alerts import corridor_mask

    roi = corridor_mask(SHAPE) > 0
    ref = np.concatenate(
        [d.confidence[i][roi] for d in base for i, p in enumerate(d.presence) if p is False]
    ).astype(np.float32)
    share = float(np.mean(ref < thr))
    vals = np.concatenate(
        [d.confidence[i][roi] for d in drives for i, p in enumerate(d.presence) if p is False]
    ).astype(np.float32)
    return float(np.quantile(vals, share))


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How large the judged regions are: the size quantiles that a warn_size must clear."""
    sizes = np.array([r["size"] for r in rows])
    big = [r for r in rows if r["size"] > 0.2]
    labels: Counter = Counter()
    for r in big:
        labels.update(r.get("labels", {}))
    return {
        "frames": len(rows),
        "size_p50": float(np.quantile(sizes, 0.5)) if len(sizes) else None,
        "size_p90": float(np.quantile(sizes, 0.9)) if len(sizes) else None,
        "size_max": float(sizes.max()) if len(sizes) else None,
        "frames_over": {w: int((sizes > w).sum()) for w in (0.2, 0.25, 0.3, 0.35)},
        "labels_of_regions_over_0.2": dict(labels.most_common(6)),
        "rows_below_horizon_over_0.2": (
            float(np.median([r["rows_below_horizon"] for r in big])) if big else None
        ),
        "contrast_over_0.2": (
            float(np.median([r["contrast"] for r in big if r.get("contrast") is not None]))
            if big
            else None
        ),
    }


def picture(
    rows: Sequence[dict[str, Any]], path: Path, cache: Path, rendered: Optional[Path], n: int = 4
) -> None:
    """The ``n`` largest false-alarm regions (one per drive): camera image | confidence, boxed."""
    from training.alert_selection import render_drive_truth

    chosen, seen = [], set()
    for r in sorted(rows, key=lambda r: -r["size"]):
        if r["seed"] not in seen and "bbox" in r:
            chosen.append(r)
            seen.add(r["seed"])
        if len(chosen) == n:
            break
    tiles = []
    for r in chosen:
        images, _, _ = render_drive_truth(r["seed"], 60, SHAPE, rendered)
        drive = load_or_compute(None, r["seed"], 60, SHAPE, cache, "default")
        rgb = images[r["frame"]].copy()
        conf = confidence_to_rgb(drive.confidence[r["frame"]].astype(np.float32), 0.62, 0.98)
        x0, y0, x1, y1 = r["bbox"]
        for im in (rgb, conf):
            cv2.rectangle(im, (x0 - 2, y0 - 2), (x1 + 2, y1 + 2), (255, 255, 0), 1)
        tile = np.concatenate([rgb, conf], axis=1)
        label = next(iter(r["labels"]), "")
        text = f"drive {r['seed']} frame {r['frame']}: size {r['size']:.2f}, {label}"
        cv2.putText(tile, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        tiles.append(tile)
    mosaic = np.concatenate(tiles, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="false_alarm_regions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cache", default="runs/alert_track/drives")
    p.add_argument("--rendered", type=Path, default=None)
    p.add_argument("--seeds", default="100-139")
    p.add_argument("--compare-seeds", default="103,107")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--png", type=Path, default=None)
    args = p.parse_args(argv)
    cache = Path(args.cache)
    config = replace(AlertConfig(), confidence_threshold=DEFAULT_THRESHOLD)
    drives = [
        load_or_compute(None, s, 60, SHAPE, cache, "default")
        for s in tqdm(parse_seeds(args.seeds), desc="drives")
    ]
    rows = [r for d in tqdm(drives, desc="regions") for r in judged_regions(config, d)]
    result: dict[str, Any] = {
        "config": {"confidence_threshold": DEFAULT_THRESHOLD},
        "sml": summary(rows),
        "regions": rows,
    }
    compare = parse_seeds(args.compare_seeds)
    base = [d for d in drives if d.seed in compare]
    result["compare_seeds"] = compare
    result["sml_on_compare"] = summary([r for r in rows if r["seed"] in compare])
    for post in ("none", "gaussian"):
        other = [load_or_compute(None, s, 60, SHAPE, cache, post) for s in compare]
        thr = matched_threshold(other, base, DEFAULT_THRESHOLD)
        cfg = replace(config, confidence_threshold=thr)
        other_rows = [r for d in other for r in judged_regions(cfg, d)]
        result[post] = {"threshold": thr, **summary(other_rows)}
    for key in ("sml", "sml_on_compare", "none", "gaussian"):
        print(key, {k: v for k, v in result[key].items()}, flush=True)
    jsonio.write_json(args.json, result, indent=1)
    if args.png is not None:
        picture(rows, args.png, cache, args.rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
