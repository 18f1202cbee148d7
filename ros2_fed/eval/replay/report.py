"""The fed_bag_eval report: ``report.json`` (every number), ``report.md`` (tables) and PNGs.

Files are written only when the whole run finished: first the PNGs, then ``report.json`` with
``"complete": true``, then ``report.md`` (each through a temporary file and a rename). A run that
fails writes ``report.json`` with ``"complete": false`` and the error instead, and no
``report.md``; stale report files of an earlier run in the same folder are removed first.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ros2_fed.eval.early_warning_markdown import delay_text, early_warning_lines
from ros2_fed.eval.replay.outputs import LEVEL_NAMES, AlertRecord
from ros2_fed.eval.replay.scoring import FrameStat
from ros2_fed.fileio import atomic_write_bytes
from ros2_fed.jsonio import strict, write_json
from ros2_fed.viz import ground_truth_view

REPORT_FILES = ("report.md", "report.json", "mosaic_worst.png", "mosaic_best.png", "alerts.png")
from ros2_fed.names import METHOD_ORDER  # noqa: E402

_jsonable = strict  # NaN/inf -> null: one definition, ros2_fed.jsonio


def clear_previous(out_dir: Path) -> None:
    for name in REPORT_FILES:
        (out_dir / name).unlink(missing_ok=True)


def write_failure(out_dir: Path, error: str, partial: dict[str, Any]) -> Path:
    """report.json saying the run did NOT complete (and why); no report.md."""
    (out_dir / "report.md").unlink(missing_ok=True)
    data = {"complete": False, "error": error, **_jsonable(partial)}
    path = out_dir / "report.json"
    write_json(path, data)
    return path


# --------------------------------------------------------------------------------------
# Mosaics and the alert timeline
# --------------------------------------------------------------------------------------


@dataclass(order=True)
class _Candidate:
    key: float
    index: int
    tiles: list[np.ndarray] = field(compare=False)
    captions: list[str] = field(compare=False)


class MosaicPicker:
    """Keeps the ``k`` worst and best frames' tiles (input | segmentation | confidence | GT)
    while streaming; ranking: per-frame AuROC of the node's score against "prediction wrong"
    (IDM or OOD) when ground truth exists, else the uncertain fraction (more = worse)."""

    def __init__(
        self,
        k: int,
        palette: np.ndarray,
        vmin: float = 0.0,
        vmax: float = 1.0,
        tile_width: int = 320,
        frames: int = 0,
    ) -> None:
        self.want = int(k)
        self.k = 4 * int(k)  # candidates kept; the mosaic picks k of them that are not neighbours
        self.gap = max(1, int(frames) // max(1, 4 * int(k)))
        self.palette = palette
        self.vmin, self.vmax = vmin, vmax
        self.tile_width = tile_width
        self.worst: list[_Candidate] = []  # max-heap on badness via negated keys
        self.best: list[_Candidate] = []
        self.by_auroc: Optional[bool] = None

    @staticmethod
    def badness(stat: FrameStat) -> tuple[bool, float]:
        if stat.auroc is not None:
            return True, 1.0 - stat.auroc
        return False, stat.uncertain_fraction

    def offer(
        self,
        stat: FrameStat,
        rgb: np.ndarray,
        labels: np.ndarray,
        confidence: np.ndarray,
        label: Optional[np.ndarray],
        ood: Optional[np.ndarray],
    ) -> None:
        if self.k <= 0:
            return
        by_auroc, bad = self.badness(stat)
        if self.by_auroc is None or (by_auroc and not self.by_auroc):
            if by_auroc and not self.by_auroc:
                self.worst, self.best = [], []
            self.by_auroc = by_auroc
        if by_auroc != self.by_auroc:
            return
        need_worst = len(self.worst) < self.k or bad > self.worst[0].key
        need_best = len(self.best) < self.k or -bad > self.best[0].key
        if not (need_worst or need_best):
            return
        tiles, captions = self._tiles(stat, rgb, labels, confidence, label, ood)
        if need_worst:
            item = _Candidate(bad, -stat.index, tiles, captions)
            (heapq.heappush if len(self.worst) < self.k else heapq.heapreplace)(self.worst, item)
        if need_best:
            item = _Candidate(-bad, stat.index, tiles, captions)
            (heapq.heappush if len(self.best) < self.k else heapq.heapreplace)(self.best, item)

    def _tiles(
        self,
        stat: FrameStat,
        rgb: np.ndarray,
        labels: np.ndarray,
        confidence: np.ndarray,
        label: Optional[np.ndarray],
        ood: Optional[np.ndarray],
    ) -> tuple[list[np.ndarray], list[str]]:
        import cv2

        from ros2_fed import viz

        h, w = rgb.shape[:2]
        tw = int(self.tile_width)
        th = max(1, round(h * tw / w))

        def small(img: np.ndarray, nearest: bool) -> np.ndarray:
            if (h, w) == (th, tw):
                return np.ascontiguousarray(img)
            return cv2.resize(
                np.ascontiguousarray(img),
                (tw, th),
                interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA,
            )

        gt = (
            ground_truth_view(labels, label, ood)
            if (label is not None or ood is not None)
            else np.zeros_like(rgb)
        )
        tiles = [
            small(rgb, False),
            small(viz.colorize(labels, self.palette), True),
            small(viz.confidence_to_rgb(confidence, self.vmin, self.vmax), False),
            small(gt, True),
        ]
        quality = (
            f"AuROC {100 * stat.auroc:.1f}"
            if stat.auroc is not None
            else f"{100 * stat.uncertain_fraction:.0f}% uncertain"
        )
        captions = [
            f"#{stat.index} input ({quality})",
            "segmentation",
            "confidence",
            "ground truth" if (label is not None or ood is not None) else "no ground truth",
        ]
        return tiles, captions

    def ranked(self, which: str) -> list[_Candidate]:
        """The ``k`` picked frames, worst (or best) first, at least ``gap`` frames apart when
        possible."""
        pool = sorted(
            self.worst if which == "worst" else self.best, key=lambda c: (-c.key, abs(c.index))
        )
        picked: list[_Candidate] = []
        for c in pool:
            if len(picked) < self.want and all(
                abs(abs(c.index) - abs(p.index)) >= self.gap for p in picked
            ):
                picked.append(c)
        for c in pool:  # too few far-apart frames: fill up with the next ranked
            if len(picked) < self.want and c not in picked:
                picked.append(c)
        return picked

    def indices(self, which: str) -> list[int]:
        return [abs(c.index) for c in self.ranked(which)]

    def image(self, which: str) -> Optional[np.ndarray]:
        from ros2_fed import viz

        items = self.ranked(which)
        if not items:
            return None
        tiles = [t for c in items for t in c.tiles]
        captions = [t for c in items for t in c.captions]
        return viz.mosaic(tiles, captions, columns=4)


def timeline_image(
    stats: list[FrameStat],
    levels: list[Optional[int]],
    warn_size: float,
    error_size: float,
    region_sizes: Sequence[Optional[float]],
    presence: Sequence[Optional[bool]],
    width: int = 900,
    scene_levels: Optional[Sequence[Optional[int]]] = None,
) -> np.ndarray:
    """The alert timeline (``ros2_fed.figures.alert_timeline``: region size on a scale with the
    WARN / ERROR limits, alert level band, scene level band, ground-truth band, frame numbers,
    legend)."""
    from ros2_fed.figures import alert_timeline

    return alert_timeline(
        [s.index for s in stats],
        levels,
        warn_size,
        error_size,
        region_sizes,
        presence,
        width,
        scene_levels=scene_levels,
    )


# --------------------------------------------------------------------------------------
# Scene health (ros2_fed.scene): the status per frame and its summary
# --------------------------------------------------------------------------------------

SCENE_LEVELS = ("OK", "WARN", "ERROR")


def scene_entry(index: int, stamp_ns: int, record: Optional[AlertRecord]) -> dict[str, Any]:
    """One frame of the scene timeline (level None: no scene status for it)."""
    values = record.values if record is not None else {}

    def number(key: str) -> Optional[float]:
        try:
            return float(values[key])
        except (KeyError, ValueError):
            return None

    level = record.level if record is not None else None
    return {
        "index": index,
        "stamp": f"{stamp_ns // 10**9}.{stamp_ns % 10**9:09d}",
        "level": level,
        "level_name": level_name(level),
        "uncertain_fraction": number("uncertain_fraction"),
        "warn_fraction": number("warn_fraction"),
        "error_fraction": number("error_fraction"),
        "fault": values.get("fault", ""),
        "identical_frames": number("identical_frames"),
        "message": record.message if record is not None else "",
    }


def scene_section(timeline: list[dict[str, Any]], camera: str = "") -> dict[str, Any]:
    """report.json's ``scene``: frames per level and their share (``per_camera`` keyed by the
    node's camera name, ``camera`` for a single-camera node), the level changes and every
    frame."""
    levels = [t["level"] for t in timeline]
    counts = {name: sum(1 for lv in levels if lv == k) for k, name in enumerate(SCENE_LEVELS)}
    missing = sum(1 for lv in levels if lv is None)
    share = {name: (n / len(levels) if levels else None) for name, n in counts.items()}
    summary = {"frames": len(levels), "counts": counts, "share": share, "no_status": missing}
    transitions, previous = [], object()
    for entry in timeline:
        if entry["level"] != previous:
            transitions.append(entry)
            previous = entry["level"]
    first = next((t for t in timeline if t["warn_fraction"] is not None), {})
    return {
        **summary,
        "per_camera": {camera or "camera": summary},
        "limits": {k: first.get(k) for k in ("warn_fraction", "error_fraction")},
        "transitions": transitions,
        "per_frame": timeline,
    }


def scene_summary(scene: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Frames, counts and share per level of a report's ``scene`` (None without one)."""
    if not scene:
        return None
    return {k: scene.get(k) for k in ("frames", "counts", "share", "no_status")}


