"""Select the alert rule ``track`` (regions tracked over frames) against rule ``region``.

Why a sibling of ``training.alert_selection``: the tracked rule has its own knobs (persistence,
contrast, approach gain) on top of the ones it shares with the region rule (the calibration's
false-alarm rate, i.e. the confidence threshold, the strip width, ``warn_size``,
``raise_frames``), and the target is early warning, not frame recall alone. Both rules are
chosen here on the same selection drives with the same objective, so the comparison is fair:

* feasible: selection false alarms <= ``MAX_SELECTION_FALSE_ALARMS``;
* best: the smallest median first-alert delay over all appearances (a never-alerted one counts
  as infinite; ``ros2_fed.eval.early_warning``), then the highest recall, then the fewest
  false alarms.

The drives come from ``training.drive_cache`` (engine outputs computed once), so the sweep runs
the alert rule only: the region candidates of every frame are measured once per threshold and
strip width, and each tracker setting replays them (the same :class:`RegionTracker` and state
machine the node runs).

    python -m training.track_selection --cache runs/alert_track/drives \\
        --select-seeds 100-139 --eval-sets 0-7,200-219,300-319 --out docs/alerts_track.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ros2_fed import jsonio
from ros2_fed.alerts import AlertConfig, AlertMonitor, track_value
from ros2_fed.eval.alert_metrics import score_alerts
from ros2_fed.eval.early_warning import (
    FrameObjects,
    appearance_delays,
    delay_summary,
    early_warning_report,
    frame_objects,
    pool_early_warning,
)
from ros2_fed.region_tracker import Candidate, RegionTracker, TrackConfig
from training.drive_cache import CachedDrive, load_or_compute, parse_seeds

MAX_SELECTION_FALSE_ALARMS = 0.1
FPS = 10.0
#: Calibration false-alarm rate -> the FED-C's confidence threshold at it (measured by
#: training.alert_selection on the validation split; docs/alerts_selection.json).
THRESHOLD_KEYS = (0.02, 0.05)
MIN_WIDTHS = (0.02,)
WARN_SIZES = (0.14, 0.18, 0.2, 0.22, 0.25, 0.3, 0.35, 0.4)
RAISE_FRAMES = (1, 2, 3)
#: Tracker grid: (hits, window), min_contrast, gain, growth, growth_frames.
PERSISTENCE = ((2, 3), (3, 4), (4, 5), (5, 6))
MIN_CONTRASTS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3)
GAINS = (1.0, 1.5, 2.0, 3.0)
GROWTHS = (1.15, 1.3)
GROWTH_FRAMES = (5, 10)


def thresholds(selection_json: Path) -> dict[float, float]:
    """{calibration false-alarm rate: confidence threshold} from alert_selection's JSON grid."""
    data = json.loads(selection_json.read_text())
    cols = data["grid_columns"]
    qi, ti = cols.index("false_alarm"), cols.index("confidence_threshold")
    out = {float(r[qi]): float(r[ti]) for r in data["grid"]}
    # the node's own operating point exactly (the grid keeps 4 decimals)
    cal = json.loads(Path("models/fed_c_synthroad.json").read_text()).get("calibration") or {}
    if "false_alarm" in cal:
        out[float(cal["false_alarm"])] = float(cal["confidence_threshold"])
    return out


class _Recorder(RegionTracker):
    """A tracker that keeps every frame's candidates (for replaying other tracker settings)."""

    def __init__(self, config: TrackConfig) -> None:
        super().__init__(config)
        self.frames: list[list[Candidate]] = []

    def update(self, found: Sequence[Candidate], height: int) -> Any:
        self.frames.append(list(found))
        return super().update(found, height)


def record_candidates(config: AlertConfig, drive: CachedDrive) -> list[list[Candidate]]:
    """Every frame's candidate regions under ``config`` (rule track), as the node measures them."""
    monitor = AlertMonitor(replace(config, rule="track"))
    recorder = _Recorder(config.track_config)
    monitor._tracker = recorder  # the monitor's own measurement, recorded on the way
    for conf, labels in zip(drive.confidence, drive.labels):
        monitor.update(conf.astype(np.float32), labels=labels)
    return recorder.frames


def track_values(
    track: TrackConfig, frames: Sequence[Sequence[Candidate]], height: int, error_size: float
) -> list[float]:
    """What the state machine is fed per frame by rule track with ``track`` settings."""
    tracker = RegionTracker(track)
    out = []
    for found in frames:
        result = tracker.update(found, height)
        size = result.track.last.size if result.track is not None else 0.0
        out.append(track_value(result.evidence, size, error_size))
    return out


def region_values(config: AlertConfig, drive: CachedDrive) -> list[float]:
    """Rule region: each frame's largest region size."""
    monitor = AlertMonitor(replace(config, rule="region"))
    return [
        monitor.update(c.astype(np.float32), labels=lab).region_size
        for c, lab in zip(drive.confidence, drive.labels)
    ]


