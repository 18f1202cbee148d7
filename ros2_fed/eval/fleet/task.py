"""One fleet task in a worker: the bag (or rig camera) through ``fed_bag_eval --offline``'s own
:class:`~ros2_fed.eval.replay.evaluation.BagEvaluation`, with the engine kept open across tasks.

Why a subclass and not a copy: the numbers must be exactly the single-bag tool's (same frame
path, scorer, report). What differs for a fleet is overridden, nothing else: the engine comes
from the worker's :class:`EngineCache` (opened once, warmed up once), no output bag is written
(a fleet's inputs are terabytes; ``fed_bag_eval`` on one bag writes one), ``--histograms``
scores with histograms from the first frame, and the result is returned as bytes (report, PNGs,
the scorer state) for the driver to store: on a Ray cluster the worker's disk is not the
driver's.

Test hook: ``ROS2_FED_FLEET_CRASH_ON=TASK_ID:MARKER`` kills the worker process (SIGKILL, as the
out-of-memory killer would) when it starts ``TASK_ID`` and ``MARKER`` does not exist yet (it is
created first, so the retry succeeds).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ros2_fed.engine.base import InferenceEngine
from ros2_fed.eval.fleet.discovery import BagTask, one_line
from ros2_fed.eval.fleet.state import scorer_to_bytes
from ros2_fed.eval.replay import report as rep
from ros2_fed.eval.replay.evaluation import BagEvaluation, failure_of
from ros2_fed.eval.replay.offline import CameraStream, run_offline
from ros2_fed.eval.replay.scoring import FrameStat, Scorer
from ros2_fed.pipeline.model_spec import ModelSpec, open_engine

CRASH_ENV = "ROS2_FED_FLEET_CRASH_ON"
STATE_FILE = "scorer_state.npz"
SUMMARY_FILE = "summary.json"
WORST_FRAMES = 20  # per bag, and of the fleet
NO_OUTPUT_BAG = (
    "- output bag: none (fed_fleet_eval writes none; `fed_bag_eval BAG --out DIR` on this bag "
    "writes one to watch in rviz or Foxglove)"
)


@dataclass
class BagResult:
    """What a worker sends back: the files of ``OUT/bags/<id>/`` or a one-line reason."""

    task: BagTask
    ok: bool
    reason: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    worker: str = ""
    round_trip_s: Optional[float] = None  # the executor's: handed out -> result back


class KeptOpen:
    """An engine whose ``close`` leaves it open: the frame path closes what it was given after
    each bag, the worker keeps the engine for the next one (:class:`EngineCache`)."""

    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine

    @property
    def input_shape(self) -> Optional[tuple[int, int]]:
        return self.engine.input_shape

    @property
    def batch_size(self) -> int:
        return self.engine.batch_size

    @property
    def dynamic_batch(self) -> bool:
        return self.engine.dynamic_batch

    @property
    def metadata(self) -> dict[str, Any]:
        return self.engine.metadata

    @property
    def path(self) -> Optional[Path]:
        return self.engine.path

    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.engine.infer(image)

    def close(self) -> None:
        """Kept open for the worker's next bag."""


class EngineCache:
    """The worker's engines, one per model spec (a spec includes the input size), opened on
    first use under a file lock (two workers building the same cached engine would race)."""

    def __init__(self) -> None:
        self.engines: dict[ModelSpec, InferenceEngine] = {}

    def is_open(self, spec: ModelSpec) -> bool:
        return spec in self.engines

    def open(self, spec: ModelSpec, progress: Any = None) -> InferenceEngine:
        if spec not in self.engines:
            with _engine_build_lock():
                self.engines[spec] = open_engine(spec, progress)
        return KeptOpen(self.engines[spec])

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()