def rig_scene(per_camera: dict[str, Optional[dict[str, Any]]]) -> dict[str, Any]:
    """A rig report's ``scene``: each camera's share per level, and all frames pooled."""
    cameras = {name: scene_summary(scene) for name, scene in per_camera.items()}
    known = [c for c in cameras.values() if c]
    frames = sum(int(c["frames"]) for c in known)
    counts = {name: sum(int(c["counts"][name]) for c in known) for name in SCENE_LEVELS}
    share = {name: (n / frames if frames else None) for name, n in counts.items()}
    return {"per_camera": cameras, "pooled": {"frames": frames, "counts": counts, "share": share}}


def rig_scene_lines(scene: Optional[dict[str, Any]]) -> list[str]:
    """Markdown: each camera's scene status share per level (a rig report)."""
    if not scene:
        return []
    parts = [
        f"{name} " + "/".join(_pct(c["share"][level]) for level in SCENE_LEVELS)
        for name, c in scene["per_camera"].items()
        if c and c.get("frames")
    ]
    return [
        "Scene status, share of frames OK / WARN / ERROR (%): " + "; ".join(parts) + ".",
        "",
    ]


def scene_lines(scene: Optional[dict[str, Any]]) -> list[str]:
    """Markdown: the scene status' share per level and its level changes."""
    lines = ["", "## Scene health", ""]
    if not scene or not scene.get("frames") or scene.get("no_status") == scene.get("frames"):
        return lines + ["No scene status recorded."]
    share = ", ".join(f"{name} {_pct(value)} %" for name, value in scene["share"].items())
    limits = scene.get("limits") or {}
    lines += [
        f"Share of frames per level: {share} (uncertain share of the image: WARN above "
        f"{_pct(limits.get('warn_fraction'))} %, ERROR above "
        f"{_pct(limits.get('error_fraction'))} %). The timeline above shows the level per "
        "frame in the `scene` band.",
        "",
        "| frame | stamp | level | uncertain share (%) | message |",
        "|---|---|---|---|---|",
    ]
    for t in scene["transitions"]:
        lines.append(
            f"| {t['index']} | {t['stamp']} | {t['level_name']} | "
            f"{_pct(t['uncertain_fraction'])} | {t['message']} |"
        )
    return lines


