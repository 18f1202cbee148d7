"""What the alert rule costs per frame: rule ``region`` against rule ``track``, one run.

Why a ratio measured here and not an assert in a test: the tracker must stay cheap next to the
engine (target: under about 1 ms more per 256x512 frame), and figures only mean something when
both rules run in the same process, alternating frame by frame, on the same maps. The time is
the calling thread's CPU time with OpenCV on one thread (the rule runs in the node's worker
thread; CPU time does not count the waits of a busy machine), the wall-clock median beside it.

    python benchmarks/alert_rules.py \\
        --drive runs/alert_track/drives/drive_100_60_256x512_default.npz

Without ``--drive`` the frames are synthetic (a road-like label map, a few blobs of low
confidence moving and growing over the frames, noise elsewhere).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ros2_fed.alerts import AlertConfig, AlertMonitor


def synthetic(frames: int, size: tuple[int, int]) -> tuple[list, list]:
    h, w = size
    rng = np.random.default_rng(0)
    labels = np.zeros((h, w), np.uint8)  # road
    labels[: int(0.4 * h)] = 10  # sky
    confs, labs = [], []
    for i in range(frames):
        conf = np.clip(0.9 + 0.08 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)
        for k in range(4):
            side = 4 + i // 3 + 2 * k
            y = int(0.45 * h) + i + 10 * k
            x = int(w * (0.2 + 0.2 * k))
            conf[y : y + side, x : x + side] = 0.2
        confs.append(conf)
        labs.append(labels)
    return confs, labs


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--drive", type=Path, default=None, help="a training.drive_cache npz")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.drive is not None:
        data = np.load(args.drive)
        confs = [c.astype(np.float32) for c in data["confidence"]]
        labs = list(data["labels"])
        threshold = 0.7086
    else:
        confs, labs = synthetic(args.frames, (256, 512))
        threshold = 0.5
    base = replace(AlertConfig(), confidence_threshold=threshold)
    rules = {"region": replace(base, rule="region"), "track": replace(base, rule="track")}
    cv2.setNumThreads(1)
    cpu: dict[str, list[float]] = {name: [] for name in rules}
    wall: dict[str, list[float]] = {name: [] for name in rules}
    for _ in range(args.repeats):
        monitors = {name: AlertMonitor(cfg) for name, cfg in rules.items()}
        for conf, lab in zip(confs, labs):
            order = list(rules) if len(cpu["region"]) % 2 == 0 else list(rules)[::-1]
            for name in order:
                t0, c0 = time.perf_counter(), time.thread_time()
                monitors[name].update(conf, labels=lab)
                cpu[name].append(time.thread_time() - c0)
                wall[name].append(time.perf_counter() - t0)
    med = {name: 1e3 * statistics.median(t) for name, t in cpu.items()}
    h, w = confs[0].shape
    print(f"alert rule per {h}x{w} frame ({len(cpu['region'])} frames, alternating):")
    for name, ms in med.items():
        wall_ms = 1e3 * statistics.median(wall[name])
        print(f"  {name:6s} {ms:.3f} ms CPU (median; wall {wall_ms:.3f} ms)")
    extra = med["track"] - med["region"]
    ratio = med["track"] / med["region"]
    print(f"  track - region: {extra:+.3f} ms CPU ({ratio:.2f}x); target < 1 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
