"""fed_node: camera in; segmentation, confidence, rviz overlay and low-confidence alerts out.

A thin rclpy adapter around the pure-python core (codec -> engine -> alerts -> viz). Why it is
shaped the way it is:

- **Latest frame wins.** The subscription callback only drops the message into a one-slot
  mailbox; a worker thread decodes, runs the engine and publishes. A frame that arrives while
  another is still pending replaces it (counted as dropped), so a slow engine never builds a
  backlog: output latency stays bounded by about two inference times whatever the camera rate.
- **Only work for listeners.** Colourisation, the overlay and even message conversion happen
  only for outputs that are enabled and have subscribers (alerts are always computed: they
  feed /diagnostics).
- **Bad input never kills the node.** A frame that cannot be decoded is skipped with a
  throttled error log and a per-kind counter in /diagnostics.
- **Fail fast at start-up.** A missing or corrupt engine is one clear FATAL line and exit
  code 1, before anything subscribes; the node says "ready" (log + diagnostics) only after
  the engine loaded and warmed up.

Every output copies the input header (stamp, frame_id) so rviz and message_filters can sync.
Only this module (and the replay tool) imports rclpy.
"""
from __future__ import annotations

import collections
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Optional, TypeVar, Union

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from ros2_fed import alerts as alerts_mod
from ros2_fed import codec, viz
from ros2_fed.engine.options import runtime_options
from ros2_fed.paths import default_models_dir

ParamValue = Union[bool, int, float, str]
T = TypeVar("T")

NODE_NAME = "fed_node"
RUNTIME_CHOICES = ("", "torch", "onnxruntime", "tensorrt")
SCORE_CHOICES = ("", "fed", "msp", "maxlogit", "energy", "entropy", "sml", "none")
TRANSPORT_CHOICES = ("raw", "compressed")
RELIABILITY_CHOICES = ("best_effort", "reliable")
DEFAULT_BACKBONE = "tinyseg_synthroad"  # the embedded default model (models/)
DEFAULT_FED = "fed_u_synthroad"
OK, WARN, ERROR, STALE = 0, 1, 2, 3  # DiagnosticStatus levels (the message constants are bytes)
OUTPUTS = ("segmentation", "segmentation_color", "confidence", "overlay", "alerts")


# --------------------------------------------------------------------------------------
# Parameter table (pure python: the node declares it, tests and --help read it)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default (which fixes the type), description, constraints."""

    name: str
    default: ParamValue
    description: str
    read_only: bool = False
    range: Optional[tuple[float, float]] = None
    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def check(self, value: Any) -> Optional[str]:
        """Why ``value`` is not acceptable for this parameter, or None."""
        if type(value) is not type(self.default):
            return f"{self.name}: expected {self.type_name}, got {type(value).__name__}"
        if self.range is not None and not (self.range[0] <= value <= self.range[1]):
            return f"{self.name}: {value} is outside [{self.range[0]}, {self.range[1]}]"
        if self.choices and value not in self.choices:
            return f"{self.name}: {value!r} is not one of {list(self.choices)}"
        return None


