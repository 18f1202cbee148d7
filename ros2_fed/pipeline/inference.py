"""The engine run on camera frames: each frame at the engine's size, in batches, and back.

Why here and not in the engine: engines are built per input size and batch, cameras are not.
Frames of any size share one engine (host resize, area) and come back at their own size
(nearest for labels, linear for confidence); a set of frames runs in chunks of the engine's
batch (a smaller chunk as it is on a dynamic-batch engine, padded on a fixed one). Pure: numpy
and OpenCV, no rclpy, no torch.
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import numpy as np

from ros2_fed.engine.base import InferenceEngine

from .params import StartupError

FALLBACK_SHAPE = (480, 640)  # warm-up frame size for an engine that takes any size
Size = tuple[int, int]
Outputs = tuple[np.ndarray, np.ndarray]  # labels (uint8), confidence (float32)


def engine_shape(engine: InferenceEngine) -> Optional[Size]:
    """(H, W) the engine takes, or None when it takes any size."""
    shape = engine.input_shape
    if shape is not None and len(tuple(shape)) >= 2:
        dims = tuple(int(v) for v in tuple(shape)[:2])
        return (dims[0], dims[1]) if all(d > 0 for d in dims) else None
    return None


def engine_batch(engine: InferenceEngine) -> tuple[int, bool]:
    """(largest batch, whether smaller batches run as they are) of an engine."""
    return max(1, int(engine.batch_size or 1)), bool(engine.dynamic_batch)


def needs_resize(shape: Optional[Size], rgb: np.ndarray) -> bool:
    """Whether a camera frame must be resized on the host for an engine of this shape."""
    return shape is not None and tuple(shape) != tuple(rgb.shape[:2])


def to_engine_size(rgb: np.ndarray, shape: Optional[Size]) -> np.ndarray:
    """The frame at the engine's input size (area resize on the host when it differs)."""
    if shape is None or tuple(shape) == tuple(rgb.shape[:2]):
        return np.ascontiguousarray(rgb)
    import cv2

    return cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def to_camera_size(labels: np.ndarray, confidence: np.ndarray, size: Sequence[int]) -> Outputs:
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
    engine: InferenceEngine, frames: Sequence[np.ndarray], shape: Optional[Size]
) -> list[Outputs]:
    """(labels, confidence) for each frame, at that frame's own size, in order.

    Frames are resized to the engine's ``shape`` and run in chunks of the engine's batch. A
    chunk smaller than the batch runs as it is on a dynamic-batch engine and is padded with
    copies of its last frame on a fixed-batch one (padding costs whole frames on a CPU, so
    dynamic batches are the default export). An engine that takes any size (``shape`` None)
    runs frame by frame.
    """
    max_batch, dynamic = engine_batch(engine)
    if shape is None or max_batch == 1:
        return [
            to_camera_size(*engine.infer(to_engine_size(f, shape)), f.shape[:2]) for f in frames
        ]
    inputs = [to_engine_size(f, shape) for f in frames]
    results: list[Outputs] = []
    for start in range(0, len(inputs), max_batch):
        chunk = inputs[start : start + max_batch]
        padded = chunk if dynamic else chunk + [chunk[-1]] * (max_batch - len(chunk))
        labels, confidence = engine.infer(np.stack(padded))
        for i, frame in enumerate(frames[start : start + len(chunk)]):
            results.append(to_camera_size(labels[i], confidence[i], frame.shape[:2]))
    return results


def infer_at_camera_size(
    engine: InferenceEngine, rgb: np.ndarray, shape: Optional[Size]
) -> Outputs:
    """Labels (uint8) and confidence (float32) of one frame at the camera resolution."""
    return infer_batch(engine, [rgb], shape)[0]  # any engine: batch 1, dynamic or fixed batch


def warm_up(engine: InferenceEngine, runs: int, shape: Optional[Size]) -> float:
    """Run ``runs`` dummy batches (a full batch each) of the engine's size; mean ms per batch
    (nan when none). StartupError when the engine fails on them."""
    if runs <= 0:
        return math.nan
    h, w = shape or FALLBACK_SHAPE
    dummies = [np.full((h, w, 3), 127, dtype=np.uint8)] * engine_batch(engine)[0]
    t0 = time.monotonic()
    try:
        for _ in range(runs):
            infer_batch(engine, dummies, shape)
    except Exception as exc:
        raise StartupError(
            f"engine warm-up failed on a {h}x{w} frame: {type(exc).__name__}: {exc}"
        ) from exc
    return (time.monotonic() - t0) / runs * 1e3
