"""Dataset loaders, all yielding ``Sample(image uint8 HxWx3 RGB, label uint8 HxW, name[, ood])``.

- ``cityscapes``: Cityscapes layout (trainIds, or labelIds mapped with the official table)
- ``anomaly``: Fishyscapes L&F / Static and SegmentMeIfYouCan, OOD labels 0 / 1 / 255
- ``cityscapes_c``: Cityscapes corrupted on the fly with ``imagecorruptions`` (deterministic)
- ``synthroad``: our procedural road scenes, written in the Cityscapes layout (+ OOD split)
- ``synthroad_sequence``: short synthroad drives (camera moving forward, OOD objects appearing)
- ``augment``: the backbone's joint image/label training augmentation

``training.eval_sources`` wraps all of them for ``fed_eval``.
"""

from training.datasets.anomaly import (
    ANOMALY_DATASETS,
    FishyscapesDataset,
    SMIYCDataset,
    make_anomaly_dataset,
)
from training.datasets.augment import JointAugment, make_train_augment
from training.datasets.base import VOID, Sample
from training.datasets.cityscapes import (
    CLASS_NAMES,
    PALETTE,
    CityscapesDataset,
    colorize,
    label_ids_to_train_ids,
)
from training.datasets.cityscapes_c import CORRUPTIONS, CityscapesCDataset
from training.datasets.synthroad import (
    SynthRoadDataset,
    render_scene,
    render_sequence,
    write_dataset,
)
from training.datasets.synthroad_sequence import make_sequence

__all__ = [
    "ANOMALY_DATASETS",
    "CLASS_NAMES",
    "CORRUPTIONS",
    "PALETTE",
    "VOID",
    "CityscapesCDataset",
    "CityscapesDataset",
    "FishyscapesDataset",
    "JointAugment",
    "SMIYCDataset",
    "Sample",
    "SynthRoadDataset",
    "colorize",
    "label_ids_to_train_ids",
    "make_anomaly_dataset",
    "make_sequence",
    "make_train_augment",
    "render_scene",
    "render_sequence",
    "write_dataset",
]
