"""Backbone fingerprints: a FED, its statistics or an engine made for another backbone is one
clear error.

Two TinySegs of the same architecture with different random weights stand in for MiT-B0 / MiT-B2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from ros2_fed.fingerprint import (
    ALLOW_FLAG,
    FINGERPRINT_KEY,
    BackboneFingerprint,
    BackboneMismatchError,
    FingerprintMissingWarning,
    check_backbone,
    fingerprint_of,
)

B0 = BackboneFingerprint("segformer", 19, "a" * 64)
B2 = BackboneFingerprint("segformer", 19, "b" * 64)


def test_mismatch_is_one_error_naming_both_backbones_and_the_flag() -> None:
    with pytest.raises(BackboneMismatchError) as info:
        check_backbone({FINGERPRINT_KEY: B0.to_json()}, B2, "FED checkpoint fed_c")
    message = str(info.value)
    assert "\n" not in message and "fed_c" in message and ALLOW_FLAG in message
    assert "aaaaaaaaaaaa" in message and "bbbbbbbbbbbb" in message


def test_same_backbone_passes_silently_and_a_converted_checkpoint_matches_its_source() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_backbone({FINGERPRINT_KEY: B0.to_json()}, B0, "x")
        converted = BackboneFingerprint("segformer", 19, "c" * 64, source_sha256="a" * 64)
        check_backbone({FINGERPRINT_KEY: B0.to_json()}, converted, "x")
        check_backbone({FINGERPRINT_KEY: converted.to_json()}, B0, "x")


@pytest.mark.parametrize(
    "other",
    [
        BackboneFingerprint("deeplabv3plus", 19, "a" * 64),
        BackboneFingerprint("segformer", 150, "a" * 64),
    ],
)
def test_architecture_or_classes_differ(other: BackboneFingerprint) -> None:
    with pytest.raises(BackboneMismatchError):
        check_backbone({FINGERPRINT_KEY: B0.to_json()}, other, "x")


def test_flag_turns_the_mismatch_into_a_warning_and_old_files_only_warn() -> None:
    with pytest.warns(UserWarning, match=ALLOW_FLAG):
        check_backbone({FINGERPRINT_KEY: B0.to_json()}, B2, "x", allow_mismatch=True)
    with pytest.warns(FingerprintMissingWarning, match="no backbone fingerprint"):
        check_backbone({"variant": "fed-u"}, B2, "FED checkpoint old")


def test_the_check_needs_no_torch() -> None:
    code = "import sys, ros2_fed.fingerprint; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------------------- with checkpoints
def _tinyseg(seed: int) -> torch.nn.Module:
    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig

    torch.manual_seed(seed)
    return TinySeg(TinySegConfig(widths=(4, 8, 8, 8), decoder_channels=8)).eval()


@pytest.fixture(scope="module")
def two_backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """bb0 / bb2 (same architecture, other weights), a FED made for bb0 and an old FED without
    fingerprint."""
    from ros2_fed.backbones import load_backbone
    from ros2_fed.backbones.tinyseg import save_tinyseg
    from ros2_fed.checkpoint import save_fed
    from ros2_fed.fed import FEDConfig
    from tests.fed_helpers import make_random_fed

    root = tmp_path_factory.mktemp("fingerprint")
    for name, seed in (("bb0", 0), ("bb2", 2)):
        save_tinyseg(root / name, _tinyseg(seed), (32, 64))
    with torch.no_grad():
        logits, _ = _tinyseg(0)(torch.rand(1, 3, 32, 64) * 255)
    fed = make_random_fed(FEDConfig(num_classes=19, blocks=2), logits)
    fp0 = fingerprint_of(load_backbone(root / "bb0"))
    save_fed(root / "fed_bb0", fed, {FINGERPRINT_KEY: fp0.to_json()})
    save_fed(root / "fed_old", fed)
    return {"root": root, "fp0": fp0}


def test_loaded_backbone_fingerprint_is_its_checkpoint_hash(two_backbones: dict[str, Any]) -> None:
    root, fp0 = two_backbones["root"], two_backbones["fp0"]
    meta = json.loads((root / "bb0.json").read_text())
    assert fp0 == BackboneFingerprint("tinyseg", 19, meta["tensors_sha256"])


def test_detector_from_checkpoints_checks_the_fed(two_backbones: dict[str, Any]) -> None:
    from ros2_fed.detector import FusedDetector

    root = two_backbones["root"]
    FusedDetector.from_checkpoints(root / "bb0", root / "fed_bb0")
    with pytest.raises(BackboneMismatchError, match="fed_bb0"):
        FusedDetector.from_checkpoints(root / "bb2", root / "fed_bb0")
    with pytest.warns(UserWarning, match=ALLOW_FLAG):
        FusedDetector.from_checkpoints(
            root / "bb2", root / "fed_bb0", allow_backbone_mismatch=True
        )
    with pytest.warns(FingerprintMissingWarning):
        FusedDetector.from_checkpoints(root / "bb2", root / "fed_old")


def test_engine_sidecar_records_the_backbone(two_backbones: dict[str, Any]) -> None:
    from ros2_fed.detector import FusedDetector
    from ros2_fed.engine.metadata import sidecar_metadata

    root = two_backbones["root"]
    detector = FusedDetector.from_checkpoints(root / "bb0", root / "fed_bb0")
    meta = sidecar_metadata(detector, runtime="onnxruntime", precision="fp32", height=32, width=64)
    assert meta[FINGERPRINT_KEY] == two_backbones["fp0"].to_json()
    json.dumps(meta)


def test_fed_export_refuses_a_fed_of_another_backbone(
    two_backbones: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ros2_fed.engine.cli_export import main

    root = two_backbones["root"]
    for out in (
        ["--out", str(tmp_path / "m.onnx")],
        [],
    ):  # explicit file and the engine cache (fed_node's path)
        code = main(
            [
                "--backbone",
                str(root / "bb2"),
                "--fed",
                str(root / "fed_bb0"),
                "--height",
                "32",
                "--width",
                "64",
                "--quiet",
                *out,
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and "fed_bb0" in err[0] and ALLOW_FLAG in err[0], err
    assert not (tmp_path / "m.onnx").exists()


def test_cached_engine_build_checks_the_fed(two_backbones: dict[str, Any], tmp_path: Path) -> None:
    """What fed_node runs for model.backbone + model.fed: the build fails before anything is
    written."""
    from ros2_fed.engine.cache import open_cached

    root = two_backbones["root"]
    with pytest.raises(BackboneMismatchError):
        open_cached(
            root / "bb2", root / "fed_bb0", height=32, width=64, cache=tmp_path, progress=None
        )
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_bag_eval_reference_checks_feds_stats_and_engine(
    two_backbones: dict[str, Any], tmp_path: Path
) -> None:
    from ros2_fed.eval.replay.scoring import ReferenceModel, ReferenceScores

    root, fp0 = two_backbones["root"], two_backbones["fp0"]
    with pytest.raises(BackboneMismatchError, match="fed_bb0"):
        ReferenceScores(
            ReferenceModel(backbone=str(root / "bb2"), feds={"FED-U": str(root / "fed_bb0")})
        )
    stats = tmp_path / "stats.json"
    stats.write_text(
        json.dumps(
            {
                "mean": [0.0] * 19,
                "std": [1.0] * 19,
                "definition": "correct",
                FINGERPRINT_KEY: fp0.to_json(),
            }
        )
    )
    with pytest.raises(BackboneMismatchError, match="stats.json"):
        ReferenceScores(ReferenceModel(backbone=str(root / "bb2"), stats=str(stats)))
    with pytest.raises(BackboneMismatchError, match="engine"):
        ReferenceScores(
            ReferenceModel(backbone=str(root / "bb2")),
            engine_metadata={FINGERPRINT_KEY: fp0.to_json()},
        )
    ReferenceScores(
        ReferenceModel(
            backbone=str(root / "bb0"), feds={"FED-U": str(root / "fed_bb0")}, stats=str(stats)
        ),
        engine_metadata={FINGERPRINT_KEY: fp0.to_json()},
    )
    with pytest.warns(UserWarning, match=ALLOW_FLAG):
        ReferenceScores(
            ReferenceModel(
                backbone=str(root / "bb2"),
                feds={"FED-U": str(root / "fed_bb0")},
                allow_backbone_mismatch=True,
            )
        )


def test_fed_bag_eval_reports_a_mismatch_in_one_line(
    two_backbones: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An engine built for bb0 scored against reference rows of bb2: exit 2, one line, the flag
    named."""
    from ros2_fed.detector import FusedDetector
    from ros2_fed.engine.export import export_engine
    from ros2_fed.eval.replay import cli as bag_eval
    from training import synthroad_bag as sb

    root = two_backbones["root"]
    monkeypatch.setenv("ROS2_FED_CACHE", str(tmp_path / "cache"))
    sb.write_synthroad_bag(
        tmp_path / "drive", frames=2, size=(32, 64), fps=10.0, seed=0, ood_from_frame=1
    )
    engine, _ = export_engine(
        FusedDetector.from_checkpoints(root / "bb0", root / "fed_bb0"),
        tmp_path / "e.onnx",
        32,
        64,
        progress=None,
    )
    args = [
        str(tmp_path / "drive"),
        "--offline",
        "--quiet",
        "--engine",
        str(engine),
        "--backbone",
        str(root / "bb2"),
        "--reference-fed",
        f"FED-U={root / 'fed_bb0'}",
        "--mcd-passes",
        "0",
        "--threads",
        "1",
    ]
    code = bag_eval.main(args + ["--out", str(tmp_path / "out")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "the engine" in err[0] and ALLOW_FLAG in err[0], err
    with pytest.warns(UserWarning, match=ALLOW_FLAG):
        assert bag_eval.main(args + ["--out", str(tmp_path / "out2"), ALLOW_FLAG]) == 0


def test_fed_bag_eval_engine_build_from_a_mismatched_pair(
    two_backbones: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--backbone + --fed of another backbone: the node's engine build refuses; one line, exit 2,
    no traceback."""
    from ros2_fed.eval.replay import cli as bag_eval
    from training import synthroad_bag as sb

    root = two_backbones["root"]
    monkeypatch.setenv("ROS2_FED_CACHE", str(tmp_path / "cache"))
    sb.write_synthroad_bag(
        tmp_path / "drive", frames=2, size=(32, 64), fps=10.0, seed=0, ood_from_frame=1
    )
    code = bag_eval.main(
        [
            str(tmp_path / "drive"),
            "--offline",
            "--quiet",
            "--backbone",
            str(root / "bb2"),
            "--fed",
            str(root / "fed_bb0"),
            "--runtime",
            "torch",
            "--out",
            str(tmp_path / "out"),
            "--mcd-passes",
            "0",
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert (
        code == 2 and len(err) == 1 and "BackboneMismatchError" in err[0] and "fed_bb0" in err[0]
    ), err
