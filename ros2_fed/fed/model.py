"""FlowEneDet: the tiny post-hoc detector of wrong pixels bolted onto a frozen backbone."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from .condition import ChannelGroupPool
from .config import FEDConfig
from .energy import LogitStandardizer, energy_channels
from .flow import Flow
from .head import GaussianHead

Tensor = torch.Tensor


class FlowEneDet(nn.Module):
    """FED-U (``cfg.cond_dim == 0``) or FED-C on backbone logits (and decoder features).

    Pipeline: logits -> per-class standardisation -> energy channels x (B,2,h,w) -> flow
    -> z, per-channel log-det -> two component logits (0 = correct, 1 = wrong).
    Component logits are what training's cross-entropy sees; ``p_wrong`` is the score.
    """

    def __init__(self, cfg: Optional[FEDConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg or FEDConfig()
        self.standardizer = LogitStandardizer(self.cfg.num_classes)
        self.pool = (
            ChannelGroupPool(self.cfg.feat_channels, self.cfg.cond_dim)
            if self.cfg.conditional
            else None
        )
        self.flow = Flow(self.cfg)
        self.head = GaussianHead(self.cfg.cov)

    def energy_inputs(self, logits: Tensor) -> Tensor:
        """(B, C, h, w) logits -> (B, 2, h, w) ``[log sigmoid(s), log(1 - sigmoid(s))]``."""
        if logits.shape[1] != self.cfg.num_classes:
            raise ValueError(
                f"FED expects {self.cfg.num_classes}-class logits, got {logits.shape[1]}"
            )
        return energy_channels(self.standardizer(logits), self.cfg.out_floor)

    def condition(self, features: Optional[Tensor]) -> Optional[Tensor]:
        """FED-C's pooled condition (B, P, h', w'); None for FED-U."""
        if self.pool is None:
            return None
        if features is None:
            raise ValueError("FED-C needs the backbone decoder features")
        return self.pool(features)

    def _condition_at(self, features: Optional[Tensor], size: tuple[int, int]) -> Optional[Tensor]:
        a = self.condition(features)
        if a is not None and tuple(a.shape[-2:]) != tuple(size):
            # Decoder features at another rate than the logits (or TTA): resample to the logits.
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        return a

    def forward(self, logits: Tensor, features: Optional[Tensor] = None) -> Tensor:
        """Two component logits (B, 2, h, w) at the logits' resolution."""
        x = self.energy_inputs(logits)
        a = self._condition_at(features, x.shape[-2:])
        z, logdet = self.flow(x, a)
        return self.head(z, logdet)

    def p_wrong(self, logits: Tensor, features: Optional[Tensor] = None) -> Tensor:
        """Probability (B, 1, h, w) that the backbone's label is wrong (IDM or OOD)."""
        component_logits = self(logits, features)
        # softmax(...)[1] of two logits, as one stable op.
        return torch.sigmoid(component_logits[:, 1:2] - component_logits[:, 0:1])

    @torch.no_grad()
    def initialize(self, logits: Tensor, features: Optional[Tensor] = None) -> None:
        """Run the data-dependent ActNorm initialisation on one batch (training helper)."""
        was_training = self.training
        self.train()
        try:
            self(logits, features)
        finally:
            self.train(was_training)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (what the README reports for FED-U / FED-C)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
