"""SegFormer: Mix Transformer (MiT-B0..B5) encoder + all-MLP head, laid out like MMSegmentation
0.x.

State-dict names follow MMSeg's ``MixVisionTransformer`` / ``SegformerHead``
(``backbone.layers.{stage}.{0: patch embed, 1: blocks, 2: norm}``, attention weights packed as
``attn.attn.in_proj_weight`` like ``nn.MultiheadAttention``), so an MMSeg checkpoint loads with
``strict=True``. Hugging Face checkpoints are converted to this layout (``convert.py``); the two
sources differ in two hyper-parameters that are therefore part of the config:

- ``ln_eps``: MMSeg's MiT uses LayerNorm eps 1e-6, transformers' SegFormer uses the torch
  default 1e-5 everywhere (its ``layer_norm_eps`` config field is not used by the model);
- ``head_norm``: MMSeg's per-stage head projections are ConvModules (1x1 conv without bias ->
  BN -> ReLU); transformers' are plain Linear layers with bias (``head_norm=False``).

Every stride-2/4 layer pads ``kernel // 2``, so stage sizes are ``ceil`` of the input over the
stride and the logits are ``ceil(H/4) x ceil(W/4)`` for any input size.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, ConvModule, SegmentationBackbone, resize

# MiT variants (SegFormer paper, Table 6): embed dims and depths per stage; heads are 1, 2, 5, 8.
MIT_VARIANTS: dict[str, dict[str, list[int]]] = {
    "b0": {"embed_dims": [32, 64, 160, 256], "depths": [2, 2, 2, 2]},
    "b1": {"embed_dims": [64, 128, 320, 512], "depths": [2, 2, 2, 2]},
    "b2": {"embed_dims": [64, 128, 320, 512], "depths": [3, 4, 6, 3]},
    "b3": {"embed_dims": [64, 128, 320, 512], "depths": [3, 4, 18, 3]},
    "b4": {"embed_dims": [64, 128, 320, 512], "depths": [3, 8, 27, 3]},
    "b5": {"embed_dims": [64, 128, 320, 512], "depths": [3, 6, 40, 3]},
}
MIT_HEADS = [1, 2, 5, 8]


def mit_config(
    variant: str, num_classes: int = 19, channels: int = 256, **overrides: Any
) -> dict[str, Any]:
    """SegFormer hyper-parameters of MiT ``variant`` ("b0".."b5") with MMSeg's defaults."""
    variant = variant.lower().replace("mit-", "").replace("mit_", "")
    if variant not in MIT_VARIANTS:
        raise ValueError(
            f"unknown MiT variant {variant!r}; expected one of {sorted(MIT_VARIANTS)}"
        )
    cfg: dict[str, Any] = dict(
        num_classes=num_classes,
        embed_dims=list(MIT_VARIANTS[variant]["embed_dims"]),
        depths=list(MIT_VARIANTS[variant]["depths"]),
        num_heads=list(MIT_HEADS),
        patch_sizes=[7, 3, 3, 3],
        strides=[4, 2, 2, 2],
        sr_ratios=[8, 4, 2, 1],
        mlp_ratios=[4, 4, 4, 4],
        qkv_bias=True,
        ln_eps=1e-6,
        channels=channels,
        head_norm=True,
        dropout_ratio=0.1,
    )
    cfg.update(overrides)
    return cfg


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: strided conv (``projection``) + LayerNorm (``norm``)."""

    def __init__(
        self, in_channels: int, embed_dims: int, kernel_size: int, stride: int, eps: float
    ) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            in_channels, embed_dims, kernel_size, stride=stride, padding=kernel_size // 2
        )
        self.norm = nn.LayerNorm(embed_dims, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.projection(x)
        h, w = x.shape[2], x.shape[3]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class PackedAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameter names (packed q/k/v).

    Written out with ``scaled_dot_product_attention`` instead of using ``nn.MultiheadAttention``
    so that queries and keys can have different lengths without its (L, B, C) layout, and so the
    graph exports cleanly.
    """

    def __init__(self, dims: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        if dims % num_heads:
            raise ValueError(f"embed dims {dims} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dims, dims))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dims)) if bias else None
        self.out_proj = nn.Linear(dims, dims)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        b, n, c = query.shape
        heads, head_dim = self.num_heads, c // self.num_heads
        w_q, w_kv = self.in_proj_weight[:c], self.in_proj_weight[c:]
        b_q = b_kv = None
        if self.in_proj_bias is not None:
            b_q, b_kv = self.in_proj_bias[:c], self.in_proj_bias[c:]
        q = F.linear(query, w_q, b_q).view(b, n, heads, head_dim).transpose(1, 2)
        k, v = (
            F.linear(kv, w_kv, b_kv)
            .view(b, -1, 2, heads, head_dim)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class EfficientMultiheadAttention(nn.Module):
    """SegFormer's efficient self-attention: keys/values come from a ``sr_ratio``-strided conv."""

    def __init__(
        self, dims: int, num_heads: int, sr_ratio: int, qkv_bias: bool, eps: float
    ) -> None:
        super().__init__()
        self.attn = PackedAttention(dims, num_heads, qkv_bias)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dims, dims, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dims, eps=eps)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        kv = x
        if self.sr_ratio > 1:
            b, n, c = x.shape
            kv = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
            kv = self.norm(kv.flatten(2).transpose(1, 2))
        return self.attn(x, kv)


class MixFFN(nn.Module):
    """1x1 conv -> 3x3 depthwise conv (positional information) -> GELU -> 1x1 conv.

    Held in ``layers`` at MMSeg's indices 0, 1, 4 (2 is the activation, 3 a dropout).
    """

    def __init__(self, dims: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(dims, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.GELU(),
            nn.Identity(),
            nn.Conv2d(hidden, dims, 1),
        )

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        out = self.layers(x.transpose(1, 2).reshape(b, c, h, w))
        return out.flatten(2).transpose(1, 2)


class TransformerEncoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))`` (tokens are B x N x C)."""

    def __init__(
        self,
        dims: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: int,
        qkv_bias: bool,
        eps: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=eps)
        self.attn = EfficientMultiheadAttention(dims, num_heads, sr_ratio, qkv_bias, eps)
        self.norm2 = nn.LayerNorm(dims, eps=eps)
        self.ffn = MixFFN(dims, int(dims * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.ffn(self.norm2(x), h, w)


class MixVisionTransformer(nn.Module):
    """MiT encoder; returns the four stage maps at strides 4, 8, 16, 32 (ceil-rounded)."""

    def __init__(
        self,
        embed_dims: Sequence[int],
        depths: Sequence[int],
        num_heads: Sequence[int],
        patch_sizes: Sequence[int],
        strides: Sequence[int],
        sr_ratios: Sequence[int],
        mlp_ratios: Sequence[float],
        qkv_bias: bool = True,
        ln_eps: float = 1e-6,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i, dims in enumerate(embed_dims):
            blocks = nn.ModuleList(
                [
                    TransformerEncoderLayer(
                        dims, num_heads[i], mlp_ratios[i], sr_ratios[i], qkv_bias, ln_eps
                    )
                    for _ in range(depths[i])
                ]
            )
            patch_embed = PatchEmbed(in_channels, dims, patch_sizes[i], strides[i], ln_eps)
            self.layers.append(
                nn.ModuleList([patch_embed, blocks, nn.LayerNorm(dims, eps=ln_eps)])
            )
            in_channels = dims

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for patch_embed, blocks, norm in self.layers:
            tokens, h, w = patch_embed(x)
            for block in blocks:
                tokens = block(tokens, h, w)
            tokens = norm(tokens)
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)
            outs.append(x)
        return outs


class SegformerHead(nn.Module):
    """All-MLP head: per-stage 1x1 projection to ``channels``, upsample to stage 1, concat, fuse.

    Concatenation is in stage order 0..3 (MMSeg); transformers concatenates in reverse, which the
    converter folds into a permutation of ``fusion_conv``'s input channels.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        head_norm: bool = True,
        dropout_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [ConvModule(c, channels, 1, norm=head_norm, act=head_norm) for c in in_channels]
        )
        self.fusion_conv = ConvModule(channels * len(in_channels), channels, 1)
        # MMSeg's cls_seg: Dropout2d then conv_seg. Identity in eval; kept so MC dropout has
        # its layer.
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        size = inputs[0].shape[2:]
        outs = [self.convs[0](inputs[0])]
        outs += [resize(conv(x), size) for conv, x in zip(list(self.convs)[1:], inputs[1:])]
        features = self.fusion_conv(torch.cat(outs, dim=1))
        return self.conv_seg(self.dropout(features)), features


