"""``fed_bag_eval`` on a bag with several cameras: a complete report per camera, and one pooled.

Which cameras: ``--cameras NAME,NAME,...``, else every camera a synthroad rig bag lists in its
custom_data (``fed_synthroad_bag --cameras N``; only when ``--topic`` is not given). A named
camera's topics come from that list, else from the bag: the first of ``/NAME/image_raw``,
``/NAME/image_raw/compressed``, ``/NAME/image``, ``/NAME/image/compressed`` (or the only other
Image / CompressedImage topic under ``/NAME/``), with ground truth on ``/NAME/labels`` and
``/NAME/ood`` when the bag has them.

The rig runs as a ``cameras:=[NAME, ...]`` fed_node runs it: one engine for all cameras (the
cached engine is built for a batch of one frame per camera), every camera's frame of one stamp
in one batch (:func:`ros2_fed.cameras.stamp_batches`, the node's mailbox), through the node's
frame path. Each camera is then scored and reported as ``fed_bag_eval --topic <its camera>
--gt-topic <its labels> --ood-topic <its OOD mask> --output-prefix <prefix>/NAME --out
OUT/NAME`` would (the same class), so ``OUT/NAME/`` holds that camera's complete normal report
and output bag (outputs under ``/fed_node/NAME/...``, the topics a ``cameras:=[...]`` fed_node
publishes). ``OUT/report.json`` + ``OUT/report.md`` then hold a table with a row per camera and
a **pooled** row:

- pixel metrics (OOD AuROC / AP / FPR95 pooled over pixels, IDM averaged over images, mIoU) of
  all cameras' frames together, exactly what one scorer fed every frame of every camera gives
  (the cameras' scorers are merged: exact score arrays concatenated, histograms, per-image IDM
  lists and confusion matrices added; exact when all frames x pixels <= 4e7, as fed_eval);
- alert recall and false alarms: the cameras' counts added (frame-weighted);
- latency percentiles over all frames; throughput = frames / summed processing time.

Offline only for several cameras: ``--live`` replays one camera (a ``--cameras`` list of one
name works); with two or more it is refused with a one-line error.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from ros2_fed import stopping
from ros2_fed.eval.early_warning import pool_early_warning
from ros2_fed.eval.early_warning_markdown import early_warning_lines
from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay import report as rep
from ros2_fed.eval.replay.errors import OutputExistsError, UsageError
from ros2_fed.eval.replay.evaluation import (
    OUTPUT_BAG,
    BagEvaluation,
    percentiles,
    prepare_out,
    report_failure,
    verify_setting,
)
from ros2_fed.eval.replay.offline import run_offline
from ros2_fed.eval.replay.scoring import EXACT_PIXEL_LIMIT, Scorer

IMAGE_SUFFIXES = ("image_raw", "image_raw/compressed", "image", "image/compressed")
DETECTION_COUNTS = ("positives", "excused", "negatives", "alerted_positives", "alerted_negatives")


@dataclass
class Camera:
    name: str
    image: str
    labels: Optional[str] = None
    ood: Optional[str] = None


def _names(text: Optional[str]) -> list[str]:
    return [n.strip().strip("/") for n in str(text or "").split(",") if n.strip().strip("/")]


def _rig(info: bagmod.BagInfo) -> list[dict[str, Any]]:
    cams = info.synthroad.get("cameras")
    if not isinstance(cams, list):
        return []
    return [c for c in cams if isinstance(c, dict) and c.get("name")]


def wanted(args: argparse.Namespace) -> bool:
    """Is this a multi-camera run? ``--cameras``, or a rig bag without ``--topic``."""
    if getattr(args, "cameras", None):
        return True
    if args.topic is not None:
        return False
    try:
        return len(_rig(bagmod.open_info(args.bag))) >= 2
    except bagmod.BagError:
        return False  # the normal path reports it


def find_cameras(
    info: bagmod.BagInfo, names: list[str], ground_truth: bool = True
) -> list[Camera]:
    """The cameras to evaluate (``names`` empty: every camera of a rig bag)."""
    rig = {c["name"]: c for c in _rig(info)}
    if not names:
        names = list(rig)
    if len(set(names)) != len(names):
        raise UsageError(f"--cameras: a name is given twice ({', '.join(names)})")
    cameras = []
    for name in names:
        if name in rig:
            entry = rig[name]
            cam = Camera(
                name,
                entry.get("image_topic", ""),
                entry.get("labels_topic"),
                entry.get("ood_topic"),
            )
        else:
            cam = _guess(info, name)
        if not ground_truth:
            cam.labels = cam.ood = None
        cameras.append(cam)
    return cameras


def _guess(info: bagmod.BagInfo, name: str) -> Camera:
    topics = info.topics
    gt = {f"/{name}/labels", f"/{name}/ood"}
    images = [
        t
        for t, i in topics.items()
        if t.startswith(f"/{name}/") and i.msgtype in bagio.IMAGE_TYPES and t not in gt
    ]
    preferred = [f"/{name}/{s}" for s in IMAGE_SUFFIXES if f"/{name}/{s}" in images]
    if preferred:
        image = preferred[0]
    elif len(images) == 1:
        image = images[0]
    else:
        raise bagmod.BagError(
            f"{info.path}: camera {name}: {'several' if images else 'no'} image topics under "
            f"/{name}/ ({', '.join(sorted(images)) or 'none'}; topics in the bag: "
            f"{info.describe_topics()})"
        )

    def gt_topic(topic: str) -> Optional[str]:
        return topic if topic in topics and topics[topic].msgtype == bagio.IMAGE else None

    return Camera(name, image, gt_topic(f"/{name}/labels"), gt_topic(f"/{name}/ood"))


def _camera_args(args: argparse.Namespace, cam: Camera) -> argparse.Namespace:
    sub = argparse.Namespace(**vars(args))
    sub.cameras = None
    sub.topic, sub.gt_topic, sub.ood_topic = cam.image, cam.labels, cam.ood
    sub.out = Path(args.out) / cam.name
    sub.output_prefix = f"/{str(args.output_prefix).strip('/')}/{cam.name}".replace("//", "/")
    return sub


def _check_out(out: Path, cameras: list[Camera], overwrite: bool) -> None:
    """Refuse before anything runs when OUT or a camera folder holds an earlier run."""
    folders = [out] + [out / cam.name for cam in cameras]
    previous = [
        p
        for d in folders
        for p in [d / OUTPUT_BAG] + [d / n for n in rep.REPORT_FILES]
        if p.exists()
    ]
    if previous and not overwrite:
        raise OutputExistsError(
            f"{out} already holds an earlier run "
            f"({', '.join(str(p.relative_to(out)) for p in previous)}); "
            "use --overwrite or another --out"
        )


# --------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------


class Pool:
    """The cameras' scorers merged as they finish (exactness decided like one scorer's)."""

    def __init__(self) -> None:
        self.scorer: Optional[Scorer] = None
        self.pixels = 0  # frames x frame pixels, over the cameras so far
        self.latencies: list[float] = []
        self.processing_s = 0.0

    def add(self, scorer: Scorer, frames: int, frame_pixels: int) -> None:
        self.pixels += int(frames) * int(frame_pixels)
        exact = self.pixels <= EXACT_PIXEL_LIMIT and scorer.exact
        if self.scorer is None or (self.scorer.exact and not exact):
            pooled = Scorer(
                scorer.num_classes,
                0,
                0,
                exact=exact,
                bins=scorer.bins,
                probability=sorted(scorer.probability),
            )
            if self.scorer is not None:
                pooled.merge(self.scorer)  # exact pairs binned into the histograms
            self.scorer = pooled
        self.scorer.merge(scorer)


def pooled_detection(detections: list[Optional[dict[str, Any]]]) -> Optional[dict[str, Any]]:
    """Alert recall / false alarms of all cameras' frames: the counts added."""
    got = [d for d in detections if d]
    if not got:
        return None
    out: dict[str, Any] = {k: sum(int(d.get(k) or 0) for d in got) for k in DETECTION_COUNTS}
    out["recall"] = out["alerted_positives"] / out["positives"] if out["positives"] else None
    out["false_alarm_rate"] = (
        out["alerted_negatives"] / out["negatives"] if out["negatives"] else None
    )
    out["min_object_pixels"] = got[0].get("min_object_pixels")
    out["excused_onset_frames"] = got[0].get("excused_onset_frames")
    out["cameras"] = len(got)
    return out


