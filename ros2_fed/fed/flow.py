"""The FED flow g(theta): L blocks of ActNorm -> 1x1 conv -> affine coupling -> iMap."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .config import FEDConfig
from .layers import ActNorm, AffineCoupling, InvConv2x2, InvertibleAttention

Tensor = torch.Tensor


class FlowBlock(nn.Module):
    """One FED block; the coupling mask alternates with the block index.

    FED-C's condition passes through the block's own ActNorm before it joins the coupling
    input; the condition is not part of the bijection, so that ActNorm adds no log-det.
    """

    def __init__(self, index: int, cfg: FEDConfig) -> None:
        super().__init__()
        cond_channel = index % 2
        self.actnorm = ActNorm(2)
        self.invconv = InvConv2x2()
        self.cond_norm = ActNorm(cfg.cond_dim) if cfg.conditional else None
        self.coupling = AffineCoupling(
            cond_channel, cfg.cond_dim, cfg.hidden, cfg.kernel, cfg.scale_bound
        )
        self.attention = InvertibleAttention(cond_channel, cfg.hidden)

    def _normalized_condition(self, cond: Optional[Tensor]) -> Optional[Tensor]:
        if self.cond_norm is None:
            return None
        if cond is None:
            raise ValueError("FED-C needs a condition tensor (backbone decoder features)")
        return self.cond_norm(cond)[0]

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        a = self._normalized_condition(cond)
        x, ld_norm = self.actnorm(x)
        x, ld_conv = self.invconv(x)
        x, ld_coup = self.coupling(x, a)
        x, ld_att = self.attention(x)
        return x, ld_norm + ld_conv + ld_coup + ld_att

    def inverse(self, y: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        a = self._normalized_condition(cond)
        y, ld_att = self.attention.inverse(y)
        y, ld_coup = self.coupling.inverse(y, a)
        y, ld_conv = self.invconv.inverse(y)
        y, ld_norm = self.actnorm.inverse(y)
        return y, ld_att + ld_coup + ld_conv + ld_norm


class Flow(nn.Module):
    """Stack of FlowBlocks: ``forward(x, a) -> (z, logdet)``, ``inverse(z, a) -> (x, logdet)``.

    ``logdet`` has the shape of ``x`` (B, 2, h, w): the per-channel share of
    ``log|det dz/dx|`` (forward) or ``log|det dx/dz|`` (inverse).
    """

    def __init__(self, cfg: FEDConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FlowBlock(i, cfg) for i in range(cfg.blocks))

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        logdet = torch.zeros_like(x)
        for block in self.blocks:
            x, ld = block(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        logdet = torch.zeros_like(z)
        for block in reversed(self.blocks):
            z, ld = block.inverse(z, cond)
            logdet = logdet + ld
        return z, logdet
