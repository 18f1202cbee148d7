"""FED helpers for tests (not product code): a FED with data-initialised ActNorms."""

from __future__ import annotations

from typing import Optional

import torch

from ros2_fed.fed import FEDConfig, FlowEneDet


def make_random_fed(
    cfg: FEDConfig, logits: torch.Tensor, features: Optional[torch.Tensor] = None
) -> FlowEneDet:
    """A FED with data-initialised ActNorms (tests with random backbones)."""
    fed = FlowEneDet(cfg)
    fed.initialize(logits, features if cfg.conditional else None)
    return fed.eval()
