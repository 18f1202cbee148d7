"""Surround cameras between real processes (``ros`` marker): one fed_node, three cameras.

The node runs a batch-3 FakeEngine (tests/node_harness.py ``--batch 3``, dynamic batch, 0.15 s
per batch) with ``cameras:=[front, left, rear]``; the pytest process is the three cameras and
the consumer. Checked: every output lands on its own camera's topic with that camera's header
and that camera's pixels; frames of several cameras share batches; a camera that stops never
stalls the others (its watchdog alone goes WARN); a bad frame on one camera does not drop the
other cameras' frames of the same batch.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import Image

from fake_engine import expected_outputs
from test_node_ros import (
    HARNESS,
    OUTPUT_TOPICS,
    RUN,
    Client,
    NodeProcess,
    Stamp,
    as_array,
    client,
    env,
    image_msg,
    latest_values,
    pipeline_status,
    wait_until,
)

pytestmark = pytest.mark.ros

CAMERAS = ("front", "left", "rear")
BATCH_DELAY_S = 0.15
__all__ = ["client", "env"]  # fixtures used here by name


@pytest.fixture(scope="module")
def node(env: dict[str, str]) -> NodeProcess:
    params = {
        "cameras": list(CAMERAS),
        "diagnostics.period": 0.2,
        "diagnostics.input_timeout": 0.8,
        "diagnostics.error_log_throttle": 60.0,
    }
    proc = NodeProcess(
        env,
        f"/{RUN}_cams",
        params=params,
        node=[sys.executable, str(HARNESS), "--delay", str(BATCH_DELAY_S), "--batch", "3"],
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, proc.output[-3000:]


def _topics(proc: NodeProcess, camera: str) -> dict[str, str]:
    return {name: f"{proc.namespace}/fed_node/{camera}/{name}" for name in OUTPUT_TOPICS}


def _cameras(client: Client, proc: NodeProcess) -> dict[str, Any]:
    pubs = {cam: client.publisher(f"{proc.namespace}/{cam}/image", Image) for cam in CAMERAS}
    wait_until(
        lambda: all(p.get_subscription_count() > 0 for p in pubs.values()),
        30,
        "camera subscriptions",
    )
    return pubs


def _frame(camera: str, h: int = 48, w: int = 64) -> np.ndarray:
    """A frame only this camera sends (labels and confidence differ between cameras)."""
    return np.random.default_rng(CAMERAS.index(camera) + 11).integers(
        0, 256, (h, w, 3), dtype=np.uint8
    )


def _outputs_of(client: Client, topics: dict[str, str], frame_id: str) -> dict[str, Any]:
    return {
        name: out
        for name, topic in topics.items()
        for _, out in client.messages(topic)
        if out.header.frame_id == frame_id
    }


def _counter(msg: Any) -> int:
    """The Stamp counter in a frame id ``PREFIX_N``."""
    return int(msg.header.frame_id.rsplit("_", 1)[1])


def _values(client: Client, proc: NodeProcess, since: float) -> dict[str, str]:
    return wait_until(lambda: latest_values(client, proc, since), 10, "a pipeline status")


def test_every_output_lands_on_its_camera_with_its_header(
    node: NodeProcess, client: Client
) -> None:
    topics = {cam: _topics(node, cam) for cam in CAMERAS}
    subs = [
        client.subscribe(t, OUTPUT_TOPICS[n]) for cam in CAMERAS for n, t in topics[cam].items()
    ]
    wait_until(
        lambda: all(s.get_publisher_count() > 0 for s in subs), 30, "per-camera output publishers"
    )
    pubs = _cameras(client, node)
    for _ in range(6):  # best effort: discovery may lose the first frames
        sent = {}
        for cam in CAMERAS:  # back to back: they meet in the mailbox and share batches
            msg = image_msg(_frame(cam), "rgb8")
            sent[cam] = (msg, Stamp.header(msg, f"{cam}"))
            pubs[cam].publish(msg)
        try:
            wait_until(
                lambda: all(
                    len(_outputs_of(client, topics[c], sent[c][1][2])) == len(OUTPUT_TOPICS)
                    for c in CAMERAS
                ),
                4,
                "every camera's outputs",
            )
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("no round produced every output of every camera")
    for cam in CAMERAS:
        (sec, nsec, frame_id) = sent[cam][1]
        got = _outputs_of(client, topics[cam], frame_id)
        for name, out in got.items():
            assert (out.header.stamp.sec, out.header.stamp.nanosec) == (sec, nsec), (cam, name)
        labels, confidence = expected_outputs(_frame(cam))
        np.testing.assert_array_equal(as_array(got["segmentation"]), labels)
        np.testing.assert_array_equal(as_array(got["confidence"]), confidence)
        assert got["alerts"].status[0].name.endswith(f"fed_node: {cam} alerts")
        for other in CAMERAS:  # and nowhere else
            if other != cam:
                assert not _outputs_of(client, topics[other], frame_id)


def test_frames_of_several_cameras_share_batches(node: NodeProcess, client: Client) -> None:
    pubs = _cameras(client, node)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # 20 Hz per camera: more than one 0.15 s batch can take
        for cam in CAMERAS:
            msg = image_msg(_frame(cam), "rgb8")
            Stamp.header(msg, f"batch_{cam}")
            pubs[cam].publish(msg)
        time.sleep(0.05)
    time.sleep(0.5)  # the last batch finishes
    values = wait_until(
        lambda: (v := latest_values(client, node, time.time() - 0.3)) and v, 10, "status"
    )
    assert values["cameras"] == ",".join(CAMERAS) and values["engine_batch"].startswith("3")
    assert float(values["engine_frames_per_batch"]) > 1.8, values
    for cam in CAMERAS:
        assert int(values[f"{cam}.frames_processed"]) >= 4, values
        assert int(values[f"{cam}.frames_dropped"]) > 0  # latest frame wins, per camera


def test_a_stopped_camera_does_not_stall_the_others(node: NodeProcess, client: Client) -> None:
    topics = {cam: _topics(node, cam)["confidence"] for cam in ("front", "left")}
    for topic in topics.values():
        client.subscribe(topic, Image)
    pubs = _cameras(client, node)
    time.sleep(1.2)  # every camera silent past its input timeout
    sent = 0
    end = time.monotonic() + 2.5
    while time.monotonic() < end:  # rear has stopped; front and left go on at 10 Hz
        for cam in ("front", "left"):
            msg = image_msg(_frame(cam), "rgb8")
            Stamp.header(msg, f"alive_{cam}")
            pubs[cam].publish(msg)
        sent += 1
        time.sleep(0.1)
    last = Stamp.counter

    def alive(cam: str) -> list[Any]:
        prefix = f"alive_{cam}"
        return [m for t, m in client.messages(topics[cam]) if m.header.frame_id.startswith(prefix)]

    for cam in topics:
        # 0.15 s batches (slower on a loaded machine): outputs kept coming, up to the last frames
        got = wait_until(
            lambda c=cam: (g := alive(c)) and max(_counter(m) for m in g) >= last - 8 and g,
            5,
            f"{cam}'s last frames",
        )
        assert len(got) >= min(5, sent // 3), (cam, len(got), sent)
    statuses = [s for _, s in pipeline_status(client, node, time.time() - 0.5)]
    assert statuses, "no recent pipeline status"
    status = statuses[-1]
    assert status.level == b"\x01" and "rear: no input" in status.message, status.message
    assert "front:" not in status.message and "left:" not in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert (
        float(values["rear.seconds_since_input"])
        > 1.0
        > float(values["front.seconds_since_input"])
    )


def test_a_bad_frame_does_not_drop_the_other_cameras_frames(
    node: NodeProcess, client: Client
) -> None:
    topics = {cam: _topics(node, cam)["segmentation"] for cam in CAMERAS}
    for topic in topics.values():
        client.subscribe(topic, Image)
    pubs = _cameras(client, node)
    before = _values(client, node, 0.0)
    for attempt in range(5):
        busy = image_msg(_frame("front"), "rgb8")
        Stamp.header(busy, "busy")
        pubs["front"].publish(busy)  # occupies the engine for one batch ...
        time.sleep(0.03)
        good = {}
        for cam in ("front", "left"):  # ... while these and the bad frame wait for the next one
            msg = image_msg(_frame(cam), "rgb8")
            good[cam] = Stamp.header(msg, f"good{attempt}_{cam}")[2]
            pubs[cam].publish(msg)
        bad = Image(
            height=48, width=64, encoding="rgb8", step=64 * 3, data=b"\x00" * 100
        )  # truncated
        Stamp.header(bad, f"bad{attempt}")
        pubs["rear"].publish(bad)
        try:
            wait_until(
                lambda: all(
                    any(m.header.frame_id == good[c] for _, m in client.messages(topics[c]))
                    for c in good
                ),
                4,
                "the good frames of the batch",
            )
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("the good frames next to a bad one never came out")
    values = wait_until(
        lambda: (
            (v := latest_values(client, node))
            and int(v["rear.bad_input_total"]) > int(before["rear.bad_input_total"])
            and v
        ),
        10,
        "rear's bad frame counted",
    )
    assert int(values["front.bad_input_total"]) == int(before["front.bad_input_total"])
    assert int(values["inference_errors"]) == 0
    assert not [
        m for _, m in client.messages(topics["rear"]) if m.header.frame_id.startswith("bad")
    ]
    assert node.alive()


def test_alert_statuses_per_camera_in_diagnostics(node: NodeProcess, client: Client) -> None:
    names = wait_until(
        lambda: (
            {
                s.name
                for _, arr in client.messages("/diagnostics")
                for s in arr.status
                if s.name.startswith(node.namespace.lstrip("/"))
            }
            or None
        ),
        10,
        "diagnostics",
    )
    prefix = f"{node.namespace.lstrip('/')}/fed_node"
    assert {f"{prefix}: {cam} alerts" for cam in CAMERAS} <= names
    assert f"{prefix}: pipeline" in names


def _rig_bag(path: Any, stamps: int) -> None:
    """``stamps`` frames of every camera on ``/CAMERA/image``, one stamp for all cameras of a
    tick (the frames the node test sends), 10 Hz."""
    from ros2_fed.eval.replay import bagio

    with bagio.BagWriter(path, "mcap") as writer:
        for cam in CAMERAS:
            writer.add_topic(f"/{cam}/image", bagio.IMAGE)
        for k in range(stamps):
            stamp = 1_700_000_000_000_000_000 + k * 100_000_000
            for cam in CAMERAS:
                writer.write(
                    f"/{cam}/image", stamp + 1000, bagio.image_message(_frame(cam), "rgb8", stamp)
                )


def _offline_batches(tmp_path: Any, stamps: int) -> dict[str, str]:
    """The rig through the replay's offline frame path, with the node's kind of engine."""
    from fake_engine import FakeEngine
    from ros2_fed.eval.replay import bag as bagmod
    from ros2_fed.eval.replay.offline import CameraStream, run_offline
    from ros2_fed.pipeline.model_spec import ModelSpec

    path = tmp_path / "rig"
    _rig_bag(path, stamps)
    streams = [
        CameraStream(cam, bagmod.scan(path, image=f"/{cam}/image", ground_truth=False))
        for cam in CAMERAS
    ]

    def opener(spec: Any, progress: Any = None) -> FakeEngine:
        return FakeEngine(batch_size=3, dynamic_batch=True)  # what node_harness --batch 3 runs

    done = list(run_offline(streams, ModelSpec(), {}, warmup_runs=0, engine_opener=opener))
    assert [camera for camera, _ in done] == [c for _ in range(stamps) for c in CAMERAS]
    return streams[0].stats.engine_batches


def test_a_rig_replayed_offline_forms_the_batches_the_node_forms(
    node: NodeProcess, client: Client, tmp_path: Any
) -> None:
    """The same arrivals -- every camera's frame of a tick arriving together while the engine
    runs the tick before -- make the same engine batches in the node and in the offline rig
    replay: one batch of three frames per tick."""
    stamps = 4
    offline = _offline_batches(tmp_path, stamps)
    assert (offline["engine_batches"], offline["engine_frames"]) == (str(stamps), str(3 * stamps))
    topics = {cam: _topics(node, cam)["segmentation"] for cam in CAMERAS}
    subs = [client.subscribe(t, Image) for t in topics.values()]
    wait_until(lambda: all(s.get_publisher_count() > 0 for s in subs), 30, "output publishers")
    pubs = _cameras(client, node)
    time.sleep(2 * BATCH_DELAY_S)  # earlier tests' frames are done
    before = _values(client, node, time.time())

    def send(cams: tuple[str, ...], tick: str) -> dict[str, str]:
        ids = {}
        for cam in cams:
            msg = image_msg(_frame(cam), "rgb8")
            ids[cam] = Stamp.header(msg, f"rig_{tick}")[2]
            pubs[cam].publish(msg)
        return ids

    def arrived(ids: dict[str, str]) -> bool:
        return all(
            any(m.header.frame_id == ids[c] for _, m in client.messages(topics[c])) for c in ids
        )

    previous = send(("front",), "primer")  # the engine is busy when the first tick arrives
    time.sleep(BATCH_DELAY_S / 3)  # the worker has taken the primer (else tick 0 replaces it)
    current = send(CAMERAS, "0")
    for tick in range(1, stamps + 1):
        wait_until(lambda: arrived(previous), 10, f"the outputs before tick {tick}")
        previous, current = current, send(CAMERAS, str(tick)) if tick < stamps else {}
    wait_until(lambda: arrived(previous), 10, "the last tick's outputs")
    after = _values(client, node, time.time() + BATCH_DELAY_S)
    batches = int(after["engine_batches"]) - int(before["engine_batches"]) - 1  # the primer
    frames = int(after["engine_frames"]) - int(before["engine_frames"]) - 1
    assert (str(batches), str(frames)) == (offline["engine_batches"], offline["engine_frames"])
