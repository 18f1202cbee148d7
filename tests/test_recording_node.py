"""Clip recording between real processes (``ros`` marker): fed_node (FakeEngine, confidence =
G / 255) with ``record.*`` on, the pytest process as camera and consumer.

Checked: an alert drive gives one clip from ``record.before`` before the trigger to
``record.after`` after it, with every camera message as sent; frames without an alert give no
clip; ``~/save_clip`` (std_srvs/Trigger) gives a manual clip; /diagnostics shows the recorder;
the disk budget deletes the oldest clip; a ``kill -9`` at any moment leaves no file named
``*.mcap`` that is not a complete clip; the offline replay of the same frames cuts the same
clips as the node.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

pytest.importorskip("rclpy")

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from test_node_ros import (
    ALERTS,
    HARNESS,
    RUN,
    Client,
    NodeProcess,
    client,
    env,
    image_msg,
    wait_until,
)

pytestmark = pytest.mark.ros
__all__ = ["client", "env"]  # fixtures used here by name

S = 1_000_000_000
T0 = 1_765_000_000 * S  # the drive's first stamp; 10 Hz
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
RECORD = {"record.enabled": True, "record.before": 0.5, "record.after": 0.3}
COMMON = {
    **ALERTS,
    "diagnostics.period": 0.2,
    "diagnostics.input_timeout": 0.0,
    "diagnostics.error_log_throttle": 60.0,
    "input_qos.reliability": "reliable",  # lock step without loss: every frame is recorded
    "input_qos.depth": 10,
    "record.min_interval": 0.0,
    "record.scene": False,  # the scripted frames are uniform: the scene status calls them faults
}


RNG = np.random.default_rng(7)


def stamp(i: int) -> int:
    return T0 + i * S // 10


def frame(uncertain: float, shape: tuple[int, int] = (40, 50), noise: bool = False) -> np.ndarray:
    """Rows [0, k) uncertain (G = 0), the rest certain; ``noise``: R and B random (a clip that
    compresses badly), confidence unchanged."""
    out = np.zeros(shape + (3,), np.uint8)
    if noise:  # new noise every frame: nothing for the clip's compression to share
        out[..., 0::2] = RNG.integers(0, 256, shape + (2,), dtype=np.uint8)
    out[..., 1] = 255
    out[: int(round(uncertain * shape[0])), :, 1] = 0
    return out


class Drive:
    """Sends frames with scripted stamps in lock step: each frame's ~/alerts before the next."""

    def __init__(self, client: Client, proc: NodeProcess) -> None:
        self.client, self.proc = client, proc
        ns = proc.namespace
        self.alerts = f"{ns}/fed_node/alerts"
        from diagnostic_msgs.msg import DiagnosticArray

        sub = client.subscribe(self.alerts, DiagnosticArray)
        self.pub = client.publisher(f"{ns}/image", Image, RELIABLE)
        wait_until(lambda: sub.get_publisher_count() > 0, 30, "~/alerts publisher")
        wait_until(lambda: self.pub.get_subscription_count() > 0, 30, "fed_node subscribing")
        self.levels: dict[int, int] = {}

    def send(self, i: int, image: np.ndarray) -> int:
        msg = image_msg(image, "rgb8")
        t = stamp(i)
        msg.header.stamp.sec, msg.header.stamp.nanosec = t // S, t % S
        msg.header.frame_id = f"rec{i}"
        self.pub.publish(msg)

        def level() -> Optional[int]:
            for _, out in self.client.messages(self.alerts):
                if out.header.frame_id == msg.header.frame_id:
                    return int(out.status[0].level[0])
            return None

        got = wait_until(lambda: level() is not None, 15, f"~/alerts of frame {i}")
        self.levels[i] = level()
        return got


