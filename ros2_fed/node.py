"""fed_node: camera in; segmentation, confidence, rviz overlay and low-confidence alerts out.

The rclpy wiring around :mod:`ros2_fed.pipeline` (parameters, engine, camera size, mailbox,
counters) and the pure core (codec -> engine -> alerts -> viz). Why it is shaped this way:

- **Latest frame wins.** The subscription callback only drops the message into a one-slot
  mailbox; a worker thread decodes, runs the engine and publishes. A frame that arrives while
  another is still pending replaces it (counted as dropped), so a slow engine never builds a
  backlog: output latency stays bounded by about two inference times whatever the camera rate.
- **Only work for listeners.** Colourisation, the overlay and even message conversion happen
  only for outputs that are enabled and have subscribers (alerts are always computed: they
  feed /diagnostics).
- **Bad input never kills the node.** A frame that cannot be decoded is skipped with an error
  log throttled per kind (each kind's first frame is logged at once) and a per-kind counter in
  /diagnostics; compressed frames are size-checked from their header before decoding
  (``max_input_pixels``), so a decompression bomb costs no memory.
- **Silence is a fault.** A watchdog turns the pipeline status WARN when no frame arrived for
  ``diagnostics.input_timeout`` and ERROR when the engine has not finished a pending frame for
  ``diagnostics.engine_timeout``; a fast timer publishes /diagnostics at once on a change.
- **Signals stop it cleanly.** SIGINT / SIGTERM at any stage after start-up began (engine load,
  warm-up, processing, shutdown): exit code 0, no traceback, no ERROR line.
- **Fail fast at start-up.** A missing or corrupt engine is one clear FATAL line and exit
  code 1, before anything subscribes; the node says "ready" (log + diagnostics) only after
  the engine loaded and warmed up.

- **Surround cameras, one engine.** With ``cameras:=[front, left, ...]`` each camera has its
  own input ``NAME/image``, outputs ``~/NAME/...``, counters, watchdog and alert state; the
  worker takes the newest pending frame of every camera that has one and runs them as one
  batch (:mod:`ros2_fed.cameras`). A stopped camera has nothing pending and delays nobody; a
  bad frame is dropped before the batch and the other cameras' frames still run.

Every output copies the input header (stamp, frame_id) so rviz and message_filters can sync.
Only this module (and the replay tool's live mode) imports rclpy.
"""

from __future__ import annotations

import math
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

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
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from ros2_fed import alerts as alerts_mod
from ros2_fed import codec
from ros2_fed.cameras import (
    SINGLE_CAMERA,
    BatchCounter,
    CameraMailbox,
    camera_names,
    camera_totals,
    engine_batch,
    infer_batch,
    input_topic,
    output_topic,
)
from ros2_fed.health import OK, InputWatchdog, KindThrottle, WatchdogState, worst_status
from ros2_fed.pipeline import (
    NODE_NAME,
    OUTPUT_NAMES,
    PARAMETER_SPECS,
    PARAMETERS,
    STALE,
    ModelSpec,
    OutputSettings,
    ParamSpec,
    ParamValue,
    PipelineStats,
    StartupError,
    alert_config,
    alert_values,
    changes_alerts,
    decode_error_kind,
    engine_metadata,
    engine_shape,
    hardware_id,
    help_text,
    input_limits,
    model_calibration,
    needs_resize,
    open_engine,
    output_images,
    parameter_problems,
    pipeline_status,
    pipeline_values,
    viz_palette,
    warm_up,
)

EngineFactory = Callable[[], Any]
WATCHDOG_PERIOD_S = 0.1  # how often the watchdog is checked: its level changes go out within this


