"""synthroad on disk: the Cityscapes / Fishyscapes layout writer and its loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ros2_fed.jsonio import write_json
from training.datasets.base import VOID, PathLike, Sample, Transform, read_label, write_png
from training.datasets.cityscapes import (
    IMAGE_SUFFIX,
    LABEL_IDS_SUFFIX,
    TRAIN_IDS_SUFFIX,
    CityscapesDataset,
)

from .render import Frame, render_frame, render_scene_full, road_only
from .scene import TRAIN_IDS_USED, Camera, Scene, sample_scene
from .void import VoidClutter, add_void_clutter, clutter_rng

VERSION = 1
CITY = "synthroad"
#: Split -> split code (the second entry of every frame's seed, and S in its file name).
SPLITS: dict[str, int] = {"train": 0, "val": 1, "ood": 2, "obstacle": 3}
#: Splits with OOD objects: ``ood`` (on the road, near and far) and ``obstacle`` (small, far
#: ahead, scored on the road only, RoadObstacle21-style).
OOD_SPLITS = ("ood", "obstacle")
OOD_SUFFIX = "_gtFine_oodIds.png"
FISHYSCAPES_DIR = "fishyscapes_ood"


def image_id(split: str, index: int) -> str:
    return f"{CITY}_{SPLITS[split]:06d}_{index:06d}"


def sample_indexed(
    seed: int,
    split: str,
    index: int,
    height: int,
    width: int,
    clutter: Optional[VoidClutter] = None,
) -> tuple[Scene, Camera, np.random.Generator]:
    """The scene of frame ``(seed, split, index)`` with its void clutter (if ``clutter`` applies
    to ``split``), and the generator left for its sensor noise."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    scene, cam = sample_scene(
        rng, height, width, ood=(split in OOD_SPLITS), obstacle=(split == "obstacle")
    )
    if clutter is not None and clutter.applies(split):
        add_void_clutter(scene, cam, clutter_rng(seed, SPLITS[split], index), clutter.share)
    return scene, cam, rng


def render_indexed(
    seed: int,
    split: str,
    index: int,
    height: int,
    width: int,
    clutter: Optional[VoidClutter] = None,
) -> Frame:
    """The frame ``(seed, split, index)`` -- identical wherever and in whatever order it is
    rendered. Void clutter draws from its own stream: without it (``clutter`` None, share 0 or
    another split) the frame is exactly the clutter-free one."""
    if clutter is None or not clutter.applies(split):
        rng = np.random.default_rng([seed, SPLITS[split], index])
        return render_scene_full(
            rng, height, width, ood=(split in OOD_SPLITS), obstacle=(split == "obstacle")
        )
    frame = render_frame(*sample_indexed(seed, split, index, height, width, clutter))
    return road_only(frame) if split == "obstacle" else frame


def write_frame(out: PathLike, split: str, index: int, frame: Frame) -> str:
    """Write one frame in the Cityscapes layout (+ Fishyscapes layout for the OOD split)."""
    out = Path(out)
    name = image_id(split, index)
    write_png(out / "leftImg8bit" / split / CITY / f"{name}{IMAGE_SUFFIX}", frame.image)
    gt = out / "gtFine" / split / CITY
    write_png(gt / f"{name}{LABEL_IDS_SUFFIX}", frame.label_ids)
    write_png(gt / f"{name}{TRAIN_IDS_SUFFIX}", frame.train_ids)
    write_png(gt / f"{name}{OOD_SUFFIX}", frame.ood)
    if split == "ood":
        write_png(out / FISHYSCAPES_DIR / "original" / f"{name}.png", frame.image)
        write_png(out / FISHYSCAPES_DIR / "labels" / f"{name}.png", frame.ood)
    return name


def _render_and_write(job: tuple[str, int, str, int, int, int, VoidClutter]) -> str:
    out, seed, split, index, height, width, clutter = job
    frame = render_indexed(seed, split, index, height, width, clutter)
    return write_frame(out, split, index, frame)


