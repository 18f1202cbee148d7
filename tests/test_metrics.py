"""ros2_fed.eval.metrics against scikit-learn (the external oracle) and hand-derived numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    jaccard_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from ros2_fed.eval import metrics as M
from ros2_fed.eval.metrics import (
    DEFAULT_BINS,
    ConfusionMatrix,
    ExactAccumulator,
    HistogramAccumulator,
    PerImageAverager,
    auroc,
    average_precision,
    binary_metrics,
    confusion_matrix,
    f1_optimal_threshold,
    fpr_at_tpr,
    histogram_error_bound,
    mean_f1_threshold,
    miou,
    open_miou,
    select_valid,
)

TOL = 1e-12
TPRS = (0.0, 0.1, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0)


def _sk_fpr_at(scores: np.ndarray, labels: np.ndarray, tpr: float) -> float:
    fpr, tpr_arr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(fpr[np.argmax(tpr_arr >= tpr)])


def _make(kind: str, n: int, rng: np.random.Generator):
    y = rng.random(n) < 0.3
    y[0], y[-1] = True, False  # both classes present
    if kind == "continuous":
        s = rng.normal(size=n) + 1.2 * y
    elif kind == "float32":
        s = (rng.normal(size=n) + y).astype(np.float32)
    elif kind == "round1":
        s = np.round(rng.random(n) * 0.6 + 0.4 * y, 1)  # ~11 distinct values, heavy ties
    elif kind == "integer":
        s = rng.integers(0, 5, size=n) + y.astype(int)  # int dtype, 6 distinct values
    elif kind == "binary":
        s = (rng.random(n) < 0.2 + 0.5 * y).astype(np.int64)  # two values only
    else:  # pragma: no cover
        raise AssertionError(kind)
    return s, y


# ---------------------------------------------------------------------------- exact metrics
@pytest.mark.parametrize("kind", ["continuous", "float32", "round1", "integer", "binary"])
@pytest.mark.parametrize("n", [2, 3, 17, 500, 20_000])
def test_exact_metrics_equal_sklearn(kind: str, n: int) -> None:
    rng = np.random.default_rng(n * 7 + len(kind))
    for _ in range(3):
        s, y = _make(kind, n, rng)
        assert abs(auroc(s, y) - roc_auc_score(y, s)) <= TOL
        assert abs(average_precision(s, y) - average_precision_score(y, s)) <= TOL
        for t in TPRS:
            assert abs(fpr_at_tpr(s, y, t) - _sk_fpr_at(s, y, t)) <= TOL, t
        m = binary_metrics(s, y)
        assert m["auroc"] == auroc(s, y) and m["ap"] == average_precision(s, y)
        assert m["fpr_at_tpr"] == fpr_at_tpr(s, y, 0.95)
        assert (m["n_pos"], m["n_neg"]) == (int(y.sum()), int((~y).sum()))


def test_labels_as_ints_and_torch_tensors() -> None:
    rng = np.random.default_rng(1)
    s, y = _make("continuous", 1000, rng)
    ref = binary_metrics(s, y)
    assert binary_metrics(s, y.astype(np.uint8)) == ref
    assert binary_metrics(torch.from_numpy(s), torch.from_numpy(y)) == ref
    # 2-D maps flatten; bfloat16 tensors are upcast, not rejected
    assert binary_metrics(s.reshape(10, 100), y.reshape(10, 100)) == ref
    sb = torch.from_numpy(s).to(torch.bfloat16)
    assert abs(auroc(sb, torch.from_numpy(y)) - roc_auc_score(y, sb.float().numpy())) <= TOL


@pytest.mark.parametrize(
    "s,y",
    [
        (np.array([0.1, 0.5, 0.9]), np.array([1, 1, 1])),  # all positive
        (np.array([0.1, 0.5, 0.9]), np.array([0, 0, 0])),  # all negative
        (np.array([0.3]), np.array([1])),  # single element
        (np.array([0.3]), np.array([0])),
        (np.zeros(0), np.zeros(0, dtype=bool)),  # empty
    ],
)
def test_degenerate_inputs_are_nan_without_warnings(s: np.ndarray, y: np.ndarray) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vals = [auroc(s, y), average_precision(s, y), fpr_at_tpr(s, y), f1_optimal_threshold(s, y)]
        h = HistogramAccumulator(bins=16)
        h.update(s, y)
        vals += [h.auroc(), h.average_precision(), h.fpr_at_tpr(), h.auroc_error_bound()]
        e = ExactAccumulator()
        e.update(s, y)
        vals += [e.auroc(), e.average_precision(), e.fpr_at_tpr()]
        h.summary(), e.summary()
    assert all(np.isnan(v) for v in vals)
    assert not caught, [str(w.message) for w in caught]


def test_perfect_reversed_and_all_tied() -> None:
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert (auroc(s, y), average_precision(s, y), fpr_at_tpr(s, y)) == (1.0, 1.0, 0.0)
    r = -s  # reversed ranking
    assert auroc(r, y) == 0.0 and fpr_at_tpr(r, y) == 1.0
    assert abs(average_precision(r, y) - average_precision_score(y, r)) <= TOL
    t = np.full(5, 0.5)  # one merged threshold: diagonal ROC, AP = prevalence
    assert (auroc(t, y), average_precision(t, y), fpr_at_tpr(t, y)) == (0.5, 0.4, 1.0)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError):
        auroc(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError):
        auroc(np.array([0.1, 0.2]), np.array([0, 255]))  # void must be dropped first
    with pytest.raises(ValueError):
        auroc(np.array([0.1, 0.2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError):
        fpr_at_tpr(np.array([0.1, 0.2]), np.array([0, 1]), tpr=1.5)


def test_select_valid() -> None:
    s = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.array([[0, 1, 255], [1, 0, 1]], dtype=np.uint8)
    ign = np.array([[False, False, False], [True, False, False]])
    vs, vy = select_valid(s, y, ignore_mask=ign, ignore_index=255)
    np.testing.assert_array_equal(vs, [0, 1, 4, 5])
    np.testing.assert_array_equal(vy, [False, True, False, True])
    assert vy.dtype == np.bool_


def test_large_input_runs() -> None:
    rng = np.random.default_rng(2)
    n = 2_000_000  # one 2048x1024 frame
    y = rng.random(n) < 0.05
    s = (rng.random(n) + 0.5 * y).astype(np.float32)
    m = binary_metrics(s, y)
    assert abs(m["auroc"] - roc_auc_score(y, s)) <= 1e-9


# ---------------------------------------------------------------------------- accumulators
def _realistic(n: int, rng: np.random.Generator):
    """p_wrong-like scores: most correct pixels near 0, wrong pixels spread towards 1."""
    y = rng.random(n) < 0.04
    logit = np.where(y, rng.normal(1.0, 2.5, n), rng.normal(-6.0, 2.0, n))
    return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32), y


def test_histogram_equals_exact_metrics_of_quantised_scores() -> None:
    rng = np.random.default_rng(3)
    s, y = _realistic(50_000, rng)
    for kw in ({"bins": 256}, {"bins": 4096, "scale": "logit"}, {"bins": 64, "range": (0.2, 0.7)}):
        h = HistogramAccumulator(**kw)
        h.update(s, y)
        q = h.bin_index(s)
        assert abs(h.auroc() - roc_auc_score(y, q)) <= TOL
        assert abs(h.average_precision() - average_precision_score(y, q)) <= TOL
        for t in TPRS:
            assert abs(h.fpr_at_tpr(t) - _sk_fpr_at(q, y, t)) <= TOL


@pytest.mark.parametrize("scale", ["linear", "logit"])
def test_histogram_within_error_bound_on_realistic_scores(scale: str) -> None:
    # Stated: with 2**16 bins, continuous probability scores -> within 1e-3 of exact; the
    # computed a-posteriori bound must hold, and (here) be far below 1e-3.
    rng = np.random.default_rng(4)
    h, e = HistogramAccumulator(bins=DEFAULT_BINS, scale=scale), ExactAccumulator()
    for _ in range(8):  # eight "images"
        s, y = _realistic(100_000, rng)
        h.update(s, y)
        e.update(s, y)
    b = h.error_bounds(0.95)
    pairs = [
        (h.auroc(), e.auroc(), "auroc"),
        (h.average_precision(), e.average_precision(), "ap"),
        (h.fpr_at_tpr(0.95), e.fpr_at_tpr(0.95), "fpr_at_tpr"),
    ]
    for hv, ev, k in pairs:
        lo, hi = b[f"{k}_bounds"]
        assert lo - TOL <= ev <= hi + TOL, (k, lo, ev, hi)
        assert abs(hv - ev) <= b[f"{k}_error_bound"] + TOL
        assert b[f"{k}_error_bound"] <= 1e-3, (k, b)
        assert abs(hv - ev) <= 1e-3
    assert h.auroc_error_bound() == b["auroc_error_bound"]
    summ = h.summary()
    assert summ["auroc"] == h.auroc() and "ap_error_bound" in summ


def test_histogram_bounds_hold_on_adversarial_data() -> None:
    # Few bins, heavy ties and clipping (scores outside the range): the exact metrics must
    # still fall inside the computed intervals.
    rng = np.random.default_rng(5)
    for trial in range(60):
        n = int(rng.integers(2, 3000))
        y = rng.random(n) < rng.uniform(0.05, 0.9)
        y[0], y[-1] = True, False
        s = rng.uniform(-0.3, 1.3, n) + rng.uniform(0, 0.6) * y
        if trial % 3 == 0:
            s = np.round(s, 1)
        h = HistogramAccumulator(bins=int(rng.integers(1, 20)))
        h.update(s, y)
        tpr = float(rng.choice([0.5, 0.9, 0.95, 1.0]))
        b = histogram_error_bound(h.pos_counts, h.neg_counts, tpr)
        exact = {
            "auroc": auroc(s, y),
            "ap": average_precision(s, y),
            "fpr_at_tpr": fpr_at_tpr(s, y, tpr),
        }
        for k, ev in exact.items():
            lo, hi = b[f"{k}_bounds"]
            assert lo - TOL <= ev <= hi + TOL, (trial, k, lo, ev, hi)


def test_histogram_bounds_are_tight() -> None:
    # Arrange each bin's scores in the best case (its positives tied at the top) and the
    # worst case (negatives on top, all distinct): the exact metrics hit the interval ends.
    rng = np.random.default_rng(6)
    bins = 8
    pos = rng.integers(0, 40, bins)
    neg = rng.integers(0, 40, bins)
    pos[3], neg[5] = max(pos[3], 1), max(neg[5], 1)
    best_s, worst_s, ys = [], [], []
    for b in range(bins):
        p, n = int(pos[b]), int(neg[b])
        best_s += [(b + 0.9) / bins] * p + list((b + np.linspace(0.05, 0.5, n)) / bins)
        worst_s += list((b + np.linspace(0.05, 0.5, p)) / bins)
        worst_s += list((b + np.linspace(0.6, 0.95, n)) / bins)
        ys += [True] * p + [False] * n
    y = np.array(ys)
    best, worst = np.array(best_s), np.array(worst_s)
    h = HistogramAccumulator(bins=bins)
    h.update(best, y)
    h2 = HistogramAccumulator(bins=bins)
    h2.update(worst, y)
    np.testing.assert_array_equal(h.counts, h2.counts)
    b = h.error_bounds(0.95)
    assert abs(auroc(best, y) - b["auroc_bounds"][1]) <= TOL
    assert abs(auroc(worst, y) - b["auroc_bounds"][0]) <= TOL
    assert abs(average_precision(best, y) - b["ap_bounds"][1]) <= TOL
    assert abs(average_precision(worst, y) - b["ap_bounds"][0]) <= TOL
    assert abs(fpr_at_tpr(best, y) - b["fpr_at_tpr_bounds"][0]) <= TOL
    assert abs(fpr_at_tpr(worst, y) - b["fpr_at_tpr_bounds"][1]) <= TOL


def test_harmonic_span_matches_direct_sum() -> None:
    d = np.array([0.0, 0.0, 5.0, 1e3, 1e9, 7.0, 0.0])
    p = np.array([1, 40, 33, 1000, 5, 100_000, 200_000])
    got = M._harmonic_span(d, p)
    want = [np.sum(1.0 / (di + np.arange(1, pi + 1, dtype=np.float64))) for di, pi in zip(d, p)]
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_chunked_accumulation_equals_one_shot() -> None:
    rng = np.random.default_rng(7)
    s, y = _make("round1", 30_000, rng)
    labels = y.astype(np.uint8)
    labels[rng.random(s.size) < 0.1] = 255  # void pixels, dropped by ignore_index
    ign = rng.random(s.size) < 0.05  # and an explicit mask
    vs, vy = select_valid(s, labels, ign, 255)
    chunks = np.array_split(np.arange(s.size), 37)
    e, h = ExactAccumulator(), HistogramAccumulator(bins=1000)
    parts = [HistogramAccumulator(bins=1000) for _ in range(2)]
    for i, c in enumerate(chunks):
        e.update(s[c], labels[c], ign[c])
        h.update(s[c], labels[c], ign[c])
        parts[i % 2].update(s[c], labels[c], ign[c])
    assert e.summary(0.9) == binary_metrics(vs, vy, 0.9)
    assert e.auroc() == auroc(vs, vy) and e.n_pos == int(vy.sum())
    one = HistogramAccumulator(bins=1000)
    one.update(vs, vy)
    np.testing.assert_array_equal(h.counts, one.counts)
    np.testing.assert_array_equal(parts[0].merge(parts[1]).counts, one.counts)
    assert h.summary() == one.summary()
    assert abs(e.auroc() - roc_auc_score(vy, vs)) <= TOL
    with pytest.raises(ValueError):
        h.merge(HistogramAccumulator(bins=10))


def test_per_image_averager_matches_manual_sklearn_loop() -> None:
    rng = np.random.default_rng(8)
    avg = PerImageAverager(tprs=(0.9, 0.95))
    want = {"auroc": [], "ap": [], "fpr": [], "f1t": []}
    for i in range(12):
        s, y = _make("continuous" if i % 2 else "round1", 2000, rng)
        labels = y.astype(np.uint8)
        labels[:50] = 255
        if i in (3, 7):
            labels[labels == 1] = 0  # no wrong pixel in this image: skipped
        avg.update(s.reshape(40, 50), labels.reshape(40, 50))
        keep = labels != 255
        vs, vy = s[keep], labels[keep].astype(bool)
        if vy.all() or not vy.any():
            continue
        want["auroc"].append(roc_auc_score(vy, vs))
        want["ap"].append(average_precision_score(vy, vs))
        want["fpr"].append(_sk_fpr_at(vs, vy, 0.95))
        want["f1t"].append(f1_optimal_threshold(vs, vy))
    assert avg.n_images == 10 and avg.n_skipped == 2
    assert abs(avg.auroc() - np.mean(want["auroc"])) <= TOL
    assert abs(avg.average_precision() - np.mean(want["ap"])) <= TOL
    assert abs(avg.fpr_at_tpr(0.95) - np.mean(want["fpr"])) <= TOL
    assert abs(avg.mean_f1_threshold() - np.mean(want["f1t"])) <= TOL
    summ = avg.summary()
    assert (summ["n_images"], summ["n_skipped"]) == (10, 2)
    with pytest.raises(KeyError):
        avg.fpr_at_tpr(0.5)
    assert np.isnan(PerImageAverager().auroc())


# ---------------------------------------------------------------------------- F1 threshold
def _brute_force_f1(s: np.ndarray, y: np.ndarray):
    u = np.unique(s).astype(np.float64)
    cands = np.concatenate(([u[0] - 1.0], u))  # "score > t" for every possible cut
    f1s = [f1_score(y, s > t, zero_division=0.0) for t in cands]
    return cands, np.array(f1s)


@pytest.mark.parametrize("kind", ["continuous", "round1", "integer"])
def test_f1_optimal_threshold_vs_brute_force(kind: str) -> None:
    rng = np.random.default_rng(9)
    for _ in range(5):
        s, y = _make(kind, 60, rng)
        t = f1_optimal_threshold(s, y)
        cands, f1s = _brute_force_f1(s, y)
        best = f1s.max()
        assert abs(f1_score(y, s > t) - best) <= TOL
        # the returned threshold lies in the best cut's interval (highest one on ties)
        i = int(np.flatnonzero(f1s >= best - TOL)[-1])
        upper = cands[i + 1] if i + 1 < cands.size else np.inf
        assert cands[i] <= t < upper


def test_f1_threshold_examples_and_mean() -> None:
    # F1 = 2TP / (2TP + FP + FN) for "score > t": t in [0.8, 0.9): 2/4 = 0.5;
    # [0.7, 0.8): 4/5 = 0.8; [0.3, 0.7): 4/6; [0.2, 0.3): 6/7 (best); below: 6/8, 6/9.
    # Best interval [0.2, 0.3) -> midpoint 0.25.
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 0, 1, 0, 0])
    assert abs(f1_optimal_threshold(s, y) - 0.25) <= TOL
    s2 = np.array([0.6, 0.4, 0.2])
    y2 = np.array([1, 1, 1])  # single class: NaN, skipped in the mean
    y3 = np.array([1, 0, 0])  # best cut between 0.6 and 0.4 -> 0.5
    assert np.isnan(f1_optimal_threshold(s2, y2))
    assert abs(mean_f1_threshold([(s, y), (s2, y2), (s2, y3)]) - (0.25 + 0.5) / 2) <= TOL
    assert np.isnan(mean_f1_threshold([(s2, y2)]))


# ---------------------------------------------------------------------------- segmentation
def test_confusion_matrix_and_miou_vs_sklearn() -> None:
    rng = np.random.default_rng(10)
    k = 5
    gt = rng.integers(0, k, size=(30, 40)).astype(np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, k, gt.shape)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 255
    gt[gt == 4] = 0  # class 4 absent from gt ...
    pred[pred == 4] = 1  # ... and from pred: IoU NaN, excluded from the mean
    conf = confusion_matrix(pred, gt, k)
    keep = gt != 255
    ref = sk_confusion_matrix(gt[keep], pred[keep], labels=list(range(k)))
    np.testing.assert_array_equal(conf, ref)
    m, per = miou(conf)
    sk = jaccard_score(gt[keep], pred[keep], labels=list(range(4)), average=None, zero_division=0)
    np.testing.assert_allclose(per[:4], sk, rtol=0, atol=TOL)
    assert np.isnan(per[4]) and abs(m - np.mean(sk)) <= TOL
    cm = ConfusionMatrix(k)
    for rows in np.array_split(np.arange(30), 4):
        cm.update(torch.from_numpy(pred[rows]), gt[rows])
    np.testing.assert_array_equal(cm.matrix, conf)
    assert cm.miou()[0] == m
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), k)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0, 7]), k)
    assert np.isnan(miou(np.zeros((3, 3)))[0])


def test_open_miou_hand_computed() -> None:
    # K = 2 known classes, unknown = 2, threshold 0.5 (reject iff score > 0.5).
    #  px gt pred score -> pred'   effect
    #  1   0   0   0.1     0       TP0
    #  2   0   0   0.9     2(rej)  FN0, FP_unk
    #  3   0   1   0.2     1       FN0, FP1
    #  4   1   1   0.3     1       TP1
    #  5   1   1   0.7     2(rej)  FN1, FP_unk
    #  6   2   0   0.8     2(rej)  TP_unk (OOD rejected)
    #  7   2   1   0.4     1       FP1, FN_unk (OOD kept as class 1)
    #  8 255   0   0.1     -       ignored
    #  9   1   0   0.5     0       FP0, FN1 (0.5 is not > 0.5)
    # IoU0 = 1/(1+2+1) = 0.25, IoU1 = 1/(1+2+2) = 0.2, IoU_unk = 1/(1+1+2) = 0.25
    # open-mIoU = mean over known classes = (0.25 + 0.2) / 2 = 0.225
    gt = np.array([0, 0, 0, 1, 1, 2, 2, 255, 1])
    pred = np.array([0, 0, 1, 1, 1, 0, 1, 0, 0])
    score = np.array([0.1, 0.9, 0.2, 0.3, 0.7, 0.8, 0.4, 0.1, 0.5])
    m, per = open_miou(pred, gt, score, 0.5, num_classes=2)
    assert abs(m - 0.225) <= TOL
    np.testing.assert_allclose(per, [0.25, 0.2, 0.25], rtol=0, atol=TOL)
    cm = ConfusionMatrix(2, open_set=True)
    cm.update_open(pred[:4], gt[:4], score[:4], 0.5)
    cm.update_open(pred[4:], gt[4:], score[4:], 0.5)
    assert abs(cm.miou()[0] - 0.225) <= TOL
    with pytest.raises(RuntimeError):
        ConfusionMatrix(2).update_open(pred, gt, score, 0.5)
