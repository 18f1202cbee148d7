"""Input bags: open, validate, and iterate camera frames joined with their ground truth.

Everything that can be wrong with a bag is found by :func:`scan` *before* any model runs, and
reported as a :class:`BagError` whose message names the bag file and the topic / type / message
at fault: a missing topic (with the topics the bag does have), a topic of the wrong type, ground
truth that is not mono8 or not the camera's size, an OOD mask with values other than 0/1/255,
duplicate header stamps, or a storage file that cannot be read (corrupt chunk, truncated file,
broken CDR). :func:`iter_frames` raises the same way should the bag change underneath.

Frames are matched to ground truth by header stamp (not log time): camera drivers and labelling
tools stamp with the capture time. Camera frames without ground truth are still replayed and
scored where the metrics do not need it; ground truth without a camera frame is counted.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

from ros2_fed import codec
from ros2_fed.eval.replay import bagio

PathLike = Union[str, Path]
SYNTHROAD_KEY = "ros2_fed.synthroad"  # custom_data written by training/synthroad_bag.py
GT_TYPE = bagio.IMAGE
GT_ENCODINGS = ("mono8", "8UC1")


class BagError(RuntimeError):
    """The bag cannot be evaluated; the message names the file and the topic/type/message at
    fault."""


@dataclass
class TopicInfo:
    msgtype: Optional[str]
    count: int


@dataclass
class BagInfo:
    path: Path
    storage: str
    files: list[str]
    topics: dict[str, TopicInfo]
    start_ns: int
    end_ns: int
    custom_data: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def describe_topics(self) -> str:
        return (
            ", ".join(f"{t} ({i.msgtype}, {i.count} msgs)" for t, i in sorted(self.topics.items()))
            or "none"
        )

    @property
    def synthroad(self) -> dict[str, Any]:
        try:
            return json.loads(self.custom_data.get(SYNTHROAD_KEY, "{}"))
        except json.JSONDecodeError:
            return {}


@dataclass
class Selection:
    """Which topics carry the camera and the ground truth."""

    image: str
    image_type: str
    labels: Optional[str] = None  # mono8 Cityscapes trainIds (255 = void)
    ood: Optional[str] = None  # mono8 0 / 1 / 255

    @property
    def compressed(self) -> bool:
        return self.image_type == bagio.COMPRESSED_IMAGE

    @property
    def topics(self) -> list[str]:
        return [t for t in (self.image, self.labels, self.ood) if t]


@dataclass
class FrameRef:
    """One camera frame as found by :func:`scan`."""

    index: int
    stamp_ns: int
    log_ns: int
    frame_id: str
    height: int  # from the message header (0 when it cannot be read): nothing is decoded
    width: int
    has_label: bool = False
    has_ood: bool = False
    usable: bool = True  # the header's size is within the decoding limits


@dataclass
class ScanResult:
    info: BagInfo
    selection: Selection
    frames: list[FrameRef]
    first_raw: bytes = b""  # CDR of the first usable camera message (live warm-up frame)
    gt_without_frame: dict[str, int] = field(default_factory=dict)  # topic -> count
    frames_without_gt: dict[str, int] = field(default_factory=dict)

    @property
    def usable(self) -> list[FrameRef]:
        """The frames whose size is within the decoding limits (the others the node refuses)."""
        return [f for f in self.frames if f.usable]

    @property
    def has_labels(self) -> bool:
        return any(f.has_label for f in self.frames)

    @property
    def has_ood(self) -> bool:
        return any(f.has_ood for f in self.frames)


@dataclass
class Frame:
    """A camera frame with its ground truth (arrays are HxW uint8 or None)."""

    index: int
    stamp_ns: int
    log_ns: int
    frame_id: str
    raw: bytes  # the camera message's CDR bytes, exactly as stored
    msg: Any  # the camera message (rosbags dataclass)
    label: Optional[np.ndarray] = None
    ood: Optional[np.ndarray] = None
    label_raw: Optional[bytes] = None  # the ground-truth messages' CDR bytes and log times
    label_log_ns: Optional[int] = None
    ood_raw: Optional[bytes] = None
    ood_log_ns: Optional[int] = None

    def rgb(self, limits: codec.InputLimits) -> np.ndarray:
        """HxWx3 uint8 RGB, decoded as the node decodes (ros2_fed.codec, the node's limits)."""
        return np.array(codec.to_rgb8(self.msg, limits), dtype=np.uint8, order="C")  # writable


# --------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------


def _reader(path: Path) -> Any:
    from rosbags.highlevel import AnyReader

    return AnyReader([path], default_typestore=bagio.typestore())


def _read_custom_data(path: Path) -> dict[str, str]:
    meta = path / "metadata.yaml" if path.is_dir() else None
    if meta is None or not meta.is_file():
        return {}
    try:
        import yaml

        info = yaml.safe_load(meta.read_text()) or {}
        custom = info.get("rosbag2_bagfile_information", {}).get("custom_data") or {}
        return {str(k): str(v) for k, v in custom.items()}
    except Exception:
        return {}


def _storage_files(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(str(p) for p in path.iterdir() if p.suffix in (".mcap", ".db3")) or [
            str(path)
        ]
    return [str(path)]


def open_info(path: PathLike) -> BagInfo:
    """Topics, types, counts and storage of a rosbag2 (directory, or a bare .mcap / .db3 file)."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: bag not found")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path}: not a rosbag2 directory (no metadata.yaml)")
    if path.is_file() and path.suffix not in (".mcap", ".db3"):
        raise BagError(
            f"{path}: not a rosbag2 storage file (expected a bag directory, .mcap or .db3)"
        )
    try:
        storage = bagio.storage_of(path)
    except ValueError as exc:
        raise BagError(str(exc)) from None
    files = _storage_files(path)
    try:
        reader = _reader(path)
        with reader:
            topics = {
                name: TopicInfo(t.msgtype, int(t.msgcount)) for name, t in reader.topics.items()
            }
            start, end = int(reader.start_time), int(reader.end_time)
    except (
        Exception
    ) as exc:  # rosbags raises several types (ReaderError, AnyReaderError, yaml, sqlite3, ...)
        raise BagError(
            f"{path}: cannot open the bag ({', '.join(files)}): {type(exc).__name__}: {exc} "
            "(truncated or corrupt storage file?)"
        ) from None
    return BagInfo(
        path=path,
        storage=storage,
        files=files,
        topics=topics,
        start_ns=start,
        end_ns=end if end < 2**63 - 1 else start,
        custom_data=_read_custom_data(path),
    )


def select_topics(
    info: BagInfo,
    image: Optional[str] = None,
    labels: Optional[str] = None,
    ood: Optional[str] = None,
    ground_truth: bool = True,
) -> Selection:
    """Validate (or pick) the camera and ground-truth topics.

    Defaults: the topics a synthroad bag names in its metadata; else the only Image /
    CompressedImage topic of the bag (no ground truth). ``ground_truth=False`` ignores GT.
    """
    synth = info.synthroad
    if image is None:
        if synth.get("image_topic") in info.topics:
            image = synth["image_topic"]
            if ground_truth:
                labels = labels if labels is not None else synth.get("labels_topic")
                ood = ood if ood is not None else synth.get("ood_topic")
        else:
            candidates = [
                t
                for t, i in info.topics.items()
                if i.msgtype in bagio.IMAGE_TYPES and t not in (labels, ood)
            ]
            if len(candidates) != 1:
                raise BagError(
                    f"{info.path}: {'several' if candidates else 'no'} camera topics "
                    f"({', '.join(candidates) or 'no Image/CompressedImage topic'}): pick one "
                    "with --topic "
                    f"(topics in the bag: {info.describe_topics()})"
                )
            image = candidates[0]
    if not ground_truth:
        labels = ood = None
    image_type = _check_topic(info, image, "camera", bagio.IMAGE_TYPES)
    if labels:
        _check_topic(info, labels, "ground-truth label", (GT_TYPE,))
    if ood:
        _check_topic(info, ood, "ground-truth OOD", (GT_TYPE,))
    if labels and labels == ood:
        raise BagError(f"{info.path}: {labels} given as both the label and the OOD topic")
    if image in (labels, ood):
        raise BagError(f"{info.path}: {image} given as both the camera and a ground-truth topic")
    return Selection(image=image, image_type=image_type, labels=labels or None, ood=ood or None)


def _check_topic(info: BagInfo, topic: str, role: str, allowed: tuple[str, ...]) -> str:
    """The topic's message type; a BagError naming ``role`` when it is absent, of another type
    or empty (caught here, before any frame is evaluated)."""
    if topic not in info.topics:
        raise BagError(
            f"{info.path}: {role} topic {topic} is not in the bag (topics in the bag: "
            f"{info.describe_topics()})"
        )
    msgtype = info.topics[topic].msgtype
    if msgtype not in allowed:
        raise BagError(
            f"{info.path}: {role} topic {topic} has type {msgtype}, expected "
            f"{' or '.join(allowed)}"
        )
    if info.topics[topic].count == 0:
        raise BagError(f"{info.path}: {role} topic {topic} has no messages")
    return msgtype


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def read_messages(info: BagInfo, topics: list[str]) -> Iterator[tuple[str, str, int, bytes, Any]]:
    """(topic, msgtype, log_ns, raw, message) in log-time order; every failure is a BagError."""
    where = ", ".join(info.files)
    last = "before the first message"
    count = 0
    try:
        reader = _reader(info.path)
        reader.open()
    except Exception as exc:
        raise BagError(
            f"{info.path}: cannot open the bag ({where}): {type(exc).__name__}: {exc}"
        ) from None
    try:
        connections = [c for c in reader.connections if c.topic in topics]
        iterator = reader.messages(connections=connections)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except (
                struct.error,
                EOFError,
                IndexError,
                ValueError,
                OSError,
                KeyError,
                TypeError,
            ) as exc:
                raise BagError(_corrupt(info, where, last, count, exc)) from None
            except (
                Exception
            ) as exc:  # ReaderError & co: chunk checksum/size, decompression, sqlite
                raise BagError(_corrupt(info, where, last, count, exc)) from None
            connection, log_ns, raw = item
            try:
                msg = reader.deserialize(raw, connection.msgtype)
            except Exception as exc:
                raise BagError(
                    f"{info.path}: message {count} on {connection.topic} (log time {log_ns}) is "
                    "not a "
                    f"valid {connection.msgtype} ({type(exc).__name__}: {exc}); corrupt chunk in "
                    f"{where}?"
                ) from None
            count += 1
            last = f"after message {count} ({connection.topic}, log time {log_ns})"
            yield connection.topic, connection.msgtype, int(log_ns), bytes(raw), msg
    finally:
        try:
            reader.close()
        except Exception:
            pass


def _corrupt(info: BagInfo, where: str, last: str, count: int, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return (
        f"{info.path}: cannot read {where} {last}: {type(exc).__name__}: {text} (corrupt chunk or "
        "truncated "
        f"file; {count} messages were readable)"
    )


def _gt_array(
    info: BagInfo, topic: str, msg: Any, kind: str, shape: Optional[tuple[int, int]]
) -> np.ndarray:
    stamp = bagio.stamp_ns(msg)
    if str(msg.encoding) not in GT_ENCODINGS:
        raise BagError(
            f"{info.path}: ground-truth topic {topic} message at stamp {stamp} has encoding "
            f"{msg.encoding!r}, expected mono8 "
            f"({'Cityscapes trainIds' if kind == 'labels' else '0/1/255'})"
        )
    try:
        arr = codec.image_to_numpy(msg)
    except codec.ImageDecodeError as exc:
        raise BagError(
            f"{info.path}: ground-truth topic {topic} message at stamp {stamp}: {exc}"
        ) from None
    if shape is not None and tuple(arr.shape[:2]) != tuple(shape):
        raise BagError(
            f"{info.path}: ground-truth topic {topic} at stamp {stamp} is "
            f"{arr.shape[0]}x{arr.shape[1]} "
            f"but the camera frame is {shape[0]}x{shape[1]}"
        )
    if kind == "ood":
        bad = (arr > 1) & (arr != 255)
        if bad.any():
            values = sorted(int(v) for v in np.unique(arr[bad])[:5])
            raise BagError(
                f"{info.path}: OOD topic {topic} at stamp {stamp} has values {values}: OOD masks "
                "use "
                "0 (in-distribution), 1 (OOD), 255 (void); is it a trainId map? (use --gt-topic)"
            )
    return np.ascontiguousarray(arr)


def header_size(msgtype: str, msg: Any) -> tuple[int, int]:
    """(H, W) a camera message says it has, without decoding it: the Image fields, or the
    JPEG/PNG header of a CompressedImage; (0, 0) when that cannot be read (the frame path
    refuses such a frame and counts it by kind, as the node does)."""
    if msgtype == bagio.IMAGE:
        return int(msg.height), int(msg.width)
    try:
        header = codec.read_compressed_header(msg.data)
    except codec.ImageDecodeError:
        return 0, 0
    return int(header.height), int(header.width)


def _within(limits: codec.InputLimits, height: int, width: int) -> bool:
    try:
        limits.check(width, height, "frame")
    except codec.ImageDecodeError:
        return False
    return True


def scan(
    path: PathLike,
    image: Optional[str] = None,
    labels: Optional[str] = None,
    ood: Optional[str] = None,
    ground_truth: bool = True,
    limits: codec.InputLimits = codec.InputLimits(),
    limit: Optional[int] = None,
    progress: bool = False,
) -> ScanResult:
    """Open and validate the bag, read every selected message once and index the camera frames.

    Raises :class:`BagError` on anything that would stop the evaluation later. Camera frames
    are not decoded here: a frame the node would refuse (``limits``, a corrupt image) is the
    frame path's to count, not the bag's fault. ``limit``: only the first N camera frames (and
    their ground truth) count.
    """
    from tqdm import tqdm

    info = open_info(path)
    selection = select_topics(info, image, labels, ood, ground_truth)
    frames: list[FrameRef] = []
    by_stamp: dict[int, FrameRef] = {}
    gt_stamps: dict[str, dict[int, tuple[int, int]]] = {
        t: {} for t in (selection.labels, selection.ood) if t
    }
    total = sum(info.topics[t].count for t in selection.topics)
    bar = tqdm(
        total=total, desc="checking bag", disable=not progress, dynamic_ncols=True, leave=False
    )
    try:
        first_raw = b""
        for topic, msgtype, log_ns, raw, msg in read_messages(info, selection.topics):
            bar.update(1)
            stamp = bagio.stamp_ns(msg)
            if topic == selection.image:
                if limit is not None and len(frames) >= limit:
                    continue
                ref = _index_camera_frame(info, topic, msgtype, log_ns, msg, frames, by_stamp)
                ref.usable = _within(limits, ref.height, ref.width)
                first_raw = first_raw or (raw if ref.usable else b"")
            else:
                _index_ground_truth(info, selection, topic, msg, stamp, gt_stamps)
    finally:
        bar.close()
    if not frames:
        raise BagError(f"{info.path}: camera topic {selection.image} has no messages")
    if not any(ref.usable for ref in frames):
        raise BagError(
            f"{info.path}: none of the {len(frames)} camera frames on {selection.image} can be "
            f"decoded within the node's input limits (max_input_pixels {limits.max_pixels}, "
            f"at least {limits.min_side} pixels a side)"
        )
    result = ScanResult(info=info, selection=selection, frames=frames, first_raw=first_raw)
    _match_ground_truth(result, gt_stamps, by_stamp)
    return result


def _index_camera_frame(
    info: BagInfo,
    topic: str,
    msgtype: str,
    log_ns: int,
    msg: Any,
    frames: list[FrameRef],
    by_stamp: dict[int, FrameRef],
) -> FrameRef:
    """Append the camera message as the next frame; stamps must be unique (frames are matched
    to ground truth and node outputs by stamp)."""
    stamp = bagio.stamp_ns(msg)
    if stamp in by_stamp:
        raise BagError(
            f"{info.path}: camera topic {topic} has two messages with header stamp "
            f"{stamp} "
            "(frames are matched to ground truth and node outputs by stamp: stamps "
            "must be "
            "unique)"
        )
    h, w = header_size(msgtype, msg)
    ref = FrameRef(
        index=len(frames),
        stamp_ns=stamp,
        log_ns=log_ns,
        frame_id=str(msg.header.frame_id),
        height=h,
        width=w,
    )
    frames.append(ref)
    by_stamp[stamp] = ref
    return ref


def _index_ground_truth(
    info: BagInfo,
    selection: Selection,
    topic: str,
    msg: Any,
    stamp: int,
    gt_stamps: dict[str, dict[int, tuple[int, int]]],
) -> None:
    """Record the ground-truth message's size under its stamp (decoding it checks it)."""
    kind = "labels" if topic == selection.labels else "ood"
    arr = _gt_array(info, topic, msg, kind, None)
    if stamp in gt_stamps[topic]:
        raise BagError(
            f"{info.path}: ground-truth topic {topic} has two messages with header stamp {stamp}"
        )
    gt_stamps[topic][stamp] = tuple(arr.shape[:2])


def _match_ground_truth(
    result: ScanResult,
    gt_stamps: dict[str, dict[int, tuple[int, int]]],
    by_stamp: dict[int, FrameRef],
) -> None:
    """Mark the frames that have ground truth (same stamp, same size) and count the strays;
    a ground-truth topic that matches no frame at all is an error."""
    info, selection, frames = result.info, result.selection, result.frames
    for topic, stamps in gt_stamps.items():
        attr = "has_label" if topic == selection.labels else "has_ood"
        for ref in frames:
            shape = stamps.get(ref.stamp_ns)
            if shape is None:
                continue
            if ref.usable and tuple(shape) != (ref.height, ref.width):
                raise BagError(
                    f"{info.path}: ground-truth topic {topic} at stamp {ref.stamp_ns} is "
                    f"{shape[0]}x{shape[1]} but the camera frame is {ref.height}x{ref.width}"
                )
            setattr(ref, attr, True)
        result.gt_without_frame[topic] = sum(1 for s in stamps if s not in by_stamp)
        result.frames_without_gt[topic] = sum(1 for ref in frames if not getattr(ref, attr))
        if result.frames_without_gt[topic] == len(frames):
            raise BagError(
                f"{info.path}: no message on ground-truth topic {topic} has the header stamp of a "
                "frame on "
                f"{selection.image} (ground truth is matched by header stamp)"
            )


def iter_frames(scan_result: ScanResult) -> Iterator[Frame]:
    """Camera frames in bag order, each with its ground truth (by header stamp)."""
    sel = scan_result.selection
    info = scan_result.info
    refs = {ref.stamp_ns: ref for ref in scan_result.frames}
    pending: deque[int] = deque()
    images: dict[int, tuple[int, bytes, Any]] = {}
    gt: dict[str, dict[int, tuple[np.ndarray, bytes, int]]] = {
        t: {} for t in (sel.labels, sel.ood) if t
    }
    emitted = 0

    def ready(stamp: int) -> bool:
        ref = refs[stamp]
        if stamp not in images:
            return False
        if sel.labels and ref.has_label and stamp not in gt[sel.labels]:
            return False
        if sel.ood and ref.has_ood and stamp not in gt[sel.ood]:
            return False
        return True

    def emit(stamp: int) -> Frame:
        ref = refs[stamp]
        log_ns, raw, msg = images.pop(stamp)
        frame = Frame(
            index=ref.index, stamp_ns=stamp, log_ns=log_ns, frame_id=ref.frame_id, raw=raw, msg=msg
        )
        if sel.labels and stamp in gt[sel.labels]:
            frame.label, frame.label_raw, frame.label_log_ns = gt[sel.labels].pop(stamp)
        if sel.ood and stamp in gt[sel.ood]:
            frame.ood, frame.ood_raw, frame.ood_log_ns = gt[sel.ood].pop(stamp)
        return frame

    for topic, msgtype, log_ns, raw, msg in read_messages(info, sel.topics):
        stamp = bagio.stamp_ns(msg)
        if stamp not in refs:
            continue  # beyond --limit, or ground truth without a camera frame
        if topic == sel.image:
            images[stamp] = (log_ns, raw, msg)
            pending.append(stamp)
        else:
            kind = "labels" if topic == sel.labels else "ood"
            ref = refs[stamp]
            shape = (ref.height, ref.width) if ref.usable else None
            gt[topic][stamp] = (_gt_array(info, topic, msg, kind, shape), raw, log_ns)
        while pending and ready(pending[0]):
            yield emit(pending.popleft())
            emitted += 1
    while pending:
        stamp = pending.popleft()
        if stamp in images:
            yield emit(stamp)
            emitted += 1
    if emitted != len(scan_result.frames):
        raise BagError(
            f"{info.path}: read {emitted} camera frames on {sel.image} but the first pass found "
            f"{len(scan_result.frames)}: the bag changed while it was being evaluated"
        )