def drive_objects(drive: CachedDrive, threshold: float) -> list[Optional[FrameObjects]]:
    return [
        frame_objects(
            drive.ood_mask(i).view(np.uint8), drive.confidence[i].astype(np.float32), threshold
        )
        for i in range(len(drive.confidence))
    ]


def score(
    config: AlertConfig,
    values: Sequence[Sequence[float]],
    drives: Sequence[CachedDrive],
    objects: Sequence[Sequence[Optional[FrameObjects]]],
) -> dict[str, Any]:
    """Recall, false alarms and first-alert delays of the state machine fed ``values``."""
    levels_all, presence, appearances = [], [], []
    for vals, drive, objs in zip(values, drives, objects):
        monitor = AlertMonitor(config)
        levels = [int(monitor.step(v)) for v in vals]
        levels_all += levels
        presence += drive.presence
        appearances += appearance_delays(
            levels, objs, [i / FPS for i in range(len(levels))], config.horizon
        )
    s = score_alerts(levels_all, presence, config.raise_frames)
    d = delay_summary(appearances)
    return {
        "recall": s.recall,
        "false_alarm_rate": s.false_alarm_rate,
        "positives": s.positives,
        "negatives": s.negatives,
        "appearances": d.appearances,
        "never_alerted": d.never_alerted,
        "median_delay_all": d.median_frames_all,
        "p90_delay_all": d.p90_frames_all,
        "median_delay": d.median_frames,
    }


def _key(r: dict) -> tuple:
    """Smaller is better: median delay (never = inf), then -recall, then false alarms."""
    med = r["median_delay_all"]
    med = float("inf") if med is None else float(med)
    return (med, -(r["recall"] or 0.0), r["false_alarm_rate"] or 0.0)


def best_row(rows: list[dict], cap: float = MAX_SELECTION_FALSE_ALARMS) -> Optional[dict]:
    feasible = [r for r in rows if (r["false_alarm_rate"] or 0.0) <= cap]
    return min(feasible, key=_key) if feasible else None


def config_of(base: AlertConfig, row: dict) -> AlertConfig:
    """The AlertConfig of a grid row (rule region rows have no track fields)."""
    fields = {
        "confidence_threshold": row["confidence_threshold"],
        "min_width": row["min_width"],
        "warn_size": row["warn_size"],
        "error_size": max(base.error_size, row["warn_size"]),
        "raise_frames": row["raise_frames"],
        "rule": row["rule"],
    }
    if row["rule"] == "track":
        fields.update({k: row[k] for k in row if k.startswith("track_")})
    return replace(base, **fields)


def sweep(
    base: AlertConfig,
    drives: Sequence[CachedDrive],
    thresholds_by_q: dict[float, float],
) -> list[dict]:
    """Every grid row of both rules on ``drives``."""
    height = drives[0].confidence.shape[1]
    rows: list[dict] = []
    track_grid = list(itertools.product(PERSISTENCE, MIN_CONTRASTS, GAINS, GROWTHS, GROWTH_FRAMES))
    for q, width in itertools.product(THRESHOLD_KEYS, MIN_WIDTHS):
        thr = thresholds_by_q[q]
        measure = replace(base, confidence_threshold=thr, min_width=width)
        objects = [drive_objects(d, thr) for d in drives]
        head = {"false_alarm": q, "confidence_threshold": thr, "min_width": width}
        region = [region_values(measure, d) for d in drives]
        for warn, rf in itertools.product(WARN_SIZES, RAISE_FRAMES):
            row = {**head, "rule": "region", "warn_size": warn, "raise_frames": rf}
            rows.append({**row, **score(config_of(base, row), region, drives, objects)})
        cands = [record_candidates(measure, d) for d in drives]
        for (hits, window), contrast, gain, growth, gframes in tqdm(
            track_grid, desc=f"track grid q={q} width={width}"
        ):
            if gain == 1.0 and (growth, gframes) != (GROWTHS[0], GROWTH_FRAMES[0]):
                continue  # growth settings do nothing without a gain
            track = {
                "track_hits": hits,
                "track_window": window,
                "track_min_contrast": contrast,
                "track_gain": gain,
                "track_growth": growth,
                "track_growth_frames": gframes,
            }
            tcfg = replace(measure, rule="track", **track).track_config
            values = [track_values(tcfg, c, height, base.error_size) for c in cands]
            for warn, rf in itertools.product(WARN_SIZES, RAISE_FRAMES):
                row = {**head, "rule": "track", **track, "warn_size": warn, "raise_frames": rf}
                rows.append({**row, **score(config_of(base, row), values, drives, objects)})
    return rows


