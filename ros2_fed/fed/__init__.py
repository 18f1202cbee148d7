"""FlowEneDet (FED) in pure torch: energy inputs, invertible layers, flow, base model.

Public names (stable, used by tools and tests): FEDConfig, FlowEneDet, Flow, and the layer
classes; post-processing lives in ``ros2_fed.fed.postprocess``, the folded inference form
(``fold_fed``, ``fused_p_wrong``) in ``ros2_fed.fed.fused``.
"""

from .condition import ChannelGroupPool
from .config import FEDConfig
from .energy import LogitStandardizer, energy_channels, stable_softplus
from .flow import Flow, FlowBlock
from .head import GaussianHead
from .layers import ActNorm, AffineCoupling, InvConv2x2, InvertibleAttention
from .model import FlowEneDet, count_parameters

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "ChannelGroupPool",
    "FEDConfig",
    "Flow",
    "FlowBlock",
    "FlowEneDet",
    "GaussianHead",
    "InvConv2x2",
    "InvertibleAttention",
    "LogitStandardizer",
    "count_parameters",
    "energy_channels",
    "stable_softplus",
]
