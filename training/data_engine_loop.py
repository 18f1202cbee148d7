"""What closing the data engine's loop buys: FEDs side by side on the same held-out drives.

Why: mined frames are only worth labelling if the FED trained with them finds the new object
kind better on drives it never saw. This reads one ``fed_fleet_eval`` report per FED (the same
held-out drives, the same replay) and puts their pooled figures in one table: pixel OOD
detection (AP, FPR at 95 % TPR, AUROC), the in-domain misclassification AP, mIoU, the alert's
frame recall and false-alarm rate, and the early warning (objects alerted, median / p90 delay
from onset to the first alert). docs/data_engine.md shows how the figures were made.

Example::

    python -m training.data_engine_loop --arm "without=runs/heldout_A" \\
        --arm "with 130 mined frames=runs/heldout_B" --out docs/data_engine_loop.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from ros2_fed.jsonio import write_json

#: (column, where in the pooled report, how it is shown)
COLUMNS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("OOD AP", ("node", "ood_ap"), "pct"),
    ("OOD FPR95", ("node", "ood_fpr95"), "pct"),
    ("OOD AUROC", ("node", "ood_auroc"), "pct"),
    ("misclassification AP", ("node", "idm_ap"), "pct"),
    ("mIoU", ("node", "miou"), "pct"),
    ("alert recall", ("alerts", "detection", "recall"), "pct"),
    ("false alarms", ("alerts", "detection", "false_alarm_rate"), "pct"),
    ("objects alerted", ("early_warning", "summary", "alerted"), "int"),
    ("objects", ("early_warning", "summary", "appearances"), "int"),
    ("median delay (s)", ("early_warning", "summary", "median_s"), "s"),
    ("p90 delay (s)", ("early_warning", "summary", "p90_s"), "s"),
)


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def arm_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The pooled figures of one fleet report (None where the report has none)."""
    if not report.get("complete"):
        raise ValueError("the fleet report is not complete (its run has not finished)")
    pooled = report["pooled"]
    figures = {name: _get(pooled, path) for name, path, _ in COLUMNS}
    figures["bags"] = pooled.get("bags")
    figures["frames"] = _get(pooled, ("frames", "evaluated"))
    model = (report.get("models") or [{}])[0]
    figures["model"] = model.get("description")
    figures["model_hash"] = _get(model, ("engine", "model_hash"))
    return figures


def _cell(value: Any, how: str) -> str:
    if value is None:
        return "-"
    if how == "pct":
        return f"{100 * float(value):.2f}"
    if how == "s":
        return f"{float(value):.1f}"
    return str(int(value))


def markdown(arms: dict[str, dict[str, Any]]) -> str:
    """One row per arm; fractions in %."""
    head = ["FED"] + [name + (" %" if how == "pct" else "") for name, _, how in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, figures in arms.items():
        cells = [_cell(figures.get(name), how) for name, _, how in COLUMNS]
        lines.append("| " + " | ".join([arm, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _arm(text: str) -> tuple[str, Path]:
    name, sep, path = text.rpartition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--arm takes NAME=FLEET_EVAL_DIR, got {text!r}")
    return name.strip(), Path(path)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.data_engine_loop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--arm",
        type=_arm,
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="a FED's fed_fleet_eval output folder on the held-out drives (repeatable)",
    )
    p.add_argument("--out", type=Path, required=True, help="results JSON (a .md beside it)")
    p.add_argument("--note", default="", help="what was run, stored with the figures")
    args = p.parse_args(argv)
    arms: dict[str, dict[str, Any]] = {}
    try:
        for name, folder in args.arm:
            report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
            arms[name] = {**arm_figures(report), "report": str(folder / "report.json")}
    except (OSError, ValueError, KeyError) as exc:
        print(f"data_engine_loop: error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = markdown(arms)
    write_json(args.out, {"note": args.note, "arms": arms})
    args.out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
