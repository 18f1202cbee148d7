"""Energy-based FED inputs from segmentation logits, in numerically stable forms.

FED does not look at the C-dimensional logits directly: it looks at the negative free
energy ``s = logsumexp_c l'_c`` of the (optionally per-class standardised) logits and feeds
the flow two channels, ``log sigmoid(s)`` and ``log(1 - sigmoid(s))``.
"""

from __future__ import annotations

import torch
from torch import nn


def stable_softplus(x: torch.Tensor) -> torch.Tensor:
    """softplus(x) = log(1 + e^x) without overflow for |x| ~ 1e4.

    Written with elementary ops (not ``F.softplus``) so every runtime the graph is exported
    to (ONNX Runtime, TensorRT) evaluates the same stable form.
    """
    return torch.relu(x) + torch.log1p(torch.exp(-torch.abs(x)))


class LogitStandardizer(nn.Module):
    """Per-class standardisation ``(l_c - mu_c) / sigma_c`` with training-set statistics.

    The statistics (also used by SML) are buffers saved in the checkpoint. With the identity
    defaults (mean 0, std 1) the op is a no-op, so the graph never branches on a flag.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_classes))
        self.register_buffer("std", torch.ones(num_classes))

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Install statistics from a `fed_stats` pass; std must be strictly positive."""
        mean = torch.as_tensor(mean, dtype=self.mean.dtype).reshape(-1)
        std = torch.as_tensor(std, dtype=self.std.dtype).reshape(-1)
        if mean.numel() != self.mean.numel() or std.numel() != self.std.numel():
            raise ValueError(
                f"logit statistics have {mean.numel()}/{std.numel()} classes, model has "
                f"{self.mean.numel()}"
            )
        if not torch.all(torch.isfinite(mean)) or not torch.all(std > 0):
            raise ValueError("logit statistics must be finite with std > 0")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        return (logits - self.mean.view(shape)) / self.std.view(shape)


def energy_channels(logits: torch.Tensor, out_floor: float = 0.0) -> torch.Tensor:
    """Two-channel FED input ``[log sigmoid(s), log(1 - sigmoid(s))]``, s = logsumexp(logits).

    ``out_floor > 0`` is the FED authors' clamp ``log(out_floor + 1 - sigmoid(s))``: confident
    pixels (large s) all get about ``log(out_floor)`` instead of ``-s``, so the flow spends its
    capacity on the uncertain end, where wrong and unknown pixels live. ``1 - sigmoid(s)`` is
    computed as ``exp(-softplus(s))``, exact where ``1 - sigmoid`` would round to 0.
    Shape (B, C, h, w) -> (B, 2, h, w); finite for any finite logits.
    """
    s = torch.logsumexp(logits, dim=1, keepdim=True)
    x_in = -stable_softplus(-s)
    x_out = -stable_softplus(s)
    if out_floor > 0:
        x_out = torch.log(torch.exp(x_out) + out_floor)
    return torch.cat([x_in, x_out], dim=1)