PARAMETERS: tuple[ParamSpec, ...] = (
    # -- engine (fixed for the life of the process) --------------------------------------
    ParamSpec("engine_path", "", "Engine file: NAME.onnx (ONNX Runtime), NAME.engine|.plan (TensorRT) or a "
              "fused NAME.safetensors bundle (torch), each with its JSON sidecar (fed_export writes both). "
              "Empty: build (first start) or reuse (later starts) the cached engine for model.backbone + "
              "model.fed at model.height x model.width.", read_only=True),
    ParamSpec("model.backbone", "", "Backbone checkpoint used when engine_path is empty; empty = the embedded "
              "default model (share/ros2_fed/models/tinyseg_synthroad).", read_only=True),
    ParamSpec("model.fed", "", "FED checkpoint used when engine_path is empty; empty = the default model's "
              "FED-U (models/fed_u_synthroad) when model.backbone is empty too, else none (then set score).",
              read_only=True),
    ParamSpec("model.height", 512, "Camera image height the cached engine is built for (engine_path empty); "
              "frames of another size are resized on the host.", read_only=True, range=(16, 8192)),
    ParamSpec("model.width", 1024, "Camera image width the cached engine is built for (engine_path empty).",
              read_only=True, range=(16, 8192)),
    ParamSpec("runtime", "", "Runtime: torch|onnxruntime|tensorrt. With engine_path: must match the file "
              "(empty = from the extension); without: the cached engine's runtime (empty = onnxruntime).",
              read_only=True, choices=RUNTIME_CHOICES),
    ParamSpec("device", "", "Runtime device, e.g. cpu, cuda, cuda:1; empty = the runtime's default.", read_only=True),
    ParamSpec("threads", 0, "CPU threads for the runtime (torch / ONNX Runtime intra-op); 0 = its default.",
              read_only=True, range=(0, 256)),
    ParamSpec("cpu_spin_wait", False, "Let ONNX Runtime's CPU threads busy-wait between operators and runs "
              "(its own default). Off: the spinning threads would take the cores that decoding, "
              "visualisation and DDS need between frames (end-to-end p50 about 120 -> 85 ms at 512x1024 on "
              "2 cores). Turn on only when the engine has cores to itself.", read_only=True),
    ParamSpec("score", "", "Score type (fed|msp|maxlogit|energy|entropy|sml|none). With engine_path: the engine "
              "must compute it (empty = accept the engine's; a mismatch is a start-up error); without: the "
              "score the cached engine is built with (empty = fed).", read_only=True, choices=SCORE_CHOICES),
    ParamSpec("warmup_runs", 3, "Dummy inferences before the node reports ready (lazy init, autotuning).",
              read_only=True, range=(0, 100)),
    # -- input ---------------------------------------------------------------------------
    ParamSpec("input_transport", "raw", "raw: subscribe to 'image' (sensor_msgs/Image); compressed: subscribe "
              "to 'image/compressed' (sensor_msgs/CompressedImage, jpeg/png).", read_only=True,
              choices=TRANSPORT_CHOICES),
    ParamSpec("input_qos.reliability", "best_effort", "Input reliability: best_effort (sensor-data profile, "
              "matches every camera) or reliable (matches reliable publishers only).", read_only=True,
              choices=RELIABILITY_CHOICES),
    ParamSpec("input_qos.depth", 1, "Input history depth (keep last N); the node keeps only the newest frame "
              "anyway.", read_only=True, range=(1, 100)),
    ParamSpec("output_qos.reliability", "reliable", "Image outputs' reliability (reliable matches both kinds "
              "of subscribers; alerts and diagnostics are always reliable).", read_only=True,
              choices=RELIABILITY_CHOICES),
    ParamSpec("output_qos.depth", 1, "Image outputs' history depth.", read_only=True, range=(1, 100)),
    # -- outputs (switchable at run time) -------------------------------------------------
    ParamSpec("publish.segmentation", True, "Publish ~/segmentation (mono8 train ids)."),
    ParamSpec("publish.segmentation_color", True, "Publish ~/segmentation_color (rgb8, class palette)."),
    ParamSpec("publish.confidence", True, "Publish ~/confidence (32FC1, 1 = certain)."),
    ParamSpec("publish.overlay", True, "Publish ~/overlay (rgb8 camera image blended with the red (uncertain) "
              "- blue (certain) confidence map, for rviz)."),
    ParamSpec("publish.alerts", True, "Publish ~/alerts (DiagnosticArray, one status per processed frame)."),
    # -- visualisation --------------------------------------------------------------------
    ParamSpec("viz.confidence_min", 0.0, "Confidence shown fully red in the overlay.", range=(0.0, 1.0)),
    ParamSpec("viz.confidence_max", 1.0, "Confidence shown fully blue in the overlay (must exceed "
              "viz.confidence_min).", range=(0.0, 1.0)),
    ParamSpec("viz.overlay_alpha", 0.5, "Weight of the confidence colours in the overlay (0 = camera only).",
              range=(0.0, 1.0)),
    # -- alerts (changeable at run time; validated together) ---------------------------------
    ParamSpec("alerts.confidence_threshold", 0.5, "A pixel is uncertain when its confidence is below this.",
              range=(0.0, 1.0)),
    ParamSpec("alerts.warn_fraction", 0.1, "WARN when more than this fraction of ROI pixels is uncertain.",
              range=(0.0, 1.0)),
    ParamSpec("alerts.error_fraction", 0.25, "ERROR when more than this fraction of ROI pixels is uncertain "
              "(>= alerts.warn_fraction).", range=(0.0, 1.0)),
    ParamSpec("alerts.hysteresis", 0.02, "A level clears only when the fraction falls this far below its limit.",
              range=(0.0, 1.0)),
    ParamSpec("alerts.raise_frames", 3, "Consecutive frames above a limit before the level rises.",
              range=(1, 1000)),
    ParamSpec("alerts.clear_frames", 5, "Consecutive frames at or below limit - hysteresis before the level falls.",
              range=(1, 1000)),
    ParamSpec("alerts.roi", "full", "Region of interest: full | lower_half | mask (use alerts.roi_mask_file).",
              choices=("full", "lower_half", "mask")),
    ParamSpec("alerts.roi_mask_file", "", "PNG mask (non-zero = inside the ROI), resized to the image when "
              "needed; used when alerts.roi is mask."),
    # -- diagnostics ------------------------------------------------------------------------
    ParamSpec("diagnostics.period", 1.0, "Seconds between /diagnostics messages.", read_only=True,
              range=(0.05, 60.0)),
    ParamSpec("diagnostics.latency_window", 100, "Frames in the latency percentile window.", read_only=True,
              range=(10, 100000)),
    ParamSpec("diagnostics.hardware_id", "", "hardware_id in the diagnostic statuses; empty = the engine's "
              "runtime and device.", read_only=True),
    ParamSpec("diagnostics.error_log_throttle", 2.0, "Seconds between error logs about bad input frames "
              "(every frame is still counted).", read_only=True, range=(0.0, 3600.0)),
)
PARAMETER_SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
PARAMETER_NAMES: frozenset[str] = frozenset(PARAMETER_SPECS)


