"""FED's base model g(beta, mu, U): one Gaussian-like component per flow output channel."""

from __future__ import annotations

import math

import torch
from torch import nn

from .energy import stable_softplus

_LOG2 = math.log(2.0)


class GaussianHead(nn.Module):
    """Per-pixel component logits from the flow output z and its per-channel log-det.

    ``logit_m = logdet_m - softplus(beta_m) + log U_mm - 0.5 * ((U (z - mu))_m)^2`` with U a
    lower-triangular 2x2 precision factor (``cov="full"``) or its diagonal (``cov="diag"``).
    ``diag(U) = softplus(r) / log 2`` is 1 at r = 0; beta, mu and r (and U's off-diagonal)
    start at zero as in the supplementary.
    """

    def __init__(self, cov: str = "full") -> None:
        super().__init__()
        if cov not in ("full", "diag"):
            raise ValueError(f"cov must be 'full' or 'diag', got {cov!r}")
        self.cov = cov
        self.beta = nn.Parameter(torch.zeros(2))
        self.mu = nn.Parameter(torch.zeros(2))
        self.u_diag = nn.Parameter(torch.zeros(2))
        self.u_offdiag = nn.Parameter(torch.zeros(1)) if cov == "full" else None

    def precision_factor(self) -> torch.Tensor:
        """The 2x2 matrix U (for inspection and tests)."""
        d = stable_softplus(self.u_diag) / _LOG2
        off = self.u_offdiag[0] if self.u_offdiag is not None else d.new_zeros(())
        return torch.stack([torch.stack([d[0], d.new_zeros(())]), torch.stack([off, d[1]])])

    def forward(self, z: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
        d = stable_softplus(self.u_diag) / _LOG2
        centred0 = z[:, 0:1] - self.mu[0]
        centred1 = z[:, 1:2] - self.mu[1]
        proj0 = d[0] * centred0
        proj1 = d[1] * centred1
        if self.u_offdiag is not None:
            proj1 = proj1 + self.u_offdiag[0] * centred0
        quad = torch.cat([proj0, proj1], dim=1).square()
        bias = (-stable_softplus(self.beta) + torch.log(d)).view(1, 2, 1, 1)
        return logdet + bias - 0.5 * quad
