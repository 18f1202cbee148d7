"""One camera's ``fed_bag_eval`` run: the engine over the bag's frames, scoring, the report.

Why apart from the command line: the rig replay (:mod:`.multicamera`) runs one
:class:`BagEvaluation` per camera and shares its helpers; :mod:`.cli` only parses and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ros2_fed import stopping
from ros2_fed.engine.verify import VERIFY_ENV, ExportVerificationError
from ros2_fed.eval.alert_metrics import detection_report
from ros2_fed.eval.early_warning import FrameObjects, early_warning_report, frame_objects
from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay import report as rep
from ros2_fed.eval.replay.errors import LiveError, OutputExistsError, UsageError
from ros2_fed.eval.replay.model import fed_variant, parse_param, read_params_file
from ros2_fed.eval.replay.outputs import LEVEL_NAMES, OUTPUT_TYPES, REQUIRED_OUTPUTS, FrameOutput
from ros2_fed.eval.replay.scoring import (
    FrameStat,
    ReferenceModel,
    ReferenceScores,
    Scorer,
    frame_stat,
)
from ros2_fed.fingerprint import BackboneMismatchError
from ros2_fed.names import METHOD_BY_SCORE as SCORE_ABBREV
from ros2_fed.pipeline.model_spec import ModelSpec, spec_calibration
from ros2_fed.pipeline.outputs import OUTPUT_NAMES
from ros2_fed.pipeline.params import StartupError, input_limits, resolve_from_model

OUTPUT_BAG = "output_bag"


def _checkpoint_meta(path: str) -> dict[str, Any]:
    if not path:
        return {}
    from ros2_fed.checkpoint import checkpoint_paths

    try:
        return json.loads(checkpoint_paths(path)[1].read_text())
    except (OSError, ValueError):
        return {}


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None, "n": 0}
    arr = np.asarray(values, dtype=np.float64) * 1e3
    return {
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
        "n": int(arr.size),
    }


def prepare_out(out: Path, overwrite: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    output_bag = out / OUTPUT_BAG
    previous = [p for p in [output_bag] + [out / n for n in rep.REPORT_FILES] if p.exists()]
    if previous and not overwrite:
        names = ", ".join(p.name for p in previous)
        raise OutputExistsError(
            f"{out} already holds an earlier run ({names}); use --overwrite or another --out"
        )
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


def _joined_live_outputs(
    scan: bagmod.ScanResult, output_bag: Path, topics: dict[str, str], live: Any, limits: Any
) -> Iterator[FrameOutput]:
    """Camera frames joined (by stamp) with the segmentation + confidence recorded from the
    node."""
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
                raise bagmod.BagError(
                    f"{output_bag}: the recorded outputs of frame {frame.index} (stamp {stamp}) "
                    "are missing from the output bag"
                ) from None
            pending.setdefault(bagio.stamp_ns(msg), {})[names[topic]] = np.array(
                codec.image_to_numpy(msg)
            )
        got = pending.pop(stamp)
        alert = live.alerts.get(stamp)
        yield FrameOutput(
            frame=frame,
            rgb=frame.rgb(limits),
            labels=got["segmentation"].astype(np.uint8, copy=False),
            confidence=got["confidence"].astype(np.float32, copy=False),
            latency_s=float(live.latency_s(stamp) or math.nan),
            alert=alert,
            scene=alert.scene if alert is not None else None,  # on ~/alerts after the alert
        )


def _bool_param(params: dict[str, Any], name: str) -> bool:
    """A boolean node parameter as fed_node would take it (a non-bool is its start-up error
    too)."""
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise UsageError(f"parameter {name} must be true or false, got {value!r}")
    return value


@dataclass
class _Scored:
    """What the scoring loop collected, frame by frame."""

    scorer: Optional[Scorer] = None
    ref_scores: Optional[ReferenceScores] = None
    picker: Optional[rep.MosaicPicker] = None
    node_row: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)  # the node's engine sidecar (offline)
    stats: list[FrameStat] = field(default_factory=list)
    levels: list[Optional[int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    scene_timeline: list[dict[str, Any]] = field(default_factory=list)  # the scene status
    objects: list[Optional[FrameObjects]] = field(default_factory=list)  # early warning


def _timeline_entry(item: FrameOutput, stat: FrameStat, level: Optional[int]) -> dict[str, Any]:
    frame, alert = item.frame, item.alert
    stamp = f"{frame.stamp_ns // 10**9}.{frame.stamp_ns % 10**9:09d}"
    return {
        "index": frame.index,
        "stamp": stamp,
        "level": level,
        "level_name": rep.level_name(level),
        "fraction": alert.fraction if alert is not None else None,
        "region_size": alert.region_size if alert is not None else None,
        "uncertain_fraction": stat.uncertain_fraction,
        "mean_confidence": stat.mean_confidence,
        "auroc": stat.auroc,
        "ood_pixels": stat.ood_pixels,
        "ood_object_pixels": stat.ood_object_pixels,
    }


def _transitions(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline entries where the alert level changes."""
    transitions, previous = [], None
    for entry in timeline:
        if entry["level"] != previous:
            transitions.append(entry)
            previous = entry["level"]
    return transitions


