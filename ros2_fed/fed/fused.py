"""FED fused for inference: its parameters folded once, then a short exportable forward.

:func:`fused_p_wrong` is an algebraically fused form of ``FlowEneDet.p_wrong`` (same numbers
to float rounding; about half the exported nodes and ~1.5x faster in ONNX Runtime): per flow
block, ActNorm, the 2x2 1x1 convolution and the first layer of the three coupling / attention
networks collapse into one 1x1 convolution, the scale and shift networks run as one grouped
convolution, and only the difference of the two components' log-dets is carried. The
parameter arithmetic is :func:`fold_fed`, done once in Python, so exported graphs hold the
folded constants (:class:`FoldedFED`, one :class:`FoldedBlock` per flow block).
``log(1 + t)`` uses :func:`log1p_exact`, because ONNX has no Log1p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from .energy import stable_softplus
from .flow import FlowBlock
from .head import GaussianHead
from .layers import (
    ActNorm,
    AffineCoupling,
    AttentionNet,
    CouplingNet,
    InvConv2x2,
    InvertibleAttention,
)
from .model import FlowEneDet

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------
# Which FEDs fold
# --------------------------------------------------------------------------------------


def _is_coupling_net(net: nn.Module, kernel: int) -> bool:
    if not (isinstance(net, CouplingNet) and len(net) == 5):
        return False
    relus = isinstance(net[1], nn.ReLU) and isinstance(net[3], nn.ReLU)
    spatial = net.spatial
    return (
        relus
        and net.expand.kernel_size == (1, 1)
        and spatial.kernel_size == (kernel, kernel)
        and spatial.padding_mode == "reflect"
        and spatial.padding == (kernel // 2, kernel // 2)
        and net.project.kernel_size == (1, 1)
    )


def _is_attention_net(net: nn.Module) -> bool:
    return isinstance(net, AttentionNet) and len(net) == 3 and isinstance(net[1], nn.ReLU)


def _block_folds(block: FlowBlock, kernel: int, conditional: bool) -> bool:
    return (
        isinstance(block.actnorm, ActNorm)
        and isinstance(block.invconv, InvConv2x2)
        and isinstance(block.coupling, AffineCoupling)
        and isinstance(block.attention, InvertibleAttention)
        and _is_coupling_net(block.coupling.scale_net, kernel)
        and _is_coupling_net(block.coupling.shift_net, kernel)
        and _is_attention_net(block.attention.net)
        and block.attention.cond_channel == block.coupling.cond_channel
        and (block.cond_norm is None) == (not conditional)
    )


def can_fuse(fed: FlowEneDet) -> bool:
    """True when ``fed`` has exactly the layer structure :func:`fused_p_wrong` folds.

    Anything else (a future layer variant) falls back to ``fed.p_wrong``: slower, never wrong.
    """
    cfg = fed.cfg
    return all(_block_folds(block, cfg.kernel, cfg.conditional) for block in fed.flow.blocks)


# --------------------------------------------------------------------------------------
# Folded parameters
# --------------------------------------------------------------------------------------


class FoldedBlock(NamedTuple):
    """One flow block's folded parameters (plain tensors).

    ``mix_*``: the 1x1 convolution producing ``[y_c, y_d, pre_scale, pre_shift, pre_att]``
    from the block input; ``spatial_*``: the scale and shift networks' KxK layers as one
    convolution with a block-diagonal weight (the zero blocks add exact zeros; ONNX Runtime on
    a CPU runs it faster than the same layers as a two-group convolution); ``project_*``: their
    last 1x1 layers, grouped, producing ``[scale / bound, shift]``; ``attention_*``: the
    attention network's last 1x1 layer.
    """

    kept_channel: int
    mix_weight: Tensor
    mix_bias: Tensor
    spatial_weight: Tensor
    spatial_bias: Tensor
    project_weight: Tensor
    project_bias: Tensor
    attention_weight: Tensor
    attention_bias: Tensor

    def to(self, device: torch.device) -> "FoldedBlock":
        return FoldedBlock(self.kept_channel, *(t.to(device) for t in self[1:]))


@dataclass
class FoldedFED:
    """FED's parameters pre-combined for :func:`fused_p_wrong` (all plain tensors).

    ``blocks``: one :class:`FoldedBlock` per flow block. ``cond_*``: FED-C's condition
    contribution for all blocks in one 1x1 convolution (the channel-group pooling folded in
    when that is cheaper). ``head_*``: the Gaussian head as a 1x1 convolution ->
    ``[-0.5 (q1 - q0), q1 + q0]``. ``const``: the constant part of the logit difference.
    """

    blocks: list[FoldedBlock]
    cond_weight: Optional[Tensor]
    cond_bias: Optional[Tensor]
    pool_folded: bool
    head_weight: Tensor
    head_bias: Tensor
    const: Tensor

    def to(self, device: torch.device) -> "FoldedFED":
        def move(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.to(device)

        return FoldedFED(
            [b.to(device) for b in self.blocks],
            move(self.cond_weight),
            move(self.cond_bias),
            self.pool_folded,
            self.head_weight.to(device),
            self.head_bias.to(device),
            self.const.to(device),
        )

    @property
    def device(self) -> torch.device:
        return self.head_weight.device


def _block_diagonal(first: Tensor, second: Tensor) -> Tensor:
    """Two (out, in, k, k) convolution weights as one acting on their concatenated inputs."""
    out_a, in_a = first.shape[:2]
    out_b, in_b = second.shape[:2]
    weight = first.new_zeros(out_a + out_b, in_a + in_b, *first.shape[2:])
    weight[:out_a, :in_a] = first
    weight[out_a:, in_a:] = second
    return weight.contiguous()


def _fold_block(block: FlowBlock, bound: float) -> FoldedBlock:
    """ActNorm, the 2x2 convolution and the three networks' first layers as one 1x1 conv."""
    c = block.coupling.cond_channel
    d = 1 - c
    scale_net, shift_net = block.coupling.scale_net, block.coupling.shift_net
    att_net = block.attention.net
    e = torch.exp(block.actnorm.log_scale)
    mix = block.invconv.weight * e[None, :]  # W diag(e)
    offset = block.invconv.weight @ (e * block.actnorm.bias)
    rows = [mix[c : c + 1], mix[d : d + 1]]
    bias = [offset[c : c + 1], offset[d : d + 1]]
    for net in (scale_net, shift_net, att_net):
        w_kept = net.expand.weight[:, 0, 0, 0]
        rows.append(w_kept[:, None] * mix[c][None, :])
        bias.append(w_kept * offset[c] + net.expand.bias)
    return FoldedBlock(
        c,
        torch.cat(rows, dim=0)[:, :, None, None].contiguous(),
        torch.cat(bias).contiguous(),
        _block_diagonal(scale_net.spatial.weight, shift_net.spatial.weight),
        torch.cat([scale_net.spatial.bias, shift_net.spatial.bias]).contiguous(),
        torch.cat(
            [scale_net.project.weight / bound, shift_net.project.weight], dim=0
        ).contiguous(),
        torch.cat([scale_net.project.bias / bound, shift_net.project.bias]).contiguous(),
        att_net.project.weight.detach().clone(),
        att_net.project.bias.detach().clone(),
    )


