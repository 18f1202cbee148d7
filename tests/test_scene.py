"""Scene health (ros2_fed/scene.py) and its stage in the frame path.

The frame path runs with the fake engine (tests/fake_engine.py: confidence = G / 255), so a
frame's green channel scripts the uncertain share the scene monitor sees. Checked: a clean
drive stays OK; a frame uncertain everywhere goes WARN, then ERROR; hysteresis; black,
saturated and uniform frames ERROR within 5 frames; a frozen camera (identical bytes, stamps
advancing) WARN within 1 s at 10 Hz, and only while stamps advance; the calibration's limits
are used and an explicit parameter overrides them; statuses are named like the node's on
/diagnostics and ride on ~/alerts after the alert status; a rig with one blocked camera.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ros2_fed import scene
from ros2_fed.alerts import Level
from ros2_fed.pipeline import params as P
from ros2_fed.pipeline.outputs import SCENE_STAGE, render
from ros2_fed.pipeline.processor import FrameProcessor
from tests.fake_engine import FakeEngine

H, W = 64, 128
THRESHOLD = 0.8
CALIBRATION = {
    "confidence_threshold": THRESHOLD,
    "scene": scene.scene_record(np.linspace(0.02, 0.1, 101), THRESHOLD, 0.1),
}


def textured(seed: int = 0, green: int = 250, uncertain: float = 0.0) -> np.ndarray:
    """A frame with texture (not uniform) whose confidence (G / 255) is ``green`` / 255, below
    the threshold on the top ``uncertain`` share of the rows."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(40, 200, (H, W, 3), dtype=np.uint8)
    rgb[..., 1] = green
    rgb[: int(round(uncertain * H)), :, 1] = 100  # confidence 0.39
    return rgb


def message(rgb: np.ndarray, t_ns: int) -> SimpleNamespace:
    """A sensor_msgs/Image-like rgb8 message with a header stamp."""
    stamp = SimpleNamespace(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=stamp, frame_id="camera"),
        height=rgb.shape[0],
        width=rgb.shape[1],
        encoding="rgb8",
        is_bigendian=0,
        step=rgb.shape[1] * 3,
        data=rgb.tobytes(),
    )


def processor(cameras: tuple[str, ...] = ("",), **params: Any) -> FrameProcessor:
    engine = FakeEngine(batch_size=len(cameras))
    engine.metadata["detector"] = {"calibration": CALIBRATION}
    return FrameProcessor(engine, params, cameras)


def levels(proc: FrameProcessor, frames: list[np.ndarray], camera: str = "") -> list[int]:
    """The scene level of each frame, fed at 10 Hz."""
    out = []
    for i, rgb in enumerate(frames):
        (result,) = proc.run({camera: message(rgb, 10**9 + i * 100_000_000)})
        out.append(result.statuses[SCENE_STAGE].level)
    return out


# --------------------------------------------------------------------------------------
# The statistic and the calibration record
# --------------------------------------------------------------------------------------


def test_uncertain_fraction_leaves_out_the_hood_and_counts_nan() -> None:
    conf = np.ones((100, 10), np.float32)
    conf[:20] = 0.5
    conf[95:] = 0.0  # the hood: not judged
    assert scene.uncertain_fraction(conf, 0.8, 0.1) == pytest.approx(20 / 90)
    conf[30, :5] = np.nan
    assert scene.uncertain_fraction(conf, 0.8, 0.1) == pytest.approx(205 / 900)
    assert scene.uncertain_fraction(conf.astype(np.float16), 0.8, 0.0) == pytest.approx(0.255)


def test_histogram_fraction_matches_the_exact_one() -> None:
    rng = np.random.default_rng(1)
    conf = rng.beta(8, 1, (120, 160)).astype(np.float32)
    hist = scene.confidence_histogram(conf, 0.1)
    for threshold in (0.3, 0.8, 0.80237, 0.95):
        exact = scene.uncertain_fraction(conf, threshold, 0.1)
        assert scene.fraction_below(hist, threshold) == pytest.approx(exact, abs=2e-3)