def parameter_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The rclpy descriptor for a spec (description, type, range, read_only)."""
    ptype = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}[type(spec.default)]
    descriptor = ParameterDescriptor(name=spec.name, type=ptype, description=spec.description,
                                     read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(repr(c) for c in spec.choices)
    if spec.range is not None:
        if isinstance(spec.default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=0)]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0)]
    return descriptor


# --------------------------------------------------------------------------------------
# Pure helpers: mailbox and counters
# --------------------------------------------------------------------------------------


class LatestFrameMailbox(Generic[T]):
    """A one-slot mailbox: ``put`` replaces a pending item, ``get`` blocks for the next one.

    Why: the engine must always work on the newest camera frame; anything older that has not
    started yet is worthless and must not queue up (bounded memory, bounded latency).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced (dropped) an item nobody had taken yet."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def get(self, timeout: Optional[float] = None) -> Optional[T]:
        """The pending item (removing it), or None on close / timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake the consumer for good (pending item is discarded)."""
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class PipelineStats:
    """Thread-safe counters and latency windows for /diagnostics."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.bad_input: collections.Counter[str] = collections.Counter()
        self.inference_errors = 0
        self.latency_s: collections.deque[float] = collections.deque(maxlen=window)
        self.inference_s: collections.deque[float] = collections.deque(maxlen=window)
        self._last: dict[str, Any] = {"time": time.monotonic(), "received": 0, "processed": 0,
                                      "bad": 0, "inference_errors": 0}

    def on_received(self, dropped_previous: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(dropped_previous)

    def on_processed(self, latency_s: float, inference_s: float) -> None:
        with self._lock:
            self.processed += 1
            self.latency_s.append(latency_s)
            self.inference_s.append(inference_s)

    def on_bad_input(self, kind: str) -> int:
        with self._lock:
            self.bad_input[kind] += 1
            return sum(self.bad_input.values())

    def on_inference_error(self) -> None:
        with self._lock:
            self.inference_errors += 1

    def snapshot(self) -> dict[str, Any]:
        """Totals, percentiles and per-period rates; starts a new period."""
        with self._lock:
            now = time.monotonic()
            last = self._last
            period = max(now - last["time"], 1e-9)
            bad_total = sum(self.bad_input.values())
            lat = np.asarray(self.latency_s, dtype=np.float64)
            inf = np.asarray(self.inference_s, dtype=np.float64)
            snap = {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "bad_input": dict(self.bad_input),
                "bad_input_total": bad_total,
                "inference_errors": self.inference_errors,
                "latency_p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else math.nan,
                "latency_p95_ms": float(np.percentile(lat, 95) * 1e3) if lat.size else math.nan,
                "inference_p50_ms": float(np.percentile(inf, 50) * 1e3) if inf.size else math.nan,
                "inference_p95_ms": float(np.percentile(inf, 95) * 1e3) if inf.size else math.nan,
                "input_rate_hz": (self.received - last["received"]) / period,
                "output_rate_hz": (self.processed - last["processed"]) / period,
                "bad_input_in_period": bad_total - last["bad"],
                "inference_errors_in_period": self.inference_errors - last["inference_errors"],
            }
            self._last = {"time": now, "received": self.received, "processed": self.processed,
                          "bad": bad_total, "inference_errors": self.inference_errors}
            return snap


class StartupError(RuntimeError):
    """The node cannot start (engine missing/corrupt, bad ROI mask, ...): one clear message."""


@dataclass
class _Frame:
    msg: Union[Image, CompressedImage]
    received: float  # time.monotonic() when the callback ran


@dataclass
class _Settings:
    """Run-time switchable settings, swapped as a whole so the worker reads a consistent set."""

    publish: dict[str, bool] = field(default_factory=dict)
    viz_min: float = 0.0
    viz_max: float = 1.0
    overlay_alpha: float = 0.5


# --------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------


EngineFactory = Callable[[], Any]


class FedNode(Node):
    """The fed_node ROS 2 node. Construct, then :meth:`start` (loads the engine; may raise
    :class:`StartupError`), then spin; :meth:`close` stops the worker.

    ``engine_factory``: a zero-argument callable returning an engine object (``infer``,
    ``input_shape``, ``metadata``), used instead of opening ``engine_path`` — for tests and
    embedding, never reachable from the command line.
    """

    def __init__(self, engine_factory: Optional[EngineFactory] = None, **node_kwargs: Any) -> None:
        super().__init__(node_kwargs.pop("node_name", NODE_NAME), **node_kwargs)
        self._engine_factory = engine_factory
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, parameter_descriptor(spec))
        self._params: dict[str, ParamValue] = {s.name: self.get_parameter(s.name).value for s in PARAMETERS}
        bad = [msg for msg in (PARAMETER_SPECS[n].check(v) for n, v in self._params.items()) if msg]
        if bad:
            raise StartupError("invalid parameters: " + "; ".join(bad))
        self._settings = self._settings_from(self._params)

        self._engine: Any = None
        self._engine_shape: Optional[tuple[int, int]] = None
        self._palette: Optional[np.ndarray] = None
        self._stats = PipelineStats(int(self._params["diagnostics.latency_window"]))
        self._mailbox: LatestFrameMailbox[_Frame] = LatestFrameMailbox()
        self._worker: Optional[threading.Thread] = None
        self._alert_lock = threading.Lock()
        self._monitor: Any = None
        self._validated_alerts: Any = None  # AlertConfig from the last accepted parameter change
        self._alert_status: Optional[DiagnosticStatus] = None
        self._diag_lock = threading.Lock()
        self._state = "starting"
        self._ready_message = ""
        self._resize_warned = False
        self._subscription: Any = None
        self._timer: Any = None

        p = self._params
        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p["output_qos.depth"]),
                               reliability=_reliability(str(p["output_qos.reliability"])),
                               durability=DurabilityPolicy.VOLATILE)
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)
        self._pubs = {
            "segmentation": self.create_publisher(Image, "~/segmentation", image_qos),
            "segmentation_color": self.create_publisher(Image, "~/segmentation_color", image_qos),
            "confidence": self.create_publisher(Image, "~/confidence", image_qos),
            "overlay": self.create_publisher(Image, "~/overlay", image_qos),
            "alerts": self.create_publisher(DiagnosticArray, "~/alerts", reliable),
        }
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self._status_name = f"{self.get_fully_qualified_name().lstrip('/')}: pipeline"
        self._alert_name = f"{self.get_fully_qualified_name().lstrip('/')}: alerts"
        self._hardware_id = str(p["diagnostics.hardware_id"])
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    # -- start-up --------------------------------------------------------------------

    def start(self) -> None:
        """Load + warm up the engine, then subscribe and report ready. Raises StartupError."""
        self._publish_diagnostics(state_level=STALE, message="starting: loading engine")
        t0 = time.monotonic()
        self._engine = self._open_engine()
        load_s = time.monotonic() - t0
        self._describe_engine()
        self._monitor = self._make_monitor(self._params)
        warm_ms = self._warm_up()

        self._worker = threading.Thread(target=self._run_worker, name="fed_node_worker", daemon=True)
        self._worker.start()
        p = self._params
        compressed = p["input_transport"] == "compressed"
        topic = "image/compressed" if compressed else "image"
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p["input_qos.depth"]),
                         reliability=_reliability(str(p["input_qos.reliability"])),
                         durability=DurabilityPolicy.VOLATILE)
        self._subscription = self.create_subscription(CompressedImage if compressed else Image, topic,
                                                      self._on_image, qos)
        self._timer = self.create_timer(float(p["diagnostics.period"]), self._on_timer)
        self._state = "ready"
        meta = _engine_metadata(self._engine)
        self._ready_message = (
            f"ready: engine {getattr(self._engine, 'path', None) or meta.get('name') or type(self._engine).__name__} "
            f"({meta.get('runtime', '?')}, score {meta.get('score', '?')}, input {self._engine_shape}) "
            f"loaded in {load_s:.2f} s, warm-up {warm_ms:.1f} ms/frame; "
            f"listening on {self._subscription.topic_name} ({p['input_transport']}, {p['input_qos.reliability']})"
        )
        self.get_logger().info(self._ready_message)
        self._publish_diagnostics()

    def _open_engine(self) -> Any:
        """The engine from the factory or ``engine_path``; every failure is a StartupError."""
        p = self._params
        if self._engine_factory is not None:
            try:
                return self._engine_factory()
            except Exception as exc:
                raise StartupError(f"engine factory failed: {type(exc).__name__}: {exc}") from exc
        path = str(p["engine_path"])
        if path and not Path(path).is_file():
            raise StartupError(f"engine file not found: {path}")  # before the (slow) runtime imports
        try:
            from ros2_fed.engine import Engine
        except Exception as exc:
            raise StartupError(f"cannot import the engine runtimes: {type(exc).__name__}: {exc}") from exc
        options = self._runtime_options(Path(path).suffix if path else "." + (str(p["runtime"]) or "onnxruntime"))
        if not path:
            return self._open_cached_engine(options)
        runtime = str(p["runtime"]) or None
        try:
            # Warm-up is ours (timed, before "ready"): the engine's own is switched off.
            engine = Engine.open(path, runtime=runtime, warmup=0, **options)
        except Exception as exc:  # EngineError names the file; anything else is wrapped the same way
            raise StartupError(f"cannot load engine {path} (runtime {runtime or 'from file type'}): "
                               f"{type(exc).__name__}: {exc}") from exc
        want_score = str(p["score"])
        have_score = _engine_metadata(engine).get("score")
        if want_score and have_score != want_score:
            raise StartupError(f"engine {path} computes score {have_score!r}, parameter score asks for "
                               f"{want_score!r}: export an engine with that score or clear the parameter")
        return engine

    def _runtime_options(self, kind: str) -> dict[str, Any]:
        """device / threads / spinning in the spelling of the runtime a file suffix (or .runtime) names."""
        p = self._params
        return runtime_options(kind, str(p["device"]), int(p["threads"]), bool(p["cpu_spin_wait"]))

    def _open_cached_engine(self, options: dict[str, Any]) -> Any:
        """No engine_path: the cached engine for (model.backbone, model.fed, size), built if needed."""
        from ros2_fed.engine import open_cached

        p = self._params
        backbone, fed = str(p["model.backbone"]), str(p["model.fed"]) or None
        if not backbone:
            models = default_models_dir()
            backbone = str(models / DEFAULT_BACKBONE)
            fed = fed or str(models / DEFAULT_FED)
        score = str(p["score"]) or ("fed" if fed else "")
        if not score:
            raise StartupError("model.fed is empty: set score to a baseline (msp, maxlogit, energy, entropy, sml, none)")
        if score != "fed":
            fed = None
        runtime = str(p["runtime"]) or "onnxruntime"
        height, width = int(p["model.height"]), int(p["model.width"])
        what = f"{backbone} + {fed or 'no FED'} ({score}, {runtime}, {height}x{width})"
        self.get_logger().info(f"no engine_path: opening the cached engine for {what}; the first start builds it")
        try:
            return open_cached(backbone, fed, height=height, width=width, runtime=runtime, score=score, warmup=0,
                               progress=lambda msg: self.get_logger().info(str(msg)), **options)
        except Exception as exc:
            raise StartupError(f"cannot build/open the engine for {what}: {type(exc).__name__}: {exc}") from exc

    def _describe_engine(self) -> None:
        shape = getattr(self._engine, "input_shape", None)
        if shape is not None and len(tuple(shape)) >= 2:
            dims = tuple(int(v) for v in tuple(shape)[:2])
            self._engine_shape = dims if all(d > 0 for d in dims) else None
        meta = _engine_metadata(self._engine)
        palette = meta.get("palette")
        names = meta.get("class_names") or []
        self._palette = viz_palette(palette, len(names))
        if not self._hardware_id:
            self._hardware_id = f"{meta.get('runtime', 'engine')}:{meta.get('device') or 'default'}"

    def _warm_up(self) -> float:
        """Run ``warmup_runs`` frames of the engine's size; mean ms per frame (nan if none)."""
        runs = int(self._params["warmup_runs"])
        if runs <= 0:
            return math.nan
        h, w = self._engine_shape or (480, 640)
        dummy = np.full((h, w, 3), 127, dtype=np.uint8)
        t0 = time.monotonic()
        try:
            for _ in range(runs):
                self._engine.infer(dummy)
        except Exception as exc:
            raise StartupError(f"engine warm-up failed on a {h}x{w} frame: {type(exc).__name__}: {exc}") from exc
        return (time.monotonic() - t0) / runs * 1e3

    # -- parameters ------------------------------------------------------------------

    @staticmethod
    def _settings_from(params: dict[str, ParamValue]) -> _Settings:
        return _Settings(
            publish={name: bool(params[f"publish.{name}"]) for name in OUTPUTS},
            viz_min=float(params["viz.confidence_min"]),
            viz_max=float(params["viz.confidence_max"]),
            overlay_alpha=float(params["viz.overlay_alpha"]),
        )

    def _make_monitor(self, params: dict[str, ParamValue]) -> Any:
        try:
            return alerts_mod.AlertMonitor(alert_config(params))
        except (ValueError, OSError) as exc:
            raise StartupError(f"invalid alert configuration: {exc}") from exc

    def _validate_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        """Reject a change set that is inconsistent as a whole (types/ranges: rclpy checks too)."""
        candidate = dict(self._params)
        for param in changes:
            if param.name not in PARAMETER_SPECS:
                continue
            value = param.value
            spec = PARAMETER_SPECS[param.name]
            if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            problem = spec.check(value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            candidate[param.name] = value
        if candidate["viz.confidence_min"] >= candidate["viz.confidence_max"]:
            return SetParametersResult(successful=False,
                                       reason="viz.confidence_min must be below viz.confidence_max")
        if any(p.name.startswith("alerts.") for p in changes):
            try:
                self._validated_alerts = alert_config(candidate)  # reused by _apply_parameters
            except (ValueError, OSError) as exc:
                return SetParametersResult(successful=False, reason=f"alerts: {exc}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changes: list[Parameter]) -> None:
        """Take validated changes into effect (the worker sees them from its next frame)."""
        for param in changes:
            if param.name in PARAMETER_SPECS:
                value = param.value
                if isinstance(PARAMETER_SPECS[param.name].default, float):
                    value = float(value)
                self._params[param.name] = value
        self._settings = self._settings_from(self._params)
        if self._monitor is not None and any(p.name.startswith("alerts.") for p in changes):
            # The config built (and the ROI mask read) while validating: no second file read
            # that could fail after the change was accepted.
            config = self._validated_alerts or alert_config(self._params)
            self._validated_alerts = None
            with self._alert_lock:
                set_monitor_config(self._monitor, config)
            self.get_logger().info("alert thresholds updated: " + ", ".join(
                f"{p.name}={p.value}" for p in changes if p.name.startswith("alerts.")))

    # -- the pipeline ------------------------------------------------------------------

    def _on_image(self, msg: Union[Image, CompressedImage]) -> None:
        """Executor thread: O(1) — hand the frame to the worker, newest wins."""
        dropped = self._mailbox.put(_Frame(msg, time.monotonic()))
        self._stats.on_received(dropped)

    def _run_worker(self) -> None:
        while True:
            frame = self._mailbox.get()
            if frame is None:
                return
            try:
                self._process(frame)
            except Exception as exc:  # never let one frame kill the worker
                self._stats.on_inference_error()
                self.get_logger().error(f"frame processing failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=float(self._params["diagnostics.error_log_throttle"]))

    def _process(self, frame: _Frame) -> None:
        msg = frame.msg
        try:
            rgb = decode_rgb(msg)
        except codec.ImageDecodeError as exc:
            kind = decode_error_kind(exc)
            total = self._stats.on_bad_input(kind)
            self.get_logger().error(
                f"skipping bad input frame ({kind}): {exc} [frame_id={msg.header.frame_id!r}; "
                f"{total} bad frames so far]",
                throttle_duration_sec=float(self._params["diagnostics.error_log_throttle"]))
            return

        t0 = time.monotonic()
        labels, confidence = self._infer(rgb)
        inference_s = time.monotonic() - t0

        with self._alert_lock:
            state = self._monitor.update(confidence, msg.header.stamp)
        status = self._alert_to_status(state)
        previous = self._alert_status
        self._alert_status = status

        settings = self._settings
        header = msg.header
        active = {name: settings.publish[name] and self._pubs[name].get_subscription_count() > 0
                  for name in OUTPUTS}
        if active["segmentation"]:
            self._pubs["segmentation"].publish(codec.numpy_to_image(labels, "mono8", header))
        if active["confidence"]:
            self._pubs["confidence"].publish(codec.numpy_to_image(confidence, "32FC1", header))
        if active["segmentation_color"]:
            colour = viz.colorize(labels, self._palette)
            self._pubs["segmentation_color"].publish(codec.numpy_to_image(colour, "rgb8", header))
        if active["overlay"]:
            overlay = viz.overlay(rgb, viz.confidence_to_rgb(confidence, settings.viz_min, settings.viz_max),
                                  settings.overlay_alpha)
            self._pubs["overlay"].publish(codec.numpy_to_image(overlay, "rgb8", header))
        if active["alerts"]:
            self._pubs["alerts"].publish(DiagnosticArray(header=header, status=[status]))
        self._stats.on_processed(time.monotonic() - frame.received, inference_s)
        if previous is not None and previous.level != status.level:
            self._publish_diagnostics()  # aggregators see level changes at once, not a period later

    def _infer(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Engine inference at the camera resolution (host resize when the engine's size differs)."""
        h, w = rgb.shape[:2]
        shape = self._engine_shape
        if shape is None or shape == (h, w):
            labels, confidence = self._engine.infer(np.ascontiguousarray(rgb))
        else:
            import cv2

            if not self._resize_warned:
                self._resize_warned = True
                self.get_logger().warning(
                    f"camera frames are {h}x{w} but the engine takes {shape[0]}x{shape[1]}: resizing on the host "
                    "every frame; export an engine for the camera size to avoid it")
            small = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
            labels, confidence = self._engine.infer(small)
            labels = cv2.resize(np.ascontiguousarray(labels), (w, h), interpolation=cv2.INTER_NEAREST)
            confidence = cv2.resize(np.ascontiguousarray(confidence, dtype=np.float32), (w, h),
                                    interpolation=cv2.INTER_LINEAR)
        return (np.ascontiguousarray(labels, dtype=np.uint8),
                np.ascontiguousarray(confidence, dtype=np.float32))

    # -- diagnostics -------------------------------------------------------------------

    def _alert_to_status(self, state: Any) -> DiagnosticStatus:
        return alert_status(state, self._alert_name, self._hardware_id)

    def _on_timer(self) -> None:
        self._publish_diagnostics()

    def _publish_diagnostics(self, state_level: Optional[int] = None, message: str = "") -> None:
        """/diagnostics: the pipeline status (+ the latest alert status)."""
        status = DiagnosticStatus(name=self._status_name, hardware_id=self._hardware_id)
        if self._state != "ready":
            status.level = _level(state_level if state_level is not None else STALE)
            status.message = message or self._state
            status.values = [KeyValue(key="state", value=self._state)]
        else:
            snap = self._stats.snapshot()
            level = OK
            text = "ready"
            if snap["inference_errors_in_period"]:
                level, text = ERROR, f"{snap['inference_errors_in_period']} frames failed in the engine"
            elif snap["bad_input_in_period"]:
                level, text = WARN, f"skipped {snap['bad_input_in_period']} bad input frames"
            elif snap["received"] and snap["dropped"] and snap["input_rate_hz"] > snap["output_rate_hz"] * 1.05:
                text = (f"ready; dropping frames (input {snap['input_rate_hz']:.1f} Hz > "
                        f"output {snap['output_rate_hz']:.1f} Hz)")
            status.level = _level(level)
            status.message = text
            values = {
                "state": self._state,
                "frames_received": snap["received"],
                "frames_processed": snap["processed"],
                "frames_dropped": snap["dropped"],
                "bad_input_total": snap["bad_input_total"],
                "inference_errors": snap["inference_errors"],
                "latency_p50_ms": f"{snap['latency_p50_ms']:.1f}",
                "latency_p95_ms": f"{snap['latency_p95_ms']:.1f}",
                "inference_p50_ms": f"{snap['inference_p50_ms']:.1f}",
                "inference_p95_ms": f"{snap['inference_p95_ms']:.1f}",
                "input_rate_hz": f"{snap['input_rate_hz']:.2f}",
                "output_rate_hz": f"{snap['output_rate_hz']:.2f}",
                "engine_input_shape": "x".join(map(str, self._engine_shape)) if self._engine_shape else "any",
                "input_topic": self._subscription.topic_name if self._subscription is not None else "",
            }
            for kind, count in sorted(snap["bad_input"].items()):
                values[f"bad_input.{kind}"] = count
            status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray(status=[status] + ([self._alert_status] if self._alert_status else []))
        array.header.stamp = self.get_clock().now().to_msg()
        with self._diag_lock:
            self._diag_pub.publish(array)

    # -- shutdown ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker (the current frame finishes) and release the engine."""
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        closer = getattr(self._engine, "close", None)
        if callable(closer):
            closer()


# --------------------------------------------------------------------------------------
# Adapters to the pure-python core
# --------------------------------------------------------------------------------------


def _level(level: int) -> bytes:
    return bytes([int(level)])


def _reliability(name: str) -> ReliabilityPolicy:
    return ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT


def _engine_metadata(engine: Any) -> dict[str, Any]:
    meta = getattr(engine, "metadata", None)
    return dict(meta) if isinstance(meta, dict) else {}


def viz_palette(palette: Any, num_classes: int) -> np.ndarray:
    """The engine's palette as (N, 3) uint8, or viz's default when the engine has none."""
    if palette is not None:
        arr = np.asarray(palette, dtype=np.uint8)
        if arr.ndim == 2 and arr.shape[1] == 3 and len(arr):
            return arr
    return viz.default_palette(max(num_classes, 1))


def decode_rgb(msg: Union[Image, CompressedImage]) -> np.ndarray:
    """Any supported input message -> HxWx3 uint8 RGB (views where possible)."""
    return codec.to_rgb8(msg)


def decode_error_kind(exc: Exception) -> str:
    return str(getattr(exc, "kind", None) or type(exc).__name__)


def alert_config(params: dict[str, ParamValue]) -> Any:
    """AlertConfig from the ``alerts.*`` parameters (raises ValueError when inconsistent)."""
    return alerts_mod.AlertConfig(**{k[len("alerts."):]: v for k, v in params.items() if k.startswith("alerts.")})


def set_monitor_config(monitor: Any, config: Any) -> None:
    monitor.config = config


def alert_status(state: Any, name: str, hardware_id: str) -> DiagnosticStatus:
    """One alert state as a DiagnosticStatus (level OK/WARN/ERROR, region, fraction, stamp)."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id, level=_level(int(state.level)),
                              message=str(getattr(state, "message", "")))
    status.values = [KeyValue(key=str(k), value=str(v)) for k, v in alert_values(state).items()]
    return status


def alert_values(state: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(state).items() if k not in ("level", "message")}


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def help_text() -> str:
    lines = [
        "usage: ros2 run ros2_fed fed_node [--ros-args -p NAME:=VALUE ... --params-file config/fed.yaml]",
        "",
        (__doc__ or "").strip().splitlines()[0],
        "",
        "topics (relative to the node namespace; remap with -r image:=/camera/image_raw):",
        "  in:  image (sensor_msgs/Image) or image/compressed (sensor_msgs/CompressedImage)",
        "  out: ~/segmentation mono8, ~/segmentation_color rgb8, ~/confidence 32FC1, ~/overlay rgb8,",
        "       ~/alerts and /diagnostics (diagnostic_msgs/DiagnosticArray)",
        "",
        "parameters (ro = read-only after start-up):",
    ]
    for spec in PARAMETERS:
        extra = []
        if spec.range is not None:
            extra.append(f"range [{spec.range[0]}, {spec.range[1]}]")
        if spec.choices:
            extra.append("one of " + "|".join(c or "''" for c in spec.choices))
        lines.append(f"  {spec.name} ({spec.type_name}, default {spec.default!r}{', ro' if spec.read_only else ''})")
        lines.append(f"      {spec.description}" + (f" [{'; '.join(extra)}]" if extra else ""))
    lines += ["", "Large images between processes need a large-data DDS transport: see "
              "config/fastdds_large_data.xml (launch/fed.launch.py sets it)."]
    return "\n".join(lines)


def main(args: Optional[list[str]] = None, engine_factory: Optional[EngineFactory] = None) -> int:
    """Console script ``fed_node``: returns the process exit code (1 = could not start)."""
    argv = list(sys.argv if args is None else args)
    user_args = argv[1: argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user_args or "--help" in user_args:
        print(help_text())
        return 0
    rclpy.init(args=argv)
    node: Optional[FedNode] = None
    try:
        try:
            node = FedNode(engine_factory=engine_factory)
            node.start()
        except StartupError as exc:
            logger = node.get_logger() if node is not None else rclpy.logging.get_logger(NODE_NAME)
            logger.fatal(f"cannot start: {exc}")
            return 1
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
