"""The ROS conventions integrators look for, between real processes: ``~/camera_info`` passed
through with each output's header, ``~/NAME/compressed`` image outputs (JPEG, PNG at run time),
the alert region as a ``geometry_msgs/PolygonStamped`` and the per-frame latency topics."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import PolygonStamped
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64

from test_node_ros import (  # noqa: F401  (env and client are fixtures)
    ALERTS,
    RELIABLE,
    RUN,
    Client,
    NodeProcess,
    _alert_frame,
    as_array,
    camera,
    client,
    env,
    image_msg,
    send_until_outputs,
    wait_until,
)

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def node(env: dict[str, str]) -> NodeProcess:
    proc = NodeProcess(
        env,
        f"/{RUN}_conv",
        params={"diagnostics.input_timeout": 0.0, "diagnostics.period": 0.5, **ALERTS},
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        assert proc.stop() == 0, proc.output[-2000:]


def _subscribe(client: Client, node: NodeProcess, types: dict[str, type]) -> dict[str, str]:
    topics = {name: f"{node.namespace}/fed_node/{name}" for name in types}
    subs = [client.subscribe(topics[n], t) for n, t in types.items()]
    wait_until(lambda: all(s.get_publisher_count() > 0 for s in subs), 30, "publishers")
    return topics


def _frame(rows: int = 0) -> np.ndarray:
    """40x50: R makes labels (five 10-column bands), G confidence (rows [0, rows) uncertain),
    B a smooth gradient."""
    frame = _alert_frame(rows / 40.0)
    frame[..., 0] = np.arange(50)[None, :] // 10
    frame[..., 2] = (np.arange(40)[:, None] * 6) % 256
    return frame


def _decode(msg: CompressedImage) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_camera_info_republished_with_each_output_header(
    node: NodeProcess, client: Client
) -> None:
    topics = _subscribe(client, node, {"segmentation": Image, "camera_info": CameraInfo})
    pub = camera(client, node)
    frame = _frame()
    # Before any CameraInfo: the outputs come, a camera_info does not.
    _, got = send_until_outputs(
        client, pub, lambda: image_msg(frame, "rgb8"), {"s": topics["segmentation"]}, "noinfo"
    )
    time.sleep(0.3)
    assert client.messages(topics["camera_info"]) == []
    info_pub = client.publisher(f"{node.namespace}/camera_info", CameraInfo, RELIABLE)
    wait_until(lambda: info_pub.get_subscription_count() > 0, 30, "camera_info subscription")
    info = CameraInfo(width=50, height=40, distortion_model="plumb_bob")
    info.k = [400.0, 0.0, 25.0, 0.0, 401.0, 20.0, 0.0, 0.0, 1.0]
    info.d = [0.1, -0.2, 0.0, 0.0, 0.0]
    info.header.frame_id = "camera_optical_frame"
    info.header.stamp.sec = 7

    def with_info() -> Image:  # a driver sends its CameraInfo with every frame
        info_pub.publish(info)
        time.sleep(0.05)
        return image_msg(frame, "rgb8")

    msg, got = send_until_outputs(client, pub, with_info, topics, "info", attempts=10)
    out = got["camera_info"]
    assert out.header.frame_id == msg.header.frame_id == got["segmentation"].header.frame_id
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (
        msg.header.stamp.sec,
        msg.header.stamp.nanosec,
    )
    assert list(out.k) == list(info.k) and list(out.d) == list(info.d)
    assert (out.width, out.height, out.distortion_model) == (50, 40, "plumb_bob")


def test_compressed_outputs_jpeg_then_png(node: NodeProcess, client: Client) -> None:
    names = {"overlay": Image, "segmentation_color": Image}
    names.update({f"{n}/compressed": CompressedImage for n in list(names)})
    topics = _subscribe(client, node, names)
    pub = camera(client, node)
    frame = _frame()
    msg, got = send_until_outputs(client, pub, lambda: image_msg(frame, "rgb8"), topics, "jpg")
    for name in ("overlay", "segmentation_color"):
        comp, raw = got[f"{name}/compressed"], as_array(got[name])
        assert comp.format == "rgb8; jpeg compressed bgr8"
        assert comp.header.frame_id == msg.header.frame_id
        assert bytes(comp.data[:2]) == b"\xff\xd8"
        decoded = _decode(comp)
        assert decoded.shape == raw.shape
        # JPEG at quality 95: close to the raw output (a wrong channel order is 100+ off)
        assert np.abs(decoded.astype(int) - raw.astype(int)).mean() < 6.0, name
    params = AsyncParameterClient(client.node, f"{node.namespace}/fed_node")
    assert params.wait_for_services(timeout_sec=10)
    future = params.set_parameters([Parameter("compressed.format", value="png")])
    wait_until(future.done, 10, "set compressed.format")
    assert all(r.successful for r in future.result().results)
    msg, got = send_until_outputs(client, pub, lambda: image_msg(frame, "rgb8"), topics, "png")
    for name in ("overlay", "segmentation_color"):
        comp = got[f"{name}/compressed"]
        assert comp.format == "rgb8; png compressed bgr8"
        np.testing.assert_array_equal(_decode(comp), as_array(got[name]))  # lossless


def test_compressed_alone_is_published(node: NodeProcess, client: Client) -> None:
    """Only the compressed variant is listened to: it is still rendered and published."""
    topics = _subscribe(client, node, {"segmentation_color/compressed": CompressedImage})
    pub = camera(client, node)
    frame = _frame()
    _, got = send_until_outputs(client, pub, lambda: image_msg(frame, "rgb8"), topics, "alone")
    palette_rgb = _decode(got["segmentation_color/compressed"])
    assert palette_rgb.shape == (40, 50, 3)


def test_alert_region_polygon(node: NodeProcess, client: Client) -> None:
    """Rows 0-7 of a 40x50 frame of class 0 (road) uncertain: the box's outer edges (0, 0) -
    (50, 8) in pixels; a certain frame: no points. The polygon carries the frame's header."""
    topics = _subscribe(client, node, {"alerts/region": PolygonStamped})
    pub = camera(client, node)
    msg, got = send_until_outputs(
        client, pub, lambda: image_msg(_alert_frame(0.2), "rgb8"), topics, "region"
    )
    poly = got["alerts/region"]
    assert poly.header.frame_id == msg.header.frame_id
    points = [(p.x, p.y, p.z) for p in poly.polygon.points]
    assert points == [(0, 0, 0), (50, 0, 0), (50, 8, 0), (0, 8, 0)]
    _, got = send_until_outputs(
        client, pub, lambda: image_msg(_alert_frame(0.0), "rgb8"), topics, "noregion"
    )
    assert list(got["alerts/region"].polygon.points) == []


def test_latency_topics(node: NodeProcess, client: Client) -> None:
    """Processing time (received -> published) and stamp -> published, in ms, per frame: the
    frame is stamped 200 ms in the past, so the pipeline latency is at least that, and the
    processing time is not."""
    debug = {"debug/processing_time_ms": Float64, "debug/pipeline_latency_ms": Float64}
    topics = _subscribe(client, node, {"segmentation": Image, **debug})
    pub = camera(client, node)
    for topic in topics.values():
        client.clear(topic)
    msg = image_msg(_frame(), "rgb8")
    sent = time.time_ns() - 200_000_000
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sent, 1_000_000_000)
    msg.header.frame_id = "latency"
    for _ in range(5):
        pub.publish(msg)
        try:
            wait_until(
                lambda: all(client.messages(topics[n]) for n in debug), 3.0, "latency topics"
            )
            break
        except AssertionError:
            continue
    processing = client.messages(topics["debug/processing_time_ms"])[0][1].data
    latency = client.messages(topics["debug/pipeline_latency_ms"])[0][1].data
    assert 0.0 < processing < 200.0, processing
    assert 200.0 <= latency < 200.0 + 5000.0, latency
