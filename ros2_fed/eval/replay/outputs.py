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

OUTPUT_NAMES = ("segmentation", "segmentation_color", "confidence", "overlay", "alerts")
OUTPUT_TYPES = {"segmentation": bagio.IMAGE, "segmentation_color": bagio.IMAGE, "confidence": bagio.IMAGE,
                "overlay": bagio.IMAGE, "alerts": bagio.DIAGNOSTIC_ARRAY}
REQUIRED_OUTPUTS = ("segmentation", "confidence")  # what the metrics need
#: fed_node's defaults for the parameters a replay applies itself (tests check them against node.py).
NODE_DEFAULTS: dict[str, Any] = {
    "viz.confidence_min": 0.0,
    "viz.confidence_max": 1.0,
    "viz.overlay_alpha": 0.5,
    "alerts.confidence_threshold": 0.5,
    "alerts.warn_fraction": 0.1,
    "alerts.error_fraction": 0.25,
    "alerts.hysteresis": 0.02,
    "alerts.raise_frames": 3,
    "alerts.clear_frames": 5,
    "alerts.roi": "full",
    "alerts.roi_mask_file": "",
}
LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


@dataclass
class AlertRecord:
    level: int
    message: str = ""
    values: dict[str, str] = field(default_factory=dict)

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


def alert_config(params: dict[str, Any]) -> Any:
    from ros2_fed import alerts

    merged = {**NODE_DEFAULTS, **params}
    return alerts.AlertConfig(**{k[len("alerts."):]: v for k, v in merged.items() if k.startswith("alerts.")})


def alert_record(state: Any) -> AlertRecord:
    """An ``AlertMonitor`` state as fed_node puts it in its DiagnosticStatus."""
    values = {str(k): str(v) for k, v in vars(state).items() if k not in ("level", "message")}
    return AlertRecord(level=int(state.level), message=str(getattr(state, "message", "")), values=values)


def alert_from_message(msg: Any) -> Optional[AlertRecord]:
    """The first status of a recorded ``~/alerts`` DiagnosticArray."""
    if not msg.status:
        return None
    status = msg.status[0]
    level = status.level
    level = level[0] if isinstance(level, (bytes, bytearray)) else int(level)
    return AlertRecord(level=int(level), message=str(status.message),
                       values={str(kv.key): str(kv.value) for kv in status.values})


class OutputRenderer:
    """fed_node's output messages for one frame (same viz calls, same header)."""

    def __init__(self, metadata: dict[str, Any], params: dict[str, Any], node_name: str = "fed_node") -> None:
        from ros2_fed import alerts, viz

        merged = {**NODE_DEFAULTS, **params}
        palette = metadata.get("palette")
        names = metadata.get("class_names") or []
        arr = np.asarray(palette, dtype=np.uint8) if palette is not None else None
        self.palette = arr if arr is not None and arr.ndim == 2 and arr.shape[1] == 3 and len(arr) \
            else viz.default_palette(max(len(names), 1))
        self.viz_min = float(merged["viz.confidence_min"])
        self.viz_max = float(merged["viz.confidence_max"])
        self.alpha = float(merged["viz.overlay_alpha"])
        self.threshold = float(merged["alerts.confidence_threshold"])
        self.monitor = alerts.AlertMonitor(alert_config(params))
        self.alert_name = f"{node_name.strip('/')}: alerts"
        self.hardware_id = f"{metadata.get('runtime', 'engine')}:{metadata.get('device') or 'default'}"

    def alert(self, confidence: np.ndarray, stamp_ns: int) -> AlertRecord:
        sec, nanosec = bagio.split_stamp(stamp_ns)
        return alert_record(self.monitor.update(confidence, (sec, nanosec)))

    def messages(self, rgb: np.ndarray, labels: np.ndarray, confidence: np.ndarray, stamp_ns: int, frame_id: str,
                 alert: Optional[AlertRecord], wanted: Iterable[str]) -> dict[str, Any]:
        from ros2_fed import viz

        wanted = set(wanted)
        out: dict[str, Any] = {}
        if "segmentation" in wanted:
            out["segmentation"] = bagio.image_message(labels, "mono8", stamp_ns, frame_id)
        if "confidence" in wanted:
            out["confidence"] = bagio.image_message(confidence.astype(np.float32, copy=False), "32FC1", stamp_ns,
                                                    frame_id)
        if "segmentation_color" in wanted:
            out["segmentation_color"] = bagio.image_message(viz.colorize(labels, self.palette), "rgb8", stamp_ns,
                                                            frame_id)
        if "overlay" in wanted:
            colours = viz.confidence_to_rgb(confidence, self.viz_min, self.viz_max)
            out["overlay"] = bagio.image_message(viz.overlay(rgb, colours, self.alpha), "rgb8", stamp_ns, frame_id)
        if "alerts" in wanted and alert is not None:
            out["alerts"] = bagio.diagnostic_array(stamp_ns, frame_id, [{
                "level": alert.level, "name": self.alert_name, "message": alert.message,
                "hardware_id": self.hardware_id, "values": alert.values}])
        return out
