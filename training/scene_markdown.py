"""docs/scene.md from a `python -m training.scene_eval` summary (training/scene_report.py).

The page says what the scene status is, how it was measured, every number behind the targets
and how to reproduce them; the numbers come only from the summary.
"""

from __future__ import annotations

import os
from typing import Any

INTRO = """# Scene health: is the whole picture out of the model's depth?

`~/alerts` answers "is something unknown on the road ahead?" and judges compact regions on the
road on purpose. A frame that is uncertain *everywhere* (fog, snow, a dirty or blocked lens,
night, a camera pointed where the model was never trained) or a broken camera is a different
question. fed_node answers it per camera with a **scene status** on `/diagnostics`
(`fed_node: scene`, or `fed_node: NAME scene` with surround cameras) and on `~/alerts` right
after the alert status:

{levels}

It is judged from two things:

- **the model's confidence as a whole**: the *uncertain share*, the share of the image above the
  ego hood whose confidence is below the model's calibrated operating threshold (the one the
  alerts use), compared with that share's own distribution on clean validation frames, which
  `fed_calibrate` measures and stores in the FED checkpoint next to the alert threshold (so it
  means the same for every model; `scene.warn_fraction` / `scene.error_fraction` override it);
- **camera faults that need no model**: black, saturated or uniform frames (on a small
  subsample of the image), and a frozen camera (the message's bytes identical to the previous
  frame's while the stamps advance).

Levels rise after `scene.raise_frames` frames in a row over a limit and fall after
`scene.clear_frames` frames below it minus `scene.hysteresis`, like the alerts. Every number
the status was judged on is a key-value: `uncertain_fraction`, `warn_fraction`,
`error_fraction`, `limits_from` (model / parameters / uncalibrated), `confidence_threshold`,
`consecutive` (frames in a row), `fault`, `fault_frames`, `identical_frames`, the in-domain
quantiles, ... All `scene.*` parameters change at run time; they are listed with their
defaults in [Parameters](parameters.md). `fed_bag_eval` replays the status exactly (the same
frame path): its report has a scene timeline under the alert timeline and a `scene` summary
(share of frames per level) in `report.json`.

A model without a scene calibration still gets a scene status (camera faults as above; the
uncertain share against fixed limits, `limits_from: uncalibrated`). Record the calibration with

    fed_calibrate --backbone BACKBONE --fed FED --data-root CITYSCAPES_LAYOUT_ROOT --into
"""


LEVELS = (
    ("OK", "`ok:`", "the frame is about as uncertain as clean validation frames"),
    (
        "WARN",
        "`degraded:`",
        "the uncertain share of the image is more than twice what 99 % of the model's clean "
        "validation frames have, or the camera is frozen",
    ),
    (
        "ERROR",
        "`perception unusable:`",
        "about half the image or more is uncertain, or the camera delivers black, saturated or "
        "uniform frames, or has been frozen for 3 s",
    ),
)


def _levels() -> str:
    rows = ["| level | message starts with | when |", "|---|---|---|"]
    return "\n".join(rows + [f"| {a} | {b} | {c} |" for a, b, c in LEVELS])


def _path(path: Any) -> str:
    """A path as the reader's checkout has it (relative to the working directory when inside)."""
    relative = os.path.relpath(str(path))
    return relative if not relative.startswith("..") else str(path)


def _frames_list(delays: list[Any]) -> str:
    return ", ".join("–" if d is None else str(d) for d in delays)


def _pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * float(value):.{digits}f}"


