"""SegmentMeIfYouCan's component-level metrics: sIoU per ground-truth component, PPV per
predicted component and the mean F1 over sIoU thresholds 0.25..0.75.

Why: pooled pixel AP and FPR95 are dominated by large, close objects; a small far object barely
counts. The benchmark's component metrics count every object once, whatever its size.

Reproduced from the public benchmark code, github.com/SegmentMeIfYouCan/road-anomaly-benchmark
at commit 1c7804e0749686452eb02bbcfb81234e38795f8a ("metrics: fix best-f1 threshold selection",
2023-08-24), ``road_anomaly_benchmark/metrics/instance_segmentation.py`` (``default_instancer``,
``segment_metrics``, ``MetricSegment``) and ``pixel_classification_curves.py``
(``best_f1_threshold``):

- binary threshold: the score threshold with the best pixel F1 over the whole evaluated split
  (``MetricSegment.get_thresh_p_from_curve`` reads ``best_f1_threshold`` of the pooled pixel
  curve; void pixels excluded); a pixel is anomalous iff ``score > threshold``. The benchmark
  reads it from a binned curve (768 percentile bins per frame); here it comes from the exact
  curve (``metrics.BinaryCurve.f1_optimal``), the limit of infinitely fine bins;
- predicted pixels on void are dropped before labelling; components are 8-connected (scipy's
  ``label`` with a 3x3 structure of ones there, OpenCV ``connectivity=8`` here);
- size limits (pixels of the evaluated image, as in the benchmark's configs): predicted
  components smaller than ``min_pred_size`` are removed (``thresh_segsize``), ground-truth
  components smaller than ``min_gt_size`` become void (``thresh_instsize``), and with them the
  predicted pixels on them. ``SegEval-AnomalyTrack`` 500 / 100, ``SegEval-ObstacleTrack`` 50 / 10;
- sIoU of a ground-truth component G: |G ∩ P| / |G ∪ P| with P the union of the predicted
  components touching G, minus the pixels of P on *other* ground-truth components ("adjusted");
  PPV of a predicted component: the share of its pixels on any ground-truth component;
- at each sIoU threshold t in ``linspace(0.25, 0.75, 11)``: TP = ground-truth components with
  sIoU >= t, FN = the others, FP = predicted components with PPV < t, counted over every frame;
  F1_t = 2 TP / (2 TP + FN + FP); mean F1 = the mean of the 11. Mean sIoU and mean PPV pool
  every component of the split.

The core is pure numpy + OpenCV: ``fed_eval`` and the rosbag replay call it alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import cv2
import numpy as np

VOID = 255

#: The benchmark's sIoU thresholds, ``np.linspace(0.25, 0.75, 11, endpoint=True)``.
SIOU_THRESHOLDS = np.linspace(0.25, 0.75, 11, endpoint=True)


@dataclass(frozen=True)
class Track:
    """One of the benchmark's ``MetricSegment`` configurations."""

    name: str
    min_pred_size: int  # thresh_segsize: smaller predicted components are dropped
    min_gt_size: int  # thresh_instsize: smaller ground-truth components become void


#: ``MetricSegment.configs``: RoadAnomaly21-style data and RoadObstacle21-style data.
TRACKS: dict[str, Track] = {
    "anomaly": Track("SegEval-AnomalyTrack", 500, 100),
    "obstacle": Track("SegEval-ObstacleTrack", 50, 10),
}


@dataclass
class FrameComponents:
    """One frame's components: sIoU per ground-truth one, sIoU and PPV per predicted one."""

    siou_gt: np.ndarray
    siou_pred: np.ndarray
    ppv: np.ndarray
    size_gt: np.ndarray
    size_pred: np.ndarray

    def counts(self, t: float) -> tuple[int, int, int]:
        """(TP, FN, FP) at sIoU threshold ``t``."""
        tp = int(np.count_nonzero(self.siou_gt >= t))
        return tp, int(self.siou_gt.size) - tp, int(np.count_nonzero(self.ppv < t))


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: (labels int32, count incl. background 0)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return labels, int(n)


