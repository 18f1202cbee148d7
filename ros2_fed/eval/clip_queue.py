"""The labelling queue: every clip of a fleet (or of any folders of clips) ranked, folded, ready
for a labelling tool and for ``fed_train``.

Why ranked by the model's own evidence: the clips exist because the model was unsure; which of
them teach it most cannot be known before labelling, but the frames where it was unsure about
a large part of the road, for long, or about the whole scene, are the ones worth a person's
time first. The score of a clip (all terms from its recorded statuses, each in [0, 1]):

    score = region + persistence + scene / 2

- ``region``: the mean, over the clip's frames, of the alert's region size (its ``evidence``,
  the uncertain mass on the road ahead the rule judges), clipped to 1;
- ``persistence``: the share of the clip's frames whose alert is WARN or above;
- ``scene``: the highest scene level in the clip (OK 0, WARN 0.5, ERROR 1).

Near-duplicates are folded into the better clip of the pair: clips of the same drive whose
triggers are less than ``fold_seconds`` apart, and clips whose trigger frames look alike (a
64-bit difference hash of the frame, at most ``fold_hash_bits`` bits apart), so one slow pass
by a hazard, or a parked vehicle seen on every lap, takes one row of the queue.

Written into OUT: ``clips.json`` and ``clips.md`` (rank, score and its terms, reason, drive,
trigger, folded clips), ``clips_mosaic.png`` (the trigger frames of the top clips, with the
model's confidence beside them) and ``labelling/``: every ``frame_step``-th camera frame of
each queued clip (and its trigger frame) as ``leftImg8bit/train/CLIP/CLIP_000000_NNNNNN_
leftImg8bit.png`` with the model's prediction as ``gtFine/train/CLIP/..._gtFine_labelTrainIds
.png``: the Cityscapes layout ``fed_train --data-root`` and labelling tools read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ros2_fed import codec
from ros2_fed.jsonio import write_json
from ros2_fed.recording.writer import INDEX_NAME, METADATA_NAME

LEVEL_WARN, LEVEL_ERROR = 1, 2
FOLD_SECONDS = 10.0
FOLD_HASH_BITS = 6
FRAME_STEP = 5  # every 5th frame: 2 frames a second at 10 Hz
MOSAIC_CLIPS = 8
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


@dataclass
class ClipFrames:
    """What a clip holds, by stamp: camera messages, the model's train ids, the statuses."""

    camera: dict[int, Any] = field(default_factory=dict)
    labels: dict[int, np.ndarray] = field(default_factory=dict)
    confidence: dict[int, np.ndarray] = field(default_factory=dict)
    alerts: dict[int, tuple[int, float]] = field(default_factory=dict)  # level, region size
    scene: dict[int, int] = field(default_factory=dict)  # level


@dataclass
class QueuedClip:
    drive: str
    path: Path
    meta: dict[str, Any]
    terms: dict[str, float]
    score: float
    fingerprint: int
    folded: list[str] = field(default_factory=list)

    @property
    def trigger_ns(self) -> int:
        return int(self.meta["trigger_stamp_ns"])

    def row(self) -> dict[str, Any]:
        return {
            "clip": self.path.name,
            "path": str(self.path),
            "drive": self.drive,
            "reason": self.meta.get("reason", ""),
            "camera": self.meta.get("camera", ""),
            "trigger_stamp_ns": self.trigger_ns,
            "score": round(self.score, 4),
            **{k: round(v, 4) for k, v in self.terms.items()},
            "folded": list(self.folded),
        }


def read_clip(path: Path) -> tuple[dict[str, str], ClipFrames]:
    """A clip's ``ros2_fed.clip`` metadata and its frames (rosbags reads the MCAP file)."""
    from mcap.reader import make_reader
    from rosbags.highlevel import AnyReader

    with open(path, "rb") as f:
        meta = next(
            (dict(m.metadata) for m in make_reader(f).iter_metadata() if m.name == METADATA_NAME),
            {},
        )
    frames = ClipFrames()
    with AnyReader([path]) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            _file(frames, conn.topic, conn.msgtype, msg, stamp)
    return meta, frames


