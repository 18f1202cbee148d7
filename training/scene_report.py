"""What `python -m training.scene_eval` measured: the summary, the targets, docs/scene.md and its
figures (``scene_warn_share.png``: WARN-or-above share per corruption and severity;
``scene_vs_miou.png``: the statistic against per-frame mIoU).

Pure summarising and drawing (numpy, scipy, OpenCV through :mod:`ros2_fed.figures`); the frames
were run by :mod:`training.scene_eval`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ros2_fed import figures as F
from ros2_fed.jsonio import write_json
from ros2_fed.pipeline.params import PARAMETER_SPECS

#: The issue's targets for the default model.
CLEAN_MAX_SHARE = 0.01
SEVERE = ("snow", "frost", "fog", "gaussian_noise", "motion_blur", "defocus_blur")
SEVERE_FROM, SEVERE_MIN_SHARE = 4, 0.90
FAULT_MAX_FRAMES = 5  # black / saturated: ERROR within this many frames of the onset
FROZEN_MAX_S = 1.0
SPEARMAN_MAX = -0.6
FILES = ("scene_results.json", "scene_warn_share.png", "scene_vs_miou.png", "scene.md")
#: Headrooms over the in-domain 99th percentile the recorded fractions are replayed under
#: (the trade-off table; ros2_fed.scene.WARN_HEADROOM was chosen among them on check drives).
HEADROOMS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


def _frames(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [frame for drive in result["drives"].values() for frame in drive]


def shares(result: dict[str, Any]) -> dict[str, Any]:
    """Frames, share at WARN or above, share at ERROR, mean statistic and mIoU of a condition."""
    frames = _frames(result)
    levels = np.array([f["level"] for f in frames])
    return {
        "frames": len(frames),
        "drives": len(result["drives"]),
        "warn_or_above": float(np.mean(levels >= 1)),
        "error": float(np.mean(levels >= 2)),
        "mean_fraction": float(np.mean([f["fraction"] for f in frames])),
        "mean_miou": float(np.nanmean([f["miou"] for f in frames])),
        "alert_warn_or_above": float(np.mean([f["alert_level"] >= 1 for f in frames])),
    }


def fault_delay(result: dict[str, Any], level: int, onset: int) -> dict[str, Any]:
    """Frames from the fault's onset to the first frame at ``level`` or above, per drive."""
    delays = []
    for drive in result["drives"].values():
        hit = [f["frame"] for f in drive if f["frame"] >= onset and f["level"] >= level]
        delays.append(hit[0] - onset + 1 if hit else None)
    worst = None if None in delays else max(delays)
    return {"frames_per_drive": delays, "worst_frames": worst}


