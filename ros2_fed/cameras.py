"""Surround cameras: one fed_node, N cameras, one batched engine.

Why one process: N single-camera nodes hold N copies of the engine and N runtimes that fight
over the same cores (or GPU); one node holds one engine and runs the newest frame of every
camera that has one as a single batch. Scheduling is latest-frame-wins per camera
(:class:`CameraMailbox`): a camera that is slow or stopped simply has nothing pending, so it
never delays the others by more than the batch in flight.

Camera ``""`` is the single-camera node of before (input ``image``, outputs ``~/<output>``);
a named camera ``front`` reads ``front/image`` and writes ``~/front/<output>``. Pure: no
rclpy, no torch (the node and the tests share it).
"""

from __future__ import annotations

import re
import threading
from typing import Any, Generic, Mapping, Optional, Sequence, TypeVar

import numpy as np

T = TypeVar("T")

SINGLE_CAMERA = ""  # the name of the one camera of a node without a ``cameras`` list
MAX_CAMERAS = 16
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # one ROS name token: no '/', '~' or '{'


def camera_problems(names: Sequence[str]) -> list[str]:
    """Why a ``cameras`` list is unusable (distinct ROS name tokens); empty when fine."""
    problems = [
        f"cameras: {name!r} is not a valid name (a letter, then letters, digits or '_')"
        for name in names
        if not CAMERA_NAME.match(str(name))
    ]
    duplicates = sorted({str(n) for n in names if list(names).count(n) > 1})
    if duplicates:
        problems.append(f"cameras: {', '.join(duplicates)} listed more than once")
    if len(names) > MAX_CAMERAS:
        problems.append(f"cameras: {len(names)} cameras, at most {MAX_CAMERAS}")
    return problems


def camera_names(cameras: Sequence[str]) -> tuple[str, ...]:
    """The cameras a node serves: the list, or the single unnamed camera when it is empty."""
    return tuple(str(c) for c in cameras) or (SINGLE_CAMERA,)


def input_topic(camera: str, compressed: bool) -> str:
    """The (relative, remappable) input topic of ``camera``."""
    base = f"{camera}/image" if camera else "image"
    return base + "/compressed" if compressed else base


def output_topic(camera: str, output: str) -> str:
    """The private topic of one output of ``camera`` (``~/overlay``, ``~/front/overlay``)."""
    return f"~/{camera}/{output}" if camera else f"~/{output}"


class CameraMailbox(Generic[T]):
    """One slot per camera: ``put`` replaces that camera's pending item, ``take_all`` blocks until
    any camera has one and takes every pending item at once (the next batch).

    Why: the engine must always work on the newest frame of each camera; anything older that
    has not started is worthless (bounded memory and latency), and a camera that stopped must
    not hold the others back.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: dict[str, T] = {}
        self._closed = False

    def put(self, camera: str, item: T) -> bool:
        """Store ``item`` for ``camera``; True when it replaced (dropped) one nobody had taken."""
        with self._cond:
            dropped = camera in self._items
            self._items[camera] = item
            self._cond.notify()
            return dropped

    def take_all(self, timeout: Optional[float] = None) -> Optional[dict[str, T]]:
        """Every pending item by camera (removing them), or None on close / timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout):
                return None
            if self._closed:
                return None
            items, self._items = self._items, {}
            return items

    def pending(self, camera: Optional[str] = None) -> bool:
        """True when ``camera`` (any camera when None) has an item waiting."""
        with self._cond:
            return bool(self._items) if camera is None else camera in self._items

    def close(self) -> None:
        """Wake the consumer for good (pending items are discarded)."""
        with self._cond:
            self._closed = True
            self._items = {}
            self._cond.notify_all()


# --------------------------------------------------------------------------------------
# Batched inference at each camera's own size
# --------------------------------------------------------------------------------------


def engine_batch(engine: Any) -> tuple[int, bool]:
    """(largest batch, whether smaller batches run as they are) of an engine; (1, False) for
    an engine without batch support."""
    return max(1, int(getattr(engine, "batch_size", 1) or 1)), bool(
        getattr(engine, "dynamic_batch", False)
    )


