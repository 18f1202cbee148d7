"""The demo's figures as one file a page can show: how long it took, the node's latency, dropped
frames, the alerts' recall and false alarms, the metrics table, and the machine it ran on.

Why: figures copied by hand into the docs stop matching the next run. ``make demo-docs`` (the
demo with ``--docs docs``) writes ``docs/demo.md`` + ``docs/demo_results.json`` and the three
pictures from one run, so every number on that page comes from the same command.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from ros2_fed.fileio import atomic_write_bytes
from ros2_fed.jsonio import write_json

# report file -> the name it has in the docs folder
DOC_FIGURES = {
    "alerts.png": "demo_alerts.png",
    "overlay.png": "demo_overlay.png",
    "mosaic_worst.png": "demo_mosaic_worst.png",
}
DOC_PAGE = "demo.md"
DOC_JSON = "demo_results.json"


def cpu_model() -> str:
    """The processor's marketing name (/proc/cpuinfo on Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    versions = {}
    for package in ("onnxruntime", "torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "system": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def summarize(report: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    """The figures a reader asks about first, from fed_bag_eval's report.json and the demo's
    own step timings (seconds)."""
    alerts = report.get("alerts") or {}
    detection = alerts.get("detection") or {}
    firsts: dict[str, Optional[int]] = {"WARN": None, "ERROR": None}
    for change in alerts.get("transitions") or []:
        name = change.get("level_name")
        if name in firsts and firsts[name] is None:
            firsts[name] = change.get("index")
    latency = report.get("latency_ms") or {}
    frames = report.get("frames") or {}
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "playback_s": (report.get("live") or {}).get("play_s"),
        "mcd_passes": (report.get("reference") or {}).get("mcd_passes"),
        "mode": report.get("mode"),
        "bag": {k: (report.get("bag") or {}).get(k) for k in ("size", "duration_s", "storage")},
        "frames": {k: frames.get(k) for k in ("in_bag", "evaluated", "dropped", "node_dropped")},
        "latency_ms": {k: latency.get(k) for k in ("what", "p50", "p95", "p99")},
        "alerts": {
            "counts": alerts.get("counts"),
            "first_warn_frame": firsts["WARN"],
            "first_error_frame": firsts["ERROR"],
            "recall": detection.get("recall"),
            "frames_with_object": detection.get("positives"),
            "false_alarm_rate": detection.get("false_alarm_rate"),
            "frames_without_object": detection.get("negatives"),
            "min_object_pixels": detection.get("min_object_pixels"),
        },
    }


def _fmt(value: Any, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def summary_rows(summary: dict[str, Any]) -> list[str]:
    """The figures as a Markdown table."""
    t, frames, lat, al = (
        summary["timings_s"],
        summary["frames"],
        summary["latency_ms"],
        summary["alerts"],
    )
    mc = summary["machine"]
    rows = [
        ("machine", f"{mc['cpu']}, {mc['cores']} cores ({mc['usable_cores']} usable)"),
        ("software", f"Python {mc['python']}, ONNX Runtime {mc['packages'].get('onnxruntime')}"),
        ("run", f"{summary['date']}, mode `{summary['mode']}`"),
        ("demo wall time (venv ready)", _fmt(t.get("total"), "{:.0f} s")),
        ("rendering the bag", _fmt(t.get("render"), "{:.0f} s")),
        ("node start, playback and scoring", _fmt(t.get("evaluate"), "{:.0f} s")),
        ("of which live playback into the node", _fmt(summary.get("playback_s"), "{:.1f} s")),
        ("frames in the bag / evaluated / dropped", _frames_cell(frames)),
        (f"latency {lat.get('what') or ''} p50 / p95 / p99", _latency_cell(lat)),
        (
            "first WARN / first ERROR frame",
            f"{_fmt(al['first_warn_frame'], '{}')} / {_fmt(al['first_error_frame'], '{}')}",
        ),
        (
            "alert recall (frames with an unknown object >= "
            f"{_fmt(al['min_object_pixels'], '{}')} px)",
            f"{_fmt(al['recall'])} over {_fmt(al['frames_with_object'], '{}')} frames",
        ),
        (
            "false alarms (frames without any unknown-object pixel)",
            f"{_fmt(al['false_alarm_rate'])} over "
            f"{_fmt(al['frames_without_object'], '{}')} frames",
        ),
    ]
    return ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]


def _frames_cell(frames: dict[str, Any]) -> str:
    cell = f"{frames['in_bag']} / {frames['evaluated']} / {frames['dropped']}"
    if frames.get("node_dropped") is not None:
        cell += f" (the node's own count: {frames['node_dropped']})"
    return cell


def _latency_cell(latency: dict[str, Any]) -> str:
    return " / ".join(_fmt(latency.get(k), "{:.0f}") for k in ("p50", "p95", "p99")) + " ms"


def page(
    summary: dict[str, Any], metrics_table: str, names: Optional[dict[str, str]] = None
) -> str:
    """docs/demo.md: the figures, the metrics table and the three pictures (``names``: report
    file -> the name the page links, default the report folder's own names)."""
    names = names or {}
    lines = [
        "# Demo results",
        "",
        "<!-- Written by `make demo-docs` (python -m ros2_fed.demo --docs docs); edit "
        "ros2_fed/demo_results.py, not this file. -->",
        "",
        f"What `make demo` measured on one run: a {summary['frames']['in_bag']}-frame "
        f"{summary['bag']['size']} synthroad drive (unknown objects appear on the road partway "
        "through) played into `fed_node` with the embedded default model. Most of "
        "the time is scoring: the reference methods recompute the backbone for every frame"
        + (f", MC dropout {summary['mcd_passes']} times" if summary.get("mcd_passes") else "")
        + ". "
        "`make demo-docs` re-runs it and rewrites this page, "
        f"[`{names.get('summary.json', 'summary.json')}`]"
        f"({names.get('summary.json', 'summary.json')}) and the pictures below.",
        "",
        *summary_rows(summary),
        "",
        "## Detection and segmentation",
        "",
        "Values in %. `node` is what `fed_node` published (score = 1 - confidence); `reference` "
        "rows are `fed_eval`'s methods on the same decoded frames (FED from the checkpoints in "
        "torch, then MSP, max-logit, energy, entropy, SML, MC dropout), so the node's row can be "
        "checked against its own reference.",
        "",
        metrics_table.rstrip(),
        "",
        *_figure_lines(names),
    ]
    return "\n".join(lines) + "\n"


def _figure_lines(names: dict[str, str]) -> list[str]:
    def link(name: str) -> str:
        return names.get(name, name)

    return [
        "## Alert timeline",
        "",
        "White line: the largest uncertain region on the road ahead, per frame, against the WARN "
        "and ERROR limits; band: the alert level the node published; bottom row: the ground "
        "truth (white = an unknown object of >= 100 px is visible). "
        "[How the alert decides](alerts-guide.md).",
        "",
        f"![demo: alert timeline]({link('alerts.png')})",
        "",
        "## Overlay",
        "",
        "Camera | overlay at three frames of the drive; red = uncertain, blue = certain, colour "
        "range and alert threshold from the model's calibration (the bar on the right).",
        "",
        f"![demo: overlay]({link('overlay.png')})",
        "",
        "## Worst frames",
        "",
        "The three frames where the node's score separates wrong from right pixels worst "
        "(per-frame AuROC): input | segmentation | confidence | ground truth (blue = correct, "
        "red = misclassified or unknown object, black = void).",
        "",
        f"![demo: worst frames]({link('mosaic_worst.png')})",
    ]


def write_summary(report_dir: Path, summary: dict[str, Any], metrics_table: str) -> None:
    """summary.json and summary.md next to the report (every demo run)."""
    write_json(report_dir / "summary.json", summary)
    atomic_write_bytes(report_dir / "summary.md", page(summary, metrics_table).encode())


def publish(
    report_dir: Path, docs: Path, summary: dict[str, Any], metrics_table: str
) -> list[Path]:
    """The run's page, JSON and figures into the docs folder under their docs names; the paths
    written."""
    docs.mkdir(parents=True, exist_ok=True)
    names = {**DOC_FIGURES, "summary.json": DOC_JSON}
    written = [docs / DOC_PAGE, docs / DOC_JSON]
    atomic_write_bytes(written[0], page(summary, metrics_table, names).encode())
    write_json(written[1], summary)
    for source, name in DOC_FIGURES.items():
        if (report_dir / source).is_file():
            shutil.copyfile(report_dir / source, docs / name)
            written.append(docs / name)
    return written