def correlation(results: dict[str, Any]) -> dict[str, Any]:
    """Spearman rank correlation of the statistic with per-frame mIoU (and accuracy) over every
    frame of the corrupted drives; also with the clean frames added."""
    from scipy.stats import spearmanr

    corrupted = [f for r in results.values() if r["kind"] == "corruption" for f in _frames(r)]
    clean = [f for r in results.values() if r["kind"] == "clean" for f in _frames(r)]

    def rho(frames: list[dict[str, Any]], key: str) -> float:
        pairs = [(f["fraction"], f[key]) for f in frames if not math.isnan(f[key])]
        x, y = zip(*pairs)
        return float(spearmanr(x, y)[0])

    return {
        "frames": len(corrupted),
        "spearman_miou": rho(corrupted, "miou"),
        "spearman_accuracy": rho(corrupted, "accuracy"),
        "spearman_miou_with_clean": rho(corrupted + clean, "miou"),
    }


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met."""
    table, faults = summary["corruptions"], summary["faults"]
    severe = {
        f"{name} {sev}": table[name][str(sev)]["warn_or_above"]
        for name in SEVERE
        if name in table
        for sev in range(SEVERE_FROM, 6)
        if str(sev) in table[name]
    }
    worst_severe = min(severe.values()) if severe else None
    clean = summary["clean"]["warn_or_above"]
    black, saturated = faults["black"]["error_delay"], faults["saturated"]["error_delay"]
    frozen = faults["frozen"]["warn_delay_s"]
    rho = summary["correlation"]["spearman_miou"]

    def row(what: str, measured: str, met: Any) -> dict[str, Any]:
        return {"target": what, "measured": measured, "met": bool(met)}

    worst = min(severe, key=severe.get) if severe else "-"
    return [
        row("clean drives WARN or above <= 1 % of frames", f"{100 * clean:.2f} %", clean <= 0.01),
        row(
            "severity >= 4 of snow, frost, fog, gaussian noise, motion blur, defocus blur: "
            "WARN or above >= 90 % of frames",
            f"lowest {100 * worst_severe:.1f} % ({worst})" if severe else "not run",
            worst_severe is not None and worst_severe >= SEVERE_MIN_SHARE,
        ),
        row(
            "black camera ERROR within 5 frames",
            f"{black['worst_frames']} frames (worst drive)",
            black["worst_frames"] is not None and black["worst_frames"] <= FAULT_MAX_FRAMES,
        ),
        row(
            "saturated camera ERROR within 5 frames",
            f"{saturated['worst_frames']} frames (worst drive)",
            saturated["worst_frames"] is not None
            and saturated["worst_frames"] <= FAULT_MAX_FRAMES,
        ),
        row(
            "frozen camera WARN within 1 s at 10 Hz",
            f"{frozen:.1f} s after the last new image" if frozen is not None else "never",
            frozen is not None and frozen <= FROZEN_MAX_S,
        ),
        row(
            "Spearman rank correlation, statistic vs per-frame mIoU <= -0.6",
            f"{rho:.3f}",
            rho <= SPEARMAN_MAX,
        ),
    ]


def summarise(
    results: dict[str, Any],
    calibration: dict[str, Any],
    cost: dict[str, Any],
    how: str,
    args: dict[str, Any],
    fault_onset: int,
    fps: float,
) -> dict[str, Any]:
    """Everything docs/scene.md reports, as one JSON-able dict (``fault_onset``: the first
    faulty frame of a camera-fault drive; ``fps``: the drives' frame rate)."""
    corruptions: dict[str, dict[str, Any]] = {}
    faults: dict[str, Any] = {}
    for r in results.values():
        if r["kind"] == "corruption":
            corruptions.setdefault(r["name"], {})[str(r["severity"])] = shares(r)
        elif r["kind"] not in ("clean", "clean_check"):
            onset = fault_onset + (r["kind"] == "frozen")  # frozen: the first repeated frame
            faults[r["kind"]] = {
                **shares(r),
                "error_delay": fault_delay(r, 2, onset),
                "warn_delay": fault_delay(r, 1, onset),
            }
    frozen = faults.get("frozen", {}).get("warn_delay", {}).get("worst_frames")
    if "frozen" in faults:  # N frames from the first repeat = N / FPS s after the last image
        faults["frozen"]["warn_delay_s"] = None if frozen is None else frozen / fps
    clean = next(r for r in results.values() if r["kind"] == "clean")
    fractions = [f["fraction"] for f in _frames(clean)]
    summary = {
        "model": {"backbone": args["backbone"], "fed": args["fed"], "calibration": how},
        "scene_calibration": calibration.get("scene"),
        "limits": _limits(calibration),
        "parameters": {
            name: spec.default
            for name, spec in PARAMETER_SPECS.items()
            if name.startswith("scene.")
        },
        "settings": {k: str(v) for k, v in args.items()},
        "clean": {
            **shares(clean),
            "fraction_quantiles": {
                str(q): float(np.quantile(fractions, q)) for q in (0.5, 0.9, 0.99, 1.0)
            },
        },
        "clean_check": {
            **(shares(results["clean_check"]) if "clean_check" in results else {}),
            "seeds": args.get("check_seeds"),
        },
        "corruptions": corruptions,
        "faults": faults,
        "warn_tradeoff": warn_tradeoff(results, calibration),
        "correlation": correlation(results),
        "cost_ms": cost,
    }
    summary["targets"] = targets(summary)
    return summary


def _limits(calibration: dict[str, Any]) -> dict[str, Any]:
    """The WARN / ERROR limits the node takes from this calibration, and the headroom."""
    from ros2_fed.pipeline.params import scene_config
    from ros2_fed.scene import WARN_HEADROOM

    config = scene_config({}, calibration)
    return {
        "warn": config.warn_fraction,
        "error": config.error_fraction,
        "from": config.limits_from,
        "headroom": WARN_HEADROOM,
    }


def _replayed_share(result: dict[str, Any], config: Any) -> float:
    """Share of a condition's frames at WARN or above when its recorded fractions go through
    the statistic's rule under ``config`` (a fresh monitor per drive; camera faults left out)."""
    from ros2_fed.scene import SceneMonitor

    levels = []
    for drive in result["drives"].values():
        monitor = SceneMonitor(config)
        levels += [int(monitor.step_statistic(f["fraction"])) for f in drive]
    return float(np.mean(np.array(levels) >= 1))


def warn_tradeoff(results: dict[str, Any], calibration: dict[str, Any]) -> list[dict[str, Any]]:
    """False alarms on clean drives against the share at WARN on the severe corruptions (the
    target's six at severity >= 4) and on every corruption at severity >= 3, with the WARN
    limit at each of :data:`HEADROOMS` times the in-domain 99th percentile (the ERROR limit and
    the other scene parameters as the node takes them)."""
    from ros2_fed.pipeline.params import scene_config
    from ros2_fed.scene import WARN_HEADROOM, limits_from_distribution

    scene = (calibration or {}).get("scene")
    if not scene:
        return []
    rows = []
    model = scene_config({}, calibration)
    for headroom in HEADROOMS:
        limit = limits_from_distribution(scene["quantiles"], headroom)[0]
        error = max(model.error_fraction, limit)
        params = {"scene.warn_fraction": limit, "scene.error_fraction": error}
        config = scene_config(params, calibration)
        severe = {
            f"{r['name']} {r['severity']}": _replayed_share(r, config)
            for r in results.values()
            if r["kind"] == "corruption" and r["name"] in SEVERE and r["severity"] >= SEVERE_FROM
        }
        broad = [
            _replayed_share(r, config)
            for r in results.values()
            if r["kind"] == "corruption" and r["severity"] >= 3
        ]
        rows.append(
            {
                "headroom": headroom,
                "warn_fraction": float(limit),
                "from": "model" if headroom == WARN_HEADROOM else "parameter",
                "clean": _replayed_share(results["clean"], config),
                "clean_check": _replayed_share(results["clean_check"], config)
                if "clean_check" in results
                else None,
                "severe_lowest": min(severe.values()) if severe else None,
                "severe_lowest_of": min(severe, key=severe.get) if severe else None,
                "severity_3_up_mean": float(np.mean(broad)) if broad else None,
            }
        )
    return rows


def headline(summary: dict[str, Any]) -> str:
    met = sum(t["met"] for t in summary["targets"])
    lines = [f"scene_eval: {met}/{len(summary['targets'])} targets met"]
    lines += [
        f"  [{'x' if t['met'] else ' '}] {t['target']}: {t['measured']}"
        for t in summary["targets"]
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _share_colour(share: float) -> tuple[int, int, int]:
    """0 = the OK green, 0.5 = the WARN orange, 1 = the ERROR red (linear in between)."""
    stops = [F.LEVEL_COLOURS[0], F.LEVEL_COLOURS[1], F.LEVEL_COLOURS[2]]
    x = min(max(share, 0.0), 1.0) * 2
    i = min(int(x), 1)
    a, b, t = np.array(stops[i]), np.array(stops[i + 1]), x - i
    return tuple(int(round(v)) for v in (1 - t) * a + t * b)


def warn_share_figure(summary: dict[str, Any]) -> np.ndarray:
    """Heat map: rows = corruptions (and clean), columns = severities 1-5, cell = share of
    frames at WARN or above (colour and number)."""
    table = summary["corruptions"]
    rows = [("clean (no corruption)", {"0": summary["clean"]})]
    rows += [(name.replace("_", " "), table[name]) for name in table]
    severities = sorted({int(s) for cells in table.values() for s in cells}) or [1]
    cell_w, cell_h, left, top = 64, 20, 150, 58
    width = left + cell_w * len(severities) + 16
    img = np.full((top + cell_h * len(rows) + 44, width, 3), F.BACKGROUND, np.uint8)
    F.put_text(img, "Scene status: share of frames at WARN or above (%)", (8, 16))
    F.put_text(img, "corruption", (8, top - 8), 0.35, F.AXIS)
    for j, sev in enumerate(severities):
        x = left + j * cell_w + cell_w // 2
        F.put_text(img, f"severity {sev}", (x, top - 8), 0.35, F.AXIS, "centre")
    for i, (name, cells) in enumerate(rows):
        y = top + i * cell_h
        F.put_text(img, name, (8, y + cell_h - 6), 0.38)
        for j, sev in enumerate(severities):
            cell = cells.get(str(sev)) or (cells.get("0") if i == 0 and j == 0 else None)
            x = left + j * cell_w
            if cell is None:
                continue
            share = cell["warn_or_above"]
            cv2.rectangle(
                img, (x + 1, y + 1), (x + cell_w - 2, y + cell_h - 2), _share_colour(share), -1
            )
            F.put_text(
                img,
                f"{100 * share:.0f}",
                (x + cell_w // 2, y + cell_h - 6),
                0.38,
                (0, 0, 0),
                "centre",
            )
    _share_legend(img, 8, top + cell_h * len(rows) + 28)
    return img


def _share_legend(img: np.ndarray, x: int, baseline: int) -> None:
    F.put_text(img, "0 %", (x, baseline), 0.35)
    for k in range(101):
        cv2.line(
            img, (x + 30 + k, baseline - 9), (x + 30 + k, baseline + 1), _share_colour(k / 100), 1
        )
    F.put_text(img, "100 % of the frames at WARN or above", (x + 136, baseline), 0.35)


def scatter_figure(results: dict[str, Any], summary: dict[str, Any]) -> np.ndarray:
    """Per-frame mIoU against the statistic: corrupted frames coloured by severity, clean
    frames white, the WARN / ERROR limits as vertical lines, Spearman in the title."""
    width, height = 720, 460
    plot = (70, width - 20, 44, height - 70)  # left, right, top, bottom
    img = np.full((height, width, 3), F.BACKGROUND, np.uint8)
    rho = summary["correlation"]["spearman_miou"]
    F.put_text(
        img,
        f"Per-frame mIoU vs the scene statistic (corrupted drives, Spearman {rho:.2f})",
        (8, 18),
    )
    _scatter_axes(img, plot)
    sev_colours = {
        1: (90, 170, 250),
        2: (120, 220, 160),
        3: (240, 220, 80),
        4: (245, 150, 40),
        5: (230, 60, 60),
    }
    for r in results.values():
        if r["kind"] not in ("corruption", "clean"):
            continue
        colour = sev_colours.get(r["severity"], (245, 245, 245))
        for f in _frames(r):
            if not math.isnan(f["miou"]):
                cv2.circle(img, _xy(plot, f["fraction"], f["miou"]), 1, colour, -1)
    limits = summary.get("limits") or {}
    for key, level in (("warn", 1), ("error", 2)):
        if limits.get(key) is not None:
            x = _xy(plot, limits[key], 0)[0]
            cv2.line(img, (x, plot[2]), (x, plot[3]), F.LEVEL_COLOURS[level], 1)
            F.put_text(
                img,
                f"{F.LEVEL_LABELS[level]} {limits[key]:.2f}",
                (x + 3, plot[2] + 12),
                0.35,
                F.LEVEL_COLOURS[level],
            )
    keys = [("clean", (245, 245, 245))] + [(f"severity {s}", c) for s, c in sev_colours.items()]
    x = plot[0]
    for name, colour in keys:
        cv2.circle(img, (x + 4, height - 14), 4, colour, -1)
        x += 14 + F.put_text(img, name, (x + 12, height - 10), 0.35) + 14
    return img


def _xy(plot: tuple[int, int, int, int], fraction: float, miou: float) -> tuple[int, int]:
    left, right, top, bottom = plot
    return (
        int(round(left + min(max(fraction, 0), 1) * (right - left))),
        int(round(bottom - min(max(miou, 0), 1) * (bottom - top))),
    )


def _scatter_axes(img: np.ndarray, plot: tuple[int, int, int, int]) -> None:
    left, right, top, bottom = plot
    cv2.rectangle(img, (left, top), (right, bottom), F.AXIS, 1)
    for k in range(6):
        v = k / 5
        x, y = _xy(plot, v, v)
        cv2.line(img, (x, bottom), (x, bottom + 4), F.AXIS, 1)
        F.put_text(img, f"{v:.1f}", (x, bottom + 16), 0.35, F.AXIS, "centre")
        cv2.line(img, (left - 4, y), (left, y), F.AXIS, 1)
        F.put_text(img, f"{v:.1f}", (left - 7, y + 4), 0.35, F.AXIS, "right")
    F.put_text(
        img,
        "uncertain share of the image above the hood (the scene statistic)",
        ((left + right) // 2, bottom + 32),
        0.4,
        F.TEXT,
        "centre",
    )
    F.put_text(img, "mIoU", (8, top + 4), 0.4)


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def write(summary: dict[str, Any], results: dict[str, Any], docs: Path) -> None:
    """docs/scene_results.json, the two figures and docs/scene.md."""
    from ros2_fed.eval.replay.report import write_png
    from training.scene_markdown import markdown

    docs.mkdir(parents=True, exist_ok=True)
    write_json(docs / FILES[0], summary)
    write_png(docs / FILES[1], warn_share_figure(summary))
    write_png(docs / FILES[2], scatter_figure(results, summary))
    (docs / FILES[3]).write_text(markdown(summary))
