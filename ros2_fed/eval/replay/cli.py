"""`fed_bag_eval`: replay a rosbag2 through FED and score it -- output bag + report.

Examples::

    # the embedded default model, live through a real fed_node at the recorded rate
    fed_bag_eval runs/demo/synthroad_drive --live --out runs/demo/report

    # as fast as possible, in-process, with your checkpoints; ground truth on a custom topic
    fed_bag_eval drive.mcap --offline --backbone ckpt/segformer_b2 --fed ckpt/fed_u \\
        --topic /cam/front/image/compressed --gt-topic /cam/front/labels --out runs/drive_eval

Input: a rosbag2 (MCAP or sqlite3; the directory, or a bare .mcap/.db3 file). Camera topic:
sensor_msgs/Image or CompressedImage (``--topic``; default: what a synthroad bag names, else the
bag's only image topic). Ground truth (optional, sensor_msgs/Image mono8, matched to the camera by
header stamp): ``--gt-topic`` Cityscapes trainIds (255 = void), ``--ood-topic`` an OOD mask
(0 in-distribution / 1 OOD / 255 void).

Modes: ``--offline`` (default) opens the engine fed_node would open and runs it over every frame
in this process, as fast as possible. ``--live`` starts fed_node (its own ROS_DOMAIN_ID,
localhost discovery, large-data transport), publishes the camera messages at the recorded rate
times ``--rate`` and records what the node publishes; frames the node skips (it always works on
the newest frame) are counted as dropped -- at ``--rate 1`` with a node that keeps up, none.

Output (``--out DIR``): ``output_bag/`` (same storage as the input: the camera and ground-truth
messages as recorded plus the node's outputs under ``/fed_node/...``: segmentation,
segmentation_color, confidence, overlay, alerts) for rviz / Foxglove; ``report.md``,
``report.json`` (``"complete": true`` only when everything finished), ``mosaic_worst.png`` /
``mosaic_best.png`` (input | segmentation | confidence | ground truth) and ``alerts.png``.
Metrics: OOD and IDM AuROC / AP / FPR95 and mIoU computed exactly as ``fed_eval`` does, for the
node's confidence (score = 1 - confidence) and, when the model is given by checkpoints, for the
reference methods on the same frames (FED in torch, MSP, max-logit, energy, entropy, SML, MC
dropout); alert timeline; latency p50/p95/p99; throughput; dropped frames.

Exit codes: 0 done, 2 unusable input (bag, topics, arguments), 1 the run failed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ros2_fed.eval.alert_metrics import detection_report
from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay import report as rep
from ros2_fed.eval.replay.errors import LiveError
from ros2_fed.eval.replay.model import fed_variant, parse_param, read_params_file
from ros2_fed.eval.replay.outputs import LEVEL_NAMES, OUTPUT_TYPES, REQUIRED_OUTPUTS, FrameOutput
from ros2_fed.eval.replay.scoring import ReferenceModel, ReferenceScores, Scorer, frame_stat
from ros2_fed.fingerprint import ALLOW_FLAG, BackboneMismatchError
from ros2_fed.pipeline import (OUTPUT_NAMES, RUNTIME_CHOICES, SCORE_CHOICES, ModelSpec, StartupError,
                               resolve_from_model, spec_calibration)

SCORE_ABBREV = {"msp": "MSP", "maxlogit": "MLG", "energy": "ENE", "entropy": "ENT", "sml": "SML", "none": "none"}
OUTPUT_BAG = "output_bag"


class UsageError(ValueError):
    """Bad arguments or an output folder that would be overwritten."""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x512, got {text!r}") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fed_bag_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="rosbag2 directory, or a .mcap / .db3 file")
    p.add_argument("--out", required=True, type=Path, help="output folder (report + output_bag/)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--offline", dest="mode", action="store_const", const="offline",
                      help="run the engine in-process over every frame, as fast as possible (default)")
    mode.add_argument("--live", dest="mode", action="store_const", const="live",
                      help="play the bag through a running fed_node over ROS 2 topics and record its outputs")
    p.set_defaults(mode="offline")
    g = p.add_argument_group("topics")
    g.add_argument("--topic", default=None, help="camera topic (sensor_msgs/Image or CompressedImage)")
    g.add_argument("--gt-topic", default=None, help="ground truth: mono8 Cityscapes trainIds (255 = void)")
    g.add_argument("--ood-topic", default=None, help="ground truth: mono8 OOD mask 0 / 1 / 255")
    g.add_argument("--no-gt", action="store_true", help="ignore ground truth (no detection metrics)")
    g.add_argument("--limit", type=int, default=None, help="only the first N camera frames")
    g = p.add_argument_group("model (what fed_node is started with; default: the embedded default model)")
    g.add_argument("--engine", default="", help="engine file (fed_export: .onnx / .engine / fused .safetensors)")
    g.add_argument("--backbone", default="", help="backbone checkpoint (empty = the default model)")
    g.add_argument("--fed", default="", help="FED checkpoint (empty with --backbone empty = the default FED-U)")
    g.add_argument("--size", type=_size, default=None, help="engine input HxW (default: the camera frame size)")
    g.add_argument("--runtime", default="", choices=RUNTIME_CHOICES)
    g.add_argument("--score", default="", choices=SCORE_CHOICES)
    g.add_argument("--threads", type=int, default=0, help="runtime CPU threads (0 = runtime default)")
    g.add_argument("--device", default="", help="runtime device (cpu, cuda, cuda:1)")
    g.add_argument("--params-file", default=None, help="fed_node parameter YAML (e.g. config/fed.yaml)")
    g.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="a fed_node parameter, e.g. -p alerts.confidence_threshold:=0.6 (repeatable)")
    g = p.add_argument_group("live mode")
    g.add_argument("--rate", type=float, default=1.0, help="playback speed x recorded rate (default 1)")
    g.add_argument("--node-command", default=None,
                   help="command that starts the node instead of 'python -m ros2_fed.node' (ROS args are appended)")
    g.add_argument("--attach", default=None, metavar="NODE",
                   help="use an already running fed_node (fully qualified name, e.g. /fed_node) instead of starting one")
    g.add_argument("--input-topic", default=None, help="with --attach: the node's input topic (default <ns>/image)")
    g.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for the started node (default: random)")
    g.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for the node to be ready")
    g = p.add_argument_group("reference methods (fed_eval on the same frames)")
    g.add_argument("--no-reference", action="store_true", help="only the node's own scores")
    g.add_argument("--reference-fed", action="append", default=[], metavar="NAME=PATH",
                   help="FED checkpoints for reference rows (default: the model's FED)")
    g.add_argument("--reference-postprocess", default=None, choices=("none", "gaussian", "sml"),
                   help="FED post-processing of the reference rows (default: the engine's)")
    g.add_argument("--mcd-passes", type=int, default=8, help="MC-dropout passes (0 disables the MCD row)")
    g.add_argument("--stats", default=None, help="logit statistics JSON for SML (default: from the FED checkpoint)")
    g.add_argument(ALLOW_FLAG, action="store_true",
                   help="use reference FEDs, --stats or an --engine made for another backbone than --backbone "
                        "(a warning instead of an error)")
    g.add_argument("--reference-threads", type=int, default=1,
                   help="torch threads for the reference rows (default 1: several OpenMP threads on a busy "
                        "machine are many times slower; 0 = torch's default)")
    g = p.add_argument_group("output")
    g.add_argument("--record", default=",".join(OUTPUT_NAMES),
                   help=f"node outputs written to the output bag (default all: {','.join(OUTPUT_NAMES)})")
    g.add_argument("--output-prefix", default="/fed_node", help="topic prefix of the outputs in the output bag")
    g.add_argument("--no-copy-input", action="store_true", help="do not copy camera + ground truth into the output bag")
    g.add_argument("--mosaic-frames", type=int, default=3, help="frames in each of the worst / best mosaics")
    g.add_argument("--overwrite", action="store_true", help="replace the report and output bag of an earlier run")
    g.add_argument("--quiet", action="store_true", help="no progress bars, fewer messages")
    return p


def _checkpoint_meta(path: str) -> dict[str, Any]:
    if not path:
        return {}
    from ros2_fed.checkpoint import checkpoint_paths

    try:
        return json.loads(checkpoint_paths(path)[1].read_text())
    except (OSError, ValueError):
        return {}


def _percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None, "n": 0}
    arr = np.asarray(values, dtype=np.float64) * 1e3
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
            "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean()), "max": float(arr.max()), "n": int(arr.size)}


def _prepare_out(out: Path, overwrite: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    output_bag = out / OUTPUT_BAG
    previous = [p for p in [output_bag] + [out / n for n in rep.REPORT_FILES] if p.exists()]
    if previous and not overwrite:
        raise UsageError(f"{out} already holds an earlier run ({', '.join(p.name for p in previous)}); "
                         "use --overwrite or another --out")
    if output_bag.exists():
        shutil.rmtree(output_bag)
    rep.clear_previous(out)
    (out / "node.log").unlink(missing_ok=True)
    return output_bag


def _node_row(spec: ModelSpec, metadata: dict[str, Any]) -> str:
    score = spec.score or metadata.get("score") or ""
    if score == "fed":
        variant = metadata.get("fed_variant") or fed_variant(spec) or "FED"
        return f"{variant} (node)"
    return f"{SCORE_ABBREV.get(score, score or 'node')} (node)"


def _joined_live_outputs(scan: bagmod.ScanResult, output_bag: Path, topics: dict[str, str],
                         live: Any) -> Iterator[FrameOutput]:
    """Camera frames joined (by stamp) with the segmentation + confidence recorded from the node."""
    from ros2_fed import codec

    have = {s for s, got in live.outputs.items() if all(n in got for n in REQUIRED_OUTPUTS)}
    names = {topics["segmentation"]: "segmentation", topics["confidence"]: "confidence"}
    info = bagmod.open_info(output_bag)
    messages = bagmod.read_messages(info, list(names))
    pending: dict[int, dict[str, np.ndarray]] = {}
    for frame in bagmod.iter_frames(scan):
        stamp = frame.stamp_ns
        if stamp not in have:
            continue  # dropped by the node
        while len(pending.get(stamp, {})) < len(names):
            try:
                topic, _, _, _, msg = next(messages)
            except StopIteration:
                raise bagmod.BagError(f"{output_bag}: the recorded outputs of frame {frame.index} (stamp {stamp}) "
                                      "are missing from the output bag") from None
            pending.setdefault(bagio.stamp_ns(msg), {})[names[topic]] = np.array(codec.image_to_numpy(msg))
        got = pending.pop(stamp)
        yield FrameOutput(frame=frame, rgb=frame.rgb(), labels=got["segmentation"].astype(np.uint8, copy=False),
                          confidence=got["confidence"].astype(np.float32, copy=False),
                          latency_s=float(live.latency_s(stamp) or math.nan), alert=live.alerts.get(stamp))


def _bool_param(params: dict[str, Any], name: str) -> bool:
    """A boolean node parameter as fed_node would take it (a non-bool is its start-up error too)."""
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise UsageError(f"parameter {name} must be true or false, got {value!r}")
    return value


def evaluate(args: argparse.Namespace, partial: dict[str, Any], log: Any) -> tuple[Path, dict[str, Any]]:
    """The whole run; raises on any failure (the caller writes the failure report)."""
    from tqdm import tqdm

    t_start = time.monotonic()
    progress = not args.quiet
    if args.rate <= 0:
        raise UsageError("--rate must be > 0")
    record = [n.strip() for n in str(args.record).split(",") if n.strip()]
    unknown = [n for n in record if n not in OUTPUT_NAMES]
    if unknown:
        raise UsageError(f"--record: unknown outputs {unknown} (choose from {', '.join(OUTPUT_NAMES)})")
    for name in REQUIRED_OUTPUTS:
        if name not in record:
            record.append(name)
    params: dict[str, Any] = read_params_file(args.params_file) if args.params_file else {}
    for text in args.param:
        key, value = parse_param(text)
        params[key] = value
    out = args.out
    output_bag = _prepare_out(out, args.overwrite)

    # -- the bag -------------------------------------------------------------------------
    timing: dict[str, float] = {}
    scan = bagmod.scan(args.bag, image=args.topic, labels=args.gt_topic, ood=args.ood_topic,
                       ground_truth=not args.no_gt, limit=args.limit, progress=progress)
    sel = scan.selection
    first = scan.frames[0]
    timing["check_bag_s"] = time.monotonic() - t_start
    sizes = sorted({(f.height, f.width) for f in scan.frames})
    log(f"bag {scan.info.path} ({scan.info.storage}): {len(scan.frames)} frames {first.height}x{first.width} on "
        f"{sel.image}" + (f", labels {sel.labels}" if sel.labels else "") + (f", OOD {sel.ood}" if sel.ood else ""))
    partial["bag"] = {"path": str(scan.info.path), "frames": len(scan.frames)}

    # -- the model -----------------------------------------------------------------------
    height, width = args.size or (int(params.get("model.height", 0) or 0), int(params.get("model.width", 0) or 0))
    spec = ModelSpec(engine_path=args.engine or str(params.get("engine_path", "") or ""),
                     backbone=args.backbone or str(params.get("model.backbone", "") or ""),
                     fed=args.fed or str(params.get("model.fed", "") or ""), height=int(height or 0), width=int(width or 0),
                     runtime=args.runtime or str(params.get("runtime", "") or ""),
                     score=args.score or str(params.get("score", "") or ""),
                     threads=int(args.threads or params.get("threads", 0) or 0),
                     device=args.device or str(params.get("device", "") or ""),
                     cpu_spin_wait=_bool_param(params, "cpu_spin_wait"))
    try:
        spec = spec.resolved(first.height, first.width)
    except StartupError as exc:  # a missing file or model choice: the arguments' fault
        raise UsageError(str(exc)) from None
    log(f"model: {spec.describe()}")
    partial["model"] = spec.describe()
    node_params = {k: v for k, v in params.items() if k not in spec.node_params()}

    topics = {name: f"/{args.output_prefix.strip('/')}/{name}" for name in record}
    custom = {"ros2_fed.fed_bag_eval": json.dumps({"source": str(scan.info.path), "mode": args.mode,
                                                   "model": spec.describe()})}
    custom.update({k: v for k, v in scan.info.custom_data.items() if k == bagmod.SYNTHROAD_KEY})
    writer = bagio.BagWriter(output_bag, scan.info.storage, custom_data=custom)
    try:
        if not args.no_copy_input:
            for topic in sel.topics:
                writer.add_topic(topic, scan.info.topics[topic].msgtype or bagio.IMAGE)
        for name, topic in topics.items():
            writer.add_topic(topic, OUTPUT_TYPES[name])

        # -- run ---------------------------------------------------------------------------
        metadata: dict[str, Any] = {}
        live = None
        offline_stats = None
        if args.mode == "offline":
            from ros2_fed.eval.replay.offline import OfflineStats, run_offline

            offline_stats = OfflineStats()
            stream: Iterator[FrameOutput] = run_offline(scan, spec, writer, topics, params,
                                                        warmup_runs=int(params.get("warmup_runs", 3)), log=log,
                                                        stats=offline_stats, copy_inputs=not args.no_copy_input)
        else:
            from ros2_fed.eval.replay.live import LiveOptions, run_live

            import shlex

            node_cmd = shlex.split(args.node_command) if args.node_command else None
            options = LiveOptions(rate=args.rate, node_command=node_cmd, attach=args.attach,
                                  input_topic=args.input_topic, domain_id=args.domain_id,
                                  params_file=args.params_file, params=node_params,
                                  ready_timeout_s=args.ready_timeout, log_path=out / "node.log")
            t_live = time.monotonic()
            live = run_live(scan, spec, writer, topics, options, log=log, progress=progress,
                            copy_inputs=not args.no_copy_input)
            timing["live_run_s"] = time.monotonic() - t_live
            timing["node_start_s"] = live.node_start_s
            writer.close()
            stream = _joined_live_outputs(scan, output_bag, topics, live)

        # -- score -------------------------------------------------------------------------
        backbone_meta = _checkpoint_meta(spec.backbone)
        reference = None
        ref_postprocess = None
        if not args.no_reference and spec.backbone and (sel.labels or sel.ood):
            feds: dict[str, str] = {}
            for item in args.reference_fed:
                name, _, path = item.partition("=")
                if not path:
                    raise UsageError(f"--reference-fed {item!r}: expected NAME=PATH")
                feds[name] = path
            if not feds and spec.fed and spec.score == "fed":
                feds[fed_variant(spec) or "FED-U"] = spec.fed
            ref_postprocess = args.reference_postprocess or ("sml" if spec.score == "sml" else
                                                             spec_calibration(spec).get("postprocess", "none"))
            reference = ReferenceModel(backbone=spec.backbone, feds=feds, fed_postprocess=ref_postprocess,
                                       mcd_passes=max(0, args.mcd_passes), stats=args.stats,
                                       allow_backbone_mismatch=args.allow_backbone_mismatch)
        if reference is not None and args.reference_threads > 0:
            import torch

            torch.set_num_threads(args.reference_threads)
        scorer: Optional[Scorer] = None
        ref_scores: Optional[ReferenceScores] = None
        picker: Optional[rep.MosaicPicker] = None
        node_row = ""
        stats, levels, latencies, timeline = [], [], [], []
        calibration = spec_calibration(spec)
        merged = resolve_from_model(params, calibration)
        threshold = float(merged["alerts.confidence_threshold"])
        t_score = time.monotonic()
        bar = tqdm(total=len(scan.frames), desc="evaluating" if args.mode == "live" else "running + evaluating",
                   disable=not progress, dynamic_ncols=True)
        try:
            for item in stream:
                bar.update(1)
                if scorer is None:
                    metadata = offline_stats.engine_metadata if offline_stats is not None else {}
                    num_classes = int(metadata.get("num_classes") or backbone_meta.get("num_classes")
                                      or len(metadata.get("class_names") or backbone_meta.get("class_names") or [])
                                      or 19)
                    node_row = _node_row(spec, metadata)
                    scorer = Scorer(num_classes, len(scan.frames), first.height * first.width, probability=[node_row])
                    if reference is not None:
                        log(f"reference methods: {reference.backbone} + {list(reference.feds) or 'no FED'} "
                            f"(post-processing {reference.fed_postprocess}, MCD passes {reference.mcd_passes})")
                        try:
                            ref_scores = ReferenceScores(reference, engine_metadata=metadata)
                        except BackboneMismatchError as exc:
                            raise UsageError(str(exc)) from None
                    palette = metadata.get("palette") or backbone_meta.get("palette")
                    from ros2_fed import viz

                    pal = np.asarray(palette, np.uint8) if palette else viz.default_palette(num_classes)
                    picker = rep.MosaicPicker(args.mosaic_frames, pal, float(merged["viz.confidence_min"]),
                                              float(merged["viz.confidence_max"]), frames=len(scan.frames))
                frame = item.frame
                gt = frame.label is not None or frame.ood is not None
                if gt:
                    scorer.update(item.labels, {node_row: 1.0 - item.confidence}, frame.label, frame.ood, "node")
                    if ref_scores is not None:
                        ref_pred, maps = ref_scores(item.rgb)
                        scorer.update(ref_pred, maps, frame.label, frame.ood, "reference")
                stat = frame_stat(frame.index, frame.stamp_ns, item.labels, item.confidence, frame.label, frame.ood,
                                  threshold)
                stats.append(stat)
                picker.offer(stat, item.rgb, item.labels, item.confidence, frame.label, frame.ood)
                level = item.alert.level if item.alert is not None else None
                levels.append(level)
                if not math.isnan(item.latency_s):
                    latencies.append(item.latency_s)
                timeline.append({"index": frame.index, "stamp": f"{frame.stamp_ns // 10**9}.{frame.stamp_ns % 10**9:09d}",
                                 "level": level, "level_name": rep.level_name(level),
                                 "fraction": item.alert.fraction if item.alert is not None else None,
                                 "region_size": item.alert.region_size if item.alert is not None else None,
                                 "uncertain_fraction": stat.uncertain_fraction, "mean_confidence": stat.mean_confidence,
                                 "auroc": stat.auroc, "ood_pixels": stat.ood_pixels,
                                 "ood_object_pixels": stat.ood_object_pixels})
        finally:
            bar.close()
        timing["evaluate_s" if args.mode == "live" else "run_and_evaluate_s"] = time.monotonic() - t_score
        if args.mode == "offline":
            writer.close()
        if scorer is None:
            if args.mode == "live":
                raise LiveError(f"fed_node produced no output for any of the {len(scan.frames)} frames "
                                f"(see {out / 'node.log'})")
            raise RuntimeError("no frame was processed")

        # -- assemble ----------------------------------------------------------------------
        evaluated = len(stats)
        t_results = time.monotonic()
        results = scorer.results()
        timing["pooled_metrics_s"] = time.monotonic() - t_results
        sources = {name: ("node" if name == node_row else "reference") for name in results["methods"]}
        transitions, previous = [], None
        for entry in timeline:
            if entry["level"] != previous:
                transitions.append(entry)
                previous = entry["level"]
        counts = {LEVEL_NAMES.get(k, str(k)): sum(1 for lv in levels if lv == k) for k in sorted({lv for lv in levels if lv is not None})}
        if any(lv is None for lv in levels):
            counts["no alert received"] = sum(1 for lv in levels if lv is None)
        detection = detection_report(levels, [s.ood_object_pixels for s in stats],
                                     [s.ood_pixels if s.ood_object_pixels is not None else None for s in stats],
                                     int(merged["alerts.raise_frames"]))
        with_auroc = [s for s in stats if s.auroc is not None]
        by_index = {s.index: s for s in stats}
        report: dict[str, Any] = {
            "complete": False,
            "tool": "fed_bag_eval",
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "mode": args.mode,
            "rate": args.rate if args.mode == "live" else None,
            "bag": {"path": str(scan.info.path), "storage": scan.info.storage, "files": scan.info.files,
                    "duration_s": scan.info.duration_s, "size": ", ".join(f"{h}x{w}" for h, w in sizes),
                    "topics": {"image": sel.image, "image_type": sel.image_type, "labels": sel.labels, "ood": sel.ood},
                    "ground_truth_without_frame": scan.gt_without_frame, "frames_without_ground_truth": scan.frames_without_gt},
            "model": {"description": spec.describe(), "engine_path": spec.engine_path, "backbone": spec.backbone,
                      "fed": spec.fed, "height": spec.height, "width": spec.width, "runtime": spec.runtime,
                      "score": spec.score, "threads": spec.threads, "cpu_spin_wait": spec.cpu_spin_wait,
                      "engine": {k: metadata.get(k) for k in ("runtime", "runtime_version", "score", "postprocess",
                                                              "fed_variant", "input_shape", "precision", "model_hash")
                                 if k in metadata}},
            "params": params,
            "output_prefix": "/" + args.output_prefix.strip("/"),
            "frames": {"in_bag": len(scan.frames), "evaluated": evaluated, "dropped": len(scan.frames) - evaluated,
                       "with_labels": sum(1 for f in scan.frames if f.has_label),
                       "with_ood": sum(1 for f in scan.frames if f.has_ood)},
            "metrics": results,
            "method_sources": sources,
            "node_method": node_row,
            "reference": {"backbone": reference.backbone, "feds": reference.feds,
                          "fed_postprocess": reference.fed_postprocess, "mcd_passes": reference.mcd_passes}
            if reference is not None else None,
            "latency_ms": {**_percentiles(latencies),
                           "what": "publish -> outputs received" if args.mode == "live" else "decode + inference"},
            "alerts": {"counts": counts, "transitions": transitions, "per_frame": timeline,
                       "detection": detection,
                       "config": {k: v for k, v in merged.items() if k.startswith("alerts.")}},
            "frames_ranked": {"worst": [rep.stat_dict(by_index[i]) for i in picker.indices("worst")] if picker else [],
                              "best": [rep.stat_dict(by_index[i]) for i in picker.indices("best")] if picker else [],
                              "by": "per-frame AuROC (node score vs misclassified or OOD)" if with_auroc
                              else "uncertain fraction"},
            "files": {"output_bag": str(output_bag), "node_log": str(out / "node.log") if args.mode == "live" else None},
        }
        if args.mode == "offline":
            assert offline_stats is not None
            report["throughput_fps"] = evaluated / offline_stats.processing_s if offline_stats.processing_s else 0.0
            report["throughput_what"] = (f"decode + inference in this process; engine load "
                                         f"{offline_stats.load_s:.1f} s, loop incl. writing the bag "
                                         f"{offline_stats.wall_s:.1f} s")
        else:
            assert live is not None
            report["throughput_fps"] = evaluated / live.span_s if live.span_s > 0 else 0.0
            report["throughput_what"] = "node outputs received per second, first publish to last output"
            node_dropped = None
            if live.node_pipeline and live.node_pipeline_start:
                try:
                    node_dropped = int(live.node_pipeline["frames_dropped"]) - int(live.node_pipeline_start["frames_dropped"])
                except (KeyError, ValueError):
                    node_dropped = None
            report["frames"]["node_dropped"] = node_dropped
            report["live"] = {"domain_id": live.domain_id, "node_command": live.node_command,
                              "ready": live.ready_line, "published": live.published, "play_s": live.play_s,
                              "span_s": live.span_s, "warmup_frames": live.warmup_frames,
                              "late_publishes": live.late_publishes, "node_exit_code": live.node_exit_code,
                              "node_pipeline_before": live.node_pipeline_start, "node_pipeline_after": live.node_pipeline}
        presence = detection["presence"] if detection else [None] * len(stats)
        timeline_png = rep.timeline_image(stats, levels, float(merged["alerts.warn_size"]),
                                          float(merged["alerts.error_size"]),
                                          [t["region_size"] for t in timeline], presence) if stats else None
        report["timing"] = {**{k: round(v, 2) for k, v in timing.items()}, "total_s": time.monotonic() - t_start}
        md = rep.write_report(out, report, picker, timeline_png)
        return md, report
    except BaseException:
        writer.abort()  # no half-written output bag next to a failure report
        raise


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"fed_bag_eval: {msg}", file=sys.stderr, flush=True))
    partial: dict[str, Any] = {"tool": "fed_bag_eval", "mode": args.mode, "bag": {"path": str(args.bag)}}
    try:
        md, report = evaluate(args, partial, log)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            message, code = "interrupted", 130
        elif isinstance(exc, (bagmod.BagError, UsageError)) or isinstance(exc.__cause__, BackboneMismatchError):
            message, code = str(exc), 2  # the arguments' fault (a FED of another backbone included)
        elif isinstance(exc, LiveError):
            message, code = str(exc), 1
        elif isinstance(exc, Exception):
            message, code = f"{type(exc).__name__}: {exc}", 1
        else:
            raise
        if isinstance(exc, UsageError) and "already holds an earlier run" in str(exc):
            print(f"fed_bag_eval: error: {message}", file=sys.stderr)
            return code
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            path = rep.write_failure(args.out, message, partial)
            where = f" (nothing was evaluated to completion; see {path})"
        except OSError:
            where = ""
        print(f"fed_bag_eval: error: {message}{where}", file=sys.stderr)
        if code == 1 and not isinstance(exc, (bagmod.BagError, UsageError)) and not isinstance(exc, LiveError):
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        return code
    print(rep.metrics_table(report))
    lat = report["latency_ms"]
    print(f"frames: {report['frames']['evaluated']} evaluated, {report['frames']['dropped']} dropped; "
          f"latency ({lat['what']}) p50 {rep._ms(lat['p50'])} ms, p95 {rep._ms(lat['p95'])} ms, "
          f"p99 {rep._ms(lat['p99'])} ms; {report['throughput_fps']:.1f} frames/s")
    for line in rep.detection_lines(report["alerts"].get("detection")):
        if line:
            print(line.replace("**", ""))
    print(f"fed_bag_eval: report {md} (complete), output bag {report['files']['output_bag']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
