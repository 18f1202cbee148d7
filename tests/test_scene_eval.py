"""training.scene_eval's bookkeeping without a model: conditions, fault frames, per-frame mIoU,
and the summary / targets / page / figures it writes from per-frame records (scene_report,
scene_markdown). The model runs are covered by tests/test_scene_default_model.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training import scene_eval, scene_report


def _record(frame: int, level: int, fraction: float, miou: float) -> dict:
    return {
        "frame": frame,
        "level": level,
        "fraction": fraction,
        "fault": "",
        "identical_frames": 0,
        "alert_level": 0,
        "miou": miou,
        "accuracy": miou,
    }


def _result(kind: str, name: str, severity: int, levels: list[int], base: float) -> dict:
    frames = [
        _record(i, lv, base + 0.01 * i, 0.7 - base - 0.01 * i) for i, lv in enumerate(levels)
    ]
    return {"kind": kind, "name": name, "severity": severity, "drives": {"600": frames}}


def results() -> dict:
    n, onset = 20, scene_eval.FAULT_ONSET
    out = {"clean": _result("clean", "clean", 0, [0] * n, 0.05)}
    for sev in (4, 5):
        for name in scene_report.SEVERE:
            out[f"{name}_{sev}"] = _result("corruption", name, sev, [0] + [1] * (n - 1), 0.3)
    out["black"] = _result("black", "black", 0, [0] * (onset + 2) + [2] * (n - onset - 2), 0.1)
    out["saturated"] = _result("saturated", "saturated", 0, [0] * (onset + 6) + [2] * 4, 0.1)
    out["uniform"] = _result("uniform", "uniform", 0, [0] * n, 0.1)
    out["frozen"] = _result("frozen", "frozen", 0, [0] * (onset + 5) + [1] * 5, 0.1)
    return out


def test_conditions_cover_every_corruption_severity_and_fault() -> None:
    from training.datasets.cityscapes_c import CORRUPTIONS

    args = scene_eval.build_parser().parse_args(["--corrupt-drives", "2", "--slow-drives", "1"])
    conds = scene_eval.conditions(args)
    keys = [c.key for c in conds]
    assert keys[0] == "clean" and len(conds[0].seeds) == 10
    assert len([c for c in conds if c.kind == "corruption"]) == 5 * len(CORRUPTIONS)
    assert {"black", "saturated", "uniform", "frozen"} <= set(keys)
    glass = next(c for c in conds if c.name == "glass_blur")
    assert glass.seeds == (600,) and next(c for c in conds if c.name == "fog").seeds == (600, 601)


def test_fault_frames_start_at_the_onset_and_frozen_repeats_bytes() -> None:
    images = np.random.default_rng(0).integers(0, 255, (14, 8, 8, 3), dtype=np.uint8)
    onset = scene_eval.FAULT_ONSET
    black = list(
        scene_eval.condition_frames(scene_eval.Condition("black", "black", 0, ()), images, 0)
    )
    assert np.array_equal(black[onset - 1], images[onset - 1]) and not black[onset].any()
    frozen = list(
        scene_eval.condition_frames(scene_eval.Condition("frozen", "frozen", 0, ()), images, 0)
    )
    assert all(f.tobytes() == images[onset].tobytes() for f in frozen[onset:])


def test_frame_miou_matches_a_direct_count() -> None:
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 5, 5]], np.uint8)
    miou, accuracy = scene_eval.frame_miou(pred, label)
    # class 0: 1 / 3, class 1: 2 / 3, class 2: 1 / 2 (void pixels ignored)
    assert miou == pytest.approx(np.mean([1 / 3, 2 / 3, 1 / 2])) and accuracy == 4 / 6


def test_summary_targets_page_and_figures(tmp_path: Path) -> None:
    res = results()
    from ros2_fed.scene import scene_record

    in_domain = scene_record(np.linspace(0.02, 0.15, 101), 0.8, 0.1)  # WARN above ~0.15
    calibration = {"confidence_threshold": 0.8, "scene": in_domain}
    cost = {"shape": [512, 1024], "runs": 3, "min_ms": 0.5, "median_ms": 0.6, "p95_ms": 0.9}
    args = vars(scene_eval.build_parser().parse_args([]))
    summary = scene_report.summarise(res, calibration, cost, "given", args, 10, 10.0)
    met = {t["target"].split(" ")[0]: t for t in summary["targets"]}
    assert met["clean"]["met"] and met["Spearman"]["met"]  # fraction up, mIoU down
    severe = next(t for t in summary["targets"] if t["target"].startswith("severity"))
    assert severe["met"] and "95.0 %" in severe["measured"]  # 19 of 20 frames
    assert summary["faults"]["black"]["error_delay"]["worst_frames"] == 3
    saturated = next(t for t in summary["targets"] if t["target"].startswith("saturated"))
    assert not saturated["met"] and "7 frames" in saturated["measured"]
    assert summary["faults"]["frozen"]["warn_delay_s"] == pytest.approx(0.5)
    rows = summary["warn_tradeoff"]  # the recorded fractions replayed under other limits
    assert [r["headroom"] for r in rows] == list(scene_report.HEADROOMS)
    assert [r["from"] for r in rows].count("model") == 1
    clean = [row["clean"] for row in rows]
    assert clean == sorted(clean, reverse=True) and clean[0] > 0 and clean[-1] == 0
    scene_report.write(summary, res, tmp_path)
    page = (tmp_path / "scene.md").read_text()
    assert "python -m training.scene_eval" in page and "| **no** |" in page
    assert "## The WARN limit" in page
    assert json.loads((tmp_path / "scene_results.json").read_text())["clean"]["frames"] == 20
    for name in ("scene_warn_share.png", "scene_vs_miou.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "targets met" in scene_report.headline(summary)
