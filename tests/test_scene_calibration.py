"""The scene statistic's in-domain distribution: measured by fed_calibrate, stored in the FED
checkpoint next to the alert threshold, carried by the engine sidecar, read by the node's scene
stage (an explicit parameter still overrides).

A random TinySeg + FED-U on four 64x128 synthroad val frames; the per-frame statistic is then
recomputed from the detector's own confidence maps with the node's function, and the recorded
quantiles must match it (the calibration keeps histograms, so within a histogram bin).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_fed import scene

H, W = 64, 128


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg
    from ros2_fed.fed import FEDConfig
    from tests.fed_helpers import make_random_fed, save_fed_for
    from training import calibrate, cli_synthroad

    root = tmp_path_factory.mktemp("scene_cal")
    args = ["--out", str(root / "data"), "--train", "0", "--val", "4", "--ood", "0"]
    assert cli_synthroad.main(args + ["--size", f"{H}x{W}", "--no-progress"]) == 0
    torch.manual_seed(0)
    backbone = TinySeg(TinySegConfig(widths=(4, 8, 8, 8), decoder_channels=8)).eval()
    with torch.no_grad():
        backbone.conv_seg.bias[0] += 5.0  # road nearly everywhere: some right, some wrong
        logits, _ = backbone(torch.rand(1, 3, H, W) * 255)
    save_tinyseg(root / "bb", backbone, (H, W))
    save_fed_for(root / "fed", make_random_fed(FEDConfig(num_classes=19), logits), root / "bb")
    out = root / "cal.json"
    argv = ["--backbone", str(root / "bb"), "--fed", str(root / "fed"), "--data-root"]
    argv += [str(root / "data"), "--false-alarm", "0.2", "--scene-hood", "0.15", "--into"]
    assert calibrate.main(argv + ["--out", str(out), "--no-progress"]) == 0
    return {"root": root, "record": json.loads(out.read_text())}


def test_record_holds_the_in_domain_distribution(calibrated: dict) -> None:
    from ros2_fed.detector import FusedDetector
    from training.data import sample_arrays
    from training.datasets.cityscapes import CityscapesDataset

    record, root = calibrated["record"], calibrated["root"]
    sc = record["scene"]
    assert sc["statistic"] == scene.STATISTIC and sc["frames"] == 4 and sc["hood"] == 0.15
    assert sc["confidence_threshold"] == record["confidence_threshold"]
    detector = FusedDetector.from_checkpoints(root / "bb", root / "fed").eval()
    dataset = CityscapesDataset(root / "data", split="val")
    fractions = []
    with torch.no_grad():
        for i in range(4):
            image, _ = sample_arrays(dataset[i])
            _, conf = detector(torch.from_numpy(np.ascontiguousarray(image))[None])
            fractions.append(
                scene.uncertain_fraction(conf[0].numpy(), record["confidence_threshold"], 0.15)
            )
    for q, value in sc["quantiles"].items():
        assert value == pytest.approx(float(np.quantile(fractions, float(q))), abs=5e-3), q


def test_stored_in_the_checkpoint_carried_by_the_engine_and_read_by_the_node(
    calibrated: dict,
) -> None:
    from ros2_fed import pipeline
    from ros2_fed.checkpoint import load_fed
    from ros2_fed.detector import FusedDetector
    from ros2_fed.engine.base import read_sidecar
    from ros2_fed.engine.export import export_engine
    from ros2_fed.pipeline.params import scene_config

    record, root = calibrated["record"], calibrated["root"]
    _, meta = load_fed(root / "fed")
    assert meta["calibration"]["scene"] == record["scene"]
    engine = root / "m.onnx"
    export_engine(FusedDetector.from_checkpoints(root / "bb", root / "fed").eval(), engine, H, W)
    calibration = pipeline.model_calibration(read_sidecar(engine))
    config = scene_config(pipeline.parameter_defaults(), calibration)
    assert config.limits_from == "model" and config.hood == 0.15
    warn, _ = scene.limits_from_distribution(record["scene"]["quantiles"])
    assert config.warn_fraction == pytest.approx(warn)
    assert config.confidence_threshold == pytest.approx(record["confidence_threshold"])
    explicit = scene_config({"scene.warn_fraction": 0.0}, calibration)
    assert explicit.warn_fraction == 0.0 and explicit.limits_from == "parameters"
    assert (
        pipeline.spec_calibration(pipeline.ModelSpec(engine_path=str(engine)))["scene"]
        == (record["scene"])
    )


def test_fed_calibrate_prints_the_scene_limits(
    calibrated: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import calibrate

    root: Path = calibrated["root"]
    argv = ["--backbone", str(root / "bb"), "--fed", str(root / "fed"), "--data-root"]
    assert calibrate.main(argv + [str(root / "data"), "--limit", "2", "--no-progress"]) == 0
    assert "scene status WARN above" in capsys.readouterr().out
