"""Markdown for the early-warning numbers (``ros2_fed.eval.early_warning``'s JSON).

One renderer for every report that shows them: ``fed_bag_eval``'s report.md, the fleet report,
``training.alert_selection``'s markdown and the early-warning table.
"""

from __future__ import annotations

from typing import Any, Optional

from ros2_fed.eval.early_warning import NEVER


def number(value: Any, digits: int = 1) -> str:
    """A delay or count: ``–`` for None, ``never`` for an infinite one."""
    if value is None:
        return "–"
    if value == NEVER:
        return NEVER
    if float(value) == int(float(value)) and digits <= 1:
        return str(int(float(value)))
    return f"{float(value):.{digits}f}"


def _delay(frames: Any, seconds: Any) -> str:
    if frames == NEVER:
        return NEVER
    return f"{number(frames)} frames ({number(seconds, 2)} s)"


def delay_text(summary: dict[str, Any]) -> str:
    """One sentence: median / p90 first-alert delay, and the never-alerted count."""
    s = summary
    if not s["appearances"]:
        return "No object appearance reached 100 px: no first-alert delay to measure."
    text = (
        f"{s['appearances']} object appearance(s), **{s['never_alerted']} never alerted**. "
        "First-alert delay after the object reached 100 px: "
        f"**median {_delay(s['median_frames'], s['median_s'])}**, "
        f"p90 {_delay(s['p90_frames'], s['p90_s'])} over the {s['alerted']} alerted"
    )
    if s["never_alerted"]:
        text += (
            "; with the never-alerted ones counted as never: median "
            f"{_delay(s['median_frames_all'], s['median_s_all'])}, p90 "
            f"{_delay(s['p90_frames_all'], s['p90_s_all'])}"
        )
    return text + "."


def _recall(row: dict[str, Any], unit: str) -> str:
    if row["recall"] is None:
        return f"– (0 {unit})"
    return f"{row['recall']:.2f} ({row['found']}/{row[unit]})"


def size_table(report: dict[str, Any]) -> list[str]:
    """Recall per object-size bin: the alert (frames) and the pixel detector (components)."""
    alert, detector = report["alert_recall_by_size"], report["detector_recall_by_size"]
    lines = [
        "| object size (OOD px at 256x512) | alert recall (frames) | "
        "pixel detector component recall |",
        "|---|---|---|",
    ]
    for a, d in zip(alert, detector):
        lines.append(f"| {a['bin']} | {_recall(a, 'frames')} | {_recall(d, 'components')} |")
    return lines


def appearance_table(appearances: list[dict[str, Any]], limit: Optional[int] = None) -> list[str]:
    """One row per appearance (the never-alerted ones first when ``limit`` cuts the list)."""
    rows = list(appearances)
    if limit is not None and len(rows) > limit:
        rows = sorted(rows, key=lambda a: a["alerted"])[:limit]
    source = any(a.get("source") for a in rows)
    head = (["drive"] if source else []) + [
        "frames on road",
        "100 px at frame",
        "px then",
        "rows below horizon",
        "first WARN+",
        "delay (frames)",
        "delay (s)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in rows:
        cells = [str(a.get("source") or "")] if source else []
        cells += [
            f"{a['start']}-{a['end']}",
            str(a["onset"]),
            str(a["pixels"]),
            f"{a['rows_below_horizon']:.0f}",
            "**never**" if a["alert"] is None else str(a["alert"]),
            "–" if a["delay_frames"] is None else str(a["delay_frames"]),
            "–" if a["delay_s"] is None else f"{a['delay_s']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def never_alerted_text(appearances: list[dict[str, Any]]) -> str:
    never = [a for a in appearances if not a["alerted"]]
    if not never:
        return "Every appearance was alerted while on the road."
    where = ", ".join(
        (f"{a['source']} " if a.get("source") else "")
        + f"frames {a['onset']}-{a['end']} ({a['pixels']} px at 100 px onset)"
        for a in never
    )
    return f"Never alerted while on the road: {where}."


def early_warning_lines(
    report: Optional[dict[str, Any]],
    heading: str = "## Early warning",
    limit: Optional[int] = None,
) -> list[str]:
    """The section: delays, recall by size, the never-alerted appearances and the
    per-appearance table."""
    lines = ["", heading, ""]
    if not report:
        return lines + ["No OOD ground truth: no early-warning numbers.", ""]
    lines += [
        "Appearance: a run of frames with OOD pixels; its onset is the first frame whose largest "
        "object has >= 100 px (256x512, scaled with the image area); delay: frames / seconds "
        "from there to the first WARN or above. Medians over the alerted appearances, then with "
        "the never-alerted ones counted as infinite; p90 by nearest rank. Rows below the "
        "horizon: the object's bottom row + 1 - horizon x height at the onset.",
        "",
        delay_text(report["summary"]),
        "",
        never_alerted_text(report["appearances"]),
        "",
        f"Recall by object size (bins by the largest object, lower edge inclusive; the alert's "
        f"frames as in the headline recall, with 100 px scaled; a ground-truth component is "
        f"found by the pixel "
        f"detector when >= {100 * report['detected_fraction']:.0f} % of its pixels are below "
        f"the confidence threshold):",
        "",
    ]
    lines += size_table(report)
    if report["appearances"]:
        shown = report["appearances"]
        note = ""
        if limit is not None and len(shown) > limit:
            note = f" ({limit} of {len(shown)}, never-alerted first; all in the JSON)"
        lines += ["", f"Appearances{note}:", ""] + appearance_table(shown, limit)
    return lines + [""]
