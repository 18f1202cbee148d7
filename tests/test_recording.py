"""Clip recording's core (no ROS): windows, merging, rate limit, memory bound, atomic MCAP
files an independent reader opens, the metadata record, the index and the disk budget."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from ros2_fed.health import Status
from ros2_fed.messages import image_message, serialize
from ros2_fed.recording.buffer import ENTRY_OVERHEAD, Entry, RollingBuffer
from ros2_fed.recording.config import RecordConfig
from ros2_fed.recording.planner import ClipPlanner, Trigger
from ros2_fed.recording.stage import RecordStage, confidence_u8, msgdef
from ros2_fed.recording.writer import INDEX_NAME, METADATA_NAME, ClipWriter

S = 1_000_000_000  # ns per second
CAMERA_TOPIC = "/camera/image_raw"
IMAGE = "sensor_msgs/msg/Image"


def entry(t_ns: int, nbytes: int = 10, topic: str = CAMERA_TOPIC) -> Entry:
    return Entry(topic, IMAGE, t_ns, b"x" * nbytes, nbytes)


# -- buffer ------------------------------------------------------------------------------


def test_buffer_keeps_its_window_by_stamp() -> None:
    buf = RollingBuffer(window_ns=3 * S, max_bytes=10**9)
    for t in range(10):
        buf.add(entry(t * S))
    assert [e.stamp_ns // S for e in buf.since(0)] == [6, 7, 8, 9]  # 9 - 3 = 6 is inside


def test_buffer_drops_the_oldest_over_its_memory_bound() -> None:
    buf = RollingBuffer(window_ns=100 * S, max_bytes=35)
    for t in range(5):
        buf.add(entry(t * S, nbytes=10))
    assert [e.stamp_ns // S for e in buf.since(0)] == [2, 3, 4]
    assert buf.nbytes == 30 and buf.dropped_for_memory == 2


# -- planner -----------------------------------------------------------------------------


def planner(before: float = 2, after: float = 1, interval: float = 10, max_bytes: int = 10**9):
    return ClipPlanner(int(before * S), int(after * S), int(interval * S), max_bytes)


def run(p: ClipPlanner, stamps: list[float], triggers: dict[float, str]) -> list:
    """Feed entries at ``stamps`` (s) through a buffer; trigger at the given stamps; return the
    finished clips."""
    buf, done = RollingBuffer(100 * S, 10**9), []
    for t in stamps:
        ns = round(t * S)
        clip = p.due(ns)
        if clip is not None:
            done.append(clip)
        e = entry(ns)
        buf.add(e)
        p.add(e)
        if t in triggers:
            p.trigger(Trigger(triggers[t], "", ns), buf.since(ns - p.before_ns))
    if p.open is not None:
        done.append(p.flush())
    return done


def test_a_clip_runs_from_before_the_trigger_to_after_it() -> None:
    stamps = [i * 0.5 for i in range(21)]  # 0 .. 10 s at 2 Hz
    (clip,) = run(planner(before=2, after=1), stamps, {5.0: "alert"})
    got = [e.stamp_ns / S for e in clip.entries]
    assert got == [3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]  # [5 - 2, 5 + 1], both ends inside
    assert (clip.start_ns, clip.end_ns) == (3 * S, 6 * S) and clip.complete


def test_overlapping_triggers_merge_into_one_clip() -> None:
    stamps = [i * 0.5 for i in range(21)]
    clips = run(planner(before=2, after=1), stamps, {5.0: "alert", 5.5: "scene", 6.0: "manual"})
    (clip,) = clips
    assert clip.end_ns == 7 * S and [t.reason for t in clip.triggers] == [
        "alert",
        "scene",
        "manual",
    ]
    assert clip.entries[-1].stamp_ns == 7 * S


def test_the_rate_limit_holds_back_alerts_but_not_the_button() -> None:
    stamps = [float(i) for i in range(40)]
    clips = run(planner(before=1, after=1, interval=10), stamps, {5.0: "alert", 14.0: "alert"})
    assert [c.first.stamp_ns // S for c in clips] == [5]  # 14 - 5 = 9 < 10
    clips = run(planner(before=1, after=1, interval=10), stamps, {5.0: "alert", 15.0: "alert"})
    assert [c.first.stamp_ns // S for c in clips] == [5, 15]  # exactly the interval: allowed
    clips = run(planner(before=1, after=1, interval=10), stamps, {5.0: "alert", 9.0: "manual"})
    assert [c.first.reason for c in clips] == ["alert", "manual"]


def test_a_clip_stops_taking_entries_at_its_memory_bound() -> None:
    stamps = [float(i) for i in range(10)]
    (clip,) = run(planner(before=3, after=3, max_bytes=45), stamps, {4.0: "alert"})
    assert len(clip.entries) == 4 and clip.left_out == 3  # 7 entries in [1, 7], 10 bytes each


def test_a_stream_that_stops_early_gives_an_incomplete_clip() -> None:
    (clip,) = run(planner(before=1, after=5), [0.0, 1.0, 2.0, 3.0], {2.0: "alert"})
    assert not clip.complete and len(clip.entries) == 3


# -- writer ------------------------------------------------------------------------------


def image_entry(t_ns: int, value: int) -> Entry:
    msg = image_message(np.full((4, 6, 3), value, np.uint8), "rgb8", t_ns, "cam")
    raw = serialize(msg)
    return Entry(CAMERA_TOPIC, IMAGE, t_ns, raw, len(raw))


def one_clip(t0: int, n: int = 3, reason: str = "alert"):
    p = planner(before=0, after=(n - 1) * 0.1)
    p.trigger(Trigger(reason, "front", t0, "WARN", "unknown object"), [image_entry(t0, 0)])
    for i in range(1, n):
        p.add(image_entry(t0 + i * S // 10, i))
    clip = p.flush()
    clip.region = {"size": 0.42, "bbox": "(1, 2, 3, 4)", "area": 9}
    return clip


def read_clip(path: Path):
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        f.seek(0)
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        messages = [(c.topic, m.log_time, d) for _, c, m, d in reader.iter_decoded_messages()]
    return metadata, messages


def test_a_clip_is_an_mcap_file_that_mcap_and_rosbags_read(tmp_path: Path) -> None:
    writer = ClipWriter(str(tmp_path), 10**9, "hash123", msgdef)
    t0 = 1_765_000_000 * S
    writer.submit(one_clip(t0))
    writer.close()
    (path,) = tmp_path.glob("*.mcap")
    assert path.name == "clip_20251206T054640.000Z_alert_front.mcap"
    metadata, messages = read_clip(path)
    meta = metadata[METADATA_NAME]
    assert meta["reason"] == "alert" and meta["camera"] == "front"
    assert int(meta["trigger_stamp_ns"]) == t0 and int(meta["end_ns"]) == t0 + 2 * S // 10
    assert meta["level"] == "WARN" and meta["message"] == "unknown object"
    assert meta["region_bbox"] == "(1, 2, 3, 4)" and meta["model_hash"] == "hash123"
    assert [log for _, log, _ in messages] == [t0, t0 + S // 10, t0 + 2 * S // 10]
    assert [int(d.data[0]) for _, _, d in messages] == [0, 1, 2]  # the images themselves
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:  # rosbags opens a bare MCAP file too
        assert [c.topic for c in reader.connections] == [CAMERA_TOPIC]
    index = [json.loads(line) for line in (tmp_path / INDEX_NAME).read_text().splitlines()]
    assert [i["file"] for i in index] == [path.name] and index[0]["messages"] == 3


def test_a_killed_write_leaves_no_file_named_mcap(tmp_path: Path) -> None:
    part = tmp_path / ".clip_x.mcap.part"
    part.write_bytes(b"\x89MCAP0\r\n half a clip")  # what a kill -9 mid-write leaves
    writer = ClipWriter(str(tmp_path), 10**9, "", msgdef)
    writer.close()
    assert not part.exists() and not list(tmp_path.glob("*.mcap"))
    assert any("unfinished clip" in text for _, text in writer.drain_lines())


def test_the_disk_budget_deletes_the_oldest_clips_first(tmp_path: Path) -> None:
    writer = ClipWriter(str(tmp_path), 10**9, "", msgdef)
    writer.submit(one_clip(1_765_000_000 * S))
    writer.wait_idle()
    size = next(tmp_path.glob("*.mcap")).stat().st_size
    writer.max_total_bytes = int(size * 2.5)  # room for two clips, not three
    for k in (1, 2, 3):
        writer.submit(one_clip((1_765_000_000 + 60 * k) * S))
        writer.wait_idle()
    writer.close()
    names = sorted(p.name for p in tmp_path.glob("*.mcap"))
    assert names == [
        "clip_20251206T054840.000Z_alert_front.mcap",
        "clip_20251206T054940.000Z_alert_front.mcap",
    ]
    index = [json.loads(line)["file"] for line in (tmp_path / INDEX_NAME).read_text().splitlines()]
    assert sorted(index) == names
    lines = [text for _, text in writer.drain_lines()]
    assert sum("deleted the oldest clip" in t for t in lines) == 2
    assert writer.stats().clips_deleted == 2


def test_an_unusable_folder_is_one_error_line_and_no_crash(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    writer = ClipWriter(str(tmp_path / "file" / "clips"), 10**9, "", msgdef, log_throttle_s=3600)
    for k in range(3):
        assert writer.submit(one_clip((1_765_000_000 + k) * S))
        writer.wait_idle()
    writer.close()
    stats = writer.stats()
    assert stats.clips_written == 0 and stats.failing and "could not write" in stats.last_error
    errors = [text for sev, text in writer.drain_lines() if sev == "error"]
    assert len(errors) == 2  # the folder once, the writes once (throttled per kind)


def test_a_full_disk_leaves_no_clip_and_the_next_one_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from ros2_fed.recording import writer as writer_module

    real = writer_module.write_mcap
    calls = []

    def full_once(path, *args):
        calls.append(path)
        if len(calls) == 1:
            path.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args)

    monkeypatch.setattr(writer_module, "write_mcap", full_once)
    writer = ClipWriter(str(tmp_path), 10**9, "", msgdef)
    writer.submit(one_clip(1_765_000_000 * S))
    writer.wait_idle()
    assert writer.stats().failing and list(tmp_path.iterdir()) == []  # the .part is gone
    writer.submit(one_clip(1_765_000_100 * S))
    writer.close()
    stats = writer.stats()
    assert not stats.failing and stats.clips_written == 1 and stats.errors == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip_20251206T054820.000Z_alert_front.mcap",
        INDEX_NAME,
    ]


# -- the stage ---------------------------------------------------------------------------


def frame(t_ns: int, alert: int, scene: int = 0, size: float = 0.1) -> SimpleNamespace:
    statuses = {
        "alerts": Status(alert, "a", {"region_size": str(size), "region_bbox": "(0, 0, 1, 1)"}),
        "scene": Status(scene, "s"),
    }
    return SimpleNamespace(
        stamp=SimpleNamespace(sec=t_ns // S, nanosec=t_ns % S),
        message=SimpleNamespace(header=SimpleNamespace(frame_id="cam")),
        confidence=np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
        labels=np.arange(12, dtype=np.uint8).reshape(3, 4),
        statuses=statuses,
    )


def stage(tmp_path: Path, **config) -> RecordStage:
    s = RecordStage(SimpleNamespace(metadata={"model_hash": "m"}), ("",))
    s.apply((RecordConfig(enabled=True, dir=str(tmp_path), **config), 2.0))
    return s


def drive(s: RecordStage, levels: list[int], scene: list[int] | None = None) -> None:
    for i, level in enumerate(levels):
        t = 1_765_000_000 * S + i * S // 10  # 10 Hz
        raw = serialize(image_message(np.full((2, 2, 3), i % 256, np.uint8), "rgb8", t))
        s.observe(CAMERA_TOPIC, IMAGE, raw, len(raw), t)
        s.update("", frame(t, level, (scene or [0] * len(levels))[i], size=0.1 + i / 100))
    s.close()


def test_a_rising_alert_gives_one_clip_with_the_camera_confidence_and_statuses(
    tmp_path: Path,
) -> None:
    s = stage(tmp_path, before=0.5, after=0.3)
    drive(s, [0] * 10 + [1, 1, 2, 2, 1] + [0] * 10)  # WARN from frame 10 (t = 1.0 s)
    (path,) = tmp_path.glob("*.mcap")
    meta, messages = read_clip(path)
    meta = meta[METADATA_NAME]
    t_trigger = 1_765_000_000 * S + S
    assert int(meta["trigger_stamp_ns"]) == t_trigger and meta["reason"] == "alert"
    assert int(meta["start_ns"]) == t_trigger - S // 2
    assert int(meta["end_ns"]) == t_trigger + 3 * S // 10
    cams = [log for topic, log, _ in messages if topic == CAMERA_TOPIC]
    assert cams == [t_trigger + k * S // 10 for k in range(-5, 4)]  # frames 5..13
    topics = {topic for topic, _, _ in messages}
    assert topics == {
        CAMERA_TOPIC,
        "/fed_node/confidence/compressed",
        "/fed_node/segmentation/compressed",
        "/fed_node/alerts",
    }
    assert float(meta["region_size"]) == pytest.approx(0.23)  # the largest in the clip: 13
    conf = [d for topic, _, d in messages if topic == "/fed_node/confidence/compressed"][0]
    assert conf.format == "mono8; png compressed mono8"
    seg = [d for topic, _, d in messages if topic == "/fed_node/segmentation/compressed"][0]
    import cv2

    decoded = cv2.imdecode(np.frombuffer(bytes(seg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.tolist() == np.arange(12).reshape(3, 4).tolist()  # the train ids, lossless


def test_no_clip_from_a_clean_drive_nor_from_a_level_that_stays_up(tmp_path: Path) -> None:
    s = stage(tmp_path)
    drive(s, [0] * 30)
    assert not list(tmp_path.glob("*.mcap"))
    s = stage(tmp_path / "b", min_alert_level="ERROR", before=0.1, after=0.1)
    drive(s, [1] * 30)  # WARN only: below the trigger level
    assert not list((tmp_path / "b").glob("*.mcap"))


def test_a_scene_warning_triggers_only_when_asked_to(tmp_path: Path) -> None:
    s = stage(tmp_path / "on", before=0.1, after=0.1)
    drive(s, [0] * 20, scene=[0] * 5 + [1] * 15)
    assert [p.name.split("_")[2] for p in (tmp_path / "on").glob("*.mcap")] == ["scene.mcap"]
    s = stage(tmp_path / "off", before=0.1, after=0.1, scene=False)
    drive(s, [0] * 20, scene=[0] * 5 + [1] * 15)
    assert not list((tmp_path / "off").glob("*.mcap"))


def test_the_button_clips_the_newest_frame(tmp_path: Path) -> None:
    s = stage(tmp_path, before=0.2, after=0.0)
    assert s.save_clip() == (False, "no frame processed yet")
    t = 1_765_000_000 * S
    s.update("", frame(t, 0))
    ok, text = s.save_clip()
    assert ok and "started" in text
    status = s.node_status()
    assert status.level == 0 and status.values["clip_open"] == "true"
    assert status.values["recording"] == "on" and status.values["clips_written"] == "0"
    s.close()
    (path,) = tmp_path.glob("*.mcap")
    assert read_clip(path)[0][METADATA_NAME]["reason"] == "manual"
    off = RecordStage(SimpleNamespace(metadata={}), ("",))
    assert off.save_clip()[0] is False and off.update("", frame(t, 2)) is None
    assert off.node_status() is None


def test_confidence_goes_in_as_eight_bits_and_nan_is_uncertain() -> None:
    got = confidence_u8(np.array([[0.0, 0.5, 1.0, np.nan, 1.5, -0.1]], np.float32))
    assert got.tolist() == [[0, 128, 255, 0, 255, 0]]


def test_entries_count_their_overhead() -> None:
    s = RecordStage(SimpleNamespace(metadata={}), ("",))
    s.apply((RecordConfig(enabled=True, dir="/nonexistent-ros2-fed-test", max_buffer_mb=1), 2.0))
    s.observe(CAMERA_TOPIC, IMAGE, b"x" * 100, 100, 0)
    assert s._buffer.nbytes == 100 + ENTRY_OVERHEAD


def test_a_clip_is_written_under_a_hidden_part_name_and_renamed_when_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes a kill -9 safe: while bytes go to disk, no file is called *.mcap."""
    from ros2_fed.recording import writer as writer_module

    real, seen = writer_module.write_mcap, []

    def watching(path: Path, *args) -> None:
        real(path, *args)
        seen.append((path.name, sorted(p.name for p in tmp_path.glob("*.mcap"))))

    monkeypatch.setattr(writer_module, "write_mcap", watching)
    writer = ClipWriter(str(tmp_path), 10**9, "", msgdef)
    writer.submit(one_clip(1_765_000_000 * S))
    writer.close()
    assert seen == [(".clip_20251206T054640.000Z_alert_front.mcap.part", [])]
    assert [p.name for p in tmp_path.glob("*.mcap")] == [
        "clip_20251206T054640.000Z_alert_front.mcap"
    ]


def test_a_new_folder_at_run_time_finishes_the_open_clip_in_the_old_one(tmp_path: Path) -> None:
    s = RecordStage(SimpleNamespace(metadata={}), ("",))
    a, b = tmp_path / "a", tmp_path / "b"
    s.apply((RecordConfig(enabled=True, dir=str(a), before=0.2, after=5.0), 2.0))
    t = 1_765_000_000 * S
    s.update("", frame(t, 0))
    s.update("", frame(t + S // 10, 1))  # WARN: a clip opens (ends 5 s later)
    s.apply((RecordConfig(enabled=True, dir=str(b), before=0.2, after=5.0), 2.0))
    assert [p.name for p in a.glob("*.mcap")] == ["clip_20251206T054640.100Z_alert.mcap"]
    meta = read_clip(next(a.glob("*.mcap")))[0][METADATA_NAME]
    assert meta["complete"] == "false"  # cut short by the change
    s.update("", frame(t + 2 * S // 10, 1))  # still WARN: no new rise, no clip in b
    s.apply((RecordConfig(enabled=False, dir=str(b)), 2.0))
    assert not s.enabled and s.node_status() is None and not list(b.glob("*.mcap"))
