"""The recording stage of the frame path: buffer everything, trigger clips, hand them to disk.

The node (and the replay) feed it twice: :meth:`RecordStage.observe` with every camera message
as it arrives (before the newest-frame mailbox, so frames the engine skipped are recorded too),
and :meth:`RecordStage.update` with every processed frame (its confidence map and statuses, and
the alert / scene levels that trigger clips). Clips are cut by header stamps, so a replay of a
drive cuts the clips the node cut on it. A stage without ``record.enabled`` costs nothing and
has no status.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ros2_fed.cameras import output_topic
from ros2_fed.health import Status
from ros2_fed.pipeline.outputs import ALERT_STAGE, SCENE_STAGE

from .buffer import ENTRY_OVERHEAD, Entry, RollingBuffer
from .config import RecordConfig
from .planner import ClipPlanner, Trigger
from .writer import ClipWriter

RECORD_STAGE = "record"
CONFIDENCE_OUTPUT = "confidence/compressed"  # the 8-bit confidence map's topic in a clip
SEGMENTATION_OUTPUT = "segmentation/compressed"  # train ids as a PNG: a labeller's pre-label
STATUS_OUTPUT = "alerts"  # the alert and scene statuses, as on the node's ~/alerts
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
LEVELS = {"OK": 0, "WARN": 1, "ERROR": 2}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}
#: Buffer history beyond ``record.before``: a trigger frame's own messages arrive before it is
#: judged, and a camera's messages may lag its stamps a little.
SLACK_NS = 500_000_000


def stamp_ns(stamp: Any) -> Optional[int]:
    """A header stamp in nanoseconds; None without one."""
    try:
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    except (AttributeError, TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=None)
def msgdef(msgtype: str) -> str:
    """The ROS 2 message definition MCAP stores as a channel's schema (rosbag2's layout)."""
    from ros2_fed.messages import typestore

    return typestore().generate_msgdef(msgtype, ros_version=2)[0]


def _encode_mono(payload: tuple[np.ndarray, int, str, str]) -> bytes:
    """An 8-bit map (confidence 0..255, train ids) as a CompressedImage's CDR."""
    from ros2_fed.messages import compressed_message, serialize

    image, stamp, frame_id, fmt = payload
    return serialize(compressed_message(image, stamp, frame_id, fmt=fmt, quality=90))


def _encode_statuses(payload: tuple[list[Status], int, str]) -> bytes:
    from ros2_fed.messages import diagnostic_array, serialize

    statuses, stamp, frame_id = payload
    dicts = [
        {
            "level": s.level,
            "name": s.name,
            "message": s.message,
            "hardware_id": s.hardware_id,
            "values": s.values,
        }
        for s in statuses
    ]
    return serialize(diagnostic_array(stamp, frame_id, dicts))


def confidence_u8(confidence: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1] as 0..255, rounded (NaN -> 0: a broken map must not look certain).
    One OpenCV pass after the clamp at 0 (NaN stays NaN there and saturates to 0): a sixth of
    numpy's cost at 512x1024, on the frame path."""
    import cv2

    return cv2.convertScaleAbs(np.maximum(np.asarray(confidence, np.float32), 0.0), alpha=255.0)


