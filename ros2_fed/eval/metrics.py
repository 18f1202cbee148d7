"""Detection (OOD / misclassification) and segmentation metrics, exact and streaming.

Conventions (shared by every function and class here):

* Flat score/label pairs: label 1 (True) = **positive** = "the segmentation is wrong here"
  (misclassified or OOD); a **higher score = more likely positive** (like FED's ``p_wrong``
  and every baseline in ``ros2_fed.scores``). All metrics are fractions in [0, 1], not %.
* Thresholds are the distinct score values, scanned from the highest down, with **tied
  scores merged into one threshold** ("predict positive iff score >= t"), exactly as
  scikit-learn's ``roc_curve`` / ``precision_recall_curve`` / ``average_precision_score``:

  - ``auroc``: trapezoidal area under the ROC curve (ties give diagonal segments, i.e. a
    tied positive/negative pair counts 1/2), = ``sklearn.metrics.roc_auc_score``.
  - ``average_precision``: sum over thresholds of (recall increase) x precision, step-wise,
    no interpolation, = ``sklearn.metrics.average_precision_score``.
  - ``fpr_at_tpr``: false-positive rate at the FIRST threshold (highest score down) whose
    true-positive rate reaches ``tpr``, no interpolation, = ``fpr[np.argmax(tpr_arr >= 0.95)]``
    of ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

* Degenerate inputs (empty, or only one class present) return ``float('nan')`` from every
  detection metric, silently (no exception, no warning). Note: scikit-learn returns 1.0
  for the AP of an all-positive input and warns/raises for the others; here *all* metrics
  are NaN whenever one class is missing, so per-image averaging can skip such images
  uniformly. NaN scores raise ``ValueError`` (they have no place in a ranking).
* Callers normally pass only valid pixels; :func:`select_valid` (and the ``ignore_mask`` /
  ``ignore_index`` arguments of the accumulators) drop void pixels for them.
* Inputs may be numpy arrays, anything ``np.asarray`` accepts, or torch tensors (converted
  with ``.detach().cpu()``; torch is never imported here). Nothing imports rclpy.

Dataset-level evaluation without holding every pixel (hundreds of 2048x1024 frames):

* :class:`HistogramAccumulator` — pooled metrics (the OOD protocol: all pixels of the
  dataset pooled) from per-bin positive/negative counts. Its metrics are *exactly* the exact
  metrics of the scores quantised to their bin (a monotone map), so the only error is that
  scores sharing a bin become ties. That error is bounded *a posteriori*, exactly, from the
  histograms themselves (:func:`histogram_error_bound`, ``.auroc_error_bound()``,
  ``.*_bounds()``): the exact metric is guaranteed to lie in the returned interval.
  There is no data-independent bound (all scores in one bin can move AuROC by 0.5); for
  class score densities bounded by ``rho`` (per unit of the clipped, binned range) the AuROC
  error is <= ``0.5 * rho / bins`` and the FPR error <= ``rho_neg / bins``. In the tests,
  with ``DEFAULT_BINS = 2**16`` linear bins on [0, 1] and realistic continuous probability
  scores, all three metrics are within 1e-3 (in fact ~1e-5) of the exact values.
* :class:`ExactAccumulator` — same interface, keeps every (score, label) pair: the reference.
* :class:`PerImageAverager` — the IDM protocol: exact metrics per image, averaged over
  images; images with a single class (or no valid pixel) are skipped and counted.

Segmentation: :func:`confusion_matrix` (np.bincount), streaming :class:`ConfusionMatrix`,
:func:`miou`, open-set :func:`open_miou` with the rejection threshold from
:func:`f1_optimal_threshold` averaged over images (:func:`mean_f1_threshold`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "DEFAULT_BINS",
    "BinaryCurve",
    "binary_curve",
    "select_valid",
    "auroc",
    "average_precision",
    "fpr_at_tpr",
    "binary_metrics",
    "histogram_error_bound",
    "ExactAccumulator",
    "HistogramAccumulator",
    "PerImageAverager",
    "f1_optimal_threshold",
    "mean_f1_threshold",
    "confusion_matrix",
    "ConfusionMatrix",
    "miou",
    "open_confusion_matrix",
    "open_miou",
]

#: Default number of histogram bins: 2**16 (1 MiB of int64 counts) keeps the pooled
#: AuROC / AP / FPR95 of continuous probability scores within ~1e-5 of the exact values.
DEFAULT_BINS: int = 2**16

#: Default range of the logit-scale histogram (in probability space): logits in about
#: [-27.6, 27.6], i.e. ~8e-4 relative resolution near 0 and 1 with DEFAULT_BINS.
DEFAULT_LOGIT_RANGE: Tuple[float, float] = (1e-12, 1.0 - 1e-12)

_NAN = float("nan")


# --------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    """Flat-able numpy view of an array-like or torch tensor (no torch import needed)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, duck-typed
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()  # numpy has no bfloat16
        x = x.numpy()
    return np.asarray(x)