def _fold_block_condition(block: FlowBlock) -> tuple[list[Tensor], list[Tensor]]:
    """FED-C: the condition's ActNorm and the scale/shift networks' condition columns."""
    if block.cond_norm is None:
        return [], []
    e_c = torch.exp(block.cond_norm.log_scale)
    weights, biases = [], []
    for net in (block.coupling.scale_net, block.coupling.shift_net):
        w_cond = net.expand.weight[:, 1:, 0, 0]  # (hid, P)
        weights.append(w_cond * e_c)
        biases.append(w_cond @ (block.cond_norm.bias * e_c))
    return weights, biases


def _fold_condition(
    fed: FlowEneDet, weights: list[Tensor], biases: list[Tensor]
) -> tuple[Optional[Tensor], Optional[Tensor], bool]:
    """All blocks' condition terms as one 1x1 convolution: (weight, bias, pool folded in)."""
    if not weights:
        return None, None, False
    cond_weight = torch.cat(weights, dim=0)  # (L * 2 hid, P)
    cond_bias = torch.cat(biases)
    pool = fed.pool
    out_ch = cond_weight.shape[0]
    # Pooling is linear too: fold it into the 1x1 when one GEMM over all F feature
    # channels is no dearer than reading them for the mean plus a P-wide GEMM.
    pool_folded = pool is not None and (
        pool.in_channels * out_ch <= 2 * (pool.in_channels + pool.groups * out_ch)
    )
    if pool_folded:
        cond_weight = cond_weight @ pool.weight[:, :, 0, 0].to(cond_weight)
    return cond_weight[:, :, None, None].contiguous(), cond_bias, pool_folded


