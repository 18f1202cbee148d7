"""Invertible layers of the FED flow, nflows/Glow style.

Every layer has ``forward(x, cond) -> (y, logdet)`` and ``inverse(y, cond) -> (x, logdet)``
where ``logdet`` is kept *per channel*, shape (B, 2, h, w): its sum over channels and pixels
is exactly ``log|det dy/dx|`` of that direction. A term shared by both channels (the 1x1
convolution's) is split evenly between them, because FED's base model scores each channel
(= mixture component) with its own share of the log-det.

The layers work on the 2-channel energy map of FED; the 1x1 convolution is the closed-form
2x2 case (no slogdet/inverse ops, which do not export to ONNX/TensorRT).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

Tensor = torch.Tensor


class ActNorm(nn.Module):
    """Glow's per-channel affine ``y = (x + b) * exp(log_s)`` with data-dependent init.

    On the first forward pass in training mode the layer sets ``b`` and ``log_s`` so that
    its output has zero mean and unit variance per channel over that batch. The
    ``initialized`` flag is a buffer, so a loaded checkpoint never re-initialises.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.zeros(()))
        self.eps = eps

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent initialisation from one batch (B, C, h, w)."""
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean = flat.mean(dim=1)
        std = flat.std(dim=1, unbiased=False)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(1.0)

    def _maybe_initialize(self, x: Tensor) -> None:
        # `self.training` is checked first so eval/export graphs never see the data branch.
        if self.training and not bool(self.initialized):
            self.initialize(x)

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        self._maybe_initialize(x)
        shape = (1, -1, 1, 1)
        y = (x + self.bias.view(shape)) * torch.exp(self.log_scale.view(shape))
        logdet = self.log_scale.view(shape).expand_as(x)
        return y, logdet

    def inverse(self, y: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        shape = (1, -1, 1, 1)
        x = y * torch.exp(-self.log_scale.view(shape)) - self.bias.view(shape)
        logdet = (-self.log_scale).view(shape).expand_as(y)
        return x, logdet


class InvConv2x2(nn.Module):
    """Glow's invertible 1x1 convolution on FED's two channels: a 2x2 matrix W.

    Orthogonal initialisation. The determinant and the inverse use the closed 2x2 forms so
    the graph exports; ``inverse`` really applies ``W^-1`` (the public research code computed
    the inverse and then applied the forward matrix).
    """

    def __init__(self) -> None:
        super().__init__()
        weight = torch.empty(2, 2)
        nn.init.orthogonal_(weight)
        self.weight = nn.Parameter(weight)

    def _det(self) -> Tensor:
        w = self.weight
        return w[0, 0] * w[1, 1] - w[0, 1] * w[1, 0]

    @staticmethod
    def _multiply(matrix: Tensor, x: Tensor) -> Tensor:
        x0, x1 = x[:, 0:1], x[:, 1:2]
        y0 = matrix[0, 0] * x0 + matrix[0, 1] * x1
        y1 = matrix[1, 0] * x0 + matrix[1, 1] * x1
        return torch.cat([y0, y1], dim=1)

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        half = 0.5 * torch.log(torch.abs(self._det()))
        return self._multiply(self.weight, x), half.expand_as(x)

    def inverse(self, y: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        w = self.weight
        det = self._det()
        inv = (
            torch.stack([torch.stack([w[1, 1], -w[0, 1]]), torch.stack([-w[1, 0], w[0, 0]])]) / det
        )
        half = -0.5 * torch.log(torch.abs(det))
        return self._multiply(inv, y), half.expand_as(y)


def _split(x: Tensor, cond_channel: int) -> tuple[Tensor, Tensor]:
    """(conditioning half, transformed half) of a 2-channel map."""
    return x[:, cond_channel : cond_channel + 1], x[:, 1 - cond_channel : 2 - cond_channel]


def _merge(kept: Tensor, changed: Tensor, cond_channel: int) -> Tensor:
    """Inverse of `_split`: put both halves back in channel order."""
    return torch.cat([kept, changed] if cond_channel == 0 else [changed, kept], dim=1)


class CouplingNet(nn.Sequential):
    """Conv1x1 -> ReLU -> ConvKxK (reflect padding) -> ReLU -> Conv1x1, PyTorch default init.

    Still an ``nn.Sequential`` so the state-dict keys stay ``0.*``, ``2.*``, ``4.*`` (the
    shipped checkpoints); code reads the convolutions by name: ``expand``, ``spatial``,
    ``project``.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, padding_mode="reflect"),
            nn.ReLU(),
            nn.Conv2d(hidden, 1, 1),
        )

    @property
    def expand(self) -> nn.Conv2d:
        """The first 1x1 convolution: (kept channel [+ condition]) -> hidden."""
        return self[0]

    @property
    def spatial(self) -> nn.Conv2d:
        """The KxK convolution, hidden -> hidden, reflect padding."""
        return self[2]

    @property
    def project(self) -> nn.Conv2d:
        """The last 1x1 convolution: hidden -> 1."""
        return self[4]