def _remove_stale(out: Path, split: str, count: int) -> None:
    """Delete this split's frames with index >= ``count`` left by an earlier, larger run (only
    files with synthroad's own names), so the folder holds exactly what ``synthroad.json`` says."""
    code = f"{CITY}_{SPLITS[split]:06d}_"
    folders = [out / "leftImg8bit" / split / CITY, out / "gtFine" / split / CITY]
    if split == "ood":
        folders += [out / FISHYSCAPES_DIR / "original", out / FISHYSCAPES_DIR / "labels"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob(f"{code}*.png"):
            index = path.name[len(code) : len(code) + 6]
            if index.isdigit() and int(index) >= count:
                path.unlink()


_FILES = {
    "image": f"leftImg8bit/{{split}}/{CITY}/{{id}}{IMAGE_SUFFIX}",
    "label_ids": f"gtFine/{{split}}/{CITY}/{{id}}{LABEL_IDS_SUFFIX}",
    "train_ids": f"gtFine/{{split}}/{CITY}/{{id}}{TRAIN_IDS_SUFFIX}",
    "ood": f"gtFine/{{split}}/{CITY}/{{id}}{OOD_SUFFIX} (0 in-distribution, 1 OOD, 255 void)",
    "fishyscapes": f"{FISHYSCAPES_DIR}/original/{{id}}.png + {FISHYSCAPES_DIR}/labels/{{id}}.png",
}


def _leave_stops_to_parent() -> None:
    """Rendering workers ignore Ctrl-C (sent to the whole process group): the parent stops,
    says what was written and ends the pool, without a traceback from every worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(jobs: list[tuple], workers: int, progress: Optional[Any]) -> None:
    """Render and write ``jobs``, in ``workers`` processes when more than one."""
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_leave_stops_to_parent) as pool:
            for _ in pool.imap_unordered(_render_and_write, jobs, chunksize=4):
                if progress is not None:
                    progress(1)
        return
    for job in jobs:
        _render_and_write(job)
        if progress is not None:
            progress(1)


def write_dataset(
    out: PathLike,
    counts: dict[str, int],
    height: int,
    width: int,
    seed: int = 0,
    workers: int = 1,
    progress: Optional[Any] = None,
    void_clutter: Optional[VoidClutter] = None,
) -> dict[str, Any]:
    """Render and write every split in ``counts``; ``progress(n)`` is called after each image.
    Frames of those splits left over from an earlier run with larger counts are deleted (other
    splits are left alone). ``void_clutter``: unlabelled clutter rendered into some splits
    (default none). Returns the metadata also stored in ``synthroad.json``."""
    clutter = void_clutter if void_clutter is not None else VoidClutter()
    for split in clutter.splits:
        if split not in SPLITS:
            raise ValueError(f"void clutter split {split!r}; choose from {', '.join(SPLITS)}")
    for split, n in counts.items():
        if split not in SPLITS:
            raise ValueError(f"unknown synthroad split {split!r}; choose from {', '.join(SPLITS)}")
        if n < 0:
            raise ValueError(f"synthroad split {split!r}: count must be >= 0, got {n}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in counts.items():
        _remove_stale(out, split, n)
    jobs = [
        (str(out), seed, split, i, height, width, clutter)
        for split, n in counts.items()
        for i in range(n)
    ]
    _run(jobs, workers, progress)
    meta = {
        "generator": "synthroad",
        "version": VERSION,
        "seed": seed,
        "height": height,
        "width": width,
        "counts": dict(counts),
        "city": CITY,
        "train_ids_used": list(TRAIN_IDS_USED),
        "void_clutter": clutter.meta(),
        "files": _FILES,
    }
    write_json(out / "synthroad.json", meta)
    return meta


class SynthRoadDataset(CityscapesDataset):
    """A synthroad split read back from disk: ``Sample(image, label=trainIds, name, ood)``.

    ``ood`` is the 0 / 1 / 255 mask (``*_gtFine_oodIds.png``); where that file is absent it is
    derived from the label (255 where void, else 0), so the same code path evaluates any split.
    """

    def __init__(
        self, root: PathLike, split: str = "train", transform: Optional[Transform] = None
    ) -> None:
        super().__init__(root, split=split, transform=transform)

    def load(self, entry: tuple) -> Sample:
        sample = super().load(entry)
        name, image_path, _ = entry
        ood_path = (
            self.root / "gtFine" / self.split / image_path.parent.name / f"{name}{OOD_SUFFIX}"
        )
        if ood_path.is_file():
            sample["ood"] = read_label(ood_path)
        else:
            sample["ood"] = np.where(sample["label"] == VOID, np.uint8(VOID), np.uint8(0)).astype(
                np.uint8
            )
        return sample