class RecordStage:
    """Clip recording (:mod:`ros2_fed.recording`), configured by the ``record.*`` parameters."""

    name = RECORD_STAGE
    parameter_prefix = "record."

    def __init__(self, model: Any, cameras: Sequence[str]) -> None:
        metadata: Mapping[str, Any] = getattr(model, "metadata", {}) or {}
        self._model_hash = str(metadata.get("model_hash", ""))
        self._cameras = tuple(cameras)
        self._node = "fed_node"
        self._lock = threading.Lock()
        self._config = RecordConfig()
        self._buffer = RollingBuffer(0, 0)
        self._planner = ClipPlanner(0, 0, 0, 0)
        self._writer: Optional[ClipWriter] = None
        self._levels: dict[tuple[str, str], int] = {}
        self._newest: dict[str, int] = {}  # each camera's newest processed stamp

    # -- configuration ---------------------------------------------------------------------

    def bind_node(self, node_name: str) -> None:
        """The node's name: a clip's topics are the node's absolute topic names."""
        self._node = node_name.strip("/") or self._node

    def configure(self, params: Mapping[str, Any]) -> tuple[RecordConfig, float]:
        """The ``record.*`` settings and the node's error-log throttle; ValueError for an
        unusable combination (recording on without a folder)."""
        from ros2_fed.pipeline.params import record_config, with_defaults

        throttle = float(with_defaults(params)["diagnostics.error_log_throttle"])
        return record_config(params), throttle

    def apply(self, settings: tuple[RecordConfig, float]) -> None:
        """Take new settings: a new folder (or recording off) finishes the open clip in the old
        one; the old writer finishes its queue off the frame path's lock."""
        config, throttle = settings
        retired = None
        with self._lock:
            old, self._config = self._config, config
            self._buffer.configure(config.before_ns + SLACK_NS, config.max_buffer_bytes)
            self._planner.configure(
                config.before_ns, config.after_ns, config.min_interval_ns, config.max_buffer_bytes
            )
            if self._writer is not None and (not config.enabled or old.dir != config.dir):
                self._finish_open_clip()
                retired, self._writer = self._writer, None
                self._buffer.clear()
            if config.enabled and self._writer is None:
                self._writer = ClipWriter(
                    config.dir, config.max_total_bytes, self._model_hash, msgdef, throttle
                )
            if self._writer is not None:
                self._writer.max_total_bytes = config.max_total_bytes
        if retired is not None:
            retired.close()

    @property
    def config(self) -> RecordConfig:
        return self._config

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    # -- input -------------------------------------------------------------------------

    def observe(
        self,
        topic: str,
        msgtype: str,
        message: Any,
        nbytes: int,
        stamp: int,
        encode: Optional[Callable[[Any], bytes]] = None,
    ) -> None:
        """One camera message as received (any thread): ``message`` is its CDR bytes, or an
        object ``encode`` serialises on the writer thread; ``nbytes`` its size."""
        if self._writer is None:
            return
        entry = Entry(topic, msgtype, int(stamp), message, int(nbytes) + ENTRY_OVERHEAD, encode)
        with self._lock:
            self._add(entry)

    def update(self, camera: str, frame: Any) -> None:
        """One processed frame: its confidence map and statuses join the buffer; a rising
        alert or scene level triggers a clip; the clip whose end this frame passes is written.
        A sink: its status is the node's (:meth:`node_status`), not a camera's."""
        if self._writer is None:
            return None
        stamp = stamp_ns(frame.stamp)
        with self._lock:
            if stamp is None or self._writer is None:
                return None
            self._newest[camera] = stamp
            self._close(self._planner.due(stamp))
            for entry in self._frame_entries(camera, frame, stamp):
                self._add(entry)
            for trigger in self._triggers(camera, frame.statuses, stamp):
                self._trigger(trigger)
            self._note_region(frame.statuses.get(ALERT_STAGE))
        return None

    def node_status(self) -> Optional[Status]:
        """The recorder on /diagnostics (``fed_node: record``): on, clips, bytes, last error;
        None while recording is off."""
        with self._lock:
            return self._status() if self._writer is not None else None

    def save_clip(self, camera: str = "") -> tuple[bool, str]:
        """The driver's button (``~/save_clip``): a clip around the newest frame."""
        with self._lock:
            if self._writer is None:
                return False, "recording is off (set record.enabled and record.dir)"
            stamps = {c: s for c, s in self._newest.items() if not camera or c == camera}
            if not stamps:
                return False, "no frame processed yet"
            cam = max(stamps, key=stamps.get)
            result = self._trigger(
                Trigger("manual", cam, stamps[cam], "", "requested by ~/save_clip")
            )
            return True, f"clip {result} at stamp {stamps[cam]}"

    def reset(self, camera: str) -> None:
        """Time went backwards: the open clip is written as it is, the history dropped."""
        with self._lock:
            self._finish_open_clip()
            self._planner.reset()
            self._buffer.clear()
            self._levels = {k: v for k, v in self._levels.items() if k[0] != camera}
            self._newest.pop(camera, None)

    def close(self) -> None:
        """The stream ended: write the open clip as it is and wait for the disk."""
        with self._lock:
            self._finish_open_clip()
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def drain_lines(self) -> list[tuple[str, str]]:
        writer = self._writer
        return writer.drain_lines() if writer is not None else []

    def wait_idle(self, timeout: float = 30.0) -> bool:
        writer = self._writer
        return writer.wait_idle(timeout) if writer is not None else True

    # -- inside the lock -----------------------------------------------------------------

    def _add(self, entry: Entry) -> None:
        self._buffer.add(entry)
        self._planner.add(entry)

    def _frame_entries(self, camera: str, frame: Any, stamp: int) -> list[Entry]:
        frame_id = str(getattr(getattr(frame.message, "header", None), "frame_id", ""))
        out = []
        fmt = self._config.confidence_format
        if fmt != "off" and frame.confidence is not None:
            image = confidence_u8(frame.confidence)
            out.append(
                Entry(
                    self._topic(camera, CONFIDENCE_OUTPUT),
                    COMPRESSED_IMAGE,
                    stamp,
                    (image, stamp, frame_id, fmt),
                    image.nbytes + ENTRY_OVERHEAD,
                    _encode_mono,
                )  # fmt: skip
            )
        if frame.labels is not None:  # train ids compress to almost nothing as a PNG
            labels = np.array(frame.labels, dtype=np.uint8)
            out.append(
                Entry(
                    self._topic(camera, SEGMENTATION_OUTPUT),
                    COMPRESSED_IMAGE,
                    stamp,
                    (labels, stamp, frame_id, "png"),
                    labels.nbytes + ENTRY_OVERHEAD,
                    _encode_mono,
                )  # fmt: skip
            )
        statuses = [frame.statuses[n] for n in (ALERT_STAGE, SCENE_STAGE) if n in frame.statuses]
        if statuses:
            out.append(
                Entry(
                    self._topic(camera, STATUS_OUTPUT),
                    DIAGNOSTIC_ARRAY,
                    stamp,
                    (statuses, stamp, frame_id),
                    1024,
                    _encode_statuses,
                )  # fmt: skip
            )
        return out

    def _topic(self, camera: str, output: str) -> str:
        return "/" + self._node + output_topic(camera, output)[1:]

    def _triggers(self, camera: str, statuses: Mapping[str, Status], stamp: int) -> list[Trigger]:
        """Alert and scene levels that rose to their trigger level on this frame."""
        cfg = self._config
        wanted = [(ALERT_STAGE, "alert", LEVELS.get(cfg.min_alert_level))]
        if cfg.scene:
            wanted.append((SCENE_STAGE, "scene", LEVELS["WARN"]))
        out = []
        for stage, reason, limit in wanted:
            status = statuses.get(stage)
            if status is None:
                continue
            previous = self._levels.get((camera, stage), 0)
            self._levels[(camera, stage)] = int(status.level)
            if limit is not None and previous < limit <= int(status.level):
                name = LEVEL_NAMES.get(int(status.level), str(status.level))
                out.append(Trigger(reason, camera, stamp, name, status.message))
        return out

    def _trigger(self, trigger: Trigger) -> str:
        history = self._buffer.since(trigger.stamp_ns - self._config.before_ns)
        return self._planner.trigger(trigger, history)

    def _note_region(self, alert: Optional[Status]) -> None:
        """The open clip remembers the largest uncertain region the alert saw in it."""
        clip = self._planner.open
        if clip is None or alert is None:
            return
        try:
            size = float(alert.values.get("region_size", "nan"))
        except ValueError:
            return
        if size == size and size > float(clip.region.get("size", -1.0)):
            clip.region = {
                "size": size,
                "bbox": alert.values.get("region_bbox", ""),
                "area": alert.values.get("region_area", ""),
            }

    def _close(self, clip: Any) -> None:
        if clip is not None and self._writer is not None:
            self._writer.submit(clip)

    def _finish_open_clip(self) -> None:
        self._close(self._planner.flush())

    def _status(self) -> Status:
        stats = self._writer.stats()
        values = {
            "recording": "on",
            "dir": str(self._config.dir),
            "clips_written": str(stats.clips_written),
            "clips_deleted": str(stats.clips_deleted),
            "clips_dropped": str(stats.clips_dropped),
            "clips_rate_limited": str(self._planner.rate_limited),
            "bytes_used": str(stats.bytes_used),
            "buffer_bytes": str(self._buffer.nbytes),
            "clip_open": str(self._planner.open is not None).lower(),
            "last_clip": stats.last_clip,
            "errors": str(stats.errors),
            "last_error": stats.last_error,
        }
        level = 1 if stats.failing else 0
        message = f"recording: {stats.clips_written} clips, {stats.bytes_used / 1e6:.1f} MB" + (
            f"; last error: {stats.last_error}" if level else ""
        )
        return Status(level, message, values)