def _node_numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The node's row of a (camera or pooled) report: OOD / IDM numbers and mIoU."""
    rows = [r for r in rep.method_rows(report) if r["source"] == "node"]
    return rows[0] if rows else {}


def _camera_entry(cam: Camera, report: dict[str, Any], out: Path) -> dict[str, Any]:
    detection = dict(report["alerts"].get("detection") or {}) or None
    if detection:
        detection.pop("presence", None)
    return {
        "name": cam.name,
        "topics": {"image": cam.image, "labels": cam.labels, "ood": cam.ood},
        "report": str(out / cam.name / "report.json"),
        "report_md": str(out / cam.name / "report.md"),
        "output_bag": report["files"].get("output_bag"),
        "frames": report["frames"],
        "node": _node_numbers(report),
        "alerts": {"counts": report["alerts"].get("counts"), "detection": detection},
        "scene": rep.scene_summary(report.get("scene")),
        "latency_ms": report["latency_ms"],
        "throughput_fps": report.get("throughput_fps"),
    }


def _pooled_section(pool: Pool, reports: list[dict[str, Any]]) -> dict[str, Any]:
    assert pool.scorer is not None
    frames = {
        k: sum(int(r["frames"].get(k) or 0) for r in reports)
        for k in ("in_bag", "evaluated", "dropped", "with_labels", "with_ood")
    }
    counts: dict[str, int] = {}
    for r in reports:
        for level, n in (r["alerts"].get("counts") or {}).items():
            counts[level] = counts.get(level, 0) + int(n)
    sources: dict[str, str] = {}
    for r in reports:
        sources.update(r.get("method_sources") or {})
    evaluated = frames["evaluated"]
    pooled: dict[str, Any] = {
        "frames": frames,
        "metrics": pool.scorer.results(),
        "method_sources": sources,
        "node_method": reports[0].get("node_method"),
        "alerts": {
            "counts": counts,
            "detection": pooled_detection([r["alerts"].get("detection") for r in reports]),
        },
        "latency_ms": {**percentiles(pool.latencies), "what": reports[0]["latency_ms"]["what"]},
        "throughput_fps": evaluated / pool.processing_s if pool.processing_s else None,
        "throughput_what": "frames / time in the node's frame path (decode, engine, alerts; "
        "every camera's frames of one stamp in one engine batch)",
    }
    pooled["node"] = _node_numbers(pooled)
    return pooled


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def evaluate(
    args: argparse.Namespace, partial: dict[str, Any], log: Callable[[str], None]
) -> tuple[Path, dict[str, Any]]:
    """Every camera, then the pooled report; returns (report.md, report.json's content)."""
    t0 = time.monotonic()
    info, cameras = _check_arguments(args)
    partial["cameras"] = [c.name for c in cameras]
    out = Path(args.out)
    _check_out(out, cameras, args.overwrite)
    prepare_out(out, args.overwrite)  # no stale report or output bag next to the new ones
    runs = {
        cam.name: BagEvaluation(_camera_args(args, cam), {"camera": cam.name}, log)
        for cam in cameras
    }
    with verify_setting(args.no_verify):
        if args.mode == "live":  # one camera (more are refused above)
            partial["camera"] = cameras[0].name
            runs[cameras[0].name].run()
        else:
            _run_rig(runs, partial, log)
    partial.pop("camera", None)
    pool, reports = Pool(), []
    for cam in cameras:
        reports.append(_pool_camera(runs[cam.name], pool, out / cam.name))
    report = _assemble(args, info, cameras, reports, pool)
    report["timing"] = {"total_s": time.monotonic() - t0}
    return write_report(out, report), report


