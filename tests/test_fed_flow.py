"""FED flow: every layer and every design-space variant is a true bijection with exact log-det."""

from __future__ import annotations

import itertools

import pytest
import torch

from ros2_fed.fed import (
    ActNorm,
    AffineCoupling,
    FEDConfig,
    FlowBlock,
    FlowEneDet,
    InvConv2x2,
    InvertibleAttention,
)

DESIGN_SPACE = list(itertools.product(("full", "diag"), (3, 7, 11), (4, 8), (0, 32, 128)))
H = W = 6  # >= 11 // 2 + 1 so reflect padding of the 11x11 kernel is valid


def _perturb(module: torch.nn.Module, scale: float = 0.3) -> None:
    """Move every parameter off its (often identity) initialisation so tests see real maps."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _autograd_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of fn at x by building the full Jacobian with autograd (small inputs only)."""
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.view_as(x)).reshape(-1), x.reshape(-1))
    return torch.linalg.slogdet(jac)[1]


def _check_layer(layer, x: torch.Tensor, cond=None) -> None:
    y, ld = layer(x, cond)
    assert ld.shape == x.shape, "log-det must be kept per channel with the input's shape"
    x_back, ld_inv = layer.inverse(y, cond)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-10, rtol=1e-10)
    expected = _autograd_logdet(lambda v: layer(v, cond)[0], x)
    torch.testing.assert_close(ld.sum(), expected, atol=1e-8, rtol=1e-8)


@pytest.fixture
def x64() -> torch.Tensor:
    return torch.randn(1, 2, H, W, dtype=torch.float64)


def test_actnorm_bijection_and_data_init(x64: torch.Tensor) -> None:
    layer = ActNorm(2).double()
    batch = 3.0 + 2.0 * torch.randn(4, 2, 8, 8, dtype=torch.float64)
    y, _ = layer(batch)  # training mode: data-dependent initialisation on this batch
    assert bool(layer.initialized)
    torch.testing.assert_close(
        y.mean(dim=(0, 2, 3)), torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0
    )
    torch.testing.assert_close(
        y.std(dim=(0, 2, 3), unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0
    )
    before = layer.bias.clone()
    layer(batch * 5)  # already initialised: no re-init
    torch.testing.assert_close(layer.bias, before)
    layer.eval()
    _check_layer(layer, x64)


def test_invconv_orthogonal_init_and_bijection(x64: torch.Tensor) -> None:
    layer = InvConv2x2().double()
    w = layer.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(2, dtype=torch.float64), atol=1e-6, rtol=0)
    _perturb(layer)
    _check_layer(layer, x64)


@pytest.mark.parametrize("cond_channel", [0, 1])
@pytest.mark.parametrize("cond_dim", [0, 3])
@pytest.mark.parametrize("kernel", [3, 7, 11])
def test_coupling_bijection(
    x64: torch.Tensor, cond_channel: int, cond_dim: int, kernel: int
) -> None:
    layer = AffineCoupling(
        cond_channel, cond_dim, hidden=3, kernel=kernel, scale_bound=2.0
    ).double()
    _perturb(layer)
    cond = torch.randn(1, cond_dim, H, W, dtype=torch.float64) if cond_dim else None
    _check_layer(layer, x64, cond)
    _, ld = layer(x64, cond)
    assert torch.all(ld[:, cond_channel] == 0), "the conditioning channel passes through unchanged"
    bound = ld[:, 1 - cond_channel].abs().max()
    assert bound <= 2.0


def test_coupling_scale_and_shift_are_separate_networks() -> None:
    layer = AffineCoupling(0, 0, hidden=2, kernel=3, scale_bound=2.0)
    scale_ids = {id(p) for p in layer.scale_net.parameters()}
    assert scale_ids.isdisjoint(id(p) for p in layer.shift_net.parameters())


def test_coupling_ignores_transformed_half_in_its_networks(x64: torch.Tensor) -> None:
    """The research code's bug fed the whole input to the coupling network; ours must not."""
    layer = AffineCoupling(0, 0, hidden=3, kernel=3, scale_bound=2.0).double()
    _perturb(layer)
    x2 = x64.clone()
    x2[:, 1] += 1.0
    _, ld1 = layer(x64)
    _, ld2 = layer(x2)
    torch.testing.assert_close(ld1, ld2)


@pytest.mark.parametrize("cond_channel", [0, 1])
def test_invertible_attention_starts_as_identity_and_is_bijective(
    x64: torch.Tensor, cond_channel: int
) -> None:
    layer = InvertibleAttention(cond_channel, hidden=3).double()
    y, ld = layer(x64)
    torch.testing.assert_close(y, x64)
    assert torch.all(ld == 0)
    _perturb(layer)
    _check_layer(layer, x64)


@pytest.mark.parametrize("cov,kernel,blocks,cond_dim", DESIGN_SPACE)
def test_flow_design_space_bijection_and_logdet(
    cov: str, kernel: int, blocks: int, cond_dim: int
) -> None:
    cfg = FEDConfig(
        cov=cov,
        kernel=kernel,
        blocks=blocks,
        cond_dim=cond_dim,
        feat_channels=max(cond_dim, 1) * 2,
    )
    model = FlowEneDet(cfg).double()
    logits = 3 * torch.randn(2, cfg.num_classes, H, W, dtype=torch.float64)
    feats = torch.randn(2, cfg.feat_channels, H, W, dtype=torch.float64) if cond_dim else None
    model.initialize(logits, feats)
    model.eval()
    _perturb(model.flow, 0.1)

    x = model.energy_inputs(logits[:1])
    a = model.condition(feats[:1]) if cond_dim else None
    z, ld = model.flow(x, a)
    assert z.shape == x.shape and ld.shape == x.shape
    x_back, ld_inv = model.flow.inverse(z, a)
    torch.testing.assert_close(x_back, x, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-9, rtol=1e-9)
    expected = _autograd_logdet(lambda v: model.flow(v, a)[0], x)
    torch.testing.assert_close(ld.sum(), expected, atol=1e-7, rtol=1e-7)


def test_flow_block_every_layer_in_order(x64: torch.Tensor) -> None:
    cfg = FEDConfig(cond_dim=4, feat_channels=8, kernel=3)
    block = FlowBlock(1, cfg).double()
    cond = torch.randn(1, 4, H, W, dtype=torch.float64)
    block(
        torch.randn(3, 2, H, W, dtype=torch.float64), torch.randn(3, 4, H, W, dtype=torch.float64)
    )
    block.eval()
    _perturb(block)
    _check_layer(block, x64, cond)
