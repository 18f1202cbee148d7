"""``--offline``: the engine fed_node would open, run in this process through the node's own
frame path, over every frame of one camera or of a rig, as fast as possible.

No ROS graph and no dropped frames: camera frames arrive in the bag's log-time order, the frames
of one stamp form one batch the way the node's worker takes them
(:func:`ros2_fed.cameras.stamp_batches`), and the node's
:class:`~ros2_fed.pipeline.processor.FrameProcessor` runs each batch: decoding under the node's
limits (a refused frame is counted under the node's kind names and not scored), one engine
batch, the alert stage, and the outputs to record, which go into each camera's output bag
under the node's topic names. Latency here is a frame's decode plus its batch's inference.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ros2_fed.cameras import stamp_batches
from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay.bagio import BagWriter
from ros2_fed.eval.replay.outputs import FrameOutput, alert_record, bag_messages
from ros2_fed.pipeline.model_spec import ModelSpec, open_engine
from ros2_fed.pipeline.outputs import ALERT_STAGE, SCENE_STAGE
from ros2_fed.pipeline.processor import CameraResult, FrameProcessor


@dataclass
class OfflineStats:
    """One camera's side of an offline run."""

    engine_metadata: dict[str, Any] = field(default_factory=dict)
    load_s: float = 0.0
    processing_s: float = 0.0  # its share of the frame path's time (decode, engine, stages)
    wall_s: float = 0.0  # the whole loop incl. writing the output bags
    frames: int = 0  # frames through the frame path, refused ones included
    bad_input: dict[str, int] = field(default_factory=dict)  # refused frames by the node's kind
    input_notes: dict[str, int] = field(default_factory=dict)
    engine_batches: dict[str, str] = field(default_factory=dict)  # the run's, as /diagnostics


@dataclass
class CameraStream:
    """One camera of an offline run: its frames, where its outputs go, its counters.
    ``name``: the node's camera name ("" for a single camera)."""

    name: str
    scan: bagmod.ScanResult
    writer: Optional[BagWriter] = None
    topics: dict[str, str] = field(default_factory=dict)  # output name -> topic to record it on
    copy_inputs: bool = True
    stats: OfflineStats = field(default_factory=OfflineStats)


EngineOpener = Callable[..., Any]


def run_offline(
    streams: Sequence[CameraStream],
    spec: ModelSpec,
    params: dict[str, Any],
    warmup_runs: int = 3,
    log: Callable[[str], None] = print,
    engine_opener: EngineOpener = open_engine,
) -> Iterator[tuple[str, FrameOutput]]:
    """Yield ``(camera, FrameOutput)`` for every frame the frame path accepts, batch by batch;
    writes inputs and outputs to each camera's writer. ``engine_opener(spec, progress=...)``
    opens the engine (the node's :func:`open_engine`)."""
    t0 = time.monotonic()
    engine = engine_opener(spec, progress=lambda msg: log(f"engine: {msg}"))
    try:
        processor = FrameProcessor(engine, params, [s.name for s in streams])
        for stream in streams:
            stream.stats.engine_metadata = dict(engine.metadata)
            stream.stats.load_s = time.monotonic() - t0
        processor.warm_up(int(warmup_runs))
        by_name = {stream.name: stream for stream in streams}
        loop_start = time.monotonic()
        for batch in stamp_batches(_arrivals(streams)):
            yield from _run_batch(processor, by_name, batch)
        processor.close()  # clips (record.*): the open one is written, the disk waited for
        for line in processor.drain_lines():
            log(line[1])
        for stream in streams:
            snap = processor.stats[stream.name].snapshot()
            stream.stats.bad_input = snap["bad_input"]
            stream.stats.input_notes = snap["input_notes"]
            stream.stats.engine_batches = processor.batches.values()
            stream.stats.wall_s = time.monotonic() - loop_start
    finally:
        engine.close()


def _arrivals(streams: Sequence[CameraStream]) -> Iterator[tuple[str, int, bagmod.Frame]]:
    """Every camera's frames as ``(camera, stamp, frame)`` in log-time order (ties: camera
    order), the order a node subscribed to all of them receives them in."""
    per_camera = [_camera_arrivals(stream) for stream in streams]
    return heapq.merge(*per_camera, key=lambda arrival: arrival[2].log_ns)


def _camera_arrivals(stream: CameraStream) -> Iterator[tuple[str, int, bagmod.Frame]]:
    for frame in bagmod.iter_frames(stream.scan):
        yield stream.name, frame.stamp_ns, frame


def _run_batch(
    processor: FrameProcessor, streams: dict[str, CameraStream], batch: dict[str, bagmod.Frame]
) -> Iterator[tuple[str, FrameOutput]]:
    for camera, frame in batch.items():  # as the node's subscription sees them (clips)
        sel = streams[camera].scan.selection
        processor.observe(sel.image, sel.image_type, frame.raw, len(frame.raw), frame.stamp_ns)
    t0 = time.monotonic()
    results = processor.run({camera: frame.msg for camera, frame in batch.items()})
    share = (time.monotonic() - t0) / len(results)
    for result in results:
        stream, frame = streams[result.camera], batch[result.camera]
        stream.stats.frames += 1
        stream.stats.processing_s += share
        latency = result.decode_s + result.inference_s
        _write(stream, processor, result, frame, latency)
        if result.ok:
            yield (
                result.camera,
                FrameOutput(
                    frame=frame,
                    rgb=np.array(result.rgb, order="C"),  # writable: the scorers' torch takes it
                    labels=result.labels,
                    confidence=result.confidence,
                    latency_s=latency,
                    alert=alert_record(result.statuses.get(ALERT_STAGE)),
                    scene=alert_record(result.statuses.get(SCENE_STAGE)),
                ),
            )


def _write(
    stream: CameraStream,
    processor: FrameProcessor,
    result: CameraResult,
    frame: bagmod.Frame,
    latency_s: float,
) -> None:
    """The frame's input messages as recorded, then its rendered outputs (a refused frame has
    none) a latency after the input, as a live recording would have them."""
    if stream.writer is None:
        return
    if stream.copy_inputs:
        write_inputs(stream.writer, stream.scan.selection, frame)
    payloads = processor.render(result, stream.topics)
    log_ns = frame.log_ns + int(latency_s * 1e9)
    for name, msg in bag_messages(payloads, frame.stamp_ns, frame.frame_id).items():
        stream.writer.write(stream.topics[name], log_ns, msg)


def write_inputs(writer: BagWriter, sel: bagmod.Selection, frame: bagmod.Frame) -> None:
    """The camera message and its ground truth, byte for byte as in the input bag."""
    writer.write(sel.image, frame.log_ns, frame.raw)
    if sel.labels and frame.label_raw is not None:
        writer.write(sel.labels, frame.label_log_ns or frame.log_ns, frame.label_raw)
    if sel.ood and frame.ood_raw is not None:
        writer.write(sel.ood, frame.ood_log_ns or frame.log_ns, frame.ood_raw)
