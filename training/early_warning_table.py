"""The early-warning table: the shipped alert defaults on every held-out drive set.

Why one command: the first-alert delay, the appearances never alerted and the recall by object
size are the figures a vehicle needs (``ros2_fed.eval.early_warning``); they are measured the way
``fed_node`` runs (the FED's calibrated threshold and post-processing, the shipped
``AlertConfig``) on drive sets no selection used, and written as JSON and as the
"Early-warning figures" section of a markdown page (the rest of the page is kept):

    python -m training.early_warning_table \\
        --backbone models/tinyseg_synthroad --fed models/fed_c_synthroad \\
        --cache runs/early_warning/drives \\
        --json docs/early_warning.json --doc docs/early_warning.md

Drives are rendered into ``--cache`` when missing (deterministic by seed, 60 frames at 10 Hz).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

from tqdm import tqdm

from ros2_fed import jsonio
from ros2_fed.alerts import RULES, AlertConfig, AlertMonitor
from ros2_fed.eval.alert_metrics import score_alerts
from ros2_fed.eval.early_warning import early_warning_report, pool_early_warning
from ros2_fed.eval.early_warning_markdown import appearance_table, number

#: (seeds, how they were used): the sets of docs/alerts.md "More drives".
DRIVE_SETS = (
    ("0-7", "held-out drives of the selection run"),
    ("200-219", "a second set, scored with the defaults"),
    ("300-319", "a third set, scored with the defaults"),
    ("400-419", "rendered after the choice, scored once"),
)
HEADING = "## Early-warning figures"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="early_warning_table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backbone", default="models/tinyseg_synthroad", help="backbone checkpoint")
    p.add_argument("--fed", type=Path, default=Path("models/fed_c_synthroad"), help="FED")
    p.add_argument(
        "--postprocess", default=None, help="score post-processing (default: the FED's own)"
    )
    p.add_argument(
        "--sets",
        default=",".join(s for s, _ in DRIVE_SETS),
        help="drive sets, comma-separated seed ranges (default: %(default)s)",
    )
    p.add_argument("--frames", type=int, default=60, help="frames per drive (default 60)")
    p.add_argument("--size", default="256x512", help="frame size HxW (default 256x512)")
    p.add_argument(
        "--cache", type=Path, default=Path("runs/early_warning/drives"), help="rendered drives"
    )
    p.add_argument("--json", type=Path, default=Path("docs/early_warning.json"), help="JSON out")
    p.add_argument(
        "--doc", type=Path, default=Path("docs/early_warning.md"), help="markdown page to update"
    )
    p.add_argument(
        "--rule",
        choices=RULES,
        default=None,
        help="the alert rule to replay (default: AlertConfig's, what fed_node runs)",
    )
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="no inference: the table from the drive results already in --cache (a set with "
        "drives missing says which)",
    )
    return p


def fingerprint(result: dict[str, Any]) -> str:
    """What a cached drive result depends on (models, post-processing, alert config, frames)."""
    keys = ("config", "fed", "backbone", "postprocess", "frames", "size")
    data = {k: result[k] for k in keys}
    if data["config"].get("rule", "region") == "region":  # the track settings do not act then
        data["config"] = {k: v for k, v in data["config"].items() if not k.startswith("track_")}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def drive_result(
    detector: Any, config: AlertConfig, seed: int, args: argparse.Namespace, size: Any
) -> dict[str, Any]:
    """One drive replayed with ``config``: its frame counts (recall / false alarms) and its
    early-warning report."""
    from training import alert_selection as sel

    drive = sel.drive_confidences(detector, seed, args.frames, size, args.cache)
    masks = sel.render_drive_truth(seed, args.frames, size, args.cache)[2]
    objects = sel.drive_objects(drive, masks, config.confidence_threshold)
    monitor = AlertMonitor(config)
    levels = [int(monitor.step(s)) for s in sel.region_sizes(config, [drive])[0]]
    score = score_alerts(levels, drive[2], config.raise_frames)
    return {
        "seed": seed,
        "alerts": {k: getattr(score, k) for k in ALERT_COUNTS},
        "early_warning": early_warning_report(
            levels,
            objects,
            [i / sel.DRIVE_FPS for i in range(len(levels))],
            config.raise_frames,
            horizon=config.horizon,
            source=f"drive {seed}",
        ),
    }


#: The frame counts a set's recall and false-alarm rate are added up from.
ALERT_COUNTS = ("positives", "alerted_positives", "negatives", "alerted_negatives", "excused")


def pool_set(results: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """A drive set from its drives' results: frame counts added, early warning pooled."""
    counts = {k: sum(int(r["alerts"][k]) for r in results) for k in ALERT_COUNTS}
    pos, neg = counts["positives"], counts["negatives"]
    return {
        "drives": [r["seed"] for r in results],
        "missing_drives": sorted(set(seeds) - {r["seed"] for r in results}),
        "frames": {
            **counts,
            "recall": counts["alerted_positives"] / pos if pos else None,
            "false_alarm_rate": counts["alerted_negatives"] / neg if neg else None,
        },
        "early_warning": pool_early_warning([r["early_warning"] for r in results]),
    }


def _bins(rows: list[dict[str, Any]]) -> str:
    return " / ".join("–" if r["recall"] is None else f"{r['recall']:.2f}" for r in rows)