@contextlib.contextmanager
def _engine_build_lock() -> Iterator[None]:
    import fcntl

    from ros2_fed.engine.cache import cache_dir

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".fed_fleet_eval.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class FleetBagEvaluation(BagEvaluation):
    """``fed_bag_eval --offline`` on one bag, engine from the worker's cache, no output bag."""

    def __init__(self, args: argparse.Namespace, engines: EngineCache) -> None:
        super().__init__(args, {}, lambda msg: None)
        self.engines = engines

    def open_output_bag(self) -> Any:
        return _NoOutputBag()

    def start_scoring(self, scored: Any, reference: Any) -> None:
        """The bag's scorer, with ``--histograms`` one that bins from the first frame (a state
        of O(bins), not O(pixels), to send back)."""
        super().start_scoring(scored, reference)
        if getattr(self.args, "histograms", False) and scored.scorer is not None:
            old = scored.scorer
            scored.scorer = Scorer(
                old.num_classes, old.frames, 0, exact=False, probability=sorted(old.probability)
            )

    def camera_stream(self, name: str = "") -> CameraStream:
        stream = CameraStream(name, self.scan, None, self.topics, copy_inputs=False)
        self.offline_stats = stream.stats
        return stream

    def offline_stream(self) -> Iterator[Any]:
        warmup = 0 if self.engines.is_open(self.spec) else int(self.params.get("warmup_runs", 3))
        frames = run_offline(
            [self.camera_stream()],
            self.spec,
            self.params,
            warmup_runs=warmup,
            log=self.log,
            engine_opener=self.engines.open,
        )
        return (item for _, item in frames)