def _level_counts(levels: list[Optional[int]]) -> dict[str, int]:
    counts = {
        LEVEL_NAMES.get(k, str(k)): sum(1 for lv in levels if lv == k)
        for k in sorted({lv for lv in levels if lv is not None})
    }
    if any(lv is None for lv in levels):
        counts["no alert received"] = sum(1 for lv in levels if lv is None)
    return counts


@contextlib.contextmanager
def verify_setting(no_verify: bool) -> Iterator[None]:
    """``--no-verify``: the engine cache here (offline) and in the node (live) builds without
    the check against eager while the run lasts."""
    saved = os.environ.get(VERIFY_ENV)
    if no_verify:
        os.environ[VERIFY_ENV] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(VERIFY_ENV, None)
        else:
            os.environ[VERIFY_ENV] = saved


class BagEvaluation:
    """One fed_bag_eval run in named steps; :meth:`run` raises on any failure."""

    def __init__(self, args: argparse.Namespace, partial: dict[str, Any], log: Any) -> None:
        self.args, self.partial, self.log = args, partial, log
        self.progress = not args.quiet
        self.out: Path = args.out
        self.t_start = time.monotonic()
        self.timing: dict[str, float] = {}
        self.live: Any = None  # LiveResult
        self.offline_stats: Any = None  # OfflineStats

    def run(self) -> tuple[Path, dict[str, Any]]:
        """The whole run: prepare, the frames through the node (or its frame path), scored,
        the report written."""
        with verify_setting(self.args.no_verify):
            self.prepare()
            try:
                self.score(self.start_stream())
                return self.finish()
            except BaseException:
                self.writer.abort()  # no half-written output bag next to a failure report
                raise

    def prepare(self) -> None:
        """Everything before the first frame: arguments, bag, model, output bag, reference."""
        record = self.check_arguments()
        self.params = self.node_parameters()
        self.limits = input_limits(self.params)
        self.output_bag = prepare_out(self.out, self.args.overwrite)
        self.scan = self.scan_bag()
        self.spec = self.resolve_model()
        self.resize = self.resize_notice()
        self.topics = {name: f"/{self.args.output_prefix.strip('/')}/{name}" for name in record}
        self.merged = resolve_from_model(self.params, spec_calibration(self.spec))
        self.writer = self.open_output_bag()
        try:
            self.add_topics()
            self.reference = self.reference_model()
        except BaseException:
            self.writer.abort()
            raise
        self.scored = _Scored()

    def finish(self) -> tuple[Path, dict[str, Any]]:
        """The report from what was scored; returns (report.md, report.json's content)."""
        scored = self.scored
        report = self.assemble(scored, self.reference)
        timeline_png = self.timeline_png(scored, report)
        report["timing"] = {
            **{k: round(v, 2) for k, v in self.timing.items()},
            "total_s": time.monotonic() - self.t_start,
        }
        return rep.write_report(self.out, report, scored.picker, timeline_png), report

    # -- arguments -------------------------------------------------------------------------
    def check_arguments(self) -> list[str]:
        """The outputs to record (always including the ones the metrics need)."""
        if self.args.rate <= 0:
            raise UsageError("--rate must be > 0")
        record = [n.strip() for n in str(self.args.record).split(",") if n.strip()]
        unknown = [n for n in record if n not in OUTPUT_NAMES]
        if unknown:
            raise UsageError(
                f"--record: unknown outputs {unknown} (choose from {', '.join(OUTPUT_NAMES)})"
            )
        return record + [name for name in REQUIRED_OUTPUTS if name not in record]

    def node_parameters(self) -> dict[str, Any]:
        """--params-file, then the -p overrides."""
        params: dict[str, Any] = {}
        if self.args.params_file:
            params = read_params_file(self.args.params_file)
        for text in self.args.param:
            key, value = parse_param(text)
            params[key] = value
        if getattr(self.args, "clips", None) is not None:  # --clips DIR: the node's recorder
            params.update({"record.enabled": True, "record.dir": str(self.args.clips)})
        return params

    # -- the bag ---------------------------------------------------------------------------
    def scan_bag(self) -> bagmod.ScanResult:
        args = self.args
        scan = bagmod.scan(
            args.bag,
            image=args.topic,
            labels=args.gt_topic,
            ood=args.ood_topic,
            ground_truth=not args.no_gt,
            limits=self.limits,
            limit=args.limit,
            progress=self.progress,
        )
        sel, first = scan.selection, scan.usable[0]
        self.timing["check_bag_s"] = time.monotonic() - self.t_start
        self.sizes = sorted({(f.height, f.width) for f in scan.usable})
        self.log(
            f"bag {scan.info.path} ({scan.info.storage}): {len(scan.frames)} frames "
            f"{first.height}x{first.width} on {sel.image}"
            + (f", labels {sel.labels}" if sel.labels else "")
            + (f", OOD {sel.ood}" if sel.ood else "")
        )
        self.partial["bag"] = {"path": str(scan.info.path), "frames": len(scan.frames)}
        return scan

    # -- the model -------------------------------------------------------------------------
    def resolve_model(self) -> ModelSpec:
        """What fed_node would be started with: the flags, else the node parameters."""
        args, params, first = self.args, self.params, self.scan.usable[0]
        height, width = args.size or (
            int(params.get("model.height", 0) or 0),
            int(params.get("model.width", 0) or 0),
        )

        def param(name: str) -> str:
            return str(params.get(name, "") or "")

        spec = ModelSpec(
            engine_path=args.engine or param("engine_path"),
            backbone=args.backbone or param("model.backbone"),
            fed=args.fed or param("model.fed"),
            height=int(height or 0),
            width=int(width or 0),
            runtime=args.runtime or param("runtime"),
            score=args.score or param("score"),
            threads=int(args.threads or params.get("threads", 0) or 0),
            device=args.device or param("device"),
            cpu_spin_wait=_bool_param(params, "cpu_spin_wait"),
        )
        try:
            spec = spec.resolved(first.height, first.width)
        except StartupError as exc:  # a missing file or model choice: the arguments' fault
            raise UsageError(str(exc)) from None
        self.log(f"model: {spec.describe()}")
        self.partial["model"] = spec.describe()
        return spec

    def engine_size(self) -> Optional[tuple[int, int]]:
        """(H, W) the node's engine takes: an engine file's sidecar, else the cached engine's."""
        if not self.spec.engine_path:
            return (int(self.spec.height), int(self.spec.width))
        from ros2_fed.engine import EngineError, read_sidecar

        try:
            shape = read_sidecar(self.spec.engine_path).get("input_shape")
        except (EngineError, OSError, ValueError):
            return None  # opening the engine reports it
        return (int(shape[0]), int(shape[1])) if shape else None

    def resize_notice(self) -> Optional[dict[str, Any]]:
        """Frames of another size than the engine's are resized on the host (as fed_node does):
        said once on stderr (even with --quiet) and recorded in the report."""
        size = self.engine_size()
        other = [f"{h}x{w}" for h, w in self.sizes if size is not None and (h, w) != size]
        if not other:
            return None
        engine = f"{size[0]}x{size[1]}"
        note = (
            f"camera frames of {', '.join(other)} are resized to the engine's input {engine} "
            "(area) and its outputs back to the frame size, as fed_node does; metrics are at "
            "the frame size"
        )
        print(f"fed_bag_eval: note: {note}", file=sys.stderr, flush=True)
        return {"frames": other, "engine": engine, "note": note}

    # -- the output bag --------------------------------------------------------------------
    def open_output_bag(self) -> bagio.BagWriter:
        scan = self.scan
        custom = {
            "ros2_fed.fed_bag_eval": json.dumps(
                {
                    "source": str(scan.info.path),
                    "mode": self.args.mode,
                    "model": self.spec.describe(),
                }
            )
        }
        custom.update(
            {k: v for k, v in scan.info.custom_data.items() if k == bagmod.SYNTHROAD_KEY}
        )
        return bagio.BagWriter(self.output_bag, scan.info.storage, custom_data=custom)

    def add_topics(self) -> None:
        if not self.args.no_copy_input:
            for topic in self.scan.selection.topics:
                self.writer.add_topic(topic, self.scan.info.topics[topic].msgtype or bagio.IMAGE)
        for name, topic in self.topics.items():
            self.writer.add_topic(topic, OUTPUT_TYPES[name])

    # -- run ---------------------------------------------------------------------------------
    def start_stream(self) -> Iterator[FrameOutput]:
        """Offline: a lazy stream (the engine runs as it is consumed). Live: the whole run
        through fed_node first, then its recorded outputs joined with the camera frames."""
        if self.args.mode == "offline":
            return self.offline_stream()
        return self.live_stream()

    def camera_stream(self, name: str = "") -> Any:
        """This camera as one stream of an offline run (``name``: the node's camera name)."""
        from ros2_fed.eval.replay.offline import CameraStream

        stream = CameraStream(
            name, self.scan, self.writer, self.topics, not self.args.no_copy_input
        )
        self.offline_stats = stream.stats
        return stream

    def offline_stream(self) -> Iterator[FrameOutput]:
        from ros2_fed.eval.replay.offline import run_offline

        frames = run_offline(
            [self.camera_stream()],
            self.spec,
            self.params,
            warmup_runs=int(self.params.get("warmup_runs", 3)),
            log=self.log,
        )
        return (item for _, item in frames)

    def live_stream(self) -> Iterator[FrameOutput]:
        import shlex

        from ros2_fed.eval.replay.live import LiveOptions, run_live

        args = self.args
        node_params = {k: v for k, v in self.params.items() if k not in self.spec.node_params()}
        node_command = shlex.split(args.node_command) if args.node_command else None
        options = LiveOptions(
            rate=args.rate,
            node_command=node_command,
            attach=args.attach,
            input_topic=args.input_topic,
            domain_id=args.domain_id,
            params_file=args.params_file,
            params=node_params,
            ready_timeout_s=args.ready_timeout,
            log_path=self.out / "node.log",
            reliable=bool(getattr(args, "reliable", False)),
        )
        t_live = time.monotonic()
        self.live = run_live(
            self.scan,
            self.spec,
            self.writer,
            self.topics,
            options,
            log=self.log,
            progress=self.progress,
            copy_inputs=not args.no_copy_input,
        )
        self.timing["live_run_s"] = time.monotonic() - t_live
        self.timing["node_start_s"] = self.live.node_start_s
        self.writer.close()
        return _joined_live_outputs(
            self.scan, self.output_bag, self.topics, self.live, self.limits
        )

    # -- score -------------------------------------------------------------------------------
    def reference_model(self) -> Optional[ReferenceModel]:
        """The checkpoints of the reference rows, or None (no rows, no ground truth, an engine)."""
        args, spec, sel = self.args, self.spec, self.scan.selection
        if args.no_reference or not spec.backbone or not (sel.labels or sel.ood):
            return None
        feds: dict[str, str] = {}
        for item in args.reference_fed:
            name, _, path = item.partition("=")
            if not path:
                raise UsageError(f"--reference-fed {item!r}: expected NAME=PATH")
            feds[name] = path
        if not feds and spec.fed and spec.score == "fed":
            feds[fed_variant(spec) or "FED-U"] = spec.fed
        postprocess = args.reference_postprocess or (
            "sml" if spec.score == "sml" else spec_calibration(spec).get("postprocess", "none")
        )
        reference = ReferenceModel(
            backbone=spec.backbone,
            feds=feds,
            fed_postprocess=postprocess,
            mcd_passes=max(0, args.mcd_passes),
            stats=args.stats,
            allow_backbone_mismatch=args.allow_backbone_mismatch,
        )
        if args.reference_threads > 0:
            import torch

            torch.set_num_threads(args.reference_threads)
        return reference

    def score(self, stream: Iterator[FrameOutput]) -> None:
        """Every frame of ``stream`` scored (a progress bar unless --quiet), then
        :meth:`end_scoring`."""
        from tqdm import tqdm

        t_score = time.monotonic()
        bar = tqdm(
            total=len(self.scan.frames),
            desc="evaluating" if self.args.mode == "live" else "running + evaluating",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            for item in stream:
                bar.update(1)
                self.consume(item)
        finally:
            bar.close()
        self.end_scoring(time.monotonic() - t_score)

    def consume(self, item: FrameOutput) -> None:
        """One frame the node (or its frame path) processed: scored, timed, kept for the
        report."""
        if self.scored.scorer is None:
            self.start_scoring(self.scored, self.reference)
        threshold = float(self.merged["alerts.confidence_threshold"])
        self.score_frame(self.scored, item, threshold)

    def end_scoring(self, seconds: float) -> None:
        """After the last frame: the offline output bag closed; a run without a single
        processed frame is a failure."""
        live = self.args.mode == "live"
        self.timing["evaluate_s" if live else "run_and_evaluate_s"] = seconds
        if not live:
            self.writer.close()
        if self.scored.scorer is None:
            if live:
                raise LiveError(
                    f"fed_node produced no output for any of the "
                    f"{len(self.scan.frames)} frames (see {self.out / 'node.log'})"
                )
            raise RuntimeError("no frame was processed")

    def start_scoring(self, scored: _Scored, reference: Optional[ReferenceModel]) -> None:
        """On the first frame (the offline engine is open by then): scorer, reference rows,
        mosaics."""
        from ros2_fed import viz

        first = self.scan.usable[0]
        metadata = self.offline_stats.engine_metadata if self.offline_stats is not None else {}
        backbone_meta = _checkpoint_meta(self.spec.backbone)
        names = metadata.get("class_names") or backbone_meta.get("class_names") or []
        num_classes = int(
            metadata.get("num_classes") or backbone_meta.get("num_classes") or len(names) or 19
        )
        scored.metadata = metadata
        scored.node_row = _node_row(self.spec, metadata)
        scored.scorer = Scorer(
            num_classes,
            len(self.scan.frames),
            first.height * first.width,
            probability=[scored.node_row],
        )
        if reference is not None:
            feds = list(reference.feds) or "no FED"
            self.log(
                f"reference methods: {reference.backbone} + {feds} "
                f"(post-processing {reference.fed_postprocess}, "
                f"MCD passes {reference.mcd_passes})"
            )
            try:
                scored.ref_scores = ReferenceScores(reference, engine_metadata=metadata)
            except BackboneMismatchError as exc:
                raise UsageError(str(exc)) from None
        palette = metadata.get("palette") or backbone_meta.get("palette")
        pal = np.asarray(palette, np.uint8) if palette else viz.default_palette(num_classes)
        scored.picker = rep.MosaicPicker(
            self.args.mosaic_frames,
            pal,
            float(self.merged["viz.confidence_min"]),
            float(self.merged["viz.confidence_max"]),
            frames=len(self.scan.frames),
        )

    @staticmethod
    def score_frame(scored: _Scored, item: FrameOutput, threshold: float) -> None:
        assert scored.scorer is not None and scored.picker is not None
        frame = item.frame
        if frame.label is not None or frame.ood is not None:
            scored.scorer.update(
                item.labels,
                {scored.node_row: 1.0 - item.confidence},
                frame.label,
                frame.ood,
                "node",
            )
            if scored.ref_scores is not None:
                ref_pred, maps = scored.ref_scores(item.rgb)
                scored.scorer.update(ref_pred, maps, frame.label, frame.ood, "reference")
        stat = frame_stat(
            frame.index,
            frame.stamp_ns,
            item.labels,
            item.confidence,
            frame.label,
            frame.ood,
            threshold,
        )
        scored.stats.append(stat)
        scored.objects.append(
            None if frame.ood is None else frame_objects(frame.ood, item.confidence, threshold)
        )
        scored.picker.offer(stat, item.rgb, item.labels, item.confidence, frame.label, frame.ood)
        level = item.alert.level if item.alert is not None else None
        scored.levels.append(level)
        if not math.isnan(item.latency_s):
            scored.latencies.append(item.latency_s)
        scored.timeline.append(_timeline_entry(item, stat, level))
        scored.scene_timeline.append(rep.scene_entry(frame.index, frame.stamp_ns, item.scene))

    # -- assemble ----------------------------------------------------------------------------
    def assemble(self, scored: _Scored, reference: Optional[ReferenceModel]) -> dict[str, Any]:
        """report.json's content (``complete`` is set by ``rep.write_report``)."""
        assert scored.scorer is not None
        args, stats = self.args, scored.stats
        t_results = time.monotonic()
        results = scored.scorer.results()
        self.timing["pooled_metrics_s"] = time.monotonic() - t_results
        report: dict[str, Any] = {
            "complete": False,
            "tool": "fed_bag_eval",
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "arguments": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            },
            "mode": args.mode,
            "rate": args.rate if args.mode == "live" else None,
            "bag": self.bag_section(),
            "model": self.model_section(scored.metadata),
            "params": self.params,
            "output_prefix": "/" + args.output_prefix.strip("/"),
            "frames": self.frames_section(len(stats)),
            "metrics": results,
            "method_sources": {
                name: ("node" if name == scored.node_row else "reference")
                for name in results["methods"]
            },
            "node_method": scored.node_row,
            "reference": {
                "backbone": reference.backbone,
                "feds": reference.feds,
                "fed_postprocess": reference.fed_postprocess,
                "mcd_passes": reference.mcd_passes,
            }
            if reference is not None
            else None,
            "latency_ms": {
                **percentiles(scored.latencies),
                "what": "publish -> outputs received"
                if args.mode == "live"
                else "decode + inference",
            },
            "alerts": self.alerts_section(scored),
            "early_warning": self.early_warning_section(scored),
            "scene": rep.scene_section(scored.scene_timeline, self.partial.get("camera") or ""),
            "frames_ranked": self.ranked_section(scored),
            "files": {
                "output_bag": str(self.output_bag),
                "node_log": str(self.out / "node.log") if args.mode == "live" else None,
            },
        }
        if args.mode == "offline":
            self.add_offline_throughput(report)
        else:
            self.add_live_section(report)
        return report

    def frames_section(self, evaluated: int) -> dict[str, Any]:
        """Frames in the bag, scored, refused as bad input (by the node's kind names: the
        frame path's counters offline, the node's own live) and dropped (the rest)."""
        frames = self.scan.frames
        bad = self.bad_input()
        return {
            "in_bag": len(frames),
            "evaluated": evaluated,
            "bad_input": bad,
            "dropped": len(frames) - evaluated - sum(bad.values()),
            "with_labels": sum(1 for f in frames if f.has_label),
            "with_ood": sum(1 for f in frames if f.has_ood),
        }

    def bad_input(self) -> dict[str, int]:
        """Refused frames by kind: offline the frame path's count, live the node's (its
        /diagnostics ``bad_input.KIND`` values after the bag minus before)."""
        if self.offline_stats is not None:
            return dict(self.offline_stats.bad_input)
        if self.live is None:
            return {}
        before, after = self.live.node_pipeline_start, self.live.node_pipeline
        prefix = "bad_input."
        counts = {
            key[len(prefix) :]: int(value) - int(before.get(key, 0))
            for key, value in after.items()
            if key.startswith(prefix)
        }
        return {kind: n for kind, n in counts.items() if n > 0}

    def bag_section(self) -> dict[str, Any]:
        scan, sel = self.scan, self.scan.selection
        return {
            "path": str(scan.info.path),
            "storage": scan.info.storage,
            "files": scan.info.files,
            "duration_s": scan.info.duration_s,
            "size": ", ".join(f"{h}x{w}" for h, w in self.sizes),
            "topics": {
                "image": sel.image,
                "image_type": sel.image_type,
                "labels": sel.labels,
                "ood": sel.ood,
            },
            "ground_truth_without_frame": scan.gt_without_frame,
            "frames_without_ground_truth": scan.frames_without_gt,
        }

    def model_section(self, metadata: dict[str, Any]) -> dict[str, Any]:
        spec = self.spec
        keys = (
            "runtime",
            "runtime_version",
            "score",
            "postprocess",
            "fed_variant",
            "input_shape",
            "precision",
            "model_hash",
        )
        return {
            "description": spec.describe(),
            "engine_path": spec.engine_path,
            "backbone": spec.backbone,
            "fed": spec.fed,
            "height": spec.height,
            "width": spec.width,
            "runtime": spec.runtime,
            "score": spec.score,
            "threads": spec.threads,
            "cpu_spin_wait": spec.cpu_spin_wait,
            "engine": {k: metadata.get(k) for k in keys if k in metadata},
            "resized": self.resize,
        }

    def alerts_section(self, scored: _Scored) -> dict[str, Any]:
        stats, merged = scored.stats, self.merged
        self.detection = detection_report(
            scored.levels,
            [s.ood_object_pixels for s in stats],
            [s.ood_pixels if s.ood_object_pixels is not None else None for s in stats],
            int(merged["alerts.raise_frames"]),
        )
        return {
            "counts": _level_counts(scored.levels),
            "transitions": _transitions(scored.timeline),
            "per_frame": scored.timeline,
            "detection": self.detection,
            "config": {k: v for k, v in merged.items() if k.startswith("alerts.")},
        }

    def early_warning_section(self, scored: _Scored) -> Optional[dict[str, Any]]:
        """First-alert delay per object appearance and recall by size
        (``ros2_fed.eval.early_warning``); None without OOD ground truth."""
        stats = scored.stats
        return early_warning_report(
            scored.levels,
            scored.objects,
            [s.stamp_ns / 1e9 for s in stats],
            int(self.merged["alerts.raise_frames"]),
            horizon=float(self.merged["alerts.horizon"]),
            indices=[s.index for s in stats],
        )

    @staticmethod
    def ranked_section(scored: _Scored) -> dict[str, Any]:
        picker = scored.picker
        by_index = {s.index: s for s in scored.stats}
        with_auroc = any(s.auroc is not None for s in scored.stats)

        def ranked(which: str) -> list[dict[str, Any]]:
            return [rep.stat_dict(by_index[i]) for i in picker.indices(which)] if picker else []

        return {
            "worst": ranked("worst"),
            "best": ranked("best"),
            "by": "per-frame AuROC (node score vs misclassified or OOD)"
            if with_auroc
            else "uncertain fraction",
        }

    def add_offline_throughput(self, report: dict[str, Any]) -> None:
        stats = self.offline_stats
        assert stats is not None
        evaluated = report["frames"]["evaluated"]
        report["throughput_fps"] = evaluated / stats.processing_s if stats.processing_s else 0.0
        report["throughput_what"] = (
            f"decode + inference in this process; engine load "
            f"{stats.load_s:.1f} s, loop incl. writing the bag "
            f"{stats.wall_s:.1f} s"
        )

    def add_live_section(self, report: dict[str, Any]) -> None:
        live = self.live
        assert live is not None
        evaluated = report["frames"]["evaluated"]
        report["throughput_fps"] = evaluated / live.span_s if live.span_s > 0 else 0.0
        report["throughput_what"] = (
            "node outputs received per second, first publish to last output"
        )
        node_dropped = None
        if live.node_pipeline and live.node_pipeline_start:
            try:
                node_dropped = int(live.node_pipeline["frames_dropped"]) - int(
                    live.node_pipeline_start["frames_dropped"]
                )
            except (KeyError, ValueError):
                node_dropped = None
        report["frames"]["node_dropped"] = node_dropped
        report["live"] = {
            "domain_id": live.domain_id,
            "node_command": live.node_command,
            "ready": live.ready_line,
            "published": live.published,
            "play_s": live.play_s,
            "span_s": live.span_s,
            "warmup_frames": live.warmup_frames,
            "late_publishes": live.late_publishes,
            "node_exit_code": live.node_exit_code,
            # the QoS the node ran with ({} for --attach): its own unless --reliable
            "qos": live.qos,
            "qos_source": "--reliable"
            if getattr(self.args, "reliable", False)
            else "the node's parameters",
            "node_pipeline_before": live.node_pipeline_start,
            "node_pipeline_after": live.node_pipeline,
        }

    def timeline_png(self, scored: _Scored, report: dict[str, Any]) -> Optional[np.ndarray]:
        if not scored.stats:
            return None
        detection = report["alerts"]["detection"]
        presence = detection["presence"] if detection else [None] * len(scored.stats)
        return rep.timeline_image(
            scored.stats,
            scored.levels,
            float(self.merged["alerts.warn_size"]),
            float(self.merged["alerts.error_size"]),
            [t["region_size"] for t in scored.timeline],
            presence,
            scene_levels=[t["level"] for t in scored.scene_timeline],
        )


