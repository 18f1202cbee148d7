"""Evaluation sources for `fed_eval`: every supported benchmark as a re-iterable stream of
``training.evaluation.EvalSample(name, image, label, ood)``.

``make_source(dataset, root, split, corruption, severity, limit)`` returns an ``EvalSource``
with ``len()`` and ``samples()``; each ``samples()`` call starts again from the first image
and yields the same items (files are re-read, Cityscapes-C corruptions are seeded per image),
which the evaluator's second (open-mIoU) pass relies on. ``limit`` keeps the first N images of
the (sorted) file list.

What each dataset provides (``label`` = Cityscapes trainIds with 255 void, ``ood`` = 0
in-distribution / 1 OOD / 255 void; ``None`` = not available, so that metric is skipped):

- ``cityscapes``: Cityscapes root, split ``val``; label yes, ood None (CityscapesDataset)
- ``cityscapes-c``: Cityscapes root, split ``val``; label yes, ood None; images corrupted with
  ``corruption`` at ``severity`` (CityscapesCDataset)
- ``fishyscapes-lf`` / ``fishyscapes-static``: Fishyscapes folder, validation only; label None,
  ood yes (FishyscapesDataset)
- ``road-anomaly21`` / ``road-obstacle21``: SMIYC ``dataset_AnomalyTrack`` /
``dataset_ObstacleTrack``
  (or their parent), split ``val`` (labelled images); label None, ood yes (SMIYCDataset)
- ``synthroad``: ``fed_synthroad --out`` folder, split ``val``; label yes, ood only for split
  ``ood`` (SynthRoadDataset)
- ``synthroad-ood``: the same folder, split ``ood``; label yes (OOD pixels void), ood yes
- ``synthroad-obstacle``: the same folder, split ``obstacle`` (``fed_synthroad --obstacle N``:
  small objects far ahead, RoadObstacle21-style, ood void everywhere off the road); label yes,
  ood yes

Accepted on-disk layouts are documented in ``training/datasets/{cityscapes,anomaly,synthroad}.py``.
Loader-specific keywords (``cityscapes_root=`` / ``images_root=`` / ``version=`` / ``layout=`` for
Fishyscapes, ``seed=`` for Cityscapes-C, ``cities=`` for Cityscapes) pass through ``make_source``'s
``**options``. Fishyscapes Static released as overlays (``fs_val_v*/*_rgb.npz``) needs the
Cityscapes val images: without ``cityscapes_root=`` they are looked for in ``root``,
``root/cityscapes`` and ``root/../cityscapes`` (each holding ``leftImg8bit/val``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from torch.utils.data import Dataset

from training.evaluation import EvalSample

#: Dataset name -> one-line description (``fed_eval --dataset`` choices).
DATASETS: dict[str, str] = {
    "cityscapes": "Cityscapes (trainIds; IDM and mIoU)",
    "cityscapes-c": (
        "Cityscapes corrupted on the fly with imagecorruptions (--corruption, --severity 1-4)"
    ),
    "fishyscapes-lf": "Fishyscapes Lost & Found validation (OOD 0/1/255)",
    "fishyscapes-static": "Fishyscapes Static validation (OOD 0/1/255)",
    "road-anomaly21": "SegmentMeIfYouCan RoadAnomaly21 (dataset_AnomalyTrack, OOD 0/1/255)",
    "road-obstacle21": "SegmentMeIfYouCan RoadObstacle21 (dataset_ObstacleTrack, OOD 0/1/255)",
    "synthroad": "synthroad in-distribution split (trainIds; IDM and mIoU)",
    "synthroad-ood": "synthroad OOD split (trainIds + OOD 0/1/255)",
    "synthroad-obstacle": (
        "synthroad obstacle split: small objects far ahead, scored on the road only (trainIds + "
        "OOD 0/1/255)"
    ),
}

DEFAULT_SPLITS: dict[str, str] = {
    "cityscapes": "val",
    "cityscapes-c": "val",
    "fishyscapes-lf": "val",
    "fishyscapes-static": "val",
    "road-anomaly21": "val",
    "road-obstacle21": "val",
    "synthroad": "val",
    "synthroad-ood": "ood",
    "synthroad-obstacle": "obstacle",
}

#: The SegmentMeIfYouCan component-metric configuration (component_metrics.TRACKS) a dataset is
#: scored with; every other dataset uses the anomaly track's size limits.
COMPONENT_TRACKS: dict[str, str] = {
    "road-obstacle21": "obstacle",
    "synthroad-obstacle": "obstacle",
}

Converter = Callable[[dict], EvalSample]


def _trainids_only(sample: dict) -> EvalSample:
    return EvalSample(
        name=str(sample["name"]), image=sample["image"], label=sample["label"], ood=None
    )


def _ood_only(sample: dict) -> EvalSample:
    return EvalSample(
        name=str(sample["name"]), image=sample["image"], label=None, ood=sample["ood"]
    )


def _trainids_and_ood(sample: dict) -> EvalSample:
    return EvalSample(
        name=str(sample["name"]), image=sample["image"], label=sample["label"], ood=sample["ood"]
    )


class EvalSource:
    """``len()`` images of ``dataset`` (the first ``limit``), as ``EvalSample``s, re-iterable."""

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        convert: Converter,
        limit: Optional[int] = None,
        split: Optional[str] = None,
    ) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.name, self.dataset, self.convert, self.split = name, dataset, convert, split
        self.count = len(dataset) if limit is None else min(int(limit), len(dataset))

    def __len__(self) -> int:
        return self.count

    def samples(self) -> Iterator[EvalSample]:
        """A fresh pass over the images, always in the same order with the same content."""
        for index in range(self.count):
            yield self.convert(self.dataset[index])

    def __iter__(self) -> Iterator[EvalSample]:
        return self.samples()

    def __repr__(self) -> str:
        return f"EvalSource({self.name!r}, split={self.split!r}, images={self.count})"


def _fishyscapes_split(dataset: str, split: Optional[str]) -> None:
    if split not in (None, "val", "validation"):
        raise ValueError(
            f"{dataset}: only the public validation set exists (split 'val'), got {split!r}"
        )


def _find_cityscapes(root: Path) -> Optional[Path]:
    """Cityscapes val images for Fishyscapes Static overlays when not given: ``root`` itself,
    ``root/cityscapes`` or a ``cityscapes`` folder next to ``root``."""
    for candidate in (root, root / "cityscapes", root.parent / "cityscapes"):
        if (candidate / "leftImg8bit" / "val").is_dir():
            return candidate
    return None


def make_source(
    dataset: str,
    root: Union[str, Path],
    split: Optional[str] = None,
    corruption: str = "snow",
    severity: int = 1,
    limit: Optional[int] = None,
    **options: Any,
) -> EvalSource:
    """Build the evaluation source ``dataset`` (one of ``DATASETS``) from ``root``.

    ``split`` defaults to the dataset's evaluation split (``DEFAULT_SPLITS``); ``corruption`` and
    ``severity`` only matter for ``cityscapes-c``. Raises ``ValueError`` for an unknown name or
    split and ``FileNotFoundError`` when the folder holds no image of the requested split.
    """
    if dataset not in DATASETS:
        raise ValueError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(sorted(DATASETS))}"
        )
    root = Path(root)
    chosen = DEFAULT_SPLITS[dataset] if split is None else split
    data, convert = _open_dataset(dataset, root, split, chosen, corruption, severity, options)
    if len(data) == 0:
        raise FileNotFoundError(f"{dataset}: no images for split {chosen!r} under {root}")
    return EvalSource(dataset, data, convert, limit=limit, split=chosen)


def _open_dataset(
    dataset: str,
    root: Path,
    split: Optional[str],
    chosen: str,
    corruption: str,
    severity: int,
    options: dict[str, Any],
) -> tuple[Dataset, Converter]:
    """The dataset reader for one benchmark name and the converter to its EvalSample (which of
    trainIds / OOD mask the benchmark has); readers are imported only when asked for."""
    if dataset == "cityscapes":
        from training.datasets.cityscapes import CityscapesDataset

        return CityscapesDataset(root, split=chosen, **options), _trainids_only
    if dataset == "cityscapes-c":
        from training.datasets.cityscapes_c import CityscapesCDataset

        data = CityscapesCDataset(root, corruption, severity, split=chosen, **options)
        return data, _trainids_only
    if dataset in ("fishyscapes-lf", "fishyscapes-static"):
        return _fishyscapes(dataset, root, split, options), _ood_only
    if dataset in ("road-anomaly21", "road-obstacle21"):
        from training.datasets.anomaly import SMIYCDataset

        track = "RoadAnomaly21" if dataset == "road-anomaly21" else "RoadObstacle21"
        return SMIYCDataset(root, track, split=chosen, **options), _ood_only
    # synthroad, synthroad-ood, synthroad-obstacle
    from training.datasets.synthroad import SynthRoadDataset

    data = SynthRoadDataset(root, split=chosen, **options)
    # The in-distribution splits have no OOD pixel: an all-negative OOD mask would only add
    # undefined OOD metrics, so the OOD mask is used for the ood split (or when asked for).
    convert = (
        _trainids_and_ood
        if (dataset in ("synthroad-ood", "synthroad-obstacle") or chosen in ("ood", "obstacle"))
        else _trainids_only
    )
    return data, convert


def _fishyscapes(
    dataset: str, root: Path, split: Optional[str], options: dict[str, Any]
) -> Dataset:
    """Fishyscapes Lost & Found or Static (validation only); Static overlays on Cityscapes val
    images, looked for near ``root`` unless ``cityscapes_root`` is given."""
    from training.datasets.anomaly import FishyscapesDataset

    _fishyscapes_split(dataset, split)
    if dataset == "fishyscapes-static" and "cityscapes_root" not in options:
        found = _find_cityscapes(root)
        if found is not None:
            options["cityscapes_root"] = found
    return FishyscapesDataset(
        root, "LostAndFound" if dataset == "fishyscapes-lf" else "Static", **options
    )
