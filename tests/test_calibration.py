"""training.calibrate: the operating point, its storage in the FED checkpoint and its way to the
node.

The threshold is checked against numpy's quantile on hand-made confidences; the end-to-end path
(fed_calibrate on a tiny synthroad -> FED metadata -> FusedDetector -> ONNX sidecar -> the node's
parameter resolution) is checked on random weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.calibrate import VIZ_THRESHOLD_POSITION, operating_point


def test_operating_point_is_the_false_alarm_quantile_of_correct_pixels() -> None:
    correct = np.linspace(0.5, 1.0, 1001)  # 2 % of them below 0.51
    wrong = np.array([0.1, 0.3, 0.505, 0.9])
    point = operating_point(correct, wrong, 0.02)
    assert point["confidence_threshold"] == pytest.approx(np.quantile(correct, 0.02))
    assert point["confidence_threshold"] == pytest.approx(0.51)
    low, high = point["viz_range"]
    assert high == pytest.approx(np.median(correct))
    # the threshold sits a quarter up the red (low) .. blue (high) scale
    assert (point["confidence_threshold"] - low) / (high - low) == pytest.approx(
        VIZ_THRESHOLD_POSITION
    )
    assert point["wrong_recall"] == pytest.approx(3 / 4)  # 0.1, 0.3, 0.505 are below 0.51
    assert point["precision"] == pytest.approx(3 / (3 + 20))
    with pytest.raises(ValueError):
        operating_point(correct, wrong, 0.0)
    with pytest.raises(ValueError):
        operating_point(np.array([]), wrong, 0.02)


def test_saturated_confidences_still_give_a_usable_colour_range() -> None:
    point = operating_point(np.ones(100), np.zeros(3), 0.05)
    low, high = point["viz_range"]
    assert 0.0 <= low < point["confidence_threshold"] <= high <= 1.0


def test_fed_calibrate_end_to_end(tmp_path) -> None:
    from ros2_fed import pipeline
    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg
    from ros2_fed.checkpoint import load_fed
    from ros2_fed.detector import FusedDetector
    from ros2_fed.engine.base import read_sidecar
    from ros2_fed.engine.export import export_engine
    from ros2_fed.fed import FEDConfig
    from tests.fed_helpers import make_random_fed, save_fed_for
    from training import calibrate, cli_synthroad

    assert (
        cli_synthroad.main(
            [
                "--out",
                str(tmp_path / "data"),
                "--train",
                "0",
                "--val",
                "3",
                "--ood",
                "0",
                "--size",
                "64x128",
                "--no-progress",
            ]
        )
        == 0
    )
    torch.manual_seed(0)
    backbone = TinySeg(TinySegConfig(widths=(4, 8, 8, 8), decoder_channels=8)).eval()
    with (
        torch.no_grad()
    ):  # predicts road (train id 0) nearly everywhere: some pixels correct, some wrong
        backbone.conv_seg.bias[0] += 5.0
    save_tinyseg(tmp_path / "bb", backbone, (64, 128))
    with torch.no_grad():
        logits, _ = backbone(torch.rand(1, 3, 64, 128) * 255)
    save_fed_for(
        tmp_path / "fed", make_random_fed(FEDConfig(num_classes=19), logits), tmp_path / "bb"
    )

    out = tmp_path / "cal.json"
    assert (
        calibrate.main(
            [
                "--backbone",
                str(tmp_path / "bb"),
                "--fed",
                str(tmp_path / "fed"),
                "--data-root",
                str(tmp_path / "data"),
                "--false-alarm",
                "0.1",
                "--postprocess",
                "gaussian",
                "--into",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert (
        record["postprocess"] == "gaussian" and record["images"] == 3 and record["split"] == "val"
    )
    assert 0.0 <= record["confidence_threshold"] <= 1.0
    _, meta = load_fed(tmp_path / "fed")
    assert meta["calibration"] == record

    # the detector runs the post-processing the threshold was measured with, and carries it
    detector = FusedDetector.from_checkpoints(tmp_path / "bb", tmp_path / "fed")
    assert detector.postprocess_name == "gaussian" and detector.calibration == record
    # an explicit other post-processing drops the (then meaningless) calibration
    assert (
        FusedDetector.from_checkpoints(
            tmp_path / "bb", tmp_path / "fed", postprocess="none"
        ).calibration
        is None
    )

    # recomputing the threshold from the same detector gives the same number
    from training.data import sample_arrays
    from training.datasets.cityscapes import CityscapesDataset

    dataset = CityscapesDataset(tmp_path / "data", split="val")
    correct, wrong = calibrate.confidences(
        detector.eval(), (sample_arrays(dataset[i]) for i in range(3)), progress=False
    )
    assert record["confidence_threshold"] == pytest.approx(float(np.quantile(correct, 0.1)))

    # the engine sidecar carries it, and the node's "from the model" parameters resolve to it
    engine = tmp_path / "m.onnx"
    export_engine(detector.eval(), engine, 64, 128)
    calibration = pipeline.model_calibration(read_sidecar(engine))
    assert calibration["confidence_threshold"] == pytest.approx(record["confidence_threshold"])
    config = pipeline.alert_config(pipeline.parameter_defaults(), calibration)
    assert config.confidence_threshold == pytest.approx(record["confidence_threshold"])
    assert (
        pipeline.spec_calibration(pipeline.ModelSpec(engine_path=str(engine)))["viz_range"]
        == record["viz_range"]
    )


def test_fed_calibrate_user_errors(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from training import calibrate

    assert (
        calibrate.main(
            [
                "--backbone",
                "x",
                "--fed",
                str(tmp_path / "nofed"),
                "--data-root",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "fed_calibrate:" in capsys.readouterr().err
