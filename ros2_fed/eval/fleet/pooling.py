"""The fleet's POOLED numbers: the bags' scorer states merged, never their metrics averaged.

Why merging: an AuROC of a fleet is not the mean of the bags' AuROCs. Merging the states (exact
score arrays concatenated, histogram counts and confusion matrices added, per-image IDM lists
joined) gives exactly what one scorer fed every frame of every bag gives, by the same rule as
``fed_bag_eval``'s rig pooling (:class:`~ros2_fed.eval.replay.multicamera.Pool`: exact while all
frames x pixels <= 4e7, else histograms). The states are merged in the order of the bag ids,
read from the bag folders, so the result does not depend on the number of workers or on the
order in which bags finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ros2_fed.eval.fleet import store
from ros2_fed.eval.replay import report as rep
from ros2_fed.eval.replay.multicamera import Pool, pooled_detection

FRAME_COUNTS = ("in_bag", "evaluated", "dropped", "with_labels", "with_ood")


def pool_states(out: Path, summaries: list[dict[str, Any]]) -> Pool:
    """Every finished bag's scorer state merged, in bag-id order."""
    pool = Pool()
    for summary in sorted(summaries, key=lambda s: s["id"]):
        scorer = store.read_state(out, summary["id"])
        pool.add(scorer, int(summary["scan_frames"]), int(summary["frame_pixels"]))
    return pool


def pooled_section(pool: Pool, summaries: list[dict[str, Any]]) -> dict[str, Any]:
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