def _setup(summary: dict[str, Any]) -> list[str]:
    cal = summary.get("scene_calibration") or {}
    q = cal.get("quantiles") or {}
    s = summary["settings"]
    corr = summary["correlation"]
    return [
        "## How it was measured",
        "",
        "    python -m training.scene_eval",
        "",
        f"reproduces every number and figure on this page (the results are kept per condition "
        f"under `{s['work']}`, keyed by the model; delete it to start afresh). Model: "
        f"`{_path(s['backbone'])}` + `{_path(s['fed'])}` (fed_node's default); scene "
        f"calibration: {summary['model']['calibration'].replace(s['fed'], _path(s['fed']))}.",
        "",
        f"- **In-domain distribution** of the uncertain share on {cal.get('frames')} clean "
        f"validation frames (threshold {cal.get('confidence_threshold', 0):.4f}, hood "
        f"{cal.get('hood')}): median {_pct(q.get('0.5'))} %, 95th percentile "
        f"{_pct(q.get('0.95'))} %, 99th {_pct(q.get('0.99'))} %, max {_pct(q.get('1.0'))} %. "
        f"Limits the node takes from it: **WARN above {_pct(summary['limits']['warn'])} %** "
        f"({summary['limits']['headroom']:g} x the 99th percentile), **ERROR above "
        f"{_pct(summary['limits']['error'])} %** (0.4 of the way from there to 100 %).",
        f"- **Drives**: synthroad drives without unknown objects, seeds {s['seeds']} (no other "
        f"evaluation uses them), {s['frames']} frames each at 10 Hz, {s['size']} (the model's "
        f"size). Clean: all drives; every corruption at every severity: the first "
        f"{s['corrupt_drives']} drives (glass blur, seconds per frame: the first "
        f"{s['slow_drives']}); camera faults: the first {s['corrupt_drives']} drives, the fault "
        "starting at frame 10.",
        "- **Corruptions**: every corruption of the imagecorruptions package (the project's "
        "Cityscapes-C machinery, `training/datasets/cityscapes_c.py`), severities 1-5, drawn "
        "anew for every frame (seeded by drive and frame).",
        "- **Path**: every frame runs through the node's frame path (`FrameProcessor` with the "
        "node's default parameters, the ONNX Runtime engine fed_node builds for these "
        "checkpoints), as rgb8 Image messages stamped at 10 Hz; a fresh node per drive, so the "
        f"first frame of a drive cannot be WARN (`scene.raise_frames` "
        f"{summary['parameters']['scene.raise_frames']}). Shares below are over all frames.",
        f"- **Segmentation quality**: per-frame mIoU over the classes in the ground truth or the "
        f"prediction (void ignored), on {corr['frames']} corrupted frames.",
        "",
    ]


