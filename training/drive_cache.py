"""Per-frame engine outputs of synthroad drives, computed once and kept on disk.

Why: selecting the alert rule sweeps hundreds of settings over the same drives; running the
detector once per drive (not once per setting) keeps the sweep cheap on a small CPU. A drive's
file holds what every alert rule and metric needs: the confidence map (float16), the model's
labels, and the ground truth per frame (the largest OOD object's pixels, all OOD pixels, the
OOD mask as packed bits).

    python -m training.drive_cache --backbone models/tinyseg_synthroad \\
        --fed models/fed_c_synthroad --seeds 100-139 --cache runs/alert_track/drives
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ros2_fed.eval.alert_metrics import frame_presence, largest_object_pixels


@dataclass
class CachedDrive:
    """One drive's engine outputs and ground truth, frame by frame."""

    seed: int
    confidence: np.ndarray  # N x H x W float16
    labels: np.ndarray  # N x H x W uint8
    object_pixels: np.ndarray  # N int64: the largest OOD component's pixels
    ood_pixels: np.ndarray  # N int64: all OOD pixels
    ood_bits: np.ndarray  # packed N x H x W OOD mask (np.packbits over the last axis)

    @property
    def presence(self) -> list[Optional[bool]]:
        return frame_presence(self.object_pixels.tolist(), self.ood_pixels.tolist())

    def ood_mask(self, frame: int) -> np.ndarray:
        """Frame ``frame``'s OOD mask (H x W bool)."""
        w = self.confidence.shape[2]
        return np.unpackbits(self.ood_bits[frame], axis=-1, count=w).astype(bool)


def cache_path(cache: Path, seed: int, frames: int, size: tuple[int, int], tag: str) -> Path:
    return cache / f"drive_{seed}_{frames}_{size[0]}x{size[1]}_{tag}.npz"


def load_or_compute(
    detector: Optional[torch.nn.Module],
    seed: int,
    frames: int,
    size: tuple[int, int],
    cache: Path,
    tag: str,
    rendered: Optional[Path] = None,
) -> CachedDrive:
    """The drive of ``seed`` from ``cache``, or rendered (the images kept in ``rendered``, where
    ``training.alert_selection`` keeps them) and run through ``detector`` and kept."""
    path = cache_path(cache, seed, frames, size, tag)
    if path.is_file():
        d = np.load(path)
        return CachedDrive(
            seed,
            d["confidence"],
            d["labels"],
            d["object_pixels"],
            d["ood_pixels"],
            d["ood_bits"],
        )
    if detector is None:
        raise FileNotFoundError(f"{path} is not cached and no detector was given")
    from training.alert_selection import render_drive_truth

    images, _, masks = render_drive_truth(seed, frames, size, rendered)
    confidences, labels, objects, totals, bits = [], [], [], [], []
    with torch.no_grad():
        for image, ood_mask in zip(images, masks):
            lab, conf = detector(torch.from_numpy(image)[None])
            confidences.append(conf[0].numpy().astype(np.float16))
            labels.append(lab[0].numpy().astype(np.uint8))
            objects.append(largest_object_pixels(ood_mask.view(np.uint8)))
            totals.append(int(ood_mask.sum()))
            bits.append(np.packbits(ood_mask, axis=-1))
    drive = CachedDrive(
        seed,
        np.stack(confidences),
        np.stack(labels),
        np.array(objects, np.int64),
        np.array(totals, np.int64),
        np.stack(bits),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        confidence=drive.confidence,
        labels=drive.labels,
        object_pixels=drive.object_pixels,
        ood_pixels=drive.ood_pixels,
        ood_bits=drive.ood_bits,
    )
    tmp.replace(path)
    return drive


def parse_seeds(text: str) -> list[int]:
    """``"100-139"`` or ``"0-7,200-219"`` or ``"1,2,3"`` -> seeds."""
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = (int(v) for v in part.split("-"))
            out += range(lo, hi + 1)
        elif part.strip():
            out.append(int(part))
    return out


def make_detector(backbone: str, fed: str, postprocess: Optional[str]) -> torch.nn.Module:
    from ros2_fed.detector import FusedDetector

    return FusedDetector.from_checkpoints(
        backbone, fed, score="fed", postprocess=postprocess
    ).eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="drive_cache", description=__doc__)
    p.add_argument("--backbone", default="models/tinyseg_synthroad")
    p.add_argument("--fed", default="models/fed_c_synthroad")
    p.add_argument(
        "--postprocess", default=None, help="none|gaussian|sml (default: the FED's calibration's)"
    )
    p.add_argument("--seeds", required=True, help="e.g. 100-139 or 0-7,200-219")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", default="256x512")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument(
        "--rendered", type=Path, default=None, help="rendered drives (alert_selection's --cache)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    size = tuple(int(v) for v in args.size.split("x"))
    detector = make_detector(args.backbone, args.fed, args.postprocess)
    tag = args.postprocess or "default"
    for seed in tqdm(parse_seeds(args.seeds), desc=f"drives ({tag})"):
        load_or_compute(detector, seed, args.frames, size, args.cache, tag, args.rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
