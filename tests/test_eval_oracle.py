"""An independent oracle for fed_eval's protocol: scikit-learn, straight from the saved score
maps and the dataset's label / OOD PNGs.

Protocol (docs/fed-method.md, "Metrics"): OOD positives are the OOD pixels, pooled over the
dataset, void (255 in the OOD image: the ego hood and everything unlabelled) ignored; IDM
positives are in-distribution pixels whose predicted label is wrong, void and OOD ignored,
AuROC per image and averaged over the images that have both classes. FPR95 is the
false-positive rate at the first threshold where the true-positive rate reaches 0.95.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from tests.fed_helpers import save_tiny_model  # noqa: E402
from training import cli_eval, cli_synthroad  # noqa: E402


def _fpr95(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= 0.95)])


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.slow
def test_fed_eval_matches_scikit_learn_from_saved_maps(tmp_path: Path) -> None:
    data = tmp_path / "synthroad"
    assert cli_synthroad.main(
        ["--out", str(data), "--train", "0", "--val", "0", "--ood", "4", "--size", "128x256",
         "--seed", "3", "--no-progress"]
    ) == 0  # fmt: skip
    model = save_tiny_model(tmp_path / "model", (128, 256))
    maps_dir, out = tmp_path / "maps", tmp_path / "eval"
    code = cli_eval.main(
        ["--backbone", model["backbone"], "--fed", f"FED-U={model['fed']}",
         "--dataset", "synthroad-ood", "--data-root", str(data), "--out", str(out),
         "--fed-postprocess", "gaussian", "--mcd-passes", "0", "--no-open-miou",
         "--figures", "0", "--exact", "--no-progress", "--save-scores", str(maps_dir)]
    )  # fmt: skip
    assert code == 0
    reported = json.loads((out / "results.json").read_text())["methods"]["FED-U"]

    labels_dir = data / "gtFine" / "ood" / "synthroad"
    ood_scores, ood_truth, idm_auroc = [], [], []
    for saved in sorted(maps_dir.glob("*.npz")):
        arrays = np.load(saved)
        stem = saved.stem.replace("_leftImg8bit", "")
        trainids = _png(next(labels_dir.glob(f"{stem}*_labelTrainIds.png")))
        ood = _png(next(labels_dir.glob(f"{stem}*_oodIds.png")))
        score, pred = arrays["FED-U"].astype(np.float64), arrays["pred"]
        assert score.shape == ood.shape == trainids.shape
        counted = ood != 255
        ood_scores.append(score[counted])
        ood_truth.append(ood[counted] == 1)
        in_dist = (trainids != 255) & (ood != 1)
        wrong = pred[in_dist] != trainids[in_dist]
        if 0 < wrong.sum() < wrong.size:
            idm_auroc.append(sklearn_metrics.roc_auc_score(wrong, score[in_dist]))
    assert len(ood_scores) == 4
    truth, scores = np.concatenate(ood_truth), np.concatenate(ood_scores)
    assert 0 < truth.sum() < truth.size
    assert reported["ood"]["auroc"] == pytest.approx(
        sklearn_metrics.roc_auc_score(truth, scores), abs=1e-9
    )
    assert reported["ood"]["ap"] == pytest.approx(
        sklearn_metrics.average_precision_score(truth, scores), abs=1e-9
    )
    assert reported["ood"]["fpr_at_tpr"] == pytest.approx(_fpr95(truth, scores), abs=1e-9)
    assert idm_auroc, "no image with both right and wrong in-distribution pixels"
    assert reported["idm"]["auroc"] == pytest.approx(float(np.mean(idm_auroc)), abs=1e-9)
