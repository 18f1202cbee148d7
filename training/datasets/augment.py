"""The segmentation backbone's usual training augmentation, applied jointly to image and label.

Random rescale (factor uniform in ``scale_range`` of the *input* size; image bilinear, label
nearest so no new class ids appear), pad to at least the crop (image with 0, label with 255 so
padding never counts as a class), random crop, random horizontal flip. ``cat_max_ratio`` is
MMSegmentation's ``RandomCrop`` option (retry up to 10 crops while one class covers more than
that fraction of the labelled pixels); 1.0 disables it.

Randomness comes only from the ``np.random.Generator`` passed per call (``training.data`` passes
one seeded per sample, which makes resumed runs see identical crops) or, for standalone use,
from the augmenter's own generator created from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from training.datasets.base import VOID


def rescale(image: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize both by ``factor`` (image bilinear, label nearest)."""
    h, w = label.shape
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    if size == (w, h):
        return image, label
    return (
        cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
        cv2.resize(label, size, interpolation=cv2.INTER_NEAREST),
    )


def pad_to(
    image: np.ndarray, label: np.ndarray, height: int, width: int, ignore_index: int = VOID
) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right to at least (height, width): image with 0, label with ``ignore_index``."""
    h, w = label.shape
    ph, pw = max(0, height - h), max(0, width - w)
    if ph == 0 and pw == 0:
        return image, label
    image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=int(ignore_index))
    return image, label


def _crop_origin(
    label: np.ndarray,
    height: int,
    width: int,
    rng: np.random.Generator,
    cat_max_ratio: float,
    ignore_index: int,
) -> tuple[int, int]:
    h, w = label.shape
    y = x = 0
    for _ in range(10 if cat_max_ratio < 1.0 else 1):
        y = int(rng.integers(0, h - height + 1))
        x = int(rng.integers(0, w - width + 1))
        if cat_max_ratio >= 1.0:
            break
        counts = np.bincount(label[y : y + height, x : x + width].ravel(), minlength=256)
        counts[ignore_index] = 0
        if counts.sum() == 0 or counts.max() / counts.sum() < cat_max_ratio:
            break
    return y, x


@dataclass
class JointAugment:
    """Callable ``(image, label, rng=None) -> (image, label)``; picklable for DataLoader workers.

    ``crop`` is (height, width) or None (no crop). ``seed`` seeds the fallback generator used
    when no ``rng`` is passed, for reproducible standalone use.
    """

    crop: Optional[tuple[int, int]] = (512, 1024)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    flip_prob: float = 0.5
    cat_max_ratio: float = 0.75
    ignore_index: int = VOID
    seed: Optional[int] = None
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {self.scale_range}")
        if self.crop is not None and (self.crop[0] <= 0 or self.crop[1] <= 0):
            raise ValueError(f"crop must be positive, got {self.crop}")
        self._rng = np.random.default_rng(self.seed)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: Optional[np.random.Generator] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if image.shape[:2] != label.shape:
            raise ValueError(f"image {image.shape[:2]} and label {label.shape} differ in size")
        rng = self._rng if rng is None else rng
        lo, hi = self.scale_range
        image, label = rescale(image, label, float(rng.uniform(lo, hi)) if hi > lo else lo)
        if self.crop is not None:
            ch, cw = self.crop
            image, label = pad_to(image, label, ch, cw, self.ignore_index)
            y, x = _crop_origin(label, ch, cw, rng, self.cat_max_ratio, self.ignore_index)
            image, label = image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]
        if self.flip and rng.random() < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


def make_train_augment(
    crop: Optional[tuple[int, int]] = (512, 1024),
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    cat_max_ratio: float = 0.75,
    ignore_index: int = VOID,
    seed: Optional[int] = None,
) -> JointAugment:
    """The paper's backbone augmentation (rescale 0.5-2.0, crop, flip) with MMSeg defaults."""
    return JointAugment(
        crop=tuple(crop) if crop is not None else None,
        scale_range=tuple(scale_range),
        flip=flip,
        cat_max_ratio=cat_max_ratio,
        ignore_index=ignore_index,
        seed=seed,
    )
