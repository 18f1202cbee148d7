"""``--offline``: the engine fed_node would open, run in-process over every frame, at full speed.

No ROS 2 graph, no dropped frames: every camera frame is decoded with the node's decoder,
run through the engine exactly as the node runs it (host resize included), and its outputs
are rendered with the node's viz/alert code and written to the output bag under the node's
topic names. Latency here is decode + inference per frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay.bagio import BagWriter
from ros2_fed.eval.replay.outputs import FrameOutput, OutputRenderer
from ros2_fed.pipeline import ModelSpec, engine_shape, infer_at_camera_size, open_engine, warm_up


@dataclass
class OfflineStats:
    engine_metadata: dict[str, Any] = field(default_factory=dict)
    load_s: float = 0.0
    processing_s: float = 0.0  # sum of per-frame decode + inference
    wall_s: float = 0.0  # the whole loop incl. writing the output bag
    frames: int = 0


def run_offline(
    scan: bagmod.ScanResult,
    spec: ModelSpec,
    writer: Optional[BagWriter],
    topics: dict[str, str],
    params: dict[str, Any],
    warmup_runs: int = 3,
    log: Callable[[str], None] = print,
    stats: Optional[OfflineStats] = None,
    copy_inputs: bool = True,
) -> Iterator[FrameOutput]:
    """Yield one :class:`FrameOutput` per camera frame; writes inputs + outputs to ``writer``.

    ``topics``: output name -> topic to write it under (the outputs to record).
    """
    stats = stats if stats is not None else OfflineStats()
    t0 = time.monotonic()
    engine = open_engine(spec, progress=lambda msg: log(f"engine: {msg}"))
    stats.load_s = time.monotonic() - t0
    try:
        metadata = dict(getattr(engine, "metadata", {}) or {})
        stats.engine_metadata = metadata
        shape = engine_shape(engine)
        renderer = OutputRenderer(metadata, params)
        first = scan.frames[0]
        warm_up(engine, int(warmup_runs), shape or (first.height or 480, first.width or 640))
        sel = scan.selection
        loop_start = time.monotonic()
        for frame in bagmod.iter_frames(scan):
            t = time.monotonic()
            rgb = frame.rgb()
            labels, confidence = infer_at_camera_size(engine, rgb, shape)
            latency = time.monotonic() - t
            stats.processing_s += latency
            stats.frames += 1
            alert = renderer.alert(confidence, frame.stamp_ns, labels=labels)  # as fed_node
            if writer is not None:
                if copy_inputs:
                    write_inputs(writer, sel, frame)
                log_ns = frame.log_ns + int(latency * 1e9)
                for name, msg in renderer.messages(
                    rgb, labels, confidence, frame.stamp_ns, frame.frame_id, alert, topics
                ).items():
                    writer.write(topics[name], log_ns, msg)
            yield FrameOutput(
                frame=frame,
                rgb=rgb,
                labels=labels,
                confidence=confidence,
                latency_s=latency,
                alert=alert,
            )
        stats.wall_s = time.monotonic() - loop_start
    finally:
        closer = getattr(engine, "close", None)
        if callable(closer):
            closer()


def write_inputs(writer: BagWriter, sel: bagmod.Selection, frame: bagmod.Frame) -> None:
    """The camera message and its ground truth, byte for byte as in the input bag."""
    writer.write(sel.image, frame.log_ns, frame.raw)
    if sel.labels and frame.label_raw is not None:
        writer.write(sel.labels, frame.label_log_ns or frame.log_ns, frame.label_raw)
    if sel.ood and frame.ood_raw is not None:
        writer.write(sel.ood, frame.ood_log_ns or frame.log_ns, frame.ood_raw)