def evaluate(config: AlertConfig, drives: Sequence[CachedDrive]) -> dict[str, Any]:
    """One configuration on a drive set: frame recall / false alarms and E1a's early-warning
    report pooled over the drives."""
    reports, levels_all, presence = [], [], []
    for d in drives:
        monitor = AlertMonitor(config)
        levels = [
            int(monitor.update(c.astype(np.float32), labels=lab).level)
            for c, lab in zip(d.confidence, d.labels)
        ]
        levels_all += levels
        presence += d.presence
        reports.append(
            early_warning_report(
                levels,
                drive_objects(d, config.confidence_threshold),
                [i / FPS for i in range(len(levels))],
                config.raise_frames,
                horizon=config.horizon,
                source=f"drive {d.seed}",
            )
        )
    s = score_alerts(levels_all, presence, config.raise_frames)
    pooled = pool_early_warning(reports)
    return {
        "recall": s.recall,
        "false_alarm_rate": s.false_alarm_rate,
        "positives": s.positives,
        "negatives": s.negatives,
        "early_warning": pooled,
    }


def load(seeds: Sequence[int], cache: Path, rendered: Optional[Path]) -> list[CachedDrive]:
    from training.drive_cache import make_detector

    detector = None
    out = []
    for seed in tqdm(seeds, desc="drives"):
        try:
            out.append(load_or_compute(None, seed, 60, (256, 512), cache, "default"))
        except FileNotFoundError:
            if detector is None:
                detector = make_detector(
                    "models/tinyseg_synthroad", "models/fed_c_synthroad", None
                )
            out.append(load_or_compute(detector, seed, 60, (256, 512), cache, "default", rendered))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="track_selection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cache", type=Path, default=Path("runs/alert_track/drives"))
    p.add_argument("--rendered", type=Path, default=None)
    p.add_argument("--selection-json", type=Path, default=Path("docs/alerts_selection.json"))
    p.add_argument("--select-seeds", default="100-139")
    p.add_argument(
        "--eval-sets",
        default="0-7,200-219,300-319",
        help="held-out drive sets, separated by ';' or given as a,b ranges",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--grid-out", type=Path, default=None, help="every grid row (JSON lines)")
    p.add_argument(
        "--eval-only",
        type=Path,
        default=None,
        help="no selection: score the choice in this --out JSON on --eval-sets",
    )
    args = p.parse_args(argv)
    base = AlertConfig()
    sets = [s for s in args.eval_sets.replace(";", ",").split(",") if s]
    if args.eval_only is not None:
        done = json.loads(args.eval_only.read_text())
        chosen = {name: replace(base, **cfg) for name, cfg in done["configs"].items()}
        assert all(c.rule == name for name, c in chosen.items()), done["configs"]
        result = {**done, "sets": dict(done.get("sets", {}))}
    else:
        drives = load(parse_seeds(args.select_seeds), args.cache, args.rendered)
        rows = sweep(base, drives, thresholds(args.selection_json))
        if args.grid_out is not None:
            args.grid_out.write_text(
                "".join(jsonio.dumps(r, indent=None).strip() + "\n" for r in rows)
            )
        best = {
            rule: best_row([r for r in rows if r["rule"] == rule]) for rule in ("region", "track")
        }
        for rule, r in best.items():
            print(f"best {rule}:", r, flush=True)
        chosen = {rule: config_of(base, r) for rule, r in best.items() if r is not None}
        result = {
            "select_seeds": args.select_seeds,
            "max_selection_false_alarms": MAX_SELECTION_FALSE_ALARMS,
            "selection": best,
            # every field the selection sets, so the choice does not depend on the defaults
            "configs": {rule: configs_json(c) for rule, c in chosen.items()},
            "sets": {},
        }
    for seeds in sets:
        drives = load(parse_seeds(seeds), args.cache, args.rendered)
        result["sets"][seeds] = {rule: evaluate(c, drives) for rule, c in chosen.items()}
        print_set(seeds, result["sets"][seeds])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(args.out, result, indent=1)
    return 0


def print_set(seeds: str, rows: dict[str, Any]) -> None:
    """One line per rule of a drive set's figures."""
    for rule, r in rows.items():
        s = r["early_warning"]["summary"] if r["early_warning"] else {}
        print(
            seeds,
            rule,
            f"recall {r['recall']} FA {r['false_alarm_rate']}",
            f"median {s.get('median_frames_all')} never {s.get('never_alerted')}",
            flush=True,
        )


def configs_json(config: AlertConfig) -> dict[str, Any]:
    """The fields a selection sets (with the track fields of a track rule only)."""
    return {
        k: getattr(config, k)
        for k in _SETTABLE
        if config.rule == "track" or not k.startswith("track_")
    }


#: The AlertConfig fields a selection may change (written to the JSON as the choice).
_SETTABLE = (
    "confidence_threshold",
    "min_width",
    "warn_size",
    "error_size",
    "raise_frames",
    "rule",
    "track_hits",
    "track_window",
    "track_min_contrast",
    "track_gain",
    "track_growth",
    "track_growth_frames",
    "track_match_distance",
)


if __name__ == "__main__":
    sys.exit(main())
