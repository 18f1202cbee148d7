"""Surround cameras: one batched fed_node against one fed_node per camera, on the same machine.

Targets on the 2-core machine: with 4 cameras sending faster than the machine can
serve, the batched node's aggregate output frames/s >= 1.3x that of 4 single-camera nodes,
and its total memory <= 0.5x theirs.

Per image size, in one run: the engines are built once into the engine cache (batch 4 for the
batched node, batch 1 for the others) and their files handed to the nodes. This process is the
four cameras (synthroad frames, each camera another part of the drive, published serialized
like a C++ driver at ``--rates`` Hz per camera) and the downstream consumer (segmentation,
confidence and alerts of every camera, taken serialized). After a warm-up it counts, over a
``--seconds`` window: output frames per second (all cameras together), per-camera latency from
publish to the segmentation arriving (p50 / p95), and the node processes' memory: RSS summed
(what ``ps`` shows; shared library pages are counted once per process) and PSS summed (shared
pages split between the processes that map them). Configurations alternate per repeat so load
from anything else on the machine hits both alike.

    python benchmarks/multicamera.py                                  # 256x512 and 512x1024
    python benchmarks/multicamera.py --sizes 256x512 --seconds 10 --repeats 1
    python benchmarks/multicamera.py --sizes 384x768 --rates 10      # any size: give its rate

GPU expectation: on a GPU the single-camera nodes would time-share one device through four
contexts and four copies of the engine; one batch-4 engine keeps one context and fills the GPU
better, so the throughput gain should be larger than on 2 CPU cores (benchmarks/gpu_check.py
times batch 1 against batch 4 on the GPU).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from node_overhead import cdr_frame_id, frames_for, parse_size, ros_env  # noqa: E402
from ros2_fed.pipeline.model_spec import DEFAULT_FED  # noqa: E402
from ros2_fed.pipeline.outputs import OUTPUT_BY_NAME  # noqa: E402

CAMERAS = 4
OUTPUTS = ("segmentation", "confidence", "alerts")  # what a planner downstream takes
TARGET_THROUGHPUT = 1.3
TARGET_MEMORY = 0.5
FRAME_ID_WIDTH = 12  # fixed-width frame ids, so a serialized frame is patched in place
# Frames/s per camera at the default sizes: with 4 cameras, above what 2 CPU cores serve.
DEFAULT_RATES = {(256, 512): 15.0, (512, 1024): 6.0}


@dataclass
class Config:
    """One way of serving the cameras: the node processes and each camera's topics."""

    name: str
    commands: list[list[str]]
    input_topics: list[str]  # per camera
    output_prefixes: list[str]  # per camera: <prefix>/<output>
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[list[str]] = field(default_factory=list)


def build_engine(args: argparse.Namespace, height: int, width: int, batch: int) -> Path:
    """The cached engine file for this size and batch (built once, as fed_node would)."""
    from ros2_fed.engine import open_cached

    engine = open_cached(
        args.backbone,
        args.fed,
        height=height,
        width=width,
        batch=batch,
        warmup=0,
        progress=lambda m: print(f"  {m}", flush=True),
    )
    path = engine.path
    engine.close()
    return Path(path)


def node_command(namespace: str, engine: Path, cameras: Optional[list[str]] = None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "ros2_fed.node",
        "--ros-args",
        "-r",
        f"__ns:={namespace}",
        "-p",
        f"engine_path:={engine}",
        "-p",
        "warmup_runs:=2",
        "-p",
        "diagnostics.period:=1.0",
        "-p",
        "diagnostics.input_timeout:=0.0",
    ]
    if cameras:
        cmd += ["-p", f"cameras:=[{', '.join(cameras)}]"]
    return cmd


def configs(run: str, single: Path, batched: Path) -> list[Config]:
    names = [f"cam{i}" for i in range(CAMERAS)]
    separate = Config(
        "4 single-camera nodes",
        [node_command(f"/{run}s{i}", single) for i in range(CAMERAS)],
        [f"/{run}s{i}/image" for i in range(CAMERAS)],
        [f"/{run}s{i}/fed_node" for i in range(CAMERAS)],
    )
    one = Config(
        "1 batched node (batch 4)",
        [node_command(f"/{run}b", batched, names)],
        [f"/{run}b/{n}/image" for n in names],
        [f"/{run}b/fed_node/{n}" for n in names],
    )
    return [separate, one]