def _fold_head(head: GaussianHead) -> tuple[Tensor, Tensor, Tensor]:
    """The Gaussian head as (1x1 weight, bias, constant logit difference)."""
    diag = stable_softplus(head.u_diag) / math.log(2.0)
    off = head.u_offdiag[0] if head.u_offdiag is not None else diag.new_zeros(())
    mu = head.mu
    # q0 = d0 (z0 - mu0); q1 = d1 (z1 - mu1) + off (z0 - mu0)
    weight = torch.stack(
        [
            -0.5 * torch.stack([off - diag[0], diag[1]]),
            torch.stack([off + diag[0], diag[1]]),
        ]
    )[:, :, None, None]
    bias = torch.stack(
        [
            -0.5 * (diag[0] * mu[0] - off * mu[0] - diag[1] * mu[1]),
            -(diag[0] * mu[0] + off * mu[0] + diag[1] * mu[1]),
        ]
    )
    comp_bias = -stable_softplus(head.beta) + torch.log(diag)
    return weight.contiguous(), bias, comp_bias[1] - comp_bias[0]


def fold_fed(fed: FlowEneDet) -> FoldedFED:
    """Combine FED's parameters for inference (see :func:`fused_logit_difference`).

    Runs without autograd in the parameters' dtype; call again after the weights change.
    """
    bound = float(fed.cfg.scale_bound)
    with torch.no_grad():
        blocks: list[FoldedBlock] = []
        cond_w: list[Tensor] = []
        cond_b: list[Tensor] = []
        const = torch.zeros((), device=fed.head.beta.device)
        for block in fed.flow.blocks:
            blocks.append(_fold_block(block, bound))
            weights, biases = _fold_block_condition(block)
            cond_w += weights
            cond_b += biases
            const = const + block.actnorm.log_scale[1] - block.actnorm.log_scale[0]
        cond_weight, cond_bias, pool_folded = _fold_condition(fed, cond_w, cond_b)
        head_weight, head_bias, head_const = _fold_head(fed.head)
    return FoldedFED(
        blocks, cond_weight, cond_bias, pool_folded, head_weight, head_bias, const + head_const
    )


# --------------------------------------------------------------------------------------
# The fused forward
# --------------------------------------------------------------------------------------


def log1p_exact(t: Tensor) -> Tensor:
    """``log(1 + t)`` to full float precision in every runtime (Kahan's trick).

    ONNX has no Log1p: ``torch.log1p`` exports as ``Log(1 + t)``, which keeps only the
    absolute precision of ``1 + t``; FED's ActNorm then amplifies that error in
    ``log sigmoid(s)`` (~1e-3 in ``p_wrong`` measured on ONNX Runtime). Kahan: with
    ``u = 1 + t``, ``log(u) * t / (u - 1)`` is accurate, and ``t`` itself when ``u == 1``.
    """
    u = 1.0 + t
    d = u - 1.0
    tiny = d == 0
    return torch.where(tiny, t, torch.log(u) * (t / torch.where(tiny, torch.ones_like(d), d)))


def logsumexp_channels(x: Tensor) -> Tensor:
    """``torch.logsumexp(x, dim=1, keepdim=True)`` spelled out (max, exp, sum, log): the same
    stable formula, and in ONNX Runtime on a CPU about half the time of its ReduceLogSumExp."""
    peak = x.amax(dim=1, keepdim=True)
    return peak + torch.log(torch.exp(x - peak).sum(dim=1, keepdim=True))


def energy_inputs_exact(fed: FlowEneDet, logits: Tensor) -> Tensor:
    """``fed.energy_inputs(logits)`` with :func:`log1p_exact` (same value, exportable)."""
    if logits.shape[1] != fed.cfg.num_classes:
        raise ValueError(f"FED expects {fed.cfg.num_classes}-class logits, got {logits.shape[1]}")
    s = logsumexp_channels(fed.standardizer(logits))
    tail = log1p_exact(torch.exp(-torch.abs(s)))
    x_out = -(torch.relu(s) + tail)
    if fed.cfg.out_floor > 0:
        x_out = torch.log(torch.exp(x_out) + fed.cfg.out_floor)
    return torch.cat([-(torch.relu(-s) + tail), x_out], dim=1)


def fused_p_wrong(
    fed: FlowEneDet,
    logits: Tensor,
    features: Optional[Tensor] = None,
    folded: Optional[FoldedFED] = None,
) -> Tensor:
    """``fed.p_wrong(logits, features)`` with the flow algebraically fused (B, 1, h, w)."""
    return torch.sigmoid(fused_logit_difference(fed, logits, features, folded))


