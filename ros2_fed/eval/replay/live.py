"""``--live``: play the bag through a running fed_node over real ROS 2 topics and record its
outputs.

The only replay module that imports rclpy. What happens:

1. a fed_node process is started (``python -m ros2_fed.node``, or ``--node-command``) in its
   own ROS_DOMAIN_ID with localhost-only discovery and the large-data Fast DDS profile, the
   model given as ``-p`` parameters, and its own QoS (as shipped: best-effort input of depth 1,
   so a frame lost on the way counts as dropped, as on the vehicle; ``--reliable``: reliable,
   keep last 10, both ways; the report's ``live.qos`` says which); its log goes to
   ``OUT/node.log``.
   ``--attach NODE`` uses a node that is already running instead (current domain);
2. this process joins the same domain: a player publishes the camera messages **byte for
   byte** as stored (raw CDR, header stamps untouched) at the recorded rate x ``--rate``, and a
   recorder subscribes (raw) to the node's outputs and writes them straight into the output
   bag, matching every output to its input by header stamp;
3. before playing, a warm-up frame (the bag's first usable frame, frame_id
   ``fed_bag_eval/warmup``, stamped after the bag's last frame) is sent until its outputs come
   back, so discovery is complete both ways and no bag frame is lost to it. It is not recorded;
   the bag's first frame then steps back in time, and the node starts its per-frame stages
   (alerts, scene) afresh for it, so the warm-up leaves no trace in what is scored;
4. after the last frame the recorder waits for outstanding outputs; a frame without
   segmentation + confidence is a dropped frame. The node's own counters (from
   /diagnostics) go into the report next to ours.

Latency is publish -> last required output received (wall clock, this host).
"""

from __future__ import annotations

import os
import queue
import random
import signal
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay.bagio import BagWriter
from ros2_fed.eval.replay.errors import LiveError
from ros2_fed.eval.replay.model import param_text, read_params_file
from ros2_fed.eval.replay.offline import write_inputs
from ros2_fed.eval.replay.outputs import (
    OUTPUT_TYPES,
    REQUIRED_OUTPUTS,
    AlertRecord,
    alert_from_message,
)
from ros2_fed.paths import fastdds_profile
from ros2_fed.pipeline.model_spec import ModelSpec
from ros2_fed.pipeline.params import with_defaults

WARMUP_FRAME_ID = "fed_bag_eval/warmup"
MSG_CLASSES = {
    bagio.IMAGE: Image,
    bagio.COMPRESSED_IMAGE: CompressedImage,
    bagio.DIAGNOSTIC_ARRAY: DiagnosticArray,
}


# --reliable: every frame delivered (reliable, keep last 10), to measure the node, not the link
RELIABLE_QOS = {
    "input_qos.reliability": "reliable",
    "input_qos.depth": 10,
    "output_qos.reliability": "reliable",
    "output_qos.depth": 10,
}


def node_qos(params_file: Optional[str], params: dict[str, Any], reliable: bool) -> dict[str, Any]:
    """The QoS parameters the started node runs with: its own (the shipped best-effort input of
    depth 1 unless the parameter file or ``-p`` say otherwise), or with ``--reliable``
    :data:`RELIABLE_QOS`; an explicit ``-p`` wins either way."""
    given = read_params_file(params_file) if params_file else {}
    if reliable:
        given.update(RELIABLE_QOS)
    given.update(params)
    merged = with_defaults(given)
    return {name: merged[name] for name in RELIABLE_QOS}


def qos_text(qos: dict[str, Any]) -> str:
    """``input best_effort depth 1, output reliable depth 1``."""
    return ", ".join(
        f"{side} {qos[f'{side}_qos.reliability']} depth {qos[f'{side}_qos.depth']}"
        for side in ("input", "output")
    )


@dataclass
class LiveOptions:
    rate: float = 1.0
    node_command: Optional[list[str]] = None  # default: [python, -m, ros2_fed.node]
    attach: Optional[str] = None  # fully qualified name of a running fed_node
    input_topic: Optional[str] = None  # attach mode: where that node listens (default <ns>/image)
    domain_id: Optional[int] = None
    params_file: Optional[str] = None
    params: dict[str, Any] = field(default_factory=dict)  # extra node parameters
    ready_timeout_s: float = 600.0  # first start may export the engine
    answer_timeout_s: float = 60.0  # warm-up frame round trip
    settle_s: float = 3.0  # wait this long after the last output for stragglers
    log_path: Optional[Path] = None
    reliable: bool = False  # --reliable: RELIABLE_QOS instead of the node's own QoS