def _run_rig(
    runs: dict[str, BagEvaluation], partial: dict[str, Any], log: Callable[[str], None]
) -> None:
    """The rig offline as fed_node with ``cameras:=[...]`` runs it: one engine for all cameras
    (a cached engine built for a batch of one frame per camera), the frames of one stamp in one
    batch, each camera's frames scored and written into its own report and output bag."""
    for name, run in runs.items():
        partial["camera"] = name
        run.prepare()
    partial.pop("camera", None)
    first = next(iter(runs.values()))
    spec = replace(first.spec, batch=len(runs))
    streams = []
    for name, run in runs.items():
        run.spec = spec
        streams.append(run.camera_stream(name))
    t0 = time.monotonic()
    try:
        warmup = int(first.params.get("warmup_runs", 3))
        for camera, item in run_offline(streams, spec, first.params, warmup, log=log):
            runs[camera].consume(item)
        for name, run in runs.items():
            partial["camera"] = name
            run.end_scoring(time.monotonic() - t0)
            run.finish()
    except BaseException:
        for run in runs.values():
            run.writer.abort()
        raise


def _pool_camera(run: BagEvaluation, pool: Pool, folder: Path) -> dict[str, Any]:
    """The camera's scores into ``pool``; its report.json."""
    first = run.scan.usable[0]
    pool.add(run.scored.scorer, len(run.scan.frames), first.height * first.width)
    pool.latencies += run.scored.latencies
    if run.offline_stats is not None:
        pool.processing_s += run.offline_stats.processing_s
    run.scored = None  # the camera's score arrays are in the pool now
    return _read_json(folder / "report.json")