def frame_components(predicted: np.ndarray, truth: np.ndarray, track: Track) -> FrameComponents:
    """The benchmark's ``default_instancer`` + ``segment_metrics`` for one frame.

    ``predicted``: bool HxW, the thresholded score (``score > threshold``); ``truth``: uint8 HxW,
    0 in-distribution / 1 anomaly / 255 void."""
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction {predicted.shape} and truth {truth.shape} differ in shape")
    void = truth == VOID
    gt_lab, n_gt = _components(truth == 1)
    pred_lab, n_pred = _components(predicted.astype(bool) & ~void)
    pred_size = np.bincount(pred_lab.ravel(), minlength=n_pred)
    small = pred_size < track.min_pred_size
    small[0] = False  # the benchmark's loop visits the background too: zeros stay zeros
    if small.any():
        pred_lab = np.where(small[pred_lab], 0, pred_lab)
    # Ground-truth components below the limit become void; the benchmark's loop includes
    # label 0 (everything not anomalous), which a frame almost all anomaly would void too.
    gt_size = np.bincount(gt_lab.ravel(), minlength=n_gt)
    roi = ~void & ~(gt_size < track.min_gt_size)[gt_lab]
    return _segment_metrics(gt_lab[roi], pred_lab[roi])


def _segment_metrics(gt: np.ndarray, pred: np.ndarray) -> FrameComponents:
    """``segment_metrics`` on the region of interest's flat labels, from one contingency table
    (the benchmark loops with ``np.isin``; the sums are the same)."""
    gt_ids, g = np.unique(gt, return_inverse=True)
    pred_ids, p = np.unique(pred, return_inverse=True)
    # row / column 0 = background when present; shift so index 0 always is the background
    g = g + (0 if gt_ids.size and gt_ids[0] == 0 else 1)
    p = p + (0 if pred_ids.size and pred_ids[0] == 0 else 1)
    n_g = int(np.count_nonzero(gt_ids)) + 1
    n_p = int(np.count_nonzero(pred_ids)) + 1
    table = np.bincount(g * n_p + p, minlength=n_g * n_p).reshape(n_g, n_p).astype(np.int64)
    size_g, size_p = table.sum(axis=1), table.sum(axis=0)
    touch = table[1:, 1:] > 0  # (gt component, predicted component) overlap
    # ground-truth components: predicted components touching each, their pixels elsewhere
    inter_g = table[1:, 1:].sum(axis=1)
    union_k = touch @ size_p[1:]
    adjust_g = touch @ (size_p[1:] - table[0, 1:]) - inter_g
    siou_gt = inter_g / (union_k + size_g[1:] - inter_g - adjust_g)
    # predicted components: the ground-truth components each touches
    inter_p = table[1:, 1:].sum(axis=0)
    union_l = touch.T @ size_g[1:]
    adjust_p = touch.T @ (size_g[1:] - table[1:, 0]) - inter_p
    siou_pred = inter_p / (union_l + size_p[1:] - inter_p - adjust_p)
    return FrameComponents(
        siou_gt=siou_gt.astype(np.float64),
        siou_pred=siou_pred.astype(np.float64),
        ppv=(inter_p / size_p[1:]).astype(np.float64),
        size_gt=size_g[1:],
        size_pred=size_p[1:],
    )


