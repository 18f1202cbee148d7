"""The node's outputs as bag messages, and what one replayed frame produced.

:class:`OutputRenderer` turns ``(rgb, labels, confidence)`` into the messages fed_node
publishes (``~/segmentation`` mono8, ``~/segmentation_color`` rgb8, ``~/confidence`` 32FC1,
``~/overlay`` rgb8, ``~/alerts`` DiagnosticArray) with the same ``ros2_fed.viz`` /
``ros2_fed.alerts`` calls and the input header, so an offline run's output bag looks like a
live one's. Pure python (rosbags messages, no rclpy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np

from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay.bag import Frame
from ros2_fed.pipeline import (
    NODE_NAME,
    OutputSettings,
    alert_config,
    alert_values,
    hardware_id,
    model_calibration,
    output_images,
    viz_palette,
)

OUTPUT_TYPES = {
    "segmentation": bagio.IMAGE,
    "segmentation_color": bagio.IMAGE,
    "confidence": bagio.IMAGE,
    "overlay": bagio.IMAGE,
    "alerts": bagio.DIAGNOSTIC_ARRAY,
}
REQUIRED_OUTPUTS = ("segmentation", "confidence")  # what the metrics need
LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


@dataclass
class AlertRecord:
    level: int
    message: str = ""
    values: dict[str, str] = field(default_factory=dict)

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


def alert_record(state: Any) -> AlertRecord:
    """An ``AlertMonitor`` state as fed_node puts it in its DiagnosticStatus."""
    return AlertRecord(
        level=int(state.level),
        message=str(getattr(state, "message", "")),
        values=alert_values(state),
    )


def alert_from_message(msg: Any) -> Optional[AlertRecord]:
    """The first status of a recorded ``~/alerts`` DiagnosticArray."""
    if not msg.status:
        return None
    status = msg.status[0]
    level = status.level
    level = level[0] if isinstance(level, (bytes, bytearray)) else int(level)
    return AlertRecord(
        level=int(level),
        message=str(status.message),
        values={str(kv.key): str(kv.value) for kv in status.values},
    )


class OutputRenderer:
    """fed_node's output messages for one frame (same viz calls, same header)."""

    def __init__(
        self, metadata: dict[str, Any], params: dict[str, Any], node_name: str = NODE_NAME
    ) -> None:
        from ros2_fed import alerts

        calibration = model_calibration(metadata)  # as fed_node: the engine's operating point
        self.settings = OutputSettings.from_params(params, calibration)
        self.palette = viz_palette(metadata)
        config = alert_config(params, calibration, metadata.get("class_names"))  # as fed_node
        self.monitor = alerts.AlertMonitor(config)
        self.alert_name = f"{node_name.strip('/')}: alerts"
        self.hardware_id = hardware_id(metadata)

    def alert(
        self, confidence: np.ndarray, stamp_ns: int, labels: Optional[np.ndarray] = None
    ) -> AlertRecord:
        sec, nanosec = bagio.split_stamp(stamp_ns)
        return alert_record(self.monitor.update(confidence, (sec, nanosec), labels=labels))

    def messages(
        self,
        rgb: np.ndarray,
        labels: np.ndarray,
        confidence: np.ndarray,
        stamp_ns: int,
        frame_id: str,
        alert: Optional[AlertRecord],
        wanted: Iterable[str],
    ) -> dict[str, Any]:
        wanted = set(wanted)
        out: dict[str, Any] = {
            name: bagio.image_message(image, encoding, stamp_ns, frame_id)
            for name, (image, encoding) in output_images(
                rgb, labels, confidence, self.settings, self.palette, wanted
            ).items()
        }
        if "alerts" in wanted and alert is not None:
            out["alerts"] = bagio.diagnostic_array(
                stamp_ns,
                frame_id,
                [
                    {
                        "level": alert.level,
                        "name": self.alert_name,
                        "message": alert.message,
                        "hardware_id": self.hardware_id,
                        "values": alert.values,
                    }
                ],
            )
        return out
