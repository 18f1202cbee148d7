"""Segmentation backbones FED sits on, and import of the checkpoints users already have.

- :class:`DeepLabV3Plus` (ResNetV1c-D8, the paper's DL-R101) and :class:`SegFormer`
  (MiT-B0..B5, the paper's SF-B2): compact torch re-implementations with MMSegmentation 0.x
  state-dict names, no mmcv/mmseg needed.
- :func:`load_backbone` reads an MMSeg ``.pth``, a Hugging Face SegFormer folder, or our
  ``NAME.safetensors`` + ``NAME.json``; :func:`save_backbone` / ``fed_convert`` write ours.
- Contract: ``model(images)`` with RGB ``B x 3 x H x W`` in 0..255 (uint8 or float) returns
  ``(logits, features)``, both at ``ceil(H/4) x ceil(W/4)``; ``features`` is the decoder map
  FED-C pools its condition from (``model.feature_channels`` wide).
- :mod:`.inference`: whole image, sliding window, multi-scale TTA.
"""

from .base import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneError,
    SegmentationBackbone,
)
from .deeplabv3plus import DeepLabV3Plus
from .inference import (
    ScaleOutput,
    infer,
    inference_fn,
    multiscale,
    slide_inference,
    tta_inference,
    whole_inference,
)
from .loader import (
    backbone_from_mmseg,
    build_backbone,
    default_inference,
    detect_format,
    load_backbone,
    read_source,
    save_backbone,
)
from .segformer import SegFormer, mit_config

__all__ = [
    "BackboneError",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "DeepLabV3Plus",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ScaleOutput",
    "SegFormer",
    "SegmentationBackbone",
    "backbone_from_mmseg",
    "build_backbone",
    "default_inference",
    "detect_format",
    "infer",
    "inference_fn",
    "load_backbone",
    "mit_config",
    "multiscale",
    "read_source",
    "save_backbone",
    "slide_inference",
    "tta_inference",
    "whole_inference",
]
