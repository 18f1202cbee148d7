"""Every engine build is checked against the float32 eager detector (issue 16, finding 2).

A model whose exported output disagrees (here: ONNX Runtime's output shifted by 0.2) is
refused on each path -- ``fed_export --out``, ``fed_export`` into the cache, the cache as
fed_node opens it, ``fed_bag_eval`` -- and the error names the override; with the override
it builds. Nothing is left under the final name after a refusal.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ros2_fed.engine import verify as verify_mod

SIZE = (32, 64)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg
    from ros2_fed.checkpoint import save_fed
    from ros2_fed.fed import FEDConfig
    from tests.fed_helpers import make_random_fed

    root = tmp_path_factory.mktemp("verify")
    torch.manual_seed(0)
    backbone = TinySeg(TinySegConfig(num_classes=19, widths=(8, 16, 32, 32), decoder_channels=16))
    save_tinyseg(root / "tinyseg", backbone.eval(), SIZE)
    with torch.no_grad():
        logits, _ = backbone(torch.rand(2, 3, *SIZE) * 255)
    save_fed(root / "fed_u", make_random_fed(FEDConfig(num_classes=19), logits))
    return {"backbone": str(root / "tinyseg"), "fed": str(root / "fed_u")}


@pytest.fixture
def disagreeing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ONNX Runtime's confidence off by 0.2 (an export that does not compute what eager does)."""
    real = verify_mod.run_onnx

    def shifted(path: Any, example: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        labels, confidence = real(path, example)
        return labels, np.clip(confidence + 0.2, 0.0, 1.0)

    monkeypatch.setattr(verify_mod, "run_onnx", shifted)
    monkeypatch.setenv("ROS2_FED_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(verify_mod.VERIFY_ENV, raising=False)
    torch.set_num_threads(1)
    return tmp_path / "cache"


def _err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_fed_export_out_is_refused(
    model: dict[str, str], disagreeing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ros2_fed.engine import cli_export

    out = tmp_path / "m.onnx"
    args = [
        "--backbone",
        model["backbone"],
        "--fed",
        model["fed"],
        "--height",
        str(SIZE[0]),
        "--width",
        str(SIZE[1]),
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli_export.main(args) != 0
    err = _err_lines(capsys)
    assert len(err) == 1 and "disagrees" in err[0] and "--no-verify" in err[0], err
    assert not out.exists() and not out.with_name("m.onnx.json").exists()
    assert cli_export.main(args + ["--no-verify"]) == 0 and out.is_file()


def test_fed_export_into_the_cache_is_refused(
    model: dict[str, str], disagreeing: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ros2_fed.engine import cli_export

    args = [
        "--backbone",
        model["backbone"],
        "--fed",
        model["fed"],
        "--height",
        str(SIZE[0]),
        "--width",
        str(SIZE[1]),
        "--quiet",
    ]
    assert cli_export.main(args) != 0
    err = _err_lines(capsys)
    assert len(err) == 1 and "disagrees" in err[0] and "--no-verify" in err[0], err
    assert not list(disagreeing.rglob("*.onnx"))
    assert cli_export.main(args + ["--no-verify"]) == 0
    assert len(list(disagreeing.rglob("model.onnx"))) == 1


def test_the_node_cache_is_refused_and_an_unchecked_entry_rebuilt(
    model: dict[str, str], disagreeing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ros2_fed.engine import open_cached
    from ros2_fed.pipeline import ModelSpec, StartupError, open_engine

    spec = ModelSpec(
        backbone=model["backbone"],
        fed=model["fed"],
        height=SIZE[0],
        width=SIZE[1],
        runtime="onnxruntime",
        score="fed",
        threads=1,
    )
    with pytest.raises(StartupError, match=f"disagrees.*{verify_mod.VERIFY_ENV}=0"):
        open_engine(spec)  # how fed_node opens it
    assert not list(disagreeing.rglob("*.onnx"))
    monkeypatch.setenv(verify_mod.VERIFY_ENV, "0")
    engine = open_engine(spec)
    assert engine.metadata["verified"] is False
    engine.close()
    monkeypatch.delenv(verify_mod.VERIFY_ENV)
    with pytest.raises(verify_mod.ExportVerificationError, match="--no-verify"):
        open_cached(
            model["backbone"], model["fed"], height=SIZE[0], width=SIZE[1], warmup=0, progress=None
        )  # the unchecked entry is not reused: rebuilt, checked, refused


def test_a_checked_cache_entry_is_reused(
    model: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ros2_fed.engine import open_cached

    monkeypatch.delenv(verify_mod.VERIFY_ENV, raising=False)
    kwargs: dict[str, Any] = dict(
        height=SIZE[0], width=SIZE[1], warmup=0, progress=None, cache=tmp_path / "cache"
    )
    first = open_cached(model["backbone"], model["fed"], **kwargs)
    assert first.cache_hit is False and first.metadata["verified"] is True
    first.close()
    again = open_cached(model["backbone"], model["fed"], **kwargs)
    assert again.cache_hit is True
    again.close()


def test_fed_bag_eval_is_refused(
    model: dict[str, str], disagreeing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ros2_fed.eval.replay import cli as bag_eval
    from training import synthroad_bag as sb

    sb.write_synthroad_bag(
        tmp_path / "drive", frames=2, size=SIZE, fps=10.0, seed=0, ood_from_frame=1
    )
    args = [
        str(tmp_path / "drive"),
        "--offline",
        "--quiet",
        "--backbone",
        model["backbone"],
        "--fed",
        model["fed"],
        "--runtime",
        "onnxruntime",
        "--threads",
        "1",
        "--no-reference",
    ]
    assert bag_eval.main(args + ["--out", str(tmp_path / "out")]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "disagrees" in err[0] and "--no-verify" in err[0], err
    assert bag_eval.main(args + ["--out", str(tmp_path / "out2"), "--no-verify"]) == 0
    assert verify_mod.VERIFY_ENV not in os.environ  # restored after the run