def parameter_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The rclpy descriptor for a spec (description, type, range, read_only)."""
    ptype = {
        bool: ParameterType.PARAMETER_BOOL,
        int: ParameterType.PARAMETER_INTEGER,
        float: ParameterType.PARAMETER_DOUBLE,
        str: ParameterType.PARAMETER_STRING,
        tuple: ParameterType.PARAMETER_STRING_ARRAY,
    }[type(spec.default)]
    descriptor = ParameterDescriptor(
        name=spec.name, type=ptype, description=spec.description, read_only=spec.read_only
    )
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(repr(c) for c in spec.choices)
    if spec.range is not None:
        if isinstance(spec.default, int):
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=0)
            ]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(
                    from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0
                )
            ]
    return descriptor


def coerced(param: Parameter) -> Parameter:
    """``param`` in its spec's type (an integer for a float parameter becomes a double)."""
    spec = PARAMETER_SPECS.get(param.name)
    if spec is None or param.type_ == Parameter.Type.NOT_SET:
        return param
    value = spec.coerce(param.value)
    return param if value is param.value else Parameter(param.name, value=value)


@dataclass
class _Frame:
    msg: Union[Image, CompressedImage]
    received: float  # time.monotonic() when the callback ran


@dataclass(eq=False)  # hashable by identity: cameras key the per-batch dicts
class _Camera:
    """One camera's topics, counters, watchdog and alert state (the engine is shared)."""

    name: str  # "" = the single camera of a node without a cameras list
    pubs: dict[str, Any]
    stats: PipelineStats
    alert_name: str
    subscription: Any = None
    monitor: Any = None
    watchdog: Optional[InputWatchdog] = None
    watchdog_state: Optional[WatchdogState] = None
    alert_status: Optional[DiagnosticStatus] = None
    resize_warned: bool = False

    def label(self, text: str) -> str:
        """``text`` about this camera, prefixed with its name when it has one."""
        return f"{self.name}: {text}" if self.name else text


def _level(level: int) -> bytes:
    return bytes([int(level)])  # DiagnosticStatus levels are bytes in rclpy


