"""TinySeg: the small CPU-friendly backbone of the embedded default model.

Not a research network: a compact encoder-decoder (about 0.3 M parameters) trained on
synthroad so the demo, the node tests and the engine benchmarks have a real, trained model
that runs in tens of milliseconds on two CPU cores. It follows the same contract as the
paper backbones: RGB 0..255 in, ``(logits at 1/4 resolution, decoder features)`` out, with
ImageNet normalisation inside the model.

Decoder features (what FED-C pools): the fused 1/4-resolution decoder map right before the
dropout and ``conv_seg`` classifier, ``decoder_channels`` wide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class TinySegConfig:
    num_classes: int = 19
    widths: tuple[int, int, int, int] = (16, 32, 64, 96)  # at 1/2, 1/4, 1/8, 1/16
    decoder_channels: int = 64
    dropout: float = 0.1  # before conv_seg, as MMSeg decode heads (also enables MC dropout)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TinySegConfig":
        data = dict(data)
        if "widths" in data:
            data["widths"] = tuple(data["widths"])
        return cls(**data)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    """Two 3x3 convs with an identity shortcut (same width, same resolution)."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_relu(channels, channels, dilation=dilation),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class TinySeg(nn.Module):
    """Encoder (1/2 .. 1/16) + context pooling + 1/4-resolution decoder with a skip."""

    arch = "tinyseg"

    def __init__(self, cfg: TinySegConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or TinySegConfig()
        w1, w2, w3, w4 = self.cfg.widths
        d = self.cfg.decoder_channels
        self.register_buffer(
            "mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stage1 = _conv_bn_relu(3, w1, stride=2)
        self.stage2 = nn.Sequential(_conv_bn_relu(w1, w2, stride=2), _Residual(w2))
        self.stage3 = nn.Sequential(_conv_bn_relu(w2, w3, stride=2), _Residual(w3))
        self.stage4 = nn.Sequential(
            _conv_bn_relu(w3, w4, stride=2), _Residual(w4, dilation=2), _Residual(w4, dilation=4)
        )
        self.context = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(w4, w4, 1), nn.ReLU(inplace=True)
        )
        self.lateral = nn.Sequential(
            nn.Conv2d(w2, d // 2, 1, bias=False), nn.BatchNorm2d(d // 2), nn.ReLU(inplace=True)
        )
        self.reduce = nn.Sequential(
            nn.Conv2d(2 * w4, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True)
        )
        self.fuse = _conv_bn_relu(d + d // 2, d)
        self.dropout = nn.Dropout2d(self.cfg.dropout)
        self.conv_seg = nn.Conv2d(d, self.cfg.num_classes, 1)

    @property
    def feature_channels(self) -> int:
        return self.cfg.decoder_channels

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB ``B x 3 x H x W`` in 0..255 -> (logits B x C x ceil(H/4) x ceil(W/4), features)."""
        x = (images.float() - self.mean) / self.std
        c2 = self.stage2(self.stage1(x))
        c4 = self.stage4(self.stage3(c2))
        context = self.context(c4).expand_as(c4)
        deep = self.reduce(torch.cat([c4, context], dim=1))
        deep = F.interpolate(deep, size=c2.shape[-2:], mode="bilinear", align_corners=False)
        features = self.fuse(torch.cat([deep, self.lateral(c2)], dim=1))
        return self.conv_seg(self.dropout(features)), features


def save_tinyseg(
    path, model: TinySeg, input_size: tuple[int, int], class_names=None, palette=None, **extra
):
    """Write a TinySeg checkpoint in our format (safetensors + JSON with everything the engine
    needs)."""
    from ros2_fed.checkpoint import save_checkpoint

    meta = {
        "arch": TinySeg.arch,
        "arch_config": model.cfg.to_dict(),
        "num_classes": model.cfg.num_classes,
        "feature_channels": model.cfg.decoder_channels,
        "input_size": list(input_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        **extra,
    }
    if class_names is not None:
        meta["class_names"] = list(class_names)
    if palette is not None:
        meta["palette"] = [list(map(int, c)) for c in palette]
    return save_checkpoint(path, model.state_dict(), meta, kind="backbone")