def _targets(summary: dict[str, Any]) -> list[str]:
    lines = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in summary["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    clean = summary["clean"]
    quant = clean["fraction_quantiles"]
    lines += [
        "",
        f"Clean drives: {clean['frames']} frames, {_pct(clean['warn_or_above'], 2)} % at WARN "
        f"or above, {_pct(clean['error'], 2)} % ERROR; their uncertain share: median "
        f"{_pct(quant['0.5'])} %, 99th percentile {_pct(quant['0.99'])} %, max "
        f"{_pct(quant['1.0'])} %.",
        "",
    ]
    return lines


def _tradeoff(summary: dict[str, Any]) -> list[str]:
    """The WARN limit's trade-off, from the recorded fractions replayed under other limits."""
    check = summary.get("clean_check") or {}
    lines = [
        "## The WARN limit: false alarms against sensitivity",
        "",
        "The WARN limit is a headroom times the in-domain 99th percentile (`WARN_HEADROOM` in "
        "`ros2_fed/scene.py`). The headroom was chosen before this evaluation as the smallest "
        "of the values below that kept the clean *check drives* at <= 1 % WARN; the table "
        "replays the recorded per-frame statistic of every drive under each headroom (camera "
        "faults left out; `scene.warn_fraction` sets a limit directly). WARN-or-above share "
        "in %:",
        "",
        "| headroom | WARN above | clean drives | check drives | lowest of the six at "
        "severity >= 4 | every corruption at severity >= 3 (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary.get("warn_tradeoff") or []:
        label = f"{row['headroom']:g}" + (" (default)" if row["from"] == "model" else "")
        lines.append(
            f"| {label} | {_pct(row['warn_fraction'])} % | {_pct(row['clean'], 2)} | "
            f"{_pct(row['clean_check'], 2)} | "
            f"{_pct(row['severe_lowest'])} ({row['severe_lowest_of']}) | "
            f"{_pct(row['severity_3_up_mean'])} |"
        )
    if check.get("frames"):
        lines += [
            "",
            f"Check drives: {check['frames']} frames of {check['drives']} other clean drives "
            f"(seeds {check['seeds']}), used only to choose the headroom; at the default "
            f"{_pct(check['warn_or_above'], 2)} % of their frames are WARN or above. How it "
            "came about: the first evaluations put the WARN limit at the 99th percentile "
            "itself (headroom 1) and missed the false-alarm target on the clean drives above "
            "(5 % with the earlier FED-U default, 12.5 % with FED-C); the headroom was then "
            "chosen on the check drives alone, so the clean evaluation drives are not quite "
            "unseen.",
        ]
    return lines + [""]


def _table(summary: dict[str, Any]) -> list[str]:
    table = summary["corruptions"]
    severities = sorted({int(s) for cells in table.values() for s in cells})
    head = "| corruption | " + " | ".join(f"sev. {s}" for s in severities) + " |"
    lines = [
        "## WARN or above per corruption and severity",
        "",
        "![Share of frames at WARN or above per corruption and severity](scene_warn_share.png)",
        "",
        "Share of frames at WARN or above in % (ERROR in brackets); mean per-frame mIoU under "
        f"it (clean drives: mIoU {summary['clean']['mean_miou']:.2f}).",
        "",
        head,
        "|---|" + "---|" * len(severities),
    ]
    for name, cells in table.items():
        row = [
            f"{_pct(c['warn_or_above'], 0)} ({_pct(c['error'], 0)}) · {c['mean_miou']:.2f}"
            if (c := cells.get(str(s)))
            else "–"
            for s in severities
        ]
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(row) + " |")
    return lines + [""]


def _faults(summary: dict[str, Any]) -> list[str]:
    lines = [
        "## Camera faults",
        "",
        "From frame 10 on the camera delivers all-zero (black), all-255 (saturated) or all-128 "
        "(uniform grey) frames, or the same message bytes again and again (frozen, stamps "
        "advancing). Delay: the first frame at the level counted from the first faulty frame "
        "(frozen: from the first repeated frame) as 1, per drive.",
        "",
        "| fault | frames to WARN | frames to ERROR |",
        "|---|---|---|",
    ]
    for name, f in summary["faults"].items():
        warn = _frames_list(f["warn_delay"]["frames_per_drive"])
        error = _frames_list(f["error_delay"]["frames_per_drive"])
        lines.append(f"| {name} | {warn} | {error} |")
    frozen_error = summary["parameters"].get("scene.frozen_error_frames")
    return lines + [
        "",
        f"A frozen camera goes ERROR after `scene.frozen_error_frames` ({frozen_error}) identical "
        "frames; the drives end before that (–).",
        "",
    ]


def _correlation(summary: dict[str, Any]) -> list[str]:
    corr = summary["correlation"]
    return [
        "## Does the status track how wrong the segmentation is?",
        "",
        "![Per-frame mIoU against the uncertain share](scene_vs_miou.png)",
        "",
        f"Spearman rank correlation between the uncertain share and per-frame mIoU over the "
        f"{corr['frames']} corrupted frames: **{corr['spearman_miou']:.3f}** (pixel accuracy: "
        f"{corr['spearman_accuracy']:.3f}; with the clean frames added: "
        f"{corr['spearman_miou_with_clean']:.3f}). More uncertain, worse segmentation.",
        "",
        *_confidently_wrong(summary),
    ]


def _confidently_wrong(summary: dict[str, Any]) -> list[str]:
    """The frames in the scatter's bottom left corner: wrong, and the model sure of it."""
    contrast = summary["corruptions"].get("contrast") or {}
    if not {"4", "5"} <= set(contrast):
        return []
    return [
        "The points at the bottom left are frames the model is confidently wrong about: "
        "contrast at severity 4-5, an almost uniform grey image segmented as one class. The "
        "statistic cannot see them; the uniform-frame check reports ERROR on "
        f"{_pct(contrast['4']['error'], 0)} % (severity 4) and {_pct(contrast['5']['error'], 0)} "
        "% (severity 5) of those frames.",
        "",
    ]


def _cost(summary: dict[str, Any]) -> list[str]:
    cost = summary["cost_ms"]
    return [
        "## Cost per frame",
        "",
        f"The scene stage on a {cost['shape'][0]}x{cost['shape'][1]} frame (rgb8 message, "
        f"float32 confidence), {cost['runs']} runs on the evaluation machine (2 shared CPU "
        f"cores): median **{cost['median_ms']:.2f} ms**, min {cost['min_ms']:.2f} ms, p95 "
        f"{cost['p95_ms']:.2f} ms. About half of it is the CRC-32 of the raw bytes (frozen "
        "camera); the statistic is one comparison over the confidence map, the fault checks "
        "look at a subsample of about 64 rows.",
        "",
    ]


LIMITS = """## What it does not do

- The limits come from the model's *own* clean validation frames. A model whose validation
  split is narrow (one city, one season) will call much of the world degraded; that is the
  honest answer for that model, but it is not a verdict on the camera.
- A lens partly covered (a smear on a third of the image) moves the uncertain share only as
  far as the model is unsure there; the fault checks see whole-frame failures only.
- A camera that repeats frames legitimately (a simulator standing still) reads as frozen: set
  `scene.frozen_frames` to 0 there.
"""


def markdown(summary: dict[str, Any]) -> str:
    lines = [INTRO.replace("{levels}", _levels())]
    lines += _setup(summary)
    lines += _targets(summary)
    lines += _table(summary)
    lines += _tradeoff(summary)
    lines += _faults(summary)
    lines += _correlation(summary)
    lines += _cost(summary)
    lines += [LIMITS]
    return "\n".join(lines)
