"""The ROS wiring fed_node and its managed (lifecycle) variant share, as a mixin on an rclpy node.

Why a mixin: the plain node (:mod:`ros2_fed.node`) and the lifecycle node
(:mod:`ros2_fed.lifecycle_node`) differ only in *when* they do things (the plain node loads the
engine and subscribes at start-up; the managed one on ``configure`` / ``activate``), not in
what they do. So the steps are here once, each a method either node calls:

- :meth:`FedWiring._setup_wiring`: parameters (checked), publishers, timers - at construction;
- :meth:`FedWiring._load_engine`: open, verify and warm the engine, start the worker threads;
- :meth:`FedWiring._subscribe` / :meth:`FedWiring._unsubscribe`: input on / off;
- :meth:`FedWiring._release_engine`: stop the threads, close the engine.

The worker publishes only while the node is ``ready`` (subscribed), so a frame still in the
engine when input is switched off is never published.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
import time
from typing import Any, Callable, Iterable, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterNotDeclaredException
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64
from std_srvs.srv import Trigger

from ros2_fed import ros_messages as ros
from ros2_fed.cameras import CameraMailbox, camera_info_topic, camera_names, input_topic
from ros2_fed.engine.base import InferenceEngine
from ros2_fed.health import STALE, InputWatchdog, Status
from ros2_fed.pipeline import diagnostics as diag
from ros2_fed.pipeline.logs import FrameLog, watchdog_lines
from ros2_fed.pipeline.model_spec import ModelSpec, open_engine
from ros2_fed.pipeline.outputs import OUTPUTS
from ros2_fed.pipeline.params import (
    StartupError,
    parameter_problems,
    unknown_parameters,
    with_changes,
)
from ros2_fed.pipeline.processor import CameraResult, FrameProcessor
from ros2_fed.recording.stage import RECORD_STAGE

EngineFactory = Callable[[], InferenceEngine]
WATCHDOG_PERIOD_S = 0.1  # how often the watchdog is checked: its level changes go out within this
READY = "ready"  # the state in which the node is subscribed and publishes


class FedWiring:
    """fed_node's ROS wiring; mixed into an rclpy ``Node`` or ``LifecycleNode`` subclass."""

    def _setup_wiring(self, engine_factory: Optional[EngineFactory]) -> None:
        """Parameters (a bad value or, with ``strict_parameters``, an unknown name is a
        StartupError), publishers, timers; no engine yet."""
        self._engine_factory = engine_factory
        self._params = ros.declare_parameters(self)
        bad = parameter_problems(self._params)
        if bad:
            raise StartupError("invalid parameters: " + "; ".join(bad))
        self._check_unknown_parameters()
        self._processor: Optional[FrameProcessor] = None
        self._pending: Any = None  # the configuration of the last accepted parameter change
        self._mailbox: CameraMailbox[tuple[Any, float]] = CameraMailbox()
        self._outbox: Optional[queue.Queue] = None  # cameras: batches waiting to be published
        self._threads: list[threading.Thread] = []
        self._diag_lock = threading.Lock()
        self._state = "starting"
        self._idle_status: tuple[int, str] = (STALE, "")  # level, message while not ready
        self._status_extra: dict[str, str] = {}  # more values of the pipeline status
        self._frame_log: Any = None  # FrameLog, once the engine is open
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", ros.RELIABLE)
        self._name = self.get_fully_qualified_name().lstrip("/")
        self._cameras = camera_names(self._params["cameras"])
        self._pubs = {
            camera: ros.output_publishers(self, camera, self._params) for camera in self._cameras
        }
        self._subs: dict[str, Any] = {}
        self._info_subs: dict[str, Any] = {}  # camera -> its camera_info subscription
        self._camera_info: dict[str, Any] = {}  # camera -> the newest CameraInfo received
        self._inputs: dict[str, tuple[str, str]] = {}  # camera -> (topic, ROS type) as received
        self._watchdogs: dict[str, InputWatchdog] = {}
        self.create_service(Trigger, "~/save_clip", self._save_clip)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_timer(float(self._params["diagnostics.period"]), self._publish_diagnostics)
        self.create_timer(WATCHDOG_PERIOD_S, self._check_watchdog)

    def _check_unknown_parameters(self) -> None:
        """Names given (parameter file, -p) that the node does not declare: a WARN line each
        naming the closest declared one, or with ``strict_parameters`` a StartupError."""
        problems = unknown_parameters(ros.given_parameter_names(self), self._parameters)
        if problems and bool(self._params["strict_parameters"]):
            raise StartupError("; ".join(problems) + " (strict_parameters is on)")
        for text in problems:
            self.get_logger().warning(text + " (ignored)")

    def _check_undeclared_parameters(self, parameter_list: list[Parameter]) -> None:
        """A run-time set of an undeclared name is refused naming it and the closest declared
        one (rclpy's own refusal reads "undeclared parameter(s): []": it lists none)."""
        names = [p.name for p in parameter_list if p.name not in self._parameters]
        if names and not self._allow_undeclared_parameters:
            raise ParameterNotDeclaredException(
                "; ".join(unknown_parameters(names, self._parameters))
            )
        super()._check_undeclared_parameters(parameter_list)  # type: ignore[misc]

    # -- engine --------------------------------------------------------------------------

    def _load_engine(self) -> tuple[float, float]:
        """Open, verify and warm up the engine, start the worker threads; (load s, warm-up ms).
        Raises StartupError (the engine is closed again when something after opening fails)."""
        self._publish_diagnostics(STALE, "starting: loading engine")
        t0 = time.monotonic()
        engine = self._open_engine()
        load_s = time.monotonic() - t0
        try:
            processor = FrameProcessor(engine, self._params, self._cameras, self._name)
            throttle = float(self._params["diagnostics.error_log_throttle"])
            self._frame_log = FrameLog(throttle, processor.shape)
            warm_ms = processor.warm_up(int(self._params["warmup_runs"]))
        except (ValueError, OSError) as exc:
            engine.close()
            raise StartupError(f"invalid alert configuration: {exc}") from exc
        except BaseException:
            engine.close()
            raise
        self._processor = processor
        self._start_threads()
        return load_s, warm_ms

    def _open_engine(self) -> InferenceEngine:
        """The engine from the factory or the parameters; every failure is a StartupError."""
        if self._engine_factory is None:
            spec = ModelSpec.from_params(self._params).resolved()
            return open_engine(spec, progress=lambda msg: self.get_logger().info(str(msg)))
        try:
            return self._engine_factory()
        except Exception as exc:
            raise StartupError(f"engine factory failed: {type(exc).__name__}: {exc}") from exc

    def _start_threads(self) -> None:
        """The worker (with cameras, the publisher too), on a fresh mailbox."""
        self._mailbox = CameraMailbox()
        self._threads = []
        if len(self._cameras) > 1:
            self._outbox = queue.Queue(maxsize=1)
            self._threads.append(threading.Thread(target=self._run_publisher, name="publisher"))
        self._threads.append(threading.Thread(target=self._run_worker, name="worker"))
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def _release_engine(self) -> None:
        """Stop the worker (the current batch finishes), then the publisher after the batches
        already queued; close the engine."""
        self._mailbox.close()
        for thread in reversed(self._threads):  # the worker first
            if thread.name == "publisher" and self._outbox is not None:
                with contextlib.suppress(queue.Full):  # full: the publisher is gone (signal)
                    self._outbox.put(None, timeout=10.0)
            thread.join(timeout=10.0)
        self._threads = []
        processor, self._processor = self._processor, None
        if processor is not None:
            processor.close()  # an open clip is written as it is
            self._log(processor.drain_lines())
            processor.engine.close()

    def close(self) -> None:
        """Stop the worker and publisher threads, release the engine (before destroy_node)."""
        self._release_engine()

    # -- input ---------------------------------------------------------------------------

    def _subscribe(self) -> list[str]:
        """A subscription and a watchdog per camera; the node is ready. The topics."""
        p = self._params
        compressed = p["input_transport"] == "compressed"
        timeouts = float(p["diagnostics.input_timeout"]), float(p["diagnostics.engine_timeout"])
        input_qos = ros.qos(str(p["input_qos.reliability"]), int(p["input_qos.depth"]))
        for camera in self._cameras:
            self._watchdogs[camera] = InputWatchdog(*timeouts)
            kind = CompressedImage if compressed else Image
            self._subs[camera] = self.create_subscription(
                kind,
                input_topic(camera, compressed),
                lambda msg, cam=camera: self._on_image(cam, msg),
                input_qos,
            )
            msgtype = "sensor_msgs/msg/" + kind.__name__
            self._inputs[camera] = (self._subs[camera].topic_name, msgtype)
            self._info_subs[camera] = self.create_subscription(
                CameraInfo,
                camera_info_topic(camera),
                lambda msg, cam=camera: self._camera_info.__setitem__(cam, msg),
                input_qos,
            )
        self._state = READY
        return [sub.topic_name for sub in self._subs.values()]

    def _unsubscribe(self, state: str) -> None:
        """Input off (the engine stays): frames pending or in the engine are not published."""
        self._state = state
        for sub in [*self._subs.values(), *self._info_subs.values()]:
            self.destroy_subscription(sub)
        self._subs.clear()
        self._info_subs.clear()
        self._camera_info.clear()
        self._watchdogs.clear()
        self._mailbox.take_all(timeout=0.0)  # drop what is waiting

    # -- parameters ----------------------------------------------------------------------

    def _validate_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        """Reject a change set that is inconsistent as a whole (rclpy checks types and ranges
        too); the configuration it makes is kept for :meth:`_apply_parameters`."""
        candidate = with_changes(self._params, {p.name: p.value for p in changes})
        problems = parameter_problems(candidate)
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        if self._processor is not None:
            try:
                self._pending = self._processor.configure(candidate, [p.name for p in changes])
            except (ValueError, OSError) as exc:
                return SetParametersResult(successful=False, reason=f"alerts: {exc}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changes: list[Parameter]) -> None:
        """Take validated changes into effect (the worker sees them from its next frame): the
        configuration built while validating, so no file is read again after acceptance."""
        self._params = with_changes(self._params, {p.name: p.value for p in changes})
        pending, self._pending = self._pending, None
        if self._processor is not None and pending is not None:
            self._processor.apply(pending)
            if pending.stages:
                changed = ", ".join(f"{p.name}={p.value}" for p in changes)
                self.get_logger().info(f"alert thresholds updated: {changed}")

    # -- frames --------------------------------------------------------------------------

    def _on_image(self, camera: str, msg: Any) -> None:
        """Executor thread: O(1) - hand the frame to the worker, newest wins per camera."""
        if self._state != READY or self._processor is None:
            return
        topic, msgtype = self._inputs[camera]
        stamp = msg.header.stamp
        self._processor.observe(  # kept for clips (nothing when recording is off)
            topic, msgtype, msg, len(msg.data), stamp.sec * 1_000_000_000 + stamp.nanosec,
            serialize_message,
        )  # fmt: skip
        dropped = self._mailbox.put(camera, (msg, time.monotonic()))
        self._processor.stats[camera].on_received(dropped)
        self._watchdogs[camera].frame_received()
        self._check_watchdog()  # the first frame after a silence clears the WARN at once

    def _run_worker(self) -> None:
        while (frames := self._mailbox.take_all()) is not None:
            processor = self._processor
            try:
                if processor is None:
                    continue
                results = processor.run({cam: msg for cam, (msg, _) in frames.items()})
                self._log(line for r in results for line in self._frame_log.lines(r))
                self._log(processor.drain_lines())
                done = [(r, frames[r.camera][1]) for r in results if r.ok]
                if self._outbox is not None:
                    self._outbox.put(done)  # waits while the previous batch is being published
                else:
                    self._publish(done)
            except Exception as exc:  # never let one batch kill the worker
                if not self.context.ok():
                    return  # shutting down (signal): publishers are gone, nothing failed
                self._log_error(f"frame processing failed: {type(exc).__name__}: {exc}")
            finally:
                for camera in frames:
                    watchdog = self._watchdogs.get(camera)
                    if watchdog is not None:
                        watchdog.frame_finished(self._mailbox.pending(camera))

    def _run_publisher(self) -> None:
        """Cameras: publish batch k while the engine runs batch k + 1 (one batch queued)."""
        while (done := self._outbox.get()) is not None:
            try:
                self._publish(done)
            except Exception as exc:  # never let one batch kill the publisher
                if not self.context.ok():
                    return
                self._log_error(f"publishing failed: {type(exc).__name__}: {exc}")

    def _publish(self, done: list[tuple[CameraResult, float]]) -> None:
        """Each camera's wanted outputs (enabled and listened to, raw or compressed), its
        newest CameraInfo and the frame's latency, with its input's header; nothing while the
        input is off."""
        processor = self._processor
        if self._state != READY or processor is None:
            return
        changed = False
        for result, received in done:
            pubs, header = self._pubs[result.camera], result.message.header
            listened = {key for key, pub in pubs.items() if pub.get_subscription_count()}
            wanted = [
                o.name
                for o in OUTPUTS
                if o.name in listened or (o.compressed and ros.compressed_key(o) in listened)
            ]
            settings = processor.settings
            payloads = processor.render(result, wanted)
            for output in OUTPUTS:
                payload = payloads.get(output.name)
                if payload is None:
                    continue
                if output.name in listened:
                    pubs[output.name].publish(ros.to_message(output, payload, header))
                key = ros.compressed_key(output)
                if output.compressed and key in listened:
                    pubs[key].publish(ros.to_compressed(payload, settings, header))
            self._publish_extras(result.camera, pubs, listened, header, received)
            latency = time.monotonic() - received
            processor.stats[result.camera].on_processed(latency, result.inference_s)
            changed |= result.changed
        if changed:  # aggregators see level changes at once, not a period later
            self._publish_diagnostics()

    def _publish_extras(
        self, camera: str, pubs: dict[str, Any], listened: set[str], header: Any, received: float
    ) -> None:
        """The camera's newest CameraInfo with the frame's header (none before one arrived),
        and the frame's processing time and stamp-to-publish latency in ms."""
        info = self._camera_info.get(camera)
        if info is not None and ros.CAMERA_INFO in listened:
            info = copy.copy(info)  # the subscription's message stays as received
            info.header = header
            pubs[ros.CAMERA_INFO].publish(info)
        if ros.PROCESSING_TIME in listened:
            ms = (time.monotonic() - received) * 1000.0
            pubs[ros.PROCESSING_TIME].publish(Float64(data=ms))
        if ros.PIPELINE_LATENCY in listened:
            stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            ms = (self.get_clock().now().nanoseconds - stamp) / 1e6
            pubs[ros.PIPELINE_LATENCY].publish(Float64(data=ms))

    def _save_clip(self, request: Any, response: Any) -> Any:
        """``~/save_clip`` (std_srvs/Trigger): a clip around the newest frame, now."""
        processor = self._processor
        if processor is None:
            response.success, response.message = False, f"not ready ({self._state})"
            return response
        response.success, response.message = processor.stage(RECORD_STAGE).save_clip()
        self.get_logger().info(f"~/save_clip: {response.message}")
        return response

    def _log(self, lines: Iterable[tuple[str, str]]) -> None:
        """(severity, text) lines; one call site per severity (rclpy fixes a site's severity)."""
        logger = self.get_logger()
        for severity, text in lines:
            if severity == "error":
                logger.error(text)
            elif severity == "warning":
                logger.warning(text)
            else:
                logger.info(text)

    def _log_error(self, text: str) -> None:
        throttle = float(self._params["diagnostics.error_log_throttle"])
        self.get_logger().error(text, throttle_duration_sec=throttle)

    # -- diagnostics ---------------------------------------------------------------------

    def _check_watchdog(self) -> None:
        """Fast timer (and every received frame): publish /diagnostics at once when a camera's
        watchdog level changes."""
        if self._state != READY or not self.context.ok():
            return
        states = {camera: watchdog.check() for camera, watchdog in self._watchdogs.items()}
        changed = {camera: state for camera, state in states.items() if state is not None}
        self._log(
            line for camera, state in changed.items() for line in watchdog_lines(camera, state)
        )
        if changed:
            self._publish_diagnostics()

    def _pipeline_status(self, level: int, message: str) -> Status:
        """The node's own status: not ready (``level``, ``message``, else the idle status the
        node set) or ready (from counters)."""
        if self._state != READY or self._processor is None:
            name = diag.status_name(self._name, "", "pipeline")
            if not message:
                level, message = self._idle_status
            values = {"state": self._state, **self._status_extra}
            return Status(level, message or self._state, values, name)
        watch = {camera: watchdog.state() for camera, watchdog in self._watchdogs.items()}
        topics = {camera: sub.topic_name for camera, sub in self._subs.items()}
        extra = {"bad_input_log_lines_suppressed": str(self._frame_log.suppressed())}
        return self._processor.pipeline_status(watch, topics, {**extra, **self._status_extra})

    def _publish_diagnostics(self, level: int = STALE, message: str = "") -> None:
        """/diagnostics: the pipeline status, then each camera's newest stage statuses."""
        if not self.context.ok():
            return
        statuses = [self._pipeline_status(level, message)]
        processor = self._processor
        if processor is not None:
            self._log(processor.drain_lines())  # the clip writer's, without waiting for a frame
        statuses += processor.latest_statuses() if processor is not None else []
        array = DiagnosticArray(status=[ros.to_status(s) for s in statuses])
        array.header.stamp = self.get_clock().now().to_msg()
        with self._diag_lock:
            self._diag_pub.publish(array)
