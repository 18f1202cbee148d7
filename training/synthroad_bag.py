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

Surround rigs: ``--cameras N`` (or ``--camera-names front,left,...``) writes N cameras named
cam0..cam{N-1} (or the given names), each on ``/NAME/image_raw`` (``/NAME/image_raw/compressed``),
``/NAME/labels`` and ``/NAME/ood`` with ``frame_id`` NAME, all with the same stamps (a
synchronised rig). The renderer has no yaw (only a forward-looking camera), so the cameras are
**different drives, with different seeds** (camera i: ``--seed`` + 1000 i), not one street seen
from several directions. custom_data then also lists the cameras (name, topics, frame_id, seed,
per-frame OOD pixel counts), which is how ``fed_bag_eval`` finds them. ``--cameras 1`` without
names (the default) is the single-camera bag above, unchanged.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_synthroad_bag", __name__)  # first: a signal during the imports stops it

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterator, Optional, Sequence  # noqa: E402

from tqdm import tqdm  # noqa: E402

from ros2_fed.eval.replay import bagio  # noqa: E402

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
LABELS_TOPIC = "/camera/labels"
OOD_TOPIC = "/camera/ood"
FRAME_ID = "camera"
#: First header stamp (2023-11-14T22:13:20Z): fixed so bags are reproducible byte for byte.
START_NS = 1_700_000_000 * 1_000_000_000
CUSTOM_DATA_KEY = "ros2_fed.synthroad"
#: Camera i of a multi-camera bag renders the drive of seed ``seed + CAMERA_SEED_STRIDE * i``.
CAMERA_SEED_STRIDE = 1000
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def camera_topics(name: str, compressed: bool = False) -> tuple[str, str, str]:
    """(image, labels, ood) topics of camera ``name`` in a multi-camera bag."""
    image = f"/{name}/image_raw/compressed" if compressed else f"/{name}/image_raw"
    return image, f"/{name}/labels", f"/{name}/ood"


@dataclass
class SynthroadCamera:
    """One camera of a multi-camera bag (the ``cameras`` list of the custom_data JSON)."""

    name: str
    seed: int
    image_topic: str
    labels_topic: str
    ood_topic: str
    frame_id: str
    ood_pixels: list[int] = field(default_factory=list)


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
    #: OOD pixels per frame (several cameras: summed over the cameras)
    ood_pixels: list[int] = field(default_factory=list)
    #: empty for the single-camera bag (the /camera/... topics)
    cameras: list[SynthroadCamera] = field(default_factory=list)
    #: only these OOD kinds (None: all seven; then absent from custom_data, as before)
    ood_kinds: Optional[list[str]] = None


def write_synthroad_bag(
    out: Path,
    frames: int = 60,
    size: tuple[int, int] = (256, 512),
    fps: float = 10.0,
    seed: int = 0,
    storage: str = "mcap",
    compressed: bool = False,
    ood_from_frame: Optional[int] = None,
    jpeg_quality: int = 95,
    start_ns: int = START_NS,
    progress: bool = False,
    cameras: int = 1,
    camera_names: Optional[Sequence[str]] = None,
    ood_kinds: Optional[Sequence[str]] = None,
) -> SynthroadBag:
    """Render the drive and write it to the rosbag2 directory ``out`` (must not exist).

    ``cameras`` > 1 or ``camera_names``: a synchronised rig, camera i named ``camera_names[i]``
    (default ``cam{i}``) and rendered from seed ``seed + CAMERA_SEED_STRIDE * i``.
    ``ood_kinds``: only these OOD kinds on the road (training/datasets/synthroad_sequence.py).
    """
    if frames < 1:
        raise ValueError("frames must be >= 1")
    if fps <= 0:
        raise ValueError("fps must be > 0")
    names = _camera_names(cameras, camera_names)
    if ood_kinds is not None:
        from training.datasets.synthroad_sequence import check_ood_kinds

        ood_kinds = check_ood_kinds(ood_kinds)
    out = Path(out)
    if out.exists():
        raise FileExistsError(
            f"{out} exists already; rosbag2 writers never overwrite (delete it first)"
        )
    info = SynthroadBag(
        path=str(out),
        storage=storage,
        frames=int(frames),
        size=(int(size[0]), int(size[1])),
        fps=float(fps),
        seed=int(seed),
        image_topic=COMPRESSED_TOPIC if compressed else IMAGE_TOPIC,
        labels_topic=LABELS_TOPIC,
        ood_topic=OOD_TOPIC,
        compressed=bool(compressed),
        ood_from_frame=frames // 3 if ood_from_frame is None else int(ood_from_frame),
        start_ns=int(start_ns),
        ood_kinds=None if ood_kinds is None else list(ood_kinds),
    )
    if names is not None:
        return _write_rig(out, info, names, jpeg_quality, progress)
    return _write_single(out, info, jpeg_quality, progress)