class Cameras:
    """The four cameras and the consumer, in this process (spun in a thread)."""

    def __init__(self, config: Config, frames: list[list[np.ndarray]]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"multicamera_bench_{os.getpid()}", context=self.context)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, float] = {}  # frame id -> segmentation arrival
        self.pubs = [
            self.node.create_publisher(Image, t, qos_profile_sensor_data)
            for t in config.input_topics
        ]
        self.subs = []
        for prefix in config.output_prefixes:
            for name in OUTPUTS:
                if not OUTPUT_BY_NAME[name].is_image:
                    self.subs.append(
                        self.node.create_subscription(
                            DiagnosticArray, f"{prefix}/{name}", lambda m: None, reliable
                        )
                    )
                else:
                    callback = (
                        self._on_segmentation if name == "segmentation" else (lambda raw: None)
                    )
                    self.subs.append(
                        self.node.create_subscription(
                            Image, f"{prefix}/{name}", callback, reliable, raw=True
                        )
                    )
        self.templates = [[self._serialized(f) for f in cam_frames] for cam_frames in frames]
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _serialized(self, frame: np.ndarray) -> bytearray:
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import Image

        msg = Image(
            height=frame.shape[0], width=frame.shape[1], encoding="rgb8", step=frame.shape[1] * 3
        )
        msg.header.frame_id = "x" * FRAME_ID_WIDTH
        msg.data.frombytes(frame.reshape(-1))
        return bytearray(serialize_message(msg))

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def _on_segmentation(self, raw: bytes) -> None:
        now = time.perf_counter()
        with self.lock:
            self.arrived[cdr_frame_id(raw)] = now

    def matched(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.pubs) and all(
            s.get_publisher_count() > 0 for s in self.subs
        )

    def publish(self, camera: int, index: int) -> None:
        """Camera ``camera`` sends its frame ``index`` now (stamp and frame id patched in
        place)."""
        data = self.templates[camera][index % len(self.templates[camera])]
        frame_id = f"c{camera}_{index:0{FRAME_ID_WIDTH - 3}d}"
        now = time.time_ns()
        order = "little" if data[1] & 1 else "big"
        data[4:8] = (now // 1_000_000_000).to_bytes(4, order, signed=True)
        data[8:12] = (now % 1_000_000_000).to_bytes(4, order)
        data[16 : 16 + FRAME_ID_WIDTH] = frame_id.encode()
        with self.lock:
            self.sent[frame_id] = time.perf_counter()
        self.pubs[camera].publish(bytes(data))

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def memory_mib(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) summed over the processes, MiB."""
    rss = pss = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss"):
                    kib = float(value.split()[0])
                    rss, pss = (rss + kib, pss) if key == "Rss" else (rss, pss + kib)
        except OSError:
            pass
    return rss / 1024, pss / 1024


def start(config: Config, env: dict[str, str]) -> None:
    for cmd in config.commands:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        threading.Thread(
            target=lambda p=proc, out=lines: [out.append(x) for x in p.stdout], daemon=True
        ).start()
        config.procs.append(proc)
        config.logs.append(lines)
    deadline = time.monotonic() + 300
    while not all(any("ready:" in x for x in log) for log in config.logs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in config.procs):
            raise SystemExit(
                f"{config.name}: a node did not start:\n"
                + "\n".join("".join(log) for log in config.logs)
            )
        time.sleep(0.1)


def stop(config: Config) -> None:
    for proc in config.procs:
        proc.send_signal(signal.SIGINT)
    for proc in config.procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    config.procs.clear()
    config.logs.clear()


def measure(
    config: Config,
    env: dict[str, str],
    frames: list[list[np.ndarray]],
    rate: float,
    warmup_s: float,
    seconds: float,
) -> dict[str, Any]:
    """Run the cameras at ``rate`` Hz each against ``config``; its throughput, latency and
    memory."""
    start(config, env)
    cams = Cameras(config, frames)
    try:
        deadline = time.monotonic() + 60
        while not cams.matched():
            if time.monotonic() > deadline:
                raise SystemExit(f"{config.name}: topics did not match")
            time.sleep(0.05)
        period, index = 1.0 / rate, 0
        t_begin = time.perf_counter()
        window: Optional[tuple[float, float]] = None
        memory: list[tuple[float, float]] = []
        while True:
            now = time.perf_counter()
            if window is None and now - t_begin >= warmup_s:
                window = (now, now + seconds)
            if window is not None and now >= window[1]:
                break
            for camera in range(CAMERAS):
                cams.publish(camera, index)
            index += 1
            if index % max(1, int(rate)) == 0 and window is not None:
                memory.append(memory_mib([p.pid for p in config.procs]))
            time.sleep(max(0.0, t_begin + index * period - time.perf_counter()))
        time.sleep(
            1.0
        )  # frames in flight at the end of the window still count (they were sent in it)
        with cams.lock:
            sent, arrived = dict(cams.sent), dict(cams.arrived)
    finally:
        cams.close()
        stop(config)
    assert window is not None
    in_window = {fid: t for fid, t in sent.items() if window[0] <= t < window[1]}
    latency: dict[int, list[float]] = {c: [] for c in range(CAMERAS)}
    for fid, t_sent in in_window.items():
        if fid in arrived:
            latency[int(fid[1 : fid.index("_")])].append(arrived[fid] - t_sent)
    outputs = sum(len(v) for v in latency.values())
    rss, pss = (
        (max(m[0] for m in memory), max(m[1] for m in memory)) if memory else (float("nan"),) * 2
    )
    return {
        "fps": outputs / seconds,
        "offered": len(in_window) / seconds,
        "rss": rss,
        "pss": pss,
        "latency": {
            c: (float(np.percentile(v, 50)) * 1e3, float(np.percentile(v, 95)) * 1e3)
            if v
            else (float("nan"), float("nan"))
            for c, v in latency.items()
        },
        "per_camera_fps": [len(latency[c]) / seconds for c in range(CAMERAS)],
    }


def partial_batch_cost(
    single: Path, batched: Path, height: int, width: int
) -> tuple[float, float, float]:
    """ms for 1 frame on the batch-1 engine, 1 frame on the dynamic batch-4 engine, and a full
    (= padded) batch of 4: what a batch with one new frame costs run small versus padded."""
    from ros2_fed.engine import Engine

    frame = np.full((height, width, 3), 120, np.uint8)
    times = []
    for path, n in ((single, 1), (batched, 1), (batched, CAMERAS)):
        engine = Engine.open(path, warmup=2)
        batch = np.stack([frame] * n)
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            engine.infer(batch)
            runs.append(time.perf_counter() - t0)
        engine.close()
        times.append(float(np.median(runs)) * 1e3)
    return times[0], times[1], times[2]


def parse_plan(
    argv: Optional[list[str]] = None,
) -> tuple[argparse.Namespace, list[tuple[int, int]], list[float]]:
    """The command line: its arguments, the camera sizes and one camera rate per size."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="256x512,512x1024", help="comma-separated HxW camera sizes"
    )
    parser.add_argument(
        "--rates",
        default=None,
        help="frames/s per camera: one rate for every size, or one per size (default: "
        + ", ".join(f"{h}x{w}: {r:g}" for (h, w), r in DEFAULT_RATES.items())
        + "; 4 cameras above what 2 cores serve)",
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measured window per configuration"
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of traffic before the window"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternating runs of both configurations"
    )
    parser.add_argument(
        "--backbone",
        default=str(REPO / "models" / "tinyseg_synthroad"),
        help="backbone checkpoint (default: the embedded default model)",
    )
    parser.add_argument("--fed", default=str(REPO / "models" / DEFAULT_FED), help="FED checkpoint")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    try:
        rates = camera_rates(sizes, args.rates)
    except ValueError as exc:
        parser.error(str(exc))
    return args, sizes, rates


