"""FusedDetector: the fused FED equals FlowEneDet, and every graph stage equals the same
pipeline written out step by step with plain torch ops (the oracle) — labels, confidence
mappings, resizing, FED rate, post-processing, dtypes, config round trip, identity hash."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ros2_fed.detector import (
    DEFAULT_SIGMOID,
    FusedDetector,
    detector_from_config,
    detector_hash,
)
from ros2_fed.fed import FEDConfig, FlowEneDet
from ros2_fed.fed.fused import (
    FoldedBlock,
    can_fuse,
    energy_inputs_exact,
    fold_fed,
    fused_logit_difference,
    fused_p_wrong,
    log1p_exact,
)
from ros2_fed.fed.postprocess import make_postprocess
from tests.fed_helpers import make_random_fed, save_fed_for

C = 19


class StandIn(nn.Module):
    """Tiny random backbone with the real contract: RGB 0..255 -> (logits, features) at ceil(H/4).

    The logit scale gives the energy a realistic spread (std of logsumexp ~1, as trained
    Cityscapes backbones have); a near-constant energy would make FED's ActNorm amplify
    float rounding and test the conditioning of random weights, not the code.
    """

    def __init__(self, num_classes: int = C, feat: int = 16, scale: float = 20.0) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, feat, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(feat, feat, 3, stride=2, padding=1)
        self.head = nn.Conv2d(feat, num_classes, 1)
        self.scale = scale
        self.num_classes = num_classes
        self.feature_channels = feat

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(self.c2(torch.relu(self.c1(images.float() / 64.0 - 2.0))))
        return self.head(f) * self.scale, f


def _lively(make, probe) -> FlowEneDet:
    """First of a few seeded FEDs whose p_wrong varies on ``probe`` (random flows can saturate).

    Deterministic: the seeds are fixed; keeps the comparisons meaningful (a constant 0/1
    p_wrong would hide any error).
    """
    for seed in range(20):
        torch.manual_seed(1000 + seed)
        fed = make()
        with torch.no_grad():
            p = fed.p_wrong(*probe)
        if 0.05 < float(p.std()) and 0.02 < float(p.mean()) < 0.98:
            return fed
    raise AssertionError("no seed gave a non-degenerate FED")


def _perturbed_fed(cfg: FEDConfig, logits: torch.Tensor, feats) -> FlowEneDet:
    """Data-initialised, then every parameter and statistic moved off its init, so each
    folding term is exercised."""

    def make() -> FlowEneDet:
        fed = FlowEneDet(cfg)
        fed.standardizer.set_statistics(
            torch.randn(cfg.num_classes), torch.rand(cfg.num_classes) + 0.5
        )
        fed.initialize(logits, feats)
        with torch.no_grad():
            for p in fed.parameters():
                p.add_(0.1 * torch.randn_like(p))
        return fed.eval()

    return _lively(make, (logits, feats))


@pytest.fixture()
def backbone() -> StandIn:
    return StandIn().eval()


def _images(b: int, h: int, w: int) -> torch.Tensor:
    return torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8)


def _fed_for(backbone: nn.Module, cond_dim: int = 0) -> FlowEneDet:
    with torch.no_grad():
        logits, feats = backbone(torch.rand(2, 3, 64, 96) * 255)
        probe = backbone(torch.randint(0, 256, (1, 3, 40, 56)).float())
    cfg = FEDConfig(cond_dim=cond_dim, feat_channels=16 if cond_dim else 0)
    return _lively(
        lambda: make_random_fed(cfg, logits, feats), (probe[0], probe[1] if cond_dim else None)
    )


def _reference(
    backbone: nn.Module, images: torch.Tensor, size=None
) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.permute(0, 3, 1, 2).float()
    if size is not None:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return backbone(x)


# ------------------------------------------------------------------------------ fused FED


@pytest.mark.parametrize(
    "cfg,feat_size",
    [
        (FEDConfig(), None),
        (FEDConfig(cond_dim=32, feat_channels=64), (20, 28)),  # pooling folded into the 1x1 conv
        (FEDConfig(cond_dim=32, feat_channels=256), (10, 14)),  # pool first; condition resampled
        (FEDConfig(cov="diag", kernel=3, blocks=4, hidden=3), None),
        (FEDConfig(cond_dim=3, feat_channels=7, kernel=11), (20, 28)),  # uneven channel groups
    ],
)
def test_fused_fed_equals_flowenedet(cfg: FEDConfig, feat_size) -> None:
    logits = 3 * torch.randn(2, cfg.num_classes, 20, 28)
    feats = torch.randn(2, cfg.feat_channels, *feat_size) if feat_size else None
    fed = _perturbed_fed(cfg, logits, feats)
    assert can_fuse(fed)
    with torch.no_grad():
        ref = fed.p_wrong(logits, feats)
        folded = fold_fed(fed)
        out = fused_p_wrong(fed, logits, feats, folded)
        again = fused_p_wrong(fed, logits, feats)  # folding per call gives the same numbers
        oracle = (
            fed.double()
            .p_wrong(logits.double(), None if feats is None else feats.double())
            .float()
        )
    assert ref.std() > 0.01, "degenerate test: p_wrong is constant"
    # both float32 paths are as close to the float64 oracle as float32 allows here
    assert float((ref - oracle).abs().max()) < 1e-4
    assert float((out - oracle).abs().max()) < 1e-4
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)
    torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_folded_blocks_have_named_fields_and_layers_keep_their_keys() -> None:
    """The folding reads the layers by name; the state-dict keys stay those of the shipped FEDs."""
    cfg = FEDConfig(cond_dim=4, feat_channels=8, blocks=2)
    fed = FlowEneDet(cfg)
    coupling = fed.flow.blocks[0].coupling
    assert coupling.scale_net.expand is coupling.scale_net[0]
    assert coupling.scale_net.spatial.kernel_size == (cfg.kernel, cfg.kernel)
    assert fed.flow.blocks[0].attention.net.project is fed.flow.blocks[0].attention.net[2]
    keys = set(fed.state_dict())
    for net in ("coupling.scale_net", "coupling.shift_net"):
        assert {f"flow.blocks.1.{net}.{i}.weight" for i in (0, 2, 4)} <= keys
    assert {f"flow.blocks.1.attention.net.{i}.bias" for i in (0, 2)} <= keys
    block = fold_fed(fed).blocks[1]
    assert isinstance(block, FoldedBlock) and block.kept_channel == 1
    assert block.mix_weight.shape == (2 + 3 * cfg.hidden, 2, 1, 1)
    assert block.spatial_weight.shape[0] == 2 * cfg.hidden


@pytest.mark.parametrize("name", ["fed_u_synthroad", "fed_c_synthroad"])
def test_shipped_feds_load_and_fuse(name: str) -> None:
    from ros2_fed.checkpoint import load_fed

    root = Path(__file__).resolve().parents[1] / "models"
    if not (root / f"{name}.safetensors").is_file():
        pytest.skip(f"models/{name} not present")
    fed, _ = load_fed(root / name)
    assert can_fuse(fed)
    cfg = fed.cfg
    g = torch.Generator().manual_seed(1)
    logits = 4 * torch.randn(1, cfg.num_classes, 8, 12, generator=g)
    feats = torch.randn(1, cfg.feat_channels, 8, 12, generator=g) if cfg.conditional else None
    with torch.no_grad():
        ref = fed.p_wrong(logits, feats)
        out = fused_p_wrong(fed, logits, feats, fold_fed(fed))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_fused_fed_component_difference_matches_head() -> None:
    """Compare before the sigmoid too (the sigmoid hides errors where it saturates)."""
    logits, feats = 3 * torch.randn(1, C, 12, 16), torch.randn(1, 64, 12, 16)
    fed = _perturbed_fed(FEDConfig(cond_dim=32, feat_channels=64), logits, feats)
    with torch.no_grad():
        comp = fed(logits, feats)
        ref = comp[:, 1:2] - comp[:, 0:1]
        out = fused_logit_difference(fed, logits, feats)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)


def test_log1p_exact_keeps_relative_precision() -> None:
    t = torch.logspace(-30, 0, 301, dtype=torch.float64)
    exact = torch.log1p(t)
    naive = torch.log(1.0 + t.float()).double()  # what ONNX's Log(1 + t) computes
    ours = log1p_exact(t.float()).double()
    assert torch.max(torch.abs(ours - exact) / exact) < 1e-6
    assert torch.max(torch.abs(naive - exact) / exact) > 1e-2  # the problem it solves


def test_energy_inputs_exact_equals_fed_energy_inputs() -> None:
    logits = 10 * torch.randn(2, C, 9, 11)
    fed = _perturbed_fed(FEDConfig(), logits, None)
    torch.testing.assert_close(
        energy_inputs_exact(fed, logits), fed.energy_inputs(logits), rtol=1e-6, atol=1e-7
    )
    with pytest.raises(ValueError, match="19-class"):
        energy_inputs_exact(fed, torch.randn(1, 5, 4, 4))


# ------------------------------------------------------------------------------ detector graph


@pytest.mark.parametrize("cond_dim", [0, 16])
def test_fed_detector_matches_step_by_step_pipeline(backbone: StandIn, cond_dim: int) -> None:
    fed = _fed_for(backbone, cond_dim)
    det = FusedDetector(backbone, fed, score="fed")
    images = _images(2, 45, 70)
    with torch.no_grad():
        labels, conf = det(images)
        logits, feats = _reference(backbone, images)
        p = fed.p_wrong(logits, feats if cond_dim else None)
        ref_conf = F.interpolate(1 - p, size=(45, 70), mode="bilinear", align_corners=False)[
            :, 0
        ].clamp(0, 1)
        ref_labels = F.interpolate(
            logits, size=(45, 70), mode="bilinear", align_corners=False
        ).argmax(1)
    assert labels.dtype == torch.uint8 and labels.shape == (2, 45, 70)
    assert conf.dtype == torch.float32 and conf.shape == (2, 45, 70)
    assert conf.std() > 0.01, "degenerate test: constant confidence"
    torch.testing.assert_close(conf, ref_conf, rtol=0, atol=2e-5)
    assert torch.equal(labels, ref_labels.to(torch.uint8))
    assert det.config()["fed_variant"] == ("FED-C" if cond_dim else "FED-U")


@pytest.mark.parametrize("score", ["msp", "maxlogit", "energy", "entropy", "sml", "none"])
def test_baseline_confidence_mappings(backbone: StandIn, score: str) -> None:
    mean, std = torch.randn(C), torch.rand(C) + 0.5
    kwargs = {"class_mean": mean, "class_std": std} if score == "sml" else {}
    det = FusedDetector(backbone, None, score=score, postprocess="none", **kwargs)
    images = _images(1, 33, 47)
    with torch.no_grad():
        _, conf = det(images)
        logits, _ = _reference(backbone, images)
        prob = torch.softmax(logits.double(), 1)
        if score == "msp":
            small = prob.amax(1, keepdim=True)
        elif score == "entropy":
            small = 1 + (prob * prob.log()).sum(1, keepdim=True) / math.log(C)
        elif score in ("maxlogit", "energy", "sml"):
            if score == "maxlogit":
                certainty = logits.double().amax(1, keepdim=True)
            elif score == "energy":
                certainty = torch.logsumexp(logits.double(), 1, keepdim=True)
            else:
                top, k = logits.double().max(1)
                certainty = ((top - mean.double()[k]) / std.double()[k]).unsqueeze(1)
            params = DEFAULT_SIGMOID[score]
            small = torch.sigmoid((certainty - params["offset"]) / params["temperature"])
        else:
            small = torch.ones_like(logits[:, :1], dtype=torch.float64)
        ref = F.interpolate(small.float(), size=(33, 47), mode="bilinear", align_corners=False)[
            :, 0
        ]
    torch.testing.assert_close(conf, ref.clamp(0, 1), rtol=0, atol=1e-5)
    assert 0 <= float(conf.min()) and float(conf.max()) <= 1
    assert det.config()["confidence_mapping"]["kind"] in (
        "one_minus",
        "one_minus_normalised_entropy",
        "sigmoid",
        "constant",
    )


def test_minmax_confidence_range_and_sigmoid_override(backbone: StandIn) -> None:
    images = _images(1, 24, 32)
    with torch.no_grad():
        logits, _ = _reference(backbone, images)
        ml = logits.amax(1, keepdim=True)
        lo, hi = float(ml.min()) + 1, float(ml.max()) - 1
        _, conf = FusedDetector(backbone, None, score="maxlogit", confidence_range=(lo, hi))(
            images
        )
        ref = F.interpolate(
            ((ml - lo) / (hi - lo)).clamp(0, 1),
            size=(24, 32),
            mode="bilinear",
            align_corners=False,
        )
        # clamping before or after the (convex) bilinear upsampling differs; the graph maps,
        # upsamples, then clamps, so compare with the same order:
        ref = F.interpolate(
            (ml - lo) / (hi - lo), size=(24, 32), mode="bilinear", align_corners=False
        ).clamp(0, 1)
        _, conf_sig = FusedDetector(
            backbone, None, score="maxlogit", sigmoid={"offset": 3.0, "temperature": 0.5}
        )(images)
        ref_sig = F.interpolate(
            torch.sigmoid((ml - 3.0) / 0.5), size=(24, 32), mode="bilinear", align_corners=False
        )
    torch.testing.assert_close(conf, ref[:, 0], rtol=0, atol=1e-6)
    assert float(conf.min()) == 0.0 and float(conf.max()) == 1.0
    torch.testing.assert_close(conf_sig, ref_sig[:, 0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="high > low"):
        FusedDetector(backbone, None, score="energy", confidence_range=(2.0, 1.0))


def test_input_resize_fed_rate_and_postprocess(backbone: StandIn) -> None:
    fed = _fed_for(backbone)
    det = FusedDetector(backbone, fed, input_size=(48, 64), fed_rate=0.5, postprocess="gaussian")
    images = _images(1, 61, 83)
    with torch.no_grad():
        labels, conf = det(images)
        logits, _ = _reference(backbone, images, size=(48, 64))
        assert logits.shape[-2:] == (12, 16)
        up = F.interpolate(logits, size=(24, 32), mode="bilinear", align_corners=False)
        p = make_postprocess("gaussian")(fed.p_wrong(up))
        ref = F.interpolate(1 - p, size=(61, 83), mode="bilinear", align_corners=False)[
            :, 0
        ].clamp(0, 1)
        ref_labels = F.interpolate(
            logits, size=(61, 83), mode="bilinear", align_corners=False
        ).argmax(1)
    torch.testing.assert_close(conf, ref, rtol=0, atol=2e-5)
    assert torch.equal(labels, ref_labels.to(torch.uint8))


def test_sml_postprocess_runs_at_image_resolution(backbone: StandIn) -> None:
    """As the FED authors run it: p_wrong upsampled to the image first, boundaries from the
    argmax of the upsampled logits (the labels the node publishes), then SML's suppression and
    dilated smoothing at image resolution."""
    fed = _fed_for(backbone)
    det = FusedDetector(backbone, fed, postprocess="sml")
    images = _images(1, 40, 56)
    with torch.no_grad():
        labels, conf = det(images)
        logits, _ = _reference(backbone, images)
        up = F.interpolate(logits, size=(40, 56), mode="bilinear", align_corners=False)
        p = F.interpolate(fed.p_wrong(logits), size=(40, 56), mode="bilinear", align_corners=False)
        ref = (1 - make_postprocess("sml")(p, up.argmax(1)))[:, 0].clamp(0, 1)
        at_quarter = make_postprocess("sml")(fed.p_wrong(logits), logits.argmax(1))
        quarter = F.interpolate(1 - at_quarter, size=(40, 56), mode="bilinear")[:, 0]
    assert torch.equal(labels, up.argmax(1).to(torch.uint8))
    torch.testing.assert_close(conf, ref, rtol=0, atol=2e-5)
    assert (conf - quarter.clamp(0, 1)).abs().max() > 1e-3  # not the 1/4-resolution filter
    # score "sml" defaults to SML's own post-processing, statistics from the FED standardiser
    sml = FusedDetector(backbone, fed, score="sml")
    assert sml.postprocess_name == "sml"
    torch.testing.assert_close(sml.class_std, fed.standardizer.std)


def test_nearest_labels_and_float16_confidence(backbone: StandIn) -> None:
    det = FusedDetector(
        backbone, _fed_for(backbone), label_mode="nearest", confidence_dtype=torch.float16
    )
    images = _images(2, 37, 50)
    with torch.no_grad():
        labels, conf = det(images)
        logits, _ = _reference(backbone, images)
        ref = F.interpolate(logits.argmax(1, keepdim=True).float(), size=(37, 50), mode="nearest")[
            :, 0
        ]
        _, conf32 = FusedDetector(backbone, det.fed)(images)
    assert torch.equal(labels, ref.to(torch.uint8))
    assert conf.dtype == torch.float16
    torch.testing.assert_close(conf.float(), conf32, rtol=0, atol=1e-3)


def test_freeze_matches_unfrozen_and_train_invalidates(backbone: StandIn) -> None:
    det = FusedDetector(backbone, _fed_for(backbone))
    images = _images(1, 32, 32)
    with torch.no_grad():
        loose = det(images)[1]
        frozen = det.freeze()(images)[1]
    torch.testing.assert_close(frozen, loose, rtol=0, atol=1e-6)
    det.train()
    assert det._folded is None
    det.eval()


def test_unfusable_fed_falls_back_to_p_wrong(backbone: StandIn) -> None:
    fed = _fed_for(backbone)
    fed.flow.blocks[0].attention.net = nn.Sequential(
        nn.Conv2d(1, 2, 1), nn.Tanh(), nn.Conv2d(2, 1, 1), nn.ReLU()
    )
    assert not can_fuse(fed)
    det = FusedDetector(backbone, fed)
    assert not det.fuse_fed
    images = _images(1, 24, 24)
    with torch.no_grad():
        _, conf = det(images)
        logits, _ = _reference(backbone, images)
        ref = F.interpolate(
            1 - fed.p_wrong(logits), size=(24, 24), mode="bilinear", align_corners=False
        )[:, 0]
    torch.testing.assert_close(conf, ref, rtol=0, atol=1e-6)


def test_input_validation(backbone: StandIn) -> None:
    with pytest.raises(ValueError, match="needs a FlowEneDet"):
        FusedDetector(backbone, None, score="fed")
    with pytest.raises(ValueError, match="unknown score"):
        FusedDetector(backbone, None, score="mcd")
    with pytest.raises(ValueError, match="fed_rate"):
        FusedDetector(backbone, _fed_for(backbone), fed_rate=0.3)
    with pytest.raises(ValueError, match="class_mean"):
        FusedDetector(backbone, None, score="sml")
    det = FusedDetector(backbone, None, score="msp")
    with pytest.raises(ValueError, match="B, H, W, 3"):
        det(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_config_round_trip_and_hash(backbone: StandIn) -> None:
    fed = _fed_for(backbone, 16)
    det = FusedDetector(
        backbone,
        fed,
        postprocess="gaussian",
        input_size=(40, 40),
        label_mode="nearest",
        class_names=[f"c{i}" for i in range(C)],
    )
    clone = detector_from_config(StandIn().eval(), FlowEneDet(fed.cfg).eval(), det.config())
    clone.load_state_dict(det.state_dict(), strict=True)
    assert clone.config() == det.config()
    assert detector_hash(clone) == detector_hash(det)
    images = _images(1, 30, 30)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(clone(images), det(images)))
    with torch.no_grad():
        clone.fed.head.beta.add_(0.1)
    assert detector_hash(clone) != detector_hash(det)
    other = FusedDetector(
        backbone, fed, postprocess="none", input_size=(40, 40), label_mode="nearest"
    )
    assert detector_hash(other) != detector_hash(det)
    # the state dict holds each tensor once (the fused FED adds no copies)
    assert not [k for k in det.state_dict() if "folded" in k]


def test_from_checkpoints_with_tinyseg(tmp_path) -> None:
    backbones = pytest.importorskip("ros2_fed.backbones")
    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig

    tiny = TinySeg(TinySegConfig(widths=(4, 8, 8, 8), decoder_channels=8)).eval()
    backbones.save_backbone(
        tiny, tmp_path / "bb", class_names=[f"k{i}" for i in range(C)], input_size=[32, 48]
    )
    with torch.no_grad():
        logits, feats = tiny(torch.rand(1, 3, 32, 48) * 255)
    fed = make_random_fed(FEDConfig(cond_dim=4, feat_channels=8), logits, feats)
    save_fed_for(tmp_path / "fed", fed, tmp_path / "bb")
    det = FusedDetector.from_checkpoints(tmp_path / "bb", tmp_path / "fed").eval()
    assert det.class_names == [f"k{i}" for i in range(C)]
    assert det.palette is not None and len(det.palette) == C
    labels, conf = det(_images(1, 32, 48))
    assert labels.shape == conf.shape == (1, 32, 48)
    assert torch.isfinite(conf).all()


def test_sml_statistics_come_from_the_fed_metadata_when_fed_runs_on_raw_logits(tmp_path) -> None:
    """`fed_stats --into` records SML statistics as metadata of a FED whose standardiser stays
    the identity (the shipped default model); score='sml' must use them, not mean 0 / std 1."""
    from ros2_fed.backbones.loader import save_backbone
    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig

    torch.manual_seed(0)
    save_backbone(TinySeg(TinySegConfig()), tmp_path / "bb")
    fed = FlowEneDet(FEDConfig())
    mean, std = torch.linspace(-2, 2, 19), torch.linspace(0.5, 3, 19)
    save_fed_for(
        tmp_path / "fed",
        fed,
        tmp_path / "bb",
        {
            "logit_statistics": {
                "mean": mean.tolist(),
                "std": std.tolist(),
                "definition": "correct",
            }
        },
    )
    det = FusedDetector.from_checkpoints(tmp_path / "bb", tmp_path / "fed", score="sml")
    torch.testing.assert_close(det.class_mean, mean)
    torch.testing.assert_close(det.class_std, std)
    torch.testing.assert_close(det.fed.standardizer.std, torch.ones(19))  # FED itself unchanged


def test_multi_scale_fed_in_the_fused_graph(backbone: StandIn) -> None:
    """fed_extra_rates: the same FED at 1/4 and 1/2 of the input, averaged at 1/4; the config
    round-trips so engines and caches rebuild it."""
    from ros2_fed.detector import detector_from_config

    fed = _fed_for(backbone)
    det = FusedDetector(backbone, fed, fed_extra_rates=(0.5,))
    images = _images(1, 40, 56)
    with torch.no_grad():
        _, conf = det(images)
        logits, _ = _reference(backbone, images)
        half = F.interpolate(logits, size=(20, 28), mode="bilinear", align_corners=False)
        p_half = F.interpolate(fed.p_wrong(half), size=logits.shape[-2:], mode="bilinear")
        p = (fed.p_wrong(logits) + p_half) / 2
        ref = F.interpolate(1 - p, size=(40, 56), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(conf, ref.clamp(0, 1), rtol=0, atol=2e-5)
    assert det.config()["fed_extra_rates"] == [0.5]
    rebuilt = detector_from_config(backbone, fed, det.config())
    assert rebuilt.fed_extra_rates == (0.5,)
    with pytest.raises(ValueError, match="fed_extra_rates"):
        FusedDetector(backbone, fed, fed_extra_rates=(0.3,))
