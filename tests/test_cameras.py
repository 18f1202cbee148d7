"""Surround-camera core: names and topics, the per-camera mailbox and the batches it forms,
batched inference."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ros2_fed.cameras import (
    SINGLE_CAMERA,
    CameraMailbox,
    camera_names,
    camera_problems,
    input_topic,
    output_topic,
    stamp_batches,
)
from ros2_fed.pipeline import ModelSpec, parameter_problems, with_defaults
from ros2_fed.pipeline.inference import infer_batch
from tests.fake_engine import FakeEngine, expected_outputs


def test_camera_names_and_topics() -> None:
    assert camera_names([]) == (SINGLE_CAMERA,)
    assert camera_names(["front", "rear"]) == ("front", "rear")
    assert input_topic("", False) == "image" and input_topic("", True) == "image/compressed"
    assert (
        input_topic("front", False) == "front/image"
        and input_topic("front", True) == "front/image/compressed"
    )
    assert (
        output_topic("", "overlay") == "~/overlay"
        and output_topic("left", "alerts") == "~/left/alerts"
    )


@pytest.mark.parametrize(
    "names,needle",
    [
        (["front", "front"], "more than once"),
        (["front/left"], "not a valid name"),
        (["1st"], "not a valid name"),
        ([""], "not a valid name"),
        ([f"c{i}" for i in range(17)], "at most 16"),
    ],
)
def test_bad_camera_lists_are_refused(names, needle) -> None:
    assert any(needle in p for p in camera_problems(names))
    assert any(needle in p for p in parameter_problems(with_defaults({"cameras": tuple(names)})))


def test_cameras_parameter_sets_the_cached_engine_batch() -> None:
    assert camera_problems(["front", "left_1", "Rear"]) == []
    assert ModelSpec.from_params({"cameras": ["a", "b", "c"]}).batch == 3  # rclpy hands out lists
    assert ModelSpec.from_params({}).batch == 1
    assert (
        "cameras: expected a list of strings"
        in parameter_problems(with_defaults({"cameras": (1, 2)}))[0]
    )


def test_mailbox_keeps_the_newest_frame_per_camera_and_takes_all_at_once() -> None:
    box: CameraMailbox[int] = CameraMailbox()
    assert box.put("front", 1) is False
    assert box.put("front", 2) is True  # the older pending frame is dropped
    assert box.put("left", 10) is False
    assert box.pending("front") and box.pending() and not box.pending("rear")
    assert box.take_all() == {"front": 2, "left": 10}
    assert not box.pending()
    assert box.take_all(timeout=0.01) is None


def test_mailbox_wakes_the_consumer_for_any_camera_and_on_close() -> None:
    box: CameraMailbox[int] = CameraMailbox()
    got: list = []
    consumer = threading.Thread(target=lambda: got.append(box.take_all(timeout=5)))
    consumer.start()
    time.sleep(0.05)
    box.put("rear", 7)
    consumer.join(2)
    assert got == [{"rear": 7}]
    closer = threading.Thread(target=lambda: got.append(box.take_all(timeout=5)))
    closer.start()
    time.sleep(0.05)
    box.close()
    closer.join(2)
    assert got[-1] is None and not closer.is_alive()


def test_stamp_batches_put_each_stamp_in_one_batch_in_arrival_order() -> None:
    """Offline arrivals: every camera's frame of a stamp in one batch; a new stamp, or a
    camera's second frame of one stamp, starts the next; nothing is dropped."""
    arrivals = [
        ("left", 1, "l1"),
        ("front", 1, "f1"),
        ("rear", 1, "r1"),
        ("front", 2, "f2"),  # rear misses stamp 2
        ("left", 2, "l2"),
        ("left", 2, "l2b"),  # the same camera again: a batch of its own
        ("rear", 3, "r3"),
    ]
    batches = list(stamp_batches(arrivals))
    assert batches == [
        {"left": "l1", "front": "f1", "rear": "r1"},
        {"front": "f2", "left": "l2"},
        {"left": "l2b"},
        {"rear": "r3"},
    ]
    assert [list(b) for b in batches][0] == ["left", "front", "rear"]  # arrival order
    assert list(stamp_batches([])) == []


def BatchEngine(batch_size: int, dynamic: bool, input_shape=(32, 48)) -> FakeEngine:
    return FakeEngine(input_shape=input_shape, batch_size=batch_size, dynamic_batch=dynamic)


def _frames(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.mark.parametrize(
    "batch,dynamic,n,expected_batches",
    [
        (4, True, 3, [3]),  # fewer frames: a smaller batch, no padding
        (4, False, 3, [4]),  # fixed batch: padded
        (2, True, 5, [2, 2, 1]),  # more frames than the batch: chunks
        (2, False, 3, [2, 2]),
    ],
)
def test_infer_batch_returns_each_frame_as_if_run_alone(
    batch, dynamic, n, expected_batches
) -> None:
    engine = BatchEngine(batch, dynamic)
    frames = _frames([(32, 48)] * n)
    results = infer_batch(engine, frames, (32, 48))
    assert engine.batches == expected_batches
    assert len(results) == n
    for frame, (labels, confidence) in zip(frames, results):
        ref_labels, ref_conf = expected_outputs(frame)
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_array_equal(confidence, ref_conf)


def test_infer_batch_resizes_each_camera_to_the_engine_and_back() -> None:
    engine = BatchEngine(3, True, input_shape=(32, 48))
    frames = _frames([(64, 96), (32, 48), (16, 24)])
    results = infer_batch(engine, frames, (32, 48))
    assert engine.batches == [3]
    assert [r[0].shape for r in results] == [(64, 96), (32, 48), (16, 24)]
    assert all(r[0].dtype == np.uint8 and r[1].dtype == np.float32 for r in results)
    np.testing.assert_array_equal(
        results[1][1], expected_outputs(frames[1])[1]
    )  # same size: untouched


def test_single_frame_engines_run_frame_by_frame() -> None:
    engine = FakeEngine()  # no batch_size: any size, one frame a call
    frames = _frames([(20, 30), (40, 50)])
    results = infer_batch(engine, frames, None)
    assert engine.calls == 2
    np.testing.assert_array_equal(results[1][0], expected_outputs(frames[1])[0])
