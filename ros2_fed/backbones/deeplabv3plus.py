"""DeepLabV3+ with a dilated ResNetV1c (the paper's "DL-R101"), laid out like MMSegmentation 0.x.

Mirrors ``deeplabv3plus_r101-d8_512x1024_80k_cityscapes``: ``ResNetV1c`` (deep stem of three 3x3
convs 3->32->32->64, max-pool, bottleneck stages (3, 4, 23, 3) with strides (1, 2, 1, 1) and
dilations (1, 1, 2, 4), ``contract_dilation``: the first block of a dilated stage uses half the
dilation) and ``DepthwiseSeparableASPPHead`` (image pooling + 1x1 + three separable 3x3 ASPP
branches at dilations 12/24/36, 3x3 bottleneck, 48-channel c1 low-level branch, two separable
3x3 convs, ``conv_seg``). Output stride 8 in the encoder, 4 at the head (c1 resolution).

All stride-2 layers use ``padding = kernel // 2`` so every size rounds up: the head's output is
``ceil(H/4) x ceil(W/4)`` for any input size, exactly as MMSeg produces it.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from .base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ConvModule,
    DepthwiseSeparableConvModule,
    SegmentationBackbone,
    resize,
)

RESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


class Bottleneck(nn.Module):
    """ResNet bottleneck, ``style='pytorch'``: the stride sits on the 3x3 conv (``conv2``)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetV1c(nn.Module):
    """ResNet-V1c encoder (deep stem, no avg-down), returning the four stage outputs c1..c4."""

    def __init__(
        self,
        blocks: Sequence[int] = RESNET_DEPTHS[101],
        stem_channels: int = 64,
        base_channels: int = 64,
        strides: Sequence[int] = (1, 2, 1, 1),
        dilations: Sequence[int] = (1, 1, 2, 4),
        contract_dilation: bool = True,
    ) -> None:
        super().__init__()
        half = stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, stem_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem_channels
        self.stage_channels: list[int] = []
        for i, (num_blocks, stride, dilation) in enumerate(zip(blocks, strides, dilations)):
            planes = base_channels * 2**i
            layer = self._make_layer(
                inplanes, planes, num_blocks, stride, dilation, contract_dilation
            )
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes * Bottleneck.expansion
            self.stage_channels.append(inplanes)

    @staticmethod
    def _make_layer(
        inplanes: int,
        planes: int,
        num_blocks: int,
        stride: int,
        dilation: int,
        contract_dilation: bool,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        # mmseg ResLayer: with contract_dilation the first block of a dilated stage uses
        # dilation // 2.
        first_dilation = dilation // 2 if (dilation > 1 and contract_dilation) else dilation
        layers = [Bottleneck(inplanes, planes, stride, first_dilation, downsample)]
        inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(inplanes, planes, 1, dilation) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.stem(x))
        outs = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            outs.append(x)
        return outs


class DepthwiseSeparableASPPHead(nn.Module):
    """MMSeg ``DepthwiseSeparableASPPHead`` (``ASPPHead`` + separable convs + c1 branch).

    ``forward`` returns ``(logits, features)``; ``features`` is the output of ``sep_bottleneck``
    (the fused ASPP + low-level decoder map, ``channels`` wide, at c1 = 1/4 resolution), i.e.
    the tensor right before dropout and ``conv_seg``.
    """

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        c1_in_channels: int = 256,
        c1_channels: int = 48,
        dilations: Sequence[int] = (1, 12, 24, 36),
        num_classes: int = 19,
        dropout_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvModule(in_channels, channels, 1)
        )
        branches: list[nn.Module] = []
        for d in dilations:
            if d == 1:
                branches.append(ConvModule(in_channels, channels, 1))
            else:
                branches.append(
                    DepthwiseSeparableConvModule(in_channels, channels, 3, padding=d, dilation=d)
                )
        self.aspp_modules = nn.ModuleList(branches)
        self.bottleneck = ConvModule((len(dilations) + 1) * channels, channels, 3, padding=1)
        self.c1_bottleneck = ConvModule(c1_in_channels, c1_channels, 1)
        self.sep_bottleneck = nn.Sequential(
            DepthwiseSeparableConvModule(channels + c1_channels, channels, 3, padding=1),
            DepthwiseSeparableConvModule(channels, channels, 3, padding=1),
        )
        # MMSeg's cls_seg: Dropout2d then conv_seg. Identity in eval; kept so MC dropout has
        # its layer.
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, c1: torch.Tensor, c4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Bilinear resize of a 1x1 map is a broadcast; expand is exact and cheaper to export.
        pooled = self.image_pool(c4).expand(-1, -1, c4.shape[2], c4.shape[3])
        aspp = torch.cat([pooled] + [branch(c4) for branch in self.aspp_modules], dim=1)
        out = self.bottleneck(aspp)
        low = self.c1_bottleneck(c1)
        out = resize(out, low.shape[2:])
        features = self.sep_bottleneck(torch.cat([out, low], dim=1))
        return self.conv_seg(self.dropout(features)), features


class DeepLabV3Plus(SegmentationBackbone):
    """DeepLabV3+ ResNet-D8 ("DL-R101" with ``blocks=(3, 4, 23, 3)``).

    ``forward(images) -> (logits, features)``:
    - logits ``B x num_classes x ceil(H/4) x ceil(W/4)`` (MMSeg decode-head output, before the
      segmentor's final upsampling),
    - features ``B x channels (512) x ceil(H/4) x ceil(W/4)``: the fused decoder feature map
      after ``decode_head.sep_bottleneck``, before ``conv_seg``. **This is the map FED-C pools
      its condition from.**
    """

    arch = "deeplabv3plus"

    def __init__(
        self,
        num_classes: int = 19,
        blocks: Sequence[int] = RESNET_DEPTHS[101],
        stem_channels: int = 64,
        base_channels: int = 64,
        strides: Sequence[int] = (1, 2, 1, 1),
        dilations: Sequence[int] = (1, 1, 2, 4),
        contract_dilation: bool = True,
        channels: int = 512,
        c1_channels: int = 48,
        aspp_dilations: Sequence[int] = (1, 12, 24, 36),
        dropout_ratio: float = 0.1,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__(num_classes, channels, mean, std)
        self._config = dict(
            num_classes=int(num_classes),
            blocks=list(blocks),
            stem_channels=stem_channels,
            base_channels=base_channels,
            strides=list(strides),
            dilations=list(dilations),
            contract_dilation=contract_dilation,
            channels=channels,
            c1_channels=c1_channels,
            aspp_dilations=list(aspp_dilations),
            dropout_ratio=float(dropout_ratio),
        )
        self.backbone = ResNetV1c(
            blocks, stem_channels, base_channels, strides, dilations, contract_dilation
        )
        c1_in, c4_in = self.backbone.stage_channels[0], self.backbone.stage_channels[-1]
        self.decode_head = DepthwiseSeparableASPPHead(
            c4_in, channels, c1_in, c1_channels, aspp_dilations, num_classes, dropout_ratio
        )

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def name(self) -> str:
        depth = {v: k for k, v in RESNET_DEPTHS.items()}.get(tuple(self._config["blocks"]))
        return f"deeplabv3plus_r{depth}-d8" if depth else "deeplabv3plus_resnet-d8"

    def forward_normalized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c1, _, _, c4 = self.backbone(x)
        return self.decode_head(c1, c4)