def _as_scores(scores: Any) -> np.ndarray:
    s = _to_numpy(scores).reshape(-1)
    if s.dtype == np.bool_:
        s = s.astype(np.uint8)
    elif s.dtype == np.float16:
        s = s.astype(np.float32)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if s.dtype.kind == "f" and s.size and np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s


def _as_labels(labels: Any, n: int) -> np.ndarray:
    y = _to_numpy(labels).reshape(-1)
    if y.size != n:
        raise ValueError(f"scores and labels differ in size: {n} vs {y.size}")
    if y.dtype == np.bool_:
        return y
    if y.size and not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1 or bool (drop void pixels with select_valid)")
    return y.astype(bool)


def select_valid(
    scores: Any,
    labels: Any,
    ignore_mask: Any = None,
    ignore_index: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Flatten and drop ignored pixels; return ``(scores, labels as bool)``.

    ``ignore_mask`` (True = ignore) and/or ``ignore_index`` (a label value such as 255 for
    void) select the pixels to drop, so the metric functions only ever see 0/1 labels.
    """
    s = _to_numpy(scores).reshape(-1)
    y = _to_numpy(labels).reshape(-1)
    if y.size != s.size:
        raise ValueError(f"scores and labels differ in size: {s.size} vs {y.size}")
    keep = None
    if ignore_mask is not None:
        m = _to_numpy(ignore_mask).reshape(-1)
        if m.size != s.size:
            raise ValueError(f"ignore_mask has {m.size} elements, scores {s.size}")
        keep = ~m.astype(bool)
    if ignore_index is not None and y.dtype != np.bool_:
        k = y != ignore_index
        keep = k if keep is None else keep & k
    if keep is not None:
        s, y = s[keep], y[keep]
    s = _as_scores(s)
    return s, _as_labels(y, s.size)


# --------------------------------------------------------------------------------------
# The curve every detection metric is read from
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BinaryCurve:
    """Cumulative counts at the distinct thresholds, highest threshold first.

    ``tps[i]`` / ``fps[i]``: positives / negatives with score >= ``thresholds[i]``.
    One sort gives all metrics; the histogram accumulator builds the same object from bin
    counts, so exact and streaming metrics share one implementation.
    """

    thresholds: np.ndarray  # (k,) descending
    tps: np.ndarray  # (k,) int64, non-decreasing
    fps: np.ndarray  # (k,) int64, non-decreasing

    @property
    def n_pos(self) -> int:
        return int(self.tps[-1]) if self.tps.size else 0

    @property
    def n_neg(self) -> int:
        return int(self.fps[-1]) if self.fps.size else 0

    @property
    def degenerate(self) -> bool:
        """True when AuROC/AP/FPR are undefined (empty or a single class)."""
        return self.n_pos == 0 or self.n_neg == 0

    def auroc(self) -> float:
        """Trapezoidal ROC area (ties: diagonal segment), as ``roc_auc_score``."""
        if self.degenerate:
            return _NAN
        tps = np.concatenate(([0], self.tps)).astype(np.float64)
        fps = np.concatenate(([0], self.fps)).astype(np.float64)
        area2 = float(np.sum(np.diff(fps) * (tps[1:] + tps[:-1])))
        return area2 / (2.0 * self.n_pos * self.n_neg)

    def average_precision(self) -> float:
        """Step-wise sum of (delta recall) x precision, as ``average_precision_score``."""
        if self.degenerate:
            return _NAN
        tps = self.tps.astype(np.float64)
        precision = tps / (tps + self.fps)
        recall = tps / tps[-1]
        return float(np.sum(np.diff(recall, prepend=0.0) * precision))

    def fpr_at_tpr(self, tpr: float = 0.95) -> float:
        """FPR at the first threshold (highest down) with TPR >= ``tpr``; no interpolation."""
        _check_tpr(tpr)
        if self.degenerate:
            return _NAN
        if tpr <= 0.0:
            return 0.0  # the (0, 0) point before any threshold, as roc_curve's first point
        i = _first_reaching(self.tps, tpr)
        return float(self.fps[i] / self.fps[-1])

    def f1_optimal(self) -> Tuple[float, float]:
        """``(threshold, best F1)``; predict positive iff ``score > threshold``.

        Any threshold in ``[t_{i+1}, t_i)`` gives the same decision on this data (``t_i``
        the best distinct score); the midpoint is returned so that averaging thresholds
        over images is not biased to one side. Equal F1: the highest threshold wins.
        """
        if self.degenerate:
            return _NAN, _NAN
        tps = self.tps.astype(np.float64)
        f1 = 2.0 * tps / (tps + self.fps + self.n_pos)
        i = int(np.argmax(f1))
        hi = float(self.thresholds[i])
        if i + 1 < self.thresholds.size:
            lo = float(self.thresholds[i + 1])
            t = lo + (hi - lo) / 2.0
            if not (lo <= t < hi):  # adjacent floats, or infinities
                t = lo
        else:
            t = float(np.nextafter(hi, -np.inf))
        return t, float(f1[i])

    def metrics(self, tpr: float = 0.95) -> Dict[str, float]:
        return {
            "auroc": self.auroc(),
            "ap": self.average_precision(),
            "fpr_at_tpr": self.fpr_at_tpr(tpr),
            "tpr": float(tpr),
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
        }


def _check_tpr(tpr: float) -> None:
    if not (0.0 <= tpr <= 1.0):
        raise ValueError(f"tpr must be in [0, 1], got {tpr}")


def _first_reaching(tps: np.ndarray, tpr: float) -> int:
    # Same float expression as sklearn (tps / tps[-1] >= tpr), so ties at 0.95 agree.
    return int(np.argmax(tps / tps[-1] >= tpr))


def _curve_from_sorted(s_desc: np.ndarray, y_desc: np.ndarray) -> BinaryCurve:
    if s_desc.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return BinaryCurve(s_desc, empty, empty)
    idx = np.flatnonzero(s_desc[1:] != s_desc[:-1])  # last index of each tie group
    idx = np.append(idx, s_desc.size - 1)
    tps = np.cumsum(y_desc, dtype=np.int64)[idx]
    fps = (idx + 1).astype(np.int64) - tps
    return BinaryCurve(s_desc[idx], tps, fps)


def binary_curve(scores: Any, labels: Any) -> BinaryCurve:
    """Sort once (O(n log n)) and return the tie-merged cumulative counts."""
    s = _as_scores(scores)
    y = _as_labels(labels, s.size)
    order = np.argsort(s)[::-1]  # ties are merged afterwards, so stability is irrelevant
    return _curve_from_sorted(s[order], y[order])


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (= ``sklearn.metrics.roc_auc_score``); NaN if degenerate."""
    return binary_curve(scores, labels).auroc()


def average_precision(scores: Any, labels: Any) -> float:
    """Step-wise AP, ties merged (= ``sklearn.metrics.average_precision_score``); NaN if
    degenerate (including all-positive, where sklearn says 1.0)."""
    return binary_curve(scores, labels).average_precision()


def fpr_at_tpr(scores: Any, labels: Any, tpr: float = 0.95) -> float:
    """FPR at the first threshold where TPR >= ``tpr`` (FPR95 by default); NaN if degenerate."""
    return binary_curve(scores, labels).fpr_at_tpr(tpr)


def binary_metrics(scores: Any, labels: Any, tpr: float = 0.95) -> Dict[str, float]:
    """AuROC, AP and FPR@tpr from a single sort (use this on ~10M pixels, not three calls)."""
    return binary_curve(scores, labels).metrics(tpr)


# --------------------------------------------------------------------------------------
# Histogram error bounds
# --------------------------------------------------------------------------------------
def _harmonic_span(d: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``sum_{k=1..p} 1 / (d + k)`` for float ``d >= 0`` and int ``p >= 1``, vectorised.

    Up to 32 terms summed directly; the rest as psi(d+p+1) - psi(d+33) from the asymptotic
    series (arguments >= 33, truncation error < 1e-15 relative), with log1p for accuracy.
    """
    d = d.astype(np.float64)
    p = p.astype(np.int64)
    m = 32
    h = np.zeros_like(d)
    for k in range(1, m + 1):
        h += np.where(p >= k, 1.0 / (d + k), 0.0)
    big = p > m
    if np.any(big):
        a = d[big] + (m + 1)
        b = d[big] + p[big] + 1
        ia, ib = 1.0 / a, 1.0 / b
        tail = (
            np.log1p((b - a) / a)
            - 0.5 * (ib - ia)
            - (ib**2 - ia**2) / 12.0
            + (ib**4 - ia**4) / 120.0
            - (ib**6 - ia**6) / 252.0
        )
        h[big] += tail
    return h


def histogram_error_bound(pos_counts: Any, neg_counts: Any, tpr: float = 0.95) -> Dict[str, Any]:
    """Guaranteed intervals for the exact metrics, given only per-bin class counts.

    Bins are in ascending score order (any monotone quantisation). Within a bin the exact
    order of scores is unknown; the histogram metric treats them as one tie. Results:

    * ``auroc_error_bound = 0.5 * sum_b pos_b * neg_b / (P * N)`` (same-bin pairs counted
      1/2 instead of 0, 1/2 or 1); ``auroc_bounds`` = histogram AuROC +- that.
    * ``ap_bounds``: per bin, the best case puts all its positives first (tied), the worst
      puts its negatives first and positives one by one; the exact AP lies in between, and
      so does the histogram AP.
    * ``fpr_at_tpr_bounds``: the exact crossing lies in the bin where the histogram TPR
      reaches ``tpr``, so the exact FPR is in [FPR before that bin, histogram FPR]: the
      histogram value is an upper (pessimistic) bound.

    ``*_error_bound`` is the largest distance from the histogram value to its interval's
    ends. All NaN for degenerate counts.
    """
    _check_tpr(tpr)
    pos = np.asarray(pos_counts, dtype=np.int64).reshape(-1)
    neg = np.asarray(neg_counts, dtype=np.int64).reshape(-1)
    curve = _curve_from_counts(pos, neg, np.arange(pos.size, dtype=np.float64))
    out: Dict[str, Any] = {}
    if curve.degenerate:
        for k in ("auroc", "ap", "fpr_at_tpr"):
            out[f"{k}_bounds"] = (_NAN, _NAN)
            out[f"{k}_error_bound"] = _NAN
        return out
    nz = (pos > 0) | (neg > 0)
    pb = pos[nz][::-1].astype(np.float64)  # descending score order, like the curve
    nb = neg[nz][::-1].astype(np.float64)
    P, N = float(curve.n_pos), float(curve.n_neg)

    a = curve.auroc()
    ea = 0.5 * float(np.sum(pb * nb)) / (P * N)
    out["auroc_bounds"] = (max(0.0, a - ea), min(1.0, a + ea))
    out["auroc_error_bound"] = ea

    ap = curve.average_precision()
    t_above = np.concatenate(([0.0], curve.tps[:-1].astype(np.float64)))
    f_above = np.concatenate(([0.0], curve.fps[:-1].astype(np.float64)))
    has = pb > 0
    T, F, p, n = t_above[has], f_above[has], pb[has], nb[has]
    best = p * (T + p) / (T + F + p)
    worst = p - (F + n) * _harmonic_span(T + F + n, p.astype(np.int64))
    ap_hi = min(1.0, float(np.sum(best)) / P)
    ap_lo = max(0.0, float(np.sum(worst)) / P)
    ap_lo, ap_hi = min(ap_lo, ap), max(ap_hi, ap)  # guard against last-ulp rounding
    out["ap_bounds"] = (ap_lo, ap_hi)
    out["ap_error_bound"] = max(ap - ap_lo, ap_hi - ap)

    f = curve.fpr_at_tpr(tpr)
    if tpr <= 0.0:
        f_lo = 0.0
    else:
        i = _first_reaching(curve.tps, tpr)
        f_lo = float(curve.fps[i - 1]) / N if i > 0 else 0.0
    out["fpr_at_tpr_bounds"] = (f_lo, f)
    out["fpr_at_tpr_error_bound"] = f - f_lo
    return out


def _curve_from_counts(pos: np.ndarray, neg: np.ndarray, lower_edges: np.ndarray) -> BinaryCurve:
    nz = np.flatnonzero((pos > 0) | (neg > 0))[::-1]  # non-empty bins, highest first
    tps = np.cumsum(pos[nz], dtype=np.int64)
    fps = np.cumsum(neg[nz], dtype=np.int64)
    return BinaryCurve(lower_edges[nz], tps, fps)


# --------------------------------------------------------------------------------------
# Streaming accumulators
# --------------------------------------------------------------------------------------
class _Accumulator:
    """Shared interface: ``update`` per image, then pooled metrics over everything seen."""

    def __init__(self, ignore_index: Optional[int] = 255) -> None:
        self.ignore_index = ignore_index
        self._curve: Optional[BinaryCurve] = None

    def update(self, scores: Any, labels: Any, ignore_mask: Any = None) -> None:
        s, y = select_valid(scores, labels, ignore_mask, self.ignore_index)
        self._add(s, y)
        self._curve = None

    def _add(self, s: np.ndarray, y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _build_curve(self) -> BinaryCurve:  # pragma: no cover - abstract
        raise NotImplementedError

    def curve(self) -> BinaryCurve:
        if self._curve is None:
            self._curve = self._build_curve()
        return self._curve

    @property
    def n_pos(self) -> int:
        return self.curve().n_pos

    @property
    def n_neg(self) -> int:
        return self.curve().n_neg

    def auroc(self) -> float:
        return self.curve().auroc()

    def average_precision(self) -> float:
        return self.curve().average_precision()

    def fpr_at_tpr(self, tpr: float = 0.95) -> float:
        return self.curve().fpr_at_tpr(tpr)

    def summary(self, tpr: float = 0.95) -> Dict[str, Any]:
        return self.curve().metrics(tpr)


class ExactAccumulator(_Accumulator):
    """Keeps every valid (score, label) pair: exact pooled metrics, O(pixels) memory.

    The reference for :class:`HistogramAccumulator`, and fine for small sets.
    """

    def __init__(self, ignore_index: Optional[int] = 255) -> None:
        super().__init__(ignore_index)
        self._scores: List[np.ndarray] = []
        self._labels: List[np.ndarray] = []

    def _add(self, s: np.ndarray, y: np.ndarray) -> None:
        self._scores.append(np.array(s, copy=True))
        self._labels.append(np.array(y, copy=True))

    def _build_curve(self) -> BinaryCurve:
        if not self._scores:
            return binary_curve(np.zeros(0), np.zeros(0, dtype=bool))
        return binary_curve(np.concatenate(self._scores), np.concatenate(self._labels))

    def frame_scores(self) -> List[np.ndarray]:
        """The kept scores, one array per ``update`` (its valid pixels in row-major order)."""
        return list(self._scores)

    def merge(self, other: "ExactAccumulator") -> "ExactAccumulator":
        """Add another accumulator's pairs (e.g. another camera's): still exact."""
        if not isinstance(other, ExactAccumulator):
            raise TypeError("an exact accumulator cannot take a histogram's counts")
        self._scores.extend(np.array(s, copy=True) for s in other._scores)
        self._labels.extend(np.array(y, copy=True) for y in other._labels)
        self._curve = None
        return self

    def reset(self) -> None:
        self._scores.clear()
        self._labels.clear()
        self._curve = None


class HistogramAccumulator(_Accumulator):
    """Pooled metrics from per-bin positive/negative counts: O(bins) memory.

    ``bins`` equal-width bins over ``range`` (score space). Scores outside ``range`` are
    clipped into the end bins (still a monotone quantisation, so the bounds stay valid;
    choose the range to cover the scores of interest, e.g. a fixed max-logit span).
    ``scale="logit"`` (for probabilities) makes the bins equal-width in ``log(p/(1-p))``
    over ``range`` (default :data:`DEFAULT_LOGIT_RANGE`): uniform *relative* resolution near
    0 and 1, useful when most ``p_wrong`` values are tiny. ``scale="linear"`` with
    ``range=(0, 1)`` (the default) suits probabilities in general.

    The metrics equal the exact metrics of the quantised scores; the exact metrics of the
    original scores are guaranteed inside the intervals of :meth:`error_bounds`.
    """

    def __init__(
        self,
        bins: int = DEFAULT_BINS,
        range: Optional[Tuple[float, float]] = None,  # noqa: A002 - numpy's name
        scale: str = "linear",
        ignore_index: Optional[int] = 255,
    ) -> None:
        super().__init__(ignore_index)
        if int(bins) < 1:
            raise ValueError("bins must be >= 1")
        if scale not in ("linear", "logit"):
            raise ValueError(f"scale must be 'linear' or 'logit', got {scale!r}")
        if range is None:
            range = (0.0, 1.0) if scale == "linear" else DEFAULT_LOGIT_RANGE
        lo, hi = float(range[0]), float(range[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"range must be finite with lo < hi, got {range}")
        if scale == "logit" and not (0.0 < lo and hi < 1.0):
            raise ValueError("logit scale needs 0 < lo < hi < 1")
        self.bins = int(bins)
        self.range = (lo, hi)
        self.scale = scale
        t_lo, t_hi = self._transform(np.array([lo, hi])) if scale == "logit" else (lo, hi)
        self._tlo, self._thi = float(t_lo), float(t_hi)  # range in the binned coordinate
        self.counts = np.zeros(
            (self.bins, 2), dtype=np.int64
        )  # [:, 0] negatives, [:, 1] positives

    @staticmethod
    def _transform(p: np.ndarray) -> np.ndarray:
        return np.log(p) - np.log1p(-p)

    @property
    def pos_counts(self) -> np.ndarray:
        return self.counts[:, 1]

    @property
    def neg_counts(self) -> np.ndarray:
        return self.counts[:, 0]

    def bin_index(self, scores: Any) -> np.ndarray:
        """Monotone (non-decreasing) map from scores to bin indices 0..bins-1."""
        x = np.clip(_as_scores(scores).astype(np.float64), self.range[0], self.range[1])
        if self.scale == "logit":
            x = self._transform(x)
        idx = np.floor((x - self._tlo) * (self.bins / (self._thi - self._tlo)))
        return np.clip(idx, 0, self.bins - 1).astype(np.int64)

    def lower_edges(self) -> np.ndarray:
        """Lower edge of each bin in score space (the thresholds of the curve)."""
        t = self._tlo + (self._thi - self._tlo) * np.arange(self.bins) / self.bins
        if self.scale == "logit":
            return 1.0 / (1.0 + np.exp(-t))
        return t

    def _add(self, s: np.ndarray, y: np.ndarray) -> None:
        if s.size == 0:
            return
        code = self.bin_index(s) * 2 + y
        self.counts += np.bincount(code, minlength=2 * self.bins).reshape(self.bins, 2)

    def _build_curve(self) -> BinaryCurve:
        return _curve_from_counts(self.pos_counts, self.neg_counts, self.lower_edges())

    def merge(self, other: "HistogramAccumulator | ExactAccumulator") -> "HistogramAccumulator":
        """Add another accumulator's counts (e.g. from a parallel worker); same bins only.

        An :class:`ExactAccumulator`'s pairs are binned (what this histogram would have
        counted had it seen them)."""
        if isinstance(other, ExactAccumulator):
            for s, y in zip(other._scores, other._labels):
                self._add(s, y)
            self._curve = None
            return self
        if (other.bins, other.range, other.scale) != (self.bins, self.range, self.scale):
            raise ValueError("cannot merge histograms with different bins/range/scale")
        self.counts += other.counts
        self._curve = None
        return self

    def reset(self) -> None:
        self.counts[:] = 0
        self._curve = None

    def error_bounds(self, tpr: float = 0.95) -> Dict[str, Any]:
        """Guaranteed intervals for the exact metrics (see :func:`histogram_error_bound`)."""
        return histogram_error_bound(self.pos_counts, self.neg_counts, tpr)

    def auroc_error_bound(self) -> float:
        """``|AuROC_hist - AuROC_exact| <= 0.5 * sum_b pos_b neg_b / (P N)``, exactly."""
        return self.error_bounds()["auroc_error_bound"]

    def summary(self, tpr: float = 0.95) -> Dict[str, Any]:
        out = self.curve().metrics(tpr)
        b = self.error_bounds(tpr)
        out.update({k: v for k, v in b.items() if k.endswith("_error_bound")})
        return out


class PerImageAverager:
    """IDM protocol: exact metrics per image, averaged over images.

    Images with a single class (e.g. no misclassified pixel) or no valid pixel have no
    AuROC/AP/FPR; they are skipped and counted in ``n_skipped``, not averaged as 0 or 1.
    Also records each image's F1-optimal threshold (:func:`f1_optimal_threshold`) so one
    pass yields the open-mIoU threshold (:meth:`mean_f1_threshold`).
    """

    def __init__(self, tprs: Sequence[float] = (0.95,), ignore_index: Optional[int] = 255) -> None:
        for t in tprs:
            _check_tpr(t)
        self.tprs = tuple(float(t) for t in tprs)
        self.ignore_index = ignore_index
        self.per_image: List[Dict[str, float]] = []
        self.n_skipped = 0

    def update(
        self, scores: Any, labels: Any, ignore_mask: Any = None
    ) -> Optional[Dict[str, float]]:
        """Score one image; returns its metrics, or None if it was skipped."""
        s, y = select_valid(scores, labels, ignore_mask, self.ignore_index)
        c = binary_curve(s, y)
        if c.degenerate:
            self.n_skipped += 1
            return None
        m: Dict[str, float] = {"auroc": c.auroc(), "ap": c.average_precision()}
        for t in self.tprs:
            m[f"fpr@{t:g}"] = c.fpr_at_tpr(t)
        m["f1_threshold"], m["f1"] = c.f1_optimal()
        self.per_image.append(m)
        return m

    def merge(self, other: "PerImageAverager") -> "PerImageAverager":
        """Add another averager's images (e.g. another camera's); same TPRs only."""
        if other.tprs != self.tprs:
            raise ValueError(f"cannot merge averagers tracking TPRs {other.tprs} and {self.tprs}")
        self.per_image.extend(dict(m) for m in other.per_image)
        self.n_skipped += other.n_skipped
        return self

    @property
    def n_images(self) -> int:
        """Images that entered the averages."""
        return len(self.per_image)

    def _mean(self, key: str) -> float:
        if not self.per_image:
            return _NAN
        return float(np.mean([m[key] for m in self.per_image]))

    def auroc(self) -> float:
        return self._mean("auroc")

    def average_precision(self) -> float:
        return self._mean("ap")

    def fpr_at_tpr(self, tpr: float = 0.95) -> float:
        key = f"fpr@{float(tpr):g}"
        if key not in (f"fpr@{t:g}" for t in self.tprs):
            raise KeyError(f"tpr={tpr} not tracked; construct with tprs including it")
        return self._mean(key)

    def mean_f1_threshold(self) -> float:
        return self._mean("f1_threshold")

    def summary(self, tpr: float = 0.95) -> Dict[str, Any]:
        return {
            "auroc": self.auroc(),
            "ap": self.average_precision(),
            "fpr_at_tpr": self.fpr_at_tpr(tpr),
            "tpr": float(tpr),
            "f1_threshold": self.mean_f1_threshold(),
            "n_images": self.n_images,
            "n_skipped": self.n_skipped,
        }


# --------------------------------------------------------------------------------------
# F1-optimal threshold (the open-mIoU rejection threshold)
# --------------------------------------------------------------------------------------
def f1_optimal_threshold(scores: Any, labels: Any) -> float:
    """Threshold ``t`` maximising F1 of "wrong" when predicting wrong iff ``score > t``.

    Over all distinct cut points of this image; returns the midpoint between the best
    distinct score and the next lower one (any point in that interval decides the same;
    when all pixels should be flagged, the float just below the minimum). Ties in F1 go to
    the highest threshold. NaN for a single-class or empty image (F1 is then 0 for every
    threshold, or trivially 1).
    """
    return binary_curve(scores, labels).f1_optimal()[0]


def mean_f1_threshold(
    images: Iterable[Tuple[Any, Any]], ignore_index: Optional[int] = 255
) -> float:
    """Mean over images of the per-image F1-optimal threshold (the FED open-mIoU threshold).

    ``images`` yields ``(scores, labels)`` per image (labels: 1 = prediction wrong,
    including OOD; ``ignore_index`` dropped). Single-class images are skipped; NaN if none
    is left. :class:`PerImageAverager` gives the same number along with the IDM metrics.
    """
    ts = []
    for scores, labels in images:
        s, y = select_valid(scores, labels, None, ignore_index)
        t = binary_curve(s, y).f1_optimal()[0]
        if not math.isnan(t):
            ts.append(t)
    return float(np.mean(ts)) if ts else _NAN


# --------------------------------------------------------------------------------------
# Segmentation: confusion matrix, mIoU, open-mIoU
# --------------------------------------------------------------------------------------
def confusion_matrix(
    pred: Any, gt: Any, num_classes: int, ignore_index: Optional[int] = 255
) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts, rows = ground truth, cols = prediction.

    Pixels with ``gt == ignore_index`` are dropped; any other value outside
    ``[0, num_classes)`` (in gt or pred) raises, rather than silently corrupting counts.
    """
    p = _to_numpy(pred).reshape(-1)
    g = _to_numpy(gt).reshape(-1)
    if p.size != g.size:
        raise ValueError(f"pred and gt differ in size: {p.size} vs {g.size}")
    if ignore_index is not None:
        keep = g != ignore_index
        p, g = p[keep], g[keep]
    p = p.astype(np.int64)  # before the multiply: uint8 * 19 would overflow
    g = g.astype(np.int64)
    k = int(num_classes)
    if p.size:
        if g.min() < 0 or g.max() >= k:
            raise ValueError(f"gt values outside [0, {k}) other than ignore_index={ignore_index}")
        if p.min() < 0 or p.max() >= k:
            raise ValueError(f"pred values outside [0, {k})")
    return np.bincount(g * k + p, minlength=k * k).reshape(k, k)


