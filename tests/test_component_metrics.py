"""SegmentMeIfYouCan's component metrics against hand-computed cases and an independent oracle.

The hand cases pin numbers worked out on paper from the benchmark's definitions
(road-anomaly-benchmark ``instance_segmentation.py``): the adjusted sIoU, PPV, the counts at
each sIoU threshold and the mean F1; the size limits at their edges (a component one pixel under
the limit and one at it), the void handling (predicted pixels on void split a blob; a too-small
ground-truth component becomes void and takes the predicted pixels on it out of the count, but
only after the predicted size limit) and 8-connectivity. The oracle is a plain per-component
loop over scipy.ndimage labels, written from the definitions, run end to end on what
``fed_eval --save-scores`` saved: the best pixel-F1 threshold from a sort of the raw scores,
then the components.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ros2_fed.eval.component_metrics import (
    SIOU_THRESHOLDS,
    TRACKS,
    ComponentAccumulator,
    Track,
    frame_components,
    split_components,
)

ndimage = pytest.importorskip("scipy.ndimage")

ANY = Track("no limits", 1, 1)


def _case() -> tuple[np.ndarray, np.ndarray]:
    """Two ground-truth components (A, B: 100 px each) and three predicted ones: P1 (200 px)
    over half of A, the gap and half of B; P2 (30 px) inside A; P3 (100 px) on background."""
    truth = np.zeros((40, 60), np.uint8)
    truth[0:10, 0:10] = 1  # A
    truth[0:10, 20:30] = 1  # B
    pred = np.zeros(truth.shape, bool)
    pred[0:10, 5:25] = True  # P1: 50 px on A, 100 on background, 50 on B
    pred[0:10, 0:3] = True  # P2: 30 px on A, two columns away from P1
    pred[20:30, 40:50] = True  # P3
    return pred, truth


def test_hand_case_siou_ppv_f1() -> None:
    frame = frame_components(*_case(), ANY)
    # sIoU(A) = 80 / (230 + 100 - 80 - 50 on B) = 0.4; sIoU(B) = 50 / (200 + 100 - 50 - 50) = 0.25
    assert sorted(frame.siou_gt.tolist()) == pytest.approx([0.25, 0.4])
    assert sorted(frame.ppv.tolist()) == pytest.approx([0.0, 0.5, 1.0])
    # sIoU(P1) = 100 / (200 + 200 - 100 - 30 of A under P2); sIoU(P2) = 30 / (100 + 30 - 30 - 50)
    assert sorted(frame.siou_pred.tolist()) == pytest.approx([0.0, 100 / 270, 0.6])
    acc = ComponentAccumulator(ANY)
    acc.add(frame)
    out = acc.summary()
    # t = 0.25: TP 2 (B's 0.25 counts: >=), FN 0, FP 1 (P3) -> 0.8; t = 0.3..0.4: TP 1 (A's
    # 0.4 counts at 0.4), FN 1, FP 1 -> 0.5; t = 0.45, 0.5: TP 0 (P1's PPV 0.5 is not < 0.5)
    # -> 0; t >= 0.55: FP 2 -> 0.
    expected = [0.8, 0.5, 0.5, 0.5] + [0.0] * 7
    assert list(out["f1"].values()) == pytest.approx(expected)
    assert out["f1_mean"] == pytest.approx(2.3 / 11)
    assert out["tp"] == [2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert out["fp"] == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert out["siou_gt"] == pytest.approx(0.325) and out["ppv"] == pytest.approx(0.5)
    assert (out["gt_components"], out["pred_components"]) == (2, 3)


def test_thresholds_are_the_benchmarks() -> None:
    assert SIOU_THRESHOLDS.size == 11
    assert SIOU_THRESHOLDS[0] == 0.25 and SIOU_THRESHOLDS[-1] == 0.75
    assert np.diff(SIOU_THRESHOLDS) == pytest.approx(0.05)
    assert (TRACKS["anomaly"].min_pred_size, TRACKS["anomaly"].min_gt_size) == (500, 100)
    assert (TRACKS["obstacle"].min_pred_size, TRACKS["obstacle"].min_gt_size) == (50, 10)


def test_obstacle_track_drops_the_30_px_prediction() -> None:
    frame = frame_components(*_case(), TRACKS["obstacle"])
    # P2 (30 px < 50) is gone: sIoU(A) = 50 / (200 + 100 - 50 - 50) = 0.25
    assert sorted(frame.siou_gt.tolist()) == pytest.approx([0.25, 0.25])
    assert sorted(frame.ppv.tolist()) == pytest.approx([0.0, 0.5])


@pytest.mark.parametrize("track", ["obstacle", "anomaly"])
def test_predicted_size_limit_edge(track: str) -> None:
    limit = TRACKS[track].min_pred_size
    truth = np.zeros((60, 120), np.uint8)
    for size, expect in ((limit - 1, 0), (limit, 1)):
        pred = np.zeros(truth.shape, bool)
        pred.reshape(-1)[:size] = True  # one row-major run: a single component of `size` px
        assert frame_components(pred, truth, TRACKS[track]).ppv.size == expect, size


@pytest.mark.parametrize("track", ["obstacle", "anomaly"])
def test_ground_truth_size_limit_edge(track: str) -> None:
    limit = TRACKS[track].min_gt_size
    pred = np.zeros((60, 120), bool)
    for size, expect in ((limit - 1, 0), (limit, 1)):
        truth = np.zeros(pred.shape, np.uint8)
        truth.reshape(-1)[:size] = 1
        assert frame_components(pred, truth, TRACKS[track]).siou_gt.size == expect, size


def test_small_ground_truth_becomes_void_after_the_predicted_size_limit() -> None:
    """A 9 px ground-truth object (under the obstacle track's 10) is void; a 55 px prediction
    over it keeps its 55 px for the size limit (50) and is scored on its 46 other pixels."""
    truth = np.zeros((30, 30), np.uint8)
    truth[10:13, 10:13] = 1  # 9 px
    pred = np.zeros(truth.shape, bool)
    pred[10:13, 10:13] = True
    pred[13:19, 10:17] = True  # 42 px, touching
    pred[19, 10:14] = True  # 4 px: 55 in all
    frame = frame_components(pred, truth, TRACKS["obstacle"])
    assert frame.siou_gt.size == 0
    assert frame.ppv.tolist() == [0.0] and frame.size_pred.tolist() == [46]


def test_void_splits_a_prediction_and_is_never_counted() -> None:
    truth = np.zeros((20, 40), np.uint8)
    truth[:, 10] = 255  # a void column through the blob
    truth[0:10, 0:10] = 1
    pred = np.zeros(truth.shape, bool)
    pred[0:10, 0:21] = True  # 100 px on the object, 10 on void, 100 px beyond
    frame = frame_components(pred, truth, ANY)
    assert sorted(frame.ppv.tolist()) == [0.0, 1.0]
    assert frame.siou_gt.tolist() == [1.0]


def test_eight_connectivity() -> None:
    truth = np.zeros((20, 20), np.uint8)
    truth[0:4, 0:4] = 1
    truth[4:8, 4:8] = 1  # touches the first block at a corner only: one component
    pred = np.zeros(truth.shape, bool)
    pred[0:4, 0:4] = True
    frame = frame_components(pred, truth, ANY)
    assert frame.siou_gt.tolist() == [0.5] and frame.size_gt.tolist() == [32]


def test_split_threshold_is_strict_and_frames_pool() -> None:
    pred, truth = _case()
    scores = np.where(pred, 0.7, 0.2)[truth != 255]
    at = split_components([(scores, truth)], 0.7, ANY)  # score > 0.7: nothing predicted
    assert at["pred_components"] == 0 and at["siou_gt"] == 0.0
    below = split_components([(scores, truth), (scores, truth)], 0.69, ANY)
    assert below["f1_mean"] == pytest.approx(2.3 / 11)  # same frame twice: same F1
    assert below["tp"][0] == 4 and below["gt_components"] == 4 and below["frames"] == 2


# ---------------------------------------------------------------------------------------------
# The independent oracle: per-component loops over scipy labels, from the definitions
# ---------------------------------------------------------------------------------------------


def _oracle_frame(pred: np.ndarray, truth: np.ndarray, track: Track) -> dict[str, list]:
    ones = np.ones((3, 3), int)
    pred = pred & (truth != 255)
    gt_lab, n_gt = ndimage.label(truth == 1, ones)
    pr_lab, n_pr = ndimage.label(pred, ones)
    for k in range(1, n_pr + 1):
        if np.sum(pr_lab == k) < track.min_pred_size:
            pr_lab[pr_lab == k] = 0
    roi = truth != 255
    for k in range(1, n_gt + 1):
        if np.sum(gt_lab == k) < track.min_gt_size:
            roi &= gt_lab != k
    g, p = gt_lab[roi], pr_lab[roi]
    siou, ppv = [], []
    for k in [k for k in np.unique(g) if k]:
        touching = [j for j in np.unique(p[g == k]) if j]
        covered = np.isin(p, touching)
        inter = np.sum((g == k) & covered)
        elsewhere = np.sum(covered & (g != 0) & (g != k))
        siou.append(inter / (np.sum(covered) + np.sum(g == k) - inter - elsewhere))
    for j in [j for j in np.unique(p) if j]:
        ppv.append(np.sum((p == j) & (g != 0)) / np.sum(p == j))
    return {"siou": siou, "ppv": ppv}


def _oracle_split(frames: list[tuple[np.ndarray, np.ndarray]], track: Track) -> dict[str, float]:
    """``frames``: (raw score HxW, truth). The best pixel-F1 threshold from one sort of the
    pooled non-void pixels, then the components at it."""
    scores = np.concatenate([s[t != 255] for s, t in frames]).astype(np.float64)
    positive = np.concatenate([t[t != 255] == 1 for _, t in frames])
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order]
    last = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)  # end of each tie group
    tp = np.cumsum(y)[last]
    f1 = 2 * tp / (last + 1 + y.sum())
    cut = s[last[int(np.argmax(f1))]]  # predicted: score >= the best group's score
    per = [_oracle_frame(score >= cut, truth, track) for score, truth in frames]
    siou = np.concatenate([f["siou"] for f in per])
    ppv = np.concatenate([f["ppv"] for f in per])
    f1s = []
    for t in np.linspace(0.25, 0.75, 11):
        tps, fns = np.sum(siou >= t), np.sum(siou < t)
        f1s.append(2 * tps / (2 * tps + fns + np.sum(ppv < t)))
    return {"siou_gt": siou.mean(), "ppv": ppv.mean(), "f1_mean": float(np.mean(f1s)), "cut": cut}


def test_oracle_agrees_on_random_blobs() -> None:
    rng = np.random.default_rng(5)
    frames = []
    for _ in range(6):
        truth = np.zeros((64, 96), np.uint8)
        truth[:6] = 255
        for _ in range(int(rng.integers(1, 5))):
            y, x, h, w = rng.integers(8, 56), rng.integers(0, 88), *rng.integers(2, 9, 2)
            truth[y : y + h, x : x + w] = 1
        smooth = ndimage.gaussian_filter(rng.random(truth.shape), 2.0)
        frames.append(((truth == 1) * 0.3 + smooth, truth))
    for track in (ANY, TRACKS["obstacle"], Track("mid", 20, 12)):
        want = _oracle_split(frames, track)
        from ros2_fed.eval import metrics as M

        acc = M.ExactAccumulator()
        for score, truth in frames:
            acc.update(score, (truth == 1).astype(np.uint8), ignore_mask=truth == 255)
        threshold, _ = acc.curve().f1_optimal()
        got = split_components(zip(acc.frame_scores(), [t for _, t in frames]), threshold, track)
        assert got["gt_components"] > 3 and got["pred_components"] > 0
        for key in ("siou_gt", "ppv", "f1_mean"):
            assert got[key] == pytest.approx(want[key], abs=1e-12), (track, key)


# ---------------------------------------------------------------------------------------------
# End to end: fed_eval --save-scores -> the oracle on the saved maps -> the reported numbers
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fed_eval_components_match_the_oracle_on_saved_maps(tmp_path: Path) -> None:
    from PIL import Image

    from tests.fed_helpers import save_tiny_model
    from training import cli_eval, cli_synthroad

    data = tmp_path / "synthroad"
    assert cli_synthroad.main(
        ["--out", str(data), "--train", "0", "--val", "0", "--ood", "4", "--size", "128x256",
         "--seed", "3", "--no-progress"]
    ) == 0  # fmt: skip
    model = save_tiny_model(tmp_path / "model", (128, 256))
    maps_dir, out = tmp_path / "maps", tmp_path / "eval"
    assert cli_eval.main(
        ["--backbone", model["backbone"], "--fed", f"FED-U={model['fed']}",
         "--dataset", "synthroad-ood", "--data-root", str(data), "--out", str(out),
         "--mcd-passes", "0", "--no-open-miou", "--figures", "0", "--exact", "--no-progress",
         "--save-scores", str(maps_dir), "--component-track", "obstacle"]
    ) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    labels_dir = data / "gtFine" / "ood" / "synthroad"
    saved = sorted(maps_dir.glob("*.npz"))
    assert len(saved) == 4
    stems = [p.stem.replace("_leftImg8bit", "") for p in saved]
    truths = [np.asarray(Image.open(next(labels_dir.glob(f"{s}*_oodIds.png")))) for s in stems]
    for name in ("FED-U", "MSP", "MLG"):
        reported = results["methods"][name]["components"]
        assert reported["track"] == "SegEval-ObstacleTrack"
        frames = [(np.load(p)[name].astype(np.float64), t) for p, t in zip(saved, truths)]
        want = _oracle_split(frames, TRACKS["obstacle"])
        assert reported["gt_components"] > 0, name
        for key in ("siou_gt", "ppv", "f1_mean"):
            assert reported[key] == pytest.approx(want[key], abs=1e-9), (name, key)
        # the reported threshold separates the oracle's cut from the next lower score
        assert reported["threshold"] < want["cut"]
    table = (out / "results.md").read_text()
    assert "| sIoU gt | PPV | mean F1 |" in table and "SegEval-ObstacleTrack" in table
    # --from-scores: the same numbers from the saved maps, without running the models
    again = tmp_path / "again"
    assert cli_eval.main(
        ["--backbone", model["backbone"], "--fed", f"FED-U={model['fed']}",
         "--dataset", "synthroad-ood", "--data-root", str(data), "--out", str(again),
         "--mcd-passes", "0", "--no-open-miou", "--figures", "0", "--exact", "--no-progress",
         "--from-scores", str(maps_dir), "--component-track", "obstacle"]
    ) == 0  # fmt: skip
    assert json.loads((again / "results.json").read_text())["methods"] == results["methods"]


# ---------------------------------------------------------------------------------------------
# fed_bag_eval: the replay's scorer (one camera, and cameras merged) and its report section
# ---------------------------------------------------------------------------------------------


def _blob_frames(count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        truth = np.zeros((64, 96), np.uint8)
        truth[:6] = 255
        for _ in range(int(rng.integers(1, 4))):
            y, x, h, w = rng.integers(8, 50), rng.integers(0, 80), *rng.integers(5, 15, 2)
            truth[y : y + h, x : x + w] = 1
        score = (truth == 1) * 2.0 + 4 * ndimage.gaussian_filter(rng.random(truth.shape), 2.0)
        frames.append((score - 3.0, truth))  # a logit-like score: not a probability
    return frames


def _scorer(frames: list[tuple[np.ndarray, np.ndarray]], track: str = "obstacle"):
    from ros2_fed.eval.replay.scoring import Scorer

    scorer = Scorer(3, len(frames), frames[0][1].size, component_track=track)
    for score, truth in frames:
        pred = np.zeros(truth.shape, np.uint8)
        scorer.update(pred, {"node": score}, None, truth)
        scorer.update(pred, {"MSP": 1 / (1 + np.exp(-score))}, None, truth, pred_key="reference")
    return scorer


def test_replay_scorer_components_match_the_oracle_and_merge() -> None:
    frames = _blob_frames(6, seed=11)
    want = _oracle_split(frames, TRACKS["obstacle"])
    methods = _scorer(frames).results()["methods"]
    for name in ("node", "MSP"):
        got = methods[name]["components"]
        assert got["track"] == "SegEval-ObstacleTrack" and got["frames"] == 6
        assert got["gt_components"] >= 6 and got["pred_components"] >= 3
        for key in ("siou_gt", "ppv", "f1_mean"):
            assert got[key] == pytest.approx(want[key], abs=1e-12), (name, key)
    assert methods["node"]["components"]["threshold"] < want["cut"]  # on the raw score scale
    # two cameras' scorers merged give the numbers of one scorer fed every frame
    merged = _scorer(frames[:2]).merge(_scorer(frames[2:])).results()["methods"]["node"]
    assert merged["components"] == methods["node"]["components"]
    # "off": no component metrics; the anomaly track: its own (500 px) limit
    assert "components" not in _scorer(frames, "off").results()["methods"]["node"]
    anomaly = _scorer(frames, "anomaly").results()["methods"]["node"]["components"]
    assert anomaly["min_pred_size"] == 500
    assert anomaly["pred_components"] < methods["node"]["components"]["pred_components"]


def test_replay_report_section() -> None:
    from ros2_fed.eval.replay.report import component_lines

    frames = _blob_frames(4, seed=2)
    report = {
        "metrics": _scorer(frames).results(),
        "method_sources": {"node": "node", "MSP": "reference"},
    }
    lines = component_lines(report)
    assert lines[1] == "## Component metrics"
    comp = report["metrics"]["methods"]["node"]["components"]
    row = next(line for line in lines if line.startswith("| node | node |"))
    assert f"| {100 * comp['siou_gt']:.2f} | {100 * comp['ppv']:.2f} | " in row
    assert f"| {100 * comp['f1_mean']:.2f} |" in row
    assert any(line.startswith("| MSP | reference |") for line in lines)
    assert component_lines({"metrics": {"methods": {"node": {}}}}) == []