def _check_arguments(args: argparse.Namespace) -> tuple[bagmod.BagInfo, list[Camera]]:
    if args.topic or args.gt_topic or args.ood_topic:
        raise UsageError(
            "--cameras picks each camera's topics; do not combine it with --topic, "
            "--gt-topic or --ood-topic"
        )
    info = bagmod.open_info(args.bag)
    cameras = find_cameras(info, _names(getattr(args, "cameras", None)), not args.no_gt)
    if not cameras:
        raise UsageError(f"{info.path}: no cameras: the bag lists none (--cameras NAME,NAME)")
    if args.mode == "live" and len(cameras) > 1:
        raise UsageError(
            "live replay is single-camera: use --offline for several cameras, or "
            "--cameras NAME for one"
        )
    return info, cameras


def _assemble(
    args: argparse.Namespace,
    info: bagmod.BagInfo,
    cameras: list[Camera],
    reports: list[dict[str, Any]],
    pool: Pool,
) -> dict[str, Any]:
    """OUT/report.json's content (``complete`` is set by :func:`write_report`)."""
    out = Path(args.out)
    return {
        "complete": False,
        "tool": "fed_bag_eval",
        "kind": "cameras",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "mode": args.mode,
        "bag": {
            "path": str(info.path),
            "storage": info.storage,
            "files": info.files,
            "duration_s": info.duration_s,
            "cameras": [asdict(c) for c in cameras],
        },
        "model": reports[0]["model"],
        "node_method": reports[0].get("node_method"),
        "cameras": [_camera_entry(c, r, out) for c, r in zip(cameras, reports)],
        "pooled": {
            **_pooled_section(pool, reports),
            "early_warning": pool_early_warning(
                [r.get("early_warning") for r in reports], [c.name for c in cameras]
            ),
        },
        "scene": rep.rig_scene({c.name: r.get("scene") for c, r in zip(cameras, reports)}),
        "files": {
            "report_json": str(out / "report.json"),
            "report_md": str(out / "report.md"),
            **{f"camera_{c.name}": str(out / c.name) for c in cameras},
        },
    }


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text())


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """report.json (complete), then report.md; returns the report.md path."""
    from ros2_fed.fileio import atomic_write_bytes
    from ros2_fed.jsonio import write_json

    report["complete"] = True
    text = markdown(report)
    write_json(out / "report.json", report)
    md = out / "report.md"
    atomic_write_bytes(md, text.encode())
    return md


def _pct(value: Any) -> str:
    return rep._pct(value)