def _qos(reliability: str, depth: int) -> QoSProfile:
    policy = (
        ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=policy,
        durability=DurabilityPolicy.VOLATILE,
    )


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
        # Integers for float parameters: in the parameter file / -p (overrides, before rclpy's type
        # check at declaration) and at run time (the pre-set callback, before its check on set).
        overrides = getattr(self, "_parameter_overrides", None)
        if isinstance(overrides, dict):
            for name, param in list(overrides.items()):
                overrides[name] = coerced(param)
        self.add_pre_set_parameters_callback(lambda params: [coerced(p) for p in params])
        self._params: dict[str, ParamValue] = {
            spec.name: self._declare(spec) for spec in PARAMETERS
        }
        bad = parameter_problems(self._params)
        if bad:
            raise StartupError("invalid parameters: " + "; ".join(bad))
        self._calibration: dict[str, Any] = {}
        self._class_names: Optional[list[str]] = (
            None  # the engine's operating point, once it is open
        )
        self._settings = OutputSettings.from_params(self._params)

        self._engine: Any = None
        self._engine_shape: Optional[tuple[int, int]] = None
        self._palette: Optional[np.ndarray] = None
        self._mailbox: CameraMailbox[_Frame] = CameraMailbox()
        self._batches = BatchCounter()
        self._outbox: Optional[queue.Queue] = (
            None  # surround cameras: batches waiting to be published
        )
        self._publisher: Optional[threading.Thread] = None
        self._worker: Optional[threading.Thread] = None
        self._alert_lock = threading.Lock()
        self._validated_alerts: Any = None  # AlertConfig from the last accepted parameter change
        self._diag_lock = threading.Lock()
        self._state = "starting"
        self._timer: Any = None
        self._watchdog_timer: Any = None
        self._limits = input_limits(self._params)
        self._bad_input_log = KindThrottle(float(self._params["diagnostics.error_log_throttle"]))
        self._note_log = KindThrottle(
            math.inf
        )  # input notes: logged once per kind, always counted

        p = self._params
        self._diag_pub = self.create_publisher(
            DiagnosticArray, "/diagnostics", _qos("reliable", 10)
        )
        self._status_name = f"{self.get_fully_qualified_name().lstrip('/')}: pipeline"
        self._cameras = {name: self._new_camera(name) for name in camera_names(p["cameras"])}
        self._hardware_id = str(p["diagnostics.hardware_id"])
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    def _declare(self, spec: ParamSpec) -> ParamValue:
        """Declare one parameter; its value in the spec's type. A string list is declared by type
        (an empty default would be a byte array to rclpy) and is empty when not given."""
        if isinstance(spec.default, tuple):
            self.declare_parameter(
                spec.name, Parameter.Type.STRING_ARRAY, parameter_descriptor(spec)
            )
            try:
                return spec.coerce(self.get_parameter(spec.name).value)
            except ParameterUninitializedException:
                return spec.default
        self.declare_parameter(spec.name, spec.default, parameter_descriptor(spec))
        return spec.coerce(self.get_parameter(spec.name).value)

    def _new_camera(self, name: str) -> _Camera:
        """A camera's publishers (``~/NAME/<output>``; ``~/<output>`` for the single camera)."""
        p = self._params
        image_qos = _qos(str(p["output_qos.reliability"]), int(p["output_qos.depth"]))
        pubs = {
            out: self.create_publisher(
                DiagnosticArray if out == "alerts" else Image,
                output_topic(name, out),
                _qos("reliable", 10) if out == "alerts" else image_qos,
            )
            for out in OUTPUT_NAMES
        }
        node = self.get_fully_qualified_name().lstrip("/")
        return _Camera(
            name=name,
            pubs=pubs,
            stats=PipelineStats(int(p["diagnostics.latency_window"])),
            alert_name=f"{node}: {name} alerts" if name else f"{node}: alerts",
        )

    # -- start-up --------------------------------------------------------------------

    def start(self) -> None:
        """Load + warm up the engine, then subscribe and report ready. Raises StartupError."""
        self._publish_diagnostics(state_level=STALE, message="starting: loading engine")
        t0 = time.monotonic()
        self._engine = self._open_engine()
        load_s = time.monotonic() - t0
        meta = engine_metadata(self._engine)
        self._engine_shape = engine_shape(self._engine)
        self._palette = viz_palette(meta)
        self._hardware_id = self._hardware_id or hardware_id(meta)
        self._calibration = model_calibration(meta)
        self._class_names = meta.get("class_names")  # the drivable alert ROI names classes
        self._settings = OutputSettings.from_params(self._params, self._calibration)
        try:
            config = alert_config(self._params, self._calibration, self._class_names)
            for camera in self._cameras.values():
                camera.monitor = alerts_mod.AlertMonitor(config)
        except (ValueError, OSError) as exc:
            raise StartupError(f"invalid alert configuration: {exc}") from exc
        warm_ms = warm_up(self._engine, int(self._params["warmup_runs"]), self._engine_shape)
        self._subscribe()
        p = self._params
        self._timer = self.create_timer(float(p["diagnostics.period"]), self._publish_diagnostics)
        self._watchdog_timer = self.create_timer(WATCHDOG_PERIOD_S, self._check_watchdog)
        self._state = "ready"
        batch, dynamic = engine_batch(self._engine)
        cameras = len(self._cameras)
        if cameras > batch:
            self.get_logger().warning(
                f"{cameras} cameras but the engine runs batches of {batch}: a batch of {cameras} "
                f"frames takes {-(-cameras // batch)} runs; export the engine with --batch "
                f"{cameras} (or leave engine_path empty: the cached engine is built for it)"
            )
        name = (
            getattr(self._engine, "path", None) or meta.get("name") or type(self._engine).__name__
        )
        batching = f", batch {batch} {'dynamic' if dynamic else 'fixed'}" if batch > 1 else ""
        threshold_source = (
            "explicit"
            if p["alerts.confidence_threshold"] >= 0
            else "calibrated"
            if self._calibration
            else "uncalibrated default"
        )
        topics = ", ".join(c.subscription.topic_name for c in self._cameras.values())
        self.get_logger().info(
            f"ready: engine {name} ({meta.get('runtime', '?')}, score {meta.get('score', '?')}, "
            f"input {self._engine_shape}{batching}) loaded in {load_s:.2f} s, "
            f"warm-up {warm_ms:.1f} ms/frame; listening on {topics} ({p['input_transport']}, "
            f"{p['input_qos.reliability']}); alert threshold {config.confidence_threshold:.4f} "
            f"({threshold_source}); torch {'loaded' if 'torch' in sys.modules else 'not loaded'}"
        )
        self._publish_diagnostics()

    def _subscribe(self) -> None:
        """Start the worker, then one subscription (and watchdog) per camera."""
        p = self._params
        if len(self._cameras) > 1:
            self._outbox = queue.Queue(maxsize=1)
            self._publisher = threading.Thread(
                target=self._run_publisher, name="fed_node_publisher", daemon=True
            )
            self._publisher.start()
        self._worker = threading.Thread(
            target=self._run_worker, name="fed_node_worker", daemon=True
        )
        self._worker.start()
        compressed = p["input_transport"] == "compressed"
        qos = _qos(str(p["input_qos.reliability"]), int(p["input_qos.depth"]))
        for camera in self._cameras.values():
            camera.watchdog = InputWatchdog(
                float(p["diagnostics.input_timeout"]), float(p["diagnostics.engine_timeout"])
            )
            camera.subscription = self.create_subscription(
                CompressedImage if compressed else Image,
                input_topic(camera.name, compressed),
                lambda msg, cam=camera: self._on_image(cam, msg),
                qos,
            )

    def _open_engine(self) -> Any:
        """The engine from the factory or the parameters; every failure is a StartupError."""
        if self._engine_factory is not None:
            try:
                return self._engine_factory()
            except Exception as exc:
                raise StartupError(f"engine factory failed: {type(exc).__name__}: {exc}") from exc
        spec = ModelSpec.from_params(self._params).resolved()
        if not spec.engine_path:
            self.get_logger().info(
                f"no engine_path: opening the cached engine for {spec.describe()}; "
                "the first start builds it"
            )
        return open_engine(spec, progress=lambda msg: self.get_logger().info(str(msg)))

    # -- parameters ------------------------------------------------------------------

    def _validate_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        """Reject a change set that is inconsistent as a whole (types/ranges: rclpy checks too)."""
        candidate = dict(self._params)
        candidate.update(
            {
                p.name: PARAMETER_SPECS[p.name].coerce(p.value)
                for p in changes
                if p.name in PARAMETER_SPECS
            }
        )
        problems = parameter_problems(candidate)
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        if changes_alerts(p.name for p in changes):
            try:
                # reused by _apply_parameters
                self._validated_alerts = alert_config(
                    candidate, self._calibration, self._class_names
                )
            except (ValueError, OSError) as exc:
                return SetParametersResult(successful=False, reason=f"alerts: {exc}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changes: list[Parameter]) -> None:
        """Take validated changes into effect (the worker sees them from its next frame)."""
        for param in changes:
            if param.name in PARAMETER_SPECS:
                self._params[param.name] = PARAMETER_SPECS[param.name].coerce(param.value)
        self._settings = OutputSettings.from_params(self._params, self._calibration)
        if self._state == "ready" and changes_alerts(p.name for p in changes):
            # The config built (and the ROI mask read) while validating: no second file read
            # that could fail after the change was accepted.
            config = self._validated_alerts or alert_config(
                self._params, self._calibration, self._class_names
            )
            self._validated_alerts = None
            with self._alert_lock:
                for camera in self._cameras.values():
                    camera.monitor.config = config
            self.get_logger().info(
                "alert thresholds updated: "
                + ", ".join(f"{p.name}={p.value}" for p in changes if changes_alerts([p.name]))
            )

    # -- the pipeline ------------------------------------------------------------------

    def _on_image(self, camera: _Camera, msg: Union[Image, CompressedImage]) -> None:
        """Executor thread: O(1) — hand the frame to the worker, newest wins per camera."""
        dropped = self._mailbox.put(camera.name, _Frame(msg, time.monotonic()))
        camera.stats.on_received(dropped)
        camera.watchdog.frame_received()
        self._check_watchdog()  # the first frame after a silence clears the WARN at once

    def _run_worker(self) -> None:
        while True:
            frames = self._mailbox.take_all()
            if frames is None:
                return
            try:
                self._process_batch({self._cameras[name]: frame for name, frame in frames.items()})
            except Exception as exc:  # never let one batch kill the worker
                if not self.context.ok():
                    return  # shutting down (signal): publishers are gone, nothing failed
                for camera in frames:
                    self._cameras[camera].stats.on_inference_error()
                self.get_logger().error(
                    f"frame processing failed: {type(exc).__name__}: {exc}",
                    throttle_duration_sec=float(self._params["diagnostics.error_log_throttle"]),
                )
            finally:
                for name in frames:
                    self._cameras[name].watchdog.frame_finished(
                        more_pending=self._mailbox.pending(name)
                    )

    def _process_batch(self, frames: dict[_Camera, _Frame]) -> None:
        """Decode every camera's frame (bad ones are skipped alone), run the good ones as one
        batch, then alerts and outputs camera by camera."""
        decoded = [
            (camera, frame, rgb)
            for camera, frame in frames.items()
            if (rgb := self._decode(camera, frame.msg)) is not None
        ]
        if not decoded:
            return
        t0 = time.monotonic()
        results = infer_batch(self._engine, [rgb for _, _, rgb in decoded], self._engine_shape)
        inference_s = time.monotonic() - t0
        self._batches.on_batch(len(decoded))
        outputs = [
            (camera, frame, rgb, labels, confidence, inference_s)
            for (camera, frame, rgb), (labels, confidence) in zip(decoded, results)
        ]
        if self._outbox is None:
            for item in outputs:
                self._publish(*item)
        else:
            self._outbox.put(outputs)  # blocks while the previous batch is still being published

    def _run_publisher(self) -> None:
        """Surround cameras: publish batch k while the engine runs batch k + 1 (one batch queued
        at most, cameras in order). A single camera publishes on the worker, as it always did."""
        while True:
            outputs = self._outbox.get()
            if outputs is None:
                return
            for item in outputs:
                try:
                    self._publish(*item)
                except Exception as exc:  # never let one frame kill the publisher
                    if not self.context.ok():
                        return
                    item[0].stats.on_inference_error()
                    self.get_logger().error(
                        item[0].label(f"publishing failed: {type(exc).__name__}: {exc}"),
                        throttle_duration_sec=float(
                            self._params["diagnostics.error_log_throttle"]
                        ),
                    )

    def _decode(self, camera: _Camera, msg: Union[Image, CompressedImage]) -> Optional[np.ndarray]:
        """The frame as RGB, or None (counted and logged, throttled per kind) when it is bad."""
        try:
            decoded = codec.decode_rgb8(msg, self._limits)
        except codec.ImageDecodeError as exc:
            kind = decode_error_kind(exc)
            total = camera.stats.on_bad_input(kind)
            decision = self._bad_input_log.allow(kind)
            if decision.log:
                self.get_logger().error(
                    camera.label(
                        f"skipping bad input frame ({kind}): {exc} "
                        f"[frame_id={msg.header.frame_id!r}; {total} bad frames so far]"
                        f"{decision.suffix()}"
                    )
                )
            return None
        for note in decoded.notes:
            camera.stats.on_input_note(note.kind)
            if self._note_log.allow(note.kind).log:
                self.get_logger().warning(
                    camera.label(
                        f"input ({note.kind}): {note.message} [logged once; every such frame "
                        f"is counted in /diagnostics input_notes.{note.kind}]"
                    )
                )
        rgb = decoded.image
        if not camera.resize_warned and needs_resize(self._engine_shape, rgb):
            camera.resize_warned = True
            h, w = rgb.shape[:2]
            eh, ew = self._engine_shape
            self.get_logger().warning(
                camera.label(
                    f"camera frames are {h}x{w} but the engine takes {eh}x{ew}: resizing on the "
                    "host every frame; export an engine for the camera size to avoid it"
                )
            )
        return rgb

    def _publish(
        self,
        camera: _Camera,
        frame: _Frame,
        rgb: np.ndarray,
        labels: np.ndarray,
        confidence: np.ndarray,
        inference_s: float,
    ) -> None:
        """One camera's alert update and outputs (only those enabled and listened to)."""
        header = frame.msg.header
        with self._alert_lock:
            state = camera.monitor.update(confidence, header.stamp, labels=labels)
        status = self._alert_status_of(camera, state)
        previous, camera.alert_status = camera.alert_status, status

        settings, pubs = self._settings, camera.pubs
        active = {
            name: settings.enabled(name) and pubs[name].get_subscription_count() > 0
            for name in OUTPUT_NAMES
        }
        wanted = [name for name, on in active.items() if on]
        for name, (image, encoding) in output_images(
            rgb, labels, confidence, settings, self._palette, wanted
        ).items():
            pubs[name].publish(codec.numpy_to_image(image, encoding, header))
        if active["alerts"]:
            pubs["alerts"].publish(DiagnosticArray(header=header, status=[status]))
        camera.stats.on_processed(time.monotonic() - frame.received, inference_s)
        if previous is not None and previous.level != status.level:
            # aggregators see level changes at once, not a period later
            self._publish_diagnostics()

    # -- diagnostics -------------------------------------------------------------------

    def _check_watchdog(self) -> None:
        """Fast timer (and every received frame): publish /diagnostics at once when a camera's
        watchdog level changes."""
        if self._state != "ready" or not self.context.ok():
            return
        changed = False
        for camera in self._cameras.values():
            state = camera.watchdog.check() if camera.watchdog is not None else None
            if state is None:
                continue
            changed = True
            previous, camera.watchdog_state = camera.watchdog_state, state
            if state.message:
                self.get_logger().warning(camera.label(f"watchdog: {state.message}"))
            elif previous is not None and previous.message:
                self.get_logger().info(
                    camera.label("watchdog: input and engine are back to normal")
                )
        if changed:
            self._publish_diagnostics()

    def _alert_status_of(self, camera: _Camera, state: Any) -> DiagnosticStatus:
        """One alert state as a DiagnosticStatus (level OK/WARN/ERROR, region, fraction, stamp)."""
        status = DiagnosticStatus(
            name=camera.alert_name,
            hardware_id=self._hardware_id,
            level=_level(int(state.level)),
            message=str(getattr(state, "message", "")),
        )
        status.values = [KeyValue(key=k, value=v) for k, v in alert_values(state).items()]
        return status

    def _camera_status(self, camera: _Camera) -> tuple[int, str, dict[str, str]]:
        """(level, message, key/values) of one camera: its counters and its watchdog."""
        snap = camera.stats.snapshot()
        watch = camera.watchdog.state()
        level, message = worst_status(pipeline_status(snap), (watch.level, watch.message))
        values = pipeline_values(snap, self._engine_shape, camera.subscription.topic_name)
        values["seconds_since_input"] = f"{watch.seconds_since_input:.2f}"
        return level, message, values

    def _ready_status(self) -> tuple[int, str, dict[str, str]]:
        """The pipeline status: the single camera's as it is; with cameras, the worst camera's
        level, every camera's values prefixed ``NAME.`` and the totals."""
        per_camera = {camera: self._camera_status(camera) for camera in self._cameras.values()}
        if len(per_camera) == 1 and SINGLE_CAMERA in self._cameras:
            level, message, values = per_camera[self._cameras[SINGLE_CAMERA]]
        else:
            level, message = worst_status(
                (OK, f"ready: {len(per_camera)} cameras"),
                *[
                    (lvl, camera.label(msg))
                    for camera, (lvl, msg, _) in per_camera.items()
                    if msg != "ready"
                ],
            )
            values = camera_totals(
                {c.name: v for c, (_, _, v) in per_camera.items()},
                engine_batch(self._engine),
                self._batches,
            )
        values["bad_input_log_lines_suppressed"] = str(
            sum(self._bad_input_log.suppressed().values())
        )
        return level, message, values

    def _publish_diagnostics(self, state_level: Optional[int] = None, message: str = "") -> None:
        """/diagnostics: the pipeline status (+ each camera's latest alert status)."""
        status = DiagnosticStatus(name=self._status_name, hardware_id=self._hardware_id)
        if self._state != "ready":
            status.level = _level(state_level if state_level is not None else STALE)
            status.message = message or self._state
            status.values = [KeyValue(key="state", value=self._state)]
        else:
            level, status.message, values = self._ready_status()
            status.level = _level(level)
            status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        alerts = [c.alert_status for c in self._cameras.values() if c.alert_status is not None]
        array = DiagnosticArray(status=[status] + alerts)
        array.header.stamp = self.get_clock().now().to_msg()
        with self._diag_lock:
            self._diag_pub.publish(array)

    # -- shutdown ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker (the current frame finishes) and release the engine."""
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        if self._publisher is not None:
            try:
                self._outbox.put(None, timeout=10.0)  # after the batches already queued
            except queue.Full:
                pass  # the publisher is gone (signal): nothing waits for the marker
            self._publisher.join(timeout=10.0)
        closer = getattr(self._engine, "close", None)
        if callable(closer):
            closer()


def main(args: Optional[list[str]] = None, engine_factory: Optional[EngineFactory] = None) -> int:
    """Console script ``fed_node``: returns the process exit code (1 = could not start)."""
    argv = list(sys.argv if args is None else args)
    user_args = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user_args or "--help" in user_args:
        print(help_text((__doc__ or "").strip().splitlines()[0]))
        return 0
    # rclpy's handlers (SIGINT and SIGTERM) shut the context down and, for SIGINT, raise
    # KeyboardInterrupt in this thread: a signal during start-up surfaces as KeyboardInterrupt or
    # as an RCLError from the next call on the dead context. Both mean "stop", not "failed".
    rclpy.init(args=argv)
    context = rclpy.get_default_context()
    node: Optional[FedNode] = None
    try:
        try:
            node = FedNode(engine_factory=engine_factory)
            node.start()
        except StartupError as exc:
            if not context.ok():
                return _stopped(node, "during start-up")
            logger = node.get_logger() if node is not None else rclpy.logging.get_logger(NODE_NAME)
            logger.fatal(f"cannot start: {exc}")
            return 1
        except KeyboardInterrupt:
            return _stopped(node, "during start-up")
        except Exception:
            if context.ok():
                raise
            return _stopped(node, "during start-up")
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:
            if context.ok():
                raise  # a real failure; after a signal, a callback on the dead context is not one
        return 0
    finally:
        _shut_down(node)


def _stopped(node: Optional[FedNode], when: str) -> int:
    """Exit code 0 and one INFO line for a signal that stopped the node."""
    logger = node.get_logger() if node is not None else rclpy.logging.get_logger(NODE_NAME)
    logger.info(f"stopped by a signal {when}")
    return 0


def _shut_down(node: Optional[FedNode]) -> None:
    """Worker, engine, node, context, in that order; a second signal meanwhile changes nothing."""
    _ignore_stop_signals()
    try:
        if node is not None:
            node.close()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
        _ignore_stop_signals()  # rclpy's shutdown restores the handlers it had replaced


def _ignore_stop_signals() -> None:
    """SIGINT / SIGTERM ignored from here on: the process is already on its way out (bounded by
    the worker join timeout); a second Ctrl-C must not turn a clean exit into a traceback."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
