"""The fleet report: ``OUT/report.json`` (every number) and ``OUT/report.md`` (tables).

What it holds: a row per bag (rig camera) sorted worst first (lowest OOD AuROC of the node's
score; IDM AuROC for a bag without OOD ground truth; bags without ground truth last), the POOLED
row (:mod:`.pooling`: merged scorer states), every method pooled, the fleet's worst frames (bag,
topic, stamp, what was wrong) to open in rviz or Foxglove, the failed bags with their one-line
reasons, the model and engine fingerprints, the settings, and the run's wall time and speed.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Optional

from ros2_fed.eval.early_warning import pool_early_warning
from ros2_fed.eval.early_warning_markdown import early_warning_lines
from ros2_fed.eval.fleet.task import WORST_FRAMES
from ros2_fed.eval.replay import report as rep
from ros2_fed.fileio import atomic_write_bytes
from ros2_fed.jsonio import write_json

ENGINE_KEYS = ("runtime", "runtime_version", "precision", "input_shape", "model_hash")


def row_badness(row: dict[str, Any]) -> tuple[int, float, str]:
    """Sort key, worst first: (has a metric, its value, id)."""
    node = row.get("node") or {}
    value = node.get("ood_auroc")
    if value is None:
        value = node.get("idm_auroc")
    return (0, float(value), row["id"]) if value is not None else (1, 0.0, row["id"])


def fleet_worst_frames(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The worst frames of all bags (per-frame AuROC ranking first, as each bag ranks them)."""
    frames = [
        {"id": s["id"], "bag": s["bag"], "camera": s["camera"], "topic": s["topic"], **f}
        for s in summaries
        for f in s.get("worst_frames") or []
    ]
    frames.sort(key=lambda f: (not f["by_auroc"], -f["badness"], f["id"], f["index"]))
    return frames[:WORST_FRAMES]


