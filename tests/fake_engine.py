"""A deterministic stand-in for ``ros2_fed.engine`` engines, for the node tests.

Why: the node tests check plumbing (headers, decoding, drops, alerts), so the "model" must be
instant (or take exactly ``delay_s``) and its output must be recomputable in the test from the
frame alone: labels = R mod ``num_classes``, confidence = G / 255. Scripting the G channel
therefore scripts the confidence the alert logic sees.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from ros2_fed.names import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

CLASS_NAMES: tuple[str, ...] = CITYSCAPES_CLASSES
PALETTE: tuple[tuple[int, int, int], ...] = CITYSCAPES_PALETTE


def expected_outputs(
    image: np.ndarray, num_classes: int = len(CLASS_NAMES)
) -> tuple[np.ndarray, np.ndarray]:
    """What :class:`FakeEngine` returns for ``image`` (HxWx3 uint8 RGB), computed independently."""
    labels = (image[..., 0] % num_classes).astype(np.uint8)
    confidence = image[..., 1].astype(np.float32) / np.float32(255.0)
    return labels, confidence


class FakeEngine:
    """The :class:`ros2_fed.engine.base.InferenceEngine` interface:
    ``infer(rgb) -> (labels uint8 HxW, confidence float32 HxW)``."""

    path = None  # no engine file

    def __init__(
        self,
        delay_s: float = 0.0,
        input_shape: Optional[tuple[int, int]] = None,
        batch_size: int = 1,
        dynamic_batch: bool = False,
    ) -> None:
        self.delay_s = float(delay_s)
        #: > 1: also takes (B, H, W, 3) batches (exactly B unless dynamic_batch), one delay
        #: per batch.
        self.batch_size, self.dynamic_batch = int(batch_size), bool(dynamic_batch)
        self.batches: list[int] = []  # the size of every batch run
        #: None = any image size; (H, W) = refuse other sizes, like a real engine (node resizes).
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.calls = 0
        self.metadata: dict[str, Any] = {
            "class_names": list(CLASS_NAMES),
            "palette": [list(c) for c in PALETTE],
            "score": "fed",
            "runtime": "fake",
            "name": "fake-engine",
        }

    def close(self) -> None:
        """Nothing to release."""

    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim == 4 and self.batch_size > 1:
            return self._infer_batch(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"FakeEngine wants HxWx3 uint8, got {image.shape} {image.dtype}")
        if self.input_shape is not None and image.shape[:2] != self.input_shape:
            raise ValueError(f"FakeEngine built for {self.input_shape}, got {image.shape[:2]}")
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        self.calls += 1
        return expected_outputs(image)

    def _infer_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = batch.shape[0]
        if n > self.batch_size or (not self.dynamic_batch and n != self.batch_size):
            raise ValueError(
                f"FakeEngine: batch {n} on a "
                f"{'1..' if self.dynamic_batch else ''}{self.batch_size} engine"
            )
        delay, self.delay_s = self.delay_s, 0.0  # one delay for the whole batch
        try:
            outs = [self.infer(frame) for frame in batch]
        finally:
            self.delay_s = delay
        if delay > 0:
            time.sleep(delay)
        self.calls += 1 - n
        self.batches.append(n)
        return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])


def make(
    delay_s: float = 0.0, input_shape: Optional[tuple[int, int]] = None, batch_size: int = 1
) -> FakeEngine:
    """Factory used by the node harness process (batch_size > 1: a dynamic-batch engine)."""
    return FakeEngine(
        delay_s=delay_s,
        input_shape=input_shape,
        batch_size=batch_size,
        dynamic_batch=batch_size > 1,
    )
