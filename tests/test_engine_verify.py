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
    from ros2_fed.fed import FEDConfig
    from tests.fed_helpers import make_random_fed, save_fed_for

    root = tmp_path_factory.mktemp("verify")
    torch.manual_seed(0)
    backbone = TinySeg(TinySegConfig(num_classes=19, widths=(8, 16, 32, 32), decoder_channels=16))
    save_tinyseg(root / "tinyseg", backbone.eval(), SIZE)
    with torch.no_grad():
        logits, _ = backbone(torch.rand(2, 3, *SIZE) * 255)
    save_fed_for(
        root / "fed_u", make_random_fed(FEDConfig(num_classes=19), logits), root / "tinyseg"
    )
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


# ------------------------------------------------------------------------------ the rule itself
# Hand-made frames of 100 x 100 = 10000 pixels: 0.1 % is 10 pixels. The numbers below are the
# documented rule (docs/vehicle.md), written out, not read from verify.py's constants.

N_SIDE = 100


def _frames(
    label_flips: int = 0, bad_pixels: int = 0, bad_diff: float = 0.5, shape: tuple = (N_SIDE,) * 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, confidence, ref_labels, ref_confidence): ``label_flips`` labels and
    ``bad_pixels`` confidences (a contiguous band in raster order, off by ``bad_diff``) differ."""
    ref_labels = np.zeros(shape, np.uint8)
    ref_conf = np.full(shape, 0.25, np.float32)
    labels, conf = ref_labels.copy(), ref_conf.copy()
    labels.reshape(-1)[:label_flips] = 1
    conf.reshape(-1)[:bad_pixels] += np.float32(bad_diff)
    return labels, conf, ref_labels, ref_conf


def _fp32_ok(*frames: np.ndarray) -> bool:
    return verify_mod.parity_ok(verify_mod.parity(*frames), "fp32")


def test_fp32_labels_must_agree_on_at_least_99_9_percent() -> None:
    exactly = verify_mod.parity(*_frames(label_flips=10))
    assert exactly["label_agreement"] == 0.999
    assert verify_mod.parity_ok(exactly, "fp32")  # exactly 99.9 %: accepted (>=, not >)
    assert not _fp32_ok(*_frames(label_flips=11))  # one pixel fewer: refused


def test_fp32_reads_the_99_9th_percentile_not_the_max() -> None:
    # A band of 0.1 % of the pixels off by a lot (one label flip's SML band): accepted ...
    assert _fp32_ok(*_frames(bad_pixels=10, bad_diff=0.7))
    assert _fp32_ok(*_frames(bad_pixels=9, bad_diff=0.7))
    stats = verify_mod.parity(*_frames(bad_pixels=10, bad_diff=0.7))
    assert stats["confidence_max_abs_diff"] == pytest.approx(0.7)  # ... the max still reported
    assert stats["confidence_p999_abs_diff"] == 0.0
    # ... one pixel more is refused, and so is a small difference spread over 0.2 %.
    assert not _fp32_ok(*_frames(bad_pixels=11, bad_diff=0.7))
    assert not _fp32_ok(*_frames(bad_pixels=20, bad_diff=1.5e-3))
    assert _fp32_ok(*_frames(bad_pixels=20, bad_diff=0.9e-3))  # within 1e-3 anywhere: fine


def test_fp32_percentile_is_a_value_a_pixel_has() -> None:
    """Inverted CDF: 10 of 10000 pixels at 1.0 leave the 99.9th percentile at 0.0 (linear
    interpolation would say 1e-3), 11 put it at 1.0."""
    diff = np.zeros(10000, np.float32)
    diff[:10] = 1.0
    assert verify_mod.confidence_quantile(diff) == 0.0
    diff[:11] = 1.0
    assert verify_mod.confidence_quantile(diff) == 1.0
    diff = np.arange(1000, dtype=np.float32)  # 99.9 % of 1000 values: the 999th, 998.0
    assert verify_mod.confidence_quantile(diff) == 998.0


@pytest.mark.parametrize(
    ("precision", "labels", "statistic", "limit"),
    [
        ("fp32", 0.999, "confidence_p999_abs_diff", 1e-3),
        ("fp16", 0.99, "confidence_mean_abs_diff", 0.01),
        ("int8", 0.98, "confidence_mean_abs_diff", 0.02),
    ],
)
def test_each_precision_s_limits_at_their_boundary(
    precision: str, labels: float, statistic: str, limit: float
) -> None:
    good = {
        "label_agreement": labels,
        "confidence_mean_abs_diff": 0.0,
        "confidence_p999_abs_diff": 0.0,
        "confidence_max_abs_diff": 1.0,  # never judged
        statistic: limit,
    }
    assert verify_mod.parity_ok(good, precision)
    assert not verify_mod.parity_ok({**good, statistic: np.nextafter(limit, 1.0)}, precision)
    below = np.nextafter(labels, 0.0)
    assert not verify_mod.parity_ok({**good, "label_agreement": below}, precision)
    other = "confidence_mean_abs_diff" if precision == "fp32" else "confidence_p999_abs_diff"
    assert verify_mod.parity_ok({**good, other: 0.5}, precision)  # not part of this rule


class _Reference(torch.nn.Module):
    """A stand-in eager detector: returns fixed (labels, confidence) frames."""

    def __init__(self, labels: np.ndarray, confidence: np.ndarray) -> None:
        super().__init__()
        self.out = (torch.from_numpy(labels), torch.from_numpy(confidence))

    def forward(self, example: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.out


def test_each_frame_is_judged_and_a_refusal_names_frames_and_pixels() -> None:
    """Frame 1 of 3 has 0.2 % of its pixels off (0.07 % of all three: pooled, it would pass)."""
    labels, conf, ref_labels, ref_conf = (np.stack([a] * 3) for a in _frames())
    conf[1].reshape(-1)[100:120] += np.float32(0.002)  # rows 1, cols 0-19
    conf[1, 7, 42] += np.float32(0.3)  # the largest difference
    conf[1, 60, 3] += np.float32(0.2)  # the second largest
    labels[1, 3, 5] = labels[1, 4, 6] = 2
    reference = _Reference(ref_labels, ref_conf)
    pooled = verify_mod.parity(labels, conf, ref_labels, ref_conf)
    assert verify_mod.parity_ok(pooled, "fp32")
    with pytest.raises(verify_mod.ExportVerificationError) as caught:
        verify_mod.verify_outputs(
            labels, conf, reference, torch.zeros(3), "m.onnx", "ONNX Runtime", "fp32", "--x"
        )
    text = str(caught.value)
    assert "frame(s) 1 of 3" in text and "frame 0" not in text and "frame 2" not in text, text
    assert "2 of 10000 labels differ at (row, col) (3, 5), (4, 6)" in text, text
    assert "largest confidence diffs at (row, col) (7, 42) 3.00e-01, (60, 3) 2.00e-01" in text
    assert "p99.9 2.00e-03" in text and "max 3.00e-01" in text and text.endswith("--x"), text
    assert "\n" not in text  # one log line
    conf[1].reshape(-1)[100:120] -= np.float32(0.002)  # the band alone: two pixels, accepted
    stats = verify_mod.verify_outputs(
        labels, conf, reference, torch.zeros(3), "m.onnx", "ONNX Runtime", "fp32", "--x"
    )
    assert stats["confidence_max_abs_diff"] == pytest.approx(0.3, rel=1e-6)
    with pytest.raises(verify_mod.ExportVerificationError, match="shapes"):  # 2 frames for 3
        verify_mod.verify_outputs(
            labels[:2], conf[:2], reference, torch.zeros(3), "m.onnx", "ONNX Runtime", "fp32", "-"
        )


def test_the_verification_frames_are_seeded() -> None:
    torch.manual_seed(1)
    first = verify_mod.verification_example(2, 8, 16)
    torch.manual_seed(2)  # the global generator plays no part
    again = verify_mod.verification_example(2, 8, 16)
    assert first.dtype == torch.uint8 and tuple(first.shape) == (2, 8, 16, 3)
    assert torch.equal(first, again)
    assert int(first.min()) < 10 and int(first.max()) > 245  # noise over the whole range
    assert not torch.equal(first, verify_mod.verification_example(2, 8, 16, seed=1))
    options = verify_mod.verification_session_options()
    assert options.use_deterministic_compute is True
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1


def test_two_cold_builds_check_the_same_frames_and_log_the_figures(
    model: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ros2_fed.engine import open_cached

    monkeypatch.delenv(verify_mod.VERIFY_ENV, raising=False)
    real, checked = verify_mod.run_onnx, []

    def spy(path: Any, example: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        checked.append(example.clone())
        return real(path, example)

    monkeypatch.setattr(verify_mod, "run_onnx", spy)
    figures, logs = [], []
    for name in ("a", "b"):  # two empty caches: two builds
        engine = open_cached(
            model["backbone"],
            model["fed"],
            height=SIZE[0],
            width=SIZE[1],
            warmup=0,
            progress=logs.append,
            cache=tmp_path / name,
        )
        assert engine.cache_hit is False
        figures.append(engine.metadata["verification"])
        engine.close()
    assert len(checked) == 2 and torch.equal(checked[0], checked[1])  # the same frames ...
    assert torch.equal(checked[0], verify_mod.verification_example(1, *SIZE, seed=0))  # seed 0
    for got in figures:
        assert got["frames"] == 1 and got["checked_in"] == "onnxruntime", got
        assert got["label_agreement"] >= 0.999 and got["confidence_p999_abs_diff"] <= 1e-3, got
        assert 0.0 < got["confidence_mean_abs_diff"] <= got["confidence_max_abs_diff"], got
    verified = [line for line in logs if line.startswith("verified against the float32 eager")]
    assert len(verified) == 2 and "p99.9" in verified[0] and "max" in verified[0], logs