def evaluate(
    args: argparse.Namespace, partial: dict[str, Any], log: Any
) -> tuple[Path, dict[str, Any]]:
    """The whole run; raises on any failure (the caller writes the failure report)."""
    return BagEvaluation(args, partial, log).run()


def failure_of(exc: BaseException) -> Optional[tuple[str, int]]:
    """(message, exit code) of a failed run, by the exception's type; None: not ours to handle.
    A stop signal (SIGINT / SIGTERM) is a requested end, exit code 0."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return ("stopped by a signal", 0) if stopping.received() else ("interrupted", 130)
    if isinstance(exc, (bagmod.BagError, UsageError)):
        return str(exc), 2  # the arguments' fault
    if isinstance(exc.__cause__, (BackboneMismatchError, ExportVerificationError)):
        return str(exc), 2  # the engine build refused the model (other backbone's FED, parity)
    if isinstance(exc, LiveError):
        return str(exc), 1
    if isinstance(exc, Exception):
        return f"{type(exc).__name__}: {exc}", 1
    return None


def report_failure(
    exc: BaseException, out: Path, partial: dict[str, Any], camera: Optional[str] = None
) -> int:
    """A run that did not complete: ``report.json`` saying why (``complete: false``; in the
    camera's folder too), one line on stderr (a traceback for an unexpected failure); the exit
    code. An earlier run's report is left as it is when that was the problem."""
    failure = failure_of(exc)
    if failure is None:
        raise exc
    message, code = failure
    if isinstance(exc, OutputExistsError):
        print(f"fed_bag_eval: error: {message}", file=sys.stderr)
        return code
    message = f"camera {camera}: {message}" if camera else message
    try:
        out.mkdir(parents=True, exist_ok=True)
        if camera and (out / camera).is_dir():
            rep.write_failure(out / camera, message, partial)
        path = rep.write_failure(out, message, partial)
        where = f" (nothing was evaluated to completion; see {path})"
    except OSError:
        where = ""
    print(f"fed_bag_eval: {'error: ' if code else ''}{message}{where}", file=sys.stderr)
    if code == 1 and not isinstance(exc, (bagmod.BagError, UsageError, LiveError)):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return code
