"""fed_eval on a tiny synthroad OOD split: every method, every column, JSON + Markdown + figure,
and the baseline scores are the very functions the fused detector (what the node runs) uses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg
from ros2_fed.detector import FusedDetector
from ros2_fed.fed import FEDConfig, FlowEneDet
from tests.fed_helpers import save_fed_for
from training import cli_eval, cli_synthroad, stats
from training.evaluation import EvalSettings, MethodScores

METHODS = ["FED-U", "FED-C", "MSP", "MLG", "ENE", "ENT", "SML", "MCD"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fed_eval")
    data = root / "synthroad"
    assert (
        cli_synthroad.main(
            [
                "--out",
                str(data),
                "--train",
                "3",
                "--val",
                "2",
                "--ood",
                "3",
                "--size",
                "64x128",
                "--seed",
                "11",
                "--no-progress",
            ]
        )
        == 0
    )
    torch.manual_seed(0)
    backbone = TinySeg(TinySegConfig(widths=(8, 8, 16, 16), decoder_channels=32)).eval()
    save_tinyseg(root / "tinyseg", backbone, input_size=(64, 128))
    assert (
        stats.main(
            [
                "--backbone",
                str(root / "tinyseg.safetensors"),
                "--data-root",
                str(data),
                "--out",
                str(root / "stats.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    logits, feats = backbone(torch.randint(0, 256, (2, 3, 64, 128)).float())
    for name, cond in (("fed_u", 0), ("fed_c", 8)):
        fed = FlowEneDet(
            FEDConfig(blocks=2, kernel=3, cond_dim=cond, feat_channels=32 if cond else 0)
        )
        fed.initialize(logits.detach(), feats.detach() if cond else None)
        save_fed_for(root / name, fed.eval(), root / "tinyseg")
    return {"root": root, "data": data}


def _run(setup: dict[str, Path], out: Path, *extra: str) -> dict:
    root = setup["root"]
    argv = [
        "--backbone",
        str(root / "tinyseg.safetensors"),
        "--fed",
        f"FED-U={root / 'fed_u'}",
        "--fed",
        f"FED-C={root / 'fed_c'}",
        "--dataset",
        "synthroad-ood",
        "--data-root",
        str(setup["data"]),
        "--out",
        str(out),
        "--stats",
        str(root / "stats.json"),
        "--mcd-passes",
        "2",
        "--no-progress",
        *extra,
    ]
    assert cli_eval.main(argv) == 0
    return json.loads((out / "results.json").read_text())


def test_every_method_and_column(setup: dict[str, Path], tmp_path: Path) -> None:
    results = _run(setup, tmp_path, "--figures", "2")
    assert results["images"] == 3 and results["exact"] is True
    assert list(results["methods"]) == METHODS
    for name in METHODS:
        row = results["methods"][name]
        for group in ("ood", "idm"):
            for key in ("auroc", "ap", "fpr_at_tpr"):
                assert 0.0 <= row[group][key] <= 1.0, (name, group, key, row)
        assert 0.0 <= results["open_miou"][name] <= 1.0
    assert 0.0 <= results["miou"] <= 1.0 and len(results["per_class_iou"]) == 19
    table = (tmp_path / "results.md").read_text()
    for column in (
        "OOD AuROC",
        "OOD AP",
        "OOD FPR95",
        "IDM AuROC",
        "IDM AP",
        "IDM FPR95",
        "mIoU",
        "open-mIoU",
    ):
        assert column in table
    assert all(f"| {name} |" in table for name in METHODS)
    figure = cv2.imread(str(tmp_path / "figures.png"))
    assert (
        figure is not None
        and figure.shape[0] > 2 * 64
        and figure.shape[1] >= (3 + len(METHODS)) * 128
    )


def test_missing_sml_row_is_explained(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --stats and FEDs without statistics: the SML row is absent with a note (finding 8)."""
    root = setup["root"]
    argv = [
        "--backbone",
        str(root / "tinyseg.safetensors"),
        "--fed",
        f"FED-U={root / 'fed_u'}",
        "--dataset",
        "synthroad-ood",
        "--data-root",
        str(setup["data"]),
        "--out",
        str(tmp_path),
        "--mcd-passes",
        "0",
        "--figures",
        "0",
        "--no-open-miou",
        "--no-progress",
    ]
    assert cli_eval.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert "SML" not in results["methods"] and "no logit statistics" in results["notes"][0]
    assert "SML: no row" in (tmp_path / "results.md").read_text()
    assert "fed_eval: note: SML: no row" in capsys.readouterr().err


def test_help_lists_the_dataset_layouts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_eval.main(["--help"])
    out = capsys.readouterr().out
    for needle in (
        "dataset layouts",
        "leftImg8bit",
        "gtFine_labelTrainIds",
        "fishyscapes_lostandfound",
        "labels_semantic",
        "gtFine_oodIds",
        "fs_val_vN",
    ):
        assert needle in out, needle


def test_tta_and_histogram_mode(setup: dict[str, Path], tmp_path: Path) -> None:
    exact = _run(setup, tmp_path / "exact", "--figures", "0", "--no-open-miou")
    hist = _run(setup, tmp_path / "hist", "--figures", "0", "--no-open-miou", "--no-exact")
    for name in METHODS:
        bounds = hist["methods"][name]["ood"]["error_bounds"]
        for key in ("auroc", "ap"):
            bound = max(v for k, v in bounds.items() if k.startswith(key))
            assert (
                abs(hist["methods"][name]["ood"][key] - exact["methods"][name]["ood"][key])
                <= bound + 1e-9
            )
    tta = _run(setup, tmp_path / "tta", "--figures", "0", "--no-open-miou", "--tta")
    assert tta["tta"] is True and set(tta["methods"]) == set(METHODS)
    assert not math.isclose(
        tta["methods"]["FED-U"]["ood"]["auroc"], exact["methods"]["FED-U"]["ood"]["auroc"]
    )


@pytest.mark.parametrize(
    "score, method",
    [("msp", "MSP"), ("maxlogit", "MLG"), ("energy", "ENE"), ("entropy", "ENT"), ("fed", "FED-U")],
)
def test_baselines_match_the_fused_detector(
    setup: dict[str, Path], score: str, method: str
) -> None:
    """fed_eval's score map for a method ranks pixels exactly as the node's confidence does."""
    from ros2_fed.backbones import load_backbone
    from ros2_fed.checkpoint import load_fed

    root = setup["root"]
    backbone = load_backbone(root / "tinyseg.safetensors").eval()
    fed, _ = load_fed(root / "fed_u")
    detector = FusedDetector(
        backbone,
        fed if score == "fed" else None,
        score=score,
        postprocess="gaussian" if score == "fed" else "none",
    ).eval()
    image = np.random.default_rng(3).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    with torch.inference_mode():
        labels, confidence = detector(torch.from_numpy(image)[None])
        methods = MethodScores(backbone, {"FED-U": fed}, EvalSettings(mcd_passes=0), None, None)
        logits, maps = methods(torch.from_numpy(image).permute(2, 0, 1)[None].float(), (64, 128))
    assert np.array_equal(labels[0].numpy(), logits.argmax(1)[0].numpy())
    ours, node = maps[method].numpy().ravel(), confidence[0].float().numpy().ravel()
    # Same score, same resolution handling: "more likely wrong" is exactly "less confident".
    rho = np.corrcoef(np.argsort(np.argsort(ours)), np.argsort(np.argsort(-node)))[0, 1]
    assert rho > 0.999, rho