def miou(conf: Any, num_known: Optional[int] = None) -> Tuple[float, np.ndarray]:
    """``(mean IoU, per-class IoU)`` from a confusion matrix (rows gt, cols pred).

    IoU_c = TP / (TP + FP + FN). A class absent from both gt and pred has IoU NaN and is
    left out of the mean (NaN if no class is present). ``num_known``: average only over the
    first ``num_known`` classes (open-mIoU); per-class IoU is still returned for all.
    """
    c = np.asarray(conf, dtype=np.float64)
    tp = np.diag(c)
    union = c.sum(axis=0) + c.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)
    sel = iou if num_known is None else iou[: int(num_known)]
    present = sel[~np.isnan(sel)]
    return (float(present.mean()) if present.size else _NAN), iou


def open_confusion_matrix(
    pred: Any,
    gt: Any,
    score: Any,
    threshold: float,
    num_classes: int,
    ignore_index: Optional[int] = 255,
) -> np.ndarray:
    """``(K+1, K+1)`` confusion matrix after rejecting ``score > threshold`` as "unknown".

    ``K = num_classes``; the unknown class has index K in both pred (rejected pixels) and gt
    (the caller labels OOD ground-truth pixels K). Sum these over images for a dataset.
    """
    p = _to_numpy(pred).reshape(-1).astype(np.int64)
    s = _as_scores(score)
    if s.size != p.size:
        raise ValueError(f"score and pred differ in size: {s.size} vs {p.size}")
    p = np.where(s > threshold, int(num_classes), p)
    return confusion_matrix(p, gt, int(num_classes) + 1, ignore_index)