def camera_rates(sizes: list[tuple[int, int]], rates: Optional[str]) -> list[float]:
    """One rate per size: ``--rates`` once for all sizes or once per size; without it, each
    default size's own rate (so ``--sizes 256x512`` alone works)."""
    if rates is None:
        unknown = [f"{h}x{w}" for h, w in sizes if (h, w) not in DEFAULT_RATES]
        if unknown:
            raise ValueError(f"--rates: no default rate for {', '.join(unknown)}; give one")
        return [DEFAULT_RATES[size] for size in sizes]
    values = [float(r) for r in rates.split(",")]
    if len(values) == 1:
        return values * len(sizes)
    if len(values) != len(sizes):
        raise ValueError(f"--rates: one rate, or one per size ({len(sizes)}), not {len(values)}")
    return values


def main(argv: Optional[list[str]] = None) -> int:
    args, sizes, rates = parse_plan(argv)
    env = ros_env()
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        os.environ[key] = env[key]
    os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    rows = []
    for (height, width), rate in zip(sizes, rates):
        print(f"== {height}x{width}, {CAMERAS} cameras at {rate:g} Hz each", flush=True)
        single, batched = (
            build_engine(args, height, width, 1),
            build_engine(args, height, width, CAMERAS),
        )
        drive = frames_for(height, width, 8 * CAMERAS)
        frames = [drive[i::CAMERAS] for i in range(CAMERAS)]
        results: dict[str, list[dict[str, Any]]] = {}
        for repeat in range(args.repeats):
            for config in configs(f"mc{os.getpid()}r{repeat}", single, batched):
                print(f"  {config.name} ...", flush=True)
                results.setdefault(config.name, []).append(
                    measure(config, env, frames, rate, args.warmup, args.seconds)
                )
        rows.append(
            ((height, width), rate, results, partial_batch_cost(single, batched, height, width))
        )
    report(rows)
    return 0


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def report(
    rows: list[
        tuple[tuple[int, int], float, dict[str, list[dict[str, Any]]], tuple[float, float, float]]
    ],
) -> None:
    print(
        f"\n{CAMERAS} cameras, default model (ONNX Runtime, node defaults), outputs taken: "
        f"{', '.join(OUTPUTS)}\n"
    )
    print(
        "| size | configuration | offered frames/s | output frames/s | per camera p50 / p95 "
        "latency (ms) "
        "| total RSS (MiB) | total PSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    verdicts = []
    for (h, w), rate, results, partial in rows:
        medians = {}
        for name, runs in results.items():
            fps, rss, pss = _median(runs, "fps"), _median(runs, "rss"), _median(runs, "pss")
            medians[name] = (fps, rss, pss)
            last = runs[-1]["latency"]
            lat = ", ".join(f"{last[c][0]:.0f}/{last[c][1]:.0f}" for c in range(CAMERAS))
            print(
                f"| {h}x{w} | {name} | {_median(runs, 'offered'):.1f} | {fps:.1f} | {lat} | "
                f"{rss:.0f} | {pss:.0f} |"
            )
        (sep_fps, sep_rss, sep_pss), (one_fps, one_rss, one_pss) = medians.values()
        throughput, rss_ratio, pss_ratio = one_fps / sep_fps, one_rss / sep_rss, one_pss / sep_pss
        verdicts.append(
            f"{h}x{w}: throughput {throughput:.2f}x (target >= {TARGET_THROUGHPUT}x: "
            f"{'met' if throughput >= TARGET_THROUGHPUT else 'NOT met'}), RSS {rss_ratio:.2f}x / "
            f"PSS {pss_ratio:.2f}x "
            f"(target <= {TARGET_MEMORY}x: {'met' if rss_ratio <= TARGET_MEMORY else 'NOT met'}); "
            "one new frame on "
            f"the batch-4 engine: {partial[1]:.1f} ms run alone (batch-1 engine {partial[0]:.1f} "
            "ms) vs "
            f"{partial[2]:.1f} ms padded to 4"
        )
    print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    sys.exit(main())
