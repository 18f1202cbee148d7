"""The demo's figures page: every number comes from the run's report.json and the demo's own
timings, the machine is named, and the docs copy links only files it writes.

Why: figures copied into the docs by hand stopped matching a fresh run; the page is now written
by the demo itself (`make demo-docs`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ros2_fed import demo_results
from ros2_fed.pipeline import DEFAULT_FED

REPORT = {
    "mode": "live",
    "live": {"play_s": 6.04},
    "bag": {"size": "256x512", "duration_s": 5.9, "storage": "mcap"},
    "frames": {"in_bag": 60, "evaluated": 59, "dropped": 1, "node_dropped": 0},
    "latency_ms": {"what": "publish -> outputs received", "p50": 41.4, "p95": 63.2, "p99": 70.9},
    "alerts": {
        "counts": {"OK": 42, "WARN": 6, "ERROR": 12},
        "transitions": [
            {"index": 0, "level_name": "OK"},
            {"index": 42, "level_name": "WARN"},
            {"index": 48, "level_name": "ERROR"},
            {"index": 50, "level_name": "WARN"},
        ],
        "detection": {
            "recall": 0.4864864864864865,
            "false_alarm_rate": 0.0,
            "positives": 37,
            "negatives": 20,
            "min_object_pixels": 100,
        },
    },
}
TABLE = "| method | source |\n|---|---|\n| FED-U (node) | node |\n"


def test_summary_takes_its_figures_from_the_report() -> None:
    summary = demo_results.summarize(REPORT, {"render": 2.04, "evaluate": 60.0, "total": 62.1})
    assert summary["frames"] == {"in_bag": 60, "evaluated": 59, "dropped": 1, "node_dropped": 0}
    assert summary["latency_ms"]["p50"] == 41.4
    alerts = summary["alerts"]
    assert (alerts["first_warn_frame"], alerts["first_error_frame"]) == (42, 48)
    assert (alerts["recall"], alerts["frames_with_object"]) == (0.4864864864864865, 37)
    assert summary["timings_s"] == {"render": 2.0, "evaluate": 60.0, "total": 62.1}
    machine = summary["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["usable_cores"] >= 1


def test_page_shows_the_figures_and_the_machine() -> None:
    summary = demo_results.summarize(REPORT, {"render": 2.0, "evaluate": 60.0, "total": 62.0})
    text = demo_results.page(summary, TABLE)
    assert f"| machine | {summary['machine']['cpu']}, {summary['machine']['cores']} cores" in text
    assert "| demo wall time (venv ready) | 62 s |" in text
    assert "| of which live playback into the node | 6.0 s |" in text
    assert "| frames in the bag / evaluated / dropped | 60 / 59 / 1" in text
    assert "p50 / p95 / p99 | 41 / 63 / 71 ms |" in text
    assert "| first WARN / first ERROR frame | 42 / 48 |" in text
    assert "0.49 over 37 frames" in text and "0.00 over 20 frames" in text
    assert TABLE.strip() in text


def test_missing_figures_read_as_a_dash() -> None:
    report = {**REPORT, "alerts": {}, "latency_ms": {}}
    text = demo_results.page(demo_results.summarize(report, {}), TABLE)
    assert "| demo wall time (venv ready) | – |" in text
    assert "– over – frames" in text


def test_publish_writes_the_page_json_and_pictures_it_links(tmp_path) -> None:
    report_dir, docs = tmp_path / "report", tmp_path / "docs"
    report_dir.mkdir()
    for name in demo_results.DOC_FIGURES:
        (report_dir / name).write_bytes(b"png " + name.encode())
    summary = demo_results.summarize(REPORT, {"total": 70.0})
    written = demo_results.publish(report_dir, docs, summary, TABLE)
    assert {p.name for p in written} == {
        "demo.md",
        "demo_results.json",
        "demo_alerts.png",
        "demo_overlay.png",
        "demo_mosaic_worst.png",
    }
    assert json.loads((docs / "demo_results.json").read_text())["alerts"]["first_warn_frame"] == 42
    assert (docs / "demo_overlay.png").read_bytes() == b"png overlay.png"
    page = (docs / "demo.md").read_text()
    local = [t for t in re.findall(r"\]\(([^)#]+)\)", page) if "/" not in t and "." in t]
    assert {"demo_alerts.png", "demo_overlay.png", "demo_mosaic_worst.png"} <= set(local)
    for target in local:
        if target.endswith((".png", ".json")):
            assert (docs / target).is_file(), target


def test_the_report_folder_copy_links_the_report_names(tmp_path) -> None:
    summary = demo_results.summarize(REPORT, {"total": 70.0})
    demo_results.write_summary(tmp_path, summary, TABLE)
    page = (tmp_path / "summary.md").read_text()
    assert "(alerts.png)" in page and "(overlay.png)" in page and "(summary.json)" in page
    assert Path(tmp_path / "summary.json").is_file()


def test_overlay_scale_is_the_models_calibration_unless_set() -> None:
    from ros2_fed.demo import colour_scale
    from ros2_fed.paths import default_models_dir

    models = default_models_dir()
    calibration = json.loads((models / f"{DEFAULT_FED}.json").read_text())["calibration"]
    vmin, vmax, threshold = colour_scale(models, {"params": {}})
    assert [vmin, vmax] == calibration["viz_range"]
    assert threshold == calibration["confidence_threshold"]
    explicit = {"viz.confidence_min": 0.2, "viz.confidence_max": 0.9}
    assert colour_scale(models, {"params": explicit})[:2] == (0.2, 0.9)
