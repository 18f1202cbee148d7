"""FED-C's compute-free condition: average-pool groups of backbone feature channels."""

from __future__ import annotations

import torch
from torch import nn


class ChannelGroupPool(nn.Module):
    """(B, F, h, w) -> (B, P, h, w) by averaging P contiguous groups of channels.

    No learned parameters. When P divides F the pooling is a reshape + mean (memory reads
    only); otherwise group ``i`` spans channels ``[floor(i F / P), floor((i+1) F / P))`` and a
    fixed averaging matrix (a buffer) is applied as a 1x1 convolution.
    """

    def __init__(self, in_channels: int, groups: int) -> None:
        super().__init__()
        if groups < 1 or in_channels < groups:
            raise ValueError(f"cannot pool {in_channels} channels into {groups} groups")
        self.in_channels = in_channels
        self.groups = groups
        self.even = in_channels % groups == 0
        weight = torch.zeros(groups, in_channels, 1, 1)
        for i in range(groups):
            lo, hi = (i * in_channels) // groups, ((i + 1) * in_channels) // groups
            weight[i, lo:hi] = 1.0 / (hi - lo)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[1] != self.in_channels:
            raise ValueError(
                f"FED-C expects {self.in_channels}-channel backbone features, got "
                f"{features.shape[1]}"
            )
        if self.even:
            b, _, h, w = features.shape
            return features.reshape(b, self.groups, self.in_channels // self.groups, h, w).mean(
                dim=2
            )
        return nn.functional.conv2d(features, self.weight.to(features.dtype))
