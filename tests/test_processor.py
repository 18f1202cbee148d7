"""FrameProcessor, the one frame path of fed_node and fed_bag_eval, without ROS.

Checked with a FakeEngine (outputs recomputable from the frame) and rosbags messages (what the
replay feeds; rclpy messages have the same fields): bad frames are refused under the node's
kind names with the parameters' limits while the rest of the batch runs; one engine batch per
call; status names as the node publishes them; a per-frame stage plugs in and is configured,
run and reset (time going backwards) per camera; outputs are rendered only when wanted and on;
an engine failure counts for every camera of the batch.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pytest

from ros2_fed.eval.replay import bagio
from ros2_fed.health import ERROR, OK, Status
from ros2_fed.pipeline.outputs import OUTPUT_NAMES
from ros2_fed.pipeline.processor import CameraResult, FrameProcessor
from ros2_fed.pipeline.stages import DEFAULT_STAGES, ModelInfo
from tests.fake_engine import FakeEngine, expected_outputs
from tests.input_bombs import png_bytes

SIZE = (48, 64)
UNCERTAIN = {  # the whole frame below the threshold is an ERROR region at once
    "alerts.confidence_threshold": 0.5,
    "alerts.roi": "full",
    "alerts.raise_frames": 1,
    "alerts.clear_frames": 1,
    "alerts.min_width": 0.0,
}


def image(rgb: np.ndarray, stamp_ns: int = 1_000, frame_id: str = "cam") -> Any:
    return bagio.image_message(rgb, "rgb8", stamp_ns, frame_id)


def frame(seed: int, green: int = 200) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    rgb[..., 1] = green  # confidence = G / 255
    return rgb


def wrong_step(stamp_ns: int = 1_000) -> Any:
    msg = image(frame(9), stamp_ns)
    msg.step = SIZE[1] * 3 - 1  # one byte short a row
    return msg


def bomb(stamp_ns: int = 1_000) -> Any:
    """A 4000x4000 PNG of a few KB: inside the codec's default limit, over the node's here."""
    data = png_bytes(4000, 4000, depth=1, colour=0)
    Compressed = bagio.msg_class(bagio.COMPRESSED_IMAGE)
    return Compressed(
        header=bagio.header(stamp_ns, "cam"),
        format="png",
        data=np.frombuffer(data, np.uint8).copy(),
    )


def processor(cameras=("",), params: Mapping[str, Any] = UNCERTAIN, **engine: Any) -> Any:
    fake = FakeEngine(**engine)
    return FrameProcessor(fake, params, cameras), fake


def test_bad_frames_are_counted_by_kind_and_the_rest_runs_as_one_batch() -> None:
    proc, engine = processor(
        ("front", "left", "rear"),
        {**UNCERTAIN, "max_input_pixels": 1024 * 1024},
        input_shape=SIZE,
        batch_size=3,
        dynamic_batch=True,
    )
    results = proc.run({"front": bomb(), "left": wrong_step(), "rear": image(frame(1))})
    assert [r.camera for r in results] == ["front", "left", "rear"]
    assert [r.bad_input.kind if r.bad_input else None for r in results] == [
        "too_large",
        "step_mismatch",
        None,
    ]
    assert engine.batches == [1] and proc.batches.values()["engine_batches"] == "1"
    labels, confidence = expected_outputs(frame(1))
    np.testing.assert_array_equal(results[2].labels, labels)
    np.testing.assert_array_equal(results[2].confidence, confidence)
    assert proc.stats["front"].snapshot()["bad_input"] == {"too_large": 1}
    assert proc.stats["left"].snapshot()["bad_input"] == {"step_mismatch": 1}
    assert proc.stats["rear"].snapshot()["bad_input"] == {}


def test_the_decoder_limit_is_the_parameter() -> None:
    """max_input_pixels decides, one pixel below the frame and at the default."""
    big = frame(2)
    proc, _ = processor(params={**UNCERTAIN, "max_input_pixels": SIZE[0] * SIZE[1] - 1})
    (refused,) = proc.run({"": image(big)})
    assert refused.bad_input is not None and refused.bad_input.kind == "too_large"
    assert "max_input_pixels" in str(refused.bad_input) and not refused.ok
    proc, _ = processor()
    (taken,) = proc.run({"": image(big)})
    assert taken.ok and taken.bad_input is None


def test_statuses_are_named_as_the_node_names_them() -> None:
    single, _ = processor()
    (result,) = single.run({"": image(frame(3, green=10))})
    assert result.statuses["alerts"].name == "fed_node: alerts"
    assert result.statuses["alerts"].level == ERROR  # the whole frame is uncertain
    rig = FrameProcessor(FakeEngine(), UNCERTAIN, ("front",), node_name="/ns/fed_node")
    (result,) = rig.run({"front": image(frame(3))})
    assert result.statuses["alerts"].name == "ns/fed_node: front alerts"
    # the clip recorder is off by default: a sink without a status
    assert [s.name for s in rig.latest_statuses()] == [
        "ns/fed_node: front alerts",
        "ns/fed_node: front scene",
    ]


class CountingStage:
    """A stage as a scene monitor would be one: per camera state, its own parameters."""

    name = "counting"
    parameter_prefix = "alerts.raise"  # borrows a real parameter to see configure run

    def __init__(self, model: ModelInfo, cameras: Any) -> None:
        self.frames = {camera: 0 for camera in cameras}
        self.calls: list[tuple[str, int]] = []
        self.applied: list[Any] = []

    def configure(self, params: Mapping[str, Any]) -> Any:
        return params["alerts.raise_frames"]

    def apply(self, config: Any) -> None:
        self.applied.append(config)

    def update(self, camera: str, frame: CameraResult) -> Status:
        self.frames[camera] += 1
        self.calls.append((camera, frame.stamp.nanosec))
        level = OK if self.frames[camera] < 3 else ERROR
        return Status(level, f"{self.frames[camera]} frames", {"frames": str(self.frames[camera])})

    def reset(self, camera: str) -> None:
        self.frames[camera] = 0


def test_a_new_stage_plugs_in_per_camera_per_frame() -> None:
    proc = FrameProcessor(
        FakeEngine(batch_size=2, dynamic_batch=True),
        UNCERTAIN,
        ("front", "rear"),
        stages=(*DEFAULT_STAGES, CountingStage),
    )
    counting = proc.stage("counting")
    assert counting.applied == [1]  # configured from the parameters at construction
    for stamp in (1, 2, 3):
        results = proc.run({"front": image(frame(stamp), stamp), "rear": image(frame(9), stamp)})
    assert counting.calls == [(cam, s) for s in (1, 2, 3) for cam in ("front", "rear")]
    assert results[0].statuses["counting"].name == "fed_node: front counting"
    assert results[0].statuses["counting"].level == ERROR and results[0].changed
    names = [s.name for s in proc.latest_statuses()]
    assert "fed_node: rear counting" in names and "fed_node: front alerts" in names
    # only the stages whose parameters changed are reconfigured
    proc.apply(proc.configure({**UNCERTAIN, "viz.overlay_alpha": 0.2}, ["viz.overlay_alpha"]))
    assert counting.applied == [1] and proc.settings.overlay_alpha == 0.2
    proc.apply(proc.configure({**UNCERTAIN, "alerts.raise_frames": 4}, ["alerts.raise_frames"]))
    assert counting.applied == [1, 4]
    # a camera whose time goes backwards starts afresh; the other keeps its history
    proc.run({"front": image(frame(1), 1)})
    assert counting.frames == {"front": 1, "rear": 3}


def test_alert_hysteresis_restarts_when_time_goes_backwards() -> None:
    params = {**UNCERTAIN, "alerts.raise_frames": 2}
    proc, _ = processor(params=params)
    uncertain = frame(4, green=10)
    levels = [proc.run({"": image(uncertain, s)})[0].statuses["alerts"].level for s in (1, 2)]
    assert levels == [OK, ERROR]
    (again,) = proc.run({"": image(uncertain, 1)})  # the bag played again
    assert again.statuses["alerts"].level == OK  # two frames in a row needed again


def test_outputs_are_rendered_only_when_wanted_and_switched_on() -> None:
    proc, _ = processor(params={**UNCERTAIN, "publish.overlay": False})
    (result,) = proc.run({"": image(frame(5))})
    out = proc.render(result, OUTPUT_NAMES)
    assert set(out) == set(OUTPUT_NAMES) - {"overlay"}
    assert out["segmentation"].dtype == np.uint8 and out["confidence"].dtype == np.float32
    assert out["segmentation_color"].shape == (*SIZE, 3)
    assert out["alerts"][0] is result.statuses["alerts"]
    assert proc.render(result, ["confidence"]).keys() == {"confidence"}
    assert proc.render(CameraResult("", image(frame(5))), OUTPUT_NAMES) == {}


class BrokenEngine(FakeEngine):
    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError("engine gone")


def test_an_engine_failure_counts_for_every_camera_of_the_batch() -> None:
    proc = FrameProcessor(BrokenEngine(), UNCERTAIN, ("a", "b"))
    with pytest.raises(RuntimeError, match="engine gone"):
        proc.run({"a": image(frame(6)), "b": image(frame(7))})
    assert [proc.stats[c].snapshot()["inference_errors"] for c in "ab"] == [1, 1]