def markdown(result: dict[str, Any]) -> str:
    """The section: one row per drive set, then every never-alerted appearance."""
    used = {**dict(DRIVE_SETS), "all": "every drive above, pooled"}
    lines = [
        HEADING,
        "",
        f"The alert defaults (rule `{result['config'].get('rule', 'region')}`) at the FED's "
        f"calibrated threshold ({result['config']['confidence_threshold']:.4f}, as fed_node "
        f"runs `{result['fed']}`), {result['frames']} frames a drive at 10 Hz, every fourth drive "
        "without an unknown object; `python -m training.early_warning_table`. Delay: frames from "
        "the first frame where the object covers 100 px to the first WARN or above (median / "
        'p90 over the alerted appearances; "with never": never-alerted appearances counted '
        "as infinite). Recall: frames with an object of >= 100 px, the first `raise_frames` of "
        "each appearance excused; false alarms: frames without any OOD pixel. By size: OOD px "
        "of the largest object at 256x512, bins 100-300 / 300-1,000 / 1,000-3,000 / >= 3,000; "
        "the pixel detector finds a ground-truth component when >= 50 % of its pixels are "
        'below the threshold. A set marked (k of n) holds the drives its run finished; "all" '
        "pools every drive above. Targets: median delay <= 5 frames, no appearance never "
        "alerted, recall >= 0.8, false alarms <= 0.1.",
        "",
        "| drives | how used | appearances | never alerted | median delay (frames / s) | "
        "p90 delay (frames) | median with never | recall | false alarms | alert recall by size "
        "| pixel-detector component recall by size |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = list(result["sets"].items())
    if result.get("all"):
        rows.append(("all", result["all"]))
    for seeds, r in rows:
        ew = r["early_warning"]
        s, f = ew["summary"], r["frames"]
        label = seeds
        if r["missing_drives"]:
            label += f" ({len(r['drives'])} of {len(r['drives']) + len(r['missing_drives'])})"
        lines.append(
            f"| {label} | {used.get(seeds, '')} | {s['appearances']} | {s['never_alerted']} | "
            f"{number(s['median_frames'])} / {number(s['median_s'], 2)} | "
            f"{number(s['p90_frames'])} | {number(s['median_frames_all'])} | "
            f"{number(f['recall'], 2)} | {number(f['false_alarm_rate'], 2)} | "
            f"{_bins(ew['alert_recall_by_size'])} | "
            f"{_bins(ew['detector_recall_by_size'])} |"
        )
    never = [
        {**a, "source": f"{seeds}: {a['source']}"}
        for seeds, r in result["sets"].items()
        for a in r["early_warning"]["appearances"]
        if not a["alerted"]
    ]
    lines += ["", "Appearances never alerted while on the road:", ""]
    lines += appearance_table(never) if never else ["None."]
    return "\n".join(lines) + "\n"


def update_section(path: Path, section: str) -> None:
    """Replace the page's ``HEADING`` section (up to the next ``## `` heading) with ``section``,
    or append it; the rest of the page is kept."""
    text = path.read_text() if path.is_file() else "# Early warning\n"
    lines = text.splitlines()
    try:
        start = lines.index(HEADING)
    except ValueError:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        tail = "\n".join(lines[end:])
        new = "\n".join(lines[:start]) + "\n" + section + ("\n" + tail + "\n" if tail else "")
    jsonio.atomic_write_bytes(path, new.lstrip("\n").encode())


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ros2_fed.checkpoint import load_fed
    from training import alert_selection as sel

    args = build_parser().parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    _, meta = load_fed(args.fed)
    threshold = (meta.get("calibration") or {}).get("confidence_threshold")
    if threshold is None:
        print(f"early_warning_table: {args.fed} has no calibration", file=sys.stderr)
        return 2
    config = replace(AlertConfig(), confidence_threshold=threshold)
    if args.rule is not None:
        config = replace(config, rule=args.rule)
    result: dict[str, Any] = {
        "config": sel.config_json(config),
        "fed": str(args.fed),
        "backbone": str(args.backbone),
        "postprocess": args.postprocess,
        "frames": args.frames,
        "size": args.size,
        "sets": {},
    }
    tag = fingerprint(result)
    detector = None
    every: list[dict[str, Any]] = []
    every_seed: list[int] = []
    for seeds_text in args.sets.split(","):
        seeds = sel._seeds(seeds_text)
        results = []
        for seed in tqdm(seeds, desc=f"drives {seeds_text}"):
            path = args.cache / f"result_{seed}_{tag}.json"
            if path.is_file():
                results.append(json.loads(path.read_text()))
                continue
            if args.cached_only:
                continue
            if detector is None:
                from ros2_fed.detector import FusedDetector

                detector = FusedDetector.from_checkpoints(
                    args.backbone, args.fed, score="fed", postprocess=args.postprocess
                ).eval()
            results.append(drive_result(detector, config, seed, args, size))
            jsonio.write_json(path, results[-1], indent=1)  # kept: a stopped run resumes
        every += results
        every_seed += seeds
        if results:
            result["sets"][seeds_text] = pool_set(results, seeds)
            summary = result["sets"][seeds_text]["early_warning"]["summary"]
            print(f"drives {seeds_text}: {summary}", flush=True)
    if len(result["sets"]) > 1:
        result["all"] = pool_set(every, every_seed)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(args.json, result, indent=1)
    update_section(args.doc, markdown(result))
    print(f"wrote {args.json} and the {HEADING!r} section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
