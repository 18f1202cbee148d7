"""``--live``: play the bag through a running fed_node over real ROS 2 topics and record its outputs.

The only replay module that imports rclpy. What happens:

1. a fed_node process is started (``python -m ros2_fed.node``, or ``--node-command``) in its
   own ROS_DOMAIN_ID with localhost-only discovery and the large-data Fast DDS profile, the
   model given as ``-p`` parameters, reliable input QoS; its log goes to ``OUT/node.log``.
   ``--attach NODE`` uses a node that is already running instead (current domain);
2. this process joins the same domain: a player publishes the camera messages **byte for
   byte** as stored (raw CDR, header stamps untouched) at the recorded rate x ``--rate``, and a
   recorder subscribes (raw) to the node's outputs and writes them straight into the output
   bag, matching every output to its input by header stamp;
3. before playing, a warm-up frame (stamp 0, frame_id ``fed_bag_eval/warmup``) is sent until
   its outputs come back, so discovery is complete both ways and no bag frame is lost to it
   (the warm-up frame is not recorded, but it does pass through the node's alert monitor);
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay.bagio import BagWriter
from ros2_fed.eval.replay.errors import LiveError
from ros2_fed.eval.replay.model import param_text
from ros2_fed.pipeline import ModelSpec
from ros2_fed.paths import fastdds_profile
from ros2_fed.eval.replay.offline import write_inputs
from ros2_fed.eval.replay.outputs import OUTPUT_TYPES, REQUIRED_OUTPUTS, AlertRecord, alert_from_message

WARMUP_FRAME_ID = "fed_bag_eval/warmup"
MSG_CLASSES = {bagio.IMAGE: Image, bagio.COMPRESSED_IMAGE: CompressedImage, bagio.DIAGNOSTIC_ARRAY: DiagnosticArray}


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


@dataclass
class LiveResult:
    domain_id: Optional[int] = None
    node_command: list[str] = field(default_factory=list)
    ready_line: str = ""
    published: int = 0
    pub_times: dict[int, float] = field(default_factory=dict)  # stamp -> monotonic publish time
    outputs: dict[int, dict[str, float]] = field(default_factory=dict)  # stamp -> {output: recv time}
    alerts: dict[int, AlertRecord] = field(default_factory=dict)
    node_pipeline: dict[str, str] = field(default_factory=dict)  # last /diagnostics pipeline values
    node_pipeline_start: dict[str, str] = field(default_factory=dict)  # ... before the bag was played
    node_exit_code: Optional[int] = None
    warmup_frames: int = 0
    play_s: float = 0.0  # first publish -> last publish
    span_s: float = 0.0  # first publish -> last output
    late_publishes: int = 0  # frames published more than 10 ms after their due time
    node_start_s: float = 0.0  # node process start -> "ready" (incl. an engine export on a cache miss)

    def latency_s(self, stamp: int, required: tuple[str, ...] = REQUIRED_OUTPUTS) -> Optional[float]:
        got = self.outputs.get(stamp, {})
        if not all(name in got for name in required) or stamp not in self.pub_times:
            return None
        return max(got[name] for name in required) - self.pub_times[stamp]


def _stamp_of(raw: bytes) -> tuple[int, str]:
    """(header stamp ns, frame_id) straight from CDR bytes (every recorded type starts with a Header)."""
    endian = "<" if raw[1] == 1 else ">"
    sec, nanosec, length = struct.unpack_from(endian + "iII", raw, 4)
    frame_id = raw[16:16 + max(0, length - 1)].decode("utf-8", "replace")
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
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1, start_new_session=True)
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
                raise LiveError(f"fed_node exited with code {self.proc.returncode} before it was ready:\n{self.tail()}")
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


def run_live(scan: bagmod.ScanResult, spec: ModelSpec, writer: Optional[BagWriter], topics: dict[str, str],
             options: LiveOptions, log: Callable[[str], None] = print, progress: bool = False,
             copy_inputs: bool = True) -> LiveResult:
    """Play ``scan``'s frames through fed_node; outputs go to ``writer`` under ``topics``."""
    from tqdm import tqdm

    if options.rate <= 0:
        raise ValueError("--rate must be > 0")
    result = LiveResult()
    sel = scan.selection
    frame_log = {ref.stamp_ns: ref.log_ns for ref in scan.frames}
    frame_stamps = set(frame_log)
    node: Optional[NodeProcess] = None

    # -- the node ----------------------------------------------------------------------
    if options.attach:
        fqn = "/" + options.attach.strip("/")
        namespace = fqn.rsplit("/", 1)[0]
        node_prefix = fqn
        input_topic = options.input_topic or f"{namespace}/image" + ("/compressed" if sel.compressed else "")
        domain = None
        result.domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
        env = ros_environment(result.domain_id)
    else:
        domain = _pick_domain(options.domain_id)
        result.domain_id = domain
        env = ros_environment(domain)
        namespace = f"/fed_bag_eval_{os.getpid()}"
        node_prefix = f"{namespace}/fed_node"
        input_topic = f"{namespace}/image" + ("/compressed" if sel.compressed else "")
        cmd = list(options.node_command or [sys.executable, "-m", "ros2_fed.node"])
        cmd += ["--ros-args", "-r", f"__ns:={namespace}", "-r", "__node:=fed_node"]
        if options.params_file:
            cmd += ["--params-file", str(options.params_file)]
        params = {**spec.node_params(),
                  "input_transport": "compressed" if sel.compressed else "raw",
                  "input_qos.reliability": "reliable", "input_qos.depth": 10,
                  "output_qos.reliability": "reliable", "output_qos.depth": 10,
                  "diagnostics.period": 0.5, **options.params}
        for key, value in params.items():
            cmd += ["-p", f"{key}:={param_text(value)}"]
        result.node_command = cmd
        log(f"starting fed_node (ROS_DOMAIN_ID={domain}): {' '.join(cmd)}")
        node = NodeProcess(cmd, env, options.log_path)
    pipeline_name = f"{node_prefix.strip('/')}: pipeline"

    # This process must discover like the node: same range and transport profile.
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        if key in env:
            os.environ[key] = env[key]
    if "FASTDDS_BUILTIN_TRANSPORTS" not in env:
        os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    os.environ.pop("ROS_LOCALHOST_ONLY", None)

    context = rclpy.Context()
    ros_node = executor = spin_thread = None
    try:
        if node is not None:
            t_ready = time.monotonic()
            result.ready_line = node.wait_ready(options.ready_timeout_s)
            result.node_start_s = time.monotonic() - t_ready
            log(f"fed_node {result.ready_line.split('ready:', 1)[-1].strip()[:200]}")
        rclpy.init(context=context, domain_id=domain)
        ros_node = rclpy.create_node(f"fed_bag_eval_{os.getpid()}", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(ros_node)
        lock = threading.Lock()
        warm_seen: dict[int, set[str]] = {}
        diag_event = threading.Event()

        callback_errors: list[BaseException] = []

        def on_output(raw: bytes, name: str) -> None:
            try:
                record_output(raw, name)
            except Exception as exc:  # surfaces after playback instead of dying in the executor
                callback_errors.append(exc)

        def record_output(raw: bytes, name: str) -> None:
            now = time.monotonic()
            stamp, frame_id = _stamp_of(raw)
            if stamp in frame_stamps:
                with lock:
                    got = result.outputs.setdefault(stamp, {})
                    if name in got:
                        return
                    got[name] = now
                    pub = result.pub_times.get(stamp, now)
                if writer is not None and name in topics:
                    writer.write(topics[name], frame_log[stamp] + int(max(0.0, now - pub) * options.rate * 1e9), raw)
                if name == "alerts":
                    record = alert_from_message(bagio.deserialize(raw, bagio.DIAGNOSTIC_ARRAY))
                    if record is not None:
                        with lock:
                            result.alerts[stamp] = record
            elif frame_id == WARMUP_FRAME_ID:
                with lock:
                    warm_seen.setdefault(stamp, set()).add(name)

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name == pipeline_name:
                    with lock:
                        result.node_pipeline = {kv.key: kv.value for kv in status.values}
                    diag_event.set()

        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)
        subs = {}
        for name in sorted(set(topics) | set(REQUIRED_OUTPUTS) | {"alerts"}):
            subs[name] = ros_node.create_subscription(MSG_CLASSES[OUTPUT_TYPES[name]], f"{node_prefix}/{name}",
                                                      lambda raw, name=name: on_output(raw, name), reliable, raw=True)
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics,
                                     QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        publisher = ros_node.create_publisher(MSG_CLASSES[sel.image_type], input_topic,
                                              QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                                         reliability=ReliabilityPolicy.RELIABLE))

        def spin() -> None:
            while context.ok():
                try:
                    executor.spin_once(timeout_sec=0.05)
                except Exception:
                    if not context.ok():
                        return
                    raise

        spin_thread = threading.Thread(target=spin, name="fed_bag_eval_spin", daemon=True)
        spin_thread.start()

        def check_node() -> None:
            if callback_errors:
                exc = callback_errors[0]
                raise LiveError(f"recording the node's outputs failed: {type(exc).__name__}: {exc}") from exc
            if node is not None and not node.alive():
                raise LiveError(f"fed_node exited with code {node.proc.returncode} during the run:\n{node.tail()}")

        # -- discovery + warm-up round trip ------------------------------------------------
        deadline = time.monotonic() + options.answer_timeout_s
        while not (publisher.get_subscription_count() > 0 and all(s.get_publisher_count() > 0 for s in subs.values())):
            check_node()
            if time.monotonic() > deadline:
                missing = [f"{node_prefix}/{n}" for n, s in subs.items() if s.get_publisher_count() == 0]
                if publisher.get_subscription_count() == 0:
                    missing.insert(0, f"a subscriber on {input_topic}")
                raise LiveError(f"no fed_node found within {options.answer_timeout_s:.0f} s: missing {', '.join(missing)}")
            time.sleep(0.05)
        warm = bagio.deserialize(scan.first_raw, sel.image_type)
        wanted = set(subs)
        answered = False
        deadline = time.monotonic() + options.answer_timeout_s
        while not answered:
            check_node()
            if time.monotonic() > deadline:
                raise LiveError(f"fed_node did not answer a warm-up frame on {input_topic} within "
                                f"{options.answer_timeout_s:.0f} s (outputs seen: {warm_seen})")
            result.warmup_frames += 1
            warm.header.stamp.sec, warm.header.stamp.nanosec = 0, result.warmup_frames
            warm.header.frame_id = WARMUP_FRAME_ID
            publisher.publish(bagio.serialize(warm))
            until = time.monotonic() + 3.0
            while time.monotonic() < until:
                with lock:
                    answered = any(seen >= wanted for seen in warm_seen.values())
                if answered:
                    break
                time.sleep(0.01)
        diag_event.clear()
        diag_event.wait(timeout=2.0)
        with lock:
            result.node_pipeline_start = dict(result.node_pipeline)

        # -- play ----------------------------------------------------------------------------
        frames: queue.Queue = queue.Queue(maxsize=32)

        def prefetch() -> None:
            try:
                for frame in bagmod.iter_frames(scan):
                    frames.put(frame)
                frames.put(None)
            except BaseException as exc:  # BagError etc.: hand it to the player
                frames.put(exc)

        threading.Thread(target=prefetch, name="fed_bag_eval_reader", daemon=True).start()
        bar = tqdm(total=len(scan.frames), desc=f"playing x{options.rate:g}", disable=not progress, dynamic_ncols=True)
        log_start = scan.frames[0].log_ns
        t0 = time.monotonic() + 0.2
        first_pub = last_pub = None
        try:
            while True:
                item = frames.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                due = t0 + (item.log_ns - log_start) / 1e9 / options.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                elif now - due > 0.01:
                    result.late_publishes += 1
                with lock:
                    result.pub_times[item.stamp_ns] = time.monotonic()
                publisher.publish(item.raw)
                last_pub = time.monotonic()
                first_pub = first_pub or last_pub
                result.published += 1
                if writer is not None and copy_inputs:
                    write_inputs(writer, sel, item)
                bar.update(1)
                if result.published % 10 == 0:
                    check_node()
        finally:
            bar.close()
        result.play_s = (last_pub or 0.0) - (first_pub or 0.0)

        # -- stragglers ------------------------------------------------------------------------
        def outstanding() -> int:
            with lock:
                return sum(1 for s in result.pub_times if not all(n in result.outputs.get(s, {}) for n in wanted))

        last_count, quiet_since = -1, time.monotonic()
        hard_deadline = time.monotonic() + max(30.0, 10 * options.settle_s)
        while outstanding() and time.monotonic() < hard_deadline:
            check_node()
            with lock:
                count = sum(len(v) for v in result.outputs.values())
            if count != last_count:
                last_count, quiet_since = count, time.monotonic()
            elif time.monotonic() - quiet_since > options.settle_s:
                break
            time.sleep(0.02)
        with lock:
            received = [max(v.values()) for v in result.outputs.values() if v]
        result.span_s = (max(received) - first_pub) if received and first_pub else 0.0
        diag_event.clear()
        diag_event.wait(timeout=2.0)  # the node's counters after the last frame
        check_node()
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if ros_node is not None:
            ros_node.destroy_node()
        rclpy.try_shutdown(context=context)
        if spin_thread is not None:
            spin_thread.join(timeout=5)
        if node is not None:
            result.node_exit_code = node.stop()
            log(f"fed_node stopped (exit code {result.node_exit_code})")
    return result
