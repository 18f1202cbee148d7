"""What clip recording costs the frame path: fed_node's frame path (decode, engine, stages) per
frame with ``record.enabled`` on and off, in one run, in alternation (target: on <= 1.05 x off).

Each round runs the same synthroad drive (an unknown object from a third in, so alerts fire and
clips are cut and written while the frames go on) through one FrameProcessor per setting,
on the engine fed_node opens (the default model's cached ONNX engine at ``--size``), as the
node's worker runs it: every camera message observed for the clip buffer, then the batch. With
``min_interval`` 0 every rising alert starts a clip: the worst case for the writer thread,
which shares the CPU with the frame path. Also printed: the size of the 8-bit confidence maps
in the clips, per second of camera time.

    python benchmarks/recording.py                      # 512x1024, default model
    python benchmarks/recording.py --size 256x512 --rounds 2 --frames 30
    python benchmarks/recording.py --fake-delay-ms 50   # no model: a stand-in engine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.node_overhead import frames_for, parse_size  # noqa: E402

TARGET_RATIO = 1.05
S = 1_000_000_000


def open_engine(size: tuple[int, int], fake_delay_s: Optional[float]) -> Any:
    if fake_delay_s is not None:
        sys.path.insert(0, str(REPO / "tests"))
        from fake_engine import FakeEngine

        return FakeEngine(delay_s=fake_delay_s)
    from ros2_fed.pipeline.model_spec import ModelSpec
    from ros2_fed.pipeline.model_spec import open_engine as open_node_engine

    spec = ModelSpec.from_params({"model.height": size[0], "model.width": size[1]}).resolved()
    return open_node_engine(spec, progress=lambda msg: print(f"engine: {msg}", flush=True))


def messages(frames: list[Any]) -> list[tuple[Any, bytes]]:
    from ros2_fed.messages import image_message, serialize

    out = []
    for i, rgb in enumerate(frames):
        msg = image_message(rgb, "rgb8", 1_765_000_000 * S + i * S // 10, "camera")
        out.append((msg, serialize(msg)))
    return out


def run_drive(
    engine: Any, drive: list[tuple[Any, bytes]], params: dict[str, Any]
) -> list[tuple[float, float]]:
    """(wall s, this thread's CPU s) per frame of observe + run (the node worker's share of
    each frame). The CPU time leaves out the writer thread and whatever else the machine runs:
    it says what recording adds to the frame path's own work even on a loaded machine."""
    from ros2_fed.messages import stamp_ns
    from ros2_fed.pipeline.processor import FrameProcessor

    processor = FrameProcessor(engine, params)
    times = []
    for msg, raw in drive:
        t0, c0 = time.perf_counter(), time.thread_time()
        processor.observe(
            "/camera/image_raw", "sensor_msgs/msg/Image", raw, len(raw), stamp_ns(msg)
        )
        processor.run({"": msg})
        times.append((time.perf_counter() - t0, time.thread_time() - c0))
    processor.close()
    return times


def confidence_bytes_per_s(folder: Path) -> Optional[float]:
    """Bytes of the confidence maps in the clips per second of camera time (10 Hz)."""
    from mcap.reader import make_reader

    total, frames = 0, 0
    for clip in folder.glob("*.mcap"):
        with open(clip, "rb") as f:
            for _, channel, message in make_reader(f).iter_messages():
                if channel.topic.endswith("/confidence/compressed"):
                    total, frames = total + len(message.data), frames + 1
    return total / frames * 10 if frames else None


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=parse_size, default=(512, 1024))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fake-delay-ms", type=float, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    fake = None if args.fake_delay_ms is None else args.fake_delay_ms / 1000
    engine = open_engine(args.size, fake)
    drive = messages(frames_for(*args.size, args.frames))
    per: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="fed_recording_") as tmp:
        folder = Path(tmp)
        record = {"record.enabled": True, "record.dir": str(folder), "record.min_interval": 0.0}
        run_drive(engine, drive[:5], {})  # warm-up
        for r in range(args.rounds):
            for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
                per[name] += run_drive(engine, drive, record if name == "on" else {})
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        clips = len(list(folder.glob("*.mcap")))
        conf_rate = confidence_bytes_per_s(folder)
    engine.close()
    med = {k: statistics.median(w for w, _ in v) * 1000 for k, v in per.items()}
    cpu = {k: statistics.median(c for _, c in v) * 1000 for k, v in per.items()}
    ratio, cpu_ratio = med["on"] / med["off"], cpu["on"] / cpu["off"]
    result = {
        "size": f"{args.size[0]}x{args.size[1]}",
        "frames_per_setting": len(per["on"]),
        "median_ms": med,
        "median_thread_cpu_ms": cpu,
        "ratio_on_off": ratio,
        "cpu_ratio_on_off": cpu_ratio,
        "target_ratio": TARGET_RATIO,
        "clips_written": clips,
        "confidence_bytes_per_s": conf_rate,
        "engine": "fake" if fake is not None else "default model (ONNX Runtime)",
        "command": "python benchmarks/recording.py " + " ".join(argv or sys.argv[1:]),
    }
    print("| record | frame path ms (median, wall) | frame path thread CPU ms (median) |")
    print("|---|---|---|")
    for name in ("off", "on"):
        print(f"| {name} | {med[name]:.1f} | {cpu[name]:.1f} |")
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"ratio on / off {ratio:.3f} wall, {cpu_ratio:.3f} thread CPU (target <= "
        f"{TARGET_RATIO}: {verdict}); {clips} clips"
    )
    if conf_rate is not None:
        print(f"confidence maps in clips: {conf_rate / 1e6:.2f} MB per second of camera time")
    if args.json is not None:
        from ros2_fed.jsonio import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