class SegFormer(SegmentationBackbone):
    """SegFormer MiT-B0..B5 ("SF-B2" with :func:`mit_config` ``("b2")``).

    ``forward(images) -> (logits, features)``:
    - logits ``B x num_classes x ceil(H/4) x ceil(W/4)`` (the decode head's output),
    - features ``B x channels x ceil(H/4) x ceil(W/4)``: the fused MLP feature map after
      ``decode_head.fusion_conv`` (conv + BN + ReLU), before ``conv_seg``. **This is the map FED-C
      pools its condition from.** Its width is the head's ``channels``: 256 in every MMSeg
      SegFormer config (B0..B5), 256 (B0/B1) or 768 (B2..B5) in Hugging Face checkpoints.
    """

    arch = "segformer"

    def __init__(
        self,
        num_classes: int = 19,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        depths: Sequence[int] = (3, 4, 6, 3),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        strides: Sequence[int] = (4, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        qkv_bias: bool = True,
        ln_eps: float = 1e-6,
        channels: int = 256,
        head_norm: bool = True,
        dropout_ratio: float = 0.1,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__(num_classes, channels, mean, std)
        n = len(embed_dims)
        if not all(
            len(seq) == n
            for seq in (depths, num_heads, patch_sizes, strides, sr_ratios, mlp_ratios)
        ):
            raise ValueError(
                "SegFormer per-stage hyper-parameters must all have one entry per stage"
            )
        if strides[0] != 4:
            raise ValueError("SegFormer's first stage must have stride 4 (logits at 1/4)")
        self._config = dict(
            num_classes=int(num_classes),
            embed_dims=list(embed_dims),
            depths=list(depths),
            num_heads=list(num_heads),
            patch_sizes=list(patch_sizes),
            strides=list(strides),
            sr_ratios=list(sr_ratios),
            mlp_ratios=[float(r) for r in mlp_ratios],
            qkv_bias=bool(qkv_bias),
            ln_eps=float(ln_eps),
            channels=int(channels),
            head_norm=bool(head_norm),
            dropout_ratio=float(dropout_ratio),
        )
        self.backbone = MixVisionTransformer(
            embed_dims,
            depths,
            num_heads,
            patch_sizes,
            strides,
            sr_ratios,
            mlp_ratios,
            qkv_bias,
            ln_eps,
        )
        self.decode_head = SegformerHead(
            embed_dims, channels, num_classes, head_norm, dropout_ratio
        )

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def name(self) -> str:
        for variant, spec in MIT_VARIANTS.items():
            if (
                spec["embed_dims"] == self._config["embed_dims"]
                and spec["depths"] == self._config["depths"]
            ):
                return f"segformer_mit-{variant}"
        return "segformer_mit-custom"

    def forward_normalized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode_head(self.backbone(x))
