"""OOD benchmarks in their published layouts, all mapped to one label convention.

Every loader yields ``Sample(image, label, ood, name)`` where ``label`` and ``ood`` are the same
array: 0 in-distribution, 1 OOD (anomaly / obstacle), 255 void; any other raw value becomes 255
(``ood`` is the key every OOD-labelled source shares, e.g. synthroad's OOD split, which also has
trainIds in ``label``). These benchmarks carry no per-class labels. This is the official
convention of both benchmarks (the Fishyscapes evaluation counts ``label == 1`` as positive
and ignores ``label > 1``; SegmentMeIfYouCan uses 0 / 1 / 255 in ``*_labels_semantic.png``),
so the mapping only guards against stray values.

Fishyscapes (Lost & Found and Static validation), three layouts are recognised (``layout="auto"``
tries them in this order):

``processed`` -- as prepared by Meta-OoD / PEBAL / SML-style code::

    {root}/original/{name}.png          (``images/`` is accepted as well)
    {root}/labels/{name}.png            0 / 1 / 255

  ``root`` may also be a parent holding ``LostAndFound/`` / ``Static/`` or ``fs_lost_and_found/``
  / ``fs_static/`` with that structure.

``official`` Lost & Found -- the ``fishyscapes_lostandfound.zip`` annotations plus the
  LostAndFound images (as RbA expects them)::

    {root}/fishyscapes_lostandfound/{NNNN}_{laf_id}_labels.png
    {root}/laf_images/{laf_id}_leftImg8bit.png
        or {images_root}/**/{laf_id}_leftImg8bit.png
           (e.g. LostAndFound leftImg8bit/{train,test}/{seq}/)

``official`` Static -- the ``fs_val_v{1,2,3}.zip`` archives: labels plus an RGB *overlay* to be
  added to the Cityscapes val image (``clip(cityscapes + overlay, 0, 255)``, as bdl-benchmark
  does), or images already blended (RbA's ``fs_static_images_v{N}``)::

    {root}/fs_val_v{N}/{NNNN}_{cityscapes_id}_labels.png
    {root}/fs_static_images_v{N}/{NNNN}_{cityscapes_id}_rgb.png         (pre-blended), or
    {root}/fs_val_v{N}/{NNNN}_{cityscapes_id}_rgb.npz  (key ``rgb``) +
    {cityscapes_root}/leftImg8bit/val/{city}/{cityscapes_id}_leftImg8bit.png

SegmentMeIfYouCan (RoadAnomaly21 = ``dataset_AnomalyTrack``, RoadObstacle21 =
``dataset_ObstacleTrack``), as downloaded::

    {root}/images/{name}.jpg | .png | .webp          (RoadObstacle21 ships .webp)
    {root}/labels_masks/{name}_labels_semantic.png   0 / 1 / 255; only the public validation
                                                     images (validation*) have labels

In the Obstacle track 0 is road and 255 everything off the road, so OOD metrics there are
road-only by construction. ``split="val"`` keeps the labelled images, ``"test"`` the
unlabelled ones (label all 255), ``"all"`` both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

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

IN_DISTRIBUTION = 0
OOD = 1
_OOD_LUT = lookup_table({0: IN_DISTRIBUTION, 1: OOD}, default=VOID)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")

# An image source is a path, or (cityscapes image, overlay .npz) to blend at load time.
ImageSource = Union[Path, tuple[Path, Path]]


def to_ood_labels(raw: np.ndarray) -> np.ndarray:
    """Raw benchmark label map -> 0 in-distribution / 1 OOD / 255 void."""
    return remap(raw, _OOD_LUT)


def blend_overlay(base: np.ndarray, overlay_npz: PathLike) -> np.ndarray:
    """Fishyscapes Static image: the Cityscapes image plus the signed RGB overlay, clipped."""
    with np.load(overlay_npz) as data:
        overlay = data["rgb"].astype(np.int16)
    if overlay.shape != base.shape:
        raise ValueError(
            f"overlay {overlay_npz} {overlay.shape} does not match image {base.shape}"
        )
    return np.clip(base.astype(np.int16) + overlay, 0, 255).astype(np.uint8)


class AnomalyDataset(FileListDataset):
    """Entries are ``(name, image source, label path or None)``; labels become 0 / 1 / 255."""

    def entry_name(self, entry: tuple) -> str:
        return entry[0]

    def load(self, entry: tuple) -> Sample:
        name, source, label_path = entry
        if isinstance(source, tuple):
            image = blend_overlay(read_rgb(source[0]), source[1])
        else:
            image = read_rgb(source)
        if label_path is None:
            label = np.full(image.shape[:2], VOID, dtype=np.uint8)
        else:
            label = to_ood_labels(read_label(label_path))
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"{name}: label {label.shape} and image {image.shape[:2]} differ in size"
            )
        return Sample(image=image, label=label, ood=label, name=name)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


_FS_SPLITS = {
    "lostandfound": "LostAndFound",
    "laf": "LostAndFound",
    "lost_and_found": "LostAndFound",
    "l&f": "LostAndFound",
    "static": "Static",
}
_FS_LABEL_FILE = re.compile(r"^(\d+)_(.+)_labels\.png$")


class FishyscapesDataset(AnomalyDataset):
    """Fishyscapes Lost & Found or Static validation (see the module docstring for layouts).

    ``images_root``: where LostAndFound images live for the official L&F layout (default:
    ``root/laf_images`` or ``root/leftImg8bit``). ``cityscapes_root``: the Cityscapes root for
    official Static overlays. ``version``: Static archive version (default: newest present).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "LostAndFound",
        layout: str = "auto",
        images_root: Optional[PathLike] = None,
        cityscapes_root: Optional[PathLike] = None,
        version: Optional[int] = None,
        transform: Optional[Transform] = None,
    ) -> None:
        super().__init__(transform)
        key = split.replace(" ", "").lower()
        if key not in _FS_SPLITS:
            raise ValueError(f"Fishyscapes split must be LostAndFound or Static, got {split!r}")
        self.split = _FS_SPLITS[key]
        if layout not in ("auto", "processed", "official"):
            raise ValueError("layout must be auto, processed or official")
        self.root = require_dir(root, "Fishyscapes root")
        if layout in ("auto", "processed"):
            folder = self._find_processed()
            if folder is not None:
                self.layout = "processed"
                self._scan_processed(folder)
                return
            if layout == "processed":
                raise FileNotFoundError(
                    f"Fishyscapes {self.split}: no original/ + labels/ under {self.root}"
                )
        self.layout = "official"
        if self.split == "LostAndFound":
            self._scan_official_laf(images_root)
        else:
            self._scan_official_static(cityscapes_root, version)

    # -- processed: original/ + labels/ ---------------------------------------------------------
    def _find_processed(self) -> Optional[Path]:
        names = (
            ("LostAndFound", "fs_lost_and_found", "fs_lost_found", "fs_laf")
            if self.split == "LostAndFound"
            else ("Static", "fs_static")
        )
        for folder in (self.root, *(self.root / n for n in names)):
            if (folder / "labels").is_dir() and (
                (folder / "original").is_dir() or (folder / "images").is_dir()
            ):
                return folder
        return None

    def _scan_processed(self, folder: Path) -> None:
        image_dir = folder / "original" if (folder / "original").is_dir() else folder / "images"
        for image in _images_in(image_dir):
            stem = image.stem
            candidates = (
                folder / "labels" / f"{stem}.png",
                folder / "labels" / f"{stem}_labels.png",
            )
            label = next((c for c in candidates if c.is_file()), None)
            if label is None:
                raise FileNotFoundError(
                    f"Fishyscapes {self.split}: no label for {image} in {folder / 'labels'}"
                )
            self.entries.append((stem, image, label))

    # -- official Lost & Found ------------------------------------------------------------------
    def _scan_official_laf(self, images_root: Optional[PathLike]) -> None:
        label_dir = self.root / "fishyscapes_lostandfound"
        if not label_dir.is_dir():
            label_dir = self.root
        labels = sorted(p for p in label_dir.glob("*_labels.png") if _FS_LABEL_FILE.match(p.name))
        if not labels:
            raise FileNotFoundError(
                f"Fishyscapes LostAndFound: no original/+labels/ folders and no "
                f"NNNN_*_labels.png under {self.root}"
            )
        roots = (
            [Path(images_root)]
            if images_root is not None
            else [p for p in (self.root / "laf_images", self.root / "leftImg8bit") if p.is_dir()]
        )
        index = {
            p.name[: -len("_leftImg8bit.png")]: p
            for r in roots
            for p in r.rglob("*_leftImg8bit.png")
        }
        for label in labels:
            fs_id, laf_id = _FS_LABEL_FILE.match(label.name).groups()
            if laf_id not in index:
                raise FileNotFoundError(
                    f"Fishyscapes LostAndFound: image {laf_id}_leftImg8bit.png for {label.name} "
                    f"not found under {', '.join(map(str, roots)) or '(no images_root)'}"
                )
            self.entries.append((f"{fs_id}_{laf_id}", index[laf_id], label))

    # -- official Static ------------------------------------------------------------------------
    def _scan_official_static(
        self, cityscapes_root: Optional[PathLike], version: Optional[int]
    ) -> None:
        versions = [version] if version is not None else [3, 2, 1]
        label_dir = next(
            (
                self.root / f"fs_val_v{v}"
                for v in versions
                if (self.root / f"fs_val_v{v}").is_dir()
            ),
            None,
        )
        chosen = None if label_dir is None else int(label_dir.name[-1])
        if label_dir is None:
            label_dir = self.root
        labels = sorted(p for p in label_dir.glob("*_labels.png") if _FS_LABEL_FILE.match(p.name))
        if not labels:
            raise FileNotFoundError(
                f"Fishyscapes Static: no original/+labels/ folders and no fs_val_v*/"
                f"NNNN_*_labels.png under {self.root}"
            )
        blended_dirs = [self.root / f"fs_static_images_v{chosen}"] if chosen is not None else []
        blended_dirs.append(label_dir)
        for label in labels:
            fs_id, cs_id = _FS_LABEL_FILE.match(label.name).groups()
            stem = f"{fs_id}_{cs_id}_rgb"
            blended = [d / f"{stem}.png" for d in blended_dirs if (d / f"{stem}.png").is_file()]
            source: Optional[ImageSource] = blended[0] if blended else None
            if source is None:
                overlay = label_dir / f"{stem}.npz"
                if (
                    not overlay.is_file()
                ):  # bdl-benchmark only relies on the NNNN_ prefix and rgb.npz suffix
                    overlay = next(iter(sorted(label_dir.glob(f"{fs_id}_*rgb.npz"))), overlay)
                if not overlay.is_file():
                    raise FileNotFoundError(
                        f"Fishyscapes Static: neither a blended {stem}.png nor {overlay}"
                    )
                if cityscapes_root is None:
                    raise ValueError(
                        "Fishyscapes Static overlays need cityscapes_root (the Cityscapes val "
                        "images)"
                    )
                source = (self._cityscapes_image(Path(cityscapes_root), cs_id), overlay)
            self.entries.append((f"{fs_id}_{cs_id}", source, label))

    @staticmethod
    def _cityscapes_image(cs_root: Path, cs_id: str) -> Path:
        city = cs_id.split("_")[0]
        for candidate in (
            cs_root / "leftImg8bit" / "val" / city / f"{cs_id}_leftImg8bit.png",
            cs_root / city / f"{cs_id}_leftImg8bit.png",
        ):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"Cityscapes image {cs_id}_leftImg8bit.png not found under {cs_root}"
        )


