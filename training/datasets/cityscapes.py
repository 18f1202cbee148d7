"""Cityscapes in its published layout, plus the official label tables.

Layout (``root`` is the folder holding ``leftImg8bit/`` and ``gtFine/``)::

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png   (preferred)
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png        (fallback)

``*_labelTrainIds.png`` is what cityscapesScripts' ``createTrainIdLabelImgs`` writes; many
copies of the dataset do not have it, so when it is missing the loader reads
``*_labelIds.png`` and maps it with the official labelId -> trainId table below (the table in
cityscapesScripts ``helpers/labels.py``), giving the same result without a preprocessing step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ros2_fed.names import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from training.datasets.base import (
    VOID,
    FileListDataset,
    PathLike,
    Sample,
    Transform,
    lookup_table,
    read_label,
    read_rgb,
    remap,
    require_dir,
)

# fmt: off
CLASS_NAMES: tuple[str, ...] = CITYSCAPES_CLASSES
NUM_CLASSES = len(CLASS_NAMES)

#: Official Cityscapes colours, indexed by trainId.
PALETTE: tuple[tuple[int, int, int], ...] = CITYSCAPES_PALETTE

#: Official labelId -> trainId (cityscapesScripts labels.py); every other id, incl. the
#: void ids 0-6, 9, 10, 14-16, 18, 29, 30 and license plate (-1), is 255.
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
# fmt: on
#: The inverse for writing ``*_labelIds.png`` from trainIds (void -> 0 "unlabeled").
TRAIN_ID_TO_LABEL_ID: dict[int, int] = {t: i for i, t in LABEL_ID_TO_TRAIN_ID.items()}

#: Named labelIds of the void classes synthroad uses (cityscapesScripts names).
LABEL_ID_UNLABELED = 0
LABEL_ID_EGO_VEHICLE = 1
LABEL_ID_STATIC = 4
LABEL_ID_DYNAMIC = 5

_LABEL_TO_TRAIN_LUT = lookup_table(LABEL_ID_TO_TRAIN_ID, default=VOID)
_TRAIN_TO_LABEL_LUT = lookup_table(TRAIN_ID_TO_LABEL_ID, default=LABEL_ID_UNLABELED)

IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a uint8 labelIds map to trainIds (255 = void) with the official table."""
    return remap(label_ids, _LABEL_TO_TRAIN_LUT)


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Map trainIds back to labelIds (void -> 0); used when writing Cityscapes-layout data."""
    return remap(train_ids, _TRAIN_TO_LABEL_LUT)


def colorize(train_ids: np.ndarray, void_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """RGB visualisation of a trainIds map with the official palette (void in ``void_color``)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = void_color
    lut[:NUM_CLASSES] = np.asarray(PALETTE, dtype=np.uint8)
    return lut[train_ids]


class CityscapesDataset(FileListDataset):
    """Cityscapes-layout split as ``Sample(image, label=trainIds, name)``.

    ``cities`` restricts to some city folders. ``missing_labels``: ``"error"`` (default) fails
    at construction when an image has neither label file; ``"void"`` yields an all-255 label
    instead (e.g. the test split). The file list is fixed and sorted, so indices are stable.
    ``ego_index``: label the ego vehicle (labelId 1, read from ``*_labelIds.png``) with this
    value instead of void, so FED training can count void as "wrong" without learning the hood.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        cities: Optional[list[str]] = None,
        transform: Optional[Transform] = None,
        missing_labels: str = "error",
        ego_index: Optional[int] = None,
    ) -> None:
        super().__init__(transform)
        self.ego_index = ego_index
        if missing_labels not in ("error", "void"):
            raise ValueError("missing_labels must be 'error' or 'void'")
        self.root = require_dir(root, "Cityscapes root")
        self.split = split
        image_dir = self.root / "leftImg8bit" / split
        label_dir = self.root / "gtFine" / split
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}")) if image_dir.is_dir() else []
        if cities is not None:
            wanted = set(cities)
            images = [p for p in images if p.parent.name in wanted]
        for image in images:
            stem = image.name[: -len(IMAGE_SUFFIX)]
            train_ids = label_dir / image.parent.name / f"{stem}{TRAIN_IDS_SUFFIX}"
            label_ids = label_dir / image.parent.name / f"{stem}{LABEL_IDS_SUFFIX}"
            if train_ids.is_file():
                label: Optional[tuple[Path, bool]] = (train_ids, False)
            elif label_ids.is_file():
                label = (label_ids, True)
            elif missing_labels == "void":
                label = None
            else:
                raise FileNotFoundError(
                    f"Cityscapes: no {TRAIN_IDS_SUFFIX} or {LABEL_IDS_SUFFIX} for {image}"
                )
            if ego_index is not None and not label_ids.is_file():
                raise FileNotFoundError(f"Cityscapes: ego_index needs {label_ids}")
            self.entries.append((stem, image, label))

    def entry_name(self, entry: tuple) -> str:
        return entry[0]

    def image_path(self, index: int) -> Path:
        return self.entries[index][1]

    def label_path(self, index: int) -> Optional[Path]:
        label = self.entries[index][2]
        return None if label is None else label[0]

    def load(self, entry: tuple) -> Sample:
        name, image_path, label = entry
        image = read_rgb(image_path)
        if label is None:
            target = np.full(image.shape[:2], VOID, dtype=np.uint8)
        else:
            path, from_label_ids = label
            target = read_label(path)
            if from_label_ids:
                target = label_ids_to_train_ids(target)
            if self.ego_index is not None:
                ego = (
                    read_label(path if from_label_ids else path.with_name(name + LABEL_IDS_SUFFIX))
                    == LABEL_ID_EGO_VEHICLE
                )
                target = np.where(ego, np.uint8(self.ego_index), target)
        if target.shape != image.shape[:2]:
            raise ValueError(
                f"{name}: label {target.shape} and image {image.shape[:2]} differ in size"
            )
        return Sample(image=image, label=target, name=name)