def test_limits_come_from_the_in_domain_distribution() -> None:
    """Worked by hand: the 99th percentile of 0.001 .. 0.100 is 0.09901 (linear, position
    98.01); WARN 2 x 0.09901 = 0.19802; ERROR 0.19802 + 0.4 x (1 - 0.19802) = 0.518812."""
    record = scene.scene_record(np.arange(1, 101) / 1000, 0.8, 0.1)
    assert record["quantiles"]["0.99"] == pytest.approx(0.09901, abs=1e-15)
    warn, error = scene.limits_from_distribution(record["quantiles"])
    assert warn == pytest.approx(0.19802, abs=1e-15)
    assert error == pytest.approx(0.518812, abs=1e-15)
    assert scene.limits_from_distribution({"0.99": 0.7})[0] == 1.0  # never above 1
    assert record["frames"] == 100 and record["statistic"] == scene.STATISTIC
    with pytest.raises(ValueError):
        scene.scene_record([], 0.8, 0.1)


# What fed_node computes at start-up for its default model (models/fed_c_synthroad, the
# scene record fed_calibrate stored in it: in-domain 99th percentile 0.08177524027617121 of
# the uncertain share on 100 clean validation frames), read once from the node's rule and
# written here as numbers (docs/scene.md: WARN above 16.4 %, ERROR above 49.8 %;
# docs/scene_results.json "limits"). A change of the rule or its constants changes them.
SHIPPED_WARN, SHIPPED_ERROR = 0.16355048055234242, 0.4981302883314055


def shipped_scene_config() -> scene.SceneConfig:
    """The default model's scene configuration under the node's default parameters."""
    import json

    from ros2_fed.paths import default_models_dir
    from ros2_fed.pipeline import DEFAULT_FED

    checkpoint = json.loads((default_models_dir() / f"{DEFAULT_FED}.json").read_text())
    return P.scene_config({}, checkpoint["calibration"])


def test_the_shipped_default_models_scene_limits() -> None:
    cfg = shipped_scene_config()
    assert cfg.limits_from == "model"
    assert cfg.warn_fraction == pytest.approx(SHIPPED_WARN, rel=1e-12)
    assert cfg.error_fraction == pytest.approx(SHIPPED_ERROR, rel=1e-12)
    assert (cfg.confidence_threshold, cfg.hood) == pytest.approx((0.7086498737335205, 0.1))


def test_a_share_exactly_at_the_shipped_limit_is_not_over_it() -> None:
    """The rule is "above the limit": exactly at WARN (or ERROR) never raises it, the next
    float up does after raise_frames (2)."""
    cfg = shipped_scene_config()
    monitor = scene.SceneMonitor(cfg)
    assert [monitor.step_statistic(SHIPPED_WARN) for _ in range(10)] == [Level.OK] * 10
    above = float(np.nextafter(SHIPPED_WARN, 1.0))
    assert [monitor.step_statistic(above) for _ in range(2)] == [Level.OK, Level.WARN]
    assert [monitor.step_statistic(SHIPPED_ERROR) for _ in range(10)] == [Level.WARN] * 10
    above = float(np.nextafter(SHIPPED_ERROR, 1.0))
    assert [monitor.step_statistic(above) for _ in range(2)] == [Level.WARN, Level.ERROR]


def test_a_frame_exactly_at_the_limit_through_the_frame_path() -> None:
    """29 of the 58 rows above the hood uncertain: the share is exactly 0.5, the WARN limit;
    the frame is OK with candidate OK; 30 rows (0.517) raise WARN on the second frame."""
    proc = processor(**{"scene.warn_fraction": 0.5, "scene.error_fraction": 0.9})
    assert levels(proc, [textured(i, uncertain=29 / 64) for i in range(6)]) == [0] * 6
    status = proc.latest_statuses()[-1]
    assert status.values["uncertain_fraction"] == "0.5000"
    assert status.values["candidate"] == "OK" and status.message.startswith("ok:")
    assert levels(proc, [textured(i, uncertain=30 / 64) for i in range(2)]) == [0, 1]
    assert proc.latest_statuses()[-1].values["candidate"] == "WARN"