@dataclass
class LiveResult:
    domain_id: Optional[int] = None
    node_command: list[str] = field(default_factory=list)
    ready_line: str = ""
    published: int = 0
    pub_times: dict[int, float] = field(default_factory=dict)  # stamp -> monotonic publish time
    outputs: dict[int, dict[str, float]] = field(
        default_factory=dict
    )  # stamp -> {output: recv time}
    alerts: dict[int, AlertRecord] = field(default_factory=dict)
    node_pipeline: dict[str, str] = field(
        default_factory=dict
    )  # last /diagnostics pipeline values
    node_pipeline_start: dict[str, str] = field(
        default_factory=dict
    )  # ... before the bag was played
    node_exit_code: Optional[int] = None
    qos: dict[str, Any] = field(default_factory=dict)  # the started node's QoS parameters
    warmup_frames: int = 0
    play_s: float = 0.0  # first publish -> last publish
    span_s: float = 0.0  # first publish -> last output
    late_publishes: int = 0  # frames published more than 10 ms after their due time
    node_start_s: float = (
        0.0  # node process start -> "ready" (incl. an engine export on a cache miss)
    )

    def latency_s(
        self, stamp: int, required: tuple[str, ...] = REQUIRED_OUTPUTS
    ) -> Optional[float]:
        got = self.outputs.get(stamp, {})
        if not all(name in got for name in required) or stamp not in self.pub_times:
            return None
        return max(got[name] for name in required) - self.pub_times[stamp]


def _stamp_of(raw: bytes) -> tuple[int, str]:
    """(header stamp ns, frame_id) straight from CDR bytes (every recorded type starts with a
    Header)."""
    endian = "<" if raw[1] == 1 else ">"
    sec, nanosec, length = struct.unpack_from(endian + "iII", raw, 4)
    frame_id = raw[16 : 16 + max(0, length - 1)].decode("utf-8", "replace")
    return sec * 1_000_000_000 + nanosec, frame_id