@dataclass
class ComponentAccumulator:
    """``MetricSegment.aggregate``: counts per sIoU threshold and every component's values."""

    track: Track
    thresholds: np.ndarray = field(default_factory=lambda: SIOU_THRESHOLDS.copy())
    siou_gt: list[np.ndarray] = field(default_factory=list)
    siou_pred: list[np.ndarray] = field(default_factory=list)
    ppv: list[np.ndarray] = field(default_factory=list)
    frames: int = 0

    def __post_init__(self) -> None:
        self.tp = np.zeros(len(self.thresholds), np.int64)
        self.fn = np.zeros(len(self.thresholds), np.int64)
        self.fp = np.zeros(len(self.thresholds), np.int64)

    def add(self, frame: FrameComponents) -> None:
        for i, t in enumerate(self.thresholds):
            tp, fn, fp = frame.counts(float(t))
            self.tp[i] += tp
            self.fn[i] += fn
            self.fp[i] += fp
        self.siou_gt.append(frame.siou_gt)
        self.siou_pred.append(frame.siou_pred)
        self.ppv.append(frame.ppv)
        self.frames += 1

    def update(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        self.add(frame_components(predicted, truth, self.track))

    def summary(self) -> dict[str, Any]:
        """Mean sIoU (ground-truth components), mean PPV (predicted ones), F1 per threshold and
        their mean; an undefined value (no component) is NaN."""
        denominator = 2 * self.tp + self.fn + self.fp
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denominator > 0, 2 * self.tp / np.maximum(denominator, 1), np.nan)
        siou_gt, ppv = _pooled(self.siou_gt), _pooled(self.ppv)
        return {
            "track": self.track.name,
            "min_pred_size": self.track.min_pred_size,
            "min_gt_size": self.track.min_gt_size,
            "siou_gt": _mean(siou_gt),
            "siou_pred": _mean(_pooled(self.siou_pred)),
            "ppv": _mean(ppv),
            "f1_mean": float(np.mean(f1)) if not np.isnan(f1).any() else float("nan"),
            "f1": {f"{t:.2f}": float(v) for t, v in zip(self.thresholds, f1)},
            "tp": [int(v) for v in self.tp],
            "fn": [int(v) for v in self.fn],
            "fp": [int(v) for v in self.fp],
            "gt_components": int(siou_gt.size),
            "pred_components": int(ppv.size),
            "frames": self.frames,
        }


def _pooled(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def split_components(
    frames: Iterable[tuple[np.ndarray, np.ndarray]],
    threshold: float,
    track: Track,
) -> dict[str, Any]:
    """The metrics over a split from each frame's region-of-interest scores.

    ``frames``: (scores of the non-void pixels in row-major order, the frame's truth mask 0 / 1 /
    255) -- what a pooled exact accumulator keeps; void pixels never predict (the benchmark
    zeroes them), so these scores fix the whole thresholded frame."""
    acc = ComponentAccumulator(track)
    for scores, truth in frames:
        predicted = np.zeros(truth.shape, bool)
        predicted[truth != VOID] = np.asarray(scores).reshape(-1) > threshold
        acc.update(predicted, truth)
    out = acc.summary()
    out["threshold"] = float(threshold)
    return out


def method_components(
    accumulator: Any, truths: Sequence[np.ndarray], track: Optional[Track], probability: bool
) -> Optional[dict[str, Any]]:
    """One method's component metrics from the pooled OOD accumulator that scored it
    (``ros2_fed.eval.metrics.ExactAccumulator`` of its unit scores, ``score_scale.unit_scores``)
    and each frame's truth mask, in update order: thresholded at the split's best pixel F1.
    None without a track, without exact scores (histograms keep no pixels) or a defined F1.
    ``threshold`` is reported on the method's own score scale (``probability``: as scored; else
    back from the unit scale through the logit)."""
    if track is None or not hasattr(accumulator, "frame_scores"):
        return None
    threshold, _ = accumulator.curve().f1_optimal()
    if np.isnan(threshold):
        return None
    frames = zip(accumulator.frame_scores(), truths, strict=True)
    out = split_components(frames, threshold, track)
    if not probability:
        out["threshold"] = float(np.log(threshold) - np.log1p(-threshold))
    return out


def track_of(name: Optional[str]) -> Optional[Track]:
    """``TRACKS[name]``; None or "off" = no component metrics."""
    if name is None or name == "off":
        return None
    if name not in TRACKS:
        raise ValueError(f"unknown component track {name!r}; choose from {', '.join(TRACKS)}")
    return TRACKS[name]