def _write_single(
    out: Path, info: SynthroadBag, jpeg_quality: int, progress: bool
) -> SynthroadBag:
    """The single-camera bag: the /camera/... topics with frame_id "camera"; its custom_data is
    known up front (no per-camera OOD counts)."""
    custom = {CUSTOM_DATA_KEY: json.dumps(_settings(info))}
    period_ns = round(1e9 / info.fps)
    with bagio.BagWriter(out, info.storage, custom_data=custom) as bag:
        bag.add_topic(info.image_topic, bagio.COMPRESSED_IMAGE if info.compressed else bagio.IMAGE)
        bag.add_topic(LABELS_TOPIC, bagio.IMAGE)
        bag.add_topic(OOD_TOPIC, bagio.IMAGE)
        sequence = _sequence(info, info.seed)
        for i, frame in enumerate(
            tqdm(
                sequence,
                total=info.frames,
                desc="synthroad bag",
                disable=not progress,
                dynamic_ncols=True,
            )
        ):
            stamp = info.start_ns + i * period_ns
            _write_frame(
                bag,
                frame,
                stamp,
                FRAME_ID,
                (info.image_topic, LABELS_TOPIC, OOD_TOPIC),
                info.compressed,
                jpeg_quality,
            )
            info.ood_pixels.append(int((frame.ood == 1).sum()))
    return info