def test_limits_from_the_model_unless_a_parameter_says_otherwise() -> None:
    cfg = P.scene_config({}, CALIBRATION)
    assert cfg.limits_from == "model" and cfg.confidence_threshold == THRESHOLD
    warn, error = scene.limits_from_distribution(CALIBRATION["scene"]["quantiles"])
    assert (cfg.warn_fraction, cfg.error_fraction) == pytest.approx((warn, error))
    cfg = P.scene_config({"scene.warn_fraction": 0.3, "scene.hood": 0.2}, CALIBRATION)
    assert cfg.limits_from == "parameters" and cfg.warn_fraction == 0.3 and cfg.hood == 0.2
    assert cfg.error_fraction == pytest.approx(error)
    # limits a record stored with an earlier rule are not read: the node's rule applies
    stale = {**CALIBRATION, "scene": {**CALIBRATION["scene"], "warn_fraction": 0.01}}
    assert P.scene_config({}, stale).warn_fraction == pytest.approx(warn)
    bare = P.scene_config({}, {"confidence_threshold": 0.7})
    assert bare.limits_from == "uncalibrated" and bare.confidence_threshold == 0.7
    assert (bare.warn_fraction, bare.error_fraction) == (
        scene.UNCALIBRATED_WARN,
        scene.UNCALIBRATED_ERROR,
    )
    with pytest.raises(ValueError, match="warn_fraction"):
        P.scene_config({"scene.warn_fraction": 0.9}, CALIBRATION)


# --------------------------------------------------------------------------------------
# The monitor through the frame path
# --------------------------------------------------------------------------------------


def test_a_clean_drive_stays_ok() -> None:
    proc = processor()
    assert levels(proc, [textured(i, uncertain=0.05) for i in range(40)]) == [0] * 40
    status = proc.latest_statuses()[-1]
    assert status.name == "fed_node: scene" and status.message.startswith("ok:")
    for key in ("uncertain_fraction", "warn_fraction", "error_fraction", "consecutive"):
        assert key in status.values, key
    assert status.values["limits_from"] == "model"


def test_uncertain_everywhere_warns_then_errors_with_hysteresis() -> None:
    proc = processor(**{"scene.warn_fraction": 0.3, "scene.error_fraction": 0.6})
    got = levels(
        proc,
        [textured(i, uncertain=0.45) for i in range(4)]  # WARN after raise_frames = 2
        + [textured(i, uncertain=0.8) for i in range(3)]  # ERROR after 2
        + [textured(i, uncertain=0.27) for i in range(6)],  # 17 of 58 rows: 0.293
    )
    # ERROR -> WARN after 5 frames at or below 0.58; 0.293 holds WARN (above 0.3 - 0.02)
    assert got == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 1, 1]
    status = proc.latest_statuses()[-1]
    assert status.message.startswith("degraded:") and "WARN limit" in status.message


@pytest.mark.parametrize(
    "fault, frame",
    [
        ("black", np.full((H, W, 3), 3, np.uint8)),
        ("saturated", np.full((H, W, 3), 255, np.uint8)),
        ("uniform", np.full((H, W, 3), 128, np.uint8)),
    ],
)
def test_black_saturated_and_uniform_frames_error_within_5_frames(
    fault: str, frame: np.ndarray
) -> None:
    proc = processor()
    clean = [textured(i) for i in range(5)]
    faulty = [frame.copy() for _ in range(5)]
    got = levels(proc, clean + faulty + [textured(i) for i in range(10)])
    assert got[:5] == [0] * 5
    assert Level.ERROR in got[5:10] and got[5:10].index(Level.ERROR) < 5
    assert got[-1] == 0  # cleared by clean frames
    (result,) = proc.run({"": message(frame, 10**10)})
    (result,) = proc.run({"": message(frame, 10**10 + 1)})
    (result,) = proc.run({"": message(frame, 10**10 + 2)})
    status = result.statuses[SCENE_STAGE]
    assert status.message.startswith("perception unusable:") and fault in status.message
    assert status.values["fault"] == fault and status.values["fault_frames"] == "3"