def ros_environment(domain_id: int) -> dict[str, str]:
    """Environment of the node process (and, minus the domain, of this one)."""
    env = dict(os.environ)
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated spelling; the range below replaces it
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    profile = fastdds_profile()
    if "FASTDDS_DEFAULT_PROFILES_FILE" not in env and profile is not None:
        env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)  # the XML profile decides the transports
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class NodeProcess:
    """fed_node in a subprocess; its output goes to a log file and is scanned for "ready:"."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Optional[Path]) -> None:
        self.cmd = cmd
        self.lines: list[str] = []
        self._log = open(log_path, "w") if log_path is not None else None
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self._log is not None:
                self._log.write(line + "\n")
                self._log.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.lines[-n:])

    def wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if "ready:" in line:
                    return line
            if not self.alive():
                self._reader.join(timeout=2)
                raise LiveError(
                    f"fed_node exited with code {self.proc.returncode} before it was "
                    f"ready:\n{self.tail()}"
                )
            time.sleep(0.05)
        raise LiveError(f"fed_node was not ready after {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode


def _pick_domain(requested: Optional[int]) -> int:
    if requested is not None:
        return int(requested)
    current = os.environ.get("ROS_DOMAIN_ID", "")
    choices = [d for d in range(1, 102) if str(d) != current]
    return random.SystemRandom().choice(choices)


# This process must discover like the node: same range and transport profile.
_DISCOVERY_KEYS = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")


@contextmanager
def discovery_environment(env: dict[str, str]) -> Iterator[None]:
    """This process's ``os.environ`` set to discover like a node started with ``env``
    (:func:`ros_environment`) while the block runs; restored afterwards."""
    changes: dict[str, Optional[str]] = {k: env[k] for k in _DISCOVERY_KEYS if k in env}
    if "FASTDDS_BUILTIN_TRANSPORTS" not in env:
        changes["FASTDDS_BUILTIN_TRANSPORTS"] = None
    changes["ROS_LOCALHOST_ONLY"] = None
    saved = {key: os.environ.get(key) for key in changes}
    try:
        for key, value in changes.items():
            _set_env(key, value)
        yield
    finally:
        for key, value in saved.items():
            _set_env(key, value)


def _set_env(key: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


class LiveSession:
    """One ``--live`` run: the node, this process's ROS graph (recorder + player), the playback.

    :meth:`run` goes through the steps of the module docstring; the ROS callbacks are methods
    and share ``self.lock``. ``os.environ`` is changed only while :meth:`run` runs.
    """

    def __init__(
        self,
        scan: bagmod.ScanResult,
        spec: ModelSpec,
        writer: Optional[BagWriter],
        topics: dict[str, str],
        options: LiveOptions,
        log: Callable[[str], None] = print,
        progress: bool = False,
        copy_inputs: bool = True,
    ) -> None:
        if options.rate <= 0:
            raise ValueError("--rate must be > 0")
        self.scan, self.spec, self.writer, self.topics = scan, spec, writer, topics
        self.options, self.log = options, log
        self.progress, self.copy_inputs = progress, copy_inputs
        self.sel = scan.selection
        self.result = LiveResult()
        self.frame_log = {ref.stamp_ns: ref.log_ns for ref in scan.frames}
        self.lock = threading.Lock()
        self.warm_seen: dict[int, set[str]] = {}
        self.diag_event = threading.Event()
        self.callback_errors: list[BaseException] = []
        self.node: Optional[NodeProcess] = None
        self.context = rclpy.Context()
        self.ros_node: Any = None
        self.executor: Optional[SingleThreadedExecutor] = None
        self.spin_thread: Optional[threading.Thread] = None
        self.subs: dict[str, Any] = {}
        self.publisher: Any = None
        self.first_pub: Optional[float] = None
        self.domain: Optional[int] = None
        self.env: dict[str, str] = {}
        self.node_prefix = self.input_topic = ""

    def run(self) -> LiveResult:
        self.plan_node()
        with discovery_environment(self.env):
            if not self.options.attach:
                self.start_node()
            try:
                self.wait_ready()
                self.join_graph()
                self.discover()
                self.warm_up()
                self.play()
                self.collect_stragglers()
            finally:
                self.shutdown()
        return self.result

    # -- the node ----------------------------------------------------------------------------
    def plan_node(self) -> None:
        """Domain, environment, names and topics: of the attached node, or the one to start."""
        options, compressed = self.options, self.sel.compressed
        if options.attach:
            fqn = "/" + options.attach.strip("/")
            namespace = fqn.rsplit("/", 1)[0]
            self.node_prefix = fqn
            self.input_topic = options.input_topic or f"{namespace}/image" + (
                "/compressed" if compressed else ""
            )
            self.domain = None
            self.result.domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
            self.env = ros_environment(self.result.domain_id)
        else:
            self.domain = _pick_domain(options.domain_id)
            self.result.domain_id = self.domain
            self.env = ros_environment(self.domain)
            self.namespace = f"/fed_bag_eval_{os.getpid()}"
            self.node_prefix = f"{self.namespace}/fed_node"
            self.input_topic = f"{self.namespace}/image" + ("/compressed" if compressed else "")
        self.pipeline_name = f"{self.node_prefix.strip('/')}: pipeline"

    def node_command(self) -> list[str]:
        options = self.options
        cmd = list(options.node_command or [sys.executable, "-m", "ros2_fed.node"])
        cmd += ["--ros-args", "-r", f"__ns:={self.namespace}", "-r", "__node:=fed_node"]
        if options.params_file:
            cmd += ["--params-file", str(options.params_file)]
        params = {
            **self.spec.node_params(),
            "input_transport": "compressed" if self.sel.compressed else "raw",
            **(RELIABLE_QOS if options.reliable else {}),
            "diagnostics.period": 0.5,
            **options.params,
        }
        for key, value in params.items():
            cmd += ["-p", f"{key}:={param_text(value)}"]
        return cmd

    def start_node(self) -> None:
        cmd = self.node_command()
        self.result.node_command = cmd
        options = self.options
        self.result.qos = node_qos(options.params_file, options.params, options.reliable)
        source = (
            "--reliable" if options.reliable else "the node's own; --reliable: reliable depth 10"
        )
        self.log(f"fed_node QoS: {qos_text(self.result.qos)} ({source})")
        self.log(f"starting fed_node (ROS_DOMAIN_ID={self.domain}): {' '.join(cmd)}")
        self.node = NodeProcess(cmd, self.env, self.options.log_path)

    def wait_ready(self) -> None:
        if self.node is None:
            return
        t_ready = time.monotonic()
        self.result.ready_line = self.node.wait_ready(self.options.ready_timeout_s)
        self.result.node_start_s = time.monotonic() - t_ready
        self.log(f"fed_node {self.result.ready_line.split('ready:', 1)[-1].strip()}")

    def check_node(self) -> None:
        """Raise the first recording error, or the node's death, as a LiveError."""
        if self.callback_errors:
            exc = self.callback_errors[0]
            raise LiveError(
                f"recording the node's outputs failed: {type(exc).__name__}: {exc}"
            ) from exc
        node = self.node
        if node is not None and not node.alive():
            raise LiveError(
                f"fed_node exited with code {node.proc.returncode} during the run:\n{node.tail()}"
            )

    # -- this process's graph ------------------------------------------------------------------
    def join_graph(self) -> None:
        """Context, node, raw subscriptions to the outputs, /diagnostics, the camera publisher,
        and the spin thread."""
        rclpy.init(context=self.context, domain_id=self.domain)
        ros_node = rclpy.create_node(f"fed_bag_eval_{os.getpid()}", context=self.context)
        self.ros_node = ros_node
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(ros_node)
        # the outputs as the node sends them: a reliable reader would not match a best-effort
        # writer (an attached node's QoS is not known: reliable, as before)
        best_effort = self.result.qos.get("output_qos.reliability") == "best_effort"
        outputs_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=100,
            reliability=ReliabilityPolicy.BEST_EFFORT
            if best_effort
            else ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
        for name in sorted(set(self.topics) | set(REQUIRED_OUTPUTS) | {"alerts"}):
            self.subs[name] = ros_node.create_subscription(
                MSG_CLASSES[OUTPUT_TYPES[name]],
                f"{self.node_prefix}/{name}",
                lambda raw, name=name: self.on_output(raw, name),
                outputs_qos,
                raw=True,
            )
        ros_node.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            self.on_diagnostics,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.publisher = ros_node.create_publisher(
            MSG_CLASSES[self.sel.image_type],
            self.input_topic,
            QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
            ),
        )
        self.spin_thread = threading.Thread(
            target=self.spin, name="fed_bag_eval_spin", daemon=True
        )
        self.spin_thread.start()

    def spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def on_output(self, raw: bytes, name: str) -> None:
        try:
            self.record_output(raw, name)
        except Exception as exc:  # surfaces after playback instead of dying in the executor
            self.callback_errors.append(exc)

    def record_output(self, raw: bytes, name: str) -> None:
        now = time.monotonic()
        stamp, frame_id = _stamp_of(raw)
        result = self.result
        if stamp in self.frame_log:
            with self.lock:
                got = result.outputs.setdefault(stamp, {})
                if name in got:
                    return
                got[name] = now
                pub = result.pub_times.get(stamp, now)
            if self.writer is not None and name in self.topics:
                delay_ns = int(max(0.0, now - pub) * self.options.rate * 1e9)
                self.writer.write(self.topics[name], self.frame_log[stamp] + delay_ns, raw)
            if name == "alerts":
                record = alert_from_message(bagio.deserialize(raw, bagio.DIAGNOSTIC_ARRAY))
                if record is not None:
                    with self.lock:
                        result.alerts[stamp] = record
        elif frame_id == WARMUP_FRAME_ID:
            with self.lock:
                self.warm_seen.setdefault(stamp, set()).add(name)

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self.pipeline_name:
                with self.lock:
                    self.result.node_pipeline = {kv.key: kv.value for kv in status.values}
                self.diag_event.set()

    # -- discovery + warm-up round trip --------------------------------------------------------
    def discover(self) -> None:
        """Until the node subscribes to the camera topic and publishes every recorded output."""
        timeout = self.options.answer_timeout_s
        deadline = time.monotonic() + timeout
        publisher, subs = self.publisher, self.subs
        while not (
            publisher.get_subscription_count() > 0
            and all(s.get_publisher_count() > 0 for s in subs.values())
        ):
            self.check_node()
            if time.monotonic() > deadline:
                missing = [
                    f"{self.node_prefix}/{n}"
                    for n, s in subs.items()
                    if s.get_publisher_count() == 0
                ]
                if publisher.get_subscription_count() == 0:
                    missing.insert(0, f"a subscriber on {self.input_topic}")
                raise LiveError(
                    f"no fed_node found within {timeout:.0f} s: missing {', '.join(missing)}"
                )
            time.sleep(0.05)

    @property
    def warmup_stamp(self) -> int:
        """Warm-up frames are stamped a second after the bag's last frame: the bag's first
        frame then steps back in time and the node starts its per-frame stages afresh, as the
        offline run does (the warm-up leaves no trace in the alert hysteresis)."""
        return max(ref.stamp_ns for ref in self.scan.frames) + 1_000_000_000

    def warm_up(self) -> None:
        """Send the warm-up frame until all its outputs come back; the node's counters then."""
        timeout = self.options.answer_timeout_s
        warm = bagio.deserialize(self.scan.first_raw, self.sel.image_type)
        wanted = set(self.subs)
        answered = False
        deadline = time.monotonic() + timeout
        while not answered:
            self.check_node()
            if time.monotonic() > deadline:
                raise LiveError(
                    f"fed_node did not answer a warm-up frame on {self.input_topic} "
                    f"within {timeout:.0f} s (outputs seen: {self.warm_seen})"
                )
            self.result.warmup_frames += 1
            stamp = self.warmup_stamp + self.result.warmup_frames
            warm.header.stamp.sec, warm.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            warm.header.frame_id = WARMUP_FRAME_ID
            self.publisher.publish(bagio.serialize(warm))
            until = time.monotonic() + 3.0
            while time.monotonic() < until:
                with self.lock:
                    answered = any(seen >= wanted for seen in self.warm_seen.values())
                if answered:
                    break
                time.sleep(0.01)
        self.diag_event.clear()
        self.diag_event.wait(timeout=2.0)
        with self.lock:
            self.result.node_pipeline_start = dict(self.result.node_pipeline)

    # -- play ------------------------------------------------------------------------------------
    def prefetch(self, frames: queue.Queue) -> None:
        """Reader thread: decoded frames, then None (or the exception, for the player)."""
        try:
            for frame in bagmod.iter_frames(self.scan):
                frames.put(frame)
            frames.put(None)
        except BaseException as exc:  # BagError etc.: hand it to the player
            frames.put(exc)

    def play(self) -> None:
        """Publish every camera message byte for byte at the recorded rate x ``--rate``."""
        from tqdm import tqdm

        result, rate = self.result, self.options.rate
        frames: queue.Queue = queue.Queue(maxsize=32)
        threading.Thread(
            target=self.prefetch, args=(frames,), name="fed_bag_eval_reader", daemon=True
        ).start()
        bar = tqdm(
            total=len(self.scan.frames),
            desc=f"playing x{rate:g}",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        log_start = self.scan.frames[0].log_ns
        t0 = time.monotonic() + 0.2
        last_pub = None
        try:
            while True:
                item = frames.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                due = t0 + (item.log_ns - log_start) / 1e9 / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                elif now - due > 0.01:
                    result.late_publishes += 1
                with self.lock:
                    result.pub_times[item.stamp_ns] = time.monotonic()
                self.publisher.publish(item.raw)
                last_pub = time.monotonic()
                self.first_pub = self.first_pub or last_pub
                result.published += 1
                if self.writer is not None and self.copy_inputs:
                    write_inputs(self.writer, self.sel, item)
                bar.update(1)
                if result.published % 10 == 0:
                    self.check_node()
        finally:
            bar.close()
        result.play_s = (last_pub or 0.0) - (self.first_pub or 0.0)

    # -- stragglers ----------------------------------------------------------------------------
    def outstanding(self) -> int:
        """Published frames still missing one of the recorded outputs."""
        wanted = set(self.subs)
        with self.lock:
            return sum(
                1
                for s in self.result.pub_times
                if not all(n in self.result.outputs.get(s, {}) for n in wanted)
            )

    def collect_stragglers(self) -> None:
        """Wait for outstanding outputs until nothing new arrived for ``settle_s``."""
        result, settle_s = self.result, self.options.settle_s
        last_count, quiet_since = -1, time.monotonic()
        hard_deadline = time.monotonic() + max(30.0, 10 * settle_s)
        while self.outstanding() and time.monotonic() < hard_deadline:
            self.check_node()
            with self.lock:
                count = sum(len(v) for v in result.outputs.values())
            if count != last_count:
                last_count, quiet_since = count, time.monotonic()
            elif time.monotonic() - quiet_since > settle_s:
                break
            time.sleep(0.02)
        with self.lock:
            received = [max(v.values()) for v in result.outputs.values() if v]
        result.span_s = (max(received) - self.first_pub) if received and self.first_pub else 0.0
        self.diag_event.clear()
        self.diag_event.wait(timeout=2.0)  # the node's counters after the last frame
        self.check_node()

    # -- shutdown ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=1.0)
        if self.ros_node is not None:
            self.ros_node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        if self.spin_thread is not None:
            self.spin_thread.join(timeout=5)
        if self.node is not None:
            self.result.node_exit_code = self.node.stop()
            self.log(f"fed_node stopped (exit code {self.result.node_exit_code})")


def run_live(
    scan: bagmod.ScanResult,
    spec: ModelSpec,
    writer: Optional[BagWriter],
    topics: dict[str, str],
    options: LiveOptions,
    log: Callable[[str], None] = print,
    progress: bool = False,
    copy_inputs: bool = True,
) -> LiveResult:
    """Play ``scan``'s frames through fed_node; outputs go to ``writer`` under ``topics``."""
    return LiveSession(
        scan, spec, writer, topics, options, log=log, progress=progress, copy_inputs=copy_inputs
    ).run()