def models(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct models / engines the bags ran on (one, unless frame sizes differ)."""
    seen: dict[str, dict[str, Any]] = {}
    for s in summaries:
        engine = {k: (s.get("engine") or {}).get(k) for k in ENGINE_KEYS}
        key = f"{s.get('model')}|{sorted(engine.items())}"
        entry = seen.setdefault(key, {"description": s.get("model"), "engine": engine, "bags": 0})
        entry["bags"] += 1
    return list(seen.values())


#: Appearances listed in the fleet's report.md (never-alerted first); all are in report.json.
APPEARANCES_SHOWN = 50


def pooled_early_warning(summaries: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Every bag's object appearances in one list (bag-id order, each named by its bag), the
    median / p90 first-alert delay over that list and the per-size counts added: what one
    report over all the fleet's drives gives, whatever the workers' order."""
    ordered = sorted(summaries, key=lambda s: s["id"])
    return pool_early_warning(
        [s.get("early_warning") for s in ordered], [s["id"] for s in ordered]
    )


def assemble(
    summaries: list[dict[str, Any]],
    pooled: dict[str, Any],
    failed: list[dict[str, Any]],
    run: dict[str, Any],
) -> dict[str, Any]:
    """report.json's content. ``run``: arguments, settings, executor, counts and timing."""
    rows = sorted(summaries, key=row_badness)
    return {
        "complete": False,
        "tool": "fed_fleet_eval",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **run,
        "models": models(summaries),
        "rows": [{k: v for k, v in r.items() if k != "worst_frames"} for r in rows],
        "pooled": {**pooled, "early_warning": pooled_early_warning(summaries)},
        "worst_frames": fleet_worst_frames(summaries),
        "failed": sorted(failed, key=lambda f: f["id"]),
    }


def write(out: Path, report: dict[str, Any]) -> Path:
    """report.json (complete), then report.md; returns the report.md path."""
    report["complete"] = True
    text = markdown(report)
    write_json(out / "report.json", report)
    md = out / "report.md"
    atomic_write_bytes(md, text.encode())
    return md


def _pct(value: Any) -> str:
    return rep._pct(value)


def _ratio(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}"


def scene_text(share: Optional[dict[str, float]]) -> str:
    if not share:
        return "–"
    return " / ".join(f"{level} {100 * v:.0f} %" for level, v in share.items())


def bag_table(report: dict[str, Any]) -> str:
    """Markdown: the POOLED row, then a row per bag, worst first."""
    scene = any(r.get("scene") for r in report["rows"]) or report["pooled"].get("scene")
    head = ["bag", "camera", "frames", "OOD AuROC", "OOD AP", "OOD FPR95", "IDM AuROC", "mIoU"]
    head += ["alert recall", "false alarms"] + (["scene status"] if scene else []) + ["frames/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pooled = dict(report["pooled"], id="**POOLED**", camera="", throughput_fps=None)
    for row in [pooled] + report["rows"]:
        link = row["id"] if row is pooled else f"[{row['id']}](bags/{row['id']}/report.md)"
        node, det = row.get("node") or {}, row["alerts"].get("detection") or {}
        cells = [link, row.get("camera") or "", str(row["frames"]["evaluated"])]
        cells += [_pct(node.get(k)) for k in ("ood_auroc", "ood_ap", "ood_fpr95", "idm_auroc")]
        cells += [_pct(node.get("miou")), _ratio(det.get("recall"))]
        cells += [_ratio(det.get("false_alarm_rate"))]
        cells += [scene_text(row.get("scene"))] if scene else []
        fps = row.get("throughput_fps")
        cells.append("–" if fps is None else f"{fps:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def worst_table(frames: list[dict[str, Any]]) -> str:
    if not frames:
        return "_no frames_\n"
    lines = ["| # | bag | topic | stamp | frame | what was wrong |", "|---|---|---|---|---|---|"]
    for n, f in enumerate(frames, 1):
        lines.append(
            f"| {n} | [{f['id']}](bags/{f['id']}/report.md) | `{f['topic']}` | {f['stamp']} | "
            f"{f['index']} | {f['what']} |"
        )
    return "\n".join(lines) + "\n"


def failed_table(failed: list[dict[str, Any]]) -> list[str]:
    if not failed:
        return ["No bag failed.", ""]
    lines = ["| bag | path | attempts | reason |", "|---|---|---|---|"]
    for f in failed:
        reason = f["reason"].replace("|", "\\|")
        lines.append(f"| {f['id']} | `{f['bag']}` | {f['attempts']} | {reason} |")
    return lines + [""]


def model_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for m in report["models"]:
        engine = ", ".join(f"{k} {v}" for k, v in m["engine"].items() if v is not None)
        lines.append(f"- {m['description']} ({m['bags']} bags): {engine or 'no engine metadata'}")
    settings = report.get("settings") or {}
    shown = {k: v for k, v in settings.items() if v not in (None, "", [], False)}
    lines += ["", "Settings: " + ", ".join(f"`{k}={v}`" for k, v in sorted(shown.items()))]
    return lines + [""]


def summary_lines(report: dict[str, Any]) -> list[str]:
    counts, timing, ex = report["counts"], report["timing"], report["executor"]
    where = f"{ex['kind']}, {ex['workers']} workers x {ex['threads_per_worker']} thread(s)"
    if ex["kind"] == "ray":
        where += f", {ex.get('nodes')} node(s) at {ex.get('address')}"
    return [
        f"# fed_fleet_eval: {counts['tasks']} bags",
        "",
        f"**Complete.** {counts['done']} of {counts['tasks']} evaluated "
        f"({counts['evaluated_now']} in this run, {counts['resumed']} from an earlier run), "
        f"**{counts['failed']} failed**; "
        f"executor {where}. This run: {timing['wall_s']:.1f} s, "
        f"{timing['bags_per_s']:.3f} bags/s, {timing['frames_per_s']:.1f} frames/s "
        f"({timing['frames_now']} frames).",
        "",
    ]


def markdown(report: dict[str, Any]) -> str:
    pooled = report["pooled"]
    lines = summary_lines(report)
    lines += [
        "## Per bag, worst first, and POOLED",
        "",
        f"The node's row (`{next(iter(pooled['method_sources']), 'node')}`, score = 1 - "
        "confidence), values in %. POOLED merges the bags' scorer states: exactly one scorer "
        "over every frame of every bag (OOD pooled over pixels, IDM per frame then averaged, "
        "mIoU from the summed confusion matrices); alert recall and false alarms from the "
        "bags' frame counts added. Worst first: lowest OOD AuROC (IDM AuROC without OOD "
        "ground truth).",
        "",
        bag_table(report),
    ]
    lines += [
        line.replace("Alert detection", "Pooled alert detection", 1)
        for line in rep.detection_lines(pooled["alerts"].get("detection"))
    ]
    lines += early_warning_lines(
        pooled.get("early_warning"), "## Early warning (pooled)", APPEARANCES_SHOWN
    )
    lines += ["## Pooled: every method", "", rep.metrics_table(pooled)]
    lines += [f"## The {WORST_FRAMES} worst frames of the fleet", ""]
    lines += [
        "Ranked like each bag's mosaic (per-frame AuROC of the node's score against "
        "misclassified-or-OOD pixels; the uncertain fraction without ground truth). Open the "
        "bag at the stamp in Foxglove or `ros2 bag play --start-offset`.",
        "",
        worst_table(report["worst_frames"]),
    ]
    lines += ["## Failed bags", ""] + failed_table(report["failed"])
    clips = report.get("clips")
    if clips:  # --clips
        lines += [
            "## Labelling queue",
            "",
            f"{clips['clips_queued']} clips queued of {clips['clips_found']} cut from the bags "
            f"({clips['clips_folded']} near-duplicates folded): [clips/clips.md](clips/clips.md), "
            "frames and pre-labels in `clips/labelling/`.",
            "",
        ]
    lines += ["## Model and settings", ""] + model_lines(report)
    return "\n".join(lines) + "\n"