class _NoOutputBag:
    """Stands in for the output bag writer: nothing is recorded."""

    def add_topic(self, *args: Any, **kwargs: Any) -> None:
        pass

    def write(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def bag_arguments(options: dict[str, Any], task: BagTask, out: Path) -> argparse.Namespace:
    """The fed_bag_eval arguments of ``task``: the fleet's model / topic / reference options,
    the rig camera's topics, offline, quiet, no input copies."""
    from ros2_fed.eval.replay.cli import build_parser

    args = build_parser().parse_args(
        [task.bag, "--out", str(out), "--offline", "--quiet", "--overwrite", "--no-copy-input"]
    )
    for key, value in options.items():
        setattr(args, key, tuple(value) if key == "size" and value else value)
    args.cameras = None
    args.clips = out.parent / "clips" if options.get("clips") else None
    if task.camera:
        args.topic, args.gt_topic, args.ood_topic = task.topic, task.gt_topic, task.ood_topic
        if args.no_gt:
            args.gt_topic = args.ood_topic = None
    return args


def evaluate_task(
    task: BagTask, options: dict[str, Any], engines: EngineCache, worker: str = ""
) -> BagResult:
    """The task evaluated; a failure is a result with its one-line reason, never an
    exception (a dead worker is the executor's business). ``worker``: where it ran."""
    worker = worker or f"{socket.gethostname()} pid {os.getpid()}"
    if task.error:
        return BagResult(task, False, task.error, worker=worker)
    _crash_hook(task.id)
    out = Path(tempfile.mkdtemp(prefix="fed_fleet_"))
    t0, cpu0 = time.monotonic(), time.process_time()
    try:
        run = FleetBagEvaluation(bag_arguments(options, task, out / "bag"), engines)
        _, report = run.run()
        files = _bag_files(run, report, out / "bag")
        summary = bag_summary(task, run, report, len(files[STATE_FILE]))
        summary.update(
            wall_s=time.monotonic() - t0, cpu_s=time.process_time() - cpu0, worker=worker
        )
        return BagResult(task, True, files=files, summary=summary, worker=worker)
    except Exception as exc:
        failure = failure_of(exc)
        reason = failure[0] if failure else f"{type(exc).__name__}: {exc}"
        return BagResult(task, False, one_line(reason), worker=worker)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _crash_hook(task_id: str) -> None:
    wanted, _, marker = os.environ.get(CRASH_ENV, "").partition(":")
    if wanted and wanted == task_id and marker and not Path(marker).exists():
        Path(marker).write_text(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def json_bytes(data: Any) -> bytes:
    from ros2_fed.jsonio import dumps

    return dumps(data).encode()


def _bag_files(run: FleetBagEvaluation, report: dict[str, Any], out: Path) -> dict[str, bytes]:
    """report.json / report.md with paths relative to the bag's folder, the PNGs, the state."""
    files = {
        name: (out / name).read_bytes()
        for name in rep.REPORT_FILES
        if name.endswith(".png") and (out / name).is_file()
    }
    report["files"] = {
        key: Path(value).name if value else None for key, value in report["files"].items()
    }
    report["files"]["output_bag"] = None
    report["files"]["scorer_state"] = STATE_FILE
    report["arguments"]["out"] = None
    text = "\n".join(
        NO_OUTPUT_BAG if line.startswith("- output bag:") else line
        for line in rep.markdown(report).split("\n")
    )
    files["report.json"] = json_bytes(report)
    files["report.md"] = text.encode()
    assert run.scored.scorer is not None
    files[STATE_FILE] = scorer_to_bytes(run.scored.scorer)
    clips = out.parent / "clips"  # --clips: the clips and their index travel with the result
    if clips.is_dir():
        files.update({f"clips/{p.name}": p.read_bytes() for p in sorted(clips.iterdir())})
    return files


def bag_summary(
    task: BagTask, run: FleetBagEvaluation, report: dict[str, Any], state_bytes: int
) -> dict[str, Any]:
    """The bag's row of the fleet report, and what pooling needs (frames, frame pixels)."""
    first = run.scan.usable[0]
    nodes = [r for r in rep.method_rows(report) if r["source"] == "node"]
    detection = dict(report["alerts"].get("detection") or {}) or None
    if detection:
        detection.pop("presence", None)
    return {
        "id": task.id,
        "bag": task.bag,
        "camera": task.camera,
        "topic": report["bag"]["topics"]["image"],
        "frames": report["frames"],
        "frame_pixels": int(first.height * first.width),
        "scan_frames": len(run.scan.frames),
        "node_method": report.get("node_method"),
        "node": nodes[0] if nodes else {},
        "alerts": {"counts": report["alerts"].get("counts"), "detection": detection},
        "early_warning": report.get("early_warning"),
        "scene": scene_share(report),
        "worst_frames": worst_frames(run.scored.stats, run.scored.levels),
        "throughput_fps": report.get("throughput_fps"),
        "processing_s": run.offline_stats.processing_s if run.offline_stats else None,
        "model": report["model"].get("description"),
        "engine": report["model"].get("engine"),
        "state_bytes": state_bytes,
    }


def scene_share(report: dict[str, Any]) -> Optional[dict[str, float]]:
    """The share of frames per scene status, when the bag report has a scene section (its
    per-level frame counts ``counts``, or shares ``share`` / ``shares``); None without one."""
    scene = report.get("scene")
    if not isinstance(scene, dict):
        return None
    shares = scene.get("share") or scene.get("shares")
    if isinstance(shares, dict) and shares:
        return {str(k): float(v) for k, v in shares.items() if v is not None}
    counts = scene.get("counts")
    if isinstance(counts, dict) and counts:
        total = sum(int(v) for v in counts.values()) or 1
        return {str(k): int(v) / total for k, v in counts.items()}
    return None


def worst_frames(stats: list[FrameStat], levels: list[Optional[int]]) -> list[dict[str, Any]]:
    """The bag's worst frames by the mosaic's ranking (per-frame AuROC of the node's score
    against "prediction wrong" when there is ground truth, else the uncertain fraction)."""
    ranked = sorted(
        range(len(stats)),
        key=lambda i: (rep.MosaicPicker.badness(stats[i]), -stats[i].index),
        reverse=True,
    )
    out = []
    for i in ranked[:WORST_FRAMES]:
        stat = stats[i]
        by_auroc, badness = rep.MosaicPicker.badness(stat)
        level = rep.level_name(levels[i]) if i < len(levels) else "–"
        out.append(
            {
                **rep.stat_dict(stat),
                "stamp": f"{stat.stamp_ns // 10**9}.{stat.stamp_ns % 10**9:09d}",
                "alert": level,
                "by_auroc": by_auroc,
                "badness": badness,
                "what": what_was_wrong(stat, level),
            }
        )
    return out


def what_was_wrong(stat: FrameStat, alert: str) -> str:
    """One line an engineer reads before opening the frame."""
    parts = []
    if stat.auroc is not None:
        parts.append(f"per-frame AuROC {stat.auroc:.3f}")
    if stat.wrong_fraction is not None:
        parts.append(f"{100 * stat.wrong_fraction:.1f} % of pixels wrong (misclassified or OOD)")
    if stat.ood_object_pixels:
        parts.append(f"OOD object {stat.ood_object_pixels} px")
    parts.append(f"{100 * stat.uncertain_fraction:.1f} % uncertain")
    parts.append(f"alert {alert}")
    return "; ".join(parts)