class AttentionNet(nn.Sequential):
    """Conv1x1 -> ReLU -> Conv1x1 of the invertible attention; keys ``0.*``, ``2.*`` as before."""

    def __init__(self, hidden: int) -> None:
        super().__init__(nn.Conv2d(1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))

    @property
    def expand(self) -> nn.Conv2d:
        """1 -> hidden."""
        return self[0]

    @property
    def project(self) -> nn.Conv2d:
        """hidden -> 1 (zero-initialised: the attention starts as the identity)."""
        return self[2]


class AffineCoupling(nn.Module):
    """RealNVP affine coupling with a channel mask: one channel conditions the other.

    Only the conditioning channel (plus FED-C's condition vector) enters the scale and
    shift networks, which are two separate networks, so the layer is a true bijection with a
    triangular Jacobian. The log-scale is tanh-limited to ``[-scale_bound, scale_bound]``.
    """

    def __init__(
        self, cond_channel: int, cond_dim: int, hidden: int, kernel: int, scale_bound: float
    ) -> None:
        super().__init__()
        if cond_channel not in (0, 1):
            raise ValueError("cond_channel must be 0 or 1")
        self.cond_channel = cond_channel
        self.cond_dim = cond_dim
        self.scale_bound = float(scale_bound)
        self.scale_net = CouplingNet(1 + cond_dim, hidden, kernel)
        self.shift_net = CouplingNet(1 + cond_dim, hidden, kernel)

    def _scale_shift(self, kept: Tensor, cond: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        if self.cond_dim > 0:
            if cond is None:
                raise ValueError(
                    "this coupling is conditional (FED-C): a condition tensor is required"
                )
            kept = torch.cat([kept, cond], dim=1)
        raw = self.scale_net(kept)
        log_scale = self.scale_bound * torch.tanh(raw / self.scale_bound)
        return log_scale, self.shift_net(kept)

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        kept, changed = _split(x, self.cond_channel)
        log_scale, shift = self._scale_shift(kept, cond)
        y = _merge(kept, changed * torch.exp(log_scale) + shift, self.cond_channel)
        return y, _merge(torch.zeros_like(log_scale), log_scale, self.cond_channel)

    def inverse(self, y: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        kept, changed = _split(y, self.cond_channel)
        log_scale, shift = self._scale_shift(kept, cond)
        x = _merge(kept, (changed - shift) * torch.exp(-log_scale), self.cond_channel)
        return x, _merge(torch.zeros_like(log_scale), -log_scale, self.cond_channel)


class InvertibleAttention(nn.Module):
    """iMap-style invertible attention (Sukthanker et al., CVPR 2022), per pixel.

    A positive attention scalar computed from the conditioning channel multiplies the
    transformed channel; its log is the exact log-det. As in iMap the map starts as the
    identity: the last convolution is zero-initialised so the attention is 1 before training.
    The log-attention is tanh-limited to [-1, 1] for stability.
    """

    def __init__(self, cond_channel: int, hidden: int) -> None:
        super().__init__()
        self.cond_channel = cond_channel
        self.net = AttentionNet(hidden)
        nn.init.zeros_(self.net.project.weight)
        nn.init.zeros_(self.net.project.bias)

    def _log_attention(self, kept: Tensor) -> Tensor:
        return torch.tanh(self.net(kept))

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        kept, changed = _split(x, self.cond_channel)
        log_att = self._log_attention(kept)
        y = _merge(kept, changed * torch.exp(log_att), self.cond_channel)
        return y, _merge(torch.zeros_like(log_att), log_att, self.cond_channel)

    def inverse(self, y: Tensor, cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        kept, changed = _split(y, self.cond_channel)
        log_att = self._log_attention(kept)
        x = _merge(kept, changed * torch.exp(-log_att), self.cond_channel)
        return x, _merge(torch.zeros_like(log_att), -log_att, self.cond_channel)
