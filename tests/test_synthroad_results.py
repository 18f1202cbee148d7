"""The shipped detection results on synthroad-ood and synthroad-obstacle: the tables are the
JSON (as fed_eval writes it), the numbers shipped before the component metrics are unchanged,
the component metrics are internally consistent and on the stated split, and the results page
names the methods the files say are best."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.report import markdown_table

ROOT = Path(__file__).resolve().parents[1]
OOD = json.loads((ROOT / "models" / "synthroad_ood_results.json").read_text())
OBSTACLE = json.loads((ROOT / "models" / "synthroad_obstacle_results.json").read_text())
FILES = {
    "synthroad_ood_results": (OOD, "synthroad-ood (100 images)"),
    "synthroad_obstacle_results": (OBSTACLE, "synthroad-obstacle (50 images)"),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_table_is_the_json(name: str) -> None:
    results, title = FILES[name]
    assert (ROOT / "models" / f"{name}.md").read_text() == markdown_table(results, title)


def test_the_numbers_shipped_before_are_kept() -> None:
    """Values of models/synthroad_ood_results.json as make default-model wrote it."""
    fed_c, msp = OOD["methods"]["FED-C"], OOD["methods"]["MSP"]
    assert fed_c["ood"]["ap"] == 0.2966088406330574
    assert fed_c["ood"]["fpr_at_tpr"] == 0.2478476388816716
    assert fed_c["idm"]["auroc"] == 0.8544901126428408
    assert msp["ood"]["auroc"] == 0.8551654526535575
    assert OOD["open_miou"]["SML"] == 0.7309782738785884
    assert OOD["miou"] == 0.7883871798796062


@pytest.mark.parametrize(
    "results, track, methods",
    [
        (OOD, "SegEval-AnomalyTrack", {"FED-U", "FED-C", "MSP", "MLG", "ENE", "ENT", "SML"}),
        (OBSTACLE, "SegEval-ObstacleTrack", {"FED-U", "FED-C", "MSP", "MLG", "ENE", "ENT", "SML"}),
    ],
)
def test_component_metrics_are_consistent(results: dict, track: str, methods: set) -> None:
    rows = {n: r["components"] for n, r in results["methods"].items() if "components" in r}
    assert set(rows) == methods
    objects = {c["gt_components"] for c in rows.values()}
    assert len(objects) == 1 and objects.pop() > 0  # the same ground truth for every method
    for name, c in rows.items():
        assert c["track"] == track and c["frames"] == results["images"]
        f1 = list(c["f1"].values())
        assert list(c["f1"]) == [f"{t:.2f}" for t in np.linspace(0.25, 0.75, 11)]
        assert c["f1_mean"] == pytest.approx(np.mean(f1), abs=1e-12), name
        for tp, fn, fp, value in zip(c["tp"], c["fn"], c["fp"], f1):
            assert tp + fn == c["gt_components"] and fp <= c["pred_components"]
            assert value == pytest.approx(2 * tp / (2 * tp + fn + fp), abs=1e-12)
        assert all(0.0 <= c[k] <= 1.0 for k in ("siou_gt", "ppv", "f1_mean"))


@pytest.mark.slow
def test_obstacle_results_are_on_the_stated_split() -> None:
    """The objects the file counts are those of the first 50 obstacle frames (seed 9901) of at
    least 10 px (the obstacle track's ground-truth limit), counted here from fresh renders."""
    from training.datasets.synthroad import render_indexed
    from training.datasets.synthroad.seeds import OBSTACLE_SEED

    count = 0
    for i in range(OBSTACLE["images"]):
        ood = render_indexed(OBSTACLE_SEED, "obstacle", i, 256, 512).ood
        _, _, stats, _ = cv2.connectedComponentsWithStats((ood == 1).astype(np.uint8), 8)
        count += int(np.sum(stats[1:, cv2.CC_STAT_AREA] >= 10))
    assert OBSTACLE["methods"]["FED-C"]["components"]["gt_components"] == count


def test_the_results_page_names_the_best_methods() -> None:
    page = (ROOT / "docs" / "performance.md").read_text()
    for label, results in (("synthroad-ood", OOD), ("synthroad-obstacle", OBSTACLE)):
        start = page.index(f"- **{label}**")
        line = " ".join(page[start : page.index("\n\n", start)].split())  # the whole bullet
        rows = {n: r for n, r in results["methods"].items() if "components" in r}
        f1_best = max(rows, key=lambda n: rows[n]["components"]["f1_mean"])
        ap_best = max(rows, key=lambda n: rows[n]["ood"]["ap"])
        found = re.search(r"best mean F1 (\S+) ([\d.]+)", line)
        assert found and found[1] == f1_best, line
        assert float(found[2]) == round(100 * rows[f1_best]["components"]["f1_mean"], 2)
        found = re.search(r"best OOD AP (\S+) ([\d.]+)", line)
        assert found and found[1] == ap_best, line
        assert float(found[2]) == round(100 * rows[ap_best]["ood"]["ap"], 2)
