"""`fed_synthroad_bag`: a short synthroad drive as a rosbag2 (MCAP or sqlite3) with ground truth.

Example (what ``make demo`` records)::

    fed_synthroad_bag --out runs/demo/synthroad_drive --frames 60 --size 256x512 --fps 10 --seed 0

One frame = three messages with the same header stamp (and log time), ``frame_id`` "camera":

- ``/camera/image_raw``: sensor_msgs/Image rgb8 (or, with ``--compressed``,
  ``/camera/image_raw/compressed``: sensor_msgs/CompressedImage JPEG as image_transport writes it);
- ``/camera/labels``: sensor_msgs/Image mono8 Cityscapes trainIds (255 = void, OOD pixels void);
- ``/camera/ood``: sensor_msgs/Image mono8, 0 in-distribution / 1 OOD / 255 void.

The camera drives forward through one synthroad street; OOD objects (lost cargo, animals,
debris, ...) appear on the road from a third of the way in and come closer every frame
(``training/datasets/synthroad_sequence.py``). Stamps start at a fixed epoch, so the same
arguments give a byte-identical bag. metadata.yaml's custom_data ``ros2_fed.synthroad`` names the
topics (``fed_bag_eval`` picks them up without flags) and the generation settings.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ros2_fed.eval.replay import bagio

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
LABELS_TOPIC = "/camera/labels"
OOD_TOPIC = "/camera/ood"
FRAME_ID = "camera"
#: First header stamp (2023-11-14T22:13:20Z): fixed so bags are reproducible byte for byte.
START_NS = 1_700_000_000 * 1_000_000_000
CUSTOM_DATA_KEY = "ros2_fed.synthroad"


@dataclass
class SynthroadBag:
    """What was written (also stored as JSON in the bag's custom_data)."""

    path: str
    storage: str
    frames: int
    size: tuple[int, int]
    fps: float
    seed: int
    image_topic: str
    labels_topic: str
    ood_topic: str
    compressed: bool
    ood_from_frame: int
    start_ns: int
    ood_pixels: list[int] = field(default_factory=list)


def write_synthroad_bag(out: Path, frames: int = 60, size: tuple[int, int] = (256, 512), fps: float = 10.0,
                        seed: int = 0, storage: str = "mcap", compressed: bool = False,
                        ood_from_frame: Optional[int] = None, jpeg_quality: int = 95,
                        start_ns: int = START_NS, progress: bool = False) -> SynthroadBag:
    """Render the drive and write it to the rosbag2 directory ``out`` (must not exist)."""
    from training.datasets.synthroad_sequence import iter_sequence

    if frames < 1:
        raise ValueError("frames must be >= 1")
    if fps <= 0:
        raise ValueError("fps must be > 0")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already; rosbag2 writers never overwrite (delete it first)")
    start = frames // 3 if ood_from_frame is None else int(ood_from_frame)
    info = SynthroadBag(path=str(out), storage=storage, frames=int(frames), size=(int(size[0]), int(size[1])),
                        fps=float(fps), seed=int(seed), image_topic=COMPRESSED_TOPIC if compressed else IMAGE_TOPIC,
                        labels_topic=LABELS_TOPIC, ood_topic=OOD_TOPIC, compressed=bool(compressed),
                        ood_from_frame=start, start_ns=int(start_ns))
    custom = {CUSTOM_DATA_KEY: json.dumps({k: v for k, v in asdict(info).items() if k not in ("path", "ood_pixels")})}
    period_ns = round(1e9 / fps)
    with bagio.BagWriter(out, storage, custom_data=custom) as bag:
        bag.add_topic(info.image_topic, bagio.COMPRESSED_IMAGE if compressed else bagio.IMAGE)
        bag.add_topic(LABELS_TOPIC, bagio.IMAGE)
        bag.add_topic(OOD_TOPIC, bagio.IMAGE)
        sequence = iter_sequence(frames, info.size, seed, ood_from_frame=start, fps=fps)
        for i, frame in enumerate(tqdm(sequence, total=frames, desc="synthroad bag", disable=not progress,
                                       dynamic_ncols=True)):
            stamp = start_ns + i * period_ns
            if compressed:
                image = bagio.compressed_message(frame.image, stamp, FRAME_ID, "jpeg", jpeg_quality)
            else:
                image = bagio.image_message(frame.image, "rgb8", stamp, FRAME_ID)
            bag.write(info.image_topic, stamp, image)
            bag.write(LABELS_TOPIC, stamp, bagio.image_message(frame.train_ids, "mono8", stamp, FRAME_ID))
            bag.write(OOD_TOPIC, stamp, bagio.image_message(frame.ood, "mono8", stamp, FRAME_ID))
            info.ood_pixels.append(int((frame.ood == 1).sum()))
    return info


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x512, got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError("frames must be at least 16x16")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fed_synthroad_bag", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="rosbag2 directory to create (must not exist)")
    p.add_argument("--frames", type=int, default=60, help="number of frames (default 60)")
    p.add_argument("--size", type=_size, default=(256, 512), help="frame size HxW (default 256x512)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the stamps (default 10)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--storage", choices=bagio.STORAGES, default="mcap", help="rosbag2 storage (default mcap)")
    p.add_argument("--compressed", action="store_true",
                   help=f"camera as CompressedImage JPEG on {COMPRESSED_TOPIC} instead of rgb8 Image on {IMAGE_TOPIC}")
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--ood-from", type=int, default=None, metavar="FRAME",
                   help="first frame with OOD objects on the road (default frames // 3; >= frames: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    try:
        info = write_synthroad_bag(args.out, frames=args.frames, size=args.size, fps=args.fps, seed=args.seed,
                                   storage=args.storage, compressed=args.compressed, ood_from_frame=args.ood_from,
                                   jpeg_quality=args.jpeg_quality, progress=not args.quiet)
    except (FileExistsError, ValueError) as exc:
        print(f"fed_synthroad_bag: error: {exc}", file=sys.stderr)
        return 2
    with_ood = sum(1 for n in info.ood_pixels if n)
    print(f"fed_synthroad_bag: wrote {info.frames} frames {info.size[0]}x{info.size[1]} at {info.fps:g} fps "
          f"({info.storage}) to {info.path} in {time.monotonic() - t0:.1f} s; topics {info.image_topic}, "
          f"{info.labels_topic}, {info.ood_topic}; OOD objects visible in {with_ood} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
