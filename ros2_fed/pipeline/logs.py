"""What fed_node says in its log about the frame path, without ROS.

Why apart from the node: which lines a bad frame, a decoding guess or a host resize deserve,
and how often, is a decision with edges (each kind's first line at once, later ones throttled
per kind), tested here without a ROS graph; the node only hands the lines to its logger.
Lines are ``(severity, text)`` with severity ``"error"``, ``"warning"`` or ``"info"``.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Mapping, Optional, Sequence

from ros2_fed.health import KindThrottle, WatchdogState

from .outputs import ALERT_STAGE
from .processor import CameraResult, FrameProcessor

Line = tuple[str, str]


class FrameLog:
    """Lines about the input, frame by frame: a refused frame (each kind's first at once, later
    ones at most one per ``throttle_s`` and kind), a decoding guess (once per kind), a host
    resize (once per camera)."""

    def __init__(self, throttle_s: float, engine_shape: Optional[tuple[int, int]]) -> None:
        self.bad_input = KindThrottle(throttle_s)
        self._notes = KindThrottle(math.inf)
        self._shape = engine_shape
        self._resized: set[str] = set()

    def lines(self, result: CameraResult) -> list[Line]:
        label = f"{result.camera}: " if result.camera else ""
        out = []
        if result.bad_input is not None:
            decision = self.bad_input.allow(result.bad_input.kind)
            if decision.log:
                frame_id = getattr(getattr(result.message, "header", None), "frame_id", "")
                text = (
                    f"skipping bad input frame ({result.bad_input.kind}): {result.bad_input} "
                    f"[frame_id={frame_id!r}; {result.bad_input_total} bad frames so far]"
                )
                out.append(("error", label + text + decision.suffix()))
        for note in result.notes:
            if self._notes.allow(note.kind).log:
                text = (
                    f"input ({note.kind}): {note.message} [logged once; every such frame is "
                    f"counted in /diagnostics input_notes.{note.kind}]"
                )
                out.append(("warning", label + text))
        if result.resized and self._shape and result.camera not in self._resized:
            self._resized.add(result.camera)
            (h, w), (eh, ew) = result.rgb.shape[:2], self._shape
            text = (
                f"camera frames are {h}x{w} but the engine takes {eh}x{ew}: resizing on the "
                "host every frame; export an engine for the camera size to avoid it"
            )
            out.append(("warning", label + text))
        return out

    def suppressed(self) -> int:
        """Bad-input lines held back so far (all kinds)."""
        return sum(self.bad_input.suppressed().values())


def ready_report(
    processor: FrameProcessor,
    params: Mapping[str, Any],
    topics: Sequence[str],
    load_s: float,
    warm_ms: float,
) -> list[Line]:
    """The node's "ready" line, after a warning when the cameras outnumber the engine's batch."""
    meta, (batch, dynamic) = processor.model.metadata, processor.batch
    out = []
    cameras = len(processor.cameras)
    if cameras > batch:
        text = (
            f"{cameras} cameras but the engine runs batches of {batch}: a batch of {cameras} "
            f"frames takes {-(-cameras // batch)} runs; export the engine with --batch "
            f"{cameras} (or leave engine_path empty: the cached engine is built for it)"
        )
        out.append(("warning", text))
    name = processor.engine.path or meta.get("name") or type(processor.engine).__name__
    batching = f", batch {batch} {'dynamic' if dynamic else 'fixed'}" if batch > 1 else ""
    engine = f"{meta.get('runtime', '?')}, score {meta.get('score', '?')}"
    listening = f"{', '.join(topics)} ({params['input_transport']}, "
    listening += f"{params['input_qos.reliability']})"
    torch = "loaded" if "torch" in sys.modules else "not loaded"
    text = (
        f"ready: engine {name} ({engine}, input {processor.shape}{batching}) loaded in "
        f"{load_s:.2f} s, warm-up {warm_ms:.1f} ms/frame; listening on {listening}; alert "
        f"threshold {alert_threshold(processor, params)}; torch {torch}"
    )
    out.append(("info", text))
    return out


def alert_threshold(processor: FrameProcessor, params: Mapping[str, Any]) -> str:
    """The alert threshold in effect and where it comes from (explicit, calibrated, default)."""
    config = processor.stage(ALERT_STAGE).config
    if params["alerts.confidence_threshold"] >= 0:
        source = "explicit"
    else:
        source = "calibrated" if processor.model.calibration else "uncalibrated default"
    return f"{config.confidence_threshold:.4f} ({source})"


def watchdog_lines(camera: str, state: WatchdogState) -> list[Line]:
    """A camera's watchdog changed level: what it says now, or that all is well again."""
    label = f"{camera}: " if camera else ""
    if state.message:
        return [("warning", f"{label}watchdog: {state.message}")]
    return [("info", f"{label}watchdog: input and engine are back to normal")]
