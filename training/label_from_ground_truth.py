"""Play the labeller on synthroad drives: replace a labelling queue's pre-labels with the truth.

Why: the data engine's loop (docs/data_engine.md) is measured on synthroad, where the ground
truth of every recorded frame is known. A person would correct the model's pre-labels in a
labelling tool; here each queued frame gets the drive's own labels instead, so the loop runs end
to end without a person and the result is exactly reproducible.

Example::

    python -m training.label_from_ground_truth runs/queue/labelling runs/drives/drive_*

Every ``leftImg8bit/SPLIT/*/*_leftImg8bit.png`` under the queue root is matched, by its pixels,
to a frame of one of the given ``fed_synthroad_bag`` drives (the queue writes the camera
messages losslessly, so a raw ``rgb8`` drive's frame is found exactly; a JPEG drive's is not).
The drive is rendered again from the settings in its ``metadata.yaml`` (seed, size, frames,
fps, OOD kinds), and its frame's labels replace the pre-label: ``*_gtFine_labelTrainIds.png``
(OOD objects void, 255, as in the ``ood`` split: ``fed_train --void-as-wrong`` learns them as
wrong) and ``*_gtFine_labelIds.png`` (the ego hood as labelId 1, which FED training leaves
out). A frame no drive holds keeps its pre-label, is named, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from training.datasets.cityscapes import IMAGE_SUFFIX, LABEL_IDS_SUFFIX, TRAIN_IDS_SUFFIX


@dataclass
class Labelled:
    """What :func:`label_queue` did: frames labelled (name -> drive:frame) and not found."""

    labelled: dict[str, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)


def drive_settings(bag: Path) -> dict[str, Any]:
    """The generation settings ``fed_synthroad_bag`` stored in the drive's metadata.yaml."""
    import yaml

    from training.synthroad_bag import CUSTOM_DATA_KEY

    meta_path = Path(bag) / "metadata.yaml"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{bag}: no metadata.yaml (a fed_synthroad_bag folder?)")
    info = yaml.safe_load(meta_path.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
    custom = (info.get("custom_data") or {}).get(CUSTOM_DATA_KEY)
    if custom is None:
        raise ValueError(f"{bag}: no {CUSTOM_DATA_KEY} custom_data (not a synthroad drive)")
    return json.loads(custom)


def image_key(rgb: np.ndarray) -> str:
    """The identity of an image's pixels (shape and bytes)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return hashlib.sha1(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()


def _drive_frames(settings: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name suffix, synthroad Frame iterator) for each camera of the drive, rendered again."""
    from training.datasets.synthroad_sequence import iter_sequence

    cameras = settings.get("cameras") or [{"name": "", "seed": settings["seed"]}]
    return [
        (
            cam["name"],
            iter_sequence(
                int(settings["frames"]),
                tuple(settings["size"]),
                int(cam["seed"]),
                ood_from_frame=int(settings["ood_from_frame"]),
                fps=float(settings["fps"]),
                ood_kinds=settings.get("ood_kinds"),
            ),
        )
        for cam in cameras
    ]


def label_queue(root: Path, bags: Sequence[Path], split: str = "train") -> Labelled:
    """Replace the pre-labels of every frame under ``root`` found in one of ``bags``."""
    import cv2
    from tqdm import tqdm

    images = sorted((Path(root) / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}"))
    wanted: dict[str, list[Path]] = {}
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not an image")
        wanted.setdefault(image_key(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), []).append(path)
    done = Labelled()
    for bag in tqdm(list(bags), desc="drives", unit="drive", disable=not bags):
        for camera, frames in _drive_frames(drive_settings(bag)):
            for index, frame in enumerate(frames):
                for path in wanted.pop(image_key(frame.image), []):
                    _write_labels(Path(root), split, path, frame)
                    where = f"{Path(bag).name}{':' + camera if camera else ''}:{index}"
                    done.labelled[path.name] = where
    done.unmatched = sorted(p.name for paths in wanted.values() for p in paths)
    return done


def _write_labels(root: Path, split: str, image: Path, frame: Any) -> None:
    import cv2

    stem = image.name[: -len(IMAGE_SUFFIX)]
    labels = root / "gtFine" / split / image.parent.name
    labels.mkdir(parents=True, exist_ok=True)
    for suffix, data in ((TRAIN_IDS_SUFFIX, frame.train_ids), (LABEL_IDS_SUFFIX, frame.label_ids)):
        if not cv2.imwrite(str(labels / f"{stem}{suffix}"), np.asarray(data, dtype=np.uint8)):
            raise OSError(f"cannot write {labels / (stem + suffix)}")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.label_from_ground_truth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", type=Path, help="the queue's labelling/ folder (Cityscapes layout)")
    p.add_argument("bags", nargs="+", type=Path, help="the fed_synthroad_bag drives it came from")
    p.add_argument("--split", default="train", help="split folder (default train)")
    args = p.parse_args(argv)
    try:
        done = label_queue(args.root, args.bags, args.split)
    except (OSError, ValueError, KeyError) as exc:
        print(f"label_from_ground_truth: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"label_from_ground_truth: {len(done.labelled)} frames labelled from the drives' ground "
        f"truth, {len(done.unmatched)} not found in the drives"
    )
    for name in done.unmatched:
        print(f"  not found: {name} (pre-label kept)", file=sys.stderr)
    return 1 if done.unmatched else 0


if __name__ == "__main__":
    sys.exit(main())