def _condition_terms(
    fed: FlowEneDet, folded: FoldedFED, features: Optional[Tensor], size: torch.Size
) -> list[Optional[Tensor]]:
    """Each block's condition contribution to its scale/shift pre-activations (or None)."""
    if folded.cond_weight is None:
        return [None] * len(folded.blocks)
    if features is None:
        raise ValueError("FED-C needs the backbone decoder features")
    if folded.pool_folded:
        if features.shape[1] != fed.pool.in_channels:
            raise ValueError(
                f"FED-C expects {fed.pool.in_channels}-channel backbone features, "
                f"got {features.shape[1]}"
            )
        terms = F.conv2d(features, folded.cond_weight, folded.cond_bias)
    else:
        terms = F.conv2d(fed.condition(features), folded.cond_weight, folded.cond_bias)
    if tuple(terms.shape[-2:]) != tuple(size):
        # Like FlowEneDet: the condition is resampled to the logits' grid (linear, so
        # resampling after the 1x1 convolution is the same map).
        terms = F.interpolate(terms, size=size, mode="bilinear", align_corners=False)
    return list(terms.split(2 * fed.cfg.hidden, dim=1))


def _fused_block(
    x: Tensor, block: FoldedBlock, cond: Optional[Tensor], hidden: int, kernel: int, bound: float
) -> tuple[Tensor, Tensor]:
    """One folded flow block: (its output, the wrong-minus-correct log-det it adds)."""
    pad = kernel // 2
    pre = F.conv2d(x, block.mix_weight, block.mix_bias)
    y_c, y_d, pre_st, pre_att = pre.split([1, 1, 2 * hidden, hidden], dim=1)
    if cond is not None:
        pre_st = pre_st + cond
    act = F.pad(torch.relu(pre_st), (pad, pad, pad, pad), mode="reflect")
    act = torch.relu(F.conv2d(act, block.spatial_weight, block.spatial_bias))
    st = F.conv2d(act, block.project_weight, block.project_bias, groups=2)
    log_scale = bound * torch.tanh(st[:, 0:1])
    log_att = torch.tanh(
        F.conv2d(torch.relu(pre_att), block.attention_weight, block.attention_bias)
    )
    gain = log_scale + log_att
    y_d = y_d * torch.exp(gain) + st[:, 1:2] * torch.exp(log_att)
    if block.kept_channel == 0:  # transformed channel d = 1 - c
        return torch.cat([y_c, y_d], dim=1), gain
    return torch.cat([y_d, y_c], dim=1), -gain


def fused_logit_difference(
    fed: FlowEneDet,
    logits: Tensor,
    features: Optional[Tensor] = None,
    folded: Optional[FoldedFED] = None,
) -> Tensor:
    """``logit_wrong - logit_correct`` of FED's two components, fused (B, 1, h, w).

    Per block (kept channel c, transformed channel d), with ActNorm ``e = exp(log_s)``:
    ``y = W diag(e) x + W (e * b)`` is linear in x, and so are the first 1x1 layers of the
    scale, shift and attention networks applied to ``y_c`` (and FED-C's ActNorm-ed
    condition): one 1x1 convolution produces ``[y_c, y_d, pre_scale, pre_shift, pre_att]``.
    Coupling then attention is ``y_d' = y_d * exp(ls + la) + shift * exp(la)``.
    ``p_wrong = sigmoid(logit_1 - logit_0)`` only needs the log-det *difference* of the
    two channels: the 1x1 conv's share is equal on both and cancels, ActNorm's is a
    constant. The Gaussian head's ``-0.5 (q1^2 - q0^2)`` is ``-0.5 (q1 - q0)(q1 + q0)``, one
    more 1x1 convolution. ``folded``: precomputed :func:`fold_fed` (else folded per call).
    """
    cfg = fed.cfg
    if folded is None:
        folded = fold_fed(fed)
    x = energy_inputs_exact(fed, logits)
    cond_terms = _condition_terms(fed, folded, features, x.shape[-2:])
    delta: Optional[Tensor] = None  # logdet_wrong - logdet_correct (data-dependent part)
    for block, cond in zip(folded.blocks, cond_terms):
        x, signed = _fused_block(x, block, cond, cfg.hidden, cfg.kernel, float(cfg.scale_bound))
        delta = signed if delta is None else delta + signed
    q = F.conv2d(x, folded.head_weight, folded.head_bias)
    assert delta is not None
    return delta + q[:, 0:1] * q[:, 1:2] + folded.const