def _camera_names(cameras: int, names: Optional[Sequence[str]]) -> Optional[list[str]]:
    """The rig's camera names; None: the single-camera bag (/camera/... topics)."""
    if names is None:
        if int(cameras) < 1:
            raise ValueError("cameras must be >= 1")
        return None if int(cameras) == 1 else [f"cam{i}" for i in range(int(cameras))]
    names = [str(n).strip() for n in names]
    if not names:
        raise ValueError("camera names: none given")
    if int(cameras) not in (1, len(names)):
        raise ValueError(f"{cameras} cameras but {len(names)} camera names ({', '.join(names)})")
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise ValueError(
            f"camera names must be ROS name tokens ([A-Za-z][A-Za-z0-9_]*), got {bad}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"camera names must be unique, got {names}")
    return names


def _sequence(info: SynthroadBag, seed: int) -> Iterator[Any]:
    """The drive of ``seed`` (synthroad ``Frame`` objects, one by one)."""
    from training.datasets.synthroad_sequence import iter_sequence

    return iter_sequence(
        info.frames,
        info.size,
        seed,
        ood_from_frame=info.ood_from_frame,
        fps=info.fps,
        ood_kinds=info.ood_kinds,
    )


def _write_frame(
    bag: bagio.BagWriter,
    frame: Any,
    stamp: int,
    frame_id: str,
    topics: tuple[str, str, str],
    compressed: bool,
    jpeg_quality: int,
) -> None:
    """One camera frame: image, labels, OOD mask, all with the same stamp (also the log time)."""
    if compressed:
        image = bagio.compressed_message(frame.image, stamp, frame_id, "jpeg", jpeg_quality)
    else:
        image = bagio.image_message(frame.image, "rgb8", stamp, frame_id)
    bag.write(topics[0], stamp, image)
    bag.write(topics[1], stamp, bagio.image_message(frame.train_ids, "mono8", stamp, frame_id))
    bag.write(topics[2], stamp, bagio.image_message(frame.ood, "mono8", stamp, frame_id))


def _write_rig(
    out: Path, info: SynthroadBag, names: list[str], jpeg_quality: int, progress: bool
) -> SynthroadBag:
    """Several cameras, one drive (seed) each, written frame by frame with shared stamps."""
    for i, name in enumerate(names):
        image, labels, ood = camera_topics(name, info.compressed)
        info.cameras.append(
            SynthroadCamera(
                name=name,
                seed=info.seed + CAMERA_SEED_STRIDE * i,
                image_topic=image,
                labels_topic=labels,
                ood_topic=ood,
                frame_id=name,
            )
        )
    first = info.cameras[0]
    info.image_topic, info.labels_topic, info.ood_topic = (
        first.image_topic,
        first.labels_topic,
        first.ood_topic,
    )
    period_ns = round(1e9 / info.fps)
    with bagio.BagWriter(out, info.storage, custom_data=_rig_custom(info)) as bag:
        for cam in info.cameras:
            image_type = bagio.COMPRESSED_IMAGE if info.compressed else bagio.IMAGE
            bag.add_topic(cam.image_topic, image_type)
            bag.add_topic(cam.labels_topic, bagio.IMAGE)
            bag.add_topic(cam.ood_topic, bagio.IMAGE)
        sequences = zip(*(_sequence(info, cam.seed) for cam in info.cameras))
        for i, rig in enumerate(
            tqdm(
                sequences,
                total=info.frames,
                desc="synthroad bag",
                disable=not progress,
                dynamic_ncols=True,
            )
        ):
            stamp = info.start_ns + i * period_ns
            for cam, frame in zip(info.cameras, rig):
                _write_frame(
                    bag,
                    frame,
                    stamp,
                    cam.frame_id,
                    (cam.image_topic, cam.labels_topic, cam.ood_topic),
                    info.compressed,
                    jpeg_quality,
                )
                cam.ood_pixels.append(int((frame.ood == 1).sum()))
            info.ood_pixels.append(sum(cam.ood_pixels[-1] for cam in info.cameras))
        for key, value in _rig_custom(info).items():  # now with the OOD pixel counts
            bag.set_custom_data(key, value)
    return info


def _settings(info: SynthroadBag) -> dict[str, Any]:
    """The generation settings for custom_data (``ood_kinds`` only when set)."""
    skip = ("path", "ood_pixels", "cameras") + (("ood_kinds",) if info.ood_kinds is None else ())
    return {k: v for k, v in asdict(info).items() if k not in skip}


def _rig_custom(info: SynthroadBag) -> dict[str, str]:
    data = _settings(info)
    data["cameras"] = [asdict(cam) for cam in info.cameras]
    return {CUSTOM_DATA_KEY: json.dumps(data)}


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x512, got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError("frames must be at least 16x16")
    return h, w


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def build_parser() -> argparse.ArgumentParser:
    from training.datasets.synthroad.scene import _OOD_KINDS

    p = argparse.ArgumentParser(
        prog="fed_synthroad_bag",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", required=True, type=Path, help="rosbag2 directory to create (must not exist)"
    )
    p.add_argument("--frames", type=int, default=60, help="number of frames (default 60)")
    p.add_argument(
        "--size", type=_size, default=(256, 512), help="frame size HxW (default 256x512)"
    )
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the stamps (default 10)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument(
        "--storage", choices=bagio.STORAGES, default="mcap", help="rosbag2 storage (default mcap)"
    )
    p.add_argument(
        "--compressed",
        action="store_true",
        help=f"camera as CompressedImage JPEG on {COMPRESSED_TOPIC} instead of rgb8 "
        f"Image on {IMAGE_TOPIC} (several cameras: /NAME/image_raw/compressed)",
    )
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument(
        "--ood-from",
        type=int,
        default=None,
        metavar="FRAME",
        help="first frame with OOD objects on the road (default frames // 3; >= frames: none)",
    )
    _add_rig_args(p)
    p.add_argument(
        "--ood-kinds",
        type=_names,
        default=None,
        metavar="KIND,KIND,...",
        help=f"only these OOD kinds on the road (of {', '.join(_OOD_KINDS)}; default all)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _add_rig_args(p: argparse.ArgumentParser) -> None:
    """Surround rigs: how many cameras, and their names."""
    p.add_argument(
        "--cameras",
        type=int,
        default=1,
        metavar="N",
        help="cameras of a synchronised rig (default 1: the /camera/... bag). N > 1: "
        "cam0..cam{N-1} on /NAME/image_raw, /NAME/labels, /NAME/ood "
        "(frame_id NAME), "
        "same stamps; different seeds (camera i: --seed + 1000 i): the renderer "
        "has no yaw, so each camera is its own drive",
    )
    p.add_argument(
        "--camera-names",
        type=_names,
        default=None,
        metavar="NAME,NAME,...",
        help="name the cameras (e.g. front,left,right,rear; implies --cameras N)",
    )


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    existed = Path(args.out).exists()  # then the writer refuses it, and it is never removed
    try:
        stopping.started()  # a stop signal is a KeyboardInterrupt from here on
        info = write_synthroad_bag(
            args.out,
            frames=args.frames,
            size=args.size,
            fps=args.fps,
            seed=args.seed,
            storage=args.storage,
            compressed=args.compressed,
            ood_from_frame=args.ood_from,
            jpeg_quality=args.jpeg_quality,
            progress=not args.quiet,
            cameras=args.cameras,
            camera_names=args.camera_names,
            ood_kinds=args.ood_kinds,
        )
    except (FileExistsError, ValueError) as exc:
        print(f"fed_synthroad_bag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = Path(args.out)
        if not existed and out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        print(
            f"fed_synthroad_bag: stopped; kept nothing: the unfinished bag {out} was removed "
            "(the same command writes it anew)",
            file=sys.stderr,
            flush=True,
        )
        return stopping.interrupted_exit_code()
    finally:
        stopping.stopping()
    if info.cameras:
        print(
            f"fed_synthroad_bag: wrote {len(info.cameras)} cameras x {info.frames} frames "
            f"{info.size[0]}x{info.size[1]} at {info.fps:g} fps ({info.storage}) to {info.path} "
            f"in {time.monotonic() - t0:.1f} s; same stamps on every camera"
        )
        for cam in info.cameras:
            with_ood = sum(1 for n in cam.ood_pixels if n)
            print(
                f"  {cam.name} (seed {cam.seed}): {cam.image_topic}, {cam.labels_topic}, "
                f"{cam.ood_topic}; OOD objects visible in {with_ood} frames"
            )
        return 0
    with_ood = sum(1 for n in info.ood_pixels if n)
    print(
        f"fed_synthroad_bag: wrote {info.frames} frames {info.size[0]}x{info.size[1]} at "
        f"{info.fps:g} fps ({info.storage}) to {info.path} in {time.monotonic() - t0:.1f} s; "
        f"topics {info.image_topic}, "
        f"{info.labels_topic}, {info.ood_topic}; OOD objects visible in {with_ood} frames"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