def _file(frames: ClipFrames, topic: str, msgtype: str, msg: Any, stamp: int) -> None:
    if topic.endswith("/segmentation/compressed"):
        frames.labels[stamp] = _png(msg.data)
    elif topic.endswith("/confidence/compressed"):
        frames.confidence[stamp] = _png(msg.data)
    elif msgtype.endswith("DiagnosticArray"):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith("alerts"):
                size = _float(values.get("evidence", values.get("region_size")))
                frames.alerts[stamp] = (int(status.level), size)
            elif status.name.endswith("scene"):
                frames.scene[stamp] = int(status.level)
    elif msgtype in IMAGE_TYPES:
        frames.camera[stamp] = msg


def _png(data: Any) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_UNCHANGED)


def _float(text: Optional[str]) -> float:
    try:
        value = float(text) if text is not None else 0.0
    except ValueError:
        return 0.0
    return value if value == value else 0.0  # NaN: no region


def evidence(frames: ClipFrames) -> dict[str, float]:
    """The score's terms (module docstring)."""
    alerts = list(frames.alerts.values())
    region = float(np.mean([min(size, 1.0) for _, size in alerts])) if alerts else 0.0
    persistence = float(np.mean([level >= LEVEL_WARN for level, _ in alerts])) if alerts else 0.0
    scene = max(frames.scene.values(), default=0) / LEVEL_ERROR
    return {"region": region, "persistence": persistence, "scene": float(scene)}


def score(terms: dict[str, float]) -> float:
    return terms["region"] + terms["persistence"] + terms["scene"] / 2