_SMIYC_TRACKS = {
    "roadanomaly21": "dataset_AnomalyTrack",
    "anomaly": "dataset_AnomalyTrack",
    "anomalytrack": "dataset_AnomalyTrack",
    "roadobstacle21": "dataset_ObstacleTrack",
    "obstacle": "dataset_ObstacleTrack",
    "obstacletrack": "dataset_ObstacleTrack",
}


class SMIYCDataset(AnomalyDataset):
    """SegmentMeIfYouCan RoadAnomaly21 / RoadObstacle21 (see the module docstring).

    ``root`` is the track folder (``dataset_AnomalyTrack`` / ``dataset_ObstacleTrack``) or its
    parent. Any folder with ``images/`` + ``labels_masks/`` in this layout works the same way.
    """

    def __init__(
        self,
        root: PathLike,
        track: str = "RoadAnomaly21",
        split: str = "val",
        transform: Optional[Transform] = None,
    ) -> None:
        super().__init__(transform)
        key = track.replace(" ", "").replace("_", "").lower()
        if key not in _SMIYC_TRACKS:
            raise ValueError(f"SMIYC track must be RoadAnomaly21 or RoadObstacle21, got {track!r}")
        if split not in ("val", "test", "all"):
            raise ValueError("SMIYC split must be val, test or all")
        self.track, self.split = _SMIYC_TRACKS[key], split
        root = require_dir(root, "SegmentMeIfYouCan root")
        self.root = root if (root / "images").is_dir() else root / self.track
        image_dir = require_dir(self.root / "images", f"SegmentMeIfYouCan {self.track}")
        for image in _images_in(image_dir):
            label = self.root / "labels_masks" / f"{image.stem}_labels_semantic.png"
            has_label = label.is_file()
            if (split == "val" and not has_label) or (split == "test" and has_label):
                continue
            self.entries.append((image.stem, image, label if has_label else None))


def make_anomaly_dataset(name: str, root: PathLike, **kwargs) -> AnomalyDataset:
    """Construct by benchmark name: fs-laf, fs-static, smiyc-anomaly (RoadAnomaly21),
    smiyc-obstacle."""
    factories: dict[str, Callable[..., AnomalyDataset]] = {
        "fs-laf": lambda: FishyscapesDataset(root, "LostAndFound", **kwargs),
        "fs-static": lambda: FishyscapesDataset(root, "Static", **kwargs),
        "smiyc-anomaly": lambda: SMIYCDataset(root, "RoadAnomaly21", **kwargs),
        "smiyc-obstacle": lambda: SMIYCDataset(root, "RoadObstacle21", **kwargs),
    }
    if name not in factories:
        raise ValueError(f"unknown anomaly dataset {name!r}; choose one of {', '.join(factories)}")
    return factories[name]()


ANOMALY_DATASETS: tuple[str, ...] = ("fs-laf", "fs-static", "smiyc-anomaly", "smiyc-obstacle")