def detection_lines(detection: Optional[dict[str, Any]]) -> list[str]:
    """Markdown: does the alert fire on frames with an unknown object and stay quiet otherwise?"""
    if not detection:
        return ["No OOD ground truth in this bag: alert recall and false alarms not scored.", ""]
    recall, false = detection.get("recall"), detection.get("false_alarm_rate")
    return [
        "Alert detection (WARN or above; object = unknown object of >= "
        f"{detection['min_object_pixels']} px, "
        f"the first {detection['excused_onset_frames']} frames of each appearance excused): "
        f"**recall {'–' if recall is None else f'{recall:.2f}'}** over {detection['positives']} "
        "frames with an "
        f"object, **false alarms {'–' if false is None else f'{false:.2f}'}** over "
        f"{detection['negatives']} "
        "frames without any OOD pixel.",
        "",
    ]


def write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic_write_bytes(path, data.tobytes())


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.2f}"


def _ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.1f}"


def bad_input_text(frames: dict[str, Any]) -> str:
    """The refused frames by the node's kind names: ", refused as bad input: 2 (too_large 1,
    step_mismatch 1)", or "" when there were none."""
    bad = frames.get("bad_input") or {}
    if not bad:
        return ""
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(bad.items()))
    return f", refused as bad input: {sum(bad.values())} ({kinds})"