def camera_table(report: dict[str, Any]) -> str:
    """Markdown: one row per camera (the node's numbers) and the POOLED row."""
    head = (
        "| camera | frames | dropped | OOD AuROC | OOD AP | OOD FPR95 | IDM AuROC | mIoU | "
        "alert recall | false alarms | p50 ms | frames/s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    rows = [(f"[{c['name']}]({c['name']}/report.md)", c) for c in report["cameras"]]
    rows.append(("**POOLED**", report["pooled"]))
    for label, item in rows:
        node, det = item.get("node") or {}, (item["alerts"].get("detection") or {})
        fps = item.get("throughput_fps")
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    str(item["frames"]["evaluated"]),
                    str(item["frames"]["dropped"]),
                    _pct(node.get("ood_auroc")),
                    _pct(node.get("ood_ap")),
                    _pct(node.get("ood_fpr95")),
                    _pct(node.get("idm_auroc")),
                    _pct(node.get("miou")),
                    "–" if det.get("recall") is None else f"{det['recall']:.2f}",
                    "–"
                    if det.get("false_alarm_rate") is None
                    else f"{det['false_alarm_rate']:.2f}",
                    rep._ms(item["latency_ms"].get("p50")),
                    "–" if fps is None else f"{fps:.1f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def markdown(report: dict[str, Any]) -> str:
    bag, pooled = report["bag"], report["pooled"]
    names = ", ".join(c["name"] for c in report["cameras"])
    lines = [
        f"# fed_bag_eval: {Path(bag['path']).name} ({len(report['cameras'])} cameras)",
        "",
        f"**Complete.** Cameras {names} ({bag['storage']}, {bag['duration_s']:.1f} s), each "
        f"run {report['mode']} exactly like a single-camera fed_bag_eval; model: "
        f"{report['model']['description']}. Each camera's full report (timeline, alerts, "
        "mosaics, output bag) is in its own folder.",
        "",
        "## Per camera and pooled",
        "",
        f"The node's row (`{report.get('node_method')}`, score = 1 - confidence); values in "
        "%. POOLED: pixel metrics over all cameras' frames together (OOD pooled over pixels, "
        "IDM per frame then averaged, mIoU from the summed confusion matrices); alert recall "
        "and false alarms from the cameras' frame counts added; latency over all frames.",
        "",
        camera_table(report),
    ]
    det = pooled["alerts"].get("detection")
    lines += [
        line.replace("Alert detection", "Pooled alert detection", 1)
        for line in rep.detection_lines(det)
    ]
    lines += rep.rig_scene_lines(report.get("scene"))
    lines += early_warning_lines(
        pooled.get("early_warning"), "## Early warning (pooled over the cameras)", limit=50
    )
    lines += ["## Pooled: every method", "", rep.metrics_table(pooled)]
    lines += ["## Files", ""] + [f"- {k}: `{v}`" for k, v in report["files"].items() if v]
    lines += [
        "",
        f"Finished in {report['timing']['total_s']:.1f} s. Every number is in `report.json`.",
    ]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    """``fed_bag_eval`` for several cameras (``cli.main`` hands over when :func:`wanted`)."""

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"fed_bag_eval: {msg}", file=sys.stderr, flush=True)

    partial: dict[str, Any] = {
        "tool": "fed_bag_eval",
        "kind": "cameras",
        "mode": args.mode,
        "bag": {"path": str(args.bag)},
    }
    try:
        stopping.started()  # a stop signal is a KeyboardInterrupt from here on
        md, report = evaluate(args, partial, log)
    except BaseException as exc:
        code = report_failure(exc, Path(args.out), partial, partial.get("camera"))
        return stopping.leave_if_stopped(code)
    finally:
        stopping.stopping()
    print(camera_table(report))
    for line in rep.detection_lines(report["pooled"]["alerts"].get("detection")):
        if line:
            print(line.replace("**", "").replace("Alert detection", "Pooled alert detection", 1))
    print(
        f"fed_bag_eval: report {md} (complete; one folder per camera: "
        f"{', '.join(c['name'] for c in report['cameras'])})"
    )
    return 0
