"""FEDConfig: the whole design space of the FED supplementary (Table 8) in one dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class FEDConfig:
    """Hyper-parameters of a FlowEneDet detector.

    Defaults are the paper's: full covariance, 7x7 coupling kernels, 8 blocks, and FED-U
    (``cond_dim = 0``). ``cond_dim = 32`` (or 128) gives FED-C, which then needs
    ``feat_channels``: the channel count of the backbone decoder feature map it pools from.
    """

    cov: str = "full"  # "full" | "diag": triangular precision factor U of the base model
    kernel: int = 7  # K of the KxK convolution inside every coupling network: 3 | 7 | 11
    blocks: int = 8  # L flow blocks: 4 | 8
    cond_dim: int = 0  # P: 0 = FED-U, 32 / 128 = FED-C
    num_classes: int = 19  # C: backbone classes (only the logit statistics depend on it)
    feat_channels: int = 0  # channels of the backbone decoder feature map (FED-C only)
    hidden: int = 2  # width of the coupling/attention networks (FED is meant to be tiny)
    scale_bound: float = 2.0  # |log-scale| of a coupling is at most this (tanh-limited)
    # log P(out) = log(out_floor + 1 - P(in)): the authors' clamp (about -13.8 at most); 0 keeps
    # the unbounded -softplus(s). Checkpoints written before the option existed load with 0.
    out_floor: float = 1e-6

    def __post_init__(self) -> None:
        if self.cov not in ("full", "diag"):
            raise ValueError(f"FEDConfig.cov must be 'full' or 'diag', got {self.cov!r}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"FEDConfig.kernel must be a positive odd size, got {self.kernel}")
        if self.blocks < 1:
            raise ValueError(f"FEDConfig.blocks must be >= 1, got {self.blocks}")
        if self.cond_dim < 0:
            raise ValueError(f"FEDConfig.cond_dim must be >= 0, got {self.cond_dim}")
        if self.cond_dim > 0 and self.feat_channels < self.cond_dim:
            raise ValueError(
                "FED-C pools cond_dim groups of backbone feature channels: feat_channels "
                f"({self.feat_channels}) must be >= cond_dim ({self.cond_dim})"
            )
        if self.num_classes < 2:
            raise ValueError(f"FEDConfig.num_classes must be >= 2, got {self.num_classes}")
        if self.hidden < 1:
            raise ValueError(f"FEDConfig.hidden must be >= 1, got {self.hidden}")
        if self.scale_bound <= 0:
            raise ValueError(f"FEDConfig.scale_bound must be > 0, got {self.scale_bound}")
        if not 0.0 <= self.out_floor < 1.0:
            raise ValueError(f"FEDConfig.out_floor must be in [0, 1), got {self.out_floor}")

    @property
    def conditional(self) -> bool:
        """True for FED-C (a condition vector feeds every coupling)."""
        return self.cond_dim > 0

    @property
    def variant(self) -> str:
        """Short human name used in tables and file names: FED-U or FED-C."""
        return "FED-C" if self.conditional else "FED-U"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FEDConfig":
        """Build from JSON metadata; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FEDConfig keys: {sorted(unknown)}")
        return cls(**{"out_floor": 0.0, **data})