def open_miou(
    pred: Any,
    gt: Any,
    score: Any,
    threshold: float,
    num_classes: int,
    ignore_index: Optional[int] = 255,
) -> Tuple[float, np.ndarray]:
    """Open-set mIoU (FED / Grcic et al.): reject ``score > threshold`` into "unknown".

    gt: known classes ``0..K-1``, OOD pixels labelled ``K = num_classes``, void
    ``ignore_index``. The mean is over the K known classes only: a rejected pixel is a
    false negative of its true known class, an OOD pixel kept as class c a false positive
    of c. Returns ``(open_miou, per_class_iou)`` with K+1 entries, the last being the
    unknown class's IoU (reported, not averaged). ``threshold``: :func:`mean_f1_threshold`.
    """
    conf = open_confusion_matrix(pred, gt, score, threshold, num_classes, ignore_index)
    return miou(conf, num_known=int(num_classes))


class ConfusionMatrix:
    """Streaming confusion matrix over a dataset (pooled, the usual mIoU protocol).

    ``open_set=True`` keeps a ``(K+1)x(K+1)`` matrix fed by :meth:`update_open` (or
    :meth:`update` with pred/gt already using K as "unknown") and averages IoU over the K
    known classes.
    """

    def __init__(
        self, num_classes: int, ignore_index: Optional[int] = 255, open_set: bool = False
    ) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.open_set = bool(open_set)
        k = self.num_classes + (1 if self.open_set else 0)
        self.matrix = np.zeros((k, k), dtype=np.int64)

    def update(self, pred: Any, gt: Any) -> None:
        self.matrix += confusion_matrix(pred, gt, self.matrix.shape[0], self.ignore_index)

    def update_open(self, pred: Any, gt: Any, score: Any, threshold: float) -> None:
        if not self.open_set:
            raise RuntimeError("update_open needs ConfusionMatrix(..., open_set=True)")
        self.matrix += open_confusion_matrix(
            pred, gt, score, threshold, self.num_classes, self.ignore_index
        )

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.matrix.shape != self.matrix.shape:
            raise ValueError("confusion matrices differ in shape")
        self.matrix += other.matrix
        return self

    def reset(self) -> None:
        self.matrix[:] = 0

    def miou(self) -> Tuple[float, np.ndarray]:
        return miou(self.matrix, num_known=self.num_classes if self.open_set else None)
