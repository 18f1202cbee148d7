"""The fleet's POOLED numbers: the bags' scorer states merged, never their metrics averaged.

Why merging: an AuROC of a fleet is not the mean of the bags' AuROCs. Merging the states (exact
score arrays concatenated, histogram counts and confusion matrices added) gives exactly what one
scorer fed every frame of every bag gives, by the rule of ``fed_eval`` and ``fed_bag_eval``'s rig
pooling: exact while all frames x pixels <= 4e7, else histograms (an exact state's pairs binned
into them, what that one scorer would have counted). The states are merged in the order of the
bag ids, read from the bag folders, so the result does not depend on the number of workers or
on the order in which bags finished.

IDM is a mean over frames of per-frame metrics; a bag's state keeps every frame's row (so it
reproduces the bag's report), the pool keeps their sums and counts (:class:`MeanAverager`):
a fleet of a billion frames needs no billion rows in the driver's memory. The counts are
exact, the means equal one scorer's to rounding (1e-12 in the tests).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from ros2_fed.eval import metrics as M
from ros2_fed.eval.fleet import store
from ros2_fed.eval.replay import report as rep
from ros2_fed.eval.replay.multicamera import pooled_detection
from ros2_fed.eval.replay.scoring import EXACT_PIXEL_LIMIT, Scorer

FRAME_COUNTS = ("in_bag", "evaluated", "dropped", "with_labels", "with_ood")


class MeanAverager:
    """:class:`~ros2_fed.eval.metrics.PerImageAverager`'s summary from per-metric sums and image
    counts: constant memory however many frames are added."""

    def __init__(self, tprs: tuple[float, ...], ignore_index: Optional[int]) -> None:
        self.tprs, self.ignore_index = tuple(tprs), ignore_index
        self.sums: dict[str, float] = {}
        self.n_images = 0
        self.n_skipped = 0

    def add(self, averager: M.PerImageAverager) -> None:
        """One bag's per-frame rows (each metric summed exactly rounded, then added)."""
        if tuple(averager.tprs) != self.tprs:
            raise ValueError(f"cannot pool IDM for TPRs {averager.tprs} and {self.tprs}")
        for key in averager.per_image[0] if averager.per_image else ():
            total = math.fsum(row[key] for row in averager.per_image)
            self.sums[key] = self.sums.get(key, 0.0) + total
        self.n_images += len(averager.per_image)
        self.n_skipped += averager.n_skipped

    def _mean(self, key: str) -> float:
        return self.sums[key] / self.n_images if self.n_images else math.nan

    def summary(self, tpr: float = 0.95) -> dict[str, Any]:
        return {
            "auroc": self._mean("auroc"),
            "ap": self._mean("ap"),
            "fpr_at_tpr": self._mean(f"fpr@{float(tpr):g}"),
            "tpr": float(tpr),
            "f1_threshold": self._mean("f1_threshold"),
            "n_images": self.n_images,
            "n_skipped": self.n_skipped,
        }


class FleetPool:
    """The bags' scorers merged one by one (exactness decided like one scorer's, at
    ``exact_pixel_limit``: the scorer's own limit; smaller in tests, to cross it between bags)."""

    def __init__(self, exact_pixel_limit: int = EXACT_PIXEL_LIMIT) -> None:
        self.scorer: Optional[Scorer] = None
        self.pixels = 0  # frames x frame pixels, over the bags so far
        self.exact_pixel_limit = int(exact_pixel_limit)

    def add(self, scorer: Scorer, frames: int, frame_pixels: int) -> None:
        self.pixels += int(frames) * int(frame_pixels)
        exact = self.pixels <= self.exact_pixel_limit and scorer.exact
        if self.scorer is None or (self.scorer.exact and not exact):
            pooled = Scorer(
                scorer.num_classes,
                0,
                0,
                exact=exact,
                bins=scorer.bins,
                probability=sorted(scorer.probability),
            )
            if self.scorer is not None:  # exact pairs binned into the histograms
                pooled.idm, self.scorer.idm = self.scorer.idm, {}
                pooled.merge(self.scorer)
            self.scorer = pooled
        for name, averager in scorer.idm.items():
            mean = MeanAverager(averager.tprs, averager.ignore_index)
            self.scorer.idm.setdefault(name, mean).add(averager)  # type: ignore[arg-type]
        scorer.idm = {}
        self.scorer.merge(scorer)


def pool_states(out: Path, summaries: list[dict[str, Any]]) -> FleetPool:
    """Every finished bag's scorer state merged, in bag-id order."""
    pool = FleetPool()
    for summary in sorted(summaries, key=lambda s: s["id"]):
        scorer = store.read_state(out, summary["id"])
        pool.add(scorer, int(summary["scan_frames"]), int(summary["frame_pixels"]))
    return pool


def pooled_section(pool: FleetPool, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The POOLED row: frames and alert counts added, metrics from the merged scorer."""
    frames = {k: sum(int(s["frames"].get(k) or 0) for s in summaries) for k in FRAME_COUNTS}
    counts: dict[str, int] = {}
    sources: dict[str, str] = {}
    for s in summaries:
        for level, n in (s["alerts"].get("counts") or {}).items():
            counts[level] = counts.get(level, 0) + int(n)
        sources.update({s["node_method"]: "node"} if s.get("node_method") else {})
    pooled: dict[str, Any] = {
        "bags": len(summaries),
        "frames": frames,
        "metrics": pool.scorer.results() if pool.scorer is not None else {"methods": {}},
        "method_sources": sources,
        "alerts": {
            "counts": counts,
            "detection": pooled_detection([s["alerts"].get("detection") for s in summaries]),
        },
        "scene": pooled_scene(summaries),
    }
    nodes = [r for r in rep.method_rows(pooled) if r["source"] == "node"]
    pooled["node"] = nodes[0] if nodes else {}
    return pooled


def pooled_scene(summaries: list[dict[str, Any]]) -> Optional[dict[str, float]]:
    """Scene status shares of all frames (each bag's shares weighted by its frames)."""
    weighted: dict[str, float] = {}
    total = 0
    for s in summaries:
        share, frames = s.get("scene"), int(s["frames"].get("evaluated") or 0)
        if not share:
            continue
        total += frames
        for level, value in share.items():
            weighted[level] = weighted.get(level, 0.0) + float(value) * frames
    if not total:
        return None
    return {level: value / total for level, value in weighted.items()}