def read_clip(path: Path) -> tuple[dict[str, str], list[tuple[str, int, Any]]]:
    """Metadata and (topic, log time, message) of a clip, read to the end (a truncated or
    damaged file raises)."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_summary() is not None, f"{path.name}: no summary (not finished)"
        meta = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        f.seek(0)
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        messages = [(c.topic, m.log_time, d) for _, c, m, d in reader.iter_decoded_messages()]
    return meta["ros2_fed.clip"], messages


def clips(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.mcap"))


def start(env: dict[str, str], name: str, folder: Path, **params: Any) -> NodeProcess:
    harness = [sys.executable, str(HARNESS)]
    settings = {**COMMON, **RECORD, "record.dir": str(folder), **params}
    proc = NodeProcess(env, f"/{RUN}_{name}", params=settings, node=harness)
    proc.wait_ready()
    return proc


@pytest.fixture(scope="module")
def recorded(env: dict[str, str], client: Client, tmp_path_factory: pytest.TempPathFactory):
    """One node, one drive: clean frames, an object (frames 10-15), clean again, then the
    button; returns the folder, the node's levels and its log."""
    folder = tmp_path_factory.mktemp("clips")
    proc = start(env, "rec", folder)
    try:
        drive = Drive(client, proc)
        script = [0.0] * 10 + [0.6] * 6 + [0.0] * 14
        for i, uncertain in enumerate(script):
            drive.send(i, frame(uncertain))
        wait_until(lambda: len(clips(folder)) == 1, 20, "the alert clip")
        service = client.node.create_client(Trigger, f"{proc.namespace}/fed_node/save_clip")
        assert service.wait_for_service(timeout_sec=20)
        future = service.call_async(Trigger.Request())
        answer = wait_until(lambda: future.result(), 20, "~/save_clip's answer")
        for i in range(len(script), len(script) + 6):
            drive.send(i, frame(0.0))
        wait_until(lambda: len(clips(folder)) == 2, 20, "the manual clip")
        from test_node_ros import diag_values

        def recorder_status() -> Optional[dict[str, str]]:
            for _, arr in reversed(client.messages("/diagnostics")):
                for s in arr.status:
                    if s.name == f"{proc.namespace.lstrip('/')}/fed_node: record":
                        return diag_values(s)
            return None

        status = wait_until(
            lambda: (v := recorder_status()) and v.get("clips_written") == "2" and v, 10, "status"
        )
    finally:
        code = proc.stop()
    assert code == 0, proc.output[-3000:]
    return folder, drive.levels, answer, status, len(script)


def test_an_alert_gives_one_clip_from_before_to_after_the_trigger(recorded) -> None:
    folder, levels, _, _, _ = recorded
    first_warn = min(i for i, level in levels.items() if level >= 1)
    assert 10 <= first_warn <= 12  # raise_frames 2 after the object appears at frame 10
    alert_clip = next(p for p in clips(folder) if "_alert" in p.name)
    meta, messages = read_clip(alert_clip)
    trigger = stamp(first_warn)
    assert meta["reason"] == "alert" and meta["level"] in ("WARN", "ERROR")
    assert int(meta["trigger_stamp_ns"]) == trigger
    assert (int(meta["start_ns"]), int(meta["end_ns"])) == (
        trigger - S // 2,
        trigger + 3 * S // 10,
    )
    camera = [(log, d) for topic, log, d in messages if topic.endswith("/image")]
    assert [log for log, _ in camera] == [stamp(first_warn + k) for k in range(-5, 4)]
    sent = frame(0.6)
    got = np.frombuffer(bytes(camera[5][1].data), np.uint8).reshape(sent.shape)
    assert np.array_equal(got, sent)  # the message exactly as sent
    assert meta["region_bbox"] != "" and float(meta["region_size"]) > 0.3
    statuses = [d for topic, _, d in messages if topic.endswith("/fed_node/alerts")]
    assert len(statuses) == 9 and statuses[5].status[0].level == levels[first_warn]
    index = [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]
    assert sorted(i["file"] for i in index) == [p.name for p in clips(folder)]