def dhash(rgb: np.ndarray) -> int:
    """64-bit difference hash: each bit says whether a cell of a 9x8 grey thumbnail is brighter
    than its right neighbour (robust to small shifts, noise and exposure)."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def trigger_frame(meta: dict[str, str], frames: ClipFrames) -> Optional[int]:
    """The camera stamp nearest the trigger (None for a clip without camera frames)."""
    if not frames.camera:
        return None
    trigger = int(meta.get("trigger_stamp_ns", 0))
    return min(frames.camera, key=lambda s: abs(s - trigger))


def rgb_of(msg: Any) -> np.ndarray:
    return np.asarray(codec.to_rgb8(msg), dtype=np.uint8)


def fold(clips: list[QueuedClip], fold_seconds: float, fold_hash_bits: int) -> list[QueuedClip]:
    """The best clips first, each one absorbing the later near-duplicates (module docstring)."""
    kept: list[QueuedClip] = []
    for clip in sorted(clips, key=lambda c: (-c.score, c.drive, c.trigger_ns)):
        twin = next((k for k in kept if _alike(k, clip, fold_seconds, fold_hash_bits)), None)
        if twin is None:
            kept.append(clip)
        else:
            twin.folded.append(clip.path.name)
    return kept


def _alike(a: QueuedClip, b: QueuedClip, seconds: float, bits: int) -> bool:
    close = a.drive == b.drive and abs(a.trigger_ns - b.trigger_ns) < seconds * 1e9
    return close or bin(a.fingerprint ^ b.fingerprint).count("1") <= bits


def find_clips(folders: Sequence[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """(drive, clip path) for every clip an index lists in each ``(drive, folder)``."""
    out = []
    for drive, folder in folders:
        index = folder / INDEX_NAME
        if not index.is_file():
            continue
        for line in index.read_text(encoding="utf-8").splitlines():
            name = json.loads(line).get("file") if line.strip() else None
            if name and (folder / name).is_file():
                out.append((drive, folder / name))
    return out


def build_queue(
    folders: Sequence[tuple[str, Path]],
    out: Path,
    fold_seconds: float = FOLD_SECONDS,
    fold_hash_bits: int = FOLD_HASH_BITS,
    frame_step: int = FRAME_STEP,
) -> dict[str, Any]:
    """Rank, fold and write the queue of every clip in ``folders`` into ``out``; the JSON."""
    from tqdm import tqdm

    found = find_clips(folders)
    queued, content = [], {}
    for drive, path in tqdm(found, desc="clips", unit="clip", disable=not found):
        meta, frames = read_clip(path)
        stamp = trigger_frame(meta, frames)
        if stamp is None:
            continue
        terms = evidence(frames)
        clip = QueuedClip(
            drive, path, meta, terms, score(terms), dhash(rgb_of(frames.camera[stamp]))
        )
        queued.append(clip)
        content[path] = frames
    ranked = fold(queued, fold_seconds, fold_hash_bits)
    out.mkdir(parents=True, exist_ok=True)
    labelling = out / "labelling"
    for rank, clip in enumerate(ranked, 1):
        write_frames(labelling, f"clip{rank:04d}", clip, content[clip.path], frame_step)
    result = {
        "clips_found": len(found),
        "clips_queued": len(ranked),
        "clips_folded": sum(len(c.folded) for c in ranked),
        "settings": {
            "fold_seconds": fold_seconds,
            "fold_hash_bits": fold_hash_bits,
            "frame_step": frame_step,
        },
        "queue": [{"rank": r, "city": f"clip{r:04d}", **c.row()} for r, c in enumerate(ranked, 1)],
    }
    write_json(out / "clips.json", result)
    (out / "clips.md").write_text(markdown(result), encoding="utf-8")
    if ranked:
        write_mosaic(out / "clips_mosaic.png", ranked[:MOSAIC_CLIPS], content)
    return result


def write_frames(root: Path, city: str, clip: QueuedClip, frames: ClipFrames, step: int) -> int:
    """The clip's frames (every ``step``-th, and the trigger's) with the model's train ids."""
    import cv2

    stamps = sorted(frames.camera)
    trigger = trigger_frame(clip.meta, frames)
    chosen = [s for i, s in enumerate(stamps) if i % step == 0 or s == trigger]
    images = root / "leftImg8bit" / "train" / city
    labels = root / "gtFine" / "train" / city
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for k, stamp in enumerate(chosen):
        stem = f"{city}_000000_{k:06d}"
        rgb = rgb_of(frames.camera[stamp])
        cv2.imwrite(str(images / f"{stem}_leftImg8bit.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        pre = frames.labels.get(stamp)
        if pre is not None:
            cv2.imwrite(str(labels / f"{stem}_gtFine_labelTrainIds.png"), pre)
    return len(chosen)


def write_mosaic(path: Path, clips: list[QueuedClip], content: dict[Path, ClipFrames]) -> None:
    """Each top clip's trigger frame beside the model's confidence there."""
    import cv2

    from ros2_fed import viz

    tiles, captions = [], []
    for rank, clip in enumerate(clips, 1):
        frames = content[clip.path]
        stamp = trigger_frame(clip.meta, frames)
        rgb = rgb_of(frames.camera[stamp])
        conf = frames.confidence.get(stamp)
        view = rgb
        if conf is not None:
            if conf.shape != rgb.shape[:2]:
                size = (rgb.shape[1], rgb.shape[0])
                conf = cv2.resize(conf, size, interpolation=cv2.INTER_NEAREST)
            colours = viz.confidence_to_rgb(conf.astype(np.float32) / 255.0)
            view = viz.overlay(rgb, colours, 0.5)
        tiles += [rgb, view]
        caption = f"#{rank} {clip.meta.get('reason', '')} {clip.drive} score {clip.score:.2f}"
        captions += [caption, "overlay (red = uncertain)"]
    image = viz.mosaic(tiles, captions, columns=2)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Labelling queue",
        "",
        f"{result['clips_queued']} clips queued of {result['clips_found']} found "
        f"({result['clips_folded']} near-duplicates folded). Score = region + persistence + "
        "scene / 2 (ros2_fed/eval/clip_queue.py); frames and pre-labels in `labelling/`.",
        "",
        "| rank | score | region | persistence | scene | reason | drive | clip | folded |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["queue"]:
        lines.append(
            f"| {row['rank']} | {row['score']:.2f} | {row['region']:.2f} | "
            f"{row['persistence']:.2f} | {row['scene']:.2f} | {row['reason']} | {row['drive']} "
            f"| {row['clip']} | {', '.join(row['folded']) or '–'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ros2_fed.eval.clip_queue",
        description="Rank and fold the clips in folders of clips (a recording's record.dir, "
        "fed_bag_eval --clips DIR) into a labelling queue.",
    )
    p.add_argument("folders", nargs="+", type=Path, help="folders holding index.jsonl + clips")
    p.add_argument("--out", required=True, type=Path, help="where the queue goes")
    p.add_argument("--fold-seconds", type=float, default=FOLD_SECONDS)
    p.add_argument("--fold-hash-bits", type=int, default=FOLD_HASH_BITS)
    p.add_argument("--frame-step", type=int, default=FRAME_STEP)
    args = p.parse_args(argv)
    folders = [(folder.name, folder) for folder in args.folders]
    result = build_queue(
        folders, args.out, args.fold_seconds, args.fold_hash_bits, args.frame_step
    )
    print(
        f"clip_queue: {result['clips_queued']} clips queued of {result['clips_found']} "
        f"({result['clips_folded']} folded); {args.out / 'clips.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
