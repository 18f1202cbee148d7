"""fed_node: camera in; segmentation, confidence, rviz overlay and low-confidence alerts out.

The ROS wiring around the frame path the replay runs too
(:class:`ros2_fed.pipeline.processor.FrameProcessor`). Why it is shaped this way:

- **Latest frame wins.** The subscription callback only drops the message into a one-slot
  mailbox per camera; a worker thread hands each batch to the processor. A frame that arrives
  while another is pending replaces it (counted as dropped): a slow engine builds no backlog.
- **Only work for listeners.** Outputs are rendered only when enabled and subscribed to (the
  per-frame stages always run: they feed /diagnostics).
- **Bad input never kills the node.** A refused frame is counted by kind and logged, throttled
  per kind; a decompression bomb is refused from its header and costs no memory.
- **Silence is a fault.** A watchdog turns the pipeline status WARN after
  ``diagnostics.input_timeout`` without input, ERROR after ``diagnostics.engine_timeout`` without
  a finished frame; level changes go out on /diagnostics at once.
- **Signals stop it cleanly at any moment**, imports included: exit code 0, no traceback, no
  ERROR line (:mod:`ros2_fed.stopping`). A missing or corrupt engine is one FATAL line, exit 1.
- **Surround cameras, one engine.** ``cameras:=[front, left, ...]``: inputs ``NAME/image``,
  outputs ``~/NAME/...``; the newest pending frame of every camera runs as one batch while a
  publisher thread publishes the batch before. Every output copies its input's header.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_node", __name__)  # first: a signal during the imports below stops it

import contextlib  # noqa: E402
import queue  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Iterable, Optional  # noqa: E402

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import SetParametersResult  # noqa: E402
from rclpy.executors import ExternalShutdownException  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ros2_fed import ros_messages as ros  # noqa: E402
from ros2_fed.cameras import CameraMailbox, camera_names, input_topic  # noqa: E402
from ros2_fed.engine.base import InferenceEngine  # noqa: E402
from ros2_fed.health import STALE, InputWatchdog, Status  # noqa: E402
from ros2_fed.pipeline import diagnostics as diag  # noqa: E402
from ros2_fed.pipeline.logs import FrameLog, ready_report, watchdog_lines  # noqa: E402
from ros2_fed.pipeline.model_spec import ModelSpec, open_engine  # noqa: E402
from ros2_fed.pipeline.outputs import OUTPUT_BY_NAME  # noqa: E402
from ros2_fed.pipeline.params import (  # noqa: E402
    NODE_NAME,
    StartupError,
    help_text,
    parameter_problems,
    with_changes,
)
from ros2_fed.pipeline.processor import CameraResult, FrameProcessor  # noqa: E402

EngineFactory = Callable[[], InferenceEngine]
WATCHDOG_PERIOD_S = 0.1  # how often the watchdog is checked: its level changes go out within this


class FedNode(Node):
    """The fed_node ROS 2 node. Construct, then :meth:`start` (loads the engine; may raise
    :class:`StartupError`), then spin; :meth:`close` stops the threads.

    ``engine_factory``: a zero-argument callable returning an engine, used instead of opening
    ``engine_path`` — for tests and embedding, never reachable from the command line.
    """

    def __init__(self, engine_factory: Optional[EngineFactory] = None, **node_kwargs: Any) -> None:
        super().__init__(node_kwargs.pop("node_name", NODE_NAME), **node_kwargs)
        self._engine_factory = engine_factory
        self._params = ros.declare_parameters(self)
        bad = parameter_problems(self._params)
        if bad:
            raise StartupError("invalid parameters: " + "; ".join(bad))
        self._processor: Optional[FrameProcessor] = None
        self._pending: Any = None  # the configuration of the last accepted parameter change
        self._mailbox: CameraMailbox[tuple[Any, float]] = CameraMailbox()
        self._outbox: Optional[queue.Queue] = None  # cameras: batches waiting to be published
        self._threads: list[threading.Thread] = []
        self._diag_lock = threading.Lock()
        self._state = "starting"
        self._frame_log: Any = None  # FrameLog, once the engine is open
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", ros.RELIABLE)
        self._name = self.get_fully_qualified_name().lstrip("/")
        self._cameras = camera_names(self._params["cameras"])
        self._pubs = {
            camera: ros.output_publishers(self, camera, self._params) for camera in self._cameras
        }
        self._subs: dict[str, Any] = {}
        self._watchdogs: dict[str, InputWatchdog] = {}
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    # -- start-up ------------------------------------------------------------------------

    def start(self) -> None:
        """Load + warm up the engine, then subscribe and report ready. Raises StartupError."""
        self._publish_diagnostics(STALE, "starting: loading engine")
        t0 = time.monotonic()
        engine = self._open_engine()
        load_s = time.monotonic() - t0
        try:
            self._processor = FrameProcessor(engine, self._params, self._cameras, self._name)
        except (ValueError, OSError) as exc:
            raise StartupError(f"invalid alert configuration: {exc}") from exc
        throttle = float(self._params["diagnostics.error_log_throttle"])
        self._frame_log = FrameLog(throttle, self._processor.shape)
        warm_ms = self._processor.warm_up(int(self._params["warmup_runs"]))
        self._subscribe()
        self.create_timer(float(self._params["diagnostics.period"]), self._publish_diagnostics)
        self.create_timer(WATCHDOG_PERIOD_S, self._check_watchdog)
        self._state = "ready"
        topics = [sub.topic_name for sub in self._subs.values()]
        self._log(ready_report(self._processor, self._params, topics, load_s, warm_ms))
        self._publish_diagnostics()

    def _open_engine(self) -> InferenceEngine:
        """The engine from the factory or the parameters; every failure is a StartupError."""
        if self._engine_factory is None:
            spec = ModelSpec.from_params(self._params).resolved()
            return open_engine(spec, progress=lambda msg: self.get_logger().info(str(msg)))
        try:
            return self._engine_factory()
        except Exception as exc:
            raise StartupError(f"engine factory failed: {type(exc).__name__}: {exc}") from exc

    def _subscribe(self) -> None:
        """Start the worker (with cameras, the publisher too), then a subscription and a
        watchdog per camera."""
        p = self._params
        if len(self._cameras) > 1:
            self._outbox = queue.Queue(maxsize=1)
            self._threads.append(threading.Thread(target=self._run_publisher, name="publisher"))
        self._threads.append(threading.Thread(target=self._run_worker, name="worker"))
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        compressed = p["input_transport"] == "compressed"
        timeouts = float(p["diagnostics.input_timeout"]), float(p["diagnostics.engine_timeout"])
        input_qos = ros.qos(str(p["input_qos.reliability"]), int(p["input_qos.depth"]))
        for camera in self._cameras:
            self._watchdogs[camera] = InputWatchdog(*timeouts)
            self._subs[camera] = self.create_subscription(
                CompressedImage if compressed else Image,
                input_topic(camera, compressed),
                lambda msg, cam=camera: self._on_image(cam, msg),
                input_qos,
            )

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
        """Executor thread: O(1) — hand the frame to the worker, newest wins per camera."""
        dropped = self._mailbox.put(camera, (msg, time.monotonic()))
        self._processor.stats[camera].on_received(dropped)
        self._watchdogs[camera].frame_received()
        self._check_watchdog()  # the first frame after a silence clears the WARN at once

    def _run_worker(self) -> None:
        while (frames := self._mailbox.take_all()) is not None:
            try:
                results = self._processor.run({cam: msg for cam, (msg, _) in frames.items()})
                self._log(line for r in results for line in self._frame_log.lines(r))
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
                    self._watchdogs[camera].frame_finished(self._mailbox.pending(camera))

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
        """Each camera's wanted outputs (enabled and listened to), with its input's header."""
        changed = False
        for result, received in done:
            pubs, header = self._pubs[result.camera], result.message.header
            wanted = [name for name, pub in pubs.items() if pub.get_subscription_count()]
            for name, payload in self._processor.render(result, wanted).items():
                pubs[name].publish(ros.to_message(OUTPUT_BY_NAME[name], payload, header))
            latency = time.monotonic() - received
            self._processor.stats[result.camera].on_processed(latency, result.inference_s)
            changed |= result.changed
        if changed:  # aggregators see level changes at once, not a period later
            self._publish_diagnostics()

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
        if self._state != "ready" or not self.context.ok():
            return
        states = {camera: watchdog.check() for camera, watchdog in self._watchdogs.items()}
        changed = {camera: state for camera, state in states.items() if state is not None}
        self._log(
            line for camera, state in changed.items() for line in watchdog_lines(camera, state)
        )
        if changed:
            self._publish_diagnostics()

    def _pipeline_status(self, level: int, message: str) -> Status:
        """The node's own status: starting (``level``, ``message``) or ready (from counters)."""
        if self._state != "ready" or self._processor is None:
            name = diag.status_name(self._name, "", "pipeline")
            return Status(level, message or self._state, {"state": self._state}, name)
        watch = {camera: watchdog.state() for camera, watchdog in self._watchdogs.items()}
        topics = {camera: sub.topic_name for camera, sub in self._subs.items()}
        suppressed = {"bad_input_log_lines_suppressed": str(self._frame_log.suppressed())}
        return self._processor.pipeline_status(watch, topics, suppressed)

    def _publish_diagnostics(self, level: int = STALE, message: str = "") -> None:
        """/diagnostics: the pipeline status, then each camera's newest stage statuses."""
        statuses = [self._pipeline_status(level, message)]
        statuses += self._processor.latest_statuses() if self._processor is not None else []
        array = DiagnosticArray(status=[ros.to_status(s) for s in statuses])
        array.header.stamp = self.get_clock().now().to_msg()
        with self._diag_lock:
            self._diag_pub.publish(array)

    # -- shutdown ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker (the current batch finishes), then the publisher after the batches
        already queued; release the engine."""
        self._mailbox.close()
        for thread in reversed(self._threads):  # the worker first
            if thread.name == "publisher":
                with contextlib.suppress(queue.Full):  # full: the publisher is gone (signal)
                    self._outbox.put(None, timeout=10.0)
            thread.join(timeout=10.0)
        if self._processor is not None:
            self._processor.engine.close()


def main(args: Optional[list[str]] = None, engine_factory: Optional[EngineFactory] = None) -> int:
    """Console script ``fed_node``: returns the process exit code (1 = could not start). It
    owns the process's SIGINT / SIGTERM from here on (:mod:`ros2_fed.stopping`)."""
    argv = list(sys.argv if args is None else args)
    user_args = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user_args or "--help" in user_args:
        print(help_text((__doc__ or "").strip().splitlines()[0]))
        return 0
    stopping.install()
    stopping.started()  # a stop signal is a KeyboardInterrupt from here on
    node: Optional[FedNode] = None
    stopped = "during start-up"
    try:
        rclpy.init(args=argv)
        node = FedNode(engine_factory=engine_factory)
        node.start()
        stopped = ""
        rclpy.spin(node)
    except StartupError as exc:
        if rclpy.ok():
            logger = node.get_logger() if node else rclpy.logging.get_logger(NODE_NAME)
            logger.fatal(f"cannot start: {exc}")
            return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise  # a real failure; after a signal, a call on the dead context is not one
    finally:
        _shut_down(node)
    if stopped and stopping.received() is not None:
        rclpy.logging.get_logger(NODE_NAME).info(f"stopped by a signal {stopped}")
    return 0


def _shut_down(node: Optional[FedNode]) -> None:
    """Threads, engine, node, context, in that order; a second signal meanwhile changes
    nothing. Nothing logs through the node after this (its rosout publisher is gone)."""
    stopping.stopping()
    try:
        if node is not None:
            node.close()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
        stopping.stopping()  # rclpy's shutdown put back the handler it found


if __name__ == "__main__":
    sys.exit(main())