def test_clean_frames_give_no_clip_and_the_button_gives_one(recorded) -> None:
    folder, levels, answer, status, n_script = recorded
    assert answer.success, answer.message
    reasons = sorted(read_clip(p)[0]["reason"] for p in clips(folder))
    assert reasons == ["alert", "manual"]  # 14 clean frames after the object: nothing more
    manual = next(p for p in clips(folder) if "_manual" in p.name)
    meta, messages = read_clip(manual)
    newest = stamp(n_script - 1)  # the newest frame when the button was pressed
    assert int(meta["trigger_stamp_ns"]) == newest
    cams = [log for topic, log, _ in messages if topic.endswith("/image")]
    assert cams == [newest + k * S // 10 for k in range(-5, 4)]
    assert status["recording"] == "on" and int(status["bytes_used"]) == sum(
        p.stat().st_size for p in clips(folder)
    )


def test_the_disk_budget_deletes_the_oldest_clip(
    env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    proc = start(env, "budget", tmp_path, **{"record.max_total_mb": 2.0})
    try:
        drive, i = Drive(client, proc), 0
        shape = (240, 320)  # about 1.4 MB a clip of noise: two do not fit in 2 MiB
        for _ in range(3):
            for uncertain in [0.0] * 6 + [0.6] * 4 + [0.0] * 10:
                drive.send(i, frame(uncertain, shape, noise=True))
                i += 1
        wait_until(lambda: proc.count("deleted the oldest clip") >= 2, 20, "budget log lines")
    finally:
        assert proc.stop() == 0, proc.output[-3000:]
    (kept,) = clips(tmp_path)
    assert int(read_clip(kept)[0]["trigger_stamp_ns"]) > stamp(40)  # the third drive's
    assert proc.count("record: wrote") == 3


def test_kill_9_never_leaves_a_broken_mcap(
    env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    """Kill the node right after the frame that closes a large clip (the writer is then
    writing it) and once with a clip open; every *.mcap left must read to its end."""
    shape = (240, 320)
    for attempt, tail in enumerate((4, 1)):
        proc = start(env, f"kill{attempt}", tmp_path, **{"record.before": 2.0})
        drive = Drive(client, proc)
        base = attempt * 100
        for k, uncertain in enumerate([0.0] * 20 + [0.6] * 4 + [0.0] * tail):
            drive.send(base + k, frame(uncertain, shape, noise=True))
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(timeout=10)
    for path in clips(tmp_path):
        read_clip(path)  # complete, or it would raise
    leftovers = list(tmp_path.glob(".*.mcap.part"))
    proc = start(env, "after", tmp_path)
    assert proc.stop() == 0
    assert not list(tmp_path.glob(".*.mcap.part"))
    assert proc.count("removed an unfinished clip") == len(leftovers)


def test_the_replay_cuts_the_clips_the_node_cut(recorded, tmp_path: Path) -> None:
    """The same frames and stamps through fed_bag_eval's offline frame path (FakeEngine): the
    same windows, triggers and camera stamps."""
    from fake_engine import FakeEngine
    from ros2_fed.eval.replay import bag as bagmod
    from ros2_fed.eval.replay import bagio
    from ros2_fed.eval.replay.offline import CameraStream, run_offline
    from ros2_fed.pipeline.model_spec import ModelSpec
    from ros2_fed.pipeline.params import with_defaults

    folder, levels, _, _, n_script = recorded
    script = [0.0] * 10 + [0.6] * 6 + [0.0] * 14 + [0.0] * 6
    path = tmp_path / "drive"
    with bagio.BagWriter(path, "mcap") as writer:
        writer.add_topic("/camera/image", bagio.IMAGE)
        for i, uncertain in enumerate(script):
            msg = bagio.image_message(frame(uncertain), "rgb8", stamp(i), f"rec{i}")
            writer.write("/camera/image", stamp(i), msg)
    out = tmp_path / "clips"
    params = with_defaults(
        {**COMMON, **RECORD, "record.dir": str(out), "input_qos.reliability": "best_effort"}
    )
    stream = CameraStream("", bagmod.scan(path, image="/camera/image", ground_truth=False))
    list(
        run_offline([stream], ModelSpec(), params, 0, lambda m: None, lambda *a, **k: FakeEngine())
    )

    def windows(folder: Path) -> list[tuple]:
        out = []
        for p in clips(folder):
            meta, messages = read_clip(p)
            if meta["reason"] == "manual":
                continue  # nobody pressed the button in the replay
            cams = [log for topic, log, _ in messages if topic.endswith("/image")]
            out.append((meta["trigger_stamp_ns"], meta["start_ns"], meta["end_ns"], cams))
        return out

    assert windows(out) == windows(folder) and len(windows(out)) == 1