def test_a_frozen_camera_warns_within_one_second_at_10_hz() -> None:
    proc = processor()
    still = textured(7)
    got = levels(proc, [textured(i) for i in range(3)] + [still] * 35)
    first = got.index(Level.WARN)
    assert 3 < first <= 3 + 10  # within 10 frames of the freeze = 1 s at 10 Hz
    assert got[3 + 30] == Level.ERROR  # frozen_error_frames = 30
    status = proc.latest_statuses()[-1]
    assert "frozen" in status.message and int(status.values["identical_frames"]) >= 30
    # a new image clears it at once
    assert levels(proc, [textured(99)]) == [0]


def test_identical_frames_count_only_while_stamps_advance() -> None:
    monitor = scene.SceneMonitor()
    rgb, conf = textured(1), np.ones((H, W), np.float32)
    digest = scene.frame_digest(None, rgb)
    stamp = SimpleNamespace(sec=1, nanosec=0)
    states = [monitor.update(rgb, conf, stamp, digest) for _ in range(10)]  # re-delivered
    assert states[-1].identical_frames == 0 and states[-1].level == Level.OK
    frozen_off = scene.SceneMonitor(scene.SceneConfig(frozen_frames=0, frozen_error_frames=0))
    for i in range(40):
        state = frozen_off.update(rgb, conf, SimpleNamespace(sec=2 + i, nanosec=0), digest)
    assert state.identical_frames == 39 and state.level == Level.OK


def test_digest_reads_the_raw_message_bytes() -> None:
    rgb = textured(3)
    msg = message(rgb, 0)
    assert scene.frame_digest(msg, None) == scene.frame_digest(None, rgb)
    msg.data = bytearray(msg.data)
    msg.data[0] ^= 1
    assert scene.frame_digest(msg, rgb) != scene.frame_digest(None, rgb)
    strided = np.zeros((H, W * 2, 3), np.uint8)[:, ::2]
    assert scene.frame_digest(strided) == scene.frame_digest(np.ascontiguousarray(strided))


def test_parameters_change_at_run_time() -> None:
    proc = processor(**{"scene.warn_fraction": 0.5, "scene.error_fraction": 0.9})
    frames = [textured(i, uncertain=0.4) for i in range(3)]  # 26 of 58 rows: 0.448
    assert levels(proc, frames) == [0, 0, 0]
    change = P.with_defaults({"scene.warn_fraction": 0.2, "scene.error_fraction": 0.9})
    proc.apply(proc.configure(change, ["scene.warn_fraction"]))
    assert levels(proc, frames) == [0, 1, 1]
    assert proc.latest_statuses()[-1].values["limits_from"] == "parameters"


def test_alerts_output_carries_the_scene_status_after_the_alert_status() -> None:
    proc = processor()
    (result,) = proc.run({"": message(textured(0), 10**9)})
    statuses = proc.render(result, ["alerts"])["alerts"]
    assert [s.name for s in statuses] == ["fed_node: alerts", "fed_node: scene"]
    frame = SimpleNamespace(statuses={"alerts": statuses[0]})
    assert render(frame, ["alerts"])["alerts"] == [statuses[0]]  # no scene stage: alerts only


def test_a_rig_with_one_blocked_camera() -> None:
    cameras = ("front", "left", "right")
    proc = processor(cameras)
    for i in range(6):
        frames = {
            camera: message(
                np.zeros((H, W, 3), np.uint8) if camera == "left" else textured(i), 10**9 + i
            )
            for camera in cameras
        }
        results = proc.run(frames)
    got = {r.camera: r.statuses[SCENE_STAGE] for r in results}
    assert got["left"].level == Level.ERROR and "black" in got["left"].message
    assert got["front"].level == got["right"].level == Level.OK
    names = [s.name for s in proc.latest_statuses()]
    for camera in cameras:
        assert f"fed_node: {camera} scene" in names
