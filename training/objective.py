"""FED's training target and loss: is the frozen backbone's label wrong at this pixel?"""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE_INDEX = 255
PAD_INDEX = 254  # label of crop padding during FED training: ignored, never "wrong" like real void
EGO_INDEX = 253  # label of the ego vehicle (hood) during FED training: ignored, never "wrong"


def upsample_to(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) maps to label resolution, as MMSeg resizes logits."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)


def wrong_pixel_target(
    backbone_logits: torch.Tensor, labels: torch.Tensor, void_as_wrong: bool = True
) -> torch.Tensor:
    """Per-pixel target (B, H, W): 1 where argmax(backbone) != ground truth, else 0.

    Void ground truth (255) is "wrong" by default, as in the reference setup: Cityscapes void
    holds unlabelled objects, a free proxy for OOD. With ``void_as_wrong=False`` void pixels
    are ignored (target 255) instead. Crop padding (``PAD_INDEX``) is always ignored: it is
    not part of the scene, and neither is the ego vehicle (``EGO_INDEX``, see
    ``CityscapesDataset(ego_index=...)``): always in view, it would teach FED the hood.
    """
    prediction = upsample_to(backbone_logits, tuple(labels.shape[-2:])).argmax(dim=1)
    labels = labels.long()
    target = (prediction != labels).long()
    void = labels == IGNORE_INDEX
    target[void] = 1 if void_as_wrong else IGNORE_INDEX
    target[(labels == PAD_INDEX) | (labels == EGO_INDEX)] = IGNORE_INDEX
    return target


def fed_loss(component_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on FED's two component logits, bilinearly upsampled to label resolution."""
    logits = upsample_to(component_logits, tuple(target.shape[-2:]))
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
