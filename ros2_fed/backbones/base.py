"""Shared pieces of the segmentation backbones: the base module, MMCV-style conv blocks, constants.

The modules here reproduce the *state-dict layout* of MMSegmentation 0.x / mmcv (``conv``/``bn``
children of a ConvModule, ``depthwise_conv``/``pointwise_conv`` of a separable conv) so that a
foreign checkpoint loads with ``strict=True`` and no renaming inside the model. mmcv itself is
not needed.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ros2_fed.names import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

# MMSegmentation's ImageNet normalisation in RGB order (``img_norm_cfg`` with ``to_rgb=True``).
IMAGENET_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)


class BackboneError(RuntimeError):
    """A backbone checkpoint cannot be read or does not fit the architecture (message names the
    key/file)."""


def default_class_names(num_classes: int) -> list[str]:
    """Cityscapes names for 19 classes (the paper's setting), ``class_<i>`` otherwise."""
    if num_classes == len(CITYSCAPES_CLASSES):
        return list(CITYSCAPES_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]


def default_palette(num_classes: int) -> list[list[int]]:
    """Cityscapes colours for 19 classes; otherwise a deterministic, well-spread palette."""
    if num_classes == len(CITYSCAPES_PALETTE):
        return [list(c) for c in CITYSCAPES_PALETTE]
    generator = torch.Generator().manual_seed(0)
    colours = torch.randint(0, 256, (num_classes, 3), generator=generator)
    return [[int(v) for v in row] for row in colours]


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=False``, as MMSeg's ``resize`` in every head we
    mirror."""
    return F.interpolate(x, size=(size[0], size[1]), mode="bilinear", align_corners=False)


class ConvModule(nn.Module):
    """mmcv ConvModule: conv -> BN -> ReLU; the conv has a bias only when there is no norm.

    ``norm=False, act=False`` gives a plain conv *with* bias under the same ``conv`` name; the
    Hugging Face SegFormer head (Linear projections without BN) is stored that way.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=not norm,
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.act = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


class DepthwiseSeparableConvModule(nn.Module):
    """mmcv DepthwiseSeparableConvModule: depthwise ConvModule then pointwise ConvModule (both
    BN+ReLU)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(
            in_channels,
            in_channels,
            kernel_size,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
        )
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class SegmentationBackbone(nn.Module):
    """Base of every backbone: in-model normalisation and the ``(logits, features)`` contract.

    ``forward(images)`` takes RGB ``B x 3 x H x W`` in 0..255 (uint8 or float) and returns
    ``(logits, features)``, both at the decode head's 1/4 resolution
    (``ceil(H/4) x ceil(W/4)``). Normalising inside the model means every caller (node, eval,
    training, exported graph) feeds raw camera pixels and cannot get the statistics wrong.

    ``mean``/``std`` are non-persistent buffers: they follow ``.to()`` but stay out of the
    state dict, so foreign checkpoints load strictly. ``meta`` carries class names, palette,
    inference settings and provenance (JSON-serialisable).
    """

    arch: str = ""
    output_stride: int = 4

    def __init__(
        self,
        num_classes: int,
        feature_channels: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.feature_channels = int(feature_channels)
        self.register_buffer(
            "mean",
            torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1),
            persistent=False,
        )
        self.register_buffer(
            "std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.meta: dict[str, Any] = {}

    # -- subclasses -------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """Hyper-parameters that rebuild this architecture (``build_backbone({'arch':...,
        **config})``)."""
        raise NotImplementedError

    def forward_normalized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    # -- common -----------------------------------------------------------------------------
    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Replace the RGB mean/std (0..255 scale), e.g. from a checkpoint's metadata."""
        self.mean.copy_(torch.tensor(list(mean), dtype=self.mean.dtype).view(1, 3, 1, 1))
        self.std.copy_(torch.tensor(list(std), dtype=self.std.dtype).view(1, 3, 1, 1))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB 0..255 (uint8 or float) -> normalised float in the model's dtype."""
        if not torch.jit.is_tracing() and (images.dim() != 4 or images.shape[1] != 3):
            raise ValueError(f"expected RGB images B x 3 x H x W, got shape {tuple(images.shape)}")
        x = images.to(self.mean.dtype)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_normalized(self.normalize(images))

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names") or default_class_names(self.num_classes))

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in (self.meta.get("palette") or default_palette(self.num_classes))]


def check_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    source: str = "checkpoint",
    ignore_prefixes: Sequence[str] = (),
) -> None:
    """Raise :class:`BackboneError` naming every missing, unexpected or mis-shaped key.

    Done before ``load_state_dict(strict=True)`` so the message is short and names the file.
    """
    expected = model.state_dict()
    given = {
        k: v for k, v in state_dict.items() if not any(k.startswith(p) for p in ignore_prefixes)
    }
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(given) & set(expected))
        if tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch ({len(mismatched)}): {_short(mismatched)}")
    if problems:
        arch = getattr(model, "arch", type(model).__name__)
        raise BackboneError(f"{source} does not fit {arch}: " + "; ".join(problems))


def load_strict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    source: str = "checkpoint",
    ignore_prefixes: Sequence[str] = (),
) -> nn.Module:
    """Check, then ``load_state_dict(strict=True)``; every tensor of the model is overwritten."""
    check_state_dict(model, state_dict, source, ignore_prefixes)
    given = {
        k: v for k, v in state_dict.items() if not any(k.startswith(p) for p in ignore_prefixes)
    }
    model.load_state_dict(given, strict=True)
    return model


def _short(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
