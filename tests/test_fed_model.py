"""FED model: shapes, parameter counts, initialisation, stable energy inputs, export,
checkpoints."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ros2_fed.checkpoint import CheckpointError, load_fed, save_fed
from ros2_fed.fed import FEDConfig, FlowEneDet, count_parameters


def expected_parameter_count(cfg: FEDConfig) -> int:
    """Hand count of the architecture in fed-method.md (keeps the design honest)."""
    h, k, p = cfg.hidden, cfg.kernel, cfg.cond_dim
    net = ((1 + p) * h + h) + (h * h * k * k + h) + (h + 1)  # 1x1 -> KxK -> 1x1
    attention = (h + h) + (h + 1)
    block = (
        4 + 4 + 2 * net + attention + 2 * p
    )  # actnorm, 1x1 conv, scale+shift nets, iMap, cond actnorm
    head = 2 + 2 + 2 + (1 if cfg.cov == "full" else 0)  # beta, mu, diag(U), off-diagonal
    return cfg.blocks * block + head


@pytest.mark.parametrize(
    "cfg",
    [
        FEDConfig(),
        FEDConfig(cond_dim=32, feat_channels=256),
        FEDConfig(cond_dim=128, feat_channels=768),
        FEDConfig(cov="diag", kernel=11, blocks=4),
        FEDConfig(kernel=3, cond_dim=32, feat_channels=512),
    ],
)
def test_parameter_counts(cfg: FEDConfig) -> None:
    model = FlowEneDet(cfg)
    assert count_parameters(model) == expected_parameter_count(cfg)


def test_default_sizes_match_the_paper_scale() -> None:
    fed_u = count_parameters(FlowEneDet(FEDConfig()))
    fed_c = count_parameters(FlowEneDet(FEDConfig(cond_dim=32, feat_channels=256)))
    assert 1_000 <= fed_u < 10_000, "FED-U is a few thousand parameters"
    assert fed_u < fed_c < 1_000_000, "FED-C with P=32 is well under 1M"
    assert (fed_u, fed_c) == (3407, 4943)  # the numbers README reports


@pytest.mark.parametrize("cond_dim,feat_channels", [(0, 0), (32, 256), (32, 100)])
def test_output_shapes(cond_dim: int, feat_channels: int) -> None:
    model = FlowEneDet(FEDConfig(cond_dim=cond_dim, feat_channels=feat_channels))
    logits = torch.randn(3, 19, 17, 23)
    feats = torch.randn(3, feat_channels, 17, 23) if cond_dim else None
    model.initialize(logits, feats)
    model.eval()
    assert model.energy_inputs(logits).shape == (3, 2, 17, 23)
    if cond_dim:
        assert model.condition(feats).shape == (3, cond_dim, 17, 23)
        # features at another resolution are resampled to the logits' grid
        half = torch.randn(3, feat_channels, 9, 12)
        assert model(logits, half).shape == (3, 2, 17, 23)
    else:
        assert model.condition(feats) is None
    out = model(logits, feats)
    assert out.shape == (3, 2, 17, 23)
    p = model.p_wrong(logits, feats)
    assert p.shape == (3, 1, 17, 23)
    assert torch.all((p >= 0) & (p <= 1))
    torch.testing.assert_close(p, torch.softmax(out, dim=1)[:, 1:2])


def test_fed_c_requires_features_and_checks_channels() -> None:
    model = FlowEneDet(FEDConfig(cond_dim=32, feat_channels=64)).eval()
    with pytest.raises(ValueError, match="features"):
        model(torch.randn(1, 19, 4, 4))
    with pytest.raises(ValueError, match="64-channel"):
        model(torch.randn(1, 19, 4, 4), torch.randn(1, 65, 4, 4))
    with pytest.raises(ValueError, match="19-class"):
        model(torch.randn(1, 5, 4, 4), torch.randn(1, 64, 4, 4))


def test_condition_is_group_average_pooling() -> None:
    model = FlowEneDet(FEDConfig(cond_dim=3, feat_channels=7))
    feats = torch.randn(2, 7, 5, 5)
    a = model.condition(feats)
    groups = [(0, 2), (2, 4), (4, 7)]  # floor(i*7/3) boundaries
    for i, (lo, hi) in enumerate(groups):
        torch.testing.assert_close(a[:, i], feats[:, lo:hi].mean(dim=1))
    even = FlowEneDet(FEDConfig(cond_dim=4, feat_channels=8)).condition(
        torch.arange(8.0).view(1, 8, 1, 1)
    )
    torch.testing.assert_close(even.flatten(), torch.tensor([0.5, 2.5, 4.5, 6.5]))
    assert sum(p.numel() for p in model.pool.parameters()) == 0, "the condition is compute-free"


def test_initialisation_follows_the_supplementary() -> None:
    model = FlowEneDet(FEDConfig(cond_dim=8, feat_channels=16))
    head = model.head
    for name in ("beta", "mu", "u_diag", "u_offdiag"):
        assert torch.all(getattr(head, name) == 0), name
    torch.testing.assert_close(head.precision_factor(), torch.eye(2))
    for block in model.flow.blocks:
        w = block.invconv.weight.detach()
        torch.testing.assert_close(w @ w.T, torch.eye(2), atol=1e-6, rtol=0)
        assert not bool(block.actnorm.initialized)
        assert block.cond_norm is not None
    # data-dependent ActNorm init on the first training batch: the first block's ActNorm output
    logits, feats = 4 * torch.randn(4, 19, 16, 16), torch.randn(4, 16, 16, 16)
    model.initialize(logits, feats)
    x = model.energy_inputs(logits)
    y, _ = model.flow.blocks[0].actnorm(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        y.std(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-3, rtol=0
    )
    assert all(
        bool(b.actnorm.initialized) and bool(b.cond_norm.initialized) for b in model.flow.blocks
    )


def test_diag_covariance_has_no_off_diagonal() -> None:
    model = FlowEneDet(FEDConfig(cov="diag"))
    assert model.head.u_offdiag is None
    with torch.no_grad():
        model.head.u_diag.fill_(0.7)
    u = model.head.precision_factor()
    assert u[1, 0] == 0 and u[0, 1] == 0


def test_head_formula() -> None:
    """logit_m = logdet_m - softplus(beta_m) + log U_mm - 0.5 ((U (z - mu))_m)^2, written out by
    hand."""
    model = FlowEneDet(FEDConfig())
    head = model.head
    with torch.no_grad():
        head.beta.copy_(torch.tensor([0.3, -1.2]))
        head.mu.copy_(torch.tensor([0.5, -0.25]))
        head.u_diag.copy_(torch.tensor([0.2, -0.4]))
        head.u_offdiag.fill_(0.8)
    z = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    ld = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    head = head.double()
    d = F.softplus(head.u_diag.detach()) / np.log(2)
    c0, c1 = z[:, 0] - 0.5, z[:, 1] + 0.25
    u0 = d[0] * c0
    u1 = 0.8 * c0 + d[1] * c1
    expected0 = (
        ld[:, 0]
        - F.softplus(torch.tensor(0.3, dtype=torch.float64))
        + torch.log(d[0])
        - 0.5 * u0**2
    )
    expected1 = (
        ld[:, 1]
        - F.softplus(torch.tensor(-1.2, dtype=torch.float64))
        + torch.log(d[1])
        - 0.5 * u1**2
    )
    out = head(z, ld)
    torch.testing.assert_close(out[:, 0], expected0)
    torch.testing.assert_close(out[:, 1], expected1)


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_energy_inputs_are_finite_for_extreme_logits(magnitude: float) -> None:
    model = FlowEneDet(FEDConfig())
    logits = torch.randn(2, 19, 5, 5)
    logits[:, 3] = magnitude
    logits[0, :, 0, 0] = magnitude  # all classes extreme at one pixel
    x = model.energy_inputs(logits)
    assert torch.all(torch.isfinite(x))
    assert torch.all(x[:, 0] <= 0), "log P(in) is a log-probability"
    # log P(out) = log(floor + 1 - P(in)) lies in [log(floor), log(1 + floor)]
    floor = model.cfg.out_floor
    assert torch.all(x[:, 1] >= math.log(floor) - 1e-4)
    assert torch.all(x[:, 1] <= math.log1p(floor) + 1e-7)


def test_out_channel_clamp_is_the_authors_formula() -> None:
    """log P(out) = log(1e-6 + 1 - exp(log P(in))) (the FED authors' code), bounded below by
    about -13.8; out_floor=0 keeps the unbounded -softplus(s)."""
    logits = torch.linspace(-30, 30, 19 * 16, dtype=torch.float64).reshape(1, 19, 4, 4)
    clamped = FlowEneDet(FEDConfig()).double().energy_inputs(logits)
    expected = torch.log(1e-6 + 1 - torch.exp(clamped[:, 0]))
    torch.testing.assert_close(clamped[:, 1], expected, rtol=1e-9, atol=1e-9)
    assert clamped[:, 1].min() >= math.log(1e-6) - 1e-9
    raw = FlowEneDet(FEDConfig(out_floor=0.0)).double().energy_inputs(logits)
    assert raw[:, 1].min() < -13.9
    torch.testing.assert_close(raw[:, 0], clamped[:, 0])


def test_checkpoints_without_out_floor_load_unclamped() -> None:
    """Configs written before the clamp existed keep their behaviour (no clamp)."""
    data = FEDConfig().to_dict()
    del data["out_floor"]
    assert FEDConfig.from_dict(data).out_floor == 0.0
    assert FEDConfig().out_floor == 1e-6


def test_energy_inputs_match_the_naive_formula_where_finite() -> None:
    model = FlowEneDet(FEDConfig(out_floor=0.0)).double()
    logits = 4 * torch.randn(2, 19, 6, 6, dtype=torch.float64)
    s = torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
    naive = torch.cat([torch.log(torch.sigmoid(s)), torch.log(1 - torch.sigmoid(s))], dim=1)
    assert torch.all(torch.isfinite(naive))
    torch.testing.assert_close(model.energy_inputs(logits), naive, atol=1e-10, rtol=1e-10)
    # exp(-|x|) branches agree with the library softplus at moderate and large values
    big = torch.tensor([-600.0, -30.0, 0.0, 30.0, 600.0], dtype=torch.float64)
    from ros2_fed.fed import stable_softplus

    torch.testing.assert_close(stable_softplus(big), F.softplus(big, threshold=1000.0))


def test_logit_standardisation_uses_per_class_statistics() -> None:
    model = FlowEneDet(FEDConfig(num_classes=3)).double()
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    std = torch.tensor([2.0, 0.5, 1.5], dtype=torch.float64)
    model.standardizer.set_statistics(mean, std)
    logits = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    standardised = (logits - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    s = torch.logsumexp(standardised, dim=1, keepdim=True)
    torch.testing.assert_close(model.energy_inputs(logits)[:, :1], F.logsigmoid(s))
    with pytest.raises(ValueError):
        model.standardizer.set_statistics(mean, torch.tensor([1.0, 0.0, 1.0]))
    assert "standardizer.mean" in model.state_dict() and "standardizer.std" in model.state_dict()


def test_fed_learns_a_toy_misclassification_task() -> None:
    """A few hundred AdamW steps separate low-energy (wrong) from high-energy (right) pixels."""
    torch.manual_seed(0)
    model = FlowEneDet(FEDConfig(blocks=4, kernel=3))
    wrong = torch.rand(8, 1, 12, 12) < 0.3
    logits = torch.randn(8, 19, 12, 12)
    logits[:, :1] += torch.where(wrong, torch.tensor(0.5), torch.tensor(6.0))
    model.initialize(logits)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    target = wrong[:, 0].long()
    first = None
    for _ in range(150):
        loss = F.cross_entropy(model(logits), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    model.eval()
    with torch.no_grad():
        p = model.p_wrong(logits)[:, 0]
    assert p[wrong[:, 0]].mean() > 0.7 and p[~wrong[:, 0]].mean() < 0.3


# The tracer warns about FED's shape checks (Python bools of fixed shapes), as in the product's
# exporter (engine/export.py), which silences them for the same reason: the shapes are fixed.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("cond_dim", [0, 32])
def test_onnx_export_matches_eager(cond_dim: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = FlowEneDet(FEDConfig(cond_dim=cond_dim, feat_channels=64 if cond_dim else 0))
    logits, feats = 3 * torch.randn(1, 19, 24, 40), torch.randn(1, 64, 24, 40)
    model.initialize(logits, feats if cond_dim else None)
    model.eval()

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fed = model

        def forward(self, lg, ft):
            return self.fed.p_wrong(lg, ft if cond_dim else None)

    buffer = io.BytesIO()
    torch.onnx.export(
        Wrapper(),
        (logits, feats),
        buffer,
        dynamo=False,
        opset_version=18,
        input_names=["logits", "features"],
        output_names=["p_wrong"],
    )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    feeds = {"logits": logits.numpy()}
    if cond_dim:
        feeds["features"] = feats.numpy()
    (onnx_out,) = session.run(
        None, {k: v for k, v in feeds.items() if k in {i.name for i in session.get_inputs()}}
    )
    with torch.no_grad():
        eager = Wrapper()(logits, feats).numpy()
    np.testing.assert_allclose(onnx_out, eager, atol=1e-4, rtol=0)  # fp32 over 8 blocks


def test_checkpoint_round_trip_and_corruption(tmp_path) -> None:
    model = FlowEneDet(FEDConfig(cond_dim=32, feat_channels=64))
    logits, feats = torch.randn(2, 19, 8, 8), torch.randn(2, 64, 8, 8)
    model.initialize(logits, feats)
    model.standardizer.set_statistics(torch.linspace(-1, 1, 19), torch.linspace(0.5, 2, 19))
    model.eval()
    tensor_path, json_path = save_fed(tmp_path / "fed_c", model, {"training": {"iters": 7}})
    meta = json.loads(json_path.read_text())
    assert (
        meta["kind"] == "fed" and meta["variant"] == "FED-C" and meta["training"] == {"iters": 7}
    )

    loaded, loaded_meta = load_fed(tmp_path / "fed_c.json")
    assert loaded_meta["config"]["cond_dim"] == 32
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.p_wrong(logits, feats), model.p_wrong(logits, feats), atol=0, rtol=0
        )
    assert not loaded.training

    data = bytearray(tensor_path.read_bytes())
    data[-5] ^= 0xFF
    tensor_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="fed_c.safetensors"):
        load_fed(tmp_path / "fed_c")
    with pytest.raises(CheckpointError, match="not found"):
        load_fed(tmp_path / "missing")
    json_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="fed_c.json"):
        load_fed(tmp_path / "fed_c")
