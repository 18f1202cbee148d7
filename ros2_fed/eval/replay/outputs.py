"""The node's outputs as bag messages, and what one replayed frame produced.

The outputs themselves come from the frame path (:mod:`ros2_fed.pipeline.outputs`, the table
the node publishes from); here they only become rosbags messages with the input's header
(:func:`bag_messages`), so an offline run's output bag holds what a live one records. An alert
is kept as the :class:`AlertRecord` the report reads, from the frame path's status or from a
recorded ``~/alerts`` message. Pure python (rosbags messages, no rclpy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay.bag import Frame
from ros2_fed.health import Status
from ros2_fed.pipeline.outputs import OUTPUT_BY_NAME, OUTPUTS, SCENE_STAGE

#: The message type of every output topic (from the outputs table).
OUTPUT_TYPES = {output.name: output.message for output in OUTPUTS}
REQUIRED_OUTPUTS = ("segmentation", "confidence")  # what the metrics need
LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


@dataclass
class AlertRecord:
    """One diagnostic status as the report keeps it (the alert status, or the scene status:
    ``scene`` is the scene status that came with an alert status on ``~/alerts``)."""

    level: int
    message: str = ""
    values: dict[str, str] = field(default_factory=dict)
    scene: Optional["AlertRecord"] = None

    @property
    def region_size(self) -> Optional[float]:
        """The alert rule's measure: largest uncertain region, in image heights."""
        try:
            return float(self.values["region_size"])
        except (KeyError, ValueError):
            return None

    @property
    def fraction(self) -> Optional[float]:
        for key in ("uncertain_fraction", "fraction"):
            if key in self.values:
                try:
                    return float(self.values[key])
                except ValueError:
                    return None
        return None


@dataclass
class FrameOutput:
    """One replayed frame: the input (with ground truth) and what the node made of it."""

    frame: Frame
    rgb: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    latency_s: float  # offline: decode + inference; live: publish -> last required output received
    alert: Optional[AlertRecord] = None
    scene: Optional[AlertRecord] = None  # the scene status (ros2_fed.scene)


def alert_record(status: Optional[Status]) -> Optional[AlertRecord]:
    """The frame path's alert status as the report keeps it."""
    if status is None:
        return None
    return AlertRecord(int(status.level), str(status.message), dict(status.values))


def alert_from_message(msg: Any) -> Optional[AlertRecord]:
    """The first status of a recorded ``~/alerts`` DiagnosticArray, with the scene status that
    follows it (name ending in ``scene``) as its ``scene``."""
    if not msg.status:
        return None
    record = _record(msg.status[0])
    scenes = [s for s in msg.status[1:] if str(s.name).endswith(SCENE_STAGE)]
    record.scene = _record(scenes[0]) if scenes else None
    return record


def _record(status: Any) -> AlertRecord:
    level = status.level
    level = level[0] if isinstance(level, (bytes, bytearray)) else int(level)
    return AlertRecord(
        level=int(level),
        message=str(status.message),
        values={str(kv.key): str(kv.value) for kv in status.values},
    )


def bag_messages(payloads: Mapping[str, Any], stamp_ns: int, frame_id: str) -> dict[str, Any]:
    """Rendered outputs (:meth:`FrameProcessor.render`) as rosbags messages with the input's
    header: images in the row's encoding, diagnostics as a DiagnosticArray."""
    out: dict[str, Any] = {}
    for name, payload in payloads.items():
        output = OUTPUT_BY_NAME[name]
        if output.is_image:
            out[name] = bagio.image_message(payload, output.encoding, stamp_ns, frame_id)
        else:
            statuses = [
                {
                    "level": s.level,
                    "name": s.name,
                    "message": s.message,
                    "hardware_id": s.hardware_id,
                    "values": s.values,
                }
                for s in payload
            ]
            out[name] = bagio.diagnostic_array(stamp_ns, frame_id, statuses)
    return out