def console_summary(report: dict[str, Any]) -> list[str]:
    """What fed_bag_eval prints after a complete run (after the metrics table)."""
    lat = report["latency_ms"]
    frames = report["frames"]
    lines = [
        f"frames: {frames['evaluated']} evaluated, {frames['dropped']} dropped"
        f"{bad_input_text(frames)}; "
        f"latency ({lat['what']}) p50 {_ms(lat['p50'])} ms, p95 {_ms(lat['p95'])} ms, "
        f"p99 {_ms(lat['p99'])} ms; {report['throughput_fps']:.1f} frames/s"
    ]
    lines += [
        line.replace("**", "")
        for line in detection_lines(report["alerts"].get("detection"))
        if line
    ]
    if report.get("early_warning"):
        text = delay_text(report["early_warning"]["summary"]).replace("**", "")
        lines.append("Early warning: " + text)
    return lines


def method_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: the node's first, then the reference rows in fed_eval's order."""
    metrics = report.get("metrics") or {}
    methods = metrics.get("methods") or {}
    sources = report.get("method_sources") or {}
    miou = metrics.get("miou") or {}
    node = [m for m in methods if sources.get(m) == "node"]
    ref = sorted(
        (m for m in methods if sources.get(m) != "node"),
        key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99,
    )
    rows = []
    for name in node + ref:
        row = methods[name]
        ood, idm = row.get("ood") or {}, row.get("idm") or {}
        source = sources.get(name, "reference")
        rows.append(
            {
                "method": name,
                "source": source,
                "ood_auroc": ood.get("auroc"),
                "ood_ap": ood.get("ap"),
                "ood_fpr95": ood.get("fpr_at_tpr"),
                "idm_auroc": idm.get("auroc"),
                "idm_ap": idm.get("ap"),
                "idm_fpr95": idm.get("fpr_at_tpr"),
                "miou": miou.get("node" if source == "node" else "reference"),
            }
        )
    return rows


def metrics_table(report: dict[str, Any]) -> str:
    rows = method_rows(report)
    if not rows:
        return "_no ground truth in the bag: no detection metrics_\n"
    head = (
        "| method | source | OOD AuROC | OOD AP | OOD FPR95 | IDM AuROC | IDM AP | IDM FPR95 | "
        "mIoU |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["method"],
                    r["source"],
                    _pct(r["ood_auroc"]),
                    _pct(r["ood_ap"]),
                    _pct(r["ood_fpr95"]),
                    _pct(r["idm_auroc"]),
                    _pct(r["idm_ap"]),
                    _pct(r["idm_fpr95"]),
                    _pct(r["miou"]),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def markdown(report: dict[str, Any]) -> str:
    lines = _summary_lines(report)
    lines += _detection_section(report)
    lines += component_lines(report)
    lines += _latency_section(report)
    lines += _alerts_section(report.get("alerts") or {}, report["files"])
    lines += early_warning_lines(report.get("early_warning"))
    lines += scene_lines(report.get("scene"))
    lines += _frames_section(report)
    lines += _files_section(report)
    return "\n".join(lines) + "\n"


def _summary_lines(report: dict[str, Any]) -> list[str]:
    """Title, what was run on which bag, frame counts, topics and the output bag."""
    bag = report["bag"]
    frames = report["frames"]
    mode = report["mode"]
    lines = [f"# fed_bag_eval: {Path(bag['path']).name}", ""]
    what = (
        f"played through a running `fed_node` at x{report['rate']:g} the recorded rate"
        if mode == "live"
        else "run offline (in-process engine, every frame)"
    )
    lines += [
        f"**Complete.** {frames['in_bag']} frames ({bag['size']}, {bag['storage']}, "
        f"{bag['duration_s']:.1f} s) {what}; model: {report['model']['description']}.",
        "",
    ]
    resized = (report.get("model") or {}).get("resized")
    if resized:
        lines += [f"**Resized:** {resized['note']}.", ""]
    lines += [
        f"- evaluated: **{frames['evaluated']}** frames; dropped: **{frames['dropped']}**"
        + bad_input_text(frames)
        + (
            f" (the node's own count: {frames.get('node_dropped')})"
            if frames.get("node_dropped") is not None
            else ""
        )
        + (
            f"; with trainId ground truth: {frames['with_labels']}, with OOD masks: "
            f"{frames['with_ood']}"
            if frames.get("with_labels") or frames.get("with_ood")
            else "; no ground truth"
        ),
        f"- camera topic `{bag['topics']['image']}`"
        + (f", labels `{bag['topics']['labels']}`" if bag["topics"].get("labels") else "")
        + (f", OOD `{bag['topics']['ood']}`" if bag["topics"].get("ood") else ""),
        f"- output bag: `{report['files'].get('output_bag')}` (open it in Foxglove Studio, or "
        f"`ros2 bag play` it and watch `{report['output_prefix']}/overlay` in rviz)",
        "",
    ]
    return lines


def _detection_section(report: dict[str, Any]) -> list[str]:
    """The metrics table: the node's scores next to fed_eval's reference methods."""
    return [
        "## Detection and segmentation",
        "",
        "OOD: pixels pooled over all frames (void ignored); IDM: misclassified in-distribution "
        "pixels, per "
        "frame then averaged; values in %. `node` = what fed_node published (score = 1 - "
        "confidence); "
        "`reference` = fed_eval's methods on the same decoded frames (FED from the checkpoint in "
        "torch with the "
        "engine's post-processing "
        f"`{(report.get('reference') or {}).get('fed_postprocess', '–')}`, and the "
        "baselines MSP, max-logit MLG, energy ENE, entropy ENT, SML, MC dropout MCD).",
        "",
        metrics_table(report),
    ]


def component_lines(report: dict[str, Any]) -> list[str]:
    """The "Component metrics" section: SegmentMeIfYouCan's sIoU / PPV / mean F1 per method
    (report.json: metrics.methods.NAME.components), when the frames had OOD masks."""
    methods = (report.get("metrics") or {}).get("methods") or {}
    rows = []
    for r in method_rows(report):
        c = methods[r["method"]].get("components")
        if c:
            rows.append((r["method"], r["source"], c))
    if not rows:
        return []
    first = rows[0][2]
    lines = [
        "",
        "## Component metrics",
        "",
        "SegmentMeIfYouCan's component-level metrics (road-anomaly-benchmark, "
        f"{first['track']}): each method's score thresholded at its best pixel F1 over these "
        f"frames, predicted components under {first['min_pred_size']} px dropped, ground-truth "
        f"components under {first['min_gt_size']} px void, 8-connected; sIoU per ground-truth "
        "component, PPV per predicted one, F1 over sIoU thresholds 0.25-0.75; values in %.",
        "",
        "| method | source | sIoU gt | PPV | mean F1 | F1 at 0.5 | objects | predicted "
        "components | threshold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, source, c in rows:
        lines.append(
            f"| {name} | {source} | {_pct(c['siou_gt'])} | {_pct(c['ppv'])} | "
            f"{_pct(c['f1_mean'])} | {_pct(c['f1'].get('0.50'))} | {c['gt_components']} | "
            f"{c['pred_components']} | {c['threshold']:.4g} |"
        )
    return lines


def _latency_section(report: dict[str, Any]) -> list[str]:
    """Latency percentiles, throughput and (live) how the bag was played."""
    bag = report["bag"]
    lat = report.get("latency_ms") or {}
    lines = [
        "## Latency and throughput",
        "",
        "| | p50 | p95 | p99 | mean | max |",
        "|---|---|---|---|---|---|",
        f"| {lat.get('what', 'latency')} (ms) | {_ms(lat.get('p50'))} | {_ms(lat.get('p95'))} | "
        f"{_ms(lat.get('p99'))} | {_ms(lat.get('mean'))} | {_ms(lat.get('max'))} |",
        "",
        f"Throughput: **{report['throughput_fps']:.1f} frames/s** "
        f"({report.get('throughput_what', '')}).",
    ]
    if report["mode"] == "live":
        live = report.get("live") or {}
        lines += [
            "",
            f"Played {live.get('published')} frames in {live.get('play_s', 0):.1f} s "
            f"(bag: {bag['duration_s']:.1f} s at x{report['rate']:g}); "
            f"{live.get('warmup_frames')} warm-up "
            f"frame(s) before the bag; ROS_DOMAIN_ID {live.get('domain_id')}; node log "
            f"`{report['files'].get('node_log')}`.",
        ]
    return lines


def _alerts_section(alerts: dict[str, Any], files: dict[str, Any]) -> list[str]:
    """Frames per alert level, detection scores, the level changes and the timeline image."""
    lines = ["", "## Alerts", ""]
    if alerts.get("transitions") is not None:
        counts = alerts.get("counts", {})
        lines += [
            "Frames per level: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".",
            "",
        ]
        lines += detection_lines(alerts.get("detection"))
        if alerts["transitions"]:
            lines += [
                "| frame | stamp | level | largest uncertain region (image heights) |",
                "|---|---|---|---|",
            ]
            for t in alerts["transitions"]:
                size = "–" if t.get("region_size") is None else f"{t['region_size']:.3f}"
                lines.append(f"| {t['index']} | {t['stamp']} | {t['level_name']} | {size} |")
        else:
            lines.append("No level change during the run.")
        if files.get("alerts_png"):
            lines += ["", f"![alert timeline]({Path(files['alerts_png']).name})"]
    else:
        lines.append("No alerts recorded.")
    return lines


def _frames_section(report: dict[str, Any]) -> list[str]:
    """The worst / best frame mosaics with the frames they show."""
    lines = ["", "## Frames", ""]
    for which in ("worst", "best"):
        key = f"mosaic_{which}"
        if report["files"].get(key):
            ranked = report.get("frames_ranked", {}).get(which, [])
            desc = ", ".join(
                f"#{f['index']}"
                + (
                    f" (AuROC {100 * f['auroc']:.1f})"
                    if f.get("auroc") is not None
                    else f" ({100 * f['uncertain_fraction']:.0f} % uncertain)"
                )
                for f in ranked
            )
            lines += [
                f"**{which.capitalize()} frames** {desc}: input | segmentation | confidence (red "
                "= uncertain, "
                "blue = certain) | ground truth (blue = correct, red = misclassified or OOD, "
                "black = void)",
                "",
                f"![{which} frames]({Path(report['files'][key]).name})",
                "",
            ]
    return lines


def _files_section(report: dict[str, Any]) -> list[str]:
    """Every file written, and how long each phase took."""
    lines = ["## Files", ""] + [f"- {k}: `{v}`" for k, v in report["files"].items() if v]
    phases = ", ".join(
        f"{k[:-2].replace('_', ' ')} {v:.1f} s"
        for k, v in report["timing"].items()
        if k != "total_s"
    )
    lines += [
        "",
        f"Finished in {report['timing']['total_s']:.1f} s ({phases}). Every number is in "
        "`report.json`.",
    ]
    return lines


def write_report(
    out_dir: Path,
    report: dict[str, Any],
    picker: Optional[MosaicPicker],
    timeline: Optional[np.ndarray],
) -> Path:
    """PNGs, then report.json (complete), then report.md; returns the report.md path."""
    files = report.setdefault("files", {})
    if picker is not None:
        for which in ("worst", "best"):
            img = picker.image(which)
            if img is not None:
                path = out_dir / f"mosaic_{which}.png"
                write_png(path, img)
                files[f"mosaic_{which}"] = str(path)
    if timeline is not None:
        path = out_dir / "alerts.png"
        write_png(path, timeline)
        files["alerts_png"] = str(path)
    files["report_json"] = str(out_dir / "report.json")
    files["report_md"] = str(out_dir / "report.md")
    report["complete"] = True
    text = markdown(report)  # rendered before anything claims completeness
    write_json(out_dir / "report.json", report)
    md = out_dir / "report.md"
    atomic_write_bytes(md, text.encode())
    return md


def stat_dict(stat: FrameStat) -> dict[str, Any]:
    return _jsonable(asdict(stat))


def level_name(level: Optional[int]) -> str:
    return LEVEL_NAMES.get(int(level), str(level)) if level is not None else "–"