def to_engine_size(rgb: np.ndarray, shape: Optional[tuple[int, int]]) -> np.ndarray:
    """The frame at the engine's input size (area resize on the host when it differs)."""
    if shape is None or tuple(shape) == tuple(rgb.shape[:2]):
        return np.ascontiguousarray(rgb)
    import cv2

    return cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def to_camera_size(
    labels: np.ndarray, confidence: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Engine outputs back at the camera's (H, W): nearest for labels, linear for confidence."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    confidence = np.ascontiguousarray(confidence, dtype=np.float32)
    if labels.shape[:2] == tuple(size):
        return labels, confidence
    import cv2

    h, w = size
    return (
        cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST),
        cv2.resize(confidence, (w, h), interpolation=cv2.INTER_LINEAR),
    )


def infer_batch(
    engine: Any, frames: Sequence[np.ndarray], shape: Optional[tuple[int, int]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labels, confidence) for each frame, at that frame's own size, in order.

    Frames are resized to the engine's ``shape`` (cameras of any size share one engine) and
    run in chunks of the engine's batch. A chunk smaller than the batch runs as it is on a
    dynamic-batch engine and is padded with copies of its last frame on a fixed-batch one
    (padding costs whole frames on a CPU, so dynamic batches are the default export). An
    engine that takes any size (``shape`` None) runs frame by frame.
    """
    max_batch, dynamic = engine_batch(engine)
    if shape is None or max_batch == 1:
        return [
            to_camera_size(*engine.infer(to_engine_size(f, shape)), f.shape[:2]) for f in frames
        ]
    inputs = [to_engine_size(f, shape) for f in frames]
    results: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(inputs), max_batch):
        chunk = inputs[start : start + max_batch]
        padded = chunk if dynamic else chunk + [chunk[-1]] * (max_batch - len(chunk))
        labels, confidence = engine.infer(np.stack(padded))
        for i, frame in enumerate(frames[start : start + len(chunk)]):
            results.append(to_camera_size(labels[i], confidence[i], frame.shape[:2]))
    return results


# --------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------

#: Per-camera counters that are summed into the node's totals.
SUMMED_VALUES = (
    "frames_received",
    "frames_processed",
    "frames_dropped",
    "bad_input_total",
    "inference_errors",
)
SUMMED_RATES = ("input_rate_hz", "output_rate_hz")
SHARED_VALUES = ("state", "engine_input_shape")  # the same for every camera: said once


class BatchCounter:
    """How full the batches are: frames run / batches run (written by the worker only)."""

    def __init__(self) -> None:
        self.batches = 0
        self.frames = 0

    def on_batch(self, frames: int) -> None:
        self.batches += 1
        self.frames += int(frames)

    def values(self) -> dict[str, str]:
        mean = self.frames / self.batches if self.batches else 0.0
        return {"engine_batches": str(self.batches), "engine_frames_per_batch": f"{mean:.2f}"}


def camera_totals(
    per_camera: Mapping[str, Mapping[str, str]],
    batch: tuple[int, bool],
    counter: Optional[BatchCounter] = None,
) -> dict[str, str]:
    """The key/values of a multi-camera pipeline status: totals over the cameras, the engine's
    batch and how full its batches were, then every camera's own values prefixed ``NAME.``."""
    first = next(iter(per_camera.values()))
    values: dict[str, str] = {key: first[key] for key in SHARED_VALUES if key in first}
    values["cameras"] = ",".join(per_camera)
    values["engine_batch"] = f"{batch[0]}" + (" (dynamic: 1..%d)" % batch[0] if batch[1] else "")
    values.update(counter.values() if counter is not None else {})
    for key in SUMMED_VALUES:
        values[key] = str(sum(int(v.get(key, 0)) for v in per_camera.values()))
    for key in SUMMED_RATES:
        values[key] = f"{sum(float(v.get(key, 0.0)) for v in per_camera.values()):.2f}"
    for name, camera_values in per_camera.items():
        values.update(
            {f"{name}.{k}": v for k, v in camera_values.items() if k not in SHARED_VALUES}
        )
    return values
